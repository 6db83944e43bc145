"""The intermediate graph: nodes + edges, validation, topological order, summary, save/load."""
from __future__ import annotations

import collections
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from ..atomic import atomic_path
from ..errors import UserError, GraphError
from . import nodes as N

GRAPH_FORMAT = "ilif-deploy-graph"
#: 2: neuron families (the neuron's ``kind`` gone, derived from its parameters; multi-spike, membrane floor,
#: snntorch's reset, learned decay).  Version 1 files read as they were meant (:func:`nodes._legacy_kind`).
GRAPH_VERSION = 2


def infer_shape(node: N.Node, in_shapes: List[Tuple[int, ...]]) -> Tuple[int, ...]:
    """Per-sample output shape of ``node`` given its inputs' shapes; raises GraphError on mismatch."""
    return node.infer([tuple(s) for s in in_shapes])


def _where(path) -> str:
    """How a message names what was read: the path as given (a file object: its name, else 'the stored graph')."""
    if isinstance(path, (str, os.PathLike)):
        return str(path)
    return str(getattr(path, "name", "the stored graph"))


class _Edges(list):
    """A graph's ``(source, target)`` list, which keeps an index of each node's inputs and consumers so that
    :meth:`Graph.inputs_of` and :meth:`Graph.consumers_of` cost O(degree), not O(edges) (a pass calling them
    for every node of a 30,000-node graph took 48 s).  Every way of changing the list drops the index."""

    _index = None

    def index_of(self) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
        if self._index is None:
            inputs: Dict[str, List[str]] = collections.defaultdict(list)
            consumers: Dict[str, List[str]] = collections.defaultdict(list)
            for s, t in self:
                inputs[t].append(s)
                consumers[s].append(t)
            self._index = (inputs, consumers)
        return self._index


def _dropping_index(method):
    def changed(self, *args):
        self._index = None
        return method(self, *args)
    changed.__name__ = method.__name__
    return changed


for _name in ("append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse", "__setitem__",
              "__delitem__", "__iadd__", "__imul__"):
    setattr(_Edges, _name, _dropping_index(getattr(list, _name)))


