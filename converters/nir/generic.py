"""A *generic* NIR consumer: runs a NIR graph from its standard primitives alone (metadata ignored),
the way another simulator would, and measures how far that is from ilif-deploy's exact model.

Execution is nirtorch 2.6's graph executor (``nirtorch.nir_to_torch``) with the node maps below:
forward Euler at step ``dt`` for the neuron equations, NIR's ``>`` spike rule and reset-to-``v_reset``.
nirtorch's own defaults are replaced where they are wrong (see :mod:`ilif_deploy.converters.nir.upstream`).
One call of the executor is one time step; recurrent edges deliver the previous step's value.
"""
from __future__ import annotations

from typing import Dict, Optional

import nir
import nirtorch
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .conventions import DEFAULT_DT
from .upstream import in_flow_order, nirtorch_affine, nirtorch_flatten


def _t(a) -> torch.Tensor:
    # a copy: the module owns its parameters, and a NIR graph's per-neuron constants are read-only broadcast views
    return torch.as_tensor(np.array(a, dtype=np.float32))


class EulerLIF(nn.Module):
    """nir.LIF / nir.IF / nir.CubaLIF: Euler step, spike on v > v_threshold, then v = v_reset."""

    def __init__(self, node: nir.NIRNode, dt: float):
        super().__init__()
        self.kind = type(node).__name__
        self.v_th, self.v_reset = _t(node.v_threshold), _t(node.v_reset)
        if isinstance(node, nir.LIF):
            self.a, self.g, self.leak = _t(dt / node.tau), _t(node.r), _t(node.v_leak)
        elif isinstance(node, nir.CubaLIF):
            self.a, self.g, self.leak = _t(dt / node.tau_mem), _t(node.r), _t(node.v_leak)
            self.a_syn, self.w_in = _t(dt / node.tau_syn), _t(node.w_in)
        else:  # IF: dv/dt = r I, Euler
            self.g = _t(dt * node.r)

    def forward(self, x, state=None):
        v = torch.zeros_like(x) if state is None else state["v"]
        new = {}
        if self.kind == "IF":
            v = v + self.g * x
        else:
            if self.kind == "CubaLIF":
                i = torch.zeros_like(x) if state is None else state["i"]
                i = i + self.a_syn * (-i + self.w_in * x)
                new["i"], x = i, i
            v = v + self.a * (self.leak - v + self.g * x)
        z = (v > self.v_th).to(x.dtype)
        new["v"] = torch.where(z > 0, self.v_reset.expand_as(v), v)
        return z, new


class EulerLI(nn.Module):
    """nir.LI and nir.I (Euler): non-spiking, the state is the output."""

    def __init__(self, node: nir.NIRNode, dt: float):
        super().__init__()
        self.integrator = isinstance(node, nir.I)
        self.g = _t(dt * node.r) if self.integrator else _t(node.r)
        if not self.integrator:
            self.a, self.leak = _t(dt / node.tau), _t(node.v_leak)

    def forward(self, x, state=None):
        v = torch.zeros_like(x) if state is None else state
        v = v + self.g * x if self.integrator else v + self.a * (self.leak - v + self.g * x)
        return v, v


class Threshold(nn.Module):
    def __init__(self, node: nir.Threshold):
        super().__init__()
        self.thr = _t(node.threshold)

    def forward(self, x):
        return (x > self.thr).to(x.dtype)


class Scale(nn.Module):
    def __init__(self, node: nir.Scale):
        super().__init__()
        self.scale = _t(node.scale)

    def forward(self, x):
        return x * self.scale


class SumPool2d(nn.Module):
    def __init__(self, node: nir.SumPool2d):
        super().__init__()
        self.k, self.s, self.p = (tuple(int(v) for v in np.broadcast_to(np.asarray(a).reshape(-1), 2))
                                  for a in (node.kernel_size, node.stride, node.padding))

    def forward(self, x):
        return F.avg_pool2d(x, self.k, self.s, self.p, count_include_pad=True, divisor_override=1)


