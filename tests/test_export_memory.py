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
from ilif_deploy.converters.lava.fixed import quantize_spec
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


def test_quantizing_with_drop_weights_makes_the_same_mantissas():
    g = toy_resnet()
    kept, dropped = build_netspec(g), build_netspec(g)
    a, b = quantize_spec(kept), quantize_spec(dropped, drop_weights=True)
    assert len(a.mantissas) == len(b.mantissas) == len(kept.synapses) > 2
    for x, y in zip(a.mantissas, b.mantissas):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert a.readout_exp == b.readout_exp and a.layers.keys() == b.layers.keys()
    assert all(s.weight is None for s in dropped.synapses) and all(s.weight is not None for s in kept.synapses)


def test_clear_keeps_metadata():
    g = copy.deepcopy(toy_resnet())
    meta = dict(g.metadata)
    g.clear()
    assert g.metadata == meta and not g.nodes and list(g.edges) == []
