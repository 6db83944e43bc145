"""The memory limit every run of a graph is held to (``--max-memory``), checked before anything is allocated.

One number, set once per command (:func:`set_memory_limit`; default: half of this machine's memory), and one
estimate of what a run holds (:func:`peak_bytes`: the largest set of activations alive at once, as the runtime
frees each one after its last consumer).  :func:`check_run` is called by the runtime for every run -- the
lowering checks, the fidelity probes, the energy recording, the simulations' references -- so a network (or a
batch) that would not fit is refused with one line instead of swapping the machine; tracing runs real activations
only for a small probe (:mod:`ilif_deploy.tracing` propagates a large input's shapes with fake tensors).
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np

from .errors import UserError

_LIMIT: Optional[float] = None


def release_freed_memory(collect_cycles: bool = False) -> None:
    """Hand the memory freed so far back to the operating system, where the C library can (glibc).

    Why: torch and numpy free large buffers to ``malloc``, and glibc keeps freed heap pages mapped (its mmap
    threshold grows to the largest block freed), so a finished stage -- tracing's probe activations, a file's
    bytes written out -- stays in the process's resident memory while the next stage allocates beside it.
    ``collect_cycles``: run the garbage collector first, for objects in reference cycles (a NIR graph's nodes)
    that only it frees; it costs ~70 ms once torch is loaded (every module object is scanned), unless the imports
    were frozen (:func:`freeze_imports`, as the command line does).  Called between
    the stages of a command; the trim does nothing elsewhere (musl, macOS)."""
    import gc

    if collect_cycles:
        gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def freeze_imports() -> None:
    """Move every object alive now (torch's and the other imports', ~170,000) out of the garbage collector's
    reach, once per process.  Why: a full collection scans every tracked object, and one that came due in the
    middle of a command took 60 ms scanning torch's, which are never garbage; afterwards it scans what the command
    made.  Called by the command line before it loads the model (reference counting frees everything as before;
    a reference cycle alive at this point would stay, and there are none worth the time of finding)."""
    import gc

    gc.freeze()


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once (finding and loading the C library costs ~1.5 ms a call), or None."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def default_memory_limit() -> float:
    """Half of this machine's physical memory, in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2 ** 30


def set_memory_limit(gb: Optional[float]) -> None:
    """The limit in GB for the runs that follow (None: the default)."""
    global _LIMIT
    if gb is not None and not (isinstance(gb, (int, float)) and 0 < gb < float("inf")):
        raise UserError(f"--max-memory must be a number of GB > 0, got {gb!r}")
    _LIMIT = None if gb is None else float(gb) * 2 ** 30


def memory_limit() -> float:
    """The limit in bytes."""
    return default_memory_limit() if _LIMIT is None else _LIMIT


def peak_values(graph) -> tuple:
    """``(values, node)``: the most activation values per sample and step alive at once when the runtime runs
    ``graph`` (each output kept until its last consumer has run), and the node at which that happens."""
    order = graph.topological_order()
    inputs, consumers = graph.adjacency()
    remaining = {n: len(consumers[n]) for n in order}
    alive, live, peak = {}, 0.0, (0.0, order[0] if order else "")
    for name in order:
        size = float(np.prod(graph.nodes[name].shape or (1,), dtype=np.float64))
        alive[name] = size
        live += size
        peak = max(peak, (live, name))
        for p in inputs[name]:
            remaining[p] -= 1
            if remaining[p] == 0:
                live -= alive.pop(p, 0.0)
    return peak


def check_run(graph, timesteps: int, batch: int, itemsize: int = 4, what: str = "") -> None:
    """Refuse (one line) a run of ``graph`` over ``timesteps`` steps on ``batch`` samples whose activations alive
    at once would exceed the memory limit."""
    values, node = peak_values(graph)
    need = values * max(int(timesteps), 1) * max(int(batch), 1) * itemsize
    limit = memory_limit()
    if need > limit:
        per = f" ({batch} samples at once: fewer with --batch-size)" if batch > 1 else ""
        raise UserError(f"{what + ': ' if what else ''}running the network over T={timesteps} steps needs about "
                        f"{need / 2 ** 30:,.1f} GB of activations at once{per} (at '{node}'), more than the limit of "
                        f"{limit / 2 ** 30:,.1f} GB (--max-memory GB)")
