"""Fixed point as one pure definition (converters/lava/fixed.py) and the batched torch engine:
the step on the authors' golden vectors in numpy and torch without Lava, hand-computed integer cases,
and the engine bit for bit against Lava's fixed_pt and floating_pt models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ilif_deploy as D
from ilif_deploy.converters.lava.engine import TorchEngine
from ilif_deploy.converters.lava.fixed import (STATE_MAX, FixedLayer, FixedPoint, ilif_step_fixed, quantize_input,
                                               quantize_spec, torch_fixed_ops, wrap, zero_fixed_state)
from ilif_deploy.converters.lava.netspec import build_netspec
from ilif_deploy.errors import UserError
from ilif_deploy.neuron_step import ILIFParams
from zoo import conv_wrap_net, golden_net, wrap_net

GOLDEN_CASES = ["tau1.1_T8", "tau2.0_T16", "tau1.1_T6_strong", "tau4.0_T20_weak"]


def _run_step(a_in: np.ndarray, layer: FixedLayer, xp):
    """ilif_step_fixed over ``a_in`` [T, n] from zero state, in numpy or torch."""
    ops = torch_fixed_ops() if xp is torch else None
    if xp is torch:
        layer = FixedLayer(**{**layer.__dict__, "bias_int": torch.as_tensor(layer.bias_int)})
    state = zero_fixed_state(a_in.shape[1:], xp)
    spikes, over = [], 0
    for t in range(a_in.shape[0]):
        a = xp.as_tensor(a_in[t]) if xp is torch else a_in[t]
        step = ilif_step_fixed(a, state, layer, ops) if ops else ilif_step_fixed(a, state, layer)
        state, over = step.state, over + int(step.overflows)
        spikes.append(np.asarray(step.spikes))
    return np.stack(spikes), over


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_vectors_through_the_pure_step_numpy_and_torch(golden, case):
    """The step alone (milliseconds, no Lava): numpy and torch give the same integers, and against the
    authors' float neuron only quantisation differs (measured: 2 flips in 18,944 over the four cases)."""
    g, x = golden_net(golden, case)
    q = quantize_spec(build_netspec(g))
    ints, saturated = quantize_input(x.astype(np.float64), q.fp)
    assert int(saturated) == 0
    a_in = ints @ q.mantissas[0].T  # through the identity synapse's (doubled) mantissas
    layer = q.layers["ilif"]
    s_np, over_np = _run_step(a_in, layer, np)
    s_t, over_t = _run_step(a_in, layer, torch)
    np.testing.assert_array_equal(s_np, s_t)
    assert over_np == over_t == 0
    flips = int((s_np != golden[f"{case}/spikes"]).sum())
    assert flips <= 2, flips
    assert s_np.sum() > 0


def test_integer_step_by_hand():
    """Two neurons, LIF with 12-bit decay 0.5 and threshold 1.0 at 4 fractional bits: every value checked."""
    layer = FixedLayer.from_params(ILIFParams(lam=0.5, v_th=1.0, lam_u=0.0, lam_i=0.0), np.zeros(2), 0,
                                   FixedPoint(frac_bits=4))
    assert (layer.vth_int, layer.decay_lam) == (16, 2048)
    state = zero_fixed_state((2,))
    seen = []
    for a in ([10, -7], [10, -7], [3, 30]):
        step = ilif_step_fixed(np.array(a, np.int64), state, layer)
        state = step.state
        seen.append((step.spikes.tolist(), state.v.tolist()))
    # v: 10 -> 5+10=15 (<16) ; 7+3=10 (decay of 15 rounds toward zero: 7)   neuron 2: -7 -> -3-7=-10 -> -5+30=25>=16: 9
    assert seen == [([0, 0], [10, -7]), ([0, 0], [15, -10]), ([0, 1], [10, 9])]


