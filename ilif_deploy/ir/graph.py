"""The intermediate graph: nodes + edges, validation, topological order, summary, save/load."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from ..atomic import atomic_path
from ..neuron_step import ILIFParams
from . import nodes as N

GRAPH_FORMAT = "ilif-deploy-graph"
GRAPH_VERSION = 1


class GraphError(ValueError):
    """An invalid graph; the message names the node at fault."""


def _conv_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def infer_shape(node: N.Node, in_shapes: List[Tuple[int, ...]]) -> Tuple[int, ...]:
    """Per-sample output shape of ``node`` given its inputs' shapes; raises GraphError on mismatch."""
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise GraphError(f"node '{node.name}' ({node.op}): {msg}")

    if isinstance(node, N.Input):
        return tuple(node.shape)
    need(len(in_shapes) >= 1, "has no input edge")
    if isinstance(node, N.Add):
        need(len(in_shapes) >= 2, f"an add needs at least 2 inputs, has {len(in_shapes)}")
        need(all(s == in_shapes[0] for s in in_shapes), f"inputs have different shapes {in_shapes}")
        return in_shapes[0]
    need(len(in_shapes) == 1, f"expects exactly 1 input, has {len(in_shapes)}")
    x = tuple(in_shapes[0])
    if isinstance(node, (N.Output, N.Neuron, N.LeakyIntegrator)):
        return x
    if isinstance(node, N.Conv2d):
        need(len(x) == 3, f"expects input [C, H, W], got {list(x)}")
        o, ig, kh, kw = node.weight.shape
        need(ig * node.groups == x[0], f"weight expects {ig * node.groups} input channels, input has {x[0]}")
        need(o % node.groups == 0, f"{o} output channels not divisible by groups={node.groups}")
        need(node.bias is None or node.bias.shape == (o,), f"bias shape {None if node.bias is None else node.bias.shape} != ({o},)")
        h = _conv_out(x[1], kh, node.stride[0], node.padding[0], node.dilation[0])
        w = _conv_out(x[2], kw, node.stride[1], node.padding[1], node.dilation[1])
        need(h > 0 and w > 0, f"output would be empty for input {list(x)}")
        return (o, h, w)
    if isinstance(node, N.Linear):
        o, i = node.weight.shape
        need(len(x) == 1 and x[0] == i, f"weight expects input [{i}], got {list(x)}")
        need(node.bias is None or node.bias.shape == (o,), "bias shape does not match weight")
        return (o,)
    if isinstance(node, N.Affine):
        need(node.scale.shape == (x[0],) and node.shift.shape == (x[0],),
             f"scale/shift must have one value per channel ({x[0]}), have {node.scale.shape}/{node.shift.shape}")
        return x
    if isinstance(node, (N.AvgPool2d, N.SumPool2d, N.MaxPool2d)):
        need(len(x) == 3, f"expects input [C, H, W], got {list(x)}")
        d = getattr(node, "dilation", (1, 1))
        h = _conv_out(x[1], node.kernel[0], node.stride[0], node.padding[0], d[0])
        w = _conv_out(x[2], node.kernel[1], node.stride[1], node.padding[1], d[1])
        need(h > 0 and w > 0, f"output would be empty for input {list(x)}")
        return (x[0], h, w)
    if isinstance(node, N.AdaptiveAvgPool2d):
        need(len(x) == 3, f"expects input [C, H, W], got {list(x)}")
        return (x[0], *node.output_size)
    if isinstance(node, N.Flatten):
        nd = len(x)
        s, e = node.start_dim % nd, node.end_dim % nd
        need(s <= e, f"start_dim {node.start_dim} after end_dim {node.end_dim} for input {list(x)}")
        return x[:s] + (int(np.prod(x[s:e + 1])),) + x[e + 1:]
    raise GraphError(f"node '{node.name}': unknown op {type(node).__name__}")


