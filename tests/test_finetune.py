"""Fixed-point-aware fine-tuning (converters/lava/finetune.py): the straight-through forward is the fixed step and
the engine to the integer, gradients reach weights, biases and learned decays, the fine-tuned network exports to
the integers it was trained with and runs on the engine (and Lava) spike for spike as the fine-tuning forward."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from feature_matrix import VARIANTS, example
from feature_matrix import BASE as FEATURE_BASE
from ilif_deploy.converters import open_graph
from ilif_deploy.converters.lava.engine import TorchEngine
from ilif_deploy.converters.lava.finetune import FixedTuner, finetune, same_integers, ste_fixed_ops, tuned_graph
from ilif_deploy.converters.lava.fixed import (STATE_MAX, FixedLayer, FixedPoint, ilif_step_fixed, native_format,
                                               quantize_spec, torch_fixed_ops, zero_fixed_state)
from ilif_deploy.converters.lava.netspec import build_netspec
from ilif_deploy.data import open_data
from ilif_deploy.errors import GraphError
from ilif_deploy.neuron_step import ILIFParams, ILIFState
from zoo import maxpool_net, recurrent_lif_net, recurrent_net, toy_resnet


def _layer_params(rng):
    """Random neuron parameters: every feature variant, with or without the inhibitory units."""
    feature = list(VARIANTS)[rng.integers(len(VARIANTS))]
    variant = {k: v for k, v in VARIANTS[feature].items() if k not in ("node", "syn_lam")}
    p = {**FEATURE_BASE, **variant, "lam": float(rng.uniform(0.05, 0.95)) if "charge" not in variant else 0.5,
         "v_th": float(rng.uniform(0.2, 2.0))}
    if not p.get("multi_spike") and p.get("reset") != "subtract_next" and rng.random() < 0.6:
        p.update(lam_u=float(rng.uniform(0, 1)), lam_i=float(rng.uniform(0, 1)),
                 ciu_source=["synaptic", "net"][rng.integers(2)])
    if p.get("v_min") is not None:
        p["v_min"] = -0.125
    return feature, ILIFParams(**p)


@pytest.mark.parametrize("seed", range(12))
def test_straight_through_step_is_the_fixed_step_to_the_integer(seed):
    """On random layers of every feature, random integer inputs (some large enough to saturate) and 10 steps,
    ilif_step_fixed with the straight-through ops on float64 gives exactly the int64 engine ops' spikes, states,
    currents and saturation counts."""
    rng = np.random.default_rng(seed)
    feature, params = _layer_params(rng)
    frac = int(rng.integers(4, 17))
    fp = FixedPoint(frac_bits=frac)
    shape = (3, 17)
    bias = rng.normal(0, 0.3, size=shape)
    layer = FixedLayer.from_params(params, bias, int(rng.integers(-3, 4)), fp, syn_lam=float(rng.choice([0, 0.5])))
    ints = dataclasses.replace(layer, bias_int=torch.as_tensor(layer.bias_int))
    floats = dataclasses.replace(layer, bias_int=torch.as_tensor(layer.bias_int, dtype=torch.float64))
    ops_i, ops_f = torch_fixed_ops(), ste_fixed_ops(frac)
    s_i = zero_fixed_state(shape, torch)
    s_f = ILIFState(*(v.to(torch.float64) for v in s_i))
    syn_i = torch.zeros(shape, dtype=torch.int64) if layer.decay_syn else None
    syn_f = None if syn_i is None else syn_i.to(torch.float64)
    scale = 2 ** max(frac - layer.a_exp, 0)
    fired = over = 0
    for t in range(10):
        a = torch.as_tensor(rng.integers(-2, 4, size=shape) * scale * rng.choice([1, 1, 40, 4000]))
        a = a.clamp(-STATE_MAX, STATE_MAX)
        si = ilif_step_fixed(a, s_i, ints, ops_i, syn_i)
        sf = ilif_step_fixed(a.to(torch.float64), s_f, floats, ops_f, syn_f)
        assert torch.equal(si.spikes.to(torch.float64), sf.spikes), (feature, t)
        for k in ILIFState._fields:
            assert torch.equal(getattr(si.state, k).to(torch.float64), getattr(sf.state, k)), (feature, t, k)
        assert torch.equal(si.u.to(torch.float64), sf.u)
        assert int(si.overflows) == int(sf.overflows)
        s_i, s_f, syn_i, syn_f = si.state, sf.state, si.syn, sf.syn
        fired, over = fired + int(si.spikes.sum()), over + int(si.overflows)
    assert fired > 0, feature


def _digits(name):
    g = open_graph(f"example:{name}")
    (batch,) = open_data("digits", input_shape=g.input_shape, timesteps=g.timesteps).batches(450, g.timesteps)
    return g, batch


@pytest.mark.parametrize("name", ["digits_ilif", "digits_lif"])
def test_fine_tuning_forward_is_the_engine_on_all_450_digits(name):
    """The differentiable forward (before any step) equals the torch engine's fixed run, readout and every
    spike, on the whole test set at 4-bit weights; a loss on it reaches every weight and bias."""
    g, b = _digits(name)
    spec, fp = build_netspec(g), FixedPoint(weight_bits=4)
    tuner = FixedTuner(spec, fp)
    got = tuner(b.x, record=True)
    ref = TorchEngine(spec, "fixed", fp).run(b.x)
    assert torch.equal(got.output.detach(), ref.output)
    for k, s in ref.spikes.items():
        assert torch.equal(got.spikes[k].to(s.dtype), s), k
    assert got.spikes["neuron1"].sum() > 0
    torch.nn.functional.cross_entropy(got.output.sum(0), torch.as_tensor(b.y)).backward()
    for n, p in tuner.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, n


@pytest.mark.parametrize("feature", sorted(VARIANTS))
def test_every_feature_trains_through_the_engine_and_exports_its_integers(feature):
    """Every neuron feature's network: the forward equals the engine, gradients reach the trained values (a
    learned decay and the thresholds included), and the graph written back quantises to the same integers."""
    g = example(feature)
    spec, fp = build_netspec(g), FixedPoint(frac_bits=10, input_frac_bits=0, weight_bits=6)
    tuner = FixedTuner(spec, fp, thresholds=True)
    x = torch.from_numpy(np.random.default_rng(3).integers(0, 4, size=(4, spec.timesteps, 6)).astype(np.float64))
    x = x.transpose(0, 1)
    got, ref = tuner(x, record=True), TorchEngine(spec, "fixed", fp).run(x)
    assert torch.equal(got.output.detach(), ref.output)
    for k, s in ref.spikes.items():
        assert torch.equal(got.spikes[k].to(s.dtype), s), k
    got.output.square().sum().backward()
    grads = {n: float(p.grad.abs().sum()) for n, p in tuner.named_parameters() if p.grad is not None}
    assert sum(n.startswith("weights.") for n in grads) == len(spec.synapses)
    assert any(v > 0 for n, v in grads.items() if n.startswith("weights."))
    assert all(grads[f"thresholds.{i}"] > 0 for i in "01"), grads
    if feature == "learned_decay":
        assert set(tuner.decays) == {"0", "1"} and all(grads[f"decays.{i}"] > 0 for i in "01"), grads
    back = tuned_graph(tuner, g.metadata)
    assert same_integers(tuner.quantized()[0], quantize_spec(build_netspec(back))) == []
    assert native_format(back.metadata) == fp


@pytest.mark.parametrize("make", [toy_resnet, recurrent_net, recurrent_lif_net])
def test_residual_and_recurrent_networks_are_written_back_to_the_same_integers(make):
    """Shortcuts (sparse synapses, per-channel gains), recurrent weights, synaptic currents and a readout current
    all come back from the graph the fine-tuner writes, integer for integer, and the engine runs it alike."""
    g = make()
    spec, fp = build_netspec(g), FixedPoint(weight_bits=5)
    tuner = FixedTuner(spec, fp)
    back = tuned_graph(tuner, g.metadata)
    q = tuner.quantized()[0]
    assert same_integers(q, quantize_spec(build_netspec(back))) == []
    x = torch.rand(spec.timesteps, 3, *spec.input_shape, dtype=torch.float64)
    a = TorchEngine(tuner.quantized()[1], "fixed", quantized=q).run(x)
    b = TorchEngine(build_netspec(back), "fixed").run(x)
    assert torch.equal(a.output, b.output)


def test_a_network_without_a_graph_form_is_refused_before_training():
    """Two paths from one source fuse into a dense matrix onto a conv layer: no IR chain writes that back, so the
    fine-tuner says so at once (not after the epochs)."""
    with pytest.raises(GraphError, match="no reshape"):
        FixedTuner(build_netspec(maxpool_net()), FixedPoint())


def test_fine_tuning_recovers_accuracy_and_the_result_runs_as_trained(tmp_path):
    """Two epochs on digits ILIF at 3-bit weights (72.22 % before): the test accuracy rises; the saved graph reads
    back with its format and runs on the torch engine spike for spike as the fine-tuning forward, all 450."""
    g, b = _digits("digits_ilif")
    res = finetune(g, "digits", fixed=FixedPoint(weight_bits=3), epochs=2, eval_data="digits", progress=False)
    assert res.before == pytest.approx(325 / 450)
    assert res.after > res.before + 0.15
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    path = tmp_path / "tuned.ir.npz"
    res.graph.save(path)
    back = open_graph(path)
    assert native_format(back.metadata) == FixedPoint(weight_bits=3)
    engine = TorchEngine(build_netspec(back), "fixed").run(b.x)
    with torch.no_grad():
        forward = res.tuner(b.x, record=True)
    assert torch.equal(engine.output, forward.output)
    for k, s in engine.spikes.items():
        assert torch.equal(forward.spikes[k].to(s.dtype), s), k
    acc = float((engine.output.sum(0).argmax(1).numpy() == b.y).mean())
    assert acc == pytest.approx(res.after)


def test_an_interrupted_run_resumes_to_the_same_network(tmp_path):
    """Stopped after epoch 1 (the checkpoint written atomically), resumed: the same weights to the bit as the
    uninterrupted run; a checkpoint of other settings is refused by name."""
    g, _ = _digits("digits_lif")
    data = open_data("digits", input_shape=g.input_shape, timesteps=g.timesteps, split="train", samples=256)
    kw = dict(fixed=FixedPoint(weight_bits=4), epochs=2, batch_size=64, progress=False)
    straight = finetune(g, data, **kw)
    ck = tmp_path / "run.ckpt"

    class Stop(Exception):
        pass

    def stop(entry):
        raise Stop()

    with pytest.raises(Stop):
        finetune(g, data, checkpoint=ck, on_epoch=stop, **kw)
    state = torch.load(ck, weights_only=True)
    assert state["epoch"] == 1
    resumed = finetune(g, data, checkpoint=ck, resume=True, **kw)
    for (n, a), (_, b) in zip(straight.tuner.named_parameters(), resumed.tuner.named_parameters()):
        assert torch.equal(a, b), n
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    with pytest.raises(Exception, match="another network, format or training settings"):
        finetune(g, data, checkpoint=ck, resume=True, **{**kw, "epochs": 3})
    with pytest.raises(Exception, match="another network, format or training settings"):
        finetune(g, data, checkpoint=ck, resume=True, thresholds=True, **kw)  # other parameters: refused by name


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ilif_deploy.cli.finetune", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_cli_fine_tunes_exports_and_refuses_bad_requests_in_one_line(tmp_path):
    r = _cli("example:digits_lif", "--weight-bits", "4", "--epochs", "1", "-o", "lif.ir.npz", "--json", "r.json",
             "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["fixed_point"]["weight_bits"] == 4 and rep["epochs"] == 1
    assert rep["accuracy"]["fixed_before"] == pytest.approx(443 / 450)
    assert "float 99.33%" in r.stdout
    sim = subprocess.run([sys.executable, "-m", "ilif_deploy.cli.simulate", "lif.ir.npz", "--engine", "torch",
                          "--mode", "fixed", "--samples", "all", "--no-progress", "--json", "s.json"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert sim.returncode == 0, sim.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["accuracy_candidate"] == pytest.approx(rep["accuracy"]["fixed_after"])
    for args, says in [(["--resume"], "--resume needs --checkpoint"), ([], None)]:
        r = _cli("example:digits_lif", "-o", "x.npz", *args, cwd=tmp_path) if says is None else \
            _cli("example:digits_lif", "-o", "x.ir.npz", *args, cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert (says or "*.ir.npz") in r.stderr
    assert not (tmp_path / "x.ir.npz").exists() and not (tmp_path / "x.npz").exists()
    # the checkpoint is an output: never the model file; a foreign file to resume from is named in one line
    before = (tmp_path / "lif.ir.npz").read_bytes()
    r = _cli("lif.ir.npz", "-o", "y.ir.npz", "--checkpoint", "lif.ir.npz", "--epochs", "1", cwd=tmp_path)
    assert r.returncode == 2 and "is the same file as the model file" in r.stderr
    assert (tmp_path / "lif.ir.npz").read_bytes() == before
    (tmp_path / "junk.ckpt").write_text("not a checkpoint\n")
    r = _cli("lif.ir.npz", "-o", "y.ir.npz", "--checkpoint", "junk.ckpt", "--resume", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "error: junk.ckpt: not a fine-tuning checkpoint (not a torch " \
        "zip file)"
    assert not (tmp_path / "y.ir.npz").exists()


@pytest.mark.slow
def test_fine_tuned_network_on_lava_fixed_is_the_fine_tuning_forward(lava, tmp_path):
    """Lava's fixed_pt models run the fine-tuned network spike for spike as the fine-tuning forward (8 digits)."""
    from ilif_deploy.converters.lava.runner import simulate

    g, b = _digits("digits_ilif")
    res = finetune(g, "digits", fixed=FixedPoint(weight_bits=4), epochs=1, progress=False)
    data = open_data("digits", input_shape=g.input_shape, timesteps=g.timesteps, samples=8)
    rep = simulate(res.graph, data=data, samples=None, mode="fixed", engine="torch", verify=8, batch=8,
                   progress=False)
    v = rep.details["verify"]
    assert v["samples"] == 8 and v["overall_spike_agreement"] == 1.0 and v["counts_equal"]
    x = b.x[:, :8]
    with torch.no_grad():
        forward = res.tuner(x, record=True)
    engine = TorchEngine(build_netspec(res.graph), "fixed").run(x)
    for k, s in engine.spikes.items():
        assert torch.equal(forward.spikes[k].to(s.dtype), s), k