def test_synaptic_current_in_fixed_point_by_hand():
    """A CubaLIF current (12-bit decay 0.5) between the input and an IF neuron (lam 1, threshold 2.0) at 4
    fractional bits: i = decay(i) + x (toward zero), then the membrane integrates i."""
    layer = FixedLayer.from_params(ILIFParams(lam=1.0, v_th=2.0, lam_u=0.0, lam_i=0.0, reset="zero", compare=">"),
                                   np.zeros(2), 0, FixedPoint(frac_bits=4), syn_lam=0.5)
    assert (layer.decay_syn, layer.vth_int) == (2048, 32)
    state, syn, seen = zero_fixed_state((2,)), np.zeros(2, np.int64), []
    for a in ([10, -5], [0, -5], [7, 0], [0, 0]):
        step = ilif_step_fixed(np.array(a, np.int64), state, layer, syn=syn)
        state, syn = step.state, step.syn
        seen.append((syn.tolist(), state.v.tolist(), step.spikes.tolist()))
    # neuron 1: i 10, 5, 2+7=9, 4; v 10, 15, 24, 28.  neuron 2: i -5, -2-5=-7, -3, -1; v -5, -12, -15, -16
    assert seen == [([10, -5], [10, -5], [0, 0]), ([5, -7], [15, -12], [0, 0]), ([9, -3], [24, -15], [0, 0]),
                    ([4, -1], [28, -16], [0, 0])]
    step = ilif_step_fixed(np.array([10, 0], np.int64), state, layer, syn=syn)
    assert step.syn.tolist() == [12, 0] and step.spikes.tolist() == [1, 0] and step.state.v.tolist() == [0, -16]


def test_saturation_and_wraps_are_counted():
    layer = FixedLayer.from_params(ILIFParams(lam=0.0, v_th=1.0, lam_u=0.0, lam_i=0.0), np.zeros(3), 0,
                                   FixedPoint(frac_bits=16))
    step = ilif_step_fixed(np.array([STATE_MAX + 5, 0, -(STATE_MAX + 1)], np.int64), zero_fixed_state((3,)), layer)
    assert int(step.overflows) == 2  # x of the two outer neurons; saturated, nothing downstream leaves the range
    assert step.spikes.tolist() == [1, 0, 0] and step.state.v.tolist() == [STATE_MAX - 2 ** 16, 0, -STATE_MAX]
    v, n = wrap(np.array([2 ** 31, 5, -(2 ** 31) - 1]), 32)
    assert v.tolist() == [-(2 ** 31), 5, 2 ** 31 - 1] and int(n) == 2


def test_hard_reset_and_strict_rule_in_fixed_point():
    layer = FixedLayer.from_params(ILIFParams(lam=1.0, v_th=1.0, lam_u=0.0, lam_i=0.0, reset="zero",
                                              v_reset=0.25, compare=">"), np.zeros(2), 0, FixedPoint(frac_bits=8))
    step = ilif_step_fixed(np.array([256, 300], np.int64), zero_fixed_state((2,)), layer)
    assert step.spikes.tolist() == [0, 1]  # 256 == v_th does not fire under '>'
    assert step.state.v.tolist() == [256, 64]  # hard reset to 0.25 * 2**8


def test_engine_counts_the_int32_wrap_of_lavas_dense():
    spec = build_netspec(wrap_net())
    fp = FixedPoint(frac_bits=16, input_frac_bits=8)
    x = torch.full((2, 1, 8), 16384.0)
    r = TorchEngine(spec, "fixed", fp).run(x)
    # the input fits (16384 * 2**8 = 2**22), the weight's mantissa is 128 (a_exp 1): 8 * 128 * 2**22 = 2**32 -> 0
    assert quantize_spec(spec, fp).mantissas[0].tolist() == [[128] * 8]
    assert r.input_saturated == 0 and r.synapse_wraps["n"] == 2 and r.spikes["n"].sum() == 0


def test_engine_matches_the_runtime_in_float_mode_on_the_zoo(graph_of):
    """Float mode is Lava's floating_pt arithmetic: on the residual and max-pool zoo graphs the engine's
    spikes equal the runtime with float64 synapses (what Lava float matches, tests/test_lava.py)."""
    from ilif_deploy.ir.lowering import fold_batchnorm

    for name in ("toy_resnet", "maxpool_net"):
        g = graph_of(name)
        spec = build_netspec(g)
        x = torch.rand(g.timesteps, 6, *g.input_shape, generator=torch.Generator().manual_seed(3))
        if g.encoding == "direct":
            x = x[:1].expand(g.timesteps, *x.shape[1:]).contiguous()
        names = [lay.name for lay in spec.layers]
        _, rec = D.run(fold_batchnorm(g), x, record=names, synapse_dtype=torch.float64)
        r = TorchEngine(spec, "float").run(x)
        for k in names:
            assert torch.equal(r.spikes[k].float(), rec[k].float()), (name, k)
        assert sum(float(r.spikes[k].float().mean()) for k in names) > 0


