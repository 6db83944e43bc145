"""Tracing into the IR and the reference runtime: same outputs as the source modules, clear errors."""
import io

import numpy as np
import pytest
import torch
from torch import nn

import ilif_deploy
from ilif_deploy import ir, load_model, run, trace
from ilif_deploy import layers as L
from ilif_deploy.architectures import build
from ilif_deploy.errors import GraphError, TraceError
from ilif_deploy.ir import Graph
from ilif_deploy.ir.lowering import fold_batchnorm


def _module_out(model, x):
    with torch.no_grad():
        return model(x)


def test_resnet18_authors_checkpoint_runtime_equals_module(authors_resnet18_path):
    model = load_model(authors_resnet18_path, arch="spiking_resnet18", num_classes=10)
    g = trace(model, (3, 32, 32), timesteps=4)
    torch.manual_seed(0)
    x = torch.rand(4, 2, 3, 32, 32)
    out, rec = run(g, x, record=[n.name for n in g.of_type(ir.Neuron)])
    ref = _module_out(model, x)
    assert out.shape == ref.shape == (4, 2, 10)
    assert (out.sum(0) - ref.sum(0)).abs().max().item() == 0  # exact by default: every BN its own node
    # every neuron layer is active, so the comparison is not between two silent networks
    rates = [float(r.mean()) for r in rec.values()]
    assert len(rates) == 17 and min(rates) > 0.05
    assert "layer1.0.relu1" in g.nodes and "relu1" in g.nodes  # the authors' module names
    # the lowering: BN after a conv folds; BN after a residual add stays an affine node
    f = fold_batchnorm(g)
    assert f.nodes["layer1.0.conv1"].folded == ("layer1.0.bn2",) and "layer1.0.bn2" in g.nodes
    assert f.nodes["conv1"].folded == ("layer1.0.bn1",)
    assert isinstance(f.nodes["layer1.1.bn1"], ir.Affine) and isinstance(f.nodes["bn1"], ir.Affine)
    assert len(f.of_type(ir.Add)) == 8 and len(f.of_type(ir.Conv2d)) == 20 and len(g.of_type(ir.Affine)) == 17


def test_folding_copies_only_what_it_replaces(graph_of, tmp_path):
    g = graph_of("resnet18")
    before = {n: node.weight.copy() for n, node in g.nodes.items() if isinstance(node, ir.Conv2d)}
    f = fold_batchnorm(g)
    for name, w in before.items():
        assert np.array_equal(g.nodes[name].weight, w)  # the caller's graph is as it was
        if f.nodes[name].folded:
            assert not np.shares_memory(f.nodes[name].weight, g.nodes[name].weight)
        else:  # an array nobody changes is shared, not copied
            assert f.nodes[name].weight is g.nodes[name].weight
    assert any(not f.nodes[n].folded for n in before) and any(f.nodes[n].folded for n in before)
    assert f.nodes["layer1.1.bn1"] is not g.nodes["layer1.1.bn1"]  # the nodes themselves are copies
    g.save(tmp_path / "g.ir.npz")  # streamed into the file: the bytes to_bytes makes in memory
    assert (tmp_path / "g.ir.npz").read_bytes() == g.to_bytes()
    assert Graph.load(io.BytesIO(g.to_bytes())).nodes.keys() == g.nodes.keys()


@pytest.mark.parametrize("stride,padding,dilation,bias", [(1, 1, 1, True), (2, 0, 1, False), (1, 2, 2, True),
                                                          (3, 1, 1, True)])
def test_float64_convolution_as_chunked_products_equals_torchs(stride, padding, dilation, bias, monkeypatch):
    from ilif_deploy import runtime

    torch.manual_seed(0)
    x = (torch.rand(7, 5, 11, 9) < 0.4).to(torch.float64)
    w, b = torch.randn(6, 5, 3, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64) if bias else None
    ref = torch.nn.functional.conv2d(x, w, b, stride, padding, dilation)
    for column_bytes in (1, 5 * 9 * 99 * 8 * 3, 2 ** 30):  # one sample per product, chunks of 3 (uneven), all
        for positions in (1, 2 ** 30):  # a product per sample into the output, or one over the chunk's samples
            monkeypatch.setattr(runtime, "CONV64_COLUMN_BYTES", column_bytes)
            monkeypatch.setattr(runtime, "CONV64_PER_SAMPLE_POSITIONS", positions)
            out = runtime._conv2d_float64(x, w, b, (stride, stride), (padding, padding), (dilation, dilation))
            assert out.shape == ref.shape and out.dtype == torch.float64
            assert (out - ref).abs().max().item() <= 1e-12 * ref.abs().max().item()


