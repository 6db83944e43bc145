"""ILIF, LIF and IPLIF neurons as torch modules (thin wrappers around :func:`ilif_step`).

Every module is multi-step: ``forward`` takes input currents ``[T, ...]`` (time first) and
returns 0/1 spikes ``[T, ...]``; state starts at zero on every call, so a module never carries
state between calls.  :meth:`ILIF.single_step` advances one step from an explicit state for
online use.  Gradients flow through every path (full BPTT, no detach on reset or inhibition).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

import torch
from torch import nn

from .errors import UserError
from .neuron_step import ArrayOps, ILIFParams, ILIFState, ilif_step, run_sequence, zero_state


# --------------------------------------------------------------------------- surrogates
class _SurrogateSpike(torch.autograd.Function):
    """Heaviside(d >= 0) forward; the surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, d, kind, width):
        ctx.save_for_backward(d)
        ctx.kind, ctx.width = kind, width
        return (d >= 0).to(d.dtype)

    @staticmethod
    def backward(ctx, grad):
        (d,) = ctx.saved_tensors
        if ctx.kind == "sigmoid":
            s = torch.sigmoid(ctx.width * d)
            slope = ctx.width * s * (1 - s)
        else:  # rectangle of support width gamma, height 1/gamma
            slope = (d.abs() < ctx.width / 2).to(grad.dtype) / ctx.width
        return grad * slope, None, None


class Surrogate:
    """Heaviside forward, smooth derivative backward.  Use :func:`sigmoid` or :func:`rectangle`."""

    def __init__(self, kind: str, width: float):
        if kind not in ("sigmoid", "rectangle"):
            raise UserError(f"unknown surrogate {kind!r}: use 'sigmoid' or 'rectangle'")
        if not width > 0:
            raise UserError(f"surrogate parameter must be > 0, got {width}")
        self.kind, self.width = kind, float(width)

    def __call__(self, d: torch.Tensor) -> torch.Tensor:
        return _SurrogateSpike.apply(d, self.kind, self.width)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "width": self.width}

    def __repr__(self) -> str:
        return f"{self.kind}({self.width:g})"


def sigmoid(alpha: float = 4.0) -> Surrogate:
    """Sigmoid surrogate: dS/dU = alpha * s * (1 - s), s = sigmoid(alpha * (U - v_th))."""
    return Surrogate("sigmoid", alpha)


def rectangle(gamma: float = 1.0) -> Surrogate:
    """Rectangular surrogate of support width ``gamma`` (paper Eq. 9): 1/gamma inside |U - v_th| < gamma/2."""
    return Surrogate("rectangle", gamma)


def as_surrogate(s: Union[None, str, dict, Surrogate]) -> Surrogate:
    if s is None:
        return sigmoid(4.0)
    if isinstance(s, Surrogate):
        return s
    if isinstance(s, dict):
        return Surrogate(s["kind"], s["width"])
    if isinstance(s, str):
        return sigmoid() if s == "sigmoid" else rectangle() if s == "rectangle" else Surrogate(s, 1.0)
    raise TypeError(f"surrogate must be a Surrogate, 'sigmoid' or 'rectangle', got {type(s).__name__}")


def spike_count(a: torch.Tensor, v_th: float) -> torch.Tensor:
    """Spikes of a multi-spike neuron, ``(a > 0) * trunc(a / v_th)`` (sinabs' ``MultiSpike`` forward: the
    threshold a tensor of a's dtype, as sinabs holds it, so the division rounds as there)."""
    return (a > 0) * torch.div(a, torch.as_tensor(v_th, dtype=a.dtype, device=a.device), rounding_mode="trunc")


def torch_ops(surrogate: Surrogate) -> ArrayOps:
    return ArrayOps(spike=surrogate, relu=torch.relu, sigmoid=torch.sigmoid, zeros_like=torch.zeros_like,
                    stack=torch.stack, count=spike_count)


