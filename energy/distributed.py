"""Data-parallel profiling (``torchrun``; :mod:`ilif_deploy.parallel`): each process records the activity of its
own block of the data, and :func:`reduce_activity` sums the per-position counts exactly, so every count, energy
and rate of the report equals a single-process run on the same data.  Rank 0 writes the report
(docs/energy.md)."""
from __future__ import annotations

import numpy as np

from ilif_deploy.parallel import all_min, all_sum, init, launched, world

from .record import Activity


def reduce_activity(act: Activity, device: str = "cpu") -> Activity:
    """The activity of all processes together: counts, samples, continuous firing and correct predictions
    summed (float64, exact for integers below 2^53), ``binary`` true only where it is true everywhere."""
    names, cont, bins = sorted(act.counts), sorted(act.continuous), sorted(act.binary)
    flat = all_sum(np.concatenate([act.counts[k].ravel() for k in names]
                                  + [[act.continuous[k] for k in cont], [act.samples, act.correct or 0]]), device)
    binary = all_min([float(act.binary[k]) for k in bins], device)
    counts, at = {}, 0
    for k in names:
        n = act.counts[k].size
        counts[k] = flat[at:at + n].reshape(act.counts[k].shape)
        at += n
    continuous = {k: float(flat[at + i]) for i, k in enumerate(cont)}
    samples, correct = int(flat[-2]), int(flat[-1])
    return Activity(timesteps=act.timesteps, samples=samples, counts=counts,
                    binary={k: bool(b) for k, b in zip(bins, binary)}, continuous=continuous,
                    correct=None if act.correct is None else correct, rate=act.rate, sequence=act.sequence)


__all__ = ["launched", "init", "world", "reduce_activity"]
