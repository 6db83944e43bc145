"""Lava target: import fix, ILIF process (golden vectors), network builder, artifact, simulation."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import ilif_deploy as D
from ilif_deploy import ir as N
from ilif_deploy.converters.lava import LavaFileError, LavaUnavailable, export_graph, load
from ilif_deploy.converters.lava.compat import patch_conv_utils, patch_source
from ilif_deploy.converters.lava.netspec import build_netspec
from ilif_deploy.converters.lava.fixed import FixedPoint, quantize_weights, source_frac_bits
from zoo import chain_graph, golden_net, maxpool_net, recurrent_net, toy_resnet
from ilif_deploy.neuron_step import ILIFParams

GOLDEN_CASES = ["tau1.1_T8", "tau2.0_T16", "tau1.1_T6_strong", "tau4.0_T20_weak"]


@pytest.fixture(scope="module")
def digits_graph(digits_ilif_graph):
    return digits_ilif_graph


# ------------------------------------------------------------------ no Lava needed

def test_import_fix_rewrites_instance_defaults():
    src = ("@dataclass\nclass CoreEncoder:\n    x: ByteEncoder = ByteEncoder()\n    n: int = 0\n"
           "    y: Other = ByteEncoder()\n")
    out = patch_source(src)
    assert "x: ByteEncoder = __import__('dataclasses').field(default_factory=ByteEncoder)" in out
    assert "n: int = 0" in out and "y: Other = ByteEncoder()" in out  # only `T = T()` fields change
    ns = {}
    exec("from dataclasses import dataclass\n@dataclass\nclass ByteEncoder:\n    base: int = 0\n"
         + patch_source("@dataclass\nclass CoreEncoder:\n    x: ByteEncoder = ByteEncoder()\n"), ns)
    a, b = ns["CoreEncoder"](), ns["CoreEncoder"]()
    assert a.x == b.x and a.x is not b.x
    assert "groups = int(groups)" in patch_conv_utils("def f():\n    if input_.shape[-1] % groups != 0:\n")


def test_netspec_fuses_digits_into_three_synapses(digits_graph):
    spec = build_netspec(digits_graph)
    assert [(s.source, s.target, s.kind, s.delay) for s in spec.synapses] == [
        ("input", "neuron1", "conv", 0), ("neuron1", "neuron2", "conv", 0), ("neuron2", "output", "dense", 0)]
    assert [lay.depth for lay in spec.layers] == [1, 2] and spec.depth == 3
    assert spec.synapses[0].graded and not spec.synapses[1].graded
    # avgpool + flatten + linear fused into one matrix: check it on random spikes against torch
    fc = spec.synapses[2]
    s = (np.random.default_rng(0).random((5, 32, 8, 8)) < 0.3).astype(np.float32)
    ref = digits_graph.nodes["fc"]
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(s), 2).flatten(1)
    expect = torch.nn.functional.linear(pooled, torch.from_numpy(ref.weight), torch.from_numpy(ref.bias)).numpy()
    got = s.reshape(5, -1) @ fc.weight.T + spec.readout.bias
    np.testing.assert_allclose(got, expect, atol=1e-5)


def test_netspec_residuals_get_delays_and_bias():
    g = toy_resnet()
    spec = build_netspec(g)
    syn = {(s.source, s.target): s for s in spec.synapses}
    assert syn[("a", "c")].kind == "sparse" and syn[("a", "c")].delay == 1  # identity shortcut, 1 step late
    assert syn[("c", "e")].kind == "conv" and syn[("c", "e")].delay == 1  # 1x1 conv shortcut
    assert syn[("b", "c")].delay == 0
    bn = g.nodes["bn"]
    np.testing.assert_allclose(syn[("a", "c")].weight.reshape(4, -1), np.repeat(bn.scale[:, None], 36, 1), rtol=1e-7)
    np.testing.assert_allclose(syn[("b", "c")].weight, g.nodes["conv2"].weight * bn.scale[:, None, None, None],
                               rtol=1e-7)
    assert spec.layer("c").bias[:, 0, 0] == pytest.approx(bn.shift, rel=1e-6)  # conv2 has no bias


def test_maxpool_of_spikes_becomes_sumpool_and_threshold():
    spec = build_netspec(maxpool_net())
    mp = spec.layer("mp")
    assert mp.kind == "maxpool" and mp.params.lam == 0 and mp.params.is_lif and mp.depth == 2
    (syn,) = spec.incoming("mp")
    assert syn.kind == "conv" and syn.groups == 4 and np.all(syn.weight == 1) and syn.stride == (2, 2)


def test_unsupported_op_is_named():
    g = chain_graph((1, 4, 4), [N.Conv2d("conv", weight=np.ones((1, 1, 1, 1), np.float32)), N.MaxPool2d("mp"),
                                N.Neuron("n"), N.Flatten("flat")], T=2, encoding="direct")
    with pytest.raises(D.GraphError, match="max-pool 'mp' reads 'conv' \\(conv2d\\), not spikes"):
        build_netspec(g)


def _foreign_net(T=6):
    """Hard reset (to 0.1) with the '>' rule, as NIR's LIF and snntorch's Leaky(reset_mechanism="zero")."""
    rng = np.random.default_rng(4)
    return chain_graph((6,), [N.Linear("fc", weight=rng.uniform(0, 0.8, (5, 6)).astype(np.float32)),
                              N.Neuron("snn_lif", params=ILIFParams(lam=0.9, lam_u=0.0, lam_i=0.0, reset="zero",
                                                                    v_reset=0.1, compare=">")),
                              N.Linear("fc2", weight=rng.uniform(-0.5, 1.0, (3, 5)).astype(np.float32))], T=T)


def test_foreign_hard_reset_neurons_reach_both_engines():
    """No refusal any more: the netspec carries reset/compare, and the torch engine (Lava's arithmetic)
    equals the runtime in float mode, spike for spike."""
    from ilif_deploy.converters.lava.engine import TorchEngine

    g = _foreign_net()
    spec = build_netspec(g)
    assert spec.layer("snn_lif").params.reset == "zero"
    x = (torch.rand(6, 20, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    _, rec = D.run(g, x, record=["snn_lif"], synapse_dtype=torch.float64)
    r = TorchEngine(spec, "float").run(x)
    assert torch.equal(r.spikes["snn_lif"].float(), rec["snn_lif"]) and 0.05 < rec["snn_lif"].mean() < 0.95


def test_artifact_roundtrip_without_running_lava(tmp_path):
    g = toy_resnet()
    info = export_graph(g, tmp_path / "toy.lava.h5")
    assert info["synapses"] == {"conv": 6, "sparse": 1, "dense": 1} and info["delay_relays"] == 2
    spec, graph = load(tmp_path / "toy.lava.h5")
    ref = build_netspec(g)
    assert [lay.name for lay in spec.layers] == ["a", "b", "c", "d", "e"]
    assert spec.layer("d").params == ILIFParams(lam=0.5, lam_u=0.0, lam_i=0.0) and spec.layer("d").kind == "neuron"
    for a, b in zip(spec.synapses, ref.synapses):
        assert (a.source, a.target, a.kind, a.delay, a.stride, a.padding) == \
               (b.source, b.target, b.kind, b.delay, b.stride, b.padding)
        np.testing.assert_array_equal(a.weight, b.weight)
    assert set(graph.nodes) == set(g.nodes)
    import h5py
    with h5py.File(tmp_path / "toy.lava.h5") as f:  # the layout docs/lava.md describes
        assert f["layer/0/type"][()] == b"input"
        assert f["layer/3/neuron/compartments"][()].tolist() == [b"u", b"v", b"ciu", b"ciu_drive", b"mpiu"]
        assert f["layer/3/neuron/family"][()] == b"ilif" and f["layer/3/type"][()] == b"neuron"
        assert f["layer/6/type"][()] == b"readout"


def test_a_consumed_spec_writes_the_same_file(tmp_path):
    # export_graph hands its spec over (consume=True): the float64 weights go once quantized, the file is the same
    from ilif_deploy.converters.lava import h5

    g = toy_resnet()
    kept, consumed = build_netspec(g), build_netspec(g)
    h5.write(kept, g, tmp_path / "kept.lava.h5")
    h5.write(consumed, g, tmp_path / "consumed.lava.h5", consume=True)
    assert (tmp_path / "kept.lava.h5").read_bytes() == (tmp_path / "consumed.lava.h5").read_bytes()
    assert all(s.weight is None for s in consumed.synapses) and all(s.weight is not None for s in kept.synapses)


@pytest.mark.parametrize("make, fixed", [(toy_resnet, None), (maxpool_net, None), (recurrent_net, None),
                                         (toy_resnet, FixedPoint(frac_bits=10, weight_bits=6))])
def test_building_as_it_writes_makes_the_same_file_and_spec(make, fixed, tmp_path):
    """``export_graph`` builds, quantizes and writes each layer in one pass (``h5.build_and_write``), never holding
    the float64 spec whole: the file is the one written from the whole spec, and the spec returned has the same
    structure without its weights."""
    from ilif_deploy.converters.lava import h5

    g = make()
    whole = build_netspec(g)
    h5.write(whole, g, tmp_path / "whole.lava.h5", fixed=fixed)
    spec = h5.build_and_write(g, tmp_path / "streamed.lava.h5", fixed=fixed)
    assert (tmp_path / "whole.lava.h5").read_bytes() == (tmp_path / "streamed.lava.h5").read_bytes()

    def structure(sp):
        return ([(lay.name, lay.kind, lay.shape, lay.depth) for lay in sp.layers + [sp.readout]],
                [(s.source, s.target, s.kind, s.in_shape, s.out_shape, s.delay, s.recurrent) for s in sp.synapses])

    assert structure(spec) == structure(whole) and all(s.weight is None for s in spec.synapses)
    assert load(tmp_path / "streamed.lava.h5")[0].synapses  # the reader takes it (its structure checked)


def test_bad_artifacts_are_refused(tmp_path):
    (tmp_path / "x.lava.h5").write_text("not hdf5")
    with pytest.raises(LavaFileError, match="not an HDF5 file"):
        load(tmp_path / "x.lava.h5")
    import h5py
    with h5py.File(tmp_path / "y.lava.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(LavaFileError, match="ilif-export MODEL --target lava"):
        load(tmp_path / "y.lava.h5")


def test_weight_quantization_is_8bit_with_one_exponent():
    from ilif_deploy.converters.lava.netspec import Synapse
    rng = np.random.default_rng(0)
    syns = [Synapse("a", "b", "dense", rng.normal(0, 0.3, (6, 5)), (5,), (6,)),
            Synapse("c", "b", "dense", rng.normal(0, 0.1, (6, 4)), (4,), (6,))]
    fp = FixedPoint(frac_bits=16)
    mants, a_exp = quantize_weights([s.weight for s in syns], [source_frac_bits(s, fp) for s in syns], fp)
    for m, s in zip(mants, syns):
        assert m.min() >= -256 and m.max() <= 254 and np.all(m % 2 == 0)
        lsb = 2.0 ** (a_exp - fp.frac_bits)
        assert np.abs(m * lsb - s.weight).max() <= lsb  # one mantissa step (rounding of m/2)
    assert max(np.abs(m).max() for m in mants) >= 128  # the exponent uses the full 8-bit range


def test_fast_conv_equals_lavas_conv(lava):
    from lava.proc.conv import utils

    from ilif_deploy.converters.lava.process.fast_conv import conv_whc
    rng = np.random.default_rng(0)
    for C, Co, k, s, p, d, g in [(3, 8, 3, 1, 1, 1, 1), (4, 8, 3, 2, 1, 1, 2), (6, 6, 1, 2, 0, 1, 1),
                                 (4, 4, 3, 1, 2, 2, 4)]:
        x = (rng.random((9, 7, C)) > 0.5).astype(float)
        w = rng.normal(size=(Co, k, k, C // g))
        ref = utils.conv(x, w, (k, k), (s, s), (p, p), (d, d), g)
        np.testing.assert_allclose(conv_whc(x, w, (s, s), (p, p), (d, d), g, np.float64), ref, atol=1e-12)


def test_missing_lava_says_how_to_install(monkeypatch, capsys):
    import ilif_deploy.converters.lava.compat as compat
    from ilif_deploy.cli import simulate as cli

    monkeypatch.setitem(sys.modules, "lava", None)
    with pytest.raises(LavaUnavailable, match="scripts/setup.sh"):
        compat.require_lava()
    assert cli.main(["whatever.lava.h5"]) == 2
    assert "scripts/setup.sh" in capsys.readouterr().err


# ------------------------------------------------------------------ Lava runs

@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_vectors_lava_float_process(lava, golden, case):
    from ilif_deploy.converters.lava.network import run_layer

    r = run_layer(golden[f"{case}/x"], ILIFParams.from_tau(float(golden[f"{case}/tau"])))
    assert int((r["spikes"] != golden[f"{case}/spikes"]).sum()) == 0
    for ours, theirs in (("v", "v"), ("mpiu", "mpiu"), ("ciu", "ciu_pre")):
        ref = golden[f"{case}/{theirs}"]
        assert np.all(np.abs(r[ours] - ref) <= 1e-5 * np.maximum(1.0, np.abs(ref))), ours


def test_ciu_from_net_current_matches_torch_runtime(lava):
    """ciu_source="net" (the paper's Eq. 15) reaches the Lava process and matches the torch runtime."""
    from ilif_deploy.converters.lava.network import run_layer
    from ilif_deploy.runtime import run_neuron

    x = np.random.default_rng(5).uniform(-1.0, 3.0, (10, 48)).astype(np.float32)
    p = ILIFParams(lam=0.3, lam_u=0.8, lam_i=0.5, ciu_source="net")
    r = run_layer(x, p)
    ref, states = run_neuron(N.Neuron("n", (48,), params=p), torch.from_numpy(x), return_states=True)
    np.testing.assert_array_equal(r["spikes"], ref.numpy())
    np.testing.assert_array_equal(r["ciu"], states["ciu"].numpy())
    other = run_neuron(N.Neuron("n", (48,), params=ILIFParams(lam=0.3, lam_u=0.8, lam_i=0.5)), torch.from_numpy(x))
    assert (other.numpy() != r["spikes"]).any()  # the two CIU sources really differ on this input


def test_golden_vectors_fixed_point_network(lava, golden):
    """The golden inputs through a Lava network (sequence input -> Dense -> ILIF) in fixed point:
    Loihi-style integers change very few spikes, and nothing overflows."""
    from ilif_deploy.converters.lava import simulate

    mismatches = total = 0
    for case in GOLDEN_CASES:
        g, x = golden_net(golden, case)
        rep = simulate(g, x=x[None], mode="fixed", progress=False)
        assert rep.details["overflows"] == {"ilif": 0}
        mismatches += rep.total_flips
        total += x.size
    assert mismatches <= 0.001 * total  # measured: 2 of 18944


def test_foreign_hard_reset_neurons_run_on_lava(lava, tmp_path):
    """Hard reset + '>' on Lava: float spike-exact with the runtime; fixed equal to the torch engine."""
    from ilif_deploy.converters.lava import simulate
    from ilif_deploy.converters.lava.runner import verify_against_lava
    from ilif_deploy.data import as_dataset

    g = _foreign_net()
    export_graph(g, tmp_path / "foreign.lava.h5")
    x = (np.random.default_rng(1).random((8, 6, 6)) < 0.5).astype(np.float32)
    rep = simulate(tmp_path / "foreign.lava.h5", x=x, mode="float", progress=False)
    assert rep.spike_agreement == {"snn_lif": 1.0} and rep.prediction_agreement == 1.0
    assert 0.05 < rep.firing_rate["snn_lif"] < 0.95
    spec, _ = load(tmp_path / "foreign.lava.h5")
    fixed = verify_against_lava(spec, as_dataset(x, (6,), 6), "fixed")
    assert fixed.total_flips == 0 and fixed.max_abs_logit_diff == 0.0


def test_lif_is_ilif_with_units_off(lava):
    """lam_u = lam_i = 0: the Lava process is a soft-reset LIF (hand-computed reference)."""
    from ilif_deploy.converters.lava.network import run_layer

    x = np.random.default_rng(3).uniform(-0.5, 1.6, (12, 64)).astype(np.float32)
    lam = np.float32(0.6)
    r = run_layer(x, ILIFParams(lam=0.6, lam_u=0.0, lam_i=0.0))
    m = np.zeros(64, np.float32)
    for t in range(12):
        u = lam * m + x[t]
        s = (u >= 1.0).astype(np.float32)
        m = u - s
        np.testing.assert_array_equal(r["spikes"][t], s)
        np.testing.assert_array_equal(r["v"][t], m)
    assert r["spikes"].sum() > 50 and np.all(r["mpiu"] == 0) and np.all(r["ciu"] == 0)


def test_the_neuron_process_holds_state_in_vars_and_constants_in_proc_params(lava):
    """Lava's own LIFReset keeps constants in proc_params; so does ours: its Vars are the state, two counters and
    the number of steps of real samples in a run (which steps the counters count)
    (29 Vars before the neuron families, 21 of them constants), its models read the project's ILIFParams and
    FixedLayer themselves."""
    from ilif_deploy.converters.lava.process import ILIF

    p = ILIFParams.from_tau(1.1, v_min=-1.0)
    proc = ILIF(shape=(3,), params=p, bias=0.5, period=4)
    assert sorted(v.name for v in proc.vars.members) == ["ciu", "ciu_drive", "live_steps", "mpiu", "overflows", "syn",
                                                          "u", "v", "wraps"]
    assert proc.proc_params["params"] is p and proc.proc_params["fixed"].v_min_int == -(1 << 16)
    assert proc.proc_params["bias"].tolist() == [0.5] * 3 and proc.proc_params["period"] == 4


def test_maxpool_net_float_is_spike_exact(lava):
    from ilif_deploy.converters.lava import simulate

    x = np.random.default_rng(1).random((5, 2, 8, 8)).astype(np.float32)
    rep = simulate(maxpool_net(), x=x, mode="float", progress=False)
    assert rep.spike_agreement == {"a": 1.0, "mp": 1.0, "b": 1.0}
    assert 0.2 < rep.firing_rate["mp"] < 0.95


def test_digits_fixed_few_samples(lava, digits_graph):
    from ilif_deploy.converters.lava import simulate

    rep = simulate(digits_graph, samples=12, mode="fixed", progress=False)
    assert rep.details["overflows"] == {"neuron1": 0, "neuron2": 0}
    assert 0.95 < rep.overall_spike_agreement < 1.0  # close, but really quantized
    assert rep.prediction_agreement >= 11 / 12


def test_fixed_point_overflow_is_counted(lava):
    g = chain_graph((4,), [N.Linear("fc0", weight=(100 * np.eye(4)).astype(np.float32)), N.Neuron("n"),
                           N.Linear("fc1", weight=np.ones((2, 4), np.float32))], T=3, encoding="direct")
    from ilif_deploy.converters.lava.network import build
    spec = build_netspec(g)
    with build(spec, mode="fixed", samples=1, fixed=FixedPoint(frac_bits=16)) as net:
        net.run(np.ones((1, 3, 4), np.float32) * np.array([1.0, 0.5, 0.0, 0.01], np.float32))
        over = net.overflows()
    assert over["n"] >= 3  # 100 * 2**16 > 2**23: the first neuron's input saturates every step


def test_cli_export_and_simulate(lava, tmp_path, digits_ilif_path):
    from ilif_deploy.cli import export
    from ilif_deploy.cli import simulate as sim

    out = tmp_path / "digits.lava.h5"
    assert export.main([str(digits_ilif_path), "--target", "lava", "-o", str(out)]) == 0
    assert sim.main([str(out), "--samples", "4", "--json", str(tmp_path / "r.json"), "--no-progress"]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    for key in ("mode", "samples", "timesteps", "accuracy_reference", "accuracy_candidate", "spike_agreement",
                "overall_spike_agreement", "first_flip_layers", "lava_processes"):
        assert key in rep
    assert rep["samples"] == 4 and rep["timesteps"] == 4 and rep["overall_spike_agreement"] == 1.0


# ------------------------------------------------------------------ slow (CI)

@pytest.mark.slow
def test_digits_float_full_test_set(lava, digits_graph):
    from ilif_deploy.converters.lava import simulate

    rep = simulate(digits_graph, samples=None, mode="float", progress=False)
    assert rep.samples == 450
    assert rep.spike_agreement == {"neuron1": 1.0, "neuron2": 1.0}
    assert rep.prediction_agreement == 1.0 and rep.accuracy_candidate == rep.accuracy_reference


@pytest.mark.slow
def test_digits_fixed_accuracy_drop(lava, digits_graph):
    from ilif_deploy.converters.lava import simulate

    rep = simulate(digits_graph, samples=None, mode="fixed", progress=False)
    assert rep.samples == 450 and sum(rep.details["overflows"].values()) == 0
    assert rep.accuracy_reference - rep.accuracy_candidate <= 0.005


@pytest.mark.slow
@pytest.mark.parametrize("T", [4])  # T = 2: tests/test_conformance.py
def test_authors_resnet18_float_spike_exact(lava, authors_resnet18_path, tmp_path, T):
    from ilif_deploy.converters.lava import simulate

    g = D.trace(D.load_model(authors_resnet18_path, arch="spiking_resnet18", num_classes=10), (3, 32, 32), T)
    export_graph(g, tmp_path / "rn18.lava.h5")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)).numpy()
    rep = simulate(tmp_path / "rn18.lava.h5", x=x, mode="float", progress=False)
    assert len(rep.spike_agreement) == 17
    assert rep.overall_spike_agreement == 1.0 and rep.prediction_agreement == 1.0
    assert all(0.1 < r < 0.6 for r in rep.firing_rate.values())
