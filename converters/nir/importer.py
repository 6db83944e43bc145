"""NIR graph -> IR graph.

ilif-deploy's own files come back exactly: the IR node order, edges, settings and every neuron's
exact parameters are in the metadata, the arrays in the standard NIR nodes.  Foreign graphs
(snntorch, Norse, SpikingJelly, ...) are read with NIR's documented semantics, discretised with
forward Euler at step ``dt`` (see :mod:`ilif_deploy.converters.nir.conventions`):

=============  =====================================================================================
NIR node       IR
=============  =====================================================================================
LIF            [Affine gain r*dt/tau, shift v_leak*dt/tau] -> Neuron(lam = 1 - dt/tau, v_th,
               reset="zero" to v_reset, compare=">")        (the Affine only when not 1 / 0)
IF             [Affine gain dt*r] -> Neuron(lam = 1, reset="zero", ">")  (gain r with if_convention="per_step")
CubaLIF        [Affine w_in*dt/tau_syn] -> LeakyIntegrator(1 - dt/tau_syn) -> [Affine r*dt/tau_mem,
               v_leak*dt/tau_mem] -> Neuron(1 - dt/tau_mem, reset="zero", ">")
LI / CubaLI    the same without the spiking neuron (LeakyIntegrator; membrane as output)
I              [Affine gain dt*r] -> LeakyIntegrator(lam = 1)
Threshold      Neuron(lam = 0, reset="zero", ">")   (stateless: S = x > threshold)
Affine/Linear  Linear;   Conv2d -> Conv2d;   Scale -> Affine;   AvgPool2d / SumPool2d / Flatten alike
several in-    an Add node (NIR sums a node's inputs)
coming edges
=============  =====================================================================================

Per-neuron parameters must be equal within a layer (the IR holds one value per layer); a layer
where they differ raises :class:`NIRImportError` naming the node and the parameter.
"""
from __future__ import annotations

import json
import warnings
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import nir
import numpy as np

from ilif_deploy import ir as N
from ilif_deploy.errors import GraphError, UserError
from ilif_deploy.ir.graph import Graph, infer_shape
from ilif_deploy.neuron_step import ILIFParams

from .conventions import (DEFAULT_DT, IF_CONVENTIONS, META_FORMAT, META_KEY, META_VERSION, ConventionWarning, Reading,
                          decay_from_tau)
from .upstream import edge_index, group_weight, topological_names, type_check_affordable

#: input gains r*dt/tau within this of 1 are taken as exactly 1 (float32 rounding of r = tau/dt)
GAIN_TOLERANCE = 1e-6


class NIRImportError(UserError):
    """A NIR graph that the IR cannot represent; the message names the node and what is wrong."""


# ----------------------------------------------------------------------------- file access
def _check_conv_fields(path) -> None:
    """Refuse a ``stride``, ``dilation`` or ``groups`` below 1 by node name before ``nir.read``, whose
    shape inference divides by them (stride 0 ends in an OverflowError deep inside nir)."""
    import h5py

    bad = []

    def visit(name, obj):
        key = name.rsplit("/", 1)[-1]
        if key in ("stride", "dilation", "groups") and isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iuf" \
                and obj.size <= 16 and (np.asarray(obj[()]) < 1).any():
            bad.append((name.rsplit("/", 2)[-2], key, np.asarray(obj[()]).tolist()))

    try:
        with h5py.File(path, "r") as f:
            if "node" in f:
                f["node"].visititems(visit)
    except OSError:
        return  # not HDF5: nir.read's error says so
    if bad:
        node, key, value = bad[0]
        raise NIRImportError(f"{path}: NIR node '{node}': {key} must be >= 1, got {value}")


