"""SpikingJelly 2.0's simple and Lemaire estimators reproduced from a report (energy/judges.py), against values
computed by hand from the estimators' definitions (benchmarks/judges_equality.py shows them equal to SpikingJelly's
own code on a digits net and a ResNet-18)."""
import pytest
import torch
from torch import nn

import ilif_deploy as I
from ilif_deploy import energy
from ilif_deploy.energy import judges
from ilif_deploy import layers as L
from ilif_deploy.neurons import ILIF, LIF

T, RATE = 2, 0.25


@pytest.fixture(scope="module")
def graph():
    """input [1,4,4] -> conv 3x3 pad 1 (2 out, bias) -> LIF -> conv 3x3 stride 2 pad 1 (2 out) -> ILIF
    -> avgpool 2 -> flatten -> linear 2->3 (bias)"""
    torch.manual_seed(0)
    model = nn.Sequential(L.Conv2d(1, 2, 3, 1, 1), LIF(tau=2.0), L.Conv2d(2, 2, 3, 2, 1, bias=False), ILIF(),
                          L.AvgPool2d(2), L.Flatten(), nn.Linear(2, 3))
    return I.trace(model, (1, 4, 4), T)


def rep(graph, conventions="spikingjelly"):
    return energy.estimate(graph, RATE, conventions=conventions, input="analog", progress=False)


def test_simple_energy_by_hand(graph):
    s = judges.spikingjelly_simple(rep(graph))
    c = s["counts"]
    # conv1 fed analog values: 32 outputs x 9 taps x T (padding taps included) ; linear fed the analog pool: 6 x T
    assert c["mac_synaptic"] == 32 * 9 * T + 6 * T == 588
    # conv2 fed spikes: the 3x3/2 conv reaches 1, 2, 1, 1 output rows from input rows 0..3 (columns alike), so a
    # channel's positions reach (1+2+1+1)^2 = 25 outputs per output channel: 2 in x 25 x 2 out x RATE x T
    assert c["ac_synaptic"] == 2 * 25 * 2 * RATE * T == 50
    assert c["ac_pool"] == 2 * T * (4 - 1)  # 2 pool outputs, 3 adds each
    assert c["mac"] == 588 and c["ac"] == 62 and c["mac_bn"] == c["ac_bn"] == c["ac_add"] == 0
    assert c["weight_read_bytes"] == 4 * (588 + 50)
    assert c["bias_read_bytes"] == 4 * (32 * T + 3 * T)
    # neuron state: LIF holds v (32 neurons), ILIF v, ciu and mpiu (8 neurons), read and written every step
    assert c["neuron_state_read_bytes"] == c["neuron_state_write_bytes"] == 4 * (32 * 1 + 8 * 3) * T
    e = s["energy_pj"]
    assert e["total_pj"] == pytest.approx(588 * 4.6 + 62 * 0.9 + (2552 + 280 + 2 * 448) * 24.96, rel=1e-12)


def price(capacity):  # SpikingJelly's Lemaire SRAM price below 8 kB: 10 pJ per 4-byte word at 8 kB, linear
    return 2.5 * capacity / 8192


