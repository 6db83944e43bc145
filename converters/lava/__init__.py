"""Lava target: the ILIF neuron as a multi-compartment Lava process, networks on Lava's CPU backend.

- :func:`export_graph` writes the ``--target lava`` HDF5 artifact (needs h5py only, not Lava);
- :func:`load` reads it back (network description + IR graph);
- :func:`build_network` creates the Lava processes (needs Lava, see :mod:`.compat`);
- :func:`simulate` runs samples on ``Loihi2SimCfg`` and compares with the torch runtime.

Lava is imported lazily, only by the functions that run it.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Union

import numpy as np

from ilif_deploy.ir.graph import Graph

from .compat import INSTALL_HINT, LavaUnavailable, require_lava
from .netspec import NetSpec, build_netspec

__all__ = ["export_graph", "load", "build_network", "simulate", "build_netspec", "NetSpec", "LavaUnavailable",
           "LavaFileError", "require_lava", "INSTALL_HINT"]


def __getattr__(name: str):
    # the file's reader (and h5py, ~40 ms to import) only when asked for: ilif-energy's Loihi placement builds specs
    if name in ("load", "LavaFileError"):
        from . import h5

        return h5.read if name == "load" else h5.LavaFileError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def export_graph(graph: Graph, path: Union[str, os.PathLike], dense_conv_limit: int = 0) -> dict:
    """Write ``graph`` as a Lava network file (HDF5; see :mod:`ilif_deploy.converters.lava.h5`).

    Args:
        graph: the IR graph.
        path: output file (``.lava.h5``), written atomically.
        dense_conv_limit: plain convs whose matrix has at most this many entries are stored as
            dense synapses (faster on Lava's CPU backend); 0 keeps Lava ``Conv`` for every plain conv.
    Returns:
        what was written: layers, neurons, synapses per kind, pipeline depth (steps), Lava process count.
    """
    from . import h5

    # built and written layer by layer: only the spec's structure is kept, for what is reported below
    spec = h5.build_and_write(graph, path, dense_conv_limit=dense_conv_limit)
    kinds = Counter(s.kind for s in spec.synapses)
    relays = sum(s.delay for s in spec.synapses)
    return {
        "path": str(path),
        "neuron_layers": len(spec.layers),
        "neurons": int(sum(int(np.prod(lay.shape)) for lay in spec.layers)),
        "synapses": dict(kinds),
        "delay_relays": relays,
        "pipeline_depth_steps": spec.depth,
        "lava_processes": 2 + len(spec.layers) + len(spec.synapses) + relays,
        "timesteps": spec.timesteps,
    }


def build_network(spec: NetSpec, mode: str = "float", **kw):
    """Create the Lava processes for ``spec`` (see :func:`ilif_deploy.converters.lava.network.build`)."""
    require_lava()
    from .network import build

    return build(spec, mode=mode, **kw)


def simulate(*args, **kw) -> dict:
    """Run on Lava and compare with the torch runtime (see :func:`ilif_deploy.converters.lava.runner.simulate`)."""
    from .runner import simulate as _simulate

    return _simulate(*args, **kw)