def test_engine_refuses_sums_beyond_exact_float64():
    g = wrap_net()
    spec = build_netspec(g)
    q = quantize_spec(spec)
    q.mantissas[0] = q.mantissas[0] * 2 ** 40
    with pytest.raises(UserError, match="beyond exact float64"):
        TorchEngine(spec, "fixed", quantized=q)


# ------------------------------------------------------------------ against Lava

def test_pure_step_equals_the_lava_fixed_process(lava, golden):
    """The integration test of the step: Lava's fixed_pt network on the golden inputs gives the step's
    spikes and overflow counts exactly."""
    from ilif_deploy.converters.lava.network import build

    for case in GOLDEN_CASES[:2]:
        g, x = golden_net(golden, case)
        spec = build_netspec(g)
        q = quantize_spec(spec)
        ints, _ = quantize_input(x.astype(np.float64), q.fp)
        s_ref, over_ref = _run_step(ints @ q.mantissas[0].T, q.layers["ilif"], np)
        with build(spec, mode="fixed", samples=1, record=True) as net:
            _, spikes = net.run(x[None])
            over = net.overflows()
        np.testing.assert_array_equal(spikes["ilif"][:, 0], s_ref)
        assert over == {"ilif": over_ref}
    spec = build_netspec(wrap_net())  # Lava's Dense wraps the same sum to 0: same (no) spikes as the engine
    with build(spec, mode="fixed", samples=1, record=True) as net:
        _, spikes = net.run(np.full((1, 2, 8), 16384.0, np.float32))
    r = TorchEngine(spec, "fixed").run(torch.full((2, 1, 8), 16384.0))
    np.testing.assert_array_equal(spikes["n"], r.spikes["n"].numpy())


def test_lava_counts_the_wraps_of_its_dense_and_conv_as_the_engine_does(lava):
    """Lava's fixed_pt Dense (int32) and Conv (24 bits) wrap silently; the counting processes run the same
    arithmetic and count every wrapped sum, equal to the torch engine's count and the hand count."""
    from ilif_deploy.converters.lava.network import build
    from ilif_deploy.converters.lava.runner import FixedPointWarning, simulate

    # dense: 8 x 128 x 2**22 = 2**32 at both steps -> 2 wraps; conv: each of the 16 outputs sums 4 to 9
    # inputs of 128 x 25600 (the corner's 4 x 128 x 25600 = 1.3e7 > 2**23 already) at both steps -> 32
    for g, x, hand in ((wrap_net(), np.full((1, 2, 8), 16384.0, np.float32), 2),
                       (conv_wrap_net(), np.full((1, 2, 1, 4, 4), 100.0, np.float32), 32)):
        spec = build_netspec(g)
        with build(spec, mode="fixed", samples=1, record=True) as net:
            _, spikes = net.run(x)
            wraps = net.synapse_wraps()
        r = TorchEngine(spec, "fixed").run(torch.as_tensor(x).transpose(0, 1))
        assert wraps == r.synapse_wraps == {"n": hand, "output": 0}
        np.testing.assert_array_equal(spikes["n"], r.spikes["n"].numpy())
    with pytest.warns(FixedPointWarning, match="layer 'n': synaptic sums can reach"):
        rep = simulate(wrap_net(), x=np.full((1, 8), 16384.0, np.float32), mode="fixed", engine="lava",
                       progress=False)
    assert rep.details["synapse_wraps"] == {"n": 2, "output": 0}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["digits_ilif", "digits_lif"])
@pytest.mark.parametrize("mode", ["fixed", "float"])
def test_engine_equals_lava_on_all_450_digits(lava, model, mode):
    from ilif_deploy.converters import open_graph
    from ilif_deploy.converters.lava.runner import verify_against_lava
    from ilif_deploy.data import open_data

    g = open_graph(f"example:{model}")
    data = open_data("digits", input_shape=g.input_shape, timesteps=g.timesteps)
    rep = verify_against_lava(build_netspec(g), data, mode, batch=450)
    assert rep.samples == 450 and rep.total_flips == 0 and rep.overall_spike_agreement == 1.0
    assert rep.max_abs_logit_diff == 0.0 and rep.prediction_agreement == 1.0


