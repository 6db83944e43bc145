"""Convention presets against hand-computed counts: NeuroBench's rules (zero weights skipped, pools not synaptic,
Dense without padding taps, the module's own footprint) and SpikingJelly's SynOps.  Equality with NeuroBench
2.3.0 itself is shown by benchmarks/neurobench_equality.py (NeuroBench is not a dependency)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import ilif_deploy as I
from ilif_deploy import energy
from ilif_deploy import ir as N
from ilif_deploy import layers as L
from ilif_deploy.cli import energy as energy_cli
from ilif_deploy.energy import Conventions
from ilif_deploy.errors import UserError
from ilif_deploy.neurons import LIF
from zoo import chain_graph


def rows(graph, x, conv):
    return {r.name: r for r in energy.profile(graph, x, conventions=conv, progress=False).rows}


def test_zero_weights_skip_counts_only_non_zero_synapses():
    w = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, -1.0]], dtype=np.float32)  # column non-zeros: 1, 0, 2
    graph = chain_graph((3,), [N.Linear(name="fc", weight=w, bias=None)], T=2)
    spikes = np.array([[[1, 1, 1], [1, 0, 1]]], dtype=np.float32)  # [N=1, T=2, 3]
    assert rows(graph, spikes, Conventions())["fc"].acs == 5 * 2  # every spike reaches both outputs
    skip = rows(graph, spikes, Conventions(zero_weights="skip"))["fc"]
    assert skip.acs == (1 + 0 + 2) + (1 + 2) and skip.acs_per_step == [3.0, 3.0]


def test_zero_weights_skip_on_a_conv_with_only_its_centre_tap():
    w = np.zeros((2, 1, 3, 3), dtype=np.float32)
    w[0, 0, 1, 1] = 0.5  # output channel 0: the centre tap only; channel 1: all zero
    conv = N.Conv2d(name="conv", weight=w, bias=None, padding=(1, 1))
    graph = chain_graph((1, 4, 4), [conv], T=1)
    spikes = np.zeros((1, 1, 1, 4, 4), dtype=np.float32)
    spikes[0, 0, 0, 0, 0] = spikes[0, 0, 0, 1, 2] = 1  # a corner (4 taps in range x 2 channels) and an inner pixel
    assert rows(graph, spikes, Conventions())["conv"].acs == 4 * 2 + 9 * 2
    assert rows(graph, spikes, Conventions(zero_weights="skip"))["conv"].acs == 2  # one synapse per spike


def test_zero_weights_skip_refuses_a_pool_folded_into_the_layer():
    pool = N.AvgPool2d(name="pool", kernel=(2, 2), stride=(2, 2), padding=(0, 0))
    fc = N.Linear(name="fc", weight=np.ones((2, 4), dtype=np.float32), bias=None)
    graph = chain_graph((1, 4, 4), [pool, N.Flatten(name="flat"), fc], T=1)
    spikes = np.ones((1, 1, 1, 4, 4), dtype=np.float32)
    with pytest.raises(UserError, match="'fc'.*pooling=separate"):
        rows(graph, spikes, Conventions(zero_weights="skip"))
    assert rows(graph, spikes, Conventions(zero_weights="skip", pooling="separate"))["fc"].macs == 4 * 2


class Tiny(nn.Module):
    """conv(1->2, 3x3, pad 1) -> BN -> LIF -> avgpool 2 -> flatten -> fc(8->3), multi-step."""

    def __init__(self):
        super().__init__()
        self.conv = L.Conv2d(1, 2, 3, padding=1, bias=False)
        self.bn = L.BatchNorm2d(2)
        self.lif = LIF(v_th=0.5)
        self.pool = L.AvgPool2d(2)
        self.flat = L.Flatten()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.lif(self.bn(self.conv(x))))))


def tiny_model():
    torch.manual_seed(0)
    m = Tiny().eval()
    with torch.no_grad():
        m.conv.weight.abs_().mul_(2.0)  # so that the LIF layer fires on [0, 1) pixels
        m.conv.weight[0, 0, 0, 0] = 0.0  # one pruned weight of 18
    return m


def test_neurobench_metrics_by_hand():
    m = tiny_model()
    graph = I.trace(m, (1, 4, 4), 2)
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 4, 4)).astype(np.float32)
    x[:, :, 0, :] = 0.0  # zero pixels cost no MACs under analog=nonzero
    rep = energy.profile(graph, x, conventions="neurobench", progress=False)
    nb = rep.meta["metrics"]["neurobench"]
    # ParameterCount and Footprint: the module as torch stores it -- conv 18 + BN 2+2 weights/biases + fc 24+3;
    # buffers: BN running mean and var (2+2 float32) and num_batches_tracked (one int64)
    assert nb["ParameterCount"] == 18 + 4 + 27
    assert nb["Footprint"] == 4 * (18 + 4 + 27) + 4 * 4 + 8
    assert nb["ConnectionSparsity"] == pytest.approx(1 / (18 + 24))
    # Effective_MACs of the conv: each non-zero pixel x its non-zero taps (brute force), both steps
    wmask = (m.conv.weight.detach().numpy()[:, 0] != 0)
    macs = 0
    for n in range(3):
        for i in range(4):
            for j in range(4):
                if x[n, 0, i, j] == 0:
                    continue
                for o in range(2):
                    for dy in range(3):
                        for dx in range(3):
                            yi, yj = i - dy + 1, j - dx + 1  # output position this tap writes
                            macs += wmask[o, dy, dx] and 0 <= yi < 4 and 0 <= yj < 4
    # fc: its input is the (analog) pool output; a non-zero pooled value costs 3 MACs (all fc weights non-zero)
    with torch.no_grad():
        _, rec = I.run(graph, x, record=True)
    pooled = next(rec[n] for n in graph.topological_order() if graph.nodes[n].op == "avgpool2d")
    assert nb["Effective_MACs"] == pytest.approx((2 * macs + 3 * int((pooled != 0).sum())) / 3)
    assert nb["Effective_ACs"] == 0  # no weight layer sees spikes; the pool is not synaptic here
    # Dense: real taps of the conv (taps on padding excluded) + fc, over T = 2
    per_axis = sum(len([d for d in range(3) if 0 <= o + d - 1 < 4]) for o in range(4))  # 2 + 3 + 3 + 2
    real_taps = 2 * per_axis ** 2
    assert nb["Dense"] == 2 * (real_taps + 8 * 3)
    spikes = int(sum((rec[n] != 0).sum() for n in graph.topological_order() if graph.nodes[n].op == "neuron"))
    assert 0 < spikes < 3 * 2 * 2 * 16
    assert nb["ActivationSparsity"] == pytest.approx(1 - spikes / (3 * 2 * 2 * 16), abs=1e-15)
    assert nb["MembraneUpdates"] == 2 * 16 * 2


def test_spikingjelly_synops_are_spike_driven_weight_layer_acs(digits_ilif_graph, digits_test):
    x = digits_test[0][:20]
    rep = energy.profile(digits_ilif_graph, x, conventions="spikingjelly", progress=False)
    by = {r.name: r for r in rep.rows}
    spike_fed = [r for r in rep.rows if r.op in ("conv2d", "linear") and r.input_kind == "spikes"]
    assert len(spike_fed) == 1 and by[spike_fed[0].name].macs == 0  # conv2; conv1 (pixels) and fc (pooled) are not
    assert rep.meta["metrics"]["spikingjelly"]["SynOps"] == spike_fed[0].acs > 0
    assert "metrics" not in energy.profile(digits_ilif_graph, x, progress=False).meta


def test_neurobench_cli_json_markdown_and_compare(tmp_path):
    assert energy.Conventions.preset("neurobench").to_dict() == {
        **energy.Conventions().to_dict(), "pooling": "separate", "analog": "nonzero", "zero_weights": "skip",
        "ann_padding": "real"}
    out, md = tmp_path / "nb.json", tmp_path / "nb.md"
    assert energy_cli.main(["example:digits_ilif", "--data", "digits", "--samples", "20", "--no-progress",
                            "--conventions", "neurobench", "-c", "bias=count", "--json", str(out),
                            "--compare", "example:digits_lif", "--markdown", str(md)]) == 0
    rep = json.loads(out.read_text())
    assert rep["conventions"]["zero_weights"] == "skip" and rep["conventions"]["bias"] == "count"
    nb = rep["metrics"]["neurobench"]
    assert nb["MembraneUpdates"] == (16 * 64 + 32 * 64) * 4
    assert nb["ActivationSparsity"] == 1 - rep["totals"]["firing_rate"]
    weight = [r for r in rep["layers"] if r["op"] in ("conv2d", "linear")]
    assert nb["Effective_ACs"] == sum(r["acs"] or 0 for r in weight) < rep["totals"]["acs"]  # + pool ACs
    assert nb["Dense"] == sum(r["ann_macs"] for r in weight) * 4
    assert nb["Footprint"] == rep["graph"]["torch_module"]["footprint_bytes"]
    assert rep["compare"]["metrics"]["neurobench"]["Footprint"] == nb["Footprint"]  # same architecture
    text = md.read_text()
    assert "## NeuroBench metrics" in text and "Effective_ACs" in text and text.count("| digits_") >= 2
    rc = energy_cli.main(["example:digits_ilif", "--data", "none", "--rate", "0.1", "--json", str(tmp_path / "p")])
    assert rc == 0 and "metrics" not in json.loads((tmp_path / "p").read_text())
