"""The one definition of the ILIF time step, shared by every floating-point backend.

The torch modules (:mod:`ilif_deploy.neurons`), the IR runtime and the Lava floating-point
process model all call :func:`ilif_step`; only the array operations differ, so they are passed
in as an :class:`ArrayOps` bundle (torch with a surrogate-gradient spike, or numpy).

Equations (docs/ilif.md), discrete time t = 1..T, all state zero at t = 0::

    ciu[t]  = lam_i * (ciu[t-1] + S[t-1] * c[t-1])    # current inhibitory unit (CIU)
    I[t]    = x[t] - max(ciu[t], 0)                    # inhibited input current
    U[t]    = lam * m[t-1] + I[t]                      # membrane potential before firing
    S[t]    = U[t] >= v_th                             # Heaviside, ">=" not ">"
    mbar[t] = U[t] - S[t] * v_th                       # soft reset
    mpiu[t] = lam_u * (mpiu[t-1] + S[t] * mbar[t])     # membrane-potential inhibitory unit (MPIU)
    m[t]    = mbar[t] - S[t] * sigmoid(mpiu[t])        # only while the MPIU is enabled (lam_u != 0)

Names (the same in torch, the IR, Lava, ONNX, NIR metadata and reports, see docs/ilif.md):
``v`` is the membrane m[t], ``u`` the inhibited current I[t] (Lava's current compartment), ``v_pre``
the membrane before firing U[t], ``ciu``/``mpiu`` the two units.

``c`` is the raw synaptic input ``x`` (``ciu_source="synaptic"``, the authors' code) or the
inhibited current ``I`` (``ciu_source="net"``, the paper's Eq. 15).

Why the MPIU term is switched off at ``lam_u == 0``: with the unit's state pinned at zero the
reset term would still subtract ``sigmoid(0) = 0.5`` per spike, so ILIF would *not* reduce to
soft-reset LIF.  A zero MPIU decay therefore means "no MPIU unit", which makes
``LIF == ILIF(lam_u=0, lam_i=0)`` hold exactly, as the design requires.

All quantities are dimensionless floats ("volts-as-floats"): the threshold ``v_th`` and every
state are in the same units as the input current ``x``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, NamedTuple

from .errors import UserError

CIU_SOURCES = ("synaptic", "net")
#: "subtract": soft reset by v_th (ILIF, the contract); "zero": hard reset to v_reset (NIR's LIF/IF,
#: snntorch's reset_mechanism="zero") -- added for networks imported from NIR.
RESET_MODES = ("subtract", "zero")
#: spike rule: ">=" (ILIF, the contract) or ">" (NIR's documented rule, snntorch's Heaviside).
COMPARES = (">=", ">")


@dataclass(frozen=True)
class ILIFParams:
    """Parameters of one ILIF neuron layer (scalars shared by all neurons of the layer).

    ``lam`` is the membrane decay per step (``1 - 1/tau``), ``lam_u``/``lam_i`` the decays of the
    MPIU and CIU units per step, ``v_th`` the threshold.

    ``reset``, ``v_reset`` and ``compare`` exist for neurons imported from NIR (foreign LIF/IF):
    their defaults ("subtract", 0.0, ">=") are the ILIF contract and leave its step untouched.
    With ``reset="zero"`` the reset is ``mbar = (1 - S) * U + S * v_reset`` (hard reset).
    """

    lam: float
    v_th: float = 1.0
    lam_u: float = 1.0
    lam_i: float = 0.03
    ciu_source: str = "synaptic"
    reset: str = "subtract"
    v_reset: float = 0.0
    compare: str = ">="

    def __post_init__(self) -> None:
        for name, allowed in (("ciu_source", CIU_SOURCES), ("reset", RESET_MODES), ("compare", COMPARES)):
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("lam", "v_th", "lam_u", "lam_i", "v_reset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"ILIF parameter {name} must be a finite number, got {value!r}")

    @classmethod
    def from_tau(cls, tau: float, **kw: Any) -> "ILIFParams":
        """Build parameters from a membrane time constant ``tau`` in steps (``lam = 1 - 1/tau``)."""
        if not tau > 0:
            raise UserError(f"tau must be > 0 steps, got {tau}")
        return cls(lam=1.0 - 1.0 / tau, **kw)

    @property
    def tau(self) -> float:
        """Membrane time constant in steps (infinite for a non-leaky neuron, lam = 1)."""
        return math.inf if self.lam == 1.0 else 1.0 / (1.0 - self.lam)

    @property
    def mpiu_enabled(self) -> bool:
        return self.lam_u != 0.0

    @property
    def ciu_enabled(self) -> bool:
        return self.lam_i != 0.0

    @property
    def is_lif(self) -> bool:
        """True when both inhibitory units are off: the neuron is a LIF (soft reset unless ``reset="zero"``)."""
        return not (self.mpiu_enabled or self.ciu_enabled)

    @property
    def is_standard(self) -> bool:
        """True for the ILIF contract's reset and spike rule (soft reset, ">=")."""
        return self.reset == "subtract" and self.compare == ">="

    def to_dict(self) -> dict:
        """Every parameter as a JSON-ready dict (the one serialised form, in every file format)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ILIFParams":
        """Inverse of :meth:`to_dict`; unknown or missing keys are refused by name."""
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) - known or "lam" not in d:
            bad = sorted(set(d) - known) if isinstance(d, dict) else type(d).__name__
            raise UserError(f"neuron parameters {bad or 'without lam'} are not ILIF parameters ({sorted(known)})")
        return cls(**d)


class ILIFState(NamedTuple):
    """State carried from one step to the next (arrays of the layer's shape)."""

    v: Any  # membrane potential after reset and MPIU inhibition, m[t]
    mpiu: Any  # MPIU state, mpiu[t]
    ciu: Any  # CIU state before the clamp, ciu[t]
    ciu_drive: Any  # S[t] * c[t], what enters the CIU at the next step


class StepRecord(NamedTuple):
    """Everything one step produced; ``state`` is what the next step needs."""

    spikes: Any
    state: ILIFState
    u: Any  # inhibited input current I[t] (Lava's current compartment u)
    v_pre: Any  # membrane potential before firing U[t]


@dataclass(frozen=True)
class ArrayOps:
    """The few array operations the step needs, so torch and numpy can share one step."""

    spike: Callable[[Any], Any]  # Heaviside of (U - v_th) -> 0/1 of the input dtype, ">= 0"
    relu: Callable[[Any], Any]
    sigmoid: Callable[[Any], Any]
    zeros_like: Callable[[Any], Any]
    stack: Callable[[list], Any]


def zero_state(x: Any, ops: ArrayOps) -> ILIFState:
    """All-zero state shaped like one step of input ``x`` (the state at t = 0)."""
    z = ops.zeros_like(x)
    return ILIFState(v=z, mpiu=z, ciu=z, ciu_drive=z)


def ilif_step(x: Any, state: ILIFState, p: ILIFParams, ops: ArrayOps, lam: Any = None) -> StepRecord:
    """Advance one ILIF layer by one time step.

    Args:
        x: synaptic input current x[t] (float array, same units as ``p.v_th``).
        state: the state after step t-1 (use :func:`zero_state` for t = 1).
        p: layer parameters.
        ops: array operations (see :data:`NUMPY_OPS` and ``ilif_deploy.neurons.torch_ops``).
        lam: overrides ``p.lam`` (a learnable tensor for IPLIF); ``None`` uses ``p.lam``.
    Returns:
        a :class:`StepRecord` with the 0/1 spikes S[t] and the new state.
    """
    if p.ciu_enabled:
        ciu = p.lam_i * (state.ciu + state.ciu_drive)
        u = x - ops.relu(ciu)
    else:
        ciu = state.ciu
        u = x
    v_pre = (p.lam if lam is None else lam) * state.v + u
    if p.compare == ">=":
        spikes = ops.spike(v_pre - p.v_th)
    else:  # U > v_th  <=>  not (v_th - U >= 0)
        spikes = 1 - ops.spike(p.v_th - v_pre)
    if p.reset == "subtract":
        mbar = v_pre - spikes * p.v_th
    else:  # written so that a spike leaves exactly v_reset and no spike exactly U
        mbar = (1 - spikes) * v_pre + spikes * p.v_reset
    if p.mpiu_enabled:
        mpiu = p.lam_u * (state.mpiu + spikes * mbar)
        v = mbar - spikes * ops.sigmoid(mpiu)
    else:
        mpiu = state.mpiu
        v = mbar
    ciu_drive = spikes * (x if p.ciu_source == "synaptic" else u) if p.ciu_enabled else state.ciu_drive
    return StepRecord(spikes, ILIFState(v, mpiu, ciu, ciu_drive), u, v_pre)


def run_sequence(x: Any, params: ILIFParams, ops: ArrayOps, lam: Any = None, return_states: bool = False):
    """Run one neuron layer over ``x`` ``[T, ...]`` from zero state; returns spikes ``[T, ...]`` (and
    a dict of per-step ``v`` (= m[t]), ``mpiu``, ``ciu`` (before the clamp), each ``[T, ...]``).
    Shared by the torch modules (surrogate ops), the graph runtime (plain Heaviside) and numpy."""
    state = zero_state(x[0], ops)
    spikes, states = [], {"v": [], "mpiu": [], "ciu": []}
    for t in range(x.shape[0]):
        rec = ilif_step(x[t], state, params, ops, lam=lam)
        state = rec.state
        spikes.append(rec.spikes)
        if return_states:
            for k in states:
                states[k].append(getattr(state, k))
    out = ops.stack(spikes)
    return (out, {k: ops.stack(v) for k, v in states.items()}) if return_states else out


def _numpy_ops() -> ArrayOps:
    import numpy as np

    def spike(d):
        return (d >= 0).astype(d.dtype)

    def sigmoid(a):
        # exp of a negative number only: no overflow warnings for large |a|.
        e = np.exp(-np.abs(a))
        return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(a.dtype)

    return ArrayOps(spike=spike, relu=lambda a: np.maximum(a, 0).astype(a.dtype), sigmoid=sigmoid,
                    zeros_like=np.zeros_like, stack=np.stack)


NUMPY_OPS = _numpy_ops()
