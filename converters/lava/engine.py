"""A batched torch engine for the network Lava runs: the same :class:`NetSpec` (fused synapses,
readout), the same quantised weights, the same arithmetic -- for whole test sets, on any torch device.

Lava stays the reference (``ilif-simulate --engine lava``, and ``--verify K`` runs K samples through
both); this engine is how a user gets the full-set answer.  What each mode reproduces:

- ``fixed``: Lava's ``fixed_pt`` models bit for bit.  Synaptic sums are exact integers: the mantissas
  and inputs are integers held in float64, and :func:`_check_exact` proves before running that no
  partial sum can reach 2**53 (so no float rounding can occur in any summation order); then what Lava's
  connection processes do to the sum (``Dense``/``Sparse`` wrap at int32, ``Conv`` at 24 bits, the
  InPort sums in int32) is applied and counted; the neuron is :func:`.fixed.ilif_step_fixed`.
- ``float``: Lava's ``floating_pt`` models: synapses in float64 (as Lava's connection processes), the
  current plus bias rounded once to float32, the shared float step :func:`ilif_deploy.neuron_step.ilif_step`.

No pipeline delay is simulated: every layer of a Lava run sees the network step k of a sample at its
own step, which is what the delays in the NetSpec arrange.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ilif_deploy.errors import UserError
from ilif_deploy.neuron_step import ilif_step, zero_state
from ilif_deploy.runtime import TORCH_INFERENCE_OPS

from .fixed import (CONV_BITS, DENSE_BITS, INPUT_MAX, PORT_BITS, FixedPoint, QuantizedNet, ilif_step_fixed,
                    quantize_input, quantize_spec, torch_fixed_ops, wrap, zero_fixed_state)
from .netspec import INPUT, OUTPUT, NetSpec, Synapse

MODES = ("fixed", "float")
EXACT_LIMIT = 2 ** 53  # every integer below this is exact in float64, and so is every sum that stays below


@dataclass
class EngineResult:
    """What one batch produced: the readout per step ``[T, B, *out]`` (float64, float units), each
    layer's spikes ``[T, B, *shape]`` (uint8), and in fixed mode the counts of saturated states per layer
    (``overflows``), wrapped synaptic sums per target layer (``synapse_wraps``) and saturated inputs."""

    output: torch.Tensor
    spikes: Dict[str, torch.Tensor]
    overflows: Dict[str, int] = field(default_factory=dict)
    synapse_wraps: Dict[str, int] = field(default_factory=dict)
    input_saturated: int = 0


def _check_exact(syn: Synapse, w: np.ndarray, max_in: float, layer: str) -> None:
    """Refuse a synapse whose integer sums could leave float64's exact range (mantissas x inputs)."""
    if syn.kind == "conv":
        worst = np.abs(w).reshape(w.shape[0], -1).sum(1).max(initial=0)
    elif syn.kind == "dense":
        worst = np.abs(w).sum(1).max(initial=0)
    else:
        worst = np.abs(w).max(initial=0)
    bound = float(worst) * max_in
    if bound >= EXACT_LIMIT:
        raise UserError(f"layer '{layer}': a synaptic sum could reach {bound:.3g} >= 2**53, beyond exact float64 "
                        f"integers; the torch engine cannot reproduce it exactly (use --engine lava)")