def node_map(dt: float = DEFAULT_DT) -> Dict[type, object]:
    """nirtorch node map for a generic consumer at step ``dt`` (seconds)."""
    return {
        nir.Affine: nirtorch_affine,
        nir.Flatten: nirtorch_flatten,
        nir.SumPool2d: SumPool2d,
        nir.LIF: lambda n: EulerLIF(n, dt),
        nir.IF: lambda n: EulerLIF(n, dt),
        nir.CubaLIF: lambda n: EulerLIF(n, dt),
        nir.LI: lambda n: EulerLI(n, dt),
        nir.I: lambda n: EulerLI(n, dt),
        nir.Threshold: Threshold,
        nir.Scale: Scale,
    }


def generic_module(graph: nir.NIRGraph, dt: float = DEFAULT_DT) -> torch.fx.GraphModule:
    """The NIR graph as nirtorch builds it: ``out, state = module(x_t, state)`` per step."""
    return nirtorch.nir_to_torch(in_flow_order(graph), node_map(dt))


@torch.no_grad()
def run_generic(graph: nir.NIRGraph, x: torch.Tensor, dt: float = DEFAULT_DT, record=()):
    """Run ``graph`` over ``x`` ``[T, B, ...]`` as a generic consumer; returns ``[T, B, ...]`` and,
    for each name in ``record`` (a top-level node, or ``"layer.spike"`` inside a subgraph), its
    per-step outputs ``[T, B, ...]``."""
    module = generic_module(graph, dt)
    seen: Dict[str, list] = {name: [] for name in record}
    hooks = []
    for name in record:
        sub = module.get_submodule(name.replace(".", "_") if "." not in name else
                                   ".".join(p.replace(".", "_") for p in name.rsplit(".", 1)))
        hooks.append(sub.register_forward_hook(
            lambda m, i, o, name=name: seen[name].append(o[0] if isinstance(o, tuple) else o)))
    try:
        state, outs = None, []
        for t in range(x.shape[0]):
            out, state = module(x[t], state)
            outs.append(out)
    finally:
        for h in hooks:
            h.remove()
    y = torch.stack(outs)
    return (y, {k: torch.stack(v) for k, v in seen.items()}) if record else y


def _spike_name(ng: nir.NIRGraph, name: str) -> str:
    """Where a generic run of ``ng`` has the spikes of layer ``name``: the node itself, or inside its
    subgraph the ILIF's ``spike`` threshold or a recurrent layer's ``lif`` (snntorch's RLeaky layout)."""
    node = ng.nodes[name]
    if not isinstance(node, nir.NIRGraph):
        return name
    return f"{name}.{'spike' if 'spike' in node.nodes else 'lif'}"


@torch.no_grad()
def fidelity(graph, ng: nir.NIRGraph, data=None, samples: Optional[int] = None, dt: float = DEFAULT_DT,
             timesteps: Optional[int] = None, batch_size: int = 64):
    """How a generic consumer's run of ``ng`` agrees with the exact IR runtime on the same data.

    Args:
        graph: the exact IR graph the file was written from.
        ng: the NIR graph (as read back with ``nir.read``).
        data: a :class:`~ilif_deploy.data.Dataset` or an array; None: the digits test split for [1, 8, 8]
            inputs, else 64 uniform random frames (:func:`ilif_deploy.data.probe_inputs`).
        samples: keep the first ``samples`` samples.
        timesteps: T (default: the graph's).
    Returns:
        an :class:`~ilif_deploy.agreement.Agreement` (reference "exact", candidate "generic NIR";
        ``details``: data, dt).
    """
    from ilif_deploy import ir as N
    from ilif_deploy.agreement import AgreementCounter
    from ilif_deploy.data import as_dataset, probe_inputs
    from ilif_deploy.runtime import run

    T = timesteps or graph.timesteps or 4
    data = (probe_inputs(graph, 450 if graph.input_shape == (1, 8, 8) else 64) if data is None
            else as_dataset(data, graph.input_shape, T)).take(samples)
    neurons = [n.name for n in graph.of_type(N.SPIKING)]
    spike = {n: _spike_name(ng, n.replace("/", "|")) for n in neurons}
    counter = AgreementCounter(neurons, "exact", "generic NIR")
    for batch in data.batches(batch_size, T):
        exact_out, exact_rec = run(graph, batch.x, record=neurons)
        gen_out, gen_rec = run_generic(ng, batch.x, dt, record=list(spike.values()))
        counter.add(exact_rec, {n: gen_rec[spike[n]] for n in neurons}, exact_out.sum(0), gen_out.sum(0), batch.y)
    return counter.result(data=data.describe(), dt=dt)
