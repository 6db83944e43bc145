"""NIR -> IR for foreign graphs: NIR's documented neuron semantics (forward Euler at dt = 1e-4 s),
checked against hand-computed trajectories and against the independent generic consumer, over
many steps (one step from zero state would hide reset bugs)."""
import h5py
import nir
import numpy as np
import pytest
import torch

import ilif_deploy
from ilif_deploy import ir as N
from ilif_deploy.converters.nir import NIRImportError, read_graph
from ilif_deploy.converters.nir.generic import run_generic

DT = 1e-4


def _arr(*v):
    return np.array(v, dtype=np.float32)


def _write(path, nodes, edges):
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges))
    return path


def _one_neuron_graph(tmp_path, neuron):
    # names chosen so that nir.read's alphabetical order ("a_neuron" < "b_fc" < "input") is not the flow
    nodes = {"input": nir.Input(input_type=_arr(1)), "b_fc": nir.Affine(weight=_arr(1.0).reshape(1, 1), bias=_arr(0.0)),
             "a_neuron": neuron, "output": nir.Output(output_type=_arr(1))}
    edges = [("input", "b_fc"), ("b_fc", "a_neuron"), ("a_neuron", "output")]
    return read_graph(_write(tmp_path / "one.nir", nodes, edges))


def test_lif_hand_computed_over_30_steps(tmp_path):
    # tau = 2 dt -> lam = 0.5; r = tau/dt -> gain 1; constant input 0.6:
    # v = 0.6, 0.9, 1.05 > 1 -> spike, reset to 0, and again: a spike every 3rd step
    lif = nir.LIF(tau=_arr(2 * DT), r=_arr(2.0), v_leak=_arr(0.0), v_threshold=_arr(1.0), v_reset=_arr(0.0))
    g = _one_neuron_graph(tmp_path, lif)
    assert [type(n).__name__ for n in g.nodes.values()] == ["Input", "Linear", "Neuron", "Output"]
    p = g.nodes["a_neuron"].params
    assert (p.reset, p.compare, p.lam_u, p.lam_i) == ("zero", ">", 0.0, 0.0)
    assert p.lam == pytest.approx(0.5)
    out = ilif_deploy.run(g, torch.full((30, 1, 1), 0.6))
    expect = np.array([1.0 if t % 3 == 2 else 0.0 for t in range(30)], np.float32)
    np.testing.assert_array_equal(out[:, 0, 0].numpy(), expect)


def test_lif_spike_rule_is_strictly_greater(tmp_path):
    # v reaches exactly 1.0 = v_threshold: NIR's rule "v > v_thr" does not fire
    lif = nir.LIF(tau=_arr(2 * DT), r=_arr(2.0), v_leak=_arr(0.0), v_threshold=_arr(1.0), v_reset=_arr(0.0))
    g = _one_neuron_graph(tmp_path, lif)
    out = ilif_deploy.run(g, torch.tensor([0.5, 0.75, 0.5, 0.75], dtype=torch.float32).reshape(4, 1, 1))
    # v = 0.5, 1.0 (no spike), 1.0 (no spike), 1.25 (spike)
    assert out[:, 0, 0].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_if_euler_and_per_step_conventions(tmp_path):
    # Euler (NIR, SpikingJelly): v += dt * r * I with r = 2/dt; I = 0.3: 0.6, 1.2 > 1 -> spike, reset to
    # v_reset = 0.1: 0.7, 1.3 -> spike ...
    g = _one_neuron_graph(tmp_path, nir.IF(r=_arr(2.0 / DT), v_threshold=_arr(1.0), v_reset=_arr(0.1)))
    out = ilif_deploy.run(g, torch.full((20, 1, 1), 0.3))
    assert out[:, 0, 0].tolist() == [0.0, 1.0] * 10
    assert g.nodes["a_neuron"].params.lam == 1.0 and g.nodes["a_neuron"].params.v_reset == pytest.approx(0.1)
    # Norse / BindsNET write r = 1 meaning v += I
    nodes = {"input": nir.Input(input_type=_arr(1)), "if": nir.IF(r=_arr(2.0), v_threshold=_arr(1.0),
                                                                  v_reset=_arr(0.1)),
             "output": nir.Output(output_type=_arr(1))}
    path = _write(tmp_path / "norse_if.nir", nodes, [("input", "if"), ("if", "output")])
    g = read_graph(path, if_convention="per_step")
    assert ilif_deploy.run(g, torch.full((20, 1, 1), 0.3))[:, 0, 0].tolist() == [0.0, 1.0] * 10
    silent = ilif_deploy.run(read_graph(path), torch.full((20, 1, 1), 0.3))  # Euler: gain 2e-4
    assert silent.sum().item() == 0


