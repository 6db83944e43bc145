"""NIR files: write one (checked with ``nir.read``), read one into the IR graph, or as a torch module."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

import nir
import numpy as np
import torch
from torch import nn

from ilif_deploy.atomic import write_hdf5_atomic
from ilif_deploy.ir.graph import Graph

from .conventions import DEFAULT_DT
from .export import to_nir
from .importer import NIRImportError, from_nir, read_nir


class _SharedOnCopy(np.ndarray):
    """An array view whose ``deepcopy`` is itself (see :func:`write_nir`)."""

    def __deepcopy__(self, memo):
        return self


def write_nir(target, graph: nir.NIRGraph) -> None:
    """``nir.write(target, graph)`` without the copies of every array it makes on the way.

    Why: ``nir.write`` serialises through ``NIRNode.to_dict``, which is ``dataclasses.asdict`` (a deep copy of
    every field), and ``NIRGraph.to_dict`` calls it on the whole graph and then again on each node: a ResNet-18
    held its 70 MB of arrays three times over while being written.  Here every array of ``graph`` is
    replaced, for the write only, by a view whose deep copy is itself; the file is the one ``nir.write``
    writes (upstream's writer, compression and layout unchanged)."""
    touched = []

    def share(node: nir.NIRNode) -> None:
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            if isinstance(v, np.ndarray) and not isinstance(v, _SharedOnCopy):
                touched.append((node, f.name, v))
                object.__setattr__(node, f.name, v.view(_SharedOnCopy))
        for sub in getattr(node, "nodes", {}).values():
            share(sub)

    share(graph)
    try:
        nir.write(target, graph)
    finally:
        for node, name, v in touched:
            object.__setattr__(node, name, v)


def export_graph(graph: Graph, path: Union[str, os.PathLike], dt: float = DEFAULT_DT, fidelity: bool = False,
                 fidelity_data=None, fidelity_samples: Optional[int] = None, consume: bool = False) -> dict:
    """Write ``graph`` as a NIR file (atomically) and check that ``nir.read`` accepts it.

    Args:
        graph: IR graph.
        path: destination ``.nir`` file.
        dt: step in seconds used for NIR time constants (``tau = dt / (1 - lam)``, ``r = tau / dt``).
        fidelity: also run the file as a generic NIR consumer would (standard primitives through
            nirtorch, metadata ignored) and compare with the exact IR runtime.
        fidelity_data: data for that comparison (a :class:`~ilif_deploy.data.Dataset`); default: the digits
            test split for [1, 8, 8] inputs, uniform random frames otherwise.
        fidelity_samples: limit the number of samples.
        consume: the caller hands ``graph`` over: it is emptied (:meth:`~ilif_deploy.ir.graph.Graph.clear`) once
            converted, so the IR weights are not in memory beside the NIR graph's copies and the file's read-back.
    Returns:
        ``{"path", "nodes", "neuron_layers", "dt", "nir_version"}`` and, with ``fidelity``, the
        :class:`~ilif_deploy.agreement.Agreement` of :func:`ilif_deploy.converters.nir.generic.fidelity`.
    """
    from ilif_deploy import ir as N

    held = [to_nir(graph, dt=dt)]
    nodes, neuron_layers = len(held[0].nodes), len(graph.of_type(N.SPIKING))
    if consume:
        graph.clear()
    # the file must load with upstream's reader, type checks on; the NIR graph (its neuron parameter arrays
    # are as large as the layers) is dropped once written, before the check reads the file's copy
    write_hdf5_atomic(path, lambda target: write_nir(target, held.pop()), check=lambda tmp: nir.read(str(tmp)),
                      cyclic=True)
    info = {"path": str(path), "nodes": nodes, "neuron_layers": neuron_layers, "dt": dt, "nir_version": nir.version}
    if fidelity:
        from .generic import fidelity as measure
        info["fidelity"] = measure(graph, nir.read(str(path)), data=fidelity_data, samples=fidelity_samples,
                                   dt=dt).to_dict()
    return info


def read_graph(path: Union[str, os.PathLike], dt: Optional[float] = None, if_convention: Optional[str] = None,
               nir_from: Optional[str] = None, reset: Optional[str] = None) -> Graph:
    """IR graph of the NIR file at ``path``.

    ``dt`` (seconds, default 1e-4) and ``if_convention`` ("euler" | "per_step", default "euler") say how a
    foreign file's time constants and IF gains are discretised, ``reset`` ("subtract" | "zero" | "to-v-reset") how
    its neurons reset; ``nir_from`` names the tool that wrote it
    (:data:`~ilif_deploy.converters.nir.conventions.NIR_PRESETS`: snntorch, spikingjelly, norse, sinabs,
    rockpool) and sets them as that tool means them (sinabs: multi-spike IAF), each overridden when given.  A reset
    no one said is an assumption: read as NIR says, with a warning.  ilif-deploy's own files ignore all of these.
    See :func:`ilif_deploy.converters.nir.importer.from_nir`.
    """
    from .conventions import reading_conventions

    reading = reading_conventions(nir_from, dt, if_convention, reset)
    if not os.path.exists(path):
        raise NIRImportError(f"NIR file not found: {path}")
    ng = read_nir(path)
    try:
        g = from_nir(ng, reading=reading)
    except NIRImportError as e:  # a NIR file's content is wrong: name the file (the Python API's callers too)
        raise NIRImportError(f"{path}: {e}") from None
    if nir_from and g.metadata.get("source") == "nir":
        g.metadata["nir_from"] = nir_from
    return g


class NIRModel(nn.Module):
    """A NIR file as a torch module that executes its IR graph with the reference runtime.

    ``forward(x)`` takes ``[T, B, *input_shape]`` (or ``[B, *input_shape]`` repeated over
    ``ilif_settings["timesteps"]``) and returns the output node's values ``[T, B, ...]``.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.ilif_settings = {"timesteps": graph.timesteps, "input_shape": list(graph.input_shape),
                              "encoding": graph.encoding}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ilif_deploy.runtime import run

        return run(self.graph, x, timesteps=self.ilif_settings.get("timesteps"))


def load_nir_model(path: Union[str, os.PathLike], dt: Optional[float] = None,
                   if_convention: str = "euler") -> NIRModel:
    """The NIR file at ``path`` as a multi-step torch module (see :class:`NIRModel`)."""
    return NIRModel(read_graph(path, dt=dt, if_convention=if_convention)).eval()