def read_nir(path) -> nir.NIRGraph:
    """``nir.read(path)`` with type checking; files whose types do not check (older exporters write
    scalar parameters) are read again without it, with a warning."""
    from ..hdf5_safety import check_self_contained

    check_self_contained(path)
    _check_conv_fields(path)
    try:
        unchecked = nir.read(str(path), type_check=False)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise NIRImportError(f"{path}: not a NIR (HDF5) file ({e})") from None
    except Exception as e:  # noqa: BLE001 - nir raises what its parsing meets
        raise NIRImportError(f"{path}: not a readable NIR graph ({type(e).__name__}: {e})") from None
    if not type_check_affordable(unchecked):
        return unchecked
    try:
        return nir.read(str(path))
    except (ValueError, AssertionError, KeyError, TypeError, ArithmeticError) as e:
        warnings.warn(f"{path}: NIR type check failed ({e}); read without it", stacklevel=2)
        return nir.read(str(path), type_check=False)


def _header(g: nir.NIRGraph) -> Optional[dict]:
    raw = (g.metadata or {}).get(META_KEY) if isinstance(g.metadata, dict) else None
    if raw is None:
        return None
    try:
        header = json.loads(raw if isinstance(raw, str) else bytes(raw).decode())
    except (ValueError, TypeError):
        return None
    if header.get("format") != META_FORMAT:
        return None
    if not isinstance(header.get("version"), int) or header["version"] > META_VERSION:
        raise NIRImportError(f"NIR file written by a newer ilif-deploy (metadata version {header['version']})")
    return header


def _entry(node: nir.NIRNode) -> dict:
    return json.loads((node.metadata or {})[META_KEY])


# ----------------------------------------------------------------------------- own files
def _check_neuron(name: str, nn: nir.NIRNode, p: ILIFParams, shape, dt: float) -> None:
    """Every standard node of a neuron layer must still be what the exact parameters in its metadata
    export to: a file edited by another tool (a scaled ``v/tau``, a zeroed ``mpiu/scale``, an edited
    ``lam`` in the metadata) would mean one thing here and another to every other NIR reader, so it is
    refused, naming the node and the field."""
    from .export import ilif_subgraph, lif_node

    expected = lif_node(p, shape, dt) if p.is_lif else ilif_subgraph(p, shape, dt)
    mismatch = _differs(expected, nn)
    if mismatch:
        raise NIRImportError(f"NIR node '{name}': {mismatch} no longer matches the exact parameters ilif-deploy "
                             f"stored in its metadata (edited after export?)")


def _differs(expected: nir.NIRNode, found: nir.NIRNode, where: str = "") -> Optional[str]:
    """The first field (or sub-node, or edge set) in which ``found`` differs from ``expected``, or None."""
    if type(found) is not type(expected):
        return f"{where or 'the node'} is a {type(found).__name__}, not a {type(expected).__name__}"
    if isinstance(expected, nir.NIRGraph):
        if set(found.nodes) != set(expected.nodes):
            return f"its sub-nodes {sorted(found.nodes)} (expected {sorted(expected.nodes)})"
        if {tuple(e) for e in found.edges} != {tuple(e) for e in expected.edges}:
            return "its internal edges"
        for k in expected.nodes:
            d = _differs(expected.nodes[k], found.nodes[k], f"{where}{k}/")
            if d:
                return d
        return None
    for field, want in vars(expected).items():
        if field in ("metadata", "input_type", "output_type") or not isinstance(want, np.ndarray):
            continue
        got = getattr(found, field, None)
        if got is None or np.shape(got) != np.shape(want) or not np.allclose(
                np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=1e-5, atol=1e-7):
            return f"{where}{field}"
    return None