def test_unfolded_graph_gives_the_same_logits(authors_resnet18_path):
    model = load_model(authors_resnet18_path, arch="spiking_resnet18", num_classes=10)
    x = torch.rand(4, 1, 3, 32, 32)
    a = run(trace(model, (3, 32, 32), 4, fold_bn=True), x).sum(0)
    b = run(trace(model, (3, 32, 32), 4, fold_bn=False), x).sum(0)
    assert (a - b).abs().max().item() <= 1e-5


def test_digits_runtime_equals_module_on_the_test_set(digits_ilif_path, digits_ilif_graph, digits_test):
    model = load_model(digits_ilif_path)
    g = digits_ilif_graph
    x, y = digits_test
    out = run(g, x)  # [B, ...] input is repeated over T (direct encoding)
    ref = _module_out(model, torch.as_tensor(x).unsqueeze(0).expand(4, *x.shape))
    assert (out - ref).abs().max().item() <= 1e-5
    assert (out.sum(0).argmax(1).numpy() == y).mean() >= 0.95


def test_vgg11_traces_and_runs():
    torch.manual_seed(0)
    model = build("spiking_vgg11_bn", num_classes=11).eval()
    g = trace(model, (2, 48, 48), timesteps=2, encoding="sequence")
    assert g.encoding == "sequence" and "encoding" not in g.metadata
    assert len(g.of_type(ir.Neuron)) == 8 and len(g.of_type(ir.AvgPool2d)) == 5
    assert isinstance(g.nodes["avgpool"], ir.AdaptiveAvgPool2d) and g.nodes["avgpool"].shape == (512, 7, 7)
    assert g.nodes["classifier.1"].weight.shape == (11, 25088) and "layer3.4" in g.nodes
    x = torch.rand(2, 1, 2, 48, 48) * 3
    assert (run(g, x) - _module_out(model, x)).abs().max().item() <= 1e-5


def test_other_ops_maxpool_dilation_groups_bn1d():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2)
            self.n1 = ilif_deploy.ILIF(tau=2.0)
            self.mp = L.MaxPool2d(2, 1, 1)
            self.flat = L.Flatten()
            self.fc = nn.Linear(4 * 5 * 5, 6)
            self.bn = L.BatchNorm1d(6)
            self.n2 = ilif_deploy.LIF()

        def forward(self, x):
            h = self.mp(self.n1(self.conv(x)))
            return self.n2(self.bn(self.fc(self.flat(h))))

    torch.manual_seed(2)
    net = Net()
    net.bn.running_mean.uniform_(-0.2, 0.2)
    net.bn.running_var.uniform_(0.5, 2.0)
    nn.init.uniform_(net.bn.bias, 0.5, 1.0)
    net.eval()
    g = trace(net, (2, 8, 8), 5)
    assert g.nodes["conv"].groups == 2 and g.nodes["conv"].dilation == (2, 2)
    assert fold_batchnorm(g).nodes["fc"].folded == ("bn",)
    x = torch.rand(5, 3, 2, 8, 8) * 4
    out = run(g, x)
    assert out.sum() > 0
    assert (out - _module_out(net, x)).abs().max().item() <= 1e-5


def test_unsupported_module_is_named_with_path_and_type():
    net = nn.Sequential(L.Conv2d(1, 2, 3), nn.Sequential(nn.Identity(), nn.GELU()))
    with pytest.raises(TraceError, match=r"module '1\.1' \(GELU\).*Supported: modules Conv2d.*Dropout.*neurons "
                                         r"ilif_deploy ILIF.*snntorch: Leaky"):
        trace(net, (1, 8, 8), 2)


def test_unsupported_function_is_named():
    class Net(nn.Module):
        def forward(self, x):
            return torch.sigmoid(x)

    with pytest.raises(TraceError, match="unsupported call function 'sigmoid'"):
        trace(Net(), (4,), 2)


def test_flatten_over_time_axis_is_rejected():
    net = nn.Sequential(nn.Flatten())  # plain start_dim=1 would merge batch into features
    with pytest.raises(TraceError, match=r"'0' returns shape \[2, 36\]: \[T, B, ...\] \(or time merged into the "
                                         r"batch, \[T\*B, ...\]\) expected"):
        trace(net, (2, 3, 3), 2)


