"""What the writers hold: a graph handed over (``export(..., consume=True)``, what the command line does) is emptied
before the file is read back and the file is the same; tracing leaves no reference cycle that keeps the module's
weights alive; the Lava quantizer drops each layer's float64 weights as it goes and makes the same mantissas."""
from __future__ import annotations

import copy
import gc
import weakref

import numpy as np
import pytest

import ilif_deploy as D
from ilif_deploy.architectures import build
from ilif_deploy.converters import export
from ilif_deploy.converters.lava.fixed import quantization_format, quantize_spec, quantized_layers
from ilif_deploy.converters.lava.netspec import build_netspec
from zoo import toy_resnet


@pytest.mark.parametrize("target", ["onnx", "nir"])
def test_a_handed_over_graph_is_emptied_and_writes_the_same_file(target, tmp_path):
    kept, handed = toy_resnet(), toy_resnet()
    a = export(kept, target, tmp_path / f"kept.{target}")
    b = export(handed, target, tmp_path / f"handed.{target}", consume=True)
    assert (tmp_path / f"kept.{target}").read_bytes() == (tmp_path / f"handed.{target}").read_bytes()
    assert {k: v for k, v in a.items() if k not in ("path", "export_seconds")} == \
           {k: v for k, v in b.items() if k not in ("path", "export_seconds")}
    assert kept.nodes and not handed.nodes and not handed.edges


@pytest.mark.parametrize("target, options", [("onnx", {"fold_bn": True}), ("nir", {"fidelity": True}),
                                             ("lava", {}), ("ir", {})])
def test_a_graph_needed_after_the_write_is_not_emptied(target, options, tmp_path):
    """The lowering check (BN folded, Lava) and the fidelity run read the graph after the write: consume waits."""
    if target == "lava":
        pytest.importorskip("h5py")
    g = toy_resnet()
    nodes = dict(g.nodes)
    export(g, target, tmp_path / f"out.{target}", consume=True, check_samples=2, **options)
    assert g.nodes == nodes


def test_tracing_leaves_no_cycle_holding_the_module():
    """A traced module nobody holds is freed at once, with the garbage collector off: torch.fx's tracer and
    GraphModule sit in reference cycles that held the module (and its weights) until a full collection, so a graph
    handed over and emptied did not free them."""
    model = build("spiking_resnet18", num_classes=10).eval()
    gc.collect()
    gc.disable()
    try:
        graph = D.trace(model, (3, 32, 32), 2, share_weights=True)
        held = weakref.ref(model)
        del model
        assert held() is None and graph.nodes
    finally:
        gc.enable()


def test_layer_by_layer_quantization_makes_the_same_mantissas_and_drops_as_it_goes():
    """The Lava writer quantizes one layer at a time (``quantized_layers``), dropping each layer's float64 weights
    once its mantissas are made: the same mantissas and exponents as ``quantize_spec`` on the whole spec."""
    g = toy_resnet()
    kept, dropped = build_netspec(g), build_netspec(g)
    whole = quantize_spec(kept)
    seen = []
    for q in quantized_layers(dropped, quantization_format(dropped), drop_weights=True):
        assert all(dropped.synapses[i].weight is None for i in q.synapses)
        later = [i for i in range(len(dropped.synapses)) if i not in q.synapses and i not in seen]
        assert all(dropped.synapses[i].weight is not None for i in later)  # not yet quantized: still there
        for i, m in zip(q.synapses, q.mantissas):
            assert m.dtype == whole.mantissas[i].dtype and np.array_equal(m, whole.mantissas[i])
        assert q.a_exp == (whole.readout_exp if q.fixed is None else whole.layers[q.layer.name].a_exp)
        seen += q.synapses
    assert sorted(seen) == list(range(len(kept.synapses))) and len(seen) > 2
    assert all(s.weight is not None for s in kept.synapses)


def test_clear_keeps_metadata():
    g = copy.deepcopy(toy_resnet())
    meta = dict(g.metadata)
    g.clear()
    assert g.metadata == meta and not g.nodes and list(g.edges) == []


def test_the_embedded_ir_graph_is_the_graph_file_written_in_place(tmp_path):
    """The Lava file's ``ir_graph`` is the ``.npz`` written straight into its dataset: byte for byte the file
    ``Graph.save`` writes, with nothing after it (the dataset is exactly its size)."""
    h5py = pytest.importorskip("h5py")
    from ilif_deploy.converters.lava import h5

    g = toy_resnet()
    h5.write(build_netspec(g), g, tmp_path / "g.lava.h5")
    g.save(tmp_path / "g.ir.npz")
    with h5py.File(tmp_path / "g.lava.h5") as f:
        assert f["ir_graph"][()].tobytes() == (tmp_path / "g.ir.npz").read_bytes() == g.to_bytes()
