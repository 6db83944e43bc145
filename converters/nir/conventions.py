"""The time and reset conventions ilif-deploy uses when it meets NIR's continuous-time neurons.

NIR's neurons are differential equations; a discrete simulator picks a step ``dt`` and (nearly
always) forward Euler.  For ``nir.LIF``::

    tau * dv/dt = (v_leak - v) + r * I   -->   v[t] = (1 - dt/tau) * v[t-1] + (dt/tau) * (v_leak + r * I[t])

so the per-step decay is ``lam = 1 - dt/tau`` and the per-step input gain ``r * dt / tau``.  ilif-deploy
writes ``tau = dt / (1 - lam)`` and ``r = tau / dt`` (gain exactly 1) with ``dt = DEFAULT_DT``, the step
snntorch's NIR import and export hard-code (1e-4 s), so snntorch rebuilds the same ``beta = lam``.

``nir.IF`` / ``nir.I`` (``dv/dt = r I``) are read the same way by default, ``v[t] = v[t-1] + dt * r * I[t]``
(``if_convention="euler"``; SpikingJelly writes ``r = 1/dt`` for "v += I", and so does ilif-deploy).
Norse and BindsNET write ``r = 1`` for "v += I"; read their files with ``if_convention="per_step"``
(``v[t] = v[t-1] + r * I[t]``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ilif_deploy.errors import UserError
from ilif_deploy.neuron_step import ILIFParams

#: simulation step in seconds assumed for NIR time constants (snntorch's convention; Norse uses 1e-3)
DEFAULT_DT = 1e-4
#: how nir.IF / nir.I's ``r`` is read: "euler" (gain dt*r, the NIR equation) or "per_step" (gain r)
IF_CONVENTIONS = ("euler", "per_step")
#: identifies ilif-deploy's own metadata in a NIR file
META_KEY = "ilif_deploy"
META_FORMAT = "ilif-deploy-nir"
#: 3: neuron families (no neuron ``kind``; version 2 files read as they were meant)
META_VERSION = 3


#: how a file's neurons reset, as --reset names it: "subtract" (by the threshold; at the spike, or at the next step
#: for snntorch, whose Leaky takes it off after the decay), "zero" (hard, to 0), "to-v-reset" (hard, to the file's
#: v_reset: what NIR's equations say)
RESETS = ("subtract", "zero", "to-v-reset")

#: how each exporter's files are meant, by tool (measured or read in its code; docs/nir.md has the table):
#: ``--nir-from NAME`` sets these, ``--dt`` / ``--if-convention`` / ``--reset`` override them.  ``reset`` None:
#: the tool does not record its reset in NIR (a reading of it is an assumption, said in a warning);
#: ``subtract``: what reset by subtraction is in that tool's own step; ``multi_spike``, ``if_floor``,
#: ``lif_decay``: sinabs' neurons (IAF/LIF fire floor(v / v_th) spikes a step; its from_nir floors an IF's membrane
#: at -v_th; its LIF decays by exp(-1 / tau), tau in steps)
NIR_PRESETS = {
    "snntorch": {"dt": 1e-4, "if_convention": "euler", "reset": None, "subtract": "subtract_next",
                 "why": "snntorch 0.9-1.0 export and import hard-code dt = 1e-4; its Leaky's reset (subtract by "
                        "default, at the next step) is not in the file"},
    "spikingjelly": {"dt": 1e-4, "if_convention": "euler", "reset": None,
                     "why": "SpikingJelly 2.0 writes IF r = 1/dt, dt = 1e-4"},
    "norse": {"dt": 1e-3, "if_convention": "per_step", "reset": "to-v-reset",
              "why": "Norse's LIFBox uses dt = 1e-3, its IAF writes r = 1 for v += i; its neurons reset to v_reset"},
    "sinabs": {"dt": 1e-4, "if_convention": "per_step", "reset": "subtract", "multi_spike": True, "if_floor": True,
               "lif_decay": "exp",
               "why": "sinabs IAF writes IF(r = 1): one step per sample step; IAF/LIF fire floor(v / v_th) spikes, "
                      "reset by subtraction, from_nir floors an IF at -v_th"},
    "rockpool": {"dt": 1e-3, "if_convention": "per_step", "reset": None, "why": "Rockpool's default dt is 1e-3 s"},
}


class ConventionWarning(UserWarning):
    """A foreign file read under an assumption it does not record (the CLI prints it as one line)."""


@dataclass(frozen=True)
class Reading:
    """How a foreign NIR file's neurons are read.

    ``dt`` (seconds) and ``if_convention`` discretise its time constants and IF gains; ``reset`` is one of
    :data:`RESETS` or None (the file's v_reset as NIR says, an assumption); ``subtract`` the reset mode a
    subtractive reset becomes ("subtract": at the spike; "subtract_next": snntorch's); ``multi_spike`` spiking
    neurons fire floor(v / v_th) spikes; ``if_floor`` IF membranes are floored at -v_th; ``lif_decay``
    "euler" (lam = 1 - dt/tau) or "exp" (lam = exp(-1/tau), tau in steps); ``tool`` who wrote it, if known."""

    dt: float = DEFAULT_DT
    if_convention: str = "euler"
    reset: Optional[str] = None
    subtract: str = "subtract"
    multi_spike: bool = False
    if_floor: bool = False
    lif_decay: str = "euler"
    tool: Optional[str] = None

    @property
    def if_dt(self) -> float:
        """The step an IF's ``r`` is multiplied by (``dt`` under "euler", 1 under "per_step")."""
        return self.dt if self.if_convention == "euler" else 1.0

    def neuron(self, lam: float, v_th: float, v_reset: float, integrate_and_fire: bool = False) -> ILIFParams:
        """The parameters of a foreign spiking neuron (NIR LIF/IF/CubaLIF) under this reading."""
        if self.reset == "subtract":
            reset = dict(reset=self.subtract)
        else:
            reset = dict(reset="zero", v_reset=0.0 if self.reset == "zero" else v_reset)
        spike = dict(multi_spike=True) if self.multi_spike else dict(compare=">")
        if self.multi_spike and reset["reset"] != "subtract":
            raise UserError(f"--reset {self.reset}: a multi-spike neuron ({self.tool}) resets by subtraction only")
        floor = dict(v_min=-v_th) if self.if_floor and integrate_and_fire else {}
        return ILIFParams(lam=lam, v_th=v_th, lam_u=0.0, lam_i=0.0, **reset, **spike, **floor)

    def describe(self) -> str:
        """The reset convention in words (graph metadata ``nir_reset``)."""
        if self.reset is None:
            return "to v_reset (assumed: the file does not say)"
        return {"subtract": f"subtract ({self.subtract})", "zero": "zero", "to-v-reset": "to v_reset"}[self.reset]


def reading_conventions(nir_from: Optional[str] = None, dt: Optional[float] = None,
                        if_convention: Optional[str] = None, reset: Optional[str] = None) -> Reading:
    """How to read a foreign NIR file: a tool's preset, overridden by what is given."""
    preset = {}
    if nir_from is not None:
        if nir_from not in NIR_PRESETS:
            raise UserError(f"--nir-from must be one of {sorted(NIR_PRESETS)}, got {nir_from!r}")
        preset = NIR_PRESETS[nir_from]
    if dt is not None and not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise UserError(f"--dt must be a positive number of seconds, got {dt!r}")
    conv = if_convention or preset.get("if_convention", "euler")
    if conv not in IF_CONVENTIONS:
        raise UserError(f"--if-convention must be one of {IF_CONVENTIONS}, got {conv!r}")
    if reset is not None and reset not in RESETS:
        raise UserError(f"--reset must be one of {', '.join(RESETS)}, got {reset!r}")
    return Reading(dt=dt if dt is not None else preset.get("dt", DEFAULT_DT), if_convention=conv,
                   reset=reset or preset.get("reset"), subtract=preset.get("subtract", "subtract"),
                   multi_spike=preset.get("multi_spike", False), if_floor=preset.get("if_floor", False),
                   lif_decay=preset.get("lif_decay", "euler"), tool=nir_from)


def decay_from_tau(node: str, field: str, tau: float, dt: float) -> float:
    """Per-step decay ``1 - dt/tau`` of NIR node ``node``'s time constant, refused (naming the node and a dt
    that would fit) where it is not a decay: tau <= 0 or tau < dt (a decay below 0)."""
    if not tau > 0:
        raise UserError(f"NIR node '{node}': {field} = {tau:g} s must be > 0")
    lam = 1.0 - dt / tau
    if lam < 0.0:
        raise UserError(f"NIR node '{node}': {field} = {tau:g} s is shorter than the step dt = {dt:g} s (a per-step "
                        f"decay of {lam:.4g}, outside [0, 1]); the file was written for a smaller step: read it "
                        f"with --dt {tau:g} or smaller (e.g. --dt {tau / 10:g} for a decay of 0.9), or --nir-from "
                        f"the tool that wrote it ({', '.join(sorted(NIR_PRESETS))})")
    return lam


def tau_from_lam(lam: float, dt: float) -> float:
    """NIR time constant (seconds) whose forward-Euler step with ``dt`` decays by ``lam`` per step."""
    if not 0.0 <= lam < 1.0:
        raise UserError(f"a leaky decay needs 0 <= lam < 1, got {lam}")
    return dt / (1.0 - lam)

