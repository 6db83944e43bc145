"""ONNX target: onnxruntime runs the exported file and reproduces the torch reference runtime.

Every comparison is against :func:`ilif_deploy.runtime.run` on the same data; spikes must agree
exactly (per neuron layer), logits within 1e-5.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
import pytest
import torch

import ilif_deploy as D
from ilif_deploy import ir as N
from ilif_deploy.converters.onnx import (UnsupportedNodeError, build_model, compare_with_runtime, export_graph,
                                         run_onnx, session)
from ilif_deploy.neuron_step import ILIFParams
from ilif_deploy.runtime import run, run_neuron
from zoo import chain_graph


# ------------------------------------------------------------------ trained digits models, whole test split
@pytest.mark.parametrize("which", ["ilif", "lif"])
def test_digits_onnxruntime_matches_torch(which, digits_test, tmp_path, graph_of):
    graph = graph_of(f"digits_{which}")
    path = tmp_path / f"digits_{which}.onnx"
    info = export_graph(graph, path)
    assert path.stat().st_size == info["bytes"] and info["timesteps"] == 4
    x, y = digits_test
    assert len(x) == 450
    ort_logits = run_onnx(path, x, 4)["logits"]
    ref = D.logits(graph, x).numpy()
    assert ort_logits.shape == (450, 10)
    assert np.abs(ort_logits - ref).max() <= 1e-5
    assert np.array_equal(ort_logits.argmax(1), ref.argmax(1))
    # the model is the trained one, not a lookalike: its accuracy is the documented one
    assert (ort_logits.argmax(1) == y).mean() == pytest.approx(0.9956 if which == "ilif" else 0.9933, abs=1e-4)
    cmp = compare_with_runtime(graph, path, x, labels=y)
    assert cmp.spike_flips == {"neuron1": 0, "neuron2": 0}
    assert cmp.prediction_agreement == 1.0 and cmp.accuracy_candidate == cmp.accuracy_reference


# ------------------------------------------------------------------ authors' spiking_resnet18, random weights
def test_authors_resnet18_T2(graph_of, tmp_path):
    graph = graph_of("resnet18")
    path = tmp_path / "resnet18.onnx"
    info = export_graph(graph, path)
    # every weight stored once however many steps: the file is the float32 parameters plus < 1 % graph
    n_params = sum(a.size for n in graph.nodes.values() for k, a in n.arrays().items()
                   if k not in ("scale", "shift", "bn_stats")) + sum(
        4 * n.scale.size for n in graph.of_type(N.Affine))
    assert n_params <= info["parameters"] <= n_params + 100  # + per-layer scalars (lam, v_th, ...) and shapes
    assert 4 * n_params < info["bytes"] < 4 * n_params * 1.01
    x = np.random.default_rng(0).random((16, 3, 32, 32), dtype=np.float32)
    cmp = compare_with_runtime(graph, path, x, batch_size=16)
    assert len(cmp.spike_agreement) == 17
    # exact spike agreement in every neuron layer; where it fails, see docs/onnx.md ("threshold ties")
    assert cmp.total_flips == 0, cmp.spike_flips
    assert cmp.max_abs_logit_diff <= 1e-5
    assert cmp.prediction_agreement == 1.0


# ------------------------------------------------------------------ the file itself
def test_checker_full_check_and_metadata(tmp_path, digits_ilif_graph):
    graph = digits_ilif_graph
    path = tmp_path / "d.onnx"
    export_graph(graph, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    # standard domain only: onnxruntime needs no custom op library
    assert {o.domain for o in model.opset_import} == {""}
    assert {n.domain for n in model.graph.node} == {""}
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "Gemm", "Exp", "Reciprocal", "GreaterOrEqual", "Relu", "Split", "Concat"} <= ops
    meta = {p.key: p.value for p in model.metadata_props}
    neurons = json.loads(meta["ilif.neurons"])
    for name in ("neuron1", "neuron2"):
        p = graph.nodes[name].params
        assert ILIFParams(**{k: neurons[name][k] for k in ("lam", "v_th", "lam_u", "lam_i", "ciu_source")}) == p
    assert meta["timesteps"] == "4" and meta["encoding"] == "direct"
    names = {n.name for n in model.graph.node}
    # each neuron layer and step is findable by name; the threshold node documents its parameters
    for t in range(1, 5):
        assert f"neuron1/t{t}/fire" in names
    fire = next(n for n in model.graph.node if n.name == "neuron2/t3/fire")
    assert json.loads(fire.doc_string)["lam_i"] == pytest.approx(0.03)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output", "logits"]
    dims = [d.dim_value or d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [4, "batch", 10]


def test_streamed_file_parses_as_the_model_built_in_memory(tmp_path, digits_ilif_graph):
    # export_graph writes the initializers after the head, one tensor at a time (save_streamed); every reader
    # must see exactly the model build_model makes in memory, byte for byte once re-serialised
    path = tmp_path / "d.onnx"
    export_graph(digits_ilif_graph, path)
    written = onnx.load(str(path))
    built = build_model(digits_ilif_graph)
    assert len(written.graph.initializer) == len(built.graph.initializer) > 4
    assert written.SerializeToString() == built.SerializeToString()


def test_cli_export(tmp_path, digits_ilif_path):
    from ilif_deploy.cli.export import main

    out = tmp_path / "net.onnx"
    js = tmp_path / "info.json"
    assert main([str(digits_ilif_path), "--target", "onnx", "-o", str(out), "--json", str(js), "--fidelity"]) == 0
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    info = json.loads(js.read_text())
    assert info["neuron_layers"] == 2 and info["bytes"] == out.stat().st_size
    assert info["fidelity"]["spike_mismatches"] == 0 and info["fidelity"]["max_abs_logit_diff"] <= 1e-5


def test_unsupported_node_is_a_clear_error_and_writes_nothing(tmp_path):
    @dataclass(eq=False)
    class Upsample(N.Node):  # an op the IR does not know
        op: ClassVar[str] = "upsample"

    g = D.Graph(metadata={"timesteps": 2})
    g.add(N.Input("input", (1, 4, 4)))
    g.add(Upsample("features.up", (1, 8, 8)), ["input"])
    g.add(N.Output(name="output", shape=(1, 8, 8)), ["features.up"])
    path = tmp_path / "x.onnx"
    with pytest.raises(UnsupportedNodeError, match=r"node 'features.up' \(op 'upsample', Upsample\).*supports"):
        export_graph(g, path)
    assert list(tmp_path.iterdir()) == []



@pytest.mark.parametrize("size, out", [(5, 2), (4, 7), (1, 7)])
def test_adaptive_pooling_with_uneven_overlapping_or_upsampling_windows(size, out, tmp_path):
    g = chain_graph((3, size, size), [N.AdaptiveAvgPool2d("pool", output_size=(out, out))], T=2, encoding="direct")
    export_graph(g, tmp_path / "p.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "p.onnx")), full_check=True)
    x = np.random.default_rng(0).random((4, 3, size, size), dtype=np.float32)
    got, ref = run_onnx(tmp_path / "p.onnx", x, 2)["output"], run(g, x).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-7)  # two averaging MatMuls: torch sums in another order


def test_needs_timesteps():
    g = D.Graph()
    g.add(N.Input(name="input", shape=(3,), encoding="sequence"))
    g.add(N.Neuron(name="n", shape=(3,)), ["input"])
    g.add(N.Output(name="output", shape=(3,)), ["n"])
    with pytest.raises(ValueError, match="time steps"):
        build_model(g)


# ------------------------------------------------------------------ neuron dynamics, exactly
PARAMS = {
    "ilif": ILIFParams.from_tau(1.1),
    "ilif_net": ILIFParams.from_tau(2.0, ciu_source="net", lam_i=0.5),
    "mpiu_only": ILIFParams(lam=0.8, v_th=0.7, lam_u=0.5, lam_i=0.0),
    "ciu_only": ILIFParams(lam=0.8, v_th=0.7, lam_u=0.0, lam_i=0.6),
    "lif": ILIFParams(lam=0.75, v_th=1.0, lam_u=0.0, lam_i=0.0),
    # neurons imported from NIR (snntorch/Norse): hard reset to v_reset, spike on ">"
    "lif_hard_reset_gt": ILIFParams(lam=0.75, v_th=1.0, lam_u=0.0, lam_i=0.0, reset="zero", v_reset=0.1,
                                    compare=">"),
}


def _neuron_graph(p: ILIFParams, T: int, features: int = 64) -> D.Graph:
    """Input current -> one neuron layer -> output: nothing but the neuron dynamics."""
    return chain_graph((features,), [N.Neuron("layer.neuron", params=p)], T=T)


@pytest.mark.parametrize("sigmoid", ["exp", "op"])
@pytest.mark.parametrize("case", list(PARAMS))
def test_neuron_dynamics_exact_over_many_steps(case, sigmoid):
    p, T = PARAMS[case], 12
    g = _neuron_graph(p, T)
    model = build_model(g, sigmoid=sigmoid)
    onnx.checker.check_model(model, full_check=True)
    # expose every step's membrane state v = m[t] (the state after reset and MPIU inhibition)
    for t in range(1, T):
        model.graph.output.append(onnx.helper.make_tensor_value_info(f"layer.neuron/t{t}/v",
                                                                     onnx.TensorProto.FLOAT, None))
    x = np.random.default_rng(1).normal(0.6, 0.8, (T, 5, 64)).astype(np.float32)
    sess = session(model)
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    spikes, states = run_neuron(g.nodes["layer.neuron"], torch.as_tensor(x), return_states=True)
    assert np.array_equal(outs["output"], spikes.numpy())
    assert 0.1 < spikes.mean() < 0.9
    m_onnx = np.stack([outs[f"layer.neuron/t{t}/v"] for t in range(1, T)])
    m_ref = states["v"][:-1].numpy()
    # the states agree to float32 rounding: onnxruntime's exp/sigmoid and torch's differ in the last bit
    np.testing.assert_allclose(m_onnx, m_ref, rtol=0, atol=1e-6)
    if not p.mpiu_enabled:  # no transcendental function involved: bit for bit
        assert np.array_equal(m_onnx, m_ref)
    ops = {n.op_type for n in model.graph.node}
    # lam_u == 0: no MPIU term at all (LIF == ILIF(0, 0)); lam_i == 0: no CIU
    assert ("Exp" in ops or "Sigmoid" in ops) == p.mpiu_enabled
    assert ("Relu" in ops) == p.ciu_enabled


@pytest.mark.parametrize("case", ["tau1.1_T8", "tau2.0_T16", "tau1.1_T6_strong", "tau4.0_T20_weak"])
def test_golden_reference_trajectories(golden, case):
    x = golden[f"{case}/x"]
    T, n = x.shape
    g = _neuron_graph(ILIFParams.from_tau(float(golden[f"{case}/tau"])), T, n)
    model = build_model(g)
    produced = {o for node in model.graph.node for o in node.output}
    names = [k for k in (f"layer.neuron/t{t}/{s}" for t in range(1, T) for s in ("v", "mpiu", "ciu")) if k in produced]
    assert len(names) == 3 * (T - 1) - 1  # all but ciu at t = 1
    model.graph.output.extend(onnx.helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, None) for k in names)
    sess = session(model)
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x[:, None]})))
    assert np.array_equal(out["output"][:, 0], golden[f"{case}/spikes"])
    for key, state in (("v", "v"), ("mpiu", "mpiu"), ("ciu_pre", "ciu")):
        # ciu at t = 1 is zero and not computed (exact simplification); the golden file has it as 0
        got = np.stack([out[f"layer.neuron/t{t}/{state}"][0] if f"layer.neuron/t{t}/{state}" in out
                        else np.zeros(n, np.float32) for t in range(1, T)])
        np.testing.assert_allclose(got, golden[f"{case}/{key}"][:-1], rtol=0, atol=1e-5, err_msg=key)


def test_time_invariant_prefix_and_residual_mix():
    """Direct encoding: layers before the first neuron run once; an add mixing that one frame with
    per-step spikes repeats it over T.  Dyadic weights make every sum exact in float32, so any
    difference would be a wiring error, not rounding."""
    rng = np.random.default_rng(2)
    dy = lambda *s: (rng.integers(-8, 9, s) / 8).astype(np.float32)  # noqa: E731
    T = 5
    g = D.Graph(metadata={"timesteps": T})
    g.add(N.Input(name="input", shape=(2, 8, 8)))
    g.add(N.Conv2d(name="conv1", shape=(4, 8, 8), weight=dy(4, 2, 3, 3), bias=dy(4), padding=(1, 1)), ["input"])
    g.add(N.Affine(name="bn1", shape=(4, 8, 8), scale=dy(4), shift=dy(4)), ["conv1"])
    g.add(N.Neuron(name="neuron1", shape=(4, 8, 8), params=PARAMS["ilif_net"]), ["bn1"])
    g.add(N.Conv2d(name="conv2", shape=(4, 8, 8), weight=dy(4, 4, 3, 3), padding=(1, 1)), ["neuron1"])
    g.add(N.Conv2d(name="skip", shape=(4, 8, 8), weight=dy(4, 2, 1, 1)), ["input"])
    g.add(N.Add(name="add", shape=(4, 8, 8)), ["conv2", "skip"])
    g.add(N.Neuron(name="neuron2", shape=(4, 8, 8), params=PARAMS["mpiu_only"]), ["add"])
    g.add(N.MaxPool2d(name="maxpool", shape=(4, 4, 4)), ["neuron2"])
    g.add(N.SumPool2d(name="sumpool", shape=(4, 4, 4), kernel=(3, 3), stride=(1, 1), padding=(1, 1)), ["maxpool"])
    g.add(N.AdaptiveAvgPool2d(name="gap", shape=(4, 1, 1), output_size=(1, 1)), ["sumpool"])
    g.add(N.Flatten(name="flatten", shape=(4,)), ["gap"])
    g.add(N.Linear(name="fc", shape=(3,), weight=dy(3, 4), bias=dy(3)), ["flatten"])
    g.add(N.Output(name="output", shape=(3,)), ["fc"])
    g.validate()
    model = build_model(g, record_spikes=True)
    onnx.checker.check_model(model, full_check=True)
    nodes = {n.name: n for n in model.graph.node}
    assert "add/in1/repeat_T" in nodes and "neuron1/split_T" not in nodes  # conv1 ran once, on [B, ...]
    x = (rng.integers(0, 17, (7, 2, 8, 8)) / 16).astype(np.float32)
    out = run_onnx(model, x, T)
    ref, rec = run(g, x, record=["neuron1", "neuron2"])
    for k in ("neuron1", "neuron2"):
        assert np.array_equal(out[f"spikes:{k}"], rec[k].numpy())
        assert 0.05 < rec[k].mean() < 0.95
    assert np.array_equal(out["output"], ref.numpy())
    assert np.array_equal(out["logits"], ref.sum(0).numpy())


def test_sequence_encoding_and_single_step(digits_ilif_graph, digits_test):
    graph = digits_ilif_graph
    x = digits_test[0][:64]
    rng = np.random.default_rng(3)
    frames = np.clip(x[None] + rng.normal(0, 0.2, (6, *x.shape)), 0, 1).astype(np.float32)  # [T, B, 1, 8, 8]
    model = build_model(graph, timesteps=6, encoding="sequence")
    assert [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == \
        [6, "batch", 1, 8, 8]
    out = run_onnx(model, frames, 6)
    ref = run(graph, frames).numpy()
    assert out["output"].shape == ref.shape == (6, 64, 10)
    assert np.abs(out["output"] - ref).max() <= 1e-5
    assert np.array_equal(out["logits"].argmax(1), ref.sum(0).argmax(1))
    one = run_onnx(build_model(graph, timesteps=1), x, 1)["logits"]
    assert np.abs(one - D.logits(graph, x, timesteps=1).numpy()).max() <= 1e-5


def test_neuron_layers_as_local_functions(tmp_path, digits_ilif_graph, digits_test):
    """functions=True: one node per neuron layer (op ilif_deploy.ILIF, overload = layer name) whose
    body is the same standard-op step; onnxruntime inlines it and computes the same numbers."""
    graph = digits_ilif_graph
    flat, fn = tmp_path / "flat.onnx", tmp_path / "fn.onnx"
    export_graph(graph, flat)
    info = export_graph(graph, fn, functions=True)
    model = onnx.load(str(fn))
    onnx.checker.check_model(model, full_check=True)
    assert [(n.op_type, n.domain, n.overload) for n in model.graph.node if n.name.startswith("neuron")] == \
        [("ILIF", "ilif_deploy", "neuron1"), ("ILIF", "ilif_deploy", "neuron2")]
    assert info["onnx_nodes"] == len(graph.nodes) - 2 + 2  # one per IR node but input/output; output Reshape, ReduceSum
    body_ops = {n.op_type for f in model.functions for n in f.node}
    assert body_ops <= {"Constant", "Split", "Concat", "Add", "Sub", "Mul", "Relu", "Neg", "Exp", "Reciprocal",
                        "GreaterOrEqual", "Cast"}
    x = digits_test[0][:150]
    a, b = run_onnx(flat, x, 4)["logits"], run_onnx(fn, x, 4)["logits"]
    assert np.array_equal(a, b)
    cmp = compare_with_runtime(graph, fn, x)
    assert cmp.max_abs_logit_diff <= 1e-5 and cmp.total_flips == 0


def test_streamed_initializers_of_every_dtype_are_the_tensors_onnx_makes():
    """save_streamed writes each initializer's head and then its array's own bytes as raw_data: for every dtype the
    builder can hold, the file parses as the model with numpy_helper's tensors; a dtype not stored as raw bytes is
    refused rather than written wrongly."""
    import io

    from onnx import helper

    from ilif_deploy.converters.onnx.builder import OnnxBuilder, save_streamed

    b = OnnxBuilder()
    arrays = {"f32": np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5, "f64": np.array([1e-300, -2.5]),
              "i64": np.array([[-1, 2 ** 40]], dtype=np.int64), "i8": np.array([-128, 127], dtype=np.int8),
              "f16": np.array([0.5, -65504], dtype=np.float16), "b": np.array([True, False]),
              "scalar": np.float32(3.25), "empty": np.zeros((0, 3), np.float32),
              "strided": np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]}
    for k, a in arrays.items():
        b.const(k, a, dtype=np.asarray(a).dtype)
    head = helper.make_model(helper.make_graph([], "g", [], []))
    out = io.BytesIO()
    save_streamed(head, b, out)
    assert onnx.load_from_string(out.getvalue()).SerializeToString() == b.fill(head).SerializeToString()
    b.const("text", np.array(["a"]), dtype=object)
    with pytest.raises(TypeError, match="text"):
        save_streamed(head, b, io.BytesIO())
