"""IR graph -> a Lava-ready network description (pure numpy; no Lava needed).

Between two neuron layers the IR may hold any chain of linear ops (conv, linear, BN/affine,
average pooling, flatten, residual adds).  Lava computes synapses with its connection processes,
so each (source layer, target layer) pair becomes one :class:`Synapse`:

- ``conv``: the path is one plain ``Conv2d`` (optionally followed by an add and per-channel
  affines, which scale its kernel; optionally after an ``AvgPool2d(k, stride k)``, merged into one
  strided conv) -> Lava ``Conv``;
- ``sparse``: the path is only adds/affines (an identity shortcut) -> a diagonal Lava ``Sparse``;
- ``dense``: anything else (pooling, flatten, linear, conv+pool, ...) is fused into one matrix by
  probing the chain with unit inputs in float64 -> Lava ``Dense``.

Max-pooling of spikes is not linear, but it is exact as a layer of its own: the max of 0/1 spikes
is 1 when their sum is >= 1, so a ``MaxPool2d`` that reads spikes becomes a depthwise sum-pool
``conv`` (ones kernel) into a memoryless neuron layer (``lam = 0``, ``v_th = 0.5``, no inhibitory
units) of kind ``"maxpool"``.  It costs one extra step of pipeline delay, which the delays absorb.

A synaptic current (a NIR ``CubaLIF``'s, or a netx CUBA layer's: a ``LeakyIntegrator`` right before the
neuron, or the current of a ``RecurrentNeuron``) is a compartment of the neuron process, ``i[t] =
syn_lam * i[t-1] + a[t]``, and the synapses are found from the integrator's input.  A recurrent synapse
(a ``RecurrentNeuron``'s ``weight``) is a ``dense`` synapse whose source is its own target; Lava's one
step of connection delay is exactly the recurrence's "spikes of the step before".

All constant terms (conv/linear biases, BN shifts) of a target's input are summed into the
target's ``bias`` (evaluated on the whole chain with zero inputs, float64).  Arrays are kept in
the IR's channel-first layout; :mod:`ilif_deploy.converters.lava.network` converts to Lava's (W, H, C).

Timing: every connection adds one step; ``depth`` of a layer is the longest chain of connections
from the input.  A shorter parallel path (a residual shortcut) gets ``delay`` extra steps so all
contributions of one network step arrive together, as they do in the torch runtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ilif_deploy import ir as N
from ilif_deploy.errors import GraphError, UserError
from ilif_deploy.families import NeuronView, all_but, declare
from ilif_deploy.ir.graph import Graph
from ilif_deploy.ir.lowering import apply_fold, fold_batchnorm
from ilif_deploy.neuron_step import ILIFParams
from ilif_deploy.runtime import apply_node

#: Lava runs every neuron feature: the float model calls the shared ilif_step, the fixed one ilif_step_fixed (where
#: the MPIU's sigmoid is a table: an approximation, measured); spike counts and a delta encoder's changes travel as
#: graded messages
LAVA_FLOAT = declare("lava (float)", all_but())
LAVA_FIXED = declare("lava (fixed point)", all_but())

#: largest fused dense matrix (entries) before the builder refuses (float64: 8 bytes each)
DENSE_LIMIT = 1 << 25
INPUT = "input"
OUTPUT = "output"


@dataclass
class Synapse:
    """One connection process from ``source`` (a layer name or ``"input"``) into ``target``."""

    source: str
    target: str
    kind: str  # "dense" | "conv" | "sparse"
    weight: np.ndarray  # dense [out, in] (IR flatten order) | conv [O, I/g, kh, kw] | sparse: diagonal [n]
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    delay: int = 0  # extra steps beyond the one every connection adds
    graded: bool = False  # analog input (direct encoding) instead of 0/1 spikes
    counts: bool = False  # spike counts of a multi-spike layer (graded messages of integers, weighted as spikes)
    delta: bool = False  # a delta encoder's messages (graded changes, in float units / the format's fractional bits)

    @property
    def recurrent(self) -> bool:
        """From a layer's own spikes of the step before (its source is its target)."""
        return self.source == self.target


