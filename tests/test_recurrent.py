"""Recurrent layers: a neuron layer with a synapse from its own spikes of the step before (IR RecurrentNeuron),
in the runtime, the .ir.npz format, energy counts, NIR import (the NIR paper's braille RNN) and export, ONNX and
Lava (float and fixed point), netx (tests/test_netx_export.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ilif_deploy import energy
from ilif_deploy import ir as N
from ilif_deploy.converters import export
from ilif_deploy.ir import Graph
from ilif_deploy.neuron_step import ILIFParams
from ilif_deploy.runtime import run
from zoo import chain_graph

HARD = dict(lam_u=0.0, lam_i=0.0, reset="zero", v_reset=0.0, compare=">")


def _net(rec_weight, T=6, syn_lam=0.0, lam=0.9, in_w=None, n_in=5, seed=0):
    rng = np.random.default_rng(seed)
    n = rec_weight.shape[0]
    return chain_graph((n_in,), [N.Linear("fc", weight=rng.normal(0, 1, (n, n_in)) if in_w is None else in_w),
                                 N.RecurrentNeuron("rec", params=ILIFParams(lam=lam, v_th=1.0, **HARD),
                                                   weight=rec_weight, syn_lam=syn_lam, in_scale=0.75),
                                 N.Linear("read", weight=rng.normal(0, 1, (2, n)))], T=T)


def test_with_no_recurrent_weight_it_is_the_feed_forward_chain():
    g = _net(np.zeros((6, 6), np.float32), T=12, syn_lam=0.5)
    ff = Graph(metadata={"timesteps": 12})
    for name in ("input", "fc"):
        ff.add(g.nodes[name], g.inputs_of(name))
    ff.add(N.Affine("gain", (6,), scale=np.full(6, 0.75, np.float32), shift=np.zeros(6, np.float32), source="gain"),
           ["fc"])
    ff.add(N.LeakyIntegrator("syn", (6,), lam=0.5), ["gain"])
    ff.add(N.Neuron("rec", (6,), params=g.nodes["rec"].params), ["syn"])
    ff.add(g.nodes["read"], ["rec"])
    ff.add(g.nodes["output"], ["read"])
    x = torch.as_tensor((np.random.default_rng(1).random((12, 4, 5)) < 0.5).astype(np.float32))
    _, a = run(g, x, record=["rec"])
    _, b = run(ff.validate(), x, record=["rec"])
    assert torch.equal(a["rec"], b["rec"]) and 0 < float(a["rec"].mean()) < 1


def test_recurrent_spikes_feed_the_next_step_and_survive_the_file_format(tmp_path):
    w = np.random.default_rng(2).normal(0, 0.8, (6, 6)).astype(np.float32)
    g = _net(w, T=16)
    x = torch.as_tensor((np.random.default_rng(3).random((16, 4, 5)) < 0.5).astype(np.float32))
    out, rec = run(g, x, record=["rec", "fc"])
    # the reference: the layer's equations, one step at a time
    p, s, v, ref = g.nodes["rec"].params, torch.zeros(4, 6), torch.zeros(4, 6), []
    for t in range(16):
        i = (rec["fc"][t] + F.linear(s, torch.as_tensor(w))) * 0.75 + 0.0
        v_pre = p.lam * v + (i * 1.0 + 0.0)
        s = (v_pre > p.v_th).float()
        v = (1 - s) * v_pre + s * 0.0
        ref.append(s)
    assert torch.equal(rec["rec"], torch.stack(ref))
    no_rec = run(_net(np.zeros((6, 6), np.float32), T=16), x, record=["rec"])[1]["rec"]
    assert not torch.equal(no_rec, rec["rec"])  # the recurrence changes the spikes
    g.save(tmp_path / "r.ir.npz")
    assert torch.equal(run(Graph.load(tmp_path / "r.ir.npz"), x), out)


def test_energy_counts_the_recurrent_acs_by_hand():
    """Neuron 0 is driven to spike at steps 0 and 3 of T = 4, neuron 1 never; the recurrent weights (0.1) are
    too small to make anything spike.  Each spike of steps 0..T-2 costs one AC per target: column 0 has 2
    targets under the paper's conventions, 1 non-zero one (0.1 into neuron 1) under zero_weights=skip."""
    w = np.array([[0.0, 0.1], [0.1, 0.0]], np.float32)
    g = _net(w, T=4, lam=0.0, in_w=np.array([[2.0], [0.0]], np.float32), n_in=1)
    x = np.array([[[1.0]], [[0.0]], [[0.0]], [[1.0]]], np.float32).transpose(1, 0, 2)  # [N=1, T=4, 1]
    _, rec = run(g, torch.as_tensor(x).transpose(0, 1), record=["rec"])
    assert rec["rec"][:, 0].tolist() == [[1, 0], [0, 0], [0, 0], [1, 0]]
    for conventions, per_spike in ((None, 2.0), (energy.Conventions(zero_weights="skip"), 1.0)):
        row = next(r for r in energy.profile(g, x, progress=False, conventions=conventions).rows if r.name == "rec")
        assert row.spikes == 2.0 and row.acs == per_spike  # the spike of step 3 reaches no later step
        assert row.acs_per_step == [0.0, per_spike, 0.0, 0.0]