LAYER = 10  # neurons in the one-layer test graphs


def _full(v):
    """A per-neuron parameter array of the test layer's size."""
    return np.full(LAYER, v, np.float32)


def _layer_graph(neuron, n_in=6, n=LAYER, seed=0):
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type=_arr(n_in)),
             "fc": nir.Affine(weight=rng.normal(0, 0.7, (n, n_in)).astype(np.float32),
                              bias=rng.normal(0.1, 0.1, n).astype(np.float32)),
             "neuron": neuron, "output": nir.Output(output_type=_arr(n))}
    return nodes, [("input", "fc"), ("fc", "neuron"), ("neuron", "output")]


@pytest.mark.parametrize("kind", ["lif_leak_gain", "cubalif", "li"])
def test_foreign_neurons_agree_with_generic_euler_consumer(kind, tmp_path):
    if kind == "lif_leak_gain":  # gain r*dt/tau = 1.5, v_leak 0.2, reset to -0.1
        neuron = nir.LIF(tau=_full(4 * DT), r=_full(6.0), v_leak=_full(0.2), v_threshold=_full(1.0),
                         v_reset=_full(-0.1))
    elif kind == "cubalif":
        neuron = nir.CubaLIF(tau_syn=_full(2 * DT), tau_mem=_full(5 * DT), r=_full(5.0), v_leak=_full(0.0),
                             v_threshold=_full(1.0), v_reset=_full(0.0), w_in=_full(2.0))
    else:
        neuron = nir.LI(tau=_full(3 * DT), r=_full(3.0), v_leak=_full(0.0))
    nodes, edges = _layer_graph(neuron)
    path = _write(tmp_path / f"{kind}.nir", nodes, edges)
    g = read_graph(path)
    x = torch.as_tensor(np.random.default_rng(1).random((50, 4, 6), dtype=np.float32))
    ours = ilif_deploy.run(g, x)
    generic = run_generic(nir.read(str(path)), x)
    if kind == "li":
        assert isinstance(g.nodes["neuron"], N.LeakyIntegrator)
        torch.testing.assert_close(ours, generic, rtol=1e-5, atol=1e-5)
    else:
        assert 0.05 < ours.mean().item() < 0.95  # real spiking, with resets
        assert torch.equal(ours, generic)
    if kind == "cubalif":
        assert isinstance(g.nodes["neuron.syn"], N.LeakyIntegrator)
        assert g.nodes["neuron.syn"].lam == pytest.approx(0.5)


def test_threshold_node_is_stateless(tmp_path):
    nodes, edges = _layer_graph(nir.Threshold(threshold=np.full(10, 0.3, np.float32)))
    g = read_graph(_write(tmp_path / "thr.nir", nodes, edges))
    x = torch.rand(12, 3, 6, generator=torch.Generator().manual_seed(0))
    w, b = (torch.as_tensor(a) for a in (nodes["fc"].weight, nodes["fc"].bias))
    assert torch.equal(ilif_deploy.run(g, x), ((x @ w.T + b) > 0.3).float())


def test_per_neuron_values_that_differ_are_refused(tmp_path):
    neuron = nir.LIF(tau=np.linspace(1e-4, 2e-4, 10).astype(np.float32), r=np.ones(10, np.float32),
                     v_leak=np.zeros(10, np.float32), v_threshold=np.ones(10, np.float32))
    nodes, edges = _layer_graph(neuron)
    with pytest.raises(NIRImportError, match="'neuron'.*tau differs"):
        read_graph(_write(tmp_path / "bad.nir", nodes, edges))


