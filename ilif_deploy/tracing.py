"""torch module -> IR graph, with torch.fx.

The model is traced symbolically with neurons and stateless layers as leaves, shapes are
propagated with one example input, and each fx node becomes an IR node.  Networks are written in
several ways, all read here:

- multi-step (``[T, B, ...]`` in and out): this project's layers, plain torch layers on time folded into
  the batch by the user (``x.flatten(0, 1)`` ... ``.view(T, B, ...)``/``unflatten``), SpikingJelly's
  ``SeqToANNContainer``/``MultiStepContainer`` and ``layer.*`` with ``step_mode='m'``;
- single-step (``[B, ...]`` per call, the neurons keeping their state between calls): SpikingJelly's
  ``clock_driven`` API as the authors use it, its single-step mode, snntorch with ``init_hidden=True``; the
  per-step graph is the IR's, which then runs the neurons over T itself.

The neuron modules of other libraries are read by :mod:`ilif_deploy.foreign_neurons`.
Evaluation semantics: dropout and identities disappear, BatchNorm uses its running statistics and
stays an :class:`~ilif_deploy.ir.Affine` node, so the graph computes exactly what the module does;
folding it into the weights is a lowering step (:mod:`ilif_deploy.ir.lowering`) of the targets that
need it.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import io
import math

import json
import operator
from typing import Dict, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from . import foreign_neurons as foreign
from . import ir as N
from .errors import TraceError, UserError
from .ir.graph import Graph
from .ir.lowering import fold_batchnorm
from .neurons import ILIF

PASSTHROUGH_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if (_module_rule(m) is not None or isinstance(m, PASSTHROUGH_MODULES) or foreign.is_neuron(m)
                or foreign.is_passthrough(m) or foreign.is_container(m)):
            return True
        return super().is_leaf_module(m, qualname)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


#: whether :func:`_np` may hand out the module's own memory (``trace(share_weights=True)``)
_SHARE_WEIGHTS: contextvars.ContextVar[bool] = contextvars.ContextVar("share_weights", default=False)


def _np(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    """A module tensor as the IR's float32 array: a copy, or (``trace(share_weights=True)``) the tensor's own
    memory where it already is float32 on the CPU."""
    if t is None:
        return None
    a = t.detach().cpu().to(torch.float32).numpy()
    return a if _SHARE_WEIGHTS.get() else a.copy()


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm):
    """Eval-mode BN as ``x * scale + shift``, computed the way torch's CPU kernel does (float32:
    invstd = 1/sqrt(var + eps), scale = invstd * weight, shift = bias - mean * scale)."""
    if bn.running_mean is None or bn.running_var is None:
        raise TraceError(f"BatchNorm '{bn}' has no running statistics (track_running_stats=False): "
                         "it cannot be expressed as a fixed affine map")
    var, mean = bn.running_var.detach().float(), bn.running_mean.detach().float()
    invstd = 1.0 / torch.sqrt(var + bn.eps)
    weight = bn.weight.detach().float() if bn.weight is not None else torch.ones_like(var)
    bias = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(var)
    scale = invstd * weight
    return scale.numpy().copy(), (bias - mean * scale).numpy().copy()


def _flatten_dims(in_shape: Sequence[int], out_shape: Sequence[int]):
    """Per-sample (start, end) dims of a flatten turning ``in_shape`` into ``out_shape``;
    None when nothing changes, False when it is not a flatten at all."""
    i, o = tuple(in_shape), tuple(out_shape)
    if i == o:
        return None
    for s in range(len(i)):
        for e in range(s + 1, len(i)):
            if i[:s] + (int(np.prod(i[s:e + 1])),) + i[e + 1:] == o:
                return s, e
    return False


def trace(model: nn.Module, input_shape: Sequence[int], timesteps: int, encoding: str = "direct",
          fold_bn: bool = False, step_mode: str = "auto", share_weights: bool = False) -> Graph:
    """Trace ``model`` into an IR graph.

    Args:
        model: a multi-step module whose ``forward`` takes ``[T, B, *input_shape]`` and returns
            per-step outputs ``[T, B, ...]`` (e.g. from :func:`ilif_deploy.load_model`).
        input_shape: shape of one sample at one step, channel first (e.g. ``(3, 32, 32)``).
        timesteps: number of steps T recorded in the graph's metadata.
        encoding: ``"direct"`` (same analog frame every step) or ``"sequence"``.
        fold_bn: fold BatchNorm into the preceding conv/linear (:func:`ilif_deploy.ir.lowering.fold_batchnorm`):
            exact in real arithmetic, not always in float32.  Off by default: the graph then computes what
            the module computes, bit for bit (every BN an Affine node run with torch's own kernel).
        step_mode: "multi" (``forward`` takes ``[T, B, *input_shape]``), "single" (``forward`` takes one step
            ``[B, *input_shape]``, the neurons keep their state; the graph then steps them T times) or "auto"
            (default): single when the network's neurons step once per call (snntorch, SpikingJelly's single-step
            neurons), else multi.  The module's own state is left as it was (the tracer probes a copy).
        share_weights: the graph's arrays are the module's own float32 tensors, not copies (the graph then
            changes with the module): for a module nobody else holds, as the command-line tools load them, it
            saves a copy of the weights.
    Raises:
        TraceError: naming the module path and type (or function) that cannot be expressed.
    """
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise TraceError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    if encoding not in N.nodes.ENCODINGS:
        raise TraceError(f"encoding must be one of {', '.join(N.nodes.ENCODINGS)}, got {encoding!r}")
    check = getattr(model, "check_input", None)
    if callable(check):  # an architecture that knows which inputs its code takes says so before anything runs
        try:
            check(tuple(int(s) for s in input_shape))
        except UserError as e:
            raise TraceError(str(e)) from None
    step = _step_mode(model, step_mode)
    was_training = model.training
    model.eval()
    try:
        probe = copy.deepcopy(model) if any(foreign.is_neuron(m) and not isinstance(m, ILIF)
                                            for m in model.modules()) else model  # their state changes when run
        shared = _SHARE_WEIGHTS.set(bool(share_weights))
        try:
            graph = _trace_eval(probe, tuple(int(s) for s in input_shape), int(timesteps), encoding, step)
        finally:
            _SHARE_WEIGHTS.reset(shared)
    finally:
        model.train(was_training)
    # what the module itself holds, counted as torch stores it (parameters and buffers such as BN's running
    # statistics, at their element sizes): NeuroBench's ParameterCount and Footprint of the same module
    graph.metadata["torch_module"] = {
        "parameters": sum(int(t.numel()) for t in model.parameters()),
        "footprint_bytes": sum(int(t.numel()) * t.element_size() for t in [*model.parameters(), *model.buffers()])}
    spec = getattr(model, "arch_spec", None)
    if spec is not None:  # what it was built as, so every artifact and report can say so
        graph.metadata["arch"] = json.loads(json.dumps(spec, default=list))
    for key in ("dataset", "run_args"):  # the preset, and what a train.py args.txt said
        if getattr(model, "ilif_settings", {}).get(key):
            graph.metadata[key] = model.ilif_settings[key]
    return (fold_batchnorm(graph, copy=False) if fold_bn else graph).validate()


#: longest T the tracer actually runs (a prime, unlikely to be mistaken for a channel count)
PROBE_STEPS = 7


def _step_mode(model: nn.Module, requested: str) -> str:
    """"multi" or "single" for ``model`` (see :func:`trace`), refusing a network that mixes them."""
    if requested not in ("auto", "multi", "single"):
        raise TraceError(f"step_mode must be auto, multi or single, got {requested!r}")
    modes = {}
    for path, m in model.named_modules():
        nm = foreign.neuron_module(path, m)
        if nm is not None:
            modes.setdefault(nm.step, path)
    if len(modes) > 1:
        raise TraceError(f"the network mixes single-step neurons ('{modes['single']}') and multi-step ones "
                         f"('{modes['multi']}'): make them all one kind (SpikingJelly: functional.set_step_mode)")
    found = next(iter(modes), "multi")
    if requested == "auto":
        return found
    if modes and requested != found:
        raise TraceError(f"step_mode={requested!r}, but neuron '{modes[found]}' steps {found}")
    return requested


#: the batch size the tracer probes with
PROBE_BATCH = 2


def _trace_eval(model: nn.Module, input_shape: tuple, timesteps: int, encoding: str, step: str) -> Graph:
    tracer = _Tracer()
    try:
        fx_graph = tracer.trace(model)
    except Exception as e:  # fx raises many types for data-dependent control flow
        raise TraceError(f"torch.fx could not trace {type(model).__name__}: {e}") from e
    finally:
        # torch.fx leaves the tracer in reference cycles (its patched functions' closures) and the GraphModule in
        # one with its graph: both hold the module and its weights until a full garbage collection, so a graph
        # handed over to a writer that empties it (export's consume) would not free them.  Cut them here.
        vars(tracer).clear()
    gm = fx.GraphModule(model, fx_graph)
    try:
        return _graph_of(gm, model, input_shape, timesteps, encoding, step)
    finally:
        for name in [n for n, _ in gm.named_children()]:
            delattr(gm, name)


def _graph_of(gm: fx.GraphModule, model: nn.Module, input_shape: tuple, timesteps: int, encoding: str,
              step: str) -> Graph:
    """The IR graph of the traced ``gm`` (``model``'s GraphModule): shapes probed, each fx node mapped."""
    # T and B differ (and differ from channel sizes as far as possible) so shapes can be told apart.
    # The graph is the same for every T, so a long T is probed with 7 steps: -T 1000000 costs no more.
    probe_t = timesteps if timesteps <= PROBE_STEPS else PROBE_STEPS
    B = PROBE_BATCH
    shape = (B, *input_shape) if step == "single" else (probe_t, B, *input_shape)
    try:
        _propagate_shapes(gm, shape)
    except Exception as e:
        while e.__cause__ is not None:  # torch may wrap the module's own error
            e = e.__cause__
        last = str(e).strip().splitlines()
        per = "one step [B, ...]" if step == "single" else "[T, B, ...]"
        raise TraceError(f"{type(model).__name__} does not take input of shape {', '.join(map(str, input_shape))} "
                         f"per sample as {per} ({type(e).__name__}: {last[0] if last else ''}); check "
                         f"--input-shape (and step_mode)") from None
    modules = dict(model.named_modules())
    g = Graph(metadata={"timesteps": timesteps, "source": type(model).__name__})
    alias: Dict[str, str] = {}  # fx node name -> IR node name
    layout: Dict[str, str] = {}  # fx node name -> "sequence" [T, B, ...], "merged" [T*B, ...] or "step" [B, ...]

    def meta_of(n) -> object:
        meta = n.meta.get("tensor_meta", n.meta.get("val")) if isinstance(n, fx.Node) else None
        if not hasattr(meta, "shape") and not (isinstance(meta, (tuple, list)) and meta
                                               and all(hasattr(m, "shape") for m in meta)):
            meta = None  # a shape or a number (x.shape[0], x.size(1)): no tensor
        several = isinstance(meta, (tuple, list)) and not hasattr(meta, "shape")  # TensorMetadata is a NamedTuple
        if several and n.op == "call_module" and foreign.is_neuron(modules[n.target]):
            return meta[0]  # a neuron returning (spikes, membrane): it stands for its spikes
        return meta

    def per_sample(n: fx.Node) -> tuple:
        """The per-sample shape of ``n``'s tensor, its layout recorded."""
        meta = meta_of(n)
        if meta is None or not hasattr(meta, "shape"):
            raise TraceError(f"'{n.name}' does not produce a single tensor")
        full = tuple(meta.shape)
        if step == "single" and full[:1] == (B,):
            layout[n.name] = "step"
            return full[1:]
        if step == "multi" and full[:2] == (probe_t, B):
            layout[n.name] = "sequence"
            return full[2:]
        if step == "multi" and full[:1] == (probe_t * B,):
            layout[n.name] = "merged"
            return full[1:]
        want = "[B, ...]" if step == "single" else "[T, B, ...] (or time merged into the batch, [T*B, ...])"
        raise TraceError(f"'{n.target}' returns shape {list(full)}: {want} expected (B = {B}"
                         f"{'' if step == 'single' else f', T = {probe_t}'} while tracing)")

    def src(n) -> str:
        if not isinstance(n, fx.Node):
            raise TraceError(f"constant operand {n!r} is not supported (only tensor-tensor ops)")
        if n.name not in alias:
            raise TraceError(f"'{n.name}' is used as a tensor but is a shape or a number")
        return alias[n.name]

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            if g.of_type(N.Input):
                raise TraceError(f"the model takes more than one input ('{n.name}'); one input tensor is supported "
                                 f"(snntorch: build the neurons with init_hidden=True)")
            g.add(N.Input(name="input", shape=input_shape, encoding=encoding))
            alias[n.name] = "input"
            continue
        if n.op == "output":
            out = n.args[0]
            if isinstance(out, (tuple, list)) and out and isinstance(out[0], fx.Node):
                out = out[0]  # (spikes, membrane) of a last snntorch layer: the spikes are the output
            if not isinstance(out, fx.Node):
                raise TraceError("the model must return a single tensor, not " f"{type(out).__name__}")
            g.add(N.Output(name="output", shape=per_sample(out)), [src(out)])
            continue
        if meta_of(n) is None:
            continue  # a shape or a number (x.shape[0], x.size(1)): only reshapes read them
        shape = per_sample(n)
        if n.op == "call_module":
            m = modules[n.target]
            if isinstance(m, PASSTHROUGH_MODULES) or foreign.is_passthrough(m):
                alias[n.name] = src(n.args[0])
                continue
            in_node = n.args[0]
            in_shape = per_sample(in_node)
            nm = foreign.neuron_module(n.target, m)
            if nm is not None and step == "multi" and layout[in_node.name] != "sequence":
                raise TraceError(f"neuron '{n.target}' receives time merged into the batch ([T*B, ...]): unfold it "
                                 f"first (x.view(T, B, ...) or x.unflatten(0, (T, B)))")
            nodes = (_neuron_nodes(n.target, nm, shape) if nm is not None else
                     _container_nodes(n.target, m, in_shape) if foreign.is_container(m) else
                     [_module_node(n.target, m, shape, in_shape)])
            prev = src(in_node)
            for node in nodes:
                g.add(node, [prev])
                prev = node.name
            alias[n.name] = prev
        else:
            rule = (FUNCTIONS.get(n.target) if n.op == "call_function" else
                    METHODS.get(n.target) if n.op == "call_method" else None)
            if rule is None:
                what = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
                raise TraceError(f"unsupported {n.op.replace('_', ' ')} '{what}' at '{n.name}'. "
                                 f"Supported: {supported_text()}")
            node = rule(n, shape, per_sample)
            if node is None:  # the value passes through unchanged
                alias[n.name] = src(n.args[0])
                continue
            g.add(node, [src(a) for a in (n.args if isinstance(node, N.Add) else n.args[:1])])
            alias[n.name] = n.name
    return g


#: probes of at most this many input values (the probe's steps x its small batch x the input shape) run on a real
#: tensor: their activations are tens of MB at most, and torch's fake tensors cost ~1.4 s of importing
#: torch._dynamo first (ResNet-18 at 3x32x32: tracing 2.0 s -> 0.4 s); larger ones run on fake tensors, which
#: allocate nothing (VGG-11 at 2x256x256 peaked at 5.2 GB probed for real)
REAL_PROBE_MAX_VALUES = 3 * 128 * 128


class _Shape(NamedTuple):
    """The shape of a value a node produced (what the tracer reads; the probe's tensors are not kept)."""

    shape: tuple


class _RealShapes(fx.Interpreter):
    """Runs the graph on a real probe and records each node's output shape in ``node.meta["tensor_meta"]`` (as
    torch's ShapeProp does, without importing torch.fx.experimental.symbolic_shapes and sympy: 0.3 s)."""

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["tensor_meta"] = _Shape(tuple(result.shape))
        elif isinstance(result, (tuple, list)) and result and all(isinstance(r, torch.Tensor) for r in result):
            n.meta["tensor_meta"] = tuple(_Shape(tuple(r.shape)) for r in result)
        return result


@torch.no_grad()  # with autograd on, a real probe kept every activation for a backward (ResNet-18: 220 MB)
def _propagate_shapes(gm: fx.GraphModule, shape: tuple) -> None:
    """Every node's output shape for an input of ``shape``, in ``node.meta``: a small input with a real tensor,
    a large one with fake tensors (no memory is allocated, so a network far larger than the machine is still
    traced, and refused by --max-memory before it runs); a module fake tensors cannot run (code that reads
    values) is probed with a real tensor instead."""
    if math.prod(shape) <= REAL_PROBE_MAX_VALUES:
        _RealShapes(gm).run(torch.rand(shape))
        return
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    from .atomic import signals_held

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    try:
        with contextlib.redirect_stderr(io.StringIO()), signals_held():  # torch calls Python from C++ here
            FakeTensorProp(gm, mode).propagate(mode.from_tensor(torch.empty(shape)))
        return
    except Exception:  # noqa: BLE001 - data-dependent code: probe for real, below
        for n in gm.graph.nodes:
            n.meta.pop("val", None)
    _RealShapes(gm).run(torch.rand(shape))


def _neuron_nodes(path: str, nm: "foreign.NeuronModule", shape: tuple) -> list:
    """The IR node(s) of a neuron module: a Neuron; a synaptic current before it (snntorch Synaptic); or a
    RecurrentNeuron (snntorch RLeaky)."""
    if nm.recurrent is not None:
        w, b = nm.recurrent
        if len(shape) != 1:
            raise TraceError(f"module '{path}': a recurrent layer takes vectors, got per-sample shape {list(shape)}")
        if w is None:  # one-to-one: x * V as a diagonal matrix (exact: every other term adds 0)
            w, b = np.diag(np.broadcast_to(b, shape).astype(np.float32)), None
        return [N.RecurrentNeuron(path, shape, params=nm.params, weight=w, bias=b)]
    nodes = [N.LeakyIntegrator(f"{path}.syn", shape, lam=nm.syn_lam)] if nm.syn_lam is not None else []
    return nodes + [N.Neuron(path, shape, params=nm.params)]


def _container_nodes(path: str, m: nn.Module, in_shape: tuple) -> list:
    """A SpikingJelly container's children, each applied per sample (the shapes found by running each child on
    one zero sample)."""
    nodes, shape = [], tuple(in_shape)
    for name, child in m.named_children():
        with torch.no_grad():
            out = child(torch.zeros(1, *shape))
        out_shape = tuple(out.shape[1:])
        if isinstance(child, PASSTHROUGH_MODULES) or foreign.is_passthrough(child):
            continue
        nm = foreign.neuron_module(f"{path}.{name}", child)
        nodes += (_neuron_nodes(f"{path}.{name}", nm, out_shape) if nm is not None else
                  [_module_node(f"{path}.{name}", child, out_shape, shape)])
        shape = out_shape
    return nodes


def _add(n: fx.Node, shape: tuple, shape_of) -> N.Node:
    if n.kwargs:
        raise TraceError(f"'{n.name}': add with keyword arguments {list(n.kwargs)} is not supported")
    return N.Add(n.name, shape)


def _reshape(n: fx.Node, shape: tuple, per_sample) -> Optional[N.Node]:
    """A reshape that changes only the layout (time folded into or out of the batch) passes through; one that
    flattens each sample is a Flatten; anything else mixes samples or steps and is refused."""
    dims = _flatten_dims(per_sample(n.args[0]), shape)
    if dims is False:
        raise TraceError(f"'{n.name}' ({n.target}) reshapes each sample from {list(per_sample(n.args[0]))} to "
                         f"{list(shape)}: only flattening a sample, or folding time into the batch and back, is "
                         f"supported")
    return None if dims is None else N.Flatten(n.name, shape, start_dim=dims[0], end_dim=dims[1])


def _getitem(n: fx.Node, shape: tuple, per_sample) -> Optional[N.Node]:
    """``(spikes, membrane)[0]`` of a neuron passes through; anything else taken from a tensor is refused."""
    source, index = n.args
    if index == 0 and isinstance(source, fx.Node) and source.meta.get("tensor_meta") is not None:
        return None
    raise TraceError(f"'{n.name}': indexing a tensor or a neuron's membrane is not supported (only a neuron's "
                     f"spikes, element 0 of (spikes, membrane))")


#: torch functions and tensor methods -> IR node (None: the value passes through)
FUNCTIONS = {operator.add: _add, torch.add: _add, torch.flatten: _reshape, torch.unflatten: _reshape,
             operator.getitem: _getitem}
METHODS = {"add": _add, "flatten": _reshape, "view": _reshape, "reshape": _reshape, "unflatten": _reshape,
           "contiguous": lambda n, shape, per_sample: None}


def _conv(path, m, shape, in_shape):
    if m.padding_mode != "zeros":
        raise TraceError(f"module '{path}' (Conv2d): padding_mode={m.padding_mode!r} is not supported, only 'zeros'")
    if isinstance(m.padding, str):
        # 'same'/'valid' resolved to explicit symmetric padding from the traced shapes
        pad = tuple(((o - 1) * s + d * (k - 1) + 1 - i) // 2 for o, s, d, k, i in
                    zip(shape[1:], m.stride, m.dilation, m.kernel_size, in_shape[1:]))
    else:
        pad = _pair(m.padding)
    return N.Conv2d(path, shape, weight=_np(m.weight), bias=_np(m.bias), stride=_pair(m.stride), padding=pad,
                    dilation=_pair(m.dilation), groups=int(m.groups))


def _batchnorm(path, m, shape, in_shape):
    scale, shift = bn_scale_shift(m)
    stats = np.stack([_np(m.running_mean), _np(m.running_var),
                      _np(m.weight) if m.weight is not None else np.ones_like(scale),
                      _np(m.bias) if m.bias is not None else np.zeros_like(scale)])
    return N.Affine(path, shape, scale=scale, shift=shift, source="batchnorm", bn_stats=stats, eps=float(m.eps))


def _pool(path, m, shape, in_shape):
    extra = m.divisor_override if isinstance(m, nn.AvgPool2d) else m.return_indices
    if m.ceil_mode or extra:
        raise TraceError(f"module '{path}' ({type(m).__name__}): ceil_mode, divisor_override and return_indices "
                         "are not supported")
    k = _pair(m.kernel_size)
    common = dict(kernel=k, stride=_pair(m.stride or k), padding=_pair(m.padding))
    if isinstance(m, nn.AvgPool2d):
        return N.AvgPool2d(path, shape, count_include_pad=bool(m.count_include_pad), **common)
    return N.MaxPool2d(path, shape, dilation=_pair(m.dilation), **common)


def _flatten(path, m, shape, in_shape):
    dims = _flatten_dims(in_shape, shape)
    if dims is False:
        raise TraceError(f"module '{path}' (Flatten): start_dim={m.start_dim} merges the time/batch axes into the "
                         "features (use ilif_deploy.layers.Flatten, which flattens each sample of [T, B, ...])")
    return N.Flatten(path, shape, start_dim=dims[0] if dims else 0, end_dim=dims[1] if dims else 0)


#: torch module type -> IR node builder ``(path, module, shape, in_shape)``; subclasses match too (neurons:
#: :mod:`ilif_deploy.foreign_neurons`)
MODULES = {
    nn.Conv2d: _conv, nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm,
    nn.AvgPool2d: _pool, nn.MaxPool2d: _pool, nn.Flatten: _flatten,
    nn.ReLU: lambda path, m, shape, in_shape: N.ReLU(path, shape),
    nn.Linear: lambda path, m, shape, in_shape: N.Linear(path, shape, weight=_np(m.weight), bias=_np(m.bias)),
    nn.AdaptiveAvgPool2d: lambda path, m, shape, in_shape: N.AdaptiveAvgPool2d(path, shape,
                                                                             output_size=tuple(shape[1:])),
}


def _module_rule(m: nn.Module):
    return next((MODULES[c] for c in type(m).__mro__ if c in MODULES), None)


def supported_text() -> str:
    """What the tracer accepts, from its tables (for error messages)."""
    names = lambda xs: ", ".join(getattr(x, "__name__", str(x)) for x in xs)  # noqa: E731
    return (f"modules {names(MODULES)}, {names(PASSTHROUGH_MODULES)}; neurons {foreign.known_text()}; "
            f"functions {names(dict.fromkeys(FUNCTIONS))}; tensor methods {names(METHODS)}")


def _module_node(path: str, m: nn.Module, shape: tuple, in_shape: tuple) -> N.Node:
    rule = _module_rule(m)
    if rule is None:
        raise TraceError(f"module '{path}' ({type(m).__name__}): is not supported. Supported: {supported_text()}")
    return rule(path, m, shape, in_shape)