def test_the_braille_rnn_of_the_nir_paper_runs_as_its_equations_say(interop):
    import nir

    from ilif_deploy.converters.nir import read_graph

    path = interop / "nir" / "braille_noDelay_bias_zero.nir"
    g = read_graph(path)
    assert [type(n).__name__ for n in g.nodes.values()].count("RecurrentNeuron") == 1
    T = 256
    g.metadata["timesteps"] = T
    x = torch.as_tensor((np.random.default_rng(5).random((T, 3, 12)) < 0.3).astype(np.float32))
    _, rec = run(g, x, record=["lif1.lif", "lif2"])
    # the reference: NIR's CubaLIF (forward Euler at dt = 1e-4 s, the reading default), straight from the file
    f, dt = nir.read(str(path), type_check=False).nodes, 1e-4
    fc1, w_rec, lif1, fc2, lif2 = (f[k] for k in ("fc1", "lif1.w_rec", "lif1.lif", "fc2", "lif2"))

    def t32(a):
        return torch.as_tensor(np.asarray(a, np.float32))

    def cuba(node):
        one = lambda k: float(np.asarray(getattr(node, k)).reshape(-1)[0])  # noqa: E731 (uniform per layer)
        return (1 - dt / one("tau_syn"), one("w_in") * dt / one("tau_syn"), 1 - dt / one("tau_mem"),
                one("r") * dt / one("tau_mem"), one("v_leak") * dt / one("tau_mem"), one("v_threshold"))

    def step(a, cur, v, k):
        lam_syn, g_in, lam_mem, g_mem, leak, th = k
        cur = lam_syn * cur + (a * g_in + 0.0)
        v_pre = lam_mem * v + (cur * g_mem + leak)
        s = (v_pre > th).float()
        return s, cur, (1 - s) * v_pre + s * 0.0

    k1, k2 = cuba(lif1), cuba(lif2)
    s1, c1, v1 = torch.zeros(3, 38), torch.zeros(3, 38), torch.zeros(3, 38)
    c2, v2, out1, out2 = torch.zeros(3, 7), torch.zeros(3, 7), [], []
    for t in range(T):
        a1 = F.linear(x[t], t32(fc1.weight), t32(fc1.bias)) + F.linear(s1, t32(w_rec.weight), t32(w_rec.bias))
        s1, c1, v1 = step(a1, c1, v1, k1)
        s2, c2, v2 = step(F.linear(s1, t32(fc2.weight), t32(fc2.bias)), c2, v2, k2)
        out1.append(s1)
        out2.append(s2)
    assert torch.equal(rec["lif1.lif"], torch.stack(out1)) and torch.equal(rec["lif2"], torch.stack(out2))
    assert 0 < float(rec["lif1.lif"].mean()) < 1 and float(rec["lif2"].sum()) > 0
    rep = energy.profile(g, x.transpose(0, 1).numpy(), progress=False)
    row = next(r for r in rep.rows if r.name == "lif1.lif")
    assert row.acs == pytest.approx(float(torch.stack(out1)[:-1].sum()) * 38 / 3)  # every weight of w_rec is used


