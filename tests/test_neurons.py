"""ILIF/LIF neuron dynamics: golden conformance, LIF reduction, surrogate gradients, BPTT paths."""
import numpy as np
import pytest
import torch

from ilif_deploy import ILIF, IPLIF, LIF, ILIFParams, rectangle, sigmoid
from ilif_deploy.neuron_step import NUMPY_OPS, ilif_step, zero_state

CASES = ["tau1.1_T6_strong", "tau1.1_T8", "tau2.0_T16", "tau4.0_T20_weak"]


@pytest.mark.parametrize("case", CASES)
def test_golden_torch_module(golden, case):
    x = torch.tensor(golden[f"{case}/x"])
    spikes, st = ILIF(tau=float(golden[f"{case}/tau"]))(x, return_states=True)
    ref = golden[f"{case}/spikes"]
    assert ref.sum() > 0 and (ref == 0).sum() > 0  # the case exercises both outcomes
    assert int((spikes.numpy() != ref).sum()) == 0
    np.testing.assert_allclose(st["v"].numpy(), golden[f"{case}/v"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(st["mpiu"].numpy(), golden[f"{case}/mpiu"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(st["ciu"].numpy(), golden[f"{case}/ciu_pre"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_golden_numpy_step(golden, case):
    """The same shared step on numpy arrays (what the Lava float model uses)."""
    x = golden[f"{case}/x"]
    p = ILIFParams.from_tau(float(golden[f"{case}/tau"]))
    state = zero_state(x[0], NUMPY_OPS)
    spikes, mpiu = [], []
    for t in range(len(x)):
        rec = ilif_step(x[t], state, p, NUMPY_OPS)
        state = rec.state
        spikes.append(rec.spikes)
        mpiu.append(state.mpiu)
    assert int((np.array(spikes) != golden[f"{case}/spikes"]).sum()) == 0
    np.testing.assert_allclose(np.array(mpiu), golden[f"{case}/mpiu"], atol=1e-5, rtol=0)


def _reference_soft_reset_lif(x: torch.Tensor, tau: float, v_th: float) -> torch.Tensor:
    lam = 1.0 - 1.0 / tau
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        v = lam * v + x[t]
        s = (v >= v_th).float()
        v = v - s * v_th
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("tau,v_th", [(1.1, 1.0), (2.0, 0.5), (4.0, 1.0)])
def test_zero_inhibition_is_soft_reset_lif_exactly(tau, v_th):
    torch.manual_seed(0)
    x = torch.randn(40, 300) * 1.5
    ilif0 = ILIF(tau=tau, v_th=v_th, lam_u=0.0, lam_i=0.0)(x, return_states=True)
    lif = LIF(tau=tau, v_th=v_th)(x, return_states=True)
    ref = _reference_soft_reset_lif(x, tau, v_th)
    assert ref.sum() > 100
    assert torch.equal(ilif0[0], ref)
    assert torch.equal(lif[0], ref)
    assert torch.equal(ilif0[1]["v"], lif[1]["v"])
    # and the inhibition does change the dynamics when it is on
    assert not torch.equal(ILIF(tau=tau, v_th=v_th)(x), ref)


def test_single_step_matches_multi_step():
    torch.manual_seed(1)
    x = torch.randn(12, 7, 5) * 2
    n = ILIF(tau=2.0, lam_i=0.2, ciu_source="net")
    multi = n(x)
    state, steps = None, []
    for t in range(12):
        s, state = n.single_step(x[t], state)
        steps.append(s)
    assert torch.equal(torch.stack(steps), multi)


def test_ciu_source_net_uses_inhibited_current():
    # two steps by hand: x = [2, 2], lam = 0 (tau = 1), v_th = 1, lam_i = 0.5, MPIU off
    x = torch.tensor([[2.0], [2.0], [2.0]])
    syn = ILIF(tau=1.0, lam_u=0.0, lam_i=0.5, ciu_source="synaptic")(x, return_states=True)[1]["ciu"]
    net = ILIF(tau=1.0, lam_u=0.0, lam_i=0.5, ciu_source="net")(x, return_states=True)[1]["ciu"]
    # t=1: ciu = 0.5 * (0 + 1*2) = 1.0 for both; I[1] = 2 - 1 = 1
    assert syn[1].item() == pytest.approx(1.0) and net[1].item() == pytest.approx(1.0)
    # t=2: synaptic: 0.5 * (1.0 + 1*2) = 1.5 ; net: 0.5 * (1.0 + 1*1) = 1.0
    assert syn[2].item() == pytest.approx(1.5)
    assert net[2].item() == pytest.approx(1.0)


def test_mpiu_enters_reset_through_sigmoid():
    # one spike by hand: x = 1.5, lam_i = 0: mbar = 0.5, mpiu = 0.5, m = 0.5 - sigmoid(0.5)
    _, st = ILIF(tau=2.0, lam_i=0.0)(torch.tensor([[1.5]]), return_states=True)
    assert st["mpiu"].item() == pytest.approx(0.5)
    assert st["v"].item() == pytest.approx(0.5 - 1 / (1 + np.exp(-0.5)), abs=1e-6)


def test_surrogate_derivatives_by_hand():
    d = torch.tensor([-0.6, -0.3, 0.0, 0.3, 0.6], requires_grad=True)
    rectangle(1.0)(d).sum().backward()
    assert d.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    d2 = torch.tensor([0.0, 0.5], requires_grad=True)
    out = sigmoid(4.0)(d2)
    assert out.tolist() == [1.0, 1.0]  # Heaviside with >=
    out.sum().backward()
    s = 1 / (1 + np.exp(-2.0))
    assert d2.grad.tolist() == pytest.approx([1.0, 4 * s * (1 - s)])


def _grad_through(lam_u: float, lam_i: float) -> torch.Tensor:
    """Gradient of the membrane at t = 1 w.r.t. the weight that only feeds step 0.

    With tau = 1 (lam = 0) the membrane carries nothing from step 0 to step 1, so any gradient
    must flow through an inhibitory unit (MPIU or CIU)."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.rand(8, 4) + 0.5)
    inp = torch.stack([torch.ones(3, 4), torch.zeros(3, 4)])  # input only at step 0
    x = inp @ w.T + torch.tensor([0.0, 1.3]).view(2, 1, 1)  # a constant drive makes step 1 fire
    _, st = ILIF(tau=1.0, lam_u=lam_u, lam_i=lam_i, surrogate=rectangle(4.0))(x, return_states=True)
    st["v"][1].sum().backward()
    return w.grad


def test_gradient_reaches_weights_through_mpiu():
    assert _grad_through(lam_u=1.0, lam_i=0.0).abs().sum() > 0
    assert _grad_through(lam_u=0.0, lam_i=0.0).abs().sum() == 0  # no path without the unit


def test_gradient_reaches_weights_through_ciu():
    assert _grad_through(lam_u=0.0, lam_i=0.5).abs().sum() > 0


def test_iplif_learns_its_decay():
    n = IPLIF(init_tau=2.0)
    assert n.step_params().lam == pytest.approx(0.5)
    x = torch.rand(6, 10) * 2
    n(x).sum().backward()
    assert n.w.grad is not None and n.w.grad.abs() > 0


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="ciu_source"):
        ILIF(ciu_source="dendritic")
    with pytest.raises(ValueError, match="tau"):
        ILIF(tau=0.0)
    with pytest.raises(ValueError, match="T >= 1"):
        ILIF()(torch.zeros(0, 3))
