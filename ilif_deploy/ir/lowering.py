"""Lowering steps: graph -> graph rewrites that targets apply before writing, and that change the
arithmetic (not the math).  Each target that applies one measures how far its artifact moved from the
exact graph (``ilif_deploy.agreement.compare_graphs``)."""
from __future__ import annotations

import copy as _copy

import numpy as np

from . import nodes as N
from .graph import Graph


def fold_batchnorm(graph: Graph, copy: bool = True) -> Graph:
    """Fold each BatchNorm Affine into the conv/linear before it when that conv feeds nothing else
    (``w * scale``, ``b * scale + shift`` in float64, rounded to float32 once); the folded BN's name
    is kept in the conv's ``folded`` for the energy conventions.  Exact in real arithmetic; in float32
    a membrane potential can move by an ulp.  Works on a copy unless ``copy=False``; the copy shares the
    arrays it does not replace (nothing in the IR changes an array in place), so it costs the folded weights,
    not a second network."""
    if copy:
        shared = {id(v): v for node in graph.nodes.values() for v in vars(node).values() if isinstance(v, np.ndarray)}
        graph = _copy.deepcopy(graph, memo=shared)
    for name in list(graph.nodes):
        node = graph.nodes.get(name)
        if not isinstance(node, N.Affine) or node.source != "batchnorm":
            continue
        (pred_name,) = graph.inputs_of(name)
        pred = graph.nodes[pred_name]
        if not isinstance(pred, (N.Conv2d, N.Linear)) or graph.consumers_of(pred_name) != [name]:
            continue
        scale, shift = node.scale.astype(np.float64), node.shift.astype(np.float64)
        w = pred.weight.astype(np.float64)
        b = pred.bias.astype(np.float64) if pred.bias is not None else np.zeros(w.shape[0])
        pred.weight = (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        pred.bias = (b * scale + shift).astype(np.float32)
        pred.folded = tuple(pred.folded) + (name,)
        graph.remove(name)
    return graph