# --------------------------------------------------------------------------- modules
class ILIF(nn.Module):
    """Temporal Inhibitory LIF neuron layer (Sun et al., arXiv 2505.10371).

    Args:
        tau: membrane time constant in steps (``lam = 1 - 1/tau``; 1.1 gives lam ~ 0.0909).
        v_th: firing threshold (volts-as-floats, same unit as the input current).
        lam_u: MPIU decay per step (0 switches the MPIU off).
        lam_i: CIU decay per step (0 switches the CIU off).
        ciu_source: ``"synaptic"`` (the authors' code, default) or ``"net"`` (the paper's Eq. 15).
        surrogate: :func:`sigmoid` (default, alpha = 4 as in the authors' training) or :func:`rectangle`.
    """

    kind = "ilif"

    def __init__(self, tau: float = 1.1, v_th: float = 1.0, lam_u: float = 1.0, lam_i: float = 0.03,
                 ciu_source: str = "synaptic", surrogate: Union[None, str, Surrogate] = None):
        super().__init__()
        self.params = ILIFParams.from_tau(tau, v_th=v_th, lam_u=lam_u, lam_i=lam_i, ciu_source=ciu_source)
        self.tau = float(tau)
        self.surrogate = as_surrogate(surrogate)

    # The decay as used by the step: a float here, a tensor for the learnable IPLIF.
    def _lam(self):
        return None

    def step_params(self) -> ILIFParams:
        """The parameters an exporter should write for this layer (plain floats)."""
        return self.params

    def single_step(self, x: torch.Tensor, state: Optional[ILIFState] = None):
        """One step: ``x`` is the input current of one step; returns ``(spikes, new_state)``."""
        ops = torch_ops(self.surrogate)
        if state is None:
            state = zero_state(x, ops)
        rec = ilif_step(x, state, self.params, ops, lam=self._lam())
        return rec.spikes, rec.state

    def forward(self, x: torch.Tensor, return_states: bool = False):
        """Multi-step: ``x`` is ``[T, ...]``; returns spikes ``[T, ...]`` (and a dict of
        per-step ``v`` (= m[t]), ``mpiu``, ``ciu`` (before the clamp), each ``[T, ...]``)."""
        if x.dim() < 1 or x.shape[0] == 0:
            raise UserError(f"{type(self).__name__} expects input [T, ...] with T >= 1, got shape {tuple(x.shape)}")
        return run_sequence(x, self.params, torch_ops(self.surrogate), lam=self._lam(), return_states=return_states)

    def extra_repr(self) -> str:
        p = self.params
        return (f"tau={self.tau:g}, v_th={p.v_th:g}, lam_u={p.lam_u:g}, lam_i={p.lam_i:g}, "
                f"ciu_source={p.ciu_source!r}, surrogate={self.surrogate}")


class LIF(ILIF):
    """Soft-reset LIF: exactly :class:`ILIF` with ``lam_u = lam_i = 0``."""

    kind = "lif"

    def __init__(self, tau: float = 1.1, v_th: float = 1.0, surrogate: Union[None, str, Surrogate] = None):
        super().__init__(tau=tau, v_th=v_th, lam_u=0.0, lam_i=0.0, surrogate=surrogate)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, v_th={self.params.v_th:g}, surrogate={self.surrogate}"


class IPLIF(ILIF):
    """ILIF with a learnable membrane decay, PLIF-style (paper Table 3).

    The decay is ``lam = 1 - sigmoid(w)`` with one learnable scalar ``w`` per layer
    (``1/tau = sigmoid(w)``, so tau stays > 1 step); ``init_tau`` sets its start value.
    """

    kind = "iplif"

    def __init__(self, init_tau: float = 2.0, v_th: float = 1.0, lam_u: float = 1.0, lam_i: float = 0.03,
                 ciu_source: str = "synaptic", surrogate: Union[None, str, Surrogate] = None):
        if not init_tau > 1.0:
            raise UserError(f"IPLIF needs init_tau > 1 step (1/tau = sigmoid(w)), got {init_tau}")
        super().__init__(tau=init_tau, v_th=v_th, lam_u=lam_u, lam_i=lam_i, ciu_source=ciu_source,
                         surrogate=surrogate)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def _lam(self):
        return 1.0 - torch.sigmoid(self.w)

    def step_params(self) -> ILIFParams:
        lam = float(self._lam().detach())
        return dataclasses.replace(self.params, lam=lam, learned_decay=True)

    def extra_repr(self) -> str:
        return f"tau={1.0 / float(torch.sigmoid(self.w)):.4g} (learnable), " + super().extra_repr().split(", ", 1)[1]



class PLIF(IPLIF):
    """The authors' PLIF (``-neuron_model PLIF``: SpikingJelly's ``ParametricLIFNode`` with ``decay_input=False``,
    soft reset, v_th = 1): a soft-reset LIF whose decay ``1 - sigmoid(w)`` is learned, one scalar ``w`` per layer
    (state_dict key ``<layer>.w``), initialised from ``init_tau`` as ``w = -ln(init_tau - 1)``.  Exactly
    :class:`IPLIF` with both inhibitory units off; its step computes ``v * (1 - sigmoid(w)) + x`` as SpikingJelly
    does."""

    kind = "plif"

    def __init__(self, init_tau: float = 2.0, v_th: float = 1.0, surrogate: Union[None, str, Surrogate] = None):
        super().__init__(init_tau=init_tau, v_th=v_th, lam_u=0.0, lam_i=0.0, surrogate=surrogate)

    def extra_repr(self) -> str:
        return f"tau={1.0 / float(torch.sigmoid(self.w)):.4g} (learnable), v_th={self.params.v_th:g}, " \
               f"surrogate={self.surrogate}"


class ReLU(nn.ReLU):
    """The authors' ANN baseline (``-neuron_model relu``, run at T = 1): a plain ReLU where the neuron layers
    were, so an ANN trained with their code loads under the same architecture and key names."""

    kind = "relu"