class TorchEngine:
    """Runs ``spec`` batched in torch (see the module docstring).

    Args:
        spec: the network description (:func:`~ilif_deploy.converters.lava.netspec.build_netspec` or a ``.lava.h5``).
        mode: "fixed" or "float".
        fixed: the fixed-point format (default :class:`~.fixed.FixedPoint`); ignored when ``quantized`` is given.
        quantized: the fixed-point network (e.g. the mantissas stored in a ``.lava.h5``).
        device: any torch device.
    """

    def __init__(self, spec: NetSpec, mode: str = "fixed", fixed: Optional[FixedPoint] = None,
                 quantized: Optional[QuantizedNet] = None, device="cpu"):
        if mode not in MODES:
            raise UserError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if spec.timesteps < 1:
            raise UserError("the network description has no number of time steps T")
        self.spec, self.mode, self.device = spec, mode, torch.device(device)
        self.quantized = (quantized or quantize_spec(spec, fixed)) if mode == "fixed" else None
        self.ops = torch_fixed_ops()
        dev = dict(device=self.device)
        self.weights: List[torch.Tensor] = []
        for i, s in enumerate(spec.synapses):
            w = self.quantized.mantissas[i] if mode == "fixed" else s.weight
            if mode == "fixed":
                _check_exact(s, w, INPUT_MAX if s.graded else 1, s.target)
            self.weights.append(torch.as_tensor(np.asarray(w, np.float64), **dev))
        self.bias = {lay.name: torch.as_tensor(np.asarray(lay.bias, np.float64), **dev)
                     for lay in spec.layers + [spec.readout]}
        if mode == "fixed":
            self.layers = {k: replace(q, bias_int=torch.as_tensor(q.bias_int, **dev))
                           for k, q in self.quantized.layers.items()}
        self.incoming = {lay.name: [(i, s) for i, s in enumerate(spec.synapses) if s.target == lay.name]
                         for lay in spec.layers + [spec.readout]}

    def _synapse(self, i: int, s: Synapse, src: torch.Tensor) -> torch.Tensor:
        """The float64 current of synapse ``i`` from source values ``[B, *in_shape]``."""
        w, b = self.weights[i], src.shape[0]
        if s.kind == "conv":
            return F.conv2d(src, w, None, s.stride, s.padding, s.dilation, s.groups)
        flat = src.reshape(b, -1)
        out = flat @ w.T if s.kind == "dense" else flat * w
        return out.reshape(b, *s.out_shape)

    def _input_current(self, name: str, values: Dict[str, torch.Tensor], wraps: Dict[str, torch.Tensor]):
        total = None
        for i, s in self.incoming[name]:
            cur = self._synapse(i, s, values[s.source])
            if self.mode == "fixed":
                cur, n = wrap(cur.to(torch.int64), CONV_BITS if s.kind == "conv" else DENSE_BITS)
                wraps[name] = wraps[name] + n
            total = cur if total is None else total + cur
        if self.mode == "fixed":
            total, n = wrap(total, PORT_BITS)
            wraps[name] = wraps[name] + n
        return total

    @torch.no_grad()
    def run(self, x: torch.Tensor, record: bool = True) -> EngineResult:
        """Run a batch ``x`` ``[T, B, *input_shape]`` (float units) from zero state."""
        spec, fixed = self.spec, self.mode == "fixed"
        x = torch.as_tensor(x, device=self.device)
        T, B = x.shape[0], x.shape[1]
        if T != spec.timesteps or tuple(x.shape[2:]) != tuple(spec.input_shape):
            raise UserError(f"input {list(x.shape)} does not fit the network ([T={spec.timesteps}, B, "
                            f"{', '.join(map(str, spec.input_shape))}])")
        zero = torch.zeros((), dtype=torch.int64, device=self.device)
        names = [lay.name for lay in spec.layers]
        wraps = {k: zero for k in names + [OUTPUT]}
        over = {k: zero for k in names}
        saturated = zero
        states = {lay.name: (zero_fixed_state((B, *lay.shape), torch, device=self.device) if fixed else
                             zero_state(torch.zeros((B, *lay.shape), device=self.device), TORCH_INFERENCE_OPS))
                  for lay in spec.layers}
        spikes = {k: [] for k in names} if record else {}
        outputs = []
        for t in range(T):
            if fixed:
                ints, n = quantize_input(x[t].to(torch.float64), self.quantized.fp, torch)
                saturated = saturated + n
                values = {INPUT: ints.to(torch.float64)}
            else:
                values = {INPUT: x[t].to(torch.float64)}
            for lay in spec.layers:
                a_in = self._input_current(lay.name, values, wraps)
                if fixed:
                    step = ilif_step_fixed(a_in, states[lay.name], self.layers[lay.name], self.ops)
                    over[lay.name] = over[lay.name] + step.overflows
                    s, states[lay.name] = step.spikes, step.state
                else:
                    rec = ilif_step((a_in + self.bias[lay.name]).to(torch.float32), states[lay.name], lay.params,
                                    TORCH_INFERENCE_OPS)
                    s, states[lay.name] = rec.spikes, rec.state
                values[lay.name] = s.to(torch.float64)
                if record:
                    spikes[lay.name].append(s.to(torch.uint8))
            out = self._input_current(OUTPUT, values, wraps)
            if fixed:
                out = out.to(torch.float64) * self.quantized.readout_scale
            outputs.append(out + self.bias[OUTPUT])
        return EngineResult(output=torch.stack(outputs), spikes={k: torch.stack(v) for k, v in spikes.items()},
                            overflows={k: int(v) for k, v in over.items()} if fixed else {},
                            synapse_wraps={k: int(v) for k, v in wraps.items()} if fixed else {},
                            input_saturated=int(saturated) if fixed else 0)


def run_engine(spec: NetSpec, x, mode: str = "fixed", fixed: Optional[FixedPoint] = None, device="cpu",
               batch_size: int = 256) -> EngineResult:
    """Convenience: :class:`TorchEngine` over samples ``x`` ``[T, N, *input_shape]`` in batches; counts summed."""
    eng = TorchEngine(spec, mode, fixed, device=device)
    parts = [eng.run(x[:, i:i + batch_size]) for i in range(0, x.shape[1], batch_size)]
    return EngineResult(output=torch.cat([p.output for p in parts], 1),
                        spikes={k: torch.cat([p.spikes[k] for p in parts], 1) for k in parts[0].spikes},
                        overflows={k: sum(p.overflows[k] for p in parts) for k in parts[0].overflows},
                        synapse_wraps={k: sum(p.synapse_wraps[k] for p in parts) for k in parts[0].synapse_wraps},
                        input_saturated=sum(p.input_saturated for p in parts))


__all__ = ["TorchEngine", "EngineResult", "run_engine", "MODES"]