def test_a_cycle_that_is_not_a_recurrent_layer_is_refused_by_its_nodes(tmp_path):
    lif = nir.LIF(tau=np.full(3, 2e-4, np.float32), r=np.full(3, 2.0, np.float32), v_leak=np.zeros(3, np.float32),
                  v_threshold=np.ones(3, np.float32))
    nodes = {"input": nir.Input(input_type=_arr(3)), "lif": lif, "rec": nir.Linear(weight=np.eye(3, dtype=np.float32)),
             "output": nir.Output(output_type=_arr(3))}
    edges = [("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    nodes["after"] = nir.Linear(weight=np.eye(3, dtype=np.float32))  # downstream of the cycle, not on it
    edges = [("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "after"), ("after", "output")]
    nodes["rec2"] = nir.Linear(weight=np.eye(3, dtype=np.float32))  # two synapses in the loop: not a layer's
    edges = [("input", "lif"), ("lif", "rec"), ("rec", "rec2"), ("rec2", "lif"), ("lif", "after"), ("after", "output")]
    with pytest.raises(NIRImportError, match=r"rec.nir: NIR graph has a cycle through \['lif', 'rec', 'rec2'\]: "):
        read_graph(_write(tmp_path / "rec.nir", nodes, edges))
    del nodes["rec2"]
    del nodes["rec"]  # an edge naming a node the file does not have: named by the edge (was a bare KeyError)
    with pytest.raises(NIRImportError, match=r"NIR edge \('lif', 'rec'\) names node 'rec', which the graph does"):
        nir.write(str(tmp_path / "missing.nir"), nir.NIRGraph(nodes=nodes, type_check=False, edges=[
            ("input", "lif"), ("lif", "rec"), ("lif", "after"), ("after", "output")]))
        read_graph(tmp_path / "missing.nir")


def test_not_a_nir_file(tmp_path):
    p = tmp_path / "x.nir"
    p.write_text("hello")
    with pytest.raises(NIRImportError, match="not a NIR"):
        read_graph(p)
    with h5py.File(tmp_path / "empty.nir", "w") as f:
        f.create_dataset("version", data="1.0")
    with pytest.raises(NIRImportError):
        read_graph(tmp_path / "empty.nir")
    with pytest.raises(NIRImportError, match="not found"):
        read_graph(tmp_path / "missing.nir")


def test_foreign_import_exports_again_and_round_trips(tmp_path):
    neuron = nir.CubaLIF(tau_syn=_full(2 * DT), tau_mem=_full(5 * DT), r=_full(7.0), v_leak=_full(0.1),
                         v_threshold=_full(1.0), v_reset=_full(0.0), w_in=_full(2.0))
    nodes, edges = _layer_graph(neuron)
    g = read_graph(_write(tmp_path / "c.nir", nodes, edges))
    from ilif_deploy.converters.nir import export_graph

    export_graph(g, tmp_path / "again.nir")
    g2 = read_graph(tmp_path / "again.nir")
    assert list(g2.nodes) == list(g.nodes)
    assert g2.nodes["neuron"].params == g.nodes["neuron"].params
    x = torch.rand(30, 3, 6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ilif_deploy.run(g2, x), ilif_deploy.run(g, x))


def test_imported_graph_saves_as_ir_file(tmp_path):
    neuron = nir.CubaLIF(tau_syn=_full(2 * DT), tau_mem=_full(5 * DT), r=_full(5.0), v_leak=_full(0.0),
                         v_threshold=_full(1.0), v_reset=_full(0.2), w_in=_full(2.0))
    nodes, edges = _layer_graph(neuron)
    g = read_graph(_write(tmp_path / "c.nir", nodes, edges))
    g.save(tmp_path / "c.ir.npz")
    g2 = ilif_deploy.Graph.load(tmp_path / "c.ir.npz")
    assert g2.nodes["neuron"].params == g.nodes["neuron"].params
    assert g2.nodes["neuron"].params.v_reset == pytest.approx(0.2)
    assert g2.nodes["neuron.syn"].lam == g.nodes["neuron.syn"].lam
    x = torch.rand(25, 2, 6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(ilif_deploy.run(g2, x), ilif_deploy.run(g, x))
