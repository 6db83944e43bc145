"""Reference runtime: executes an IR graph in torch, multi-step and batched.

Every target (Lava, NIR, ONNX) and the energy module are compared against this executor.
The graph is feed-forward, so each node processes its whole ``[T, B, ...]`` sequence at once;
only neuron nodes loop over time, through the shared :func:`ilif_step`.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, Iterable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import ir as N
from .errors import DataError, GraphError, UserError
from .families import RUNTIME
from .limits import check_run
from .ir.graph import Graph
from .neuron_step import ArrayOps, run_sequence
from .neurons import spike_count


def all_finite(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` is finite (integer tensors always are).  A finite sum proves it in one pass
    without a mask as large as ``x`` (an inf or a nan makes the sum inf or nan); only a sum that overflowed is
    checked value by value."""
    if not x.is_floating_point():
        return True
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def _heaviside(d: torch.Tensor) -> torch.Tensor:
    # the comparison written straight into a float tensor: ``(d >= 0).to(d.dtype)`` converts a bool tensor in a
    # second pass that is ~9x slower than the comparison itself (0.52 vs 0.06 ms per 2^19 values, one thread)
    return torch.ge(d, 0, out=torch.empty_like(d))


TORCH_INFERENCE_OPS = ArrayOps(spike=_heaviside, relu=torch.relu, sigmoid=torch.sigmoid, zeros_like=torch.zeros_like,
                               stack=torch.stack, count=spike_count)


def _t(a: Optional[np.ndarray], like: torch.Tensor) -> Optional[torch.Tensor]:
    return None if a is None else torch.as_tensor(a, dtype=like.dtype, device=like.device)


def _merged(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample op to ``[T, B, ...]`` by merging T and B."""
    return fn(x.flatten(0, 1)).unflatten(0, x.shape[:2])


#: compiled variants are specialised per neuron parameters and input shape; a ResNet-18 over a
#: dataset with a short last batch needs about a dozen, more than dynamo's default limit of 8.
_COMPILED_VARIANTS = 64


@functools.lru_cache(maxsize=None)
def _compiled_run_sequence() -> Callable:
    # Built on first use only: importing and starting inductor costs seconds.
    return torch.compile(run_sequence, dynamic=False)


class NeuronCompileError(RuntimeError):
    """torch.compile could not build a fused neuron kernel (no C++ compiler on CPU, no triton on CUDA)."""


def _run_sequence_compiled(x: torch.Tensor, params) -> torch.Tensor:
    """:func:`run_sequence` fused by ``torch.compile`` into one kernel per layer.

    Why it is still the one ILIF step: inductor traces the very same :func:`ilif_step`; with its
    defaults (no FMA contraction, no unsafe math) every operation but the sigmoid is the same
    correctly rounded float32 operation as in eager mode.  The sigmoid's exp is the same vectorised
    SLEEF exp except in the last few elements of a kernel, where eager mode falls back to libm's
    exp: there the MPIU term can differ by one ulp (seen: 2 of 882 membrane values off by 6e-8
    with 147 values per step).  Spikes were identical to eager mode on every model we tried
    (tests/test_runtime_compile.py, benchmarks/bench_energy.py)."""
    import torch._dynamo

    try:
        with torch._dynamo.config.patch(recompile_limit=_COMPILED_VARIANTS):
            return _compiled_run_sequence()(x, params, TORCH_INFERENCE_OPS)
    except torch._dynamo.exc.BackendCompilerFailed as e:
        raise NeuronCompileError("compile_neurons=True: torch.compile could not build the fused neuron kernel "
                                 f"({type(e.inner_exception).__name__}: {e.inner_exception}); it needs a C++ "
                                 "compiler (gcc/g++) on CPU or triton on CUDA. Leave compile_neurons off (no "
                                 "--compile) to run in eager mode.") from e


def run_neuron(node: "N.Neuron", x: torch.Tensor, return_states: bool = False, compile_neurons: bool = False):
    """Run one neuron node over ``x`` ``[T, B, ...]``; returns spikes (and per-step states).
    ``compile_neurons=True`` fuses the time loop with ``torch.compile`` (spikes only, not states)."""
    if compile_neurons and not return_states:
        return _run_sequence_compiled(x, node.params)
    return run_sequence(x, node.params, TORCH_INFERENCE_OPS, return_states=return_states)


def run_leaky_integrator(node: "N.LeakyIntegrator", x: torch.Tensor) -> torch.Tensor:
    """``y[t] = lam * y[t-1] + x[t]`` over ``x`` ``[T, B, ...]`` (state zero at t = 0)."""
    y, out = torch.zeros_like(x[0]), []
    for t in range(x.shape[0]):
        y = node.lam * y + x[t]
        out.append(y)
    return torch.stack(out)


def run_recurrent_neuron(node: "N.RecurrentNeuron", x: torch.Tensor) -> torch.Tensor:
    """A :class:`~ilif_deploy.ir.nodes.RecurrentNeuron` over ``x`` ``[T, B, N]``: one step at a time, since
    step t takes the layer's own spikes of step t - 1; the neuron step is the shared :func:`ilif_step`."""
    from .neuron_step import ilif_step, zero_state

    w, b = _t(node.weight, x), _t(node.bias, x)
    spikes, current, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
    state = zero_state(x[0], TORCH_INFERENCE_OPS)
    for t in range(x.shape[0]):
        a = x[t] + F.linear(spikes, w, b)
        current = node.syn_lam * current + (a * node.in_scale + node.in_shift)
        rec = ilif_step(current * node.mem_scale + node.mem_shift, state, node.params, TORCH_INFERENCE_OPS)
        state, spikes = rec.state, rec.spikes
        out.append(spikes)
    return torch.stack(out)


def _add(node, inputs, **_):
    out = inputs[0]
    for other in inputs[1:]:
        out = out + other
    return out


def _conv(node, inputs, **_):
    x = inputs[0]
    w, b = _t(node.weight, x), _t(node.bias, x)
    return _merged(lambda z: conv2d(z, w, b, node.stride, node.padding, node.dilation, node.groups), x)


def conv2d(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], stride, padding, dilation,
           groups: int = 1) -> torch.Tensor:
    """``F.conv2d`` with ``stride``, ``padding``, ``dilation`` as (h, w) pairs (as IR nodes and Lava synapses hold
    them); in float64 on the CPU as :func:`_conv2d_float64` (the runtime's float64 synapses and the Lava engine's
    both come here)."""
    if x.dtype == torch.float64 and x.device.type == "cpu" and groups == 1:
        return _conv2d_float64(x, w, b, stride, padding, dilation)
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


