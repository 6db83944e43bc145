"""Lowering steps: graph -> graph rewrites that targets apply before writing, and that change the
arithmetic (not the math).  Each target that applies one measures how far its artifact moved from the
exact graph (``ilif_deploy.agreement.compare_graphs``)."""
from __future__ import annotations

import copy as _copy
from typing import Optional

import numpy as np

from . import nodes as N
from .graph import Graph


def fold_batchnorm(graph: Graph, copy: bool = True, defer: Optional[dict] = None) -> Graph:
    """Fold each BatchNorm Affine into the conv/linear before it when that conv feeds nothing else
    (``w * scale``, ``b * scale + shift`` in float64, rounded to float32 once); the folded BN's name
    is kept in the conv's ``folded`` for the energy conventions.  Exact in real arithmetic; in float32
    a membrane potential can move by an ulp.  Works on a copy unless ``copy=False``; the copy shares the
    arrays it does not replace (nothing in the IR changes an array in place), so it costs the folded weights,
    not a second network.

    ``defer``: a dict that receives ``{conv name: BatchNorm node}`` instead of the folded arrays: the graph's
    structure is folded, and :func:`apply_fold` makes each conv's arrays when it is needed (a caller that reads
    one layer at a time then never holds every folded layer at once)."""
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
        if defer is None:
            apply_fold(pred, node)
        else:
            defer[pred_name] = node
        pred.folded = tuple(pred.folded) + (name,)
        graph.remove(name)
    return graph


def apply_fold(pred: "N.Conv2d | N.Linear", bn: N.Affine) -> None:
    """Replace ``pred``'s weight and bias by those with the BatchNorm ``bn`` after it folded in (float64, rounded
    to float32 once)."""
    scale, shift = bn.scale.astype(np.float64), bn.shift.astype(np.float64)
    w = pred.weight.astype(np.float64)  # a copy of its own: scaled in place, one float64 layer at a time
    b = pred.bias.astype(np.float64) if pred.bias is not None else np.zeros(w.shape[0])
    w *= scale.reshape(-1, *([1] * (w.ndim - 1)))
    pred.weight = w.astype(np.float32)
    pred.bias = (b * scale + shift).astype(np.float32)