@pytest.mark.slow
def test_engine_equals_lava_fixed_on_a_resnet18_and_a_vgg11_sample(lava, authors_resnet18_path,
                                                                      authors_vgg11_path):
    from ilif_deploy.converters.lava.runner import verify_against_lava
    from ilif_deploy.data import as_dataset

    rn = D.trace(D.load_model(authors_resnet18_path, arch="spiking_resnet18", num_classes=10), (3, 32, 32), 2)
    vgg = D.trace(D.load_model(authors_vgg11_path, arch="spiking_vgg11_bn", dataset="dvs-cifar10"), (2, 48, 48), 4)
    x_rn = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)).numpy()
    x_vgg = (torch.rand(1, 4, 2, 48, 48, generator=torch.Generator().manual_seed(2)) < 0.3).float().numpy()
    for g, x in ((rn, x_rn), (vgg, x_vgg)):
        spec = build_netspec(g)
        rep = verify_against_lava(spec, as_dataset(x, g.input_shape, g.timesteps), "fixed")
        assert rep.total_flips == 0 and rep.max_abs_logit_diff == 0.0, rep.first_flip_layers
        assert min(rep.firing_rate.values()) > 0


def test_lava_file_stores_each_array_once_and_its_mantissas_are_what_runs(tmp_path):
    import h5py

    from ilif_deploy.converters.lava import LavaFileError, export_graph, load
    from zoo import toy_resnet

    g = toy_resnet()
    path = tmp_path / "toy.lava.h5"
    export_graph(g, path)
    spec, _ = load(path)
    ref = quantize_spec(build_netspec(g))
    assert spec.quantized.fp == FixedPoint() and spec.quantized.readout_exp == ref.readout_exp
    assert all(spec.quantized.layers[k].a_exp == ref.layers[k].a_exp for k in ref.layers)
    for a, b in zip(spec.quantized.mantissas, ref.mantissas):
        np.testing.assert_array_equal(a, b)
    with h5py.File(path) as f:
        arrays = []
        f.visititems(lambda k, v: arrays.append((k, v.dtype, v.size)) if isinstance(v, h5py.Dataset) else None)
    floats = [(k, dt) for k, dt, size in arrays if dt.kind == "f" and size > 3]
    assert floats == []  # the float weights live only in the IR graph (float32)
    mants = [(dt, size) for k, dt, size in arrays if k.endswith("mantissa")]
    assert {dt for dt, _ in mants} == {np.dtype(np.int8)}
    assert sum(size for _, size in mants) == sum(np.size(s.weight) for s in spec.synapses)
    # the stored mantissas are what runs: zero one layer's and its neurons fall silent
    with h5py.File(path, "r+") as f:
        name = next(k for k in f["layer"] if k != "0" and f[f"layer/{k}/name"][()] == b"b")
        m = f[f"layer/{name}/synapse/0/mantissa"]
        m[...] = 0
    edited, _ = load(path)
    x = torch.rand(g.timesteps, 3, *g.input_shape, generator=torch.Generator().manual_seed(0))
    before = TorchEngine(spec, "fixed").run(x).spikes["b"].sum()
    after = TorchEngine(edited, "fixed", quantized=edited.quantized).run(x).spikes["b"].sum()
    assert before > 0 and after == 0
    with h5py.File(path, "r+") as f:  # a listed shape that the IR graph does not build
        del f[f"layer/{name}/depth"]
        f[f"layer/{name}/depth"] = 7
    with pytest.raises(LavaFileError, match="layers listed in the file differ from what its IR graph builds"):
        load(path)