@pytest.mark.parametrize("syn_lam", [0.0, 0.5])
def test_nir_round_trip_as_snntorchs_rleaky_subgraph(tmp_path, syn_lam):
    """Written as the nested graph snntorch writes for RLeaky (input -> lif <-> w_rec, lif -> output), with
    nir.read's type checks on; read back exactly.  As for every layer, weights are read from the NIR node (an
    edited weight is the new weight); a neuron parameter that no longer matches the metadata is refused."""
    import h5py
    import nir

    from ilif_deploy.converters.nir import export_graph, read_graph

    g = _net(np.random.default_rng(2).normal(0, 0.8, (6, 6)).astype(np.float32), T=16, syn_lam=syn_lam)
    info = export_graph(g, tmp_path / "r.nir")
    assert info["neuron_layers"] == 1
    sub = nir.read(str(tmp_path / "r.nir")).nodes["rec"]
    assert set(sub.nodes) == {"input", "lif", "w_rec", "output"} and ("w_rec", "lif") in sub.edges
    assert type(sub.nodes["lif"]).__name__ == ("CubaLIF" if syn_lam else "LIF")
    x = torch.as_tensor((np.random.default_rng(3).random((16, 4, 5)) < 0.5).astype(np.float32))
    back = read_graph(tmp_path / "r.nir")
    assert isinstance(back.nodes["rec"], N.RecurrentNeuron) and torch.equal(run(back, x), run(g, x))
    with h5py.File(tmp_path / "r.nir", "r+") as f:
        f["node/nodes/rec/nodes/w_rec/weight"][0, 0] += 1.0
    assert read_graph(tmp_path / "r.nir").nodes["rec"].weight[0, 0] == g.nodes["rec"].weight[0, 0] + 1.0
    with h5py.File(tmp_path / "r.nir", "r+") as f:
        f["node/nodes/rec/nodes/lif/v_threshold"][...] *= 2.0
    with pytest.raises(Exception, match="NIR node 'rec': lif/v_threshold no longer matches"):
        read_graph(tmp_path / "r.nir")


@pytest.mark.parametrize("syn_lam", [0.0, 0.5])
def test_onnx_unrolls_the_recurrence_with_the_runtimes_spikes(tmp_path, syn_lam):
    """Unrolled over T: at every step a Gemm of the previous step's spikes, op for op as the runtime, so
    onnxruntime (onnx.checker passed by the exporter) reproduces every spike."""
    from ilif_deploy.converters.onnx import compare_with_runtime, export_graph

    g = _net(np.random.default_rng(2).normal(0, 0.8, (6, 6)).astype(np.float32), T=16, syn_lam=syn_lam)
    export_graph(g, tmp_path / "r.onnx")
    x = (np.random.default_rng(3).random((40, 16, 5)) < 0.5).astype(np.float32)
    a = compare_with_runtime(g, tmp_path / "r.onnx", x)
    assert a.total_flips == 0 and a.spike_agreement == {"rec": 1.0} and 0.05 < a.firing_rate["rec"] < 0.9
    assert a.max_abs_logit_diff <= 1e-5


def test_netx_refuses_a_bias_into_its_decaying_current_by_name(tmp_path):
    """netx writes recurrent LIF layers (dense_rec, tests/test_netx_export.py) but adds biases to the voltage."""
    g = _net(np.eye(6, dtype=np.float32) * 0.5, syn_lam=0.5)
    g.nodes["rec"].bias = np.ones(6, np.float32)
    with pytest.raises(Exception, match="'rec': a bias into its decaying current"):
        export(g, "netx", tmp_path / "r.net", check_samples=0)
    assert list(tmp_path.iterdir()) == []


def _self_exciting_net(T=5):
    """One neuron that, once driven over threshold, keeps itself firing through its recurrent weight (2.0)."""
    return _net(np.array([[2.0]], np.float32), T=T, lam=0.0, in_w=np.array([[2.0]], np.float32), n_in=1)


@pytest.mark.parametrize("mode", ["float", "fixed"])
def test_torch_engine_runs_recurrence_as_the_runtime(mode):
    from ilif_deploy.converters.lava.engine import TorchEngine
    from ilif_deploy.converters.lava.netspec import build_netspec

    g = _self_exciting_net()
    x = torch.zeros(5, 2, 1)
    x[1, 0] = 1.0  # sample 0 is driven at step 1 only: it then fires at every step from 1 on; sample 1 never
    res = TorchEngine(build_netspec(g), mode=mode).run(x)
    assert res.spikes["rec"][:, :, 0].T.tolist() == [[0, 1, 1, 1, 1], [0, 0, 0, 0, 0]]
    if mode == "fixed":  # integers: the float comparison below is the float engine's
        return
    _, rec = run(g, x, record=["rec"])
    assert torch.equal(res.spikes["rec"].float(), rec["rec"])
    g2 = _net(np.random.default_rng(2).normal(0, 0.8, (6, 6)).astype(np.float32), T=16, syn_lam=0.5)
    x2 = torch.as_tensor((np.random.default_rng(3).random((16, 8, 5)) < 0.5).astype(np.float32))
    _, rec2 = run(g2, x2, record=["rec"])
    assert torch.equal(TorchEngine(build_netspec(g2), mode="float").run(x2).spikes["rec"].float(), rec2["rec"])


