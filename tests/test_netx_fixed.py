"""lava-dl netx networks at Loihi's own integers: the fixed-point format comes from the file, and the torch engine
and our Lava build equal lava-dl's own netx run (Lava fixed_pt) spike for spike; files without time steps need
-T; data-less estimates know whether the input is spikes; both engines count saturations on the same steps."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ilif_deploy import ir as N
from ilif_deploy.converters.lava.fixed import FixedPoint, native_format
from ilif_deploy.converters.netx import export_graph, read_netx
from ilif_deploy.neuron_step import ILIFParams
from netx_reference import netx_spikes
from zoo import chain_graph

T = 24


def _loihi_net(seed: int = 0):
    """Spikes (32) -> dense -> CUBA LIF -> dense -> CUBA LIF, netx's own integers: weights up to +-200 (Loihi's
    8-bit mantissas, far beyond what 16 fractional bits leave in 24-bit states: 2**7), thresholds 64."""
    rng = np.random.default_rng(seed)

    def lif(lam):
        return ILIFParams(lam=lam, v_th=64.0, lam_u=0.0, lam_i=0.0, reset="zero", v_reset=0.0, compare=">")

    return chain_graph((32,), [N.Linear("fc1", weight=(2 * rng.integers(-60, 100, (16, 32))).astype(np.float32)),
                               N.Neuron("n1", params=lif(1 - 410 / 4096)),
                               N.Linear("fc2", weight=(2 * rng.integers(-40, 80, (8, 16))).astype(np.float32)),
                               N.Neuron("n2", params=lif(1 - 1024 / 4096))], T=T)


@pytest.fixture
def loihi_file(tmp_path):
    info = export_graph(_loihi_net(), tmp_path / "loihi.net")
    assert info["scales"] == [1.0, 1.0] and info["rounding"] == 0.0  # written as the integers they are
    return tmp_path / "loihi.net"


def test_a_netx_network_runs_at_its_own_integers_and_equals_lava_dl(netx, lava, loihi_file):
    from ilif_deploy.converters.lava import simulate
    from ilif_deploy.converters.lava.engine import TorchEngine
    from ilif_deploy.converters.lava.netspec import build_netspec

    g = read_netx(loihi_file, timesteps=T)
    assert native_format(g.metadata) == FixedPoint(frac_bits=6, input_frac_bits=0, delta_state_exp=6)
    x = (np.random.default_rng(1).random((2, T, 32)) < 0.2).astype(np.float32)
    spec = build_netspec(g)
    own, default = TorchEngine(spec, "fixed", native_format(g.metadata)), TorchEngine(spec, "fixed", FixedPoint())
    fired = 0
    for sample in x:
        ref = netx_spikes(loihi_file, sample, g, T)
        fired += sum(int(v.sum()) for v in ref.values())
        r = own.run(torch.as_tensor(sample)[:, None])
        for name, want in ref.items():
            np.testing.assert_array_equal(r.spikes[name][:, 0].numpy(), want, err_msg=name)
        assert sum(r.overflows.values()) == 0  # lava-dl saturates nothing: neither do we
        assert sum(default.run(torch.as_tensor(sample)[:, None]).overflows.values()) > 0  # 16 bits would
    assert fired > 20
    # simulate picks the file's format by itself, says so, and our Lava build is the torch engine bit for bit
    rep = simulate(g, x=x, mode="fixed", engine="torch", verify=2, progress=False)
    f = rep.details["fixed_point"]
    assert (f["frac_bits"], f["input_frac_bits"]) == (6, 0) and "netx file" in f["from"]
    assert rep.details["verify"]["spike_mismatches"] == 0 and sum(rep.details["overflows"].values()) == 0
    asked = simulate(g, x=x, mode="fixed", engine="torch", fixed=FixedPoint(), progress=False)
    assert asked.details["fixed_point"]["from"].startswith("asked for") and sum(asked.details["overflows"].values())


def test_the_interop_netx_files_equal_lava_dl_at_their_own_integers(netx, lava, interop):
    from ilif_deploy.converters.lava.engine import TorchEngine
    from ilif_deploy.converters.lava.netspec import build_netspec

    rng = np.random.default_rng(3)
    for name, T_ in (("oxford_network", 24), ("tiny", 12)):
        path = interop / "netx" / f"{name}.net"
        g = read_netx(path, timesteps=T_)
        engine = TorchEngine(build_netspec(g), "fixed", native_format(g.metadata))
        if "layer0.encode" in g.nodes:  # an input neuron: an integer frame as its bias
            frame = rng.integers(0, 4, g.input_shape).astype(np.float32)
            x, ref = np.broadcast_to(frame, (T_, *g.input_shape)).copy(), netx_spikes(path, frame, g, T_)
        else:
            x = (rng.random((T_, *g.input_shape)) < 0.03).astype(np.float32)
            ref = netx_spikes(path, x, g, T_)
        r = engine.run(torch.as_tensor(x)[:, None])
        assert sum(int(v.sum()) for v in ref.values()) > 10, name
        for layer, want in ref.items():
            np.testing.assert_array_equal(r.spikes[layer][:, 0].numpy(), want, err_msg=f"{name} {layer}")
        assert sum(r.overflows.values()) == 0


def test_a_file_without_time_steps_needs_T_for_lava(loihi_file, tmp_path, capsys):
    from ilif_deploy.cli import export, simulate

    rc = export.main([str(loihi_file), "--target", "lava", "-o", str(tmp_path / "x.lava.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: the network has no number of time steps T (read from a netx file, which keeps "
                               "none): give -T N"] and not (tmp_path / "x.lava.h5").exists()
    assert export.main([str(loihi_file), "-T", "8", "--target", "lava", "-o", str(tmp_path / "x.lava.h5"),
                        "--check-samples", "0"]) == 0
    capsys.readouterr()
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 32), np.float32))
    assert simulate.main([str(loihi_file), "--engine", "torch", "--data", str(tmp_path / "x.npy")]) == 2
    assert capsys.readouterr().err.strip().endswith("give -T N")


def test_data_less_estimates_price_spike_input_as_accumulates(loihi_file):
    """Spikes (32) -> dense 16 -> dense 8 at rate r for T steps: the input's spikes cost their fan-out in ACs
    (r T 32 x 16), analog frames T x 32 x 16 MACs; the default for a netx file without an input neuron: spikes."""
    from ilif_deploy.energy import estimate

    g = read_netx(loihi_file, timesteps=T)
    r = 0.25
    spikes, analog, default = (estimate(g, r, input=k, progress=False) for k in ("spikes", "analog", None))
    s_row, a_row = (next(row for row in rep.rows if row.name == "layer0.synapse") for rep in (spikes, analog))
    assert s_row.acs == pytest.approx(r * T * 32 * 16) and s_row.macs == 0
    assert a_row.macs == pytest.approx(T * 32 * 16) and a_row.acs == 0
    assert default.meta["assumed_input"] == "spikes" and default.totals["energy_pj"] == spikes.totals["energy_pj"]
    assert analog.totals["energy_pj"] > 10 * spikes.totals["energy_pj"]


def test_input_flag_is_for_estimates_only(loihi_file, tmp_path, capsys):
    from ilif_deploy.cli import energy

    assert energy.main([str(loihi_file), "-T", "8", "--data", "none", "--rate", "0.1", "--input", "analog",
                        "--json", str(tmp_path / "e.json")]) == 0
    rep = json.loads((tmp_path / "e.json").read_text())
    assert "analog input" in rep["provenance"]["data"] and rep["assumed_input"] == "analog"
    capsys.readouterr()
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 32), np.float32))
    assert energy.main([str(loihi_file), "-T", "8", "--data", str(tmp_path / "x.npy"), "--input", "spikes"]) == 2
    assert "--input is only for --data none" in capsys.readouterr().err


def test_both_engines_count_saturations_on_the_samples_steps_only(lava):
    """A bias that alone drives the membrane past the 24-bit range (-60 per step; 16 fractional bits leave
    +-128): Lava runs drain steps after the samples (and empty windows in a short last batch) where the bias keeps
    driving the neurons; those are not samples and are not counted.  Steps 2 and 3 of each sample saturate the 4
    membranes: 3 samples x 2 steps x 4 = 24 in both engines, whatever the batch."""
    from ilif_deploy.converters.lava import simulate

    g = chain_graph((4,), [N.Linear("fc", weight=np.eye(4, dtype=np.float32), bias=np.full(4, -60.0, np.float32)),
                           N.Neuron("n", params=ILIFParams(lam=1.0, v_th=1.0, lam_u=0.0, lam_i=0.0, reset="zero",
                                                           compare=">"))], T=4, encoding="sequence")
    x = np.zeros((3, 4, 4), np.float32)
    counts = {}
    for engine, batch in (("torch", 3), ("lava", 2), ("lava", 3)):
        rep = simulate(g, x=x, mode="fixed", engine=engine, batch=batch, progress=False)
        counts[(engine, batch)] = rep.details["overflows"]["n"]
    assert set(counts.values()) == {24}, counts
    v = simulate(g, x=x, mode="fixed", engine="torch", verify=3, batch=2, progress=False).details["verify"]
    assert v["saturated_states"] == {"lava": 24, "torch": 24} and v["counts_equal"]  # --verify compares them


def _readout_net():
    """_loihi_net with a readout: dense 8 -> 3 into a non-decaying integrator, a bias after it."""
    g = _loihi_net()
    w = (2 * np.random.default_rng(4).integers(-30, 30, (3, 8))).astype(np.float32)
    return chain_graph((32,), [N.Linear("fc1", weight=g.nodes["fc1"].weight),
                               N.Neuron("n1", params=g.nodes["n1"].params),
                               N.Linear("fc2", weight=g.nodes["fc2"].weight),
                               N.Neuron("n2", params=g.nodes["n2"].params), N.Linear("read", weight=w),
                               N.LeakyIntegrator("acc", lam=1.0),
                               N.Affine("rb", scale=np.ones(3, np.float32), shift=np.array([5, -3, 0], np.float32))],
                       T=T)


def test_a_readout_without_neuron_reads_writes_and_runs_as_netx_runs_it(netx, lava, tmp_path):
    """A netx dense layer without a neuron group is netx's non-spiking integrator (iDecay 0, vDecay 4096, a
    threshold v never reaches): written by us without a neuron, loaded by lava-dl, its v per step equals our torch
    engine's readout at the file's integers and our float runtime's output; read back it is the same network."""
    import h5py

    from ilif_deploy import run
    from ilif_deploy.converters.lava.engine import TorchEngine
    from ilif_deploy.converters.lava.netspec import build_netspec

    g = _readout_net()
    info = export_graph(g, tmp_path / "ro.net")
    assert info["layers"] == 3 and info["scales"][-1] == 1.0 and info["rounding"] == 0.0
    with h5py.File(tmp_path / "ro.net") as f:
        assert "neuron" not in f["layer/2"] and "neuron" in f["layer/1"]
    back = read_netx(tmp_path / "ro.net", timesteps=T)
    assert [n.op for n in back.nodes.values()][-4:] == ["linear", "leaky_integrator", "affine", "output"]
    x = (np.random.default_rng(1).random((T, 32)) < 0.2).astype(np.float32)
    want_float = run(g, torch.as_tensor(x)[:, None])[:, 0].numpy()
    assert np.array_equal(run(back, torch.as_tensor(x)[:, None])[:, 0].numpy(), want_float)
    ref = netx_spikes(tmp_path / "ro.net", x, back, T)
    r = TorchEngine(build_netspec(back), "fixed", native_format(back.metadata)).run(torch.as_tensor(x)[:, None])
    for name in ("layer0", "layer1"):
        np.testing.assert_array_equal(r.spikes[name][:, 0].numpy(), ref[name], err_msg=name)
    np.testing.assert_array_equal(r.output[:, 0].numpy(), ref["readout"])
    np.testing.assert_array_equal(ref["readout"], want_float)  # Loihi's integers hold the float network exactly
    assert np.abs(ref["readout"]).max() > 10


def test_what_follows_a_readout_is_refused(tmp_path):
    import h5py

    export_graph(_readout_net(), tmp_path / "ro.net")
    with h5py.File(tmp_path / "ro.net", "r+") as f:
        f.copy(f["layer/1"], "layer/3")  # a spiking layer after the readout
    with pytest.raises(Exception, match="layer 2 has no neuron .* layer 3 follows it"):
        read_netx(tmp_path / "ro.net")