def test_compiled_fixed_engine_gives_the_same_integers(digits_ilif_graph):
    """torch.compile fuses each layer's loop; integer arithmetic leaves it no rounding to change."""
    from ilif_deploy.data import open_data

    g = digits_ilif_graph
    spec = build_netspec(g)
    (b,) = list(open_data("digits", input_shape=g.input_shape, timesteps=g.timesteps).take(64).batches(64, 4))
    eager, fused = TorchEngine(spec, "fixed").run(b.x), TorchEngine(spec, "fixed", compile=True).run(b.x)
    for k in eager.spikes:
        assert torch.equal(eager.spikes[k], fused.spikes[k])
    assert torch.equal(eager.output, fused.output) and eager.overflows == fused.overflows


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_torch_integer_ops_equal_numpys_across_the_24_bit_range(dtype):
    """The torch ops (decay made in float64, fire as a clamp, the table as index_select) give numpy's integers on
    the values a step can hold, negative ones and the range's ends included, in int32 and int64."""
    from ilif_deploy.converters.lava.fixed import NUMPY_FIXED

    rng = np.random.default_rng(3)
    v = np.concatenate([rng.integers(-STATE_MAX, STATE_MAX + 1, 20000), [-STATE_MAX, STATE_MAX, -1, 0, 1, 4095]])
    vt, ops = torch.as_tensor(v, dtype=dtype), torch_fixed_ops()
    for d in (0, 1, 2047, 2048, 3000, 4095, 4096):
        got = ops.decay(vt, d)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.numpy(), NUMPY_FIXED.decay(v, d))
    for vth in (1, 100, 65536):
        for strict in (False, True):
            got = ops.fire(vt, vth, strict)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got.numpy(), NUMPY_FIXED.fire(v, vth, strict))
    layer = FixedLayer.from_params(ILIFParams(lam=0.5), np.zeros(1), 0, FixedPoint())
    idx = np.clip(v >> 10, 0, 1023)
    got = ops.table(layer, torch.as_tensor(idx, dtype=dtype))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), NUMPY_FIXED.table(layer, idx))


@pytest.mark.parametrize("model", ["digits_ilif_graph", "digits_lif_graph"])
def test_layers_proven_in_range_step_in_int32_with_the_same_integers(model, request, monkeypatch):
    """A layer whose batch input proves (state_bound) that no value leaves 24 bits steps without saturation, in
    int32; with every proof withheld the engine saturates and counts in int64: the same spikes, readout, counts."""
    from ilif_deploy.converters.lava import engine as E
    from ilif_deploy.data import open_data

    g = request.getfixturevalue(model)
    spec = build_netspec(g)
    (b,) = list(open_data("digits", input_shape=g.input_shape, timesteps=g.timesteps).take(128).batches(128, 4))
    seen = []
    sequence = E.fixed_sequence
    monkeypatch.setattr(E, "fixed_sequence", lambda a_in, *a, **k: seen.append(a_in.dtype) or sequence(a_in, *a, **k))
    proven = TorchEngine(spec, "fixed").run(b.x)
    assert seen == [torch.int32] * len(spec.layers)  # digits' layers are all proven on real data
    seen.clear()
    monkeypatch.setattr(E.FixedBounds, "in_range_on", lambda *a: False)
    batch = E.FixedBounds.batch
    monkeypatch.setattr(E.FixedBounds, "batch", lambda *a: (batch(*a)[0], {k: False for k in batch(*a)[1]}))
    saturating = TorchEngine(spec, "fixed").run(b.x)
    assert seen == [torch.int64] * len(spec.layers)
    for k in proven.spikes:
        assert torch.equal(proven.spikes[k], saturating.spikes[k]) and proven.spikes[k].sum() > 0
    assert torch.equal(proven.output, saturating.output)
    assert proven.overflows == saturating.overflows and proven.synapse_wraps == saturating.synapse_wraps


def test_static_check_names_the_layer_that_can_wrap_before_it_runs():
    import warnings

    from ilif_deploy.converters.lava.runner import FixedPointWarning, simulate

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rep = simulate(wrap_net(), x=np.full((1, 8), 16384.0, np.float32), mode="fixed", engine="torch",
                       progress=False)
    risks = [str(w.message) for w in seen if issubclass(w.category, FixedPointWarning)]
    assert len(risks) == 1 and "layer 'n': synaptic sums can reach" in risks[0]
    assert rep.details["synapse_wraps"]["n"] == 2
    with warnings.catch_warnings(record=True) as seen:  # small inputs: proven safe, nothing said
        warnings.simplefilter("always")
        simulate(wrap_net(), x=np.full((1, 8), 0.5, np.float32), mode="fixed", engine="torch", progress=False)
    assert not [w for w in seen if issubclass(w.category, FixedPointWarning)]
