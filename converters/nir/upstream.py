"""Work-arounds for known bugs of the NIR tool chain, each in one named function.

* :func:`topological_names` -- ``nir.read`` returns a graph's nodes in *alphabetical* order (HDF5 group
  order), not in the order they were written; never rely on ``graph.nodes`` order.
  :func:`in_flow_order` rebuilds a graph in the order of its edges: nirtorch 2.6 builds a nested
  subgraph before it checks that the subgraph's input exists, and crashes (``'GraphModule' object
  has no attribute 'items'``) when it has to come back to it later -- which the alphabetical order
  from ``nir.read`` makes happen.
* :func:`dense_group_weight` / :func:`group_weight` -- ``nir.Conv2d`` infers its input type as
  ``weight.shape[1]`` channels, ignoring ``groups``, so a grouped/depthwise convolution fails
  ``nir.read``'s type check; such convolutions are written with an equivalent dense (block-diagonal)
  weight and restored from it.
* :func:`nirtorch_affine` -- nirtorch 2.6's default ``nir.Affine`` map assigns the bias to
  ``module.weight.bias`` (an attribute nobody reads), so the bias is silently dropped.
* :func:`nirtorch_flatten` -- nirtorch 2.6's default ``nir.Flatten`` map passes NIR's *per-sample*
  ``start_dim``/``end_dim`` straight to ``torch.nn.Flatten``, whose dims count the batch axis.
* :func:`for_snntorch_import` -- snntorch 1.0's ``import_from_nir`` has the same Flatten off-by-one.
* :func:`type_check_affordable` -- nir 1.0's type check (``NIRGraph.infer_types``) recomputes the graph's
  Input nodes for every edge it visits: O(edges x nodes), 4 s for a 3,000-node chain, minutes for 30,000.
"""
from __future__ import annotations

import collections
import copy
import heapq
from typing import Dict, List, Tuple

import nir
import numpy as np
import torch


#: above this many nodes (nested graphs counted) nir's quadratic type check is not run; ilif-deploy infers and
#: checks every node's shape itself when it builds its graph, so nothing goes unchecked
NIR_TYPE_CHECK_MAX_NODES = 2000


def type_check_affordable(graph: nir.NIRGraph) -> bool:
    """Whether nir's own type check of ``graph`` (read without it) costs less than a second or so."""
    count, todo = 0, [graph]
    while todo and count <= NIR_TYPE_CHECK_MAX_NODES:
        g = todo.pop()
        count += len(g.nodes)
        todo.extend(n for n in g.nodes.values() if isinstance(n, nir.NIRGraph))
    return count <= NIR_TYPE_CHECK_MAX_NODES


def topological_names(graph: nir.NIRGraph) -> List[str]:
    """Node names of ``graph``, producers first, following the *edges* (not the dict order, which
    ``nir.read`` makes alphabetical).  Ties keep the dict order.  Raises ValueError on a cycle
    (the IR is feed-forward; recurrence lives only inside ilif-deploy's own neuron subgraphs)."""
    names = list(graph.nodes)
    for s, t in graph.edges:
        for end in (s, t):
            if end not in graph.nodes:
                raise ValueError(f"NIR edge ({s!r}, {t!r}) names node {end!r}, which the graph does not have "
                                 f"(nodes: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''})")
    consumers = edge_index(graph.edges)[1]
    indeg = {n: 0 for n in names}
    for _, t in graph.edges:
        indeg[t] += 1
    ready = collections.deque(n for n in names if indeg[n] == 0)
    order = []
    while ready:
        n = ready.popleft()
        order.append(n)
        for t in consumers.get(n, ()):
            indeg[t] -= 1
            if indeg[t] == 0:
                ready.append(t)
    if len(order) != len(names):
        placed = set(order)
        stuck = [n for n in names if n not in placed]  # the cycles and everything downstream of them
        stuck_set = set(stuck)
        nxt = {n: [t for t in consumers.get(n, ()) if t in stuck_set] for n in stuck}

        def on_cycle(start):
            seen, todo = set(), list(nxt[start])
            while todo:
                n = todo.pop()
                if n == start:
                    return True
                if n not in seen:
                    seen.add(n)
                    todo.extend(nxt[n])
            return False

        cycle = [n for n in stuck if on_cycle(n)]
        raise ValueError(f"NIR graph has a cycle through {cycle[:8]}: ilif-deploy reads a cycle only as a recurrent "
                         "layer (an Affine/Linear from a LIF/CubaLIF/IF back into it, as snntorch RLeaky writes)")
    return order


