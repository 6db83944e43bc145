"""Opt-in fused neuron layers (``compile_neurons=True``, ``ilif-energy --compile``): the same spikes
as eager mode, and a clear message where torch.compile cannot build its kernel."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import ilif_deploy as I
from ilif_deploy import energy, runtime
from ilif_deploy.cli.energy import main as energy_main
from ilif_deploy.neuron_step import ILIFParams
from ilif_deploy.neuron_step import run_sequence

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="torch.compile on CPU needs a C++ compiler")

VARIANTS = {
    "ilif": ILIFParams(lam=1 - 1 / 1.1),
    "lif": ILIFParams(lam=0.5, lam_u=0.0, lam_i=0.0),
    "ilif-net-ciu": ILIFParams(lam=0.8, v_th=0.6, lam_u=0.7, lam_i=0.2, ciu_source="net"),
    "nir-hard-reset": ILIFParams(lam=0.9, lam_u=0.0, lam_i=0.0, reset="zero", v_reset=0.1, compare=">"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("shape", [(6, 4, 64), (8, 5, 13)])
def test_fused_neuron_layer_spikes_equal_eager(name, shape):
    p = VARIANTS[name]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(len(name))) * 2.0 + 0.5
    eager = run_sequence(x, p, runtime.TORCH_INFERENCE_OPS)
    fused = runtime._run_sequence_compiled(x, p)
    assert 0 < eager.mean() < 1  # the layer really fires, and not everywhere
    assert torch.equal(fused, eager)


def test_fused_run_equals_eager_on_every_layer_of_the_digits_model(digits_ilif_graph, digits_test):
    graph = digits_ilif_graph
    x, _ = digits_test
    for i in (0, 448):  # a full batch and the short last one (another compiled variant)
        xb = x[i:i + 64]
        out, rec = I.run(graph, xb, record=True)
        out_c, rec_c = I.run(graph, xb, record=True, compile_neurons=True)
        assert torch.equal(out_c, out)
        for name in ("neuron1", "neuron2"):
            assert torch.equal(rec_c[name], rec[name]), name


def test_compiled_profile_and_cli_count_the_same(tmp_path, digits_ilif_path, digits_ilif_graph, digits_test):
    graph = digits_ilif_graph
    x, y = digits_test
    eager = energy.profile(graph, x[:128], y[:128], progress=False)
    fused = energy.profile(graph, x[:128], y[:128], progress=False, compile_neurons=True)
    assert [(r.name, r.acs, r.macs, r.spikes) for r in fused.rows] == [(r.name, r.acs, r.macs, r.spikes)
                                                                        for r in eager.rows]
    assert eager.totals["acs"] > 0
    out = tmp_path / "r.json"
    assert energy_main([str(digits_ilif_path), "--samples", "128", "--compile", "--no-progress",
                        "--json", str(out)]) == 0
    assert json.loads(out.read_text())["totals"]["acs"] == pytest.approx(eager.totals["acs"], rel=0, abs=0)


def test_compile_failure_names_the_missing_toolchain(monkeypatch):
    def broken(*args):
        raise torch._dynamo.exc.BackendCompilerFailed(broken, FileNotFoundError("g++: not found"), None)

    monkeypatch.setattr(runtime, "_compiled_run_sequence", lambda: broken)
    with pytest.raises(RuntimeError, match=r"C\+\+ compiler.*g\+\+: not found|g\+\+: not found.*C\+\+ compiler"):
        runtime._run_sequence_compiled(torch.zeros(2, 1, 3), VARIANTS["lif"])


def test_auto_compiles_only_where_it_pays_and_falls_back_to_eager(monkeypatch, digits_ilif_graph, digits_test):
    """``compile_neurons="auto"`` (ilif-energy's default): the digits test set is 4.5e6 neuron updates, far below
    the threshold, so it runs eagerly; above it, a broken compiler falls back to eager with a warning and the
    counts of the batch that failed are not counted twice."""
    from ilif_deploy.energy import record

    graph, (x, y) = digits_ilif_graph, digits_test
    neurons = sum(int(torch.tensor(n.shape).prod()) for n in graph.of_type(I.ir.Neuron))
    assert len(x) * 4 * neurons < record.AUTO_COMPILE_UPDATES and not record.compile_pays(graph, len(x), 4)
    monkeypatch.setattr(record, "AUTO_COMPILE_UPDATES", 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert not record.compile_pays(graph, len(x), 4)  # no C++ compiler: eager
    monkeypatch.undo()
    monkeypatch.setattr(record, "AUTO_COMPILE_UPDATES", 0)
    assert record.compile_pays(graph, len(x), 4) == bool(shutil.which("c++") or shutil.which("g++")
                                                         or shutil.which("clang++"))
    monkeypatch.setattr(record, "compile_pays", lambda *a: True)
    calls = []

    def breaks_on_the_second_batch(*args):  # (2 neuron layers per batch) a recompile for a new shape fails
        calls.append(1)
        if len(calls) > 2:
            raise torch._dynamo.exc.BackendCompilerFailed(run_sequence, FileNotFoundError("g++: not found"), None)
        return run_sequence(*args)

    monkeypatch.setattr(runtime, "_compiled_run_sequence", lambda: breaks_on_the_second_batch)
    eager = energy.profile(graph, x[:40], y[:40], progress=False, batch_size=16)
    with pytest.warns(RuntimeWarning, match="running the neuron layers in eager mode"):
        auto = energy.profile(graph, x[:40], y[:40], progress=False, batch_size=16, compile_neurons="auto")
    assert [(r.name, r.acs, r.macs, r.spikes) for r in auto.rows] == [(r.name, r.acs, r.macs, r.spikes)
                                                                       for r in eager.rows]
    assert auto.totals["acs"] > 0