def test_trace_copies_weights_unless_asked_to_share_them():
    model = nn.Sequential(L.Conv2d(1, 2, 3), ilif_deploy.ILIF(), L.Flatten(), nn.Linear(2 * 4 * 4, 3),
                          ilif_deploy.ILIF()).eval()
    copied = trace(model, (1, 6, 6), timesteps=2)
    shared = trace(model, (1, 6, 6), timesteps=2, share_weights=True)

    def weight(g):
        return next(n for n in g.nodes.values() if isinstance(n, ir.Conv2d)).weight

    assert np.array_equal(weight(copied), weight(shared))
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert np.array_equal(weight(shared), model[0].weight.detach().numpy())  # the module's own memory
    assert not np.array_equal(weight(copied), weight(shared))  # the default graph kept its values


def test_graph_save_load_round_trip(tmp_path, digits_ilif_graph):
    g = digits_ilif_graph
    path = tmp_path / "g.ir.npz"
    g.save(path)
    g2 = Graph.load(path)
    assert list(g2.nodes) == list(g.nodes) and g2.edges == g.edges and g2.metadata == g.metadata
    assert g2.nodes["neuron1"].params == g.nodes["neuron1"].params
    with np.load(path, allow_pickle=False):
        pass  # loadable without pickles (the outputs of the reloaded graph: tests/test_conformance.py)
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ValueError, match="not an ilif-deploy graph"):
        Graph.load(bad)


def _tiny_graph():
    g = Graph(metadata={"timesteps": 2})  # metadata: T and provenance only; shapes live on the nodes
    g.add(ir.Input(name="input", shape=(4,)))
    g.add(ir.Linear(name="fc", shape=(3,), weight=np.ones((3, 4), np.float32)), ["input"])
    g.add(ir.Neuron(name="lif", shape=(3,)), ["fc"])
    g.add(ir.Output(name="output", shape=(3,)), ["lif"])
    return g


def test_validation_names_the_node():
    g = _tiny_graph().validate()
    g.nodes["fc"].shape = (5,)
    with pytest.raises(GraphError, match="node 'fc'.*recorded shape"):
        g.validate()
    g = _tiny_graph()
    g.nodes["fc"].weight = np.ones((3, 5), np.float32)
    with pytest.raises(GraphError, match="node 'fc'.*expects input \\[5\\]"):
        g.validate()
    g = _tiny_graph()
    g.add(ir.Neuron(name="dangling", shape=(3,)), ["fc"])
    with pytest.raises(GraphError, match="'dangling'.*not connected"):
        g.validate()
    g = _tiny_graph()
    g.edges.append(("lif", "fc"))
    with pytest.raises(GraphError, match="expects exactly 1 input|cycle"):
        g.validate()
    g = _tiny_graph()
    g.nodes["fc"].weight = np.full((3, 4), np.nan, np.float32)
    with pytest.raises(GraphError, match="'fc'.*non-finite"):
        g.validate()


