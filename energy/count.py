"""Exact operation counts per IR node (the paper's Appendix H, Eq. 49-51).

``ACs = sum_t sum_l sum_i fanout_i * s_i[t]``: every spike at input position ``i`` costs one
accumulate per real synapse leaving ``i``.  Analog inputs cost MACs the same way.  All counts are
per inference (summed over the recorded samples, divided by their number).  How pools, adds, BN,
bias and neuron updates are counted is set by :class:`~ilif_deploy.energy.conventions.Conventions`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ilif_deploy import families
from ilif_deploy import ir as N
from ilif_deploy.ir.graph import Graph

from .conventions import Conventions
from .fanout import LINEAR_POOLS, WEIGHT_LAYERS, dense_macs, fanout_map, nonzero_fanout_map, pool_window_adds
from .record import Activity

#: every neuron feature has its compartments and update arithmetic declared with the families; spikes are
#: counted as recorded (a multi-spike count of k is k events)
ENERGY = families.declare("energy", families.all_but())



@dataclass
class Row:
    """Counts of one IR node, per inference."""

    name: str
    op: str
    shape: Tuple[int, ...]
    source: str = ""
    input_kind: str = ""  # "spikes" | "analog" | ""
    fanout_mean: float = float("nan")
    neurons: int = 0
    acs: float = 0.0
    macs: float = 0.0
    neuron_acs: float = 0.0
    neuron_macs: float = 0.0
    spikes: float = 0.0
    updates: float = 0.0  # neuron-compartment updates
    active_updates: float = 0.0  # of which in a step where the neuron spiked
    firing_rate: float = float("nan")
    continuous_rate: float = float("nan")
    rate_per_step: List[float] = field(default_factory=list)
    acs_per_step: List[float] = field(default_factory=list)
    ann_macs: float = 0.0
    ann_acs: float = 0.0
    mem_accesses: float = 0.0
    ann_mem_accesses: float = 0.0
    note: str = ""


def _one_input(graph: Graph, name: str) -> str:
    preds = graph.inputs_of(name)
    if len(preds) != 1:
        raise ValueError(f"node '{name}' has {len(preds)} inputs, expected 1")
    return preds[0]


class Plan:
    """Which node is counted how: sources and synaptic chains, fused pools, excluded layers."""

    def __init__(self, graph: Graph, conv: Conventions):
        self.graph, self.conv = graph, conv
        self._fuse_cache: Dict[str, bool] = {}
        self.chains: Dict[str, Tuple[str, List[N.Node]]] = {}  # counted node -> (source, chain)
        self.fused_into: Dict[str, List[str]] = {}
        for name in graph.topological_order():
            node = graph.nodes[name]
            if isinstance(node, WEIGHT_LAYERS) or (isinstance(node, LINEAR_POOLS) and not self.fused(name)):
                src, chain = self._walk_back(name)
                self.chains[name] = (src, chain)
                for c in chain[:-1]:
                    if isinstance(c, LINEAR_POOLS):
                        self.fused_into.setdefault(c.name, []).append(name)

    def fused(self, name: str) -> bool:
        """A linear pool is folded into the weight layers after it when every path from it reaches one."""
        if self.conv.pooling != "fuse":
            return False
        if name not in self._fuse_cache:
            self._fuse_cache[name] = self._flatten_ok(name)
        return self._fuse_cache[name]

    def _flatten_ok(self, name: str) -> bool:
        for c in self.graph.consumers_of(name):
            cn = self.graph.nodes[c]
            if isinstance(cn, WEIGHT_LAYERS):
                continue
            if isinstance(cn, LINEAR_POOLS) and self.fused(c):
                continue
            if isinstance(cn, N.Flatten) and self._flatten_ok(c):
                continue
            return False
        return True

    def _walk_back(self, name: str) -> Tuple[str, List[N.Node]]:
        chain = [self.graph.nodes[name]]
        p = _one_input(self.graph, name)
        while True:
            pn = self.graph.nodes[p]
            if isinstance(pn, N.Flatten) or (isinstance(pn, LINEAR_POOLS) and self.fused(p)):
                chain.insert(0, pn)
                p = _one_input(self.graph, p)
            else:
                return p, chain

    def _sender(self, name: str) -> N.Node:
        """The node whose values ``name`` passes on: itself, or what a flatten/max-pool chain reads."""
        while isinstance(self.graph.nodes[name], (N.Flatten, N.MaxPool2d)):
            name = _one_input(self.graph, name)
        return self.graph.nodes[name]

    def spiking(self, name: str, activity: Activity) -> bool:
        """Does ``name`` output spikes (0/1)?  Neurons but delta encoders; flatten/max-pool of spikes; the input
        when the recorded data were all 0/1; everything else is analog."""
        node = self._sender(name)
        if isinstance(node, N.SPIKING):
            return node.params.delta is None
        if isinstance(node, N.Input):
            return bool(activity.binary.get(node.name, False))
        return False

    def graded(self, name: str) -> bool:
        """Does ``name`` send graded messages (a delta encoder's changes, through flatten/max-pool)?"""
        node = self._sender(name)
        return isinstance(node, N.SPIKING) and node.params.delta is not None

    def is_shortcut(self, name: str) -> bool:
        node = self.graph.nodes[name]
        return (isinstance(node, N.Conv2d) and tuple(node.weight.shape[2:]) == (1, 1)
                and any(isinstance(self.graph.nodes[c], N.Add) for c in self.graph.consumers_of(name)))

    def is_classifier(self, name: str) -> bool:
        """A weight layer whose output reaches the network output without passing a neuron or another weight layer."""
        todo = list(self.graph.consumers_of(name))
        while todo:
            c = todo.pop()
            cn = self.graph.nodes[c]
            if isinstance(cn, N.Output):
                return True
            if isinstance(cn, N.SPIKING + WEIGHT_LAYERS):
                continue
            todo.extend(self.graph.consumers_of(c))
        return False

    def watch(self) -> List[str]:
        """Nodes whose activity must be recorded: all neurons and the sources of counted chains."""
        names = {n for n, node in self.graph.nodes.items() if isinstance(node, N.SPIKING)}
        names |= {src for src, _ in self.chains.values()}
        names.add(self.graph.input_node.name)
        return sorted(names)


def count(graph: Graph, activity: Activity, conv: Optional[Conventions] = None,
          prices_neuron_updates: bool = False) -> List[Row]:
    """Per-node operation counts per inference, in topological order.

    Args:
        graph: the IR graph that was run.
        activity: what :func:`~ilif_deploy.energy.record.record_activity` (or ``assumed_activity``) produced.
        conv: counting conventions (default: the paper's).
        prices_neuron_updates: the energy model prices neuron updates (resolves ``neurons="auto"``).
    """
    ENERGY.check_graph(graph)
    conv = conv or Conventions()
    plan = Plan(graph, conv)
    T, S = activity.timesteps, float(activity.samples)
    count_neurons = conv.neurons == "count" or (conv.neurons == "auto" and prices_neuron_updates)
    direct = graph.input_node.encoding == "direct" and not activity.sequence
    rows: List[Row] = []
    for name in graph.topological_order():
        node = graph.nodes[name]
        if isinstance(node, (N.Input, N.Output, N.Flatten)):
            continue
        row = Row(name=name, op=node.op, shape=tuple(node.shape))
        elems = float(np.prod(node.shape))
        if name in plan.chains:
            src, chain = plan.chains[name]
            row.source = src
            _count_chain(row, node, src, chain, plan, activity, conv, T, S, direct, graph)
        elif isinstance(node, N.MaxPool2d):
            row.source = _one_input(graph, name)
            row.input_kind = "spikes" if plan.spiking(row.source, activity) else "analog"
            row.note = "max over a window: comparisons, no synaptic ops"
        elif isinstance(node, LINEAR_POOLS):
            row.note = "fused into " + ", ".join(plan.fused_into.get(name, [])) + " (pooling=fuse)"
        elif isinstance(node, N.Add):
            _count_add(row, node, graph, plan, activity, conv, T, S, elems)
        elif isinstance(node, N.Affine):
            if conv.bn == "unfolded":
                row.macs, row.ann_macs = elems * T, elems
                row.note = "per-element scale and shift (bn=unfolded)"
            else:
                row.note = "assumed folded into weights/thresholds (bn=folded)"
        elif isinstance(node, N.SPIKING):
            _count_neuron(row, node, activity, T, S, count_neurons, graph)
            if isinstance(node, N.RecurrentNeuron):
                _count_recurrent(row, node, activity, conv, T, S)
        elif isinstance(node, N.ReLU):
            row.note = "ANN activation: a comparison per value, no synaptic ops (its output costs MACs downstream)"
        elif isinstance(node, N.LeakyIntegrator):
            row.neurons = int(elems)
            row.updates = elems * T
            if count_neurons:
                row.neuron_macs = elems * T
            row.note = "non-spiking leaky integrator"
        else:
            row.note = f"op {node.op!r}: not counted (no counting rule for it)"
        # memory accesses (simplified Lemaire et al. 2022): per synaptic op read the weight, read
        # and write the target's state; per neuron-compartment update read and write its state;
        # per spike write one event.  ANN: per MAC read weight and input, per output write once.
        row.mem_accesses = 3.0 * (row.acs + row.macs) + 2.0 * row.updates + row.spikes
        row.ann_mem_accesses = 2.0 * (row.ann_macs + row.ann_acs) + (elems if row.ann_macs or row.ann_acs else 0.0)
        rows.append(row)
    return rows


def _count_chain(row, node, src, chain, plan, activity, conv, T, S, direct, graph):
    if src not in activity.counts:
        raise KeyError(f"no activity recorded for '{src}' (source of '{row.name}')")
    in_shape = tuple(graph.nodes[src].shape)
    is_weight = isinstance(node, WEIGHT_LAYERS)
    skip_zero = is_weight and conv.zero_weights == "skip"
    fan = nonzero_fanout_map(in_shape, chain) if skip_zero else fanout_map(in_shape, chain)
    row.fanout_mean = float(fan.mean())
    counts = activity.counts[src]
    excluded = ""
    if is_weight and not conv.shortcuts and plan.is_shortcut(row.name):
        excluded = "excluded (shortcuts=False)"
    if is_weight and not conv.classifier and plan.is_classifier(row.name):
        excluded = "excluded (classifier=False)"
    spiking, graded = plan.spiking(src, activity), plan.graded(src)
    row.input_kind = "spikes" if spiking else "graded" if graded else "analog"
    if spiking or graded or conv.analog == "nonzero":
        per_step = counts.reshape(T, -1) @ fan.ravel() / S
    else:
        per_step = np.full(T, float(fan.sum()))
    if not spiking and direct and conv.direct_once and isinstance(graph.nodes[src], N.Input):
        per_step = np.concatenate([per_step[:1], np.zeros(T - 1)])
        row.note = "direct input counted once (direct_once=True)"
    if excluded:
        row.note = excluded
        return
    if spiking or isinstance(node, LINEAR_POOLS):  # pools add, they never multiply
        row.acs = float(per_step.sum())
        row.acs_per_step = [float(v) for v in per_step]
    else:
        row.macs = float(per_step.sum())
    in_direct = tuple(graph.nodes[_one_input(graph, row.name)].shape)
    if is_weight:
        row.ann_macs = dense_macs(node, in_direct, conv.ann_padding)
        out = float(np.prod(node.shape))
        if conv.bias == "count" and node.bias is not None:
            row.acs += out * T
            row.ann_acs += out
        if conv.bn == "unfolded" and node.folded:
            row.macs += len(node.folded) * out * T
            row.ann_macs += len(node.folded) * out
    else:
        row.ann_acs = pool_window_adds(node, in_direct)


def _count_add(row, node, graph, plan, activity, conv, T, S, elems):
    preds = graph.inputs_of(row.name)
    kinds = ["spikes" if plan.spiking(p, activity) else "analog" for p in preds]
    row.input_kind = "+".join(kinds)
    row.source = ", ".join(preds)
    if conv.add != "count":
        row.note = "residual add: free (add=free)"
        return
    accumulator = False
    for p, kind in zip(preds, kinds):
        if kind == "spikes":
            if p not in activity.counts:
                raise KeyError(f"no activity recorded for '{p}' (input of '{row.name}')")
            row.acs += float(activity.counts[p].sum()) / S
        elif accumulator:
            row.acs += elems * T
        else:
            accumulator = True
    row.ann_acs = (len(preds) - 1) * elems


def _count_recurrent(row, node, activity, conv, T, S) -> None:
    """The recurrent synapse of a RecurrentNeuron: each spike of step t costs one AC per (non-zero, with
    ``zero_weights=skip``) weight leaving it at step t + 1; the spikes of the last step reach no further step."""
    w = np.asarray(node.weight)
    fan = (w != 0).sum(0).astype(np.float64) if conv.zero_weights == "skip" else np.full(w.shape[1], float(w.shape[0]))
    c = activity.counts[row.name].reshape(T, -1)
    per_step = np.concatenate([[0.0], c[:-1] @ fan / S])
    row.acs = float(per_step.sum())
    row.acs_per_step = [float(v) for v in per_step]
    row.fanout_mean = float(fan.mean())
    row.input_kind = "current + own spikes (recurrent)"
    n = float(w.shape[0])
    row.ann_macs = n * w.shape[1]
    if conv.bias == "count" and node.bias is not None:
        row.acs += n * T
        row.ann_acs += n
    row.note += f"; recurrent synapse {w.shape[0]}x{w.shape[1]} on the previous step's spikes"


def _count_neuron(row, node, activity, T, S, count_neurons, graph):
    n = float(np.prod(node.shape))
    c = activity.counts[row.name]
    row.neurons = int(n)
    row.spikes = float(c.sum()) / S
    row.rate_per_step = [float(v) for v in c.reshape(T, -1).sum(1) / (S * n)]
    row.firing_rate = row.spikes / (n * T)
    row.continuous_rate = activity.continuous.get(row.name, float("nan")) / (S * n)
    comps = families.compartments(node)
    row.updates = n * T * comps
    row.active_updates = row.spikes * comps
    row.input_kind = "current"
    states = [s for s in families.state_names(node) if s != "ciu_drive"]
    row.note = f"{families.family(node)}: {comps} compartment(s) ({', '.join(states)})"
    if node.params.multi_spike:
        row.note += "; multi-spike: a step's count of k spikes is k events (k x fan-out ACs downstream)"
    if node.params.delta is not None:
        bits = (graph.metadata.get("message_bits") or {}).get(node.name)
        payload = f"{bits}-bit payload" if bits else "payload width not recorded"
        row.note += (f"; graded: one event per non-zero change sent ({payload}), a multiply per synapse it reaches "
                     f"(MACs downstream)")
    if count_neurons:  # the arithmetic of one update, declared per feature with the neuron families
        macs_step, acs_step, macs_spike, acs_spike = families.update_cost(node)
        row.neuron_macs = n * T * macs_step + macs_spike * row.spikes
        row.neuron_acs = n * T * acs_step + acs_spike * row.spikes