@pytest.mark.parametrize("batch", [1, 4])
def test_lemaire_energy_by_hand(graph, batch):
    r = judges.spikingjelly_lemaire(rep(graph), batch=batch)
    c = r["counts"]
    spikes_lif, spikes_ilif = RATE * 32 * T, RATE * 8 * T  # 16, 4
    # conv2: 2 out-channels x ceil(3/2)^2 synops per spike (SpikingJelly's approximation), 2 x 9 taps addressed
    assert c["synop"] == spikes_lif * 2 * 4 == 128
    assert c["mac"] == 576 + 12 + 32 * T + 8 * T  # dense conv1 and linear, one leak multiply per neuron and step
    assert c["ac"] == 32 * T + 128 + 3 * T + spikes_lif + spikes_ilif  # biases, synops, one per spike
    assert c["acc_addr"] == (16 * T + 32 * T + 2 * 9 / batch) + spikes_lif * 18 + (2 * T + 3 * T)
    assert c["mac_addr"] == 2 * spikes_lif
    assert c["read_in_bytes"] == 4 * (576 + spikes_lif + 2 * T)
    assert c["read_params_bytes"] == 4 * (576 + 32 * T) + 4 * spikes_lif * 18 + 4 * (6 * T + 3 * T)
    assert c["read_potential_bytes"] == c["write_potential_bytes"] == 4 * (spikes_lif * 18 + 32 * T + 8 * 3 * T)
    assert c["write_out_bytes"] == 4 * (spikes_lif + spikes_ilif)
    fifo = 4000
    # a buffer holds one forward call's tensor: T x batch x the layer's values; parameters: weights + biases
    memory = (4 * 576 * price(4 * 16 * T * batch) + 4 * spikes_lif * price(fifo) + 4 * 2 * T * price(4 * 2 * T * batch)
              + 4 * (576 + 64) * price(4 * 20) + 4 * 288 * price(4 * 36) + 4 * 18 * price(4 * 9)
              + 2 * 4 * 288 * price(4 * 8 * batch) + 2 * 4 * 32 * T * price(4 * 32 * batch)
              + 2 * 4 * 24 * T * price(4 * 24 * batch) + 4 * (spikes_lif + spikes_ilif) * price(fifo))
    ops = c["ac"] * 0.1 + c["mac"] * 3.2 + c["acc_addr"] * 0.1 + c["mac_addr"] * 3.2
    assert r["energy_pj"]["memory_pj"] == pytest.approx(memory, rel=1e-12)
    assert r["energy_pj"]["total_pj"] == pytest.approx(ops + memory, rel=1e-12)
    assert r["not_in_spikingjelly"] == [n.name for n in graph.of_type(I.ir.Neuron) if n.params.ciu_enabled]


def test_sram_price_points():
    assert judges.lemaire_sram_pj_per_byte(8192) == 2.5
    assert judges.lemaire_sram_pj_per_byte(32768) == 5.0
    assert judges.lemaire_sram_pj_per_byte(1 << 20) == judges.lemaire_sram_pj_per_byte(1 << 30) == 25.0
    assert judges.lemaire_sram_pj_per_byte(20480) == pytest.approx(3.75)


def test_preset_metrics_carry_the_judges(graph):
    m = rep(graph).meta["metrics"]["spikingjelly"]
    assert m["simple_energy"]["counts"]["mac"] == 588 and m["lemaire_energy"]["counts"]["synop"] == 128
    with pytest.raises(ValueError, match="pools as layers"):
        judges.spikingjelly_simple(rep(graph, conventions="paper"))


# ------------------------------------------------------------------ NeuroBench's NeuronOperations
def test_neuron_operations_by_hand():
    """snntorch Leaky (beta 0.5, threshold 1.5, subtract): neuron 0 is driven by 1.0 every step, neuron 1 by
    nothing.  NeuroBench counts every neuron at the first step, then each whose membrane changed: sample [1, 0]:
    2 + 1 + 1 = 4 updates; sample [0, 0]: 2 + 0 + 0.  A Leaky update costs 4 operations."""
    import snntorch as snn

    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    net = nn.Sequential(lin, snn.Leaky(beta=0.5, threshold=1.5, init_hidden=True, reset_mechanism="subtract"))
    g = I.trace(net, (2,), 3)
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).numpy()
    rep = energy.profile(g, x, conventions="neurobench", progress=False)
    [neuron] = [n.name for n in g.of_type(I.ir.Neuron)]
    assert rep.activity.changes == {neuron: 6.0}
    ops = rep.meta["metrics"]["neurobench"]["NeuronOperations"]
    assert ops == {"Effective Neuron Ops": 4 * 6 / 2, "Neuron Dense Ops": 4 * 2 * 3, "unpriced": []}
    # other presets do not pay for the second neuron run
    assert energy.profile(g, x, conventions="paper", progress=False).activity.changes == {}


def test_neuron_operations_leave_ilif_unpriced(digits_ilif_graph):
    x = torch.rand(4, 1, 8, 8).numpy()
    ops = energy.profile(digits_ilif_graph, x, conventions="neurobench", progress=False).meta["metrics"][
        "neurobench"]["NeuronOperations"]
    assert ops["unpriced"] == [n.name for n in digits_ilif_graph.of_type(I.ir.SPIKING)] and ops[
        "Effective Neuron Ops"] == 0