def _own_node(entry: dict, nn: nir.NIRNode) -> N.Node:
    """Rebuild one IR node from its metadata entry and the arrays of its NIR node."""
    if not isinstance(entry, dict):
        raise NIRImportError(f"malformed ilif-deploy metadata entry {str(entry)[:60]!r}")
    # files of version 1 listed the optional arrays that were None instead of the arrays present
    stored = set(entry["arrays"]) if "arrays" in entry else {"bias", "bn_stats"} - set(entry.get("none", []))
    op = entry.get("op")
    arrays = {}
    if op in ("conv2d", "linear"):
        # a linear map with an adaptive pool folded into its NIR weight keeps its own in the metadata
        w = np.asarray(nn.metadata["weight"] if "weight" in nn.metadata else nn.weight, dtype=np.float32)
        groups = entry.get("attrs", {}).get("groups", 1)
        arrays["weight"] = group_weight(w, groups) if op == "conv2d" and isinstance(groups, int) and groups > 1 else w
        if "bias" in stored:
            arrays["bias"] = np.asarray(nn.bias, dtype=np.float32)
    elif op == "recurrent_neuron":  # the recurrent weight and bias are those of its w_rec node
        w_rec = nn.nodes.get("w_rec") if isinstance(nn, nir.NIRGraph) else None
        if w_rec is None:
            raise NIRImportError(f"NIR node '{entry.get('name')}': a recurrent layer without its w_rec node")
        arrays["weight"] = np.asarray(w_rec.weight, dtype=np.float32)
        if "bias" in stored:
            arrays["bias"] = np.asarray(w_rec.bias, dtype=np.float32)
    elif op == "affine":
        w = np.asarray(nn.weight, dtype=np.float32)
        arrays["scale"] = np.diag(w).copy() if w.ndim == 2 else np.diag(w[:, :, 0, 0]).copy()
        arrays["shift"] = np.asarray(nn.bias, dtype=np.float32)
        if "bn_stats" in stored:
            arrays["bn_stats"] = np.asarray(nn.metadata["bn_stats"], dtype=np.float32)
    try:
        node = N.node_from_dict({k: entry[k] for k in ("op", "name", "shape", "attrs") if k in entry}, arrays)
    except GraphError as e:
        raise NIRImportError(f"NIR node '{entry.get('name')}': {e}") from None
    if isinstance(node, N.Neuron):
        _check_neuron(node.name, nn, node.params, tuple(node.shape), entry.get("dt", DEFAULT_DT))
    if isinstance(node, N.RecurrentNeuron):
        from .export import recurrent_subgraph

        mismatch = _differs(recurrent_subgraph(node, entry.get("dt", DEFAULT_DT)), nn)
        if mismatch:
            raise NIRImportError(f"NIR node '{node.name}': {mismatch} no longer matches the exact parameters "
                                 f"ilif-deploy stored in its metadata (edited after export?)")
    return node


def _from_own(g: nir.NIRGraph, header: dict) -> Graph:
    names: Dict[str, str] = header["names"]
    expected = {(names[s], names[t]) for s, t in header["edges"]}
    if set(names.values()) != set(g.nodes) or expected != {tuple(e) for e in g.edges}:
        raise NIRImportError("ilif-deploy metadata does not match the graph's nodes/edges (file edited?)")
    # version 1 repeated the Input node's shape and encoding in the metadata
    out = Graph(metadata={k: v for k, v in header["metadata"].items() if k not in ("input_shape", "encoding")})
    for name in header["order"]:
        nn = g.nodes[names[name]]
        out.nodes[name] = _own_node(_entry(nn), nn)
    out.edges = [tuple(e) for e in header["edges"]]
    return out.validate()