def _flow_names(graph: nir.NIRGraph) -> List[str]:
    # Kahn's order; inside a cycle, the first waiting node (in dict order) with a placed producer goes next
    names = list(graph.nodes)
    preds, consumers = edge_index(graph.edges)
    missing = {n: len(set(preds.get(n, ()))) for n in names}  # producers not yet placed
    order, placed = [], set()
    ready = [i for i, n in enumerate(names) if missing[n] == 0]  # a heap of dict positions
    heapq.heapify(ready)
    position = {n: i for i, n in enumerate(names)}
    while len(order) < len(names):
        while ready and names[ready[0]] in placed:
            heapq.heappop(ready)
        if ready:
            nxt = names[heapq.heappop(ready)]
        else:  # a cycle: the first waiting node fed by a placed one (else the first waiting)
            waiting = [n for n in names if n not in placed]
            nxt = next((n for n in waiting if any(p in placed for p in preds.get(n, ()))), waiting[0])
        order.append(nxt)
        placed.add(nxt)
        for t in set(consumers.get(nxt, ())):
            missing[t] -= 1
            if missing[t] == 0 and t not in placed:
                heapq.heappush(ready, position[t])
    return order


def edge_index(edges) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
    """``(inputs, consumers)`` of each node named in ``edges``, in edge order (O(edges), once)."""
    inputs: Dict[str, List[str]] = collections.defaultdict(list)
    consumers: Dict[str, List[str]] = collections.defaultdict(list)
    for s, t in edges:
        inputs[t].append(s)
        consumers[s].append(t)
    return inputs, consumers


def in_flow_order(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The same graph (nodes shared, not copied) with its node dicts, nested ones included, in the
    order data flows from the Input nodes."""
    nodes = {}
    for n in _flow_names(graph):
        node = graph.nodes[n]
        nodes[n] = in_flow_order(node) if isinstance(node, nir.NIRGraph) else node
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=graph.metadata, type_check=False)


def dense_group_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """``[O, I/groups, kh, kw]`` grouped weight -> ``[O, I, kh, kw]`` block-diagonal dense weight."""
    o, ig, kh, kw = weight.shape
    og = o // groups
    dense = np.zeros((o, ig * groups, kh, kw), dtype=weight.dtype)
    for g in range(groups):
        dense[g * og:(g + 1) * og, g * ig:(g + 1) * ig] = weight[g * og:(g + 1) * og]
    return dense


def group_weight(dense: np.ndarray, groups: int) -> np.ndarray:
    """Inverse of :func:`dense_group_weight`."""
    o, i = dense.shape[:2]
    og, ig = o // groups, i // groups
    return np.concatenate([dense[g * og:(g + 1) * og, g * ig:(g + 1) * ig] for g in range(groups)], axis=0)


def nirtorch_affine(node: nir.Affine) -> torch.nn.Linear:
    """``nir.Affine`` -> ``torch.nn.Linear`` *with* its bias (nirtorch 2.6's default map drops it)."""
    m = torch.nn.Linear(node.weight.shape[-1], node.weight.shape[-2], bias=True)
    m.weight.data = torch.as_tensor(np.asarray(node.weight, np.float32))
    m.bias.data = torch.as_tensor(np.asarray(node.bias, np.float32))
    return m


def _batched_dim(d: int) -> int:
    return d + 1 if d >= 0 else d


def nirtorch_flatten(node: nir.Flatten) -> torch.nn.Flatten:
    """NIR's per-sample flatten dims shifted by the batch axis that ``torch.nn.Flatten`` counts."""
    return torch.nn.Flatten(_batched_dim(int(node.start_dim)), _batched_dim(int(node.end_dim)))


def for_snntorch_import(graph: nir.NIRGraph) -> nir.NIRGraph:
    """A copy of ``graph`` that ``snntorch.import_from_nir`` reads correctly: its Flatten map uses
    NIR's per-sample dims as batched torch dims, so they are shifted by one here."""
    g = copy.deepcopy(graph)
    for node in g.nodes.values():
        if isinstance(node, nir.Flatten):
            node.start_dim = _batched_dim(int(node.start_dim))
            node.end_dim = _batched_dim(int(node.end_dim))
    return g