@dataclass
class Graph:
    """A feed-forward spiking network for one time step.

    ``nodes`` maps unique names to nodes (insertion order is kept); ``edges`` are
    ``(source, target)`` name pairs, and their order fixes the order of a node's inputs.
    ``metadata`` holds ``timesteps`` (T, or None) and where the graph came from (``source``, ...);
    the input's shape and encoding live on the Input node only (:attr:`input_shape`, :attr:`encoding`).
    """

    nodes: Dict[str, N.Node] = field(default_factory=dict)
    edges: List[Tuple[str, str]] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def __setattr__(self, name, value):
        if name == "edges" and not isinstance(value, _Edges):
            value = _Edges(value)
        super().__setattr__(name, value)

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

    def clear(self) -> None:
        """Remove every node and edge (the metadata stays): the arrays the nodes held are released, for a graph
        handed over to a writer that the caller will not use again (:func:`ilif_deploy.converters.export`'s
        ``consume``)."""
        self.nodes.clear()
        self.edges = []

    # ---------------------------------------------------------------- queries
    def inputs_of(self, name: str) -> List[str]:
        """The nodes feeding ``name``, in edge order."""
        return list(self.edges.index_of()[0].get(name, ()))

    def consumers_of(self, name: str) -> List[str]:
        """The nodes ``name`` feeds, in edge order."""
        return list(self.edges.index_of()[1].get(name, ()))

    def adjacency(self) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
        """``(inputs, consumers)`` of every node at once, as new lists."""
        inputs, consumers = self.edges.index_of()
        return ({n: list(inputs.get(n, ())) for n in self.nodes}, {n: list(consumers.get(n, ())) for n in self.nodes})

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

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.input_node.shape)

    @property
    def encoding(self) -> str:
        return self.input_node.encoding

    def topological_order(self) -> List[str]:
        """Node names, producers before consumers (stable: follows insertion order)."""
        indeg = {n: 0 for n in self.nodes}
        for s, t in self.edges:
            indeg[t] += 1
        order, ready = [], collections.deque(n for n in self.nodes if indeg[n] == 0)
        consumers: Dict[str, List[str]] = {n: [] for n in self.nodes}
        for s, t in self.edges:
            consumers[s].append(t)
        while ready:
            n = ready.popleft()
            order.append(n)
            for c in consumers[n]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if len(order) != len(self.nodes):
            placed = set(order)
            stuck = [n for n in self.nodes if n not in placed]
            raise GraphError(f"graph has a cycle through node(s) {stuck[:5]}")
        return order

    def validate(self) -> "Graph":
        """Check names, edges, connectivity, parameter shapes and recorded shapes; returns self."""
        misplaced = {"input_shape", "encoding"} & set(self.metadata)
        if misplaced:
            raise GraphError(f"metadata {sorted(misplaced)}: the input's shape and encoding belong to the Input node")
        T = self.metadata.get("timesteps")
        if T is not None and (isinstance(T, bool) or not isinstance(T, int) or T < 1):
            raise GraphError(f"metadata timesteps must be a positive integer or None, got {T!r}")
        for s, t in self.edges:
            for end in (s, t):
                if end not in self.nodes:
                    raise GraphError(f"edge ({s} -> {t}) refers to unknown node '{end}'")
        self.input_node, self.output_node  # exactly one of each
        inputs, consumers = self.adjacency()  # once: O(edges), not O(nodes x edges)
        for name, node in self.nodes.items():
            if isinstance(node, N.Input) and inputs[name]:
                raise GraphError(f"input node '{name}' has incoming edges")
            if isinstance(node, N.Output) and consumers[name]:
                raise GraphError(f"output node '{name}' has outgoing edges")
            if not isinstance(node, N.Output) and not consumers[name]:
                raise GraphError(f"node '{name}' ({node.op}) is not connected to anything downstream")
            if node.name != name:
                raise GraphError(f"node '{node.name}' is stored under the name '{name}'")
            node.check()
        for name in self.topological_order():
            node = self.nodes[name]
            expect = infer_shape(node, [tuple(self.nodes[p].shape) for p in inputs[name]])
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
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                self.write_npz(f)

    def to_bytes(self) -> bytes:
        """The ``.npz`` file :meth:`save` writes, as bytes."""
        buf = io.BytesIO()
        self.write_npz(buf)
        return buf.getvalue()

    def write_npz(self, file: BinaryIO) -> None:
        """Write the ``.npz`` file :meth:`save` writes into ``file`` (a seekable binary file), each array streamed
        into it (no copy of the whole file in memory: a ``BytesIO`` of a ResNet-18's 43 MB peaked 70 MB above it)."""
        from ..families import GRAPH_FILE

        GRAPH_FILE.check_graph(self)
        header = {"format": GRAPH_FORMAT, "version": GRAPH_VERSION, "metadata": self.metadata,
                  "edges": [list(e) for e in self.edges], "nodes": []}
        arrays = {}
        for n in self.nodes.values():
            entry, node_arrays = n.to_dict()
            entry["arrays"] = {}
            for k, a in node_arrays.items():
                entry["arrays"][k] = str(len(arrays))
                arrays[str(len(arrays))] = a
            header["nodes"].append(entry)
        np.savez(file, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: Union[str, os.PathLike, BinaryIO]) -> "Graph":
        """Read a graph written by :meth:`save`; raises GraphError naming the file for foreign or corrupt ones."""
        if isinstance(path, (str, os.PathLike)):
            from ..bounded import check_zip, input_file

            check_zip(input_file(path, "the graph file"))
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["__header__"]).decode())
                if not isinstance(header, dict) or header.get("format") != GRAPH_FORMAT:
                    raise GraphError(f"format={header.get('format') if isinstance(header, dict) else None!r}")
                if header.get("version") not in range(1, GRAPH_VERSION + 1):
                    raise GraphError(f"version {header.get('version')!r}; this ilif-deploy reads versions 1 to "
                                     f"{GRAPH_VERSION} (a newer ilif-deploy wrote it?)")
                try:
                    nodes = [N.node_from_dict(*_first_release(e, data)) if header["version"] == 1
                             and "arrays" not in e
                             else N.node_from_dict(e, {k: data[v] for k, v in e.pop("arrays", {}).items()})
                             for e in header["nodes"]]
                except UserError as e:  # a node's value out of its domain (GraphError, a parameter check)
                    raise _InvalidContent(e) from None
                g = cls(metadata=dict(header["metadata"]), edges=[tuple(e) for e in header["edges"]])
        except _InvalidContent as e:  # our format, read; a value in it is out of its domain
            raise GraphError(f"{_where(path)}: {e.args[0]}") from None
        except GraphError as e:
            raise GraphError(f"{_where(path)}: not an ilif-deploy graph file ({e})") from None
        except Exception as e:  # zip/CRC/JSON/key errors of a truncated or foreign file
            raise GraphError(f"{_where(path)}: not an ilif-deploy graph file ({type(e).__name__}: {e})") from None
        try:
            for n in nodes:
                g.add(n)
            return g.validate()
        except GraphError as e:
            raise GraphError(f"{_where(path)}: {e}") from None


class _InvalidContent(Exception):
    """A graph file of our format whose content is invalid (told apart from a file that is not ours)."""


def _first_release(entry: dict, data) -> tuple:
    """A node entry of the first release's layout (version 1 before ``arrays``): arrays referenced from the
    attributes as ``{"array": key}``, neuron parameters as ``{"ilif": {...}}``, unset fields stored as null."""
    attrs, arrays = {}, {}
    for k, v in (entry.get("attrs") or {}).items():
        if isinstance(v, dict) and set(v) == {"array"}:
            arrays[k] = data[v["array"]]
        elif isinstance(v, dict) and set(v) == {"ilif"}:
            attrs[k] = v["ilif"]
        elif v is not None:
            attrs[k] = v
    return {**entry, "attrs": attrs}, arrays


def _fmt(v) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    if isinstance(v, tuple):
        return "x".join(map(str, v)) if all(isinstance(i, int) for i in v) else str(list(v))
    return str(v)