@dataclass
class Layer:
    """A neuron layer (or the readout, ``params is None``) and the constant current into it; ``kind`` is its
    role: "neuron", "maxpool" (the threshold unit of a max-pool of spikes) or "readout"."""

    name: str
    shape: Tuple[int, ...]
    params: Optional[ILIFParams]
    bias: np.ndarray
    kind: str = "neuron"
    depth: int = 0
    #: decay per step of the synaptic current i[t] = syn_lam * i[t-1] + a[t] (a CubaLIF's); 0: no such current.
    #: For the readout: a leaky integrator before the output (a netx dense layer without a neuron, NIR's LI), whose
    #: ``bias`` is added after it, ``y[t] = i[t] + bias``; so is a delta encoder's (its sigma, ``syn_lam`` 1)
    syn_lam: float = 0.0

    @property
    def delta(self) -> bool:
        """A delta encoder (graded messages, its bias after its sigma)."""
        return self.params is not None and self.params.delta is not None


@dataclass
class NetSpec:
    """Everything needed to build the network in Lava: input, layers in order, synapses, readout."""

    input_shape: Tuple[int, ...]
    timesteps: int
    encoding: str
    layers: List[Layer]
    synapses: List[Synapse]
    readout: Layer
    metadata: dict = field(default_factory=dict)
    #: the fixed-point network stored with it (a ``.lava.h5``'s mantissas), or None
    quantized: Optional[object] = None

    def layer(self, name: str) -> Layer:
        for lay in self.layers + [self.readout]:
            if lay.name == name:
                return lay
        raise KeyError(f"no layer named {name!r}")

    def incoming(self, name: str) -> List[Synapse]:
        return [s for s in self.synapses if s.target == name]

    def neuron_views(self) -> List[NeuronView]:
        """Every neuron layer as :mod:`ilif_deploy.families` reads it (for the Lava and engine feature checks)."""
        recurrent = {s.target for s in self.synapses if s.recurrent}
        return [NeuronView(lay.name, lay.params, lay.syn_lam, lay.name in recurrent) for lay in self.layers]

    def incoming_indexed(self, name: str) -> List[Tuple[int, Synapse]]:
        """``(index in synapses, synapse)`` of every synapse into ``name``: per-synapse arrays (the
        fixed-point mantissas, the torch engine's weights) are kept in ``synapses`` order."""
        return [(i, s) for i, s in enumerate(self.synapses) if s.target == name]

    @property
    def depth(self) -> int:
        """Steps from the input to the readout (the pipeline latency in Lava steps)."""
        return self.readout.depth

    @property
    def delta_layers(self) -> List[str]:
        """The delta encoders' names (layers that send graded changes)."""
        return [lay.name for lay in self.layers if lay.delta]

    @property
    def prefill(self) -> int:
        """Steps the deepest layer runs before a sample reaches it, in a network with delta encoders (0 without).

        lava-dl's netx never resets a sigma-delta and runs every layer from Lava's first step, the first layer
        with the input: a layer ``depth - 1`` connections behind it runs that many steps on what has reached it
        so far (its bias, the earlier layers' bias messages) before the sample does -- and on Loihi so does the
        chip.  Networks with delta encoders run that way here too (every layer, per sample from zero state);
        others reset each layer at its window as before."""
        if not self.delta_layers:
            return 0
        return max(lay.depth for lay in self.layers) - 1


#: nodes whose output is what a Lava process sends (spikes, or the analog input)
SOURCES = N.SPIKING + (N.Input, N.MaxPool2d)
#: the memoryless threshold unit that turns a sum of 0/1 spikes into their max (OR)
MAXPOOL_PARAMS = ILIFParams(lam=0.0, v_th=0.5, lam_u=0.0, lam_i=0.0)


def _subgraph(graph: Graph, target: str) -> Tuple[List[str], List[str]]:
    """Linear nodes feeding ``target`` (topological order) and the sources (neurons/input) they read."""
    nodes, sources, stack = set(), [], list(graph.inputs_of(target))
    while stack:
        name = stack.pop()
        node = graph.nodes[name]
        if isinstance(node, SOURCES):
            if name not in sources:
                sources.append(name)
            continue
        if name in nodes:
            continue
        if not node.linear:
            raise GraphError(f"node '{name}' ({node.op}) between neuron layers is not supported by the Lava target "
                             f"(supported: conv2d, linear, affine/batchnorm, avg/sum/adaptive-avg pooling, flatten, "
                             f"add)")
        nodes.add(name)
        stack.extend(graph.inputs_of(name))
    order = [n for n in graph.topological_order() if n in nodes]
    return order, sorted(sources, key=list(graph.nodes).index)


