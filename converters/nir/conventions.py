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

from ilif_deploy.errors import UserError

#: simulation step in seconds assumed for NIR time constants (snntorch's convention; Norse uses 1e-3)
DEFAULT_DT = 1e-4
#: how nir.IF / nir.I's ``r`` is read: "euler" (gain dt*r, the NIR equation) or "per_step" (gain r)
IF_CONVENTIONS = ("euler", "per_step")
#: identifies ilif-deploy's own metadata in a NIR file
META_KEY = "ilif_deploy"
META_FORMAT = "ilif-deploy-nir"
META_VERSION = 2


def tau_from_lam(lam: float, dt: float) -> float:
    """NIR time constant (seconds) whose forward-Euler step with ``dt`` decays by ``lam`` per step."""
    if not 0.0 <= lam < 1.0:
        raise UserError(f"a leaky decay needs 0 <= lam < 1, got {lam}")
    return dt / (1.0 - lam)


def lam_from_tau(tau: float, dt: float) -> float:
    """Per-step decay ``1 - dt/tau`` of a NIR time constant ``tau`` (seconds) at step ``dt``."""
    if not tau > 0:
        raise UserError(f"time constant tau must be > 0 s, got {tau}")
    return 1.0 - dt / tau