@dataclass
class Graph:
    """A feed-forward spiking network for one time step.

    ``nodes`` maps unique names to nodes (insertion order is kept); ``edges`` are
    ``(source, target)`` name pairs, and their order fixes the order of a node's inputs.
    ``metadata`` holds the run settings: ``timesteps``, ``input_shape``, ``encoding``, ``source``.
    """

    nodes: Dict[str, N.Node] = field(default_factory=dict)
    edges: List[Tuple[str, str]] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- building
    def add(self, node: N.Node, inputs: Iterable[str] = ()) -> N.Node:
        if node.name in self.nodes:
            raise GraphError(f"duplicate node name '{node.name}'")
        self.nodes[node.name] = node
        for src in inputs:
            self.edges.append((src, node.name))
        return node

    def remove(self, name: str) -> None:
        """Remove a node with one input, reconnecting its consumers to that input."""
        preds = self.inputs_of(name)
        if len(preds) != 1:
            raise GraphError(f"cannot splice out node '{name}' with {len(preds)} inputs")
        src = preds[0]
        self.edges = [(src if s == name else s, t) for s, t in self.edges if t != name]
        del self.nodes[name]

    # ---------------------------------------------------------------- queries
    def inputs_of(self, name: str) -> List[str]:
        return [s for s, t in self.edges if t == name]

    def consumers_of(self, name: str) -> List[str]:
        return [t for s, t in self.edges if s == name]

    def of_type(self, cls) -> List[N.Node]:
        return [n for n in self.nodes.values() if isinstance(n, cls)]

    @property
    def input_node(self) -> N.Input:
        ins = self.of_type(N.Input)
        if len(ins) != 1:
            raise GraphError(f"graph must have exactly one input node, has {len(ins)}")
        return ins[0]

    @property
    def output_node(self) -> N.Output:
        outs = self.of_type(N.Output)
        if len(outs) != 1:
            raise GraphError(f"graph must have exactly one output node, has {len(outs)}")
        return outs[0]

    @property
    def timesteps(self) -> Optional[int]:
        return self.metadata.get("timesteps")

    def topological_order(self) -> List[str]:
        """Node names, producers before consumers (stable: follows insertion order)."""
        indeg = {n: 0 for n in self.nodes}
        for s, t in self.edges:
            indeg[t] += 1
        order, ready = [], [n for n in self.nodes if indeg[n] == 0]
        consumers: Dict[str, List[str]] = {n: [] for n in self.nodes}
        for s, t in self.edges:
            consumers[s].append(t)
        while ready:
            n = ready.pop(0)
            order.append(n)
            for c in consumers[n]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if len(order) != len(self.nodes):
            stuck = [n for n in self.nodes if n not in order]
            raise GraphError(f"graph has a cycle through node(s) {stuck[:5]}")
        return order

    def validate(self) -> "Graph":
        """Check names, edges, connectivity, parameter shapes and recorded shapes; returns self."""
        for s, t in self.edges:
            for end in (s, t):
                if end not in self.nodes:
                    raise GraphError(f"edge ({s} -> {t}) refers to unknown node '{end}'")
        self.input_node, self.output_node  # exactly one of each
        for name, node in self.nodes.items():
            if isinstance(node, N.Input) and self.inputs_of(name):
                raise GraphError(f"input node '{name}' has incoming edges")
            if isinstance(node, N.Output) and self.consumers_of(name):
                raise GraphError(f"output node '{name}' has outgoing edges")
            if not isinstance(node, N.Output) and not self.consumers_of(name):
                raise GraphError(f"node '{name}' ({node.op}) is not connected to anything downstream")
            for a, v in node.arrays().items():
                if not np.all(np.isfinite(v)):
                    raise GraphError(f"node '{name}': parameter '{a}' has non-finite values")
        for name in self.topological_order():
            node = self.nodes[name]
            expect = infer_shape(node, [tuple(self.nodes[p].shape) for p in self.inputs_of(name)])
            if tuple(node.shape) != tuple(expect):
                raise GraphError(f"node '{name}' ({node.op}): recorded shape {list(node.shape)}, "
                                 f"its inputs give {list(expect)}")
        return self

    # ---------------------------------------------------------------- summary
    def summary_frame(self):
        """One row per node: name, op, inputs, output shape, #parameters, settings (pandas DataFrame)."""
        import pandas as pd

        rows = []
        for name in self.topological_order():
            n = self.nodes[name]
            arrays = n.arrays()
            attrs = n.attrs()
            settings = ", ".join(f"{k}={_fmt(v)}" for k, v in attrs.items() if v not in ((), None))
            rows.append({"name": name, "op": n.op, "inputs": ", ".join(self.inputs_of(name)),
                         "shape": "x".join(map(str, n.shape)),
                         "params": int(sum(a.size for a in arrays.values())), "settings": settings})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The summary table as aligned text."""
        df = self.summary_frame()
        head = ", ".join(f"{k}={v}" for k, v in self.metadata.items() if k != "source_detail")
        return (f"Graph ({len(self.nodes)} nodes, {len(self.edges)} edges; {head})\n"
                + df.to_string(index=False, max_colwidth=70))

    def __repr__(self) -> str:
        return f"Graph(nodes={len(self.nodes)}, edges={len(self.edges)}, metadata={self.metadata})"

    # ---------------------------------------------------------------- save / load
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the graph to an ``.npz`` file (JSON header + arrays; no pickles), atomically."""
        header = {"format": GRAPH_FORMAT, "version": GRAPH_VERSION, "metadata": self.metadata,
                  "edges": [list(e) for e in self.edges], "nodes": []}
        arrays = {}
        for name, n in self.nodes.items():
            entry = {"op": n.op, "name": name, "shape": list(n.shape), "attrs": {}}
            for f in fields(n):
                if f.name in ("name", "shape"):
                    continue
                v = getattr(n, f.name)
                if isinstance(v, np.ndarray):
                    key = f"{len(arrays)}"
                    arrays[key] = v
                    entry["attrs"][f.name] = {"array": key}
                elif isinstance(v, ILIFParams):
                    entry["attrs"][f.name] = {"ilif": v.to_dict()}
                else:
                    entry["attrs"][f.name] = v
            header["nodes"].append(entry)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Graph":
        """Read a graph written by :meth:`save`; raises ValueError for foreign or corrupt files."""
        try:
            data = np.load(path, allow_pickle=False)
            header = json.loads(bytes(data["__header__"]).decode())
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: not an ilif-deploy graph file ({e})") from None
        if header.get("format") != GRAPH_FORMAT:
            raise ValueError(f"{path}: not an ilif-deploy graph file (format={header.get('format')!r})")
        g = cls(metadata=header["metadata"])
        for entry in header["nodes"]:
            node_cls = N.NODE_TYPES.get(entry["op"])
            if node_cls is None:
                raise ValueError(f"{path}: node '{entry['name']}' has unknown op {entry['op']!r}")
            kw = {}
            for k, v in entry["attrs"].items():
                if isinstance(v, dict) and "array" in v:
                    kw[k] = data[v["array"]]
                elif isinstance(v, dict) and "ilif" in v:
                    kw[k] = ILIFParams(**v["ilif"])
                elif isinstance(v, list):
                    kw[k] = tuple(v)
                else:
                    kw[k] = v
            g.nodes[entry["name"]] = node_cls(name=entry["name"], shape=tuple(entry["shape"]), **kw)
        g.edges = [tuple(e) for e in header["edges"]]
        return g.validate()


def _fmt(v) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    if isinstance(v, tuple):
        return "x".join(map(str, v)) if all(isinstance(i, int) for i in v) else str(list(v))
    return str(v)