@pytest.mark.parametrize("mode", ["float", "fixed"])
def test_lava_drops_the_recurrent_input_between_samples(lava, mode):
    """Samples run back to back in one Lava run: the last spike of a self-exciting sample must not reach
    the first step of the next one (the recurrent port is dropped at each window's first step)."""
    from ilif_deploy.converters.lava import simulate

    x = np.zeros((3, 5, 1), np.float32)
    x[0, 1] = x[2, 3] = 1.0  # sample 0 fires from step 1 to the end; sample 1 must stay silent
    rep = simulate(_self_exciting_net(), x=x, mode=mode, progress=False)
    assert rep.overall_spike_agreement == 1.0 and rep.spike_flips == {"rec": 0}
    assert rep.firing_rate["rec"] == pytest.approx((4 + 0 + 2) / 15)


def test_the_braille_rnn_runs_on_lava_spike_exact(interop, lava, tmp_path):
    """The NIR paper's braille RNN (a recurrent CubaLIF layer, then a CubaLIF layer) exported to Lava and
    simulated in float mode over its 256 steps: every spike as the runtime's, and the torch engine's too."""
    from ilif_deploy.converters.lava import export_graph, simulate
    from ilif_deploy.converters.lava.fixed import FixedPoint
    from ilif_deploy.converters.nir import read_graph

    g = read_graph(interop / "nir" / "braille_noDelay_bias_zero.nir")
    g.metadata["timesteps"] = 256
    export_graph(g, tmp_path / "braille.lava.h5")
    x = (np.random.default_rng(5).random((3, 256, 12)) < 0.3).astype(np.float32)
    for engine in ("lava", "torch"):
        rep = simulate(tmp_path / "braille.lava.h5", x=x, mode="float", engine=engine, progress=False)
        assert rep.spike_agreement == {"lif1.lif": 1.0, "lif2": 1.0}, (engine, rep.spike_flips)
        assert 0 < rep.firing_rate["lif1.lif"] < 1 and rep.firing_rate["lif2"] > 0
    # fixed point (12-bit decays, 8-bit weight mantissas; 12 fractional bits: the membranes reach beyond the
    # +-128 that 16 leave in 24 bits): the torch engine is Lava's fixed_pt bit for bit.  The 8-bit weights cost
    # lif2 about a fifth of its spikes (its synaptic current sums their rounding; measured 0.77 agreement).
    fixed = simulate(g, x=x, mode="fixed", engine="torch", verify=3, progress=False, fixed=FixedPoint(frac_bits=12))
    assert fixed.details["verify"]["spike_mismatches"] == 0 and fixed.details["overflows"] == {"lif1.lif": 0, "lif2": 0}
    assert fixed.spike_agreement["lif1.lif"] > 0.99 and fixed.spike_agreement["lif2"] > 0.7, fixed.spike_agreement


def test_cli_reads_sequence_files_of_vectors_and_nir_fidelity_covers_recurrent_layers(tmp_path, capsys):
    """A vector network (a NIR RNN) takes [N, T, F] files as a frame per step, not as [T x F] frames; the NIR
    exporter's generic-consumer check reports the recurrent layer too."""
    import json

    from ilif_deploy.cli import energy as energy_cli
    from ilif_deploy.converters.nir import export_graph

    g = _net(np.random.default_rng(2).normal(0, 0.8, (6, 6)).astype(np.float32), T=16)
    g.save(tmp_path / "r.ir.npz")
    x = (np.random.default_rng(3).random((5, 16, 5)) < 0.5).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert energy_cli.main([str(tmp_path / "r.ir.npz"), "--data", str(tmp_path / "x.npy"), "--no-progress",
                            "--json", str(tmp_path / "e.json")]) == 0
    rep = json.loads((tmp_path / "e.json").read_text())
    _, rec = run(g, torch.as_tensor(x).transpose(0, 1), record=["rec"])
    row = next(r for r in rep["layers"] if r["name"] == "rec")
    # the same spikes as the runtime on the file's sequences (spikes per inference)
    assert row["spikes"] * 5 == pytest.approx(float(rec["rec"].sum())) and float(rec["rec"].sum()) > 0
    info = export_graph(g, tmp_path / "r.nir", fidelity=True)
    assert set(info["fidelity"]["spike_agreement"]) == {"rec"}