def test_runtime_by_hand_on_a_tiny_graph():
    g = _tiny_graph()
    x = torch.tensor([[[0.3, 0.3, 0.3, 0.3]]]).expand(2, 1, 4)  # current 1.2 per step
    out, rec = run(g, x, record=True)
    # step 1: U = 1.2 -> spike, mbar = 0.2, mpiu = 0.2, m = 0.2 - sigmoid(0.2) (CIU: 0.03*1.2 at step 2)
    m1 = 0.2 - 1 / (1 + np.exp(-0.2))
    u2 = (1 - 1 / 1.1) * m1 + 1.2 - 0.03 * 1.2
    assert out[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert u2 == pytest.approx(1.1322, abs=1e-4)
    assert out[1, 0].tolist() == [1.0, 1.0, 1.0]
    assert rec["lif"][1, 0].tolist() == [1.0, 1.0, 1.0]
    assert torch.equal(rec["fc"][0, 0], torch.full((3,), 1.2))
    with pytest.raises(ValueError, match="fits neither"):
        run(g, torch.zeros(2, 1, 5))


def test_summary_lists_nodes_and_neuron_settings(digits_ilif_graph):
    g = digits_ilif_graph
    text = g.summary()
    for needle in ("conv1", "neuron2", "fc", "family=ilif", "lam_u=1", "lam_i=0.03", "16x8x8", "timesteps=4"):
        assert needle in text
    df = g.summary_frame()
    assert list(df.columns) == ["name", "op", "inputs", "shape", "params", "settings"]
    assert df.loc[df.name == "fc", "params"].item() == 512 * 10 + 10


def test_float64_synapse_mode_rounds_neuron_inputs_once(digits_ilif_graph, digits_test):
    """The mode the Lava comparison uses: synapses in float64, neuron inputs rounded to float32."""
    g = digits_ilif_graph
    x = digits_test[0][:64]
    seen = {}
    out64 = run(g, x, synapse_dtype=torch.float64, observe=lambda n, v: seen.setdefault(n, v.dtype))
    assert out64.dtype == torch.float32
    assert seen["conv1"] == torch.float64 and seen["neuron1"] == torch.float32 and seen["fc"] == torch.float64
    conv1 = g.nodes["conv1"]
    ref = torch.nn.functional.conv2d(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(conv1.weight).double(),
                                     None, padding=1)
    assert conv1.bias is None  # the exact graph: BN is bn1, not folded into conv1
    _, rec = run(g, x, synapse_dtype=torch.float64, record=["conv1"])
    assert torch.equal(rec["conv1"][0], ref)
    assert (out64.sum(0) - run(g, x).sum(0)).abs().max().item() <= 1e-4


def test_nodes_are_checked_when_built():
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'weight'"):
        ir.Conv2d("c")
    for make, message in [
        (lambda: ir.Conv2d("c", weight=None), r"node 'c' \(conv2d\): weight is required"),
        (lambda: ir.Linear("fc", weight=np.ones(3)), r"'fc' \(linear\): weight must be a 2-d array, got float64 \[3\]"),
        (lambda: ir.Conv2d("c", weight=np.ones((1, 1, 1, 1)), dilation=0), "dilation must be two integers >= 1"),
        (lambda: ir.Input("input", (3,), encoding="morse"), "encoding must be one of direct, sequence, got 'morse'"),
        (lambda: ir.Output("out", readout="mean"), "readout must be one of sum, none"),
        (lambda: ir.Affine("bn", scale=np.ones(2), shift=np.ones(2), source="magic"), "source must be one of"),
        (lambda: ir.Neuron("n", params={"lam": 0.5}), "params must be ILIFParams, got dict"),
        (lambda: ir.LeakyIntegrator("li", lam=float("nan")), "lam must be a finite number"),
        (lambda: ir.Flatten("f", (0,)), "shape must be positive integers"),
    ]:
        with pytest.raises(GraphError, match=message):
            make()
    assert ir.Conv2d("c", weight=np.ones((2, 1, 3, 3), np.float64), stride=2).stride == (2, 2)  # coerced
    assert ir.Conv2d("c", weight=np.ones((2, 1, 3, 3), np.float64)).weight.dtype == np.float32


def test_one_serialised_form_refuses_what_it_does_not_know(tmp_path, digits_ilif_graph):
    for node in digits_ilif_graph.nodes.values():
        entry, arrays = node.to_dict()
        back = ir.node_from_dict(entry, arrays)
        assert back.to_dict()[0] == entry and all(np.array_equal(arrays[k], back.arrays()[k]) for k in arrays)
    entry, arrays = digits_ilif_graph.nodes["conv1"].to_dict()
    with pytest.raises(GraphError, match=r"node 'conv1' \(conv2d\): unknown field\(s\) \['bogus'\]"):
        ir.node_from_dict({**entry, "attrs": {**entry["attrs"], "bogus": 1}}, arrays)
    with pytest.raises(GraphError, match="unknown op 'upsample'"):
        ir.node_from_dict({**entry, "op": "upsample"}, arrays)
    with pytest.raises(GraphError, match=r"node 'conv1' \(conv2d\): .*missing 1 required .* 'weight'"):
        ir.node_from_dict(entry, {})
    g = Graph(metadata={"timesteps": 2, "input_shape": [4]})
    g.add(ir.Input("input", (4,)))
    g.add(ir.Output("output", (4,)), ["input"])
    with pytest.raises(GraphError, match="input's shape and encoding belong to the Input node"):
        g.validate()
    import json

    path = tmp_path / "g.ir.npz"
    digits_ilif_graph.save(path)
    with np.load(path) as f:
        arrays = dict(f)
    header = json.loads(bytes(arrays.pop("__header__")).decode())
    np.savez(path, __header__=np.frombuffer(json.dumps({**header, "version": 7}).encode(), np.uint8), **arrays)
    with pytest.raises(GraphError, match="g.ir.npz: not an ilif-deploy graph file .*version 7"):
        Graph.load(path)


def test_finiteness_check_is_exact_where_the_sum_overflows():
    from ilif_deploy.runtime import all_finite

    big = torch.full((4,), 3e38)  # every value finite, their float32 sum is not
    assert not torch.isfinite(big.sum()) and all_finite(big)
    for bad in (float("inf"), float("-inf"), float("nan")):
        x = torch.zeros(3, 5)
        x[1, 2] = bad
        assert not all_finite(x) and not all_finite(torch.cat([big, x.flatten()]))
    assert all_finite(torch.zeros(2, dtype=torch.int64)) and all_finite(torch.rand(2, 3, dtype=torch.float64))
