"""The one definition of the ILIF time step, shared by every floating-point backend.

The torch modules (:mod:`ilif_deploy.neurons`), the IR runtime and the Lava floating-point
process model all call :func:`ilif_step`; only the array operations differ, so they are passed
in as an :class:`ArrayOps` bundle (torch with a surrogate-gradient spike, or numpy).

Equations (DESIGN.md section 2), discrete time t = 1..T, all state zero at t = 0::

    ciu[t]  = lam_i * (ciu[t-1] + S[t-1] * c[t-1])    # current inhibitory unit (CIU)
    I[t]    = x[t] - max(ciu[t], 0)                    # inhibited input current
    U[t]    = lam * m[t-1] + I[t]                      # membrane potential before firing
    S[t]    = U[t] >= v_th                             # Heaviside, ">=" not ">"
    mbar[t] = U[t] - S[t] * v_th                       # soft reset
    mpiu[t] = lam_u * (mpiu[t-1] + S[t] * mbar[t])     # membrane-potential inhibitory unit (MPIU)
    m[t]    = mbar[t] - S[t] * sigmoid(mpiu[t])        # only while the MPIU is enabled (lam_u != 0)

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
from dataclasses import asdict, dataclass
from typing import Any, Callable, NamedTuple

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
        if self.ciu_source not in CIU_SOURCES:
            raise ValueError(f"ciu_source must be one of {CIU_SOURCES}, got {self.ciu_source!r}")
        if self.reset not in RESET_MODES:
            raise ValueError(f"reset must be one of {RESET_MODES}, got {self.reset!r}")
        if self.compare not in COMPARES:
            raise ValueError(f"compare must be one of {COMPARES}, got {self.compare!r}")
        for name in ("lam", "v_th", "lam_u", "lam_i", "v_reset"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"ILIF parameter {name} must be a finite number, got {value!r}")

    @classmethod
    def from_tau(cls, tau: float, **kw: Any) -> "ILIFParams":
        """Build parameters from a membrane time constant ``tau`` in steps (``lam = 1 - 1/tau``)."""
        if tau <= 0:
            raise ValueError(f"tau must be > 0 steps, got {tau}")
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
        return asdict(self)


class ILIFState(NamedTuple):
    """State carried from one step to the next (arrays of the layer's shape)."""

    m: Any  # membrane potential after reset and MPIU inhibition, m[t]
    mpiu: Any  # MPIU state, mpiu[t]
    ciu: Any  # CIU state before the clamp, ciu[t]
    ciu_drive: Any  # S[t] * c[t], what enters the CIU at the next step


class StepRecord(NamedTuple):
    """Everything one step produced; ``state`` is what the next step needs."""

    spikes: Any
    state: ILIFState
    current: Any  # inhibited input current I[t]
    u: Any  # membrane potential before firing U[t]


@dataclass(frozen=True)
class ArrayOps:
    """The few array operations the step needs, so torch and numpy can share one step."""

    spike: Callable[[Any], Any]  # Heaviside of (U - v_th) -> 0/1 of the input dtype, ">= 0"
    relu: Callable[[Any], Any]
    sigmoid: Callable[[Any], Any]
    zeros_like: Callable[[Any], Any]


def zero_state(x: Any, ops: ArrayOps) -> ILIFState:
    """All-zero state shaped like one step of input ``x`` (the state at t = 0)."""
    z = ops.zeros_like(x)
    return ILIFState(m=z, mpiu=z, ciu=z, ciu_drive=z)


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
        current = x - ops.relu(ciu)
    else:
        ciu = state.ciu
        current = x
    u = (p.lam if lam is None else lam) * state.m + current
    if p.compare == ">=":
        spikes = ops.spike(u - p.v_th)
    else:  # U > v_th  <=>  not (v_th - U >= 0)
        spikes = 1 - ops.spike(p.v_th - u)
    if p.reset == "subtract":
        mbar = u - spikes * p.v_th
    else:  # written so that a spike leaves exactly v_reset and no spike exactly U
        mbar = (1 - spikes) * u + spikes * p.v_reset
    if p.mpiu_enabled:
        mpiu = p.lam_u * (state.mpiu + spikes * mbar)
        m = mbar - spikes * ops.sigmoid(mpiu)
    else:
        mpiu = state.mpiu
        m = mbar
    ciu_drive = spikes * (x if p.ciu_source == "synaptic" else current) if p.ciu_enabled else state.ciu_drive
    return StepRecord(spikes, ILIFState(m, mpiu, ciu, ciu_drive), current, u)


def _numpy_ops() -> ArrayOps:
    import numpy as np

    def spike(d):
        return (d >= 0).astype(d.dtype)

    def sigmoid(a):
        # exp of a negative number only: no overflow warnings for large |a|.
        e = np.exp(-np.abs(a))
        return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(a.dtype)

    return ArrayOps(spike=spike, relu=lambda a: np.maximum(a, 0).astype(a.dtype), sigmoid=sigmoid,
                    zeros_like=np.zeros_like)


NUMPY_OPS = _numpy_ops()