@pytest.mark.parametrize("arch, neuron", [("spiking_resnet18", "plif"), ("spiking_vgg11_bn", "ilif")])
def test_the_authors_networks_fine_tune_and_write_back(arch, neuron):
    """The authors' ResNet-18 (identity and 1x1 shortcuts, PLIF's 17 learned decays) and VGG-11 (max-pooled
    spikes) at 32x32, T = 2, random weights: the forward is the engine's, the decays get gradients (14 of 17 here;
    the other three layers pass none: a silent or saturated state has no slope), the written graph quantises to
    the same integers."""
    from ilif_deploy import build, trace

    g = trace(build(arch, num_classes=10, neuron=neuron, in_channels=3).eval(), input_shape=(3, 32, 32),
              timesteps=2)
    spec, fp = build_netspec(g), FixedPoint(weight_bits=6)
    tuner = FixedTuner(spec, fp)
    x = torch.rand(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    got, ref = tuner(x, record=True), TorchEngine(spec, "fixed", fp).run(x)
    assert torch.equal(got.output.detach(), ref.output)
    got.output.square().sum().backward()
    assert len(tuner.decays) == (17 if neuron == "plif" else 0)
    # every decay is in the graph; a saturated or silent layer passes no gradient (clip, a far threshold)
    assert all(p.grad is not None for p in tuner.decays.values())
    assert sum(float(p.grad.abs()) > 0 for p in tuner.decays.values()) >= (12 if neuron == "plif" else 0)
    assert same_integers(tuner.quantized()[0], quantize_spec(build_netspec(tuned_graph(tuner, g.metadata)))) == []
