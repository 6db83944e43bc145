"""Reports people can trace and compare: static metrics hand-computed on a tiny network, provenance in
every output format, numbers without float noise, n/a where a quantity does not exist."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from ilif_deploy import energy
from ilif_deploy import ir as N
from ilif_deploy.cli import energy as energy_cli
from ilif_deploy.examples import model_path
from ilif_deploy.neuron_step import ILIFParams
from zoo import chain_graph


def test_static_metrics_by_hand():
    w = np.zeros((4, 2, 3, 3), np.float32)
    w[0, 0, 1, 1] = w[1, 1, 0, 0] = w[3, 0, 2, 2] = 1.0  # 3 non-zero taps; channel 2 all zero
    g = chain_graph((2, 5, 5), [N.Conv2d("conv", weight=w, bias=np.zeros(4, np.float32), padding=1),
                                N.Neuron("ilif"),  # ILIF: membrane, MPIU, CIU
                                N.Flatten("flat"), N.Linear("fc", weight=np.ones((3, 100), np.float32)),
                                N.Neuron("lif", params=ILIFParams(lam=0.5, lam_u=0.0, lam_i=0.0))],
                    T=2, encoding="direct")
    s = energy.static_metrics(g)
    conv, fc, ilif, lif = (s["layers"][k] for k in ("conv", "fc", "ilif", "lif"))
    assert conv["parameters"] == 72 + 4 and conv["zero_weights"] == 69 and conv["synapses"] == 3 * 25
    assert conv["connection_sparsity"] == 69 / 72
    assert conv["footprint_float32_bytes"] == 4 * 76 and conv["footprint_fixed_bytes"] == 72 + 4 * 4
    assert fc["parameters"] == 300 and fc["synapses"] == 300 and fc["connection_sparsity"] == 0.0
    assert (ilif["neurons"], ilif["compartments"], lif["neurons"], lif["compartments"]) == (100, 300, 3, 3)
    t = s["totals"]
    assert t["parameters"] == 76 + 300 + 4 + 2 and t["synapses"] == 375 and t["compartments"] == 303
    assert t["connection_sparsity"] == 69 / 372
    assert t["loihi_cores_min"] == 1 + 1 and t["loihi_chips_min"] == 1  # one core per neuron layer at least


def test_loihi_core_estimate_follows_the_published_per_core_limits():
    # 2,000 ILIF neurons = 6,000 compartments -> 6 cores of 1,024; 300 x 2,000 8-bit synapses = 600,000 bytes
    # -> 5 cores of 128 KB: compartments decide
    g = chain_graph((300,), [N.Linear("fc", weight=np.ones((2000, 300), np.float32)), N.Neuron("ilif")], T=1,
                    encoding="direct")
    t = energy.static_metrics(g)["totals"]
    assert t["loihi_cores_min"] == 6
    g.nodes["ilif"].params = ILIFParams(lam=0.5, lam_u=0.0, lam_i=0.0)  # LIF: 2 cores by compartments
    assert energy.static_metrics(g)["totals"]["loihi_cores_min"] == 5  # synapses decide


def test_provenance_and_rounding_in_every_format(tmp_path, capsys):
    out = {k: tmp_path / f"r.{k}" for k in ("csv", "json", "markdown", "html")}
    argv = ["example:digits_ilif", "--data", "digits", "--samples", "30", "--no-progress"] + \
        [a for k, p in out.items() for a in (f"--{k}", str(p))]
    assert energy_cli.main(argv) == 0
    sha = hashlib.sha256(model_path("digits_ilif").read_bytes()).hexdigest()
    prov = json.loads(out["json"].read_text())["provenance"]
    assert prov["model_sha256"] == sha and prov["samples"] == 30 and prov["timesteps"] == 4
    assert prov["command"].startswith("ilif-energy example:digits_ilif --data digits --samples 30")
    assert prov["utc"].endswith("+00:00") and "ilif-deploy" in prov["tool"] and "digits" in prov["data"]
    for k in ("csv", "markdown", "html"):
        assert sha in out[k].read_text(), k
    csv = out["csv"].read_text()
    assert "99999999" not in csv and "00000001" not in csv  # no float noise such as 142489.59999999998
    back = pd.read_csv(out["csv"], comment="#")
    assert len(back) > 5 and "name" in back.columns
    assert "## Static metrics" in out["markdown"].read_text()
    static = json.loads(out["json"].read_text())["static"]["totals"]
    assert static["parameters"] > 0 and static["neurons"] == 16 * 64 + 32 * 64


def test_no_data_says_n_a_not_nan(capsys):
    assert energy_cli.main(["example:digits_ilif", "--data", "none", "--rate", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "continuous firing n/a" in out and "nan" not in out.split("\n")[1]