def _targets_reached(graph: Graph, targets: set) -> Dict[str, set]:
    """For every node that is not a target, the targets (neuron layers, readout, max-pools) its output reaches
    through non-target nodes: the targets whose synapses may read its arrays."""
    reached: Dict[str, set] = {}
    for name in reversed(graph.topological_order()):
        if name not in targets:
            reached[name] = set().union(*({c} if c in targets else reached[c] for c in graph.consumers_of(name)))
    return reached


def _evaluate(graph: Graph, target: str, order: List[str], values: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The input current of ``target`` given source values ``[1, B, *shape]`` (float64)."""
    vals = dict(values)
    for name in order:
        vals[name] = apply_node(graph.nodes[name], [vals[p] for p in graph.inputs_of(name)])
    (pred,) = graph.inputs_of(target)
    return vals[pred]


def _zero_response(graph: Graph, target: str, order: List[str], sources: List[str]) -> torch.Tensor:
    """:func:`_evaluate` with every source at zero (the constant current into ``target``, ``[1, 1, *shape]``), without
    running a weighted synapse on zeros: a convolution or linear map of zeros is its bias broadcast (exactly: the
    products are 0), or zero; the other nodes run as :func:`_evaluate` runs them.  Why: the float64 convolutions
    of zeros were two thirds of building a ResNet-18's spec (and of the Loihi placement in ilif-energy)."""
    vals: Dict[str, Optional[torch.Tensor]] = {s: None for s in sources}  # None: zero everywhere

    def value(name: str) -> torch.Tensor:
        v = vals[name]
        return torch.zeros(1, 1, *graph.nodes[name].shape, dtype=torch.float64) if v is None else v

    for name in order:
        node, inputs = graph.nodes[name], graph.inputs_of(name)
        if isinstance(node, (N.Conv2d, N.Linear)) and all(vals[p] is None for p in inputs):
            vals[name] = None if node.bias is None else torch.as_tensor(node.bias, dtype=torch.float64).reshape(
                1, 1, -1, *[1] * (len(node.shape) - 1)).expand(1, 1, *node.shape)
        else:
            vals[name] = apply_node(node, [value(p) for p in inputs])
    (pred,) = graph.inputs_of(target)
    return value(pred)


def _paths(graph: Graph, source: str, target: str, order: List[str]) -> List[List[str]]:
    """All chains of linear nodes from ``source`` to ``target``."""
    inside = set(order)
    out: List[List[str]] = []

    def walk(name: str, path: List[str]) -> None:
        for c in graph.consumers_of(name):
            if c == target:
                out.append(path)
            elif c in inside:
                walk(c, path + [c])

    walk(source, [])
    return out


def _plain_conv(graph: Graph, path: List[str], in_shape) -> Optional[Tuple[dict, np.ndarray]]:
    """If ``path`` is one convolution followed only by adds/affines: the convolution (``weight`` and
    Lava Conv arguments) and the per-channel scale after it.  An AvgPool2d(k, stride k) right before a
    stride-1 conv on a grid divisible by k is the same map as one conv of stride k whose kernel spreads
    each tap over its k x k window (divided by k*k): ``conv(pool(x))`` with no giant matrix."""
    nodes = [graph.nodes[n] for n in path]
    pool = nodes[0] if nodes and isinstance(nodes[0], N.AvgPool2d) else None
    if pool is not None:
        (k, k2), (s, s2) = pool.kernel, pool.stride
        if not (k == k2 == s == s2 and pool.padding == (0, 0) and len(in_shape) == 3 and in_shape[1] % k == 0
                and in_shape[2] % k == 0):
            return None
        nodes = nodes[1:]
    if not nodes or not isinstance(nodes[0], N.Conv2d):
        return None
    conv = nodes[0]
    scale = _post_scale(graph, [n.name for n in nodes[1:]], conv.weight.shape[0])
    if scale is None:
        return None
    spec = dict(weight=conv.weight.astype(np.float64), stride=tuple(conv.stride), padding=tuple(conv.padding),
                dilation=tuple(conv.dilation), groups=int(conv.groups))
    if pool is not None:
        if conv.stride != (1, 1) or conv.dilation != (1, 1):
            return None
        spec.update(weight=np.kron(spec["weight"], np.ones((1, 1, k, k))) / (k * k), stride=(k, k),
                    padding=(conv.padding[0] * k, conv.padding[1] * k))
    return spec, scale


def _post_scale(graph: Graph, path: List[str], channels: int) -> Optional[np.ndarray]:
    scale = np.ones(channels, dtype=np.float64)
    for name in path:
        node = graph.nodes[name]
        if isinstance(node, N.Add):
            continue
        if isinstance(node, N.Affine):
            scale = scale * node.scale.astype(np.float64)
            continue
        return None
    return scale


def _probe(graph: Graph, target: str, order: List[str], sources: List[str], source: str,
           zero_out: torch.Tensor) -> np.ndarray:
    """Dense matrix [out, in] of the chain from ``source`` (others at zero), in float64."""
    in_shape = tuple(graph.nodes[source].shape)
    n_in, n_out = int(np.prod(in_shape)), int(zero_out[0, 0].numel())
    if n_in * n_out > DENSE_LIMIT:
        raise GraphError(f"the synapses from '{source}' to '{target}' fuse into a {n_out}x{n_in} matrix, larger than "
                         f"the Lava builder's limit of {DENSE_LIMIT} entries (the path is not one plain conv)")
    if n_out < n_in:  # fewer rows than columns (a classifier): one backward pass per row
        x = torch.zeros(1, 1, *in_shape, dtype=torch.float64, requires_grad=True)
        zeros = {s: torch.zeros(1, 1, *graph.nodes[s].shape, dtype=torch.float64) for s in sources}
        y = _evaluate(graph, target, order, {**zeros, source: x}).reshape(-1)
        return np.stack([torch.autograd.grad(y[j], x, retain_graph=True)[0].reshape(-1).numpy()
                         for j in range(n_out)])
    cols = []
    # probe columns in chunks: the outputs [chunk, n_out] and the probing inputs [chunk, n_in] stay ~32 MB
    chunk = max(1, min((1 << 22) // max(n_out, 1), (1 << 22) // n_in))
    for start in range(0, n_in, chunk):
        stop = min(n_in, start + chunk)
        eye = torch.zeros(stop - start, n_in, dtype=torch.float64)
        eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        values = {s: torch.zeros(1, stop - start, *graph.nodes[s].shape, dtype=torch.float64) for s in sources}
        values[source] = eye.reshape(1, stop - start, *in_shape)
        out = _evaluate(graph, target, order, values) - zero_out
        cols.append(out.reshape(stop - start, n_out).T.numpy())
    return np.concatenate(cols, axis=1)


def _maxpool_synapse(graph: Graph, node: "N.MaxPool2d") -> Synapse:
    (src,) = graph.inputs_of(node.name)
    snode = graph.nodes[src]
    if not isinstance(snode, N.SPIKING + (N.MaxPool2d,)):
        raise GraphError(f"max-pool '{node.name}' reads '{src}' ({snode.op}), not spikes: only a max-pool of spikes "
                         f"has an exact Lava form (sum-pool + threshold)")
    if isinstance(snode, N.SPIKING) and snode.params.multi_spike:
        raise GraphError(f"max-pool '{node.name}' reads the spike counts of '{src}' (multi-spike): the Lava form of "
                         f"a max-pool (sum-pool + threshold) holds for 0/1 spikes only")
    c, kh, kw = snode.shape[0], node.kernel[0], node.kernel[1]
    return Synapse(source=src, target=node.name, kind="conv", weight=np.ones((c, 1, kh, kw)),
                   in_shape=tuple(snode.shape), out_shape=tuple(node.shape), stride=tuple(node.stride),
                   padding=tuple(node.padding), dilation=tuple(node.dilation), groups=c)


def _synaptic_current(graph: Graph, target: str) -> Tuple[str, float, np.ndarray, Optional[np.ndarray]]:
    """Where the synapses of neuron ``target`` end, and what the neuron makes of them: ``(node whose input
    the synapses drive, syn_lam, per-neuron gain)``.  For a plain neuron that is itself, 0, 1.  A
    ``LeakyIntegrator`` reached through per-channel gains only (an ``Affine`` without shift) is the neuron's
    synaptic current: its gain ``d`` scales the current's inputs instead (``d * i`` obeys the same
    recurrence), exactly when ``d`` is 1, as NIR and netx imports write it.  A delta encoder's sigma may have a
    constant after it (an SDNN bias): returned last (else None)."""
    tnode, shape = graph.nodes[target], tuple(graph.nodes[target].shape)
    if isinstance(tnode, N.RecurrentNeuron):
        if tnode.syn_lam != 0.0 and tnode.mem_shift != 0.0:
            raise GraphError(f"'{target}': a constant added after its synaptic current (mem_shift "
                             f"{tnode.mem_shift:g}) has no Lava form; the Lava neuron adds constants before it")
        return target, float(tnode.syn_lam), np.full(shape, tnode.in_scale * tnode.mem_scale), None
    gain, name, after = np.ones(shape), target, None
    delta = tnode.params.delta is not None
    while len(graph.inputs_of(name)) == 1:
        pred = graph.nodes[graph.inputs_of(name)[0]]
        if isinstance(pred, N.LeakyIntegrator):
            return pred.name, float(pred.lam), gain, after
        if not isinstance(pred, N.Affine) or pred.bn_stats is not None:
            break
        if np.any(pred.shift != 0):
            behind = graph.inputs_of(pred.name)
            if (delta and after is None and np.all(pred.scale == 1.0) and behind
                    and isinstance(graph.nodes[behind[0]], N.LeakyIntegrator)):
                after = np.broadcast_to(pred.shift.astype(np.float64).reshape((-1,) + (1,) * (len(shape) - 1)),
                                        shape).copy()
                name = pred.name
                continue
            if behind and isinstance(graph.nodes[behind[0]], N.LeakyIntegrator):
                raise GraphError(f"'{pred.name}': a constant added after the synaptic current of '{target}' has "
                                 f"no Lava form; the Lava neuron adds constants before it")
            break
        gain = gain * pred.scale.astype(np.float64).reshape((-1,) + (1,) * (len(shape) - 1))
        name = pred.name
    return target, 0.0, np.ones(shape), None


def _readout_current(graph: Graph, out_name: str) -> Tuple[str, float, np.ndarray, np.ndarray]:
    """A leaky integrator before the output, reached through affine maps: ``(its name, its decay, the gain and
    the constant the affine maps apply after it)`` -- the readout integrates its synapses' sum, then scales and
    shifts it.  Without one: ``(out_name, 0, 1, 0)``."""
    shape = tuple(graph.nodes[out_name].shape)
    gain, shift, name = np.ones(shape), np.zeros(shape), out_name
    while len(graph.inputs_of(name)) == 1:
        pred = graph.nodes[graph.inputs_of(name)[0]]
        if isinstance(pred, N.LeakyIntegrator):
            return pred.name, float(pred.lam), gain, shift
        if not isinstance(pred, N.Affine) or pred.bn_stats is not None:
            break
        per = (-1,) + (1,) * (len(shape) - 1)
        shift = shift + gain * pred.shift.astype(np.float64).reshape(per)
        gain = gain * pred.scale.astype(np.float64).reshape(per)
        name = pred.name
    return out_name, 0.0, np.ones(shape), np.zeros(shape)


def _scale_rows(syn: Synapse, gain: np.ndarray) -> np.ndarray:
    """``syn``'s weights with the current of target neuron j multiplied by ``gain[j]`` (IR layout), in place (the
    builder's float64 weights are its own)."""
    g = gain.astype(np.float64)
    if np.all(g == 1.0):
        return syn.weight
    if syn.kind == "dense":
        rows = g.reshape(-1, 1)
    elif syn.kind == "sparse":
        rows = g.reshape(-1)
    else:
        per_channel = g.reshape(g.shape[0], -1)
        if not np.all(per_channel == per_channel[:, :1]):
            raise GraphError(f"'{syn.target}': a per-neuron gain after a convolution has no Lava Conv form")
        rows = per_channel[:, 0].reshape(-1, 1, 1, 1)
    syn.weight *= rows
    return syn.weight


def _recurrent_synapse(node: "N.RecurrentNeuron", gain: np.ndarray) -> Tuple[Synapse, np.ndarray]:
    """The recurrent ``dense`` synapse of ``node`` (weights times the neuron's input gain) and the
    constant it adds (its bias, in the same units)."""
    n = node.weight.shape[0]
    w = node.weight.astype(np.float64) * gain.reshape(-1, 1)
    bias = np.zeros(n) if node.bias is None else node.bias.astype(np.float64)
    return Synapse(source=node.name, target=node.name, kind="dense", weight=w, in_shape=(n,), out_shape=(n,),
                   counts=node.params.multi_spike), bias


def build_netspec(graph: Graph, dense_conv_limit: int = 0,
                  take_layer: Optional[Callable[[Layer, List[Tuple[int, Synapse]]], None]] = None) -> NetSpec:
    """Describe ``graph`` as neuron layers + fused synapses (see the module docstring).

    ``dense_conv_limit``: a plain conv whose equivalent matrix has at most this many entries is
    written as a ``dense`` synapse instead of ``conv`` (Lava's CPU Conv model loops over channel
    pairs in Python and is far slower than a matrix product for small layers).  0 keeps every conv.

    ``take_layer``: streaming.  Called with each layer (neuron layer, max-pool, and the readout, named
    :data:`OUTPUT`) as soon as it is built, with its incoming ``(index in synapses, synapse)`` pairs and their final
    float64 weights, which are then dropped (``weight`` None: the structure stays).  For a caller that reads each
    layer once (the Loihi placement counts it, the Lava writer quantizes and stores it): one layer's weights are
    alive at a time, not the network's (twice its float32 bytes).  Layers come in the spec's order, the readout
    among them where the graph's order puts it (last for a graph whose every layer feeds the output).

    BatchNorm is folded into the weights first (:func:`ilif_deploy.ir.lowering.fold_batchnorm`; the
    caller's graph is not changed): Lava's synapses compute the folded graph, in float64.

    Raises GraphError naming the node when an op cannot be expressed with Lava connections, and UserError
    when the graph has no number of time steps (a netx file keeps none: a Lava network runs T steps per sample).
    """
    if not graph.timesteps or graph.timesteps < 1:
        where = f" (read from a {graph.metadata['source']} file, which keeps none)" if graph.metadata.get("source") \
            else ""
        raise UserError(f"the network has no number of time steps T{where}: give -T N")
    pending: Dict[str, N.Affine] = {}  # conv -> its BatchNorm, folded when a target first reads the conv
    graph = fold_batchnorm(graph.validate(), defer=pending)
    layers: Dict[str, Layer] = {}
    synapses: List[Synapse] = []
    targets = [n for n in graph.topological_order()
               if isinstance(graph.nodes[n], N.SPIKING + (N.Output, N.MaxPool2d))]
    depth = {graph.input_node.name: 0}

    # a linear node's folded arrays are made when the first target it reaches is built and, when streaming,
    # dropped (the copy's: the caller's graph keeps its own) once every target it reaches has its synapses, so
    # the folded network is never whole in memory
    readers = _targets_reached(graph, set(targets))
    feeding: Dict[str, List[str]] = {}
    for name, reached in readers.items():
        for t in reached:
            feeding.setdefault(t, []).append(name)

    out_name = graph.output_node.name

    def settled(target: str, first: int) -> None:
        if take_layer is None:
            return
        layer = layers[target]
        if target == out_name:
            layer.name = OUTPUT
            for syn in synapses[first:]:
                syn.target = OUTPUT
        take_layer(layer, list(enumerate(synapses[first:], start=first)))
        for syn in synapses[first:]:
            syn.weight = None
        for name in feeding.get(target, ()):
            readers[name].discard(target)
            if not readers[name]:
                node = graph.nodes[name]
                for key, value in list(vars(node).items()):
                    if isinstance(value, np.ndarray):
                        setattr(node, key, None)

    for target in targets:
        for name in feeding.get(target, ()):
            if name in pending:
                apply_fold(graph.nodes[name], pending.pop(name))
        tnode = graph.nodes[target]
        if isinstance(tnode, N.MaxPool2d):
            synapses.append(_maxpool_synapse(graph, tnode))
            depth[target] = depth[synapses[-1].source] + 1
            layers[target] = Layer(name=target, shape=tuple(tnode.shape), params=MAXPOOL_PARAMS,
                                   bias=np.zeros(tnode.shape), kind="maxpool", depth=depth[target])
            settled(target, len(synapses) - 1)
            continue
        after, after_sigma = None, None
        if isinstance(tnode, N.SPIKING):
            end, syn_lam, gain, after_sigma = _synaptic_current(graph, target)
        elif isinstance(tnode, N.Output):
            end, syn_lam, gain, after = _readout_current(graph, target)
        else:
            end, syn_lam, gain = target, 0.0, 1.0
        order, sources = _subgraph(graph, end)
        if not sources:
            raise GraphError(f"'{target}' is not driven by the input or any neuron layer")
        zero_out = _zero_response(graph, end, order, sources)
        bias = zero_out[0, 0].numpy().copy()
        if isinstance(tnode, N.RecurrentNeuron):
            rec, rec_bias = _recurrent_synapse(tnode, gain)
            bias = tnode.mem_scale * (tnode.in_scale * (bias + rec_bias) + tnode.in_shift) + tnode.mem_shift
        elif syn_lam and (after is not None or tnode.params.delta is not None):  # constants after the integrator
            if np.any(bias):
                raise GraphError(f"'{end}': a constant into the leaky integrator before '{target}' has no Lava form "
                                 f"(it would be integrated every step); add it after the integrator")
            extra = after if after is not None else after_sigma
            bias = np.zeros(tnode.shape) if extra is None else np.broadcast_to(extra, tnode.shape).copy()
        else:
            bias = bias * gain
        tdepth = max(depth[s] for s in sources) + 1
        first = len(synapses)
        for source in sources:
            in_shape = tuple(graph.nodes[source].shape)
            graded = isinstance(graph.nodes[source], N.Input)
            counts = isinstance(graph.nodes[source], N.SPIKING) and graph.nodes[source].params.multi_spike
            delta = isinstance(graph.nodes[source], N.SPIKING) and graph.nodes[source].params.delta is not None
            paths = _paths(graph, source, end, order)
            common = dict(source=INPUT if graded else source, target=target, in_shape=in_shape,
                          out_shape=tuple(tnode.shape), delay=tdepth - depth[source] - 1, graded=graded,
                          counts=counts, delta=delta)
            conv = _plain_conv(graph, paths[0], in_shape) if len(paths) == 1 else None
            if conv is not None and np.prod(in_shape) * np.prod(tnode.shape) <= dense_conv_limit:
                conv = None
            diag = _post_scale(graph, paths[0], in_shape[0]) if len(paths) == 1 else None
            if conv is not None:
                c, scale = conv
                c["weight"] *= scale[:, None, None, None]  # in place: _plain_conv's float64 copy is its own
                synapses.append(Synapse(kind="conv", **c, **common))
                del conv, c  # the synapse alone holds its weights: dropped when it is settled, if streaming
            elif diag is not None and in_shape == tuple(tnode.shape):
                per_neuron = np.broadcast_to(diag.reshape((-1,) + (1,) * (len(in_shape) - 1)), in_shape)
                synapses.append(Synapse(kind="sparse", weight=per_neuron.reshape(-1).copy(), **common))
            else:
                synapses.append(Synapse(kind="dense", weight=_probe(graph, end, order, sources, source, zero_out),
                                        **common))
        for s in synapses[first:]:
            s.weight = _scale_rows(s, np.broadcast_to(gain, tnode.shape))
        if isinstance(tnode, N.RecurrentNeuron):
            synapses.append(rec)
        depth[target] = tdepth
        spiking = isinstance(tnode, N.SPIKING)
        layers[target] = Layer(name=target, shape=tuple(tnode.shape), params=tnode.params if spiking else None,
                               bias=bias, kind="neuron" if spiking else "readout", depth=tdepth, syn_lam=syn_lam)
        settled(target, first)
    readout = layers.pop(out_name)
    for s in synapses:
        if s.target == out_name:
            s.target = OUTPUT
    readout.name = OUTPUT
    spec = spec_frame(graph)
    spec.layers, spec.synapses, spec.readout = list(layers.values()), synapses, readout
    return spec


def spec_frame(graph: Graph) -> NetSpec:
    """The spec ``graph`` builds, before its layers are: input shape, time steps, encoding and metadata (the
    quantization format is read from it), no layers, synapses or readout yet.  :func:`build_netspec` fills it in; a
    writer that stores each layer as it is built takes its header from it."""
    return NetSpec(input_shape=tuple(graph.input_node.shape), timesteps=int(graph.timesteps or 0),
                   encoding=graph.input_node.encoding, layers=[], synapses=[], readout=None,
                   metadata={k: v for k, v in graph.metadata.items() if k != "source_detail"})