#: bytes of unfolded input :func:`_conv2d_float64` holds at once
CONV64_COLUMN_BYTES = 16 * 2 ** 20
#: output positions from which :func:`_conv2d_float64` multiplies sample by sample into its output; below, one
#: product over the chunk's samples (measured on ResNet-18's layers: at 32x32 and 16x16 outputs the per-sample
#: products are 1.45x faster, no transposed copies; at 8x8 1.3x and at 4x4 2.8x slower)
CONV64_PER_SAMPLE_POSITIONS = 256


def _conv2d_float64(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], stride, padding,
                    dilation) -> torch.Tensor:
    """``F.conv2d`` in float64 on the CPU as unfold + matrix products, a chunk of samples at a time (one product over
    the chunk, or per sample for large outputs: :data:`CONV64_PER_SAMPLE_POSITIONS`).

    Why: torch has no fast float64 convolution on the CPU; its fallback unfolds the whole batch at once (a
    ResNet-18's first layers: 113 MB for 24 frames) and multiplies sample by sample, small products that
    run a 512-channel 4x4 layer 2.7x slower than one product over many samples.  The float64 synapses
    (Lava's arithmetic, the lowering checks) are where it runs."""
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    per_sample = c * kh * kw * ho * wo * x.element_size()
    step = max(1, CONV64_COLUMN_BYTES // max(per_sample, 1))
    wm = w.reshape(k, -1)
    out = torch.empty(n, k, ho, wo, dtype=x.dtype)
    for i in range(0, n, step):
        cols = F.unfold(x[i:i + step], (kh, kw), dilation=dilation, padding=padding, stride=stride)  # [m, CKK, L]
        m = cols.shape[0]
        if ho * wo >= CONV64_PER_SAMPLE_POSITIONS:  # a product per sample: no transposed copies
            out[i:i + m] = torch.matmul(wm, cols).view(m, k, ho, wo)  # (not out=: the fine-tuner differentiates)
            continue
        y = wm @ cols.transpose(0, 1).reshape(wm.shape[1], m * ho * wo)  # [K, m * L]
        out[i:i + m] = y.reshape(k, m, ho, wo).transpose(0, 1)
    if b is not None:
        out += b.view(1, -1, 1, 1)
    return out


def _affine(node, inputs, **_):
    x = inputs[0]
    if node.bn_stats is not None:
        # torch's own kernel on the BN's own statistics: x * scale + shift rounds differently
        # (by an ulp), and an ulp at the threshold flips a spike downstream.
        mean, var, w, b = (_t(a, x) for a in node.bn_stats)
        return _merged(lambda z: F.batch_norm(z, mean, var, w, b, False, 0.0, node.eps), x)
    view = (-1,) + (1,) * (x.dim() - 3)
    return x * _t(node.scale, x).view(view) + _t(node.shift, x).view(view)


def _flatten(node, inputs, **_):
    x = inputs[0]
    nd = x.dim() - 2
    return x.flatten(2 + node.start_dim % nd, 2 + node.end_dim % nd)


def _per_sample(fn):
    """An op on ``[N, ...]`` applied to ``[T, B, ...]`` (T and B merged)."""
    return lambda node, inputs, **_: _merged(lambda z: fn(node, z), inputs[0])


#: IR node type -> ``fn(node, inputs, compile_neurons=...) -> [T, B, *node.shape]``
EXECUTORS = {
    N.Add: _add,
    N.Output: lambda node, inputs, **_: inputs[0],
    N.Neuron: lambda node, inputs, compile_neurons=False: run_neuron(node, inputs[0], compile_neurons=compile_neurons),
    N.LeakyIntegrator: lambda node, inputs, **_: run_leaky_integrator(node, inputs[0]),
    N.RecurrentNeuron: lambda node, inputs, **_: run_recurrent_neuron(node, inputs[0]),
    N.Conv2d: _conv,
    N.Linear: lambda node, inputs, **_: F.linear(inputs[0], _t(node.weight, inputs[0]), _t(node.bias, inputs[0])),
    N.Affine: _affine,
    N.AvgPool2d: _per_sample(lambda n, z: F.avg_pool2d(z, n.kernel, n.stride, n.padding,
                                                       count_include_pad=n.count_include_pad)),
    N.SumPool2d: _per_sample(lambda n, z: _sum_pool(z, n)),
    N.MaxPool2d: _per_sample(lambda n, z: F.max_pool2d(z, n.kernel, n.stride, n.padding, n.dilation)),
    N.AdaptiveAvgPool2d: _per_sample(lambda n, z: F.adaptive_avg_pool2d(z, n.output_size)),
    N.Flatten: _flatten,
    N.ReLU: lambda node, inputs, **_: torch.relu(inputs[0]),
}


def apply_node(node: "N.Node", inputs: list, compile_neurons: bool = False) -> torch.Tensor:
    """Output ``[T, B, *node.shape]`` of one node given its inputs' outputs (in edge order);
    ``compile_neurons`` as in :func:`run`."""
    fn = EXECUTORS.get(type(node))
    if fn is None:
        raise GraphError(f"node '{node.name}': the runtime cannot execute op {node.op!r} "
                         f"(it runs {', '.join(c.op for c in EXECUTORS)})")
    return fn(node, inputs, compile_neurons=compile_neurons)


def _sum_pool(z: torch.Tensor, node: "N.SumPool2d") -> torch.Tensor:
    # Exact sums: a conv with a ones kernel per channel (avg_pool * k would add a rounding step).
    c = z.shape[1]
    ones = torch.ones(c, 1, *node.kernel, dtype=z.dtype, device=z.device)
    return F.conv2d(z, ones, None, node.stride, node.padding, 1, c)


def expand_input(graph: Graph, x: Union[torch.Tensor, np.ndarray], timesteps: Optional[int] = None) -> torch.Tensor:
    """Bring input data to ``[T, B, *input_shape]``.

    ``[B, *input_shape]`` is repeated over T (direct encoding); ``[T, B, *input_shape]`` is used as is.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    shape = tuple(graph.input_node.shape)
    T = timesteps or graph.timesteps
    if tuple(x.shape[1:]) == shape:
        if not T:
            raise DataError("input has no time axis and the graph records no 'timesteps': pass timesteps= (command "
                            "line: -T/--timesteps)")
        return x.unsqueeze(0).expand(T, *x.shape).contiguous()
    if tuple(x.shape[2:]) == shape:
        if timesteps and x.shape[0] != timesteps:
            raise DataError(f"input has T={x.shape[0]} steps but timesteps={timesteps} was asked for")
        return x
    raise DataError(f"input shape {list(x.shape)} fits neither [B, {', '.join(map(str, shape))}] "
                     f"nor [T, B, {', '.join(map(str, shape))}]")


@torch.no_grad()
def run(graph: Graph, x: Union[torch.Tensor, np.ndarray], timesteps: Optional[int] = None,
        record: Union[None, bool, Iterable[str]] = None,
        observe: Optional[Callable[[str, torch.Tensor], None]] = None,
        synapse_dtype: Optional[torch.dtype] = None, compile_neurons: bool = False):
    """Execute ``graph`` on ``x`` and return the output node's per-step values ``[T, B, ...]``.

    Args:
        graph: a validated IR graph.
        x: ``[T, B, *input_shape]``, or ``[B, *input_shape]`` to repeat over ``timesteps`` steps.
        timesteps: number of steps T (defaults to the graph's ``metadata["timesteps"]``).
        record: node names whose outputs to keep, or True for all nodes.
        observe: called as ``observe(name, output)`` right after each node ran (output ``[T, B, ...]``),
            so a caller can reduce activations batch by batch without keeping them (the energy module).
        synapse_dtype: ``torch.float64`` computes every synaptic (linear) node in float64 and rounds
            each neuron layer's input current to float32 once, as Lava's connection processes do;
            None (default) computes in float32 like the source torch module.
        compile_neurons: fuse each neuron layer's time loop into one kernel with ``torch.compile``
            (opt-in: needs a C++ compiler on CPU; the first call per layer shape compiles for
            seconds, later ones run the neuron layers several times faster; the same spikes on every
            model we tried, see :func:`_run_sequence_compiled` for the one-ulp caveat).
    Returns:
        the output, or ``(output, {name: [T, B, ...] tensor})`` when ``record`` is given.
    """
    RUNTIME.check_graph(graph)
    x = expand_input(graph, x, timesteps)
    check_run(graph, x.shape[0], x.shape[1], itemsize=8 if synapse_dtype == torch.float64 else x.element_size())
    if not all_finite(x):
        raise DataError("the input holds non-finite values (inf or nan)")
    keep = set(graph.nodes) if record is True else set(record or ())
    unknown = keep - set(graph.nodes)
    if unknown:
        raise UserError(f"cannot record unknown node(s) {sorted(unknown)}")
    order = graph.topological_order()
    inputs_of, consumers_of = graph.adjacency()
    remaining = {n: len(consumers_of[n]) for n in order}
    values: Dict[str, torch.Tensor] = {}
    recorded: Dict[str, torch.Tensor] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, N.Input):
            out = x
        else:
            preds = inputs_of[name]
            ins = [values[p] for p in preds]
            if synapse_dtype is not None:
                stateful = isinstance(node, N.SPIKING + (N.LeakyIntegrator, N.Output))
                ins = [v.to(torch.float32 if stateful else synapse_dtype) for v in ins]
            out = apply_node(node, ins, compile_neurons=compile_neurons)
            if not isinstance(node, N.SPIKING) and not all_finite(out):
                raise DataError(f"node '{name}' ({node.op}) computes non-finite values (inf or nan) from finite "
                                f"inputs: its parameters overflow float32 (a BatchNorm variance of 0, a huge gain?)")
            for p in preds:  # free activations as soon as their last consumer ran
                remaining[p] -= 1
                if remaining[p] == 0 and p not in keep:
                    values.pop(p, None)
        values[name] = out
        if observe is not None:
            observe(name, out)
        if name in keep:
            recorded[name] = out
    result = values[graph.output_node.name]
    return (result, recorded) if record else result


def logits(graph: Graph, x, timesteps: Optional[int] = None) -> torch.Tensor:
    """Classifier logits: the output summed over time ``[B, classes]`` (the authors' readout)."""
    return run(graph, x, timesteps).sum(0)
