"""ilif-energy command line: outputs, analytic mode, clear errors."""
from __future__ import annotations

import json

import pytest

from ilif_deploy.cli.energy import main


def test_cli_writes_all_outputs_with_compare(tmp_path, digits_ilif_path, digits_lif_path, capsys):
    out = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "html", "md")}
    rc = main([str(digits_ilif_path), "--samples", "60", "--compare", str(digits_lif_path), "--no-progress",
               "--json", str(out["json"]), "--csv", str(out["csv"]), "--html", str(out["html"]),
               "--markdown", str(out["md"])])
    assert rc == 0
    d = json.loads(out["json"].read_text())
    assert {"layers", "totals", "ann", "energy_model", "samples", "timesteps", "compare"} <= set(d)
    assert d["samples"] == 60 and d["timesteps"] == 4 and d["energy_model"]["name"] == "paper"
    assert [layer["name"] for layer in d["layers"]] == ["conv1", "bn1", "neuron1", "conv2", "bn2", "neuron2", "pool",
                                                        "fc"]
    assert d["layers"][1]["macs"] == 0 and "folded" in d["layers"][1]["note"]  # BN counted as folded (bn=folded)
    assert d["totals"]["energy_pj"] == pytest.approx(0.9 * d["totals"]["acs"] + 4.6 * d["totals"]["macs"])
    assert d["ann"]["macs"] == 309_248 and d["compare"]["model"] == "digits_lif"
    assert "conv2" in out["csv"].read_text() and "## Comparison" in out["md"].read_text()
    assert out["html"].stat().st_size > 1_000_000
    assert "digits_ilif / digits_lif" in capsys.readouterr().out


def test_cli_analytic_rate_and_energy_model_file(tmp_path, digits_ilif_path):
    model_file = tmp_path / "chip.json"
    model_file.write_text(json.dumps({"name": "chip", "e_ac_pj": 1.0, "e_mac_pj": 2.0}))
    rc = main([str(digits_ilif_path), "--data", "none", "--rate", "0.5", "--energy-model", str(model_file),
               "--json", str(tmp_path / "a.json")])
    assert rc == 0
    d = json.loads((tmp_path / "a.json").read_text())
    conv2 = [layer for layer in d["layers"] if layer["name"] == "conv2"][0]
    assert conv2["acs"] == 0.5 * 4 * 16 * 22 * 22 * 32 and d["assumed_rate"] == 0.5
    assert d["totals"]["energy_pj"] == pytest.approx(d["totals"]["acs"] + 2.0 * d["totals"]["macs"])


def test_cli_conventions_change_counts(tmp_path, digits_ilif_path):
    base, sep = tmp_path / "b.json", tmp_path / "s.json"
    assert main([str(digits_ilif_path), "--data", "none", "--rate", "0.2", "--json", str(base)]) == 0
    assert main([str(digits_ilif_path), "--data", "none", "--rate", "0.2", "-c", "pooling=separate",
                 "-c", "classifier=false", "--json", str(sep)]) == 0
    b = {x["name"]: x for x in json.loads(base.read_text())["layers"]}
    s = {x["name"]: x for x in json.loads(sep.read_text())["layers"]}
    assert b["fc"]["acs"] > 0 and s["fc"]["acs"] == 0 and s["fc"]["macs"] == 0
    assert s["pool"]["acs"] == pytest.approx(0.2 * 4 * 32 * 64)


@pytest.mark.parametrize("args, message", [
    (["--data", "none"], "--data none needs --rate"),
    (["--data", "none", "--rate", "1.5"], "firing probability"),
    (["--rate", "0.1"], "--rate is only for --data none"),
    (["--energy-model", "tpu9000"], "unknown energy model 'tpu9000'"),
    (["-c", "pooling=maybe"], "convention pooling='maybe'"),
    (["-c", "speed=fast"], "unknown convention 'speed'"),
    (["--data", "missing.npz"], "data not found: missing.npz"),
    (["--device", "nosuchdevice"], "--device 'nosuchdevice' is not available"),
])
def test_cli_errors_are_one_clear_line(digits_ilif_path, capsys, args, message):
    assert main([str(digits_ilif_path), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_nir_file_gives_the_same_report(tmp_path, digits_ilif_path, digits_ilif_graph):
    from ilif_deploy.converters import nir as nir_mod

    nir_mod.export_graph(digits_ilif_graph, tmp_path / "m.nir")
    for src, dst in ((digits_ilif_path, "pt.json"), (tmp_path / "m.nir", "nir.json")):
        assert main([str(src), "--samples", "40", "--no-progress", "--json", str(tmp_path / dst)]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("pt.json", "nir.json"))
    assert a["totals"] == b["totals"] and a["layers"] == b["layers"]


def test_cli_event_data_counts_acs_for_the_first_layer(tmp_path, digits_ilif_path):
    # [N, T, C, H, W] binary frames (events): the first conv then costs ACs, not MACs
    import numpy as np

    rng = np.random.default_rng(0)
    x = (rng.random((12, 4, 1, 8, 8)) < 0.3).astype(np.float32)
    np.savez(tmp_path / "events.npz", x=x, y=rng.integers(0, 10, 12))
    assert main([str(digits_ilif_path), "--data", str(tmp_path / "events.npz"), "--no-progress",
                 "--json", str(tmp_path / "e.json")]) == 0
    d = json.loads((tmp_path / "e.json").read_text())
    conv1 = [layer for layer in d["layers"] if layer["name"] == "conv1"][0]
    cov = np.array([2, 3, 3, 3, 3, 3, 3, 2], float)
    fan = 16 * np.outer(cov, cov)  # 3x3, padding 1, 16 output channels
    assert conv1["input"] == "spikes" and conv1["macs"] == 0
    assert conv1["acs"] == pytest.approx((x[:, :, 0] * fan).sum() / 12)
    assert d["samples"] == 12 and d["timesteps"] == 4 and d["accuracy"] is not None
