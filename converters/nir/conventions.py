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
from typing import Optional, Tuple

from ilif_deploy.errors import UserError

#: simulation step in seconds assumed for NIR time constants (snntorch's convention; Norse uses 1e-3)
DEFAULT_DT = 1e-4
#: how nir.IF / nir.I's ``r`` is read: "euler" (gain dt*r, the NIR equation) or "per_step" (gain r)
IF_CONVENTIONS = ("euler", "per_step")
#: identifies ilif-deploy's own metadata in a NIR file
META_KEY = "ilif_deploy"
META_FORMAT = "ilif-deploy-nir"
META_VERSION = 2


#: how each exporter's files are meant, by tool (measured or read in its code; docs/nir.md has the table):
#: ``--nir-from NAME`` sets these, ``--dt`` / ``--if-convention`` override them
NIR_PRESETS = {
    "snntorch": {"dt": 1e-4, "if_convention": "euler", "why": "snntorch 0.9-1.0 export and import hard-code dt = 1e-4"},
    "spikingjelly": {"dt": 1e-4, "if_convention": "euler", "why": "SpikingJelly 2.0 writes IF r = 1/dt, dt = 1e-4"},
    "norse": {"dt": 1e-3, "if_convention": "per_step",
              "why": "Norse's LIFBox uses dt = 1e-3, its IAF writes r = 1 for v += i"},
    "sinabs": {"dt": 1e-4, "if_convention": "per_step", "why": "sinabs IAF writes IF(r = 1): one step per sample step"},
    "rockpool": {"dt": 1e-3, "if_convention": "per_step", "why": "Rockpool's default dt is 1e-3 s"},
}


def reading_conventions(nir_from: Optional[str] = None, dt: Optional[float] = None,
                        if_convention: Optional[str] = None) -> Tuple[Optional[float], str]:
    """(dt, if_convention) for reading a foreign NIR file: a tool's preset, overridden by what is given."""
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
    return (dt if dt is not None else preset.get("dt")), conv


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