# ----------------------------------------------------------------------------- foreign files
def _scalar(node_name: str, node: nir.NIRNode, field: str) -> float:
    a = np.asarray(getattr(node, field), dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise NIRImportError(f"NIR node '{node_name}' ({type(node).__name__}): parameter {field} is empty")
    if not np.isfinite(a).all():
        raise NIRImportError(f"NIR node '{node_name}' ({type(node).__name__}): parameter {field} holds "
                             f"{a[~np.isfinite(a)][0]:g} at index {int(np.flatnonzero(~np.isfinite(a))[0])}")
    if not np.all(a == a[0]):
        raise NIRImportError(f"NIR node '{node_name}' ({type(node).__name__}): parameter {field} differs between "
                             f"neurons ({a.min():g} .. {a.max():g}); the IR holds one value per layer")
    return float(a[0])


def _shape_of(node: nir.NIRNode) -> Optional[Tuple[int, ...]]:
    for types in (node.output_type, node.input_type):
        v = list((types or {}).values())
        if v and v[0] is not None and np.asarray(v[0]).size:
            return tuple(int(i) for i in np.asarray(v[0]).reshape(-1))
    return None


def _pair(v) -> Tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


class _Chain:
    """IR nodes standing for one NIR node, first to last (their names derive from the NIR name)."""

    def __init__(self, name: str):
        self.name, self.nodes = name, []
        self.spiking = False  # holds a foreign spiking neuron (whose reset the reading decides)

    def add(self, node: N.Node) -> "_Chain":
        self.nodes.append(node)
        return self

    def gain(self, suffix: str, scale: float, shift: float = 0.0) -> "_Chain":
        # exporters compute r = tau/dt in float32, so "gain 1" arrives as 1 +- a few float32 ulps
        if abs(scale - 1.0) <= GAIN_TOLERANCE:
            scale = 1.0
        if scale != 1.0 or shift != 0.0:
            self.add(N.Affine(f"{self.name}.{suffix}", scale=np.array([scale], np.float32),
                              shift=np.array([shift], np.float32), source="gain"))
        return self


def _neuron(c: _Chain, s, rd: Reading, lam: float, integrate_and_fire: bool = False) -> N.Neuron:
    """A foreign spiking neuron (LIF/IF/CubaLIF) as ``rd`` reads it (reset, spike rule, floor)."""
    c.spiking = True
    return N.Neuron(c.name, params=rd.neuron(lam, _positive(c, s, "v_threshold"), s("v_reset"), integrate_and_fire))


def _conv(c: _Chain, node: nir.Conv2d, s, rd) -> _Chain:
    w = np.asarray(node.weight, np.float32)
    pad = node.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = (0, 0)
        elif all(k % 2 == 1 for k in w.shape[2:]):
            d = _pair(node.dilation)
            pad = tuple(d[i] * (w.shape[2 + i] - 1) // 2 for i in range(2))
        else:
            raise NIRImportError(f"NIR node '{c.name}' (Conv2d): padding='same' with an even kernel is asymmetric")
    return c.add(N.Conv2d(c.name, weight=w, bias=np.asarray(node.bias, np.float32), stride=_pair(node.stride),
                          padding=_pair(pad), dilation=_pair(node.dilation), groups=int(node.groups)))


def _scale(c: _Chain, node: nir.Scale, s, rd) -> _Chain:
    sc = np.asarray(node.scale, np.float32)
    per_channel = sc.reshape(sc.shape[0], -1) if sc.ndim > 1 else sc.reshape(-1, 1)
    if not np.all(per_channel == per_channel[:, :1]):
        raise NIRImportError(f"NIR node '{c.name}' (Scale): values differ within a channel; the IR's Affine "
                             "is per channel")
    return c.add(N.Affine(c.name, scale=per_channel[:, 0].copy(), shift=np.zeros(len(per_channel), np.float32),
                          source="scale"))


def _positive(c: _Chain, s, field: str) -> float:
    """A gain or threshold that must be > 0: r <= 0 inverts or drops the input, v_threshold <= 0 fires on
    nothing or everything (both are what a wrong export looks like)."""
    v = s(field)
    if not v > 0:
        raise UserError(f"NIR node '{c.name}': {field} = {v:g} must be > 0")
    return v


def _lif(c: _Chain, node: nir.LIF, s, rd) -> _Chain:
    tau, r = s("tau"), _positive(c, s, "r")
    if rd.lif_decay == "exp":  # sinabs: v = exp(-1/tau) v + r I, tau in steps, computed in float32 as sinabs does
        if not tau > 0:
            raise UserError(f"NIR node '{c.name}': tau = {tau:g} steps must be > 0")
        lam = float(np.exp(np.float32(-1.0) / np.float32(tau)))
        c.gain("input_gain", r, s("v_leak"))
    else:
        lam = decay_from_tau(c.name, "tau", tau, rd.dt)
        c.gain("input_gain", r * rd.dt / tau, s("v_leak") * rd.dt / tau)
    return c.add(_neuron(c, s, rd, lam))


def _cuba(c: _Chain, node, s, rd) -> _Chain:
    dt = rd.dt
    tau_syn, tau_mem, r = s("tau_syn"), s("tau_mem"), _positive(c, s, "r")
    lam_syn, lam_mem = decay_from_tau(c.name, "tau_syn", tau_syn, dt), decay_from_tau(c.name, "tau_mem", tau_mem, dt)
    c.gain("w_in", s("w_in") * dt / tau_syn)
    c.add(N.LeakyIntegrator(f"{c.name}.syn", lam=lam_syn))
    c.gain("input_gain", r * dt / tau_mem, s("v_leak") * dt / tau_mem)
    if isinstance(node, nir.CubaLI):
        return c.add(N.LeakyIntegrator(c.name, lam=lam_mem))
    return c.add(_neuron(c, s, rd, lam_mem))


def _li(c: _Chain, node: nir.LI, s, rd) -> _Chain:
    tau, r = s("tau"), _positive(c, s, "r")
    c.gain("input_gain", r * rd.dt / tau, s("v_leak") * rd.dt / tau)
    return c.add(N.LeakyIntegrator(c.name, lam=decay_from_tau(c.name, "tau", tau, rd.dt)))


def _pool(c: _Chain, node, s, rd) -> _Chain:
    cls = N.AvgPool2d if isinstance(node, nir.AvgPool2d) else N.SumPool2d
    return c.add(cls(c.name, kernel=_pair(node.kernel_size), stride=_pair(node.stride), padding=_pair(node.padding)))


def _nested(c: _Chain, node, s, rd) -> _Chain:
    raise NIRImportError(f"NIR node '{c.name}': nested NIR graphs from other tools are not supported (a recurrent "
                         "layer is read when the file has its loop flat, as snntorch 0.9's RLeaky export does)")


def _threshold(c: _Chain, node, s, rd) -> _Chain:
    """A stateless threshold, ``S = x > threshold``: the same whatever the reading (no membrane to reset)."""
    th = s("threshold")
    if not th > 0:
        raise UserError(f"NIR node '{c.name}': threshold = {th:g} must be > 0")
    return c.add(N.Neuron(c.name, params=ILIFParams(lam=0.0, v_th=th, lam_u=0.0, lam_i=0.0, reset="zero",
                                                    compare=">")))


#: NIR node type -> ``fn(chain, node, scalar, reading)`` adding the IR nodes that stand for it
FOREIGN = {
    nir.Input: lambda c, node, s, rd: c.add(N.Input(c.name, _shape_of(node) or ())),
    nir.Output: lambda c, node, s, rd: c.add(N.Output(c.name)),
    nir.Affine: lambda c, node, s, rd: c.add(N.Linear(c.name, weight=np.asarray(node.weight, np.float32),
                                                     bias=np.asarray(node.bias, np.float32))),
    nir.Linear: lambda c, node, s, rd: c.add(N.Linear(c.name, weight=np.asarray(node.weight, np.float32))),
    nir.Conv2d: _conv, nir.AvgPool2d: _pool, nir.SumPool2d: _pool,
    nir.Flatten: lambda c, node, s, rd: c.add(N.Flatten(c.name, start_dim=int(node.start_dim),
                                                       end_dim=int(node.end_dim))),
    nir.Scale: _scale, nir.LIF: _lif, nir.CubaLIF: _cuba, nir.CubaLI: _cuba, nir.LI: _li,
    nir.IF: lambda c, node, s, rd: c.gain("input_gain", _positive(c, s, "r") * rd.if_dt).add(
        _neuron(c, s, rd, 1.0, integrate_and_fire=True)),
    nir.I: lambda c, node, s, rd: c.gain("input_gain", _positive(c, s, "r") * rd.if_dt).add(
        N.LeakyIntegrator(c.name, lam=1.0)),
    nir.Threshold: _threshold,
    nir.NIRGraph: _nested,
}


def _foreign_chain(name: str, node: nir.NIRNode, rd: Reading) -> _Chain:
    rule = FOREIGN.get(type(node))
    if rule is None:
        raise NIRImportError(f"NIR node '{name}': type {type(node).__name__} is not supported (supported: "
                             f"{', '.join(t.__name__ for t in FOREIGN if t is not nir.NIRGraph)})")
    try:
        return rule(_Chain(name), node, lambda f: _scalar(name, node, f), rd)
    except NIRImportError:
        raise
    except UserError as e:
        raise NIRImportError(f"NIR node '{name}' ({type(node).__name__}): {e}") from None


#: NIR neuron types a recurrent synapse can close on (their chains fold into one RecurrentNeuron)
RECURRENT_NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)


def _recurrent_synapses(g: nir.NIRGraph) -> Dict[str, str]:
    """{neuron: synapse} for each cycle ``neuron -> synapse -> neuron`` where the synapse (Affine/Linear,
    square) takes input from that neuron only and feeds only it: a recurrent layer (snntorch RLeaky, the
    NIR paper's braille RNN)."""
    found = {}
    inputs, consumers = edge_index(g.edges)
    for src, dst in g.edges:
        syn = g.nodes.get(src)
        if isinstance(syn, (nir.Affine, nir.Linear)) and isinstance(g.nodes.get(dst), RECURRENT_NEURONS):
            ins, outs = inputs.get(src, []), consumers.get(src, [])
            w = np.asarray(syn.weight)
            if ins == [dst] and outs == [dst] and w.ndim == 2 and w.shape[0] == w.shape[1]:
                found[dst] = src
    return found


def _fold_recurrent(name: str, chain: "_Chain", syn: nir.NIRNode) -> None:
    """Replace the chain of neuron ``name`` ([gain] [LeakyIntegrator] [gain] Neuron) by one RecurrentNeuron
    that adds ``syn`` applied to the layer's spikes of the step before to its input."""
    *pre, neuron = chain.nodes
    if not isinstance(neuron, N.Neuron):
        raise NIRImportError(f"NIR node '{name}': a recurrent synapse into a {type(neuron).__name__}")
    gains = {"in": (1.0, 0.0), "mem": (1.0, 0.0)}
    stage, syn_lam = "in", 0.0
    for node in pre:
        if isinstance(node, N.Affine) and stage in ("in", "mem"):
            scale, shift = np.unique(node.scale), np.unique(node.shift)
            if scale.size != 1 or shift.size != 1:
                raise NIRImportError(f"NIR node '{name}': per-neuron gains in a recurrent layer are not supported")
            gains[stage] = (float(scale[0]), float(shift[0]))
            stage = "syn" if stage == "in" else "done"
        elif isinstance(node, N.LeakyIntegrator) and stage in ("in", "syn"):
            syn_lam, stage = node.lam, "mem"
        else:
            raise NIRImportError(f"NIR node '{name}': its parts ({[type(n).__name__ for n in chain.nodes]}) do not "
                                 f"fold into a recurrent layer")
    bias = getattr(syn, "bias", None)
    chain.nodes = [N.RecurrentNeuron(name, params=neuron.params, weight=np.asarray(syn.weight),
                                     bias=None if bias is None else np.asarray(bias).reshape(-1),
                                     in_scale=gains["in"][0], in_shift=gains["in"][1], syn_lam=syn_lam,
                                     mem_scale=gains["mem"][0], mem_shift=gains["mem"][1])]


def _from_foreign(g: nir.NIRGraph, rd: Reading) -> Graph:
    if rd.if_convention not in IF_CONVENTIONS:
        raise UserError(f"if_convention must be one of {IF_CONVENTIONS}, got {rd.if_convention!r}")
    recurrent, original = _recurrent_synapses(g), g.nodes
    if recurrent:  # the recurrent synapses become part of their neuron layer: what is left is feed-forward
        loops = set(recurrent.values())
        g = SimpleNamespace(nodes={k: v for k, v in g.nodes.items() if k not in loops},
                            edges=[e for e in g.edges if e[0] not in loops and e[1] not in loops])
    try:
        order = topological_names(g)
    except ValueError as e:
        raise NIRImportError(str(e)) from None
    inputs = [n for n in order if isinstance(g.nodes[n], nir.Input)]
    outputs = [n for n in order if isinstance(g.nodes[n], nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(f"NIR graph must have exactly one Input and one Output node, has "
                             f"{len(inputs)} ({inputs}) and {len(outputs)} ({outputs})")
    out = Graph(metadata={"timesteps": None, "source": "nir", "nir_dt": rd.dt, "nir_if_convention": rd.if_convention})
    chains: Dict[str, _Chain] = {}
    node_inputs = edge_index(g.edges)[0]
    for name in order:
        chain = _foreign_chain(name, g.nodes[name], rd)
        if name in recurrent:
            _fold_recurrent(name, chain, original[recurrent[name]])
        chains[name] = chain
        preds = node_inputs.get(name, [])
        srcs: List[str] = [chains[p].nodes[-1].name for p in preds]
        if len(srcs) > 1:  # NIR sums all inputs of a node
            out.add(N.Add(name=f"{name}.sum"), srcs)
            srcs = [f"{name}.sum"]
        prev = srcs
        for node in chain.nodes:
            out.add(node, prev)
            prev = [node.name]
    inp = out.nodes[inputs[0]]
    if not inp.shape:
        raise NIRImportError(f"NIR Input node '{inputs[0]}' has no shape")
    for name in out.topological_order():
        node = out.nodes[name]
        if not isinstance(node, N.Input):
            shapes = [tuple(out.nodes[p].shape) for p in out.inputs_of(name)]
            if isinstance(node, N.Affine) and node.scale.shape == (1,) and shapes[0][0] != 1:
                c = shapes[0][0]  # a layer-wide gain: one value per channel
                node.scale, node.shift = np.repeat(node.scale, c), np.repeat(node.shift, c)
            node.shape = infer_shape(node, shapes)
    for name in order:
        _check_neuron_count(name, g.nodes[name], chains[name])
    spiking = [name for name in order if chains[name].spiking]
    if spiking:
        out.metadata["nir_reset"] = rd.describe()
        if rd.reset is None:
            warnings.warn(f"{rd.tool or 'this NIR file'} does not record how its neurons reset ({len(spiking)} "
                          f"layer(s), e.g. '{spiking[0]}'): read as NIR says, to v_reset; pass --reset subtract if "
                          f"they reset by subtraction (snntorch's Leaky does by default), --reset zero or "
                          f"--reset to-v-reset to say it is hard", ConventionWarning, stacklevel=3)
    return out.validate()


def _check_neuron_count(name: str, node: nir.NIRNode, chain: "_Chain") -> None:
    """A neuron node's per-neuron parameters are one value per neuron it receives: a LIF of 7 fed by an
    Affine of 4 (a type mismatch nir.read lets through without its type check) is refused by name."""
    if not isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.I, nir.Threshold)) or not chain.nodes:
        return
    sizes = {np.asarray(v).size for v in vars(node).values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"}
    held = max(sizes, default=1)
    fed = int(np.prod(chain.nodes[-1].shape))
    if held > 1 and held != fed:
        raise NIRImportError(f"NIR node '{name}' ({type(node).__name__}) has parameters for {held} neurons but "
                             f"receives {fed} values per step")


# ----------------------------------------------------------------------------- entry point
def from_nir(g: nir.NIRGraph, dt: Optional[float] = None, if_convention: str = "euler",
             reading: Optional[Reading] = None) -> Graph:
    """IR graph of a NIR graph: exact for ilif-deploy's own files, NIR semantics for foreign ones.

    Args:
        g: a NIR graph (e.g. from ``nir.read``).
        dt: simulation step in seconds for foreign files' time constants (default
            :data:`~ilif_deploy.converters.nir.conventions.DEFAULT_DT`, snntorch's 1e-4 s; Norse uses 1e-3 s).
            Own files use the ``dt`` they were written with.
        if_convention: how a foreign ``nir.IF``/``nir.I``'s ``r`` is read: "euler" (``v += dt*r*I``,
            the NIR equation; SpikingJelly) or "per_step" (``v += r*I``; Norse, BindsNET write r = 1).
        reading: everything about a foreign file's neurons at once (:func:`.conventions.reading_conventions`:
            a tool's preset, its reset, spike rule and floor); replaces ``dt`` and ``if_convention``.  Without it
            spiking neurons reset as NIR says (to v_reset), with a :class:`ConventionWarning`.
    """
    header = _header(g)
    if header is not None:
        return _from_own(g, header)
    return _from_foreign(g, reading or Reading(dt=DEFAULT_DT if dt is None else float(dt), if_convention=if_convention))
