"""A batched torch engine for the network Lava runs: the same :class:`NetSpec` (fused synapses,
readout), the same quantised weights, the same arithmetic -- for whole test sets, on any torch device.

Lava stays the reference (``ilif-simulate --engine lava``, and ``--verify K`` runs K samples through
both); this engine is how a user gets the full-set answer.  What each mode reproduces:

- ``fixed``: Lava's ``fixed_pt`` models bit for bit.  Synaptic sums are exact integers: the mantissas
  and inputs are integers held in floats, and :func:`_exact_dtype` proves before running that no
  partial sum can reach 2**24 (float32) or 2**53 (float64), so no rounding can occur in any summation
  order (BLAS and oneDNN sum in their own orders); then what Lava's
  connection processes do to the sum (``Dense``/``Sparse`` wrap at int32, ``Conv`` at 24 bits, the
  InPort sums in int32) is applied and counted; the neuron is :func:`.fixed.ilif_step_fixed`.  A layer steps
  in int64, saturating and counting; where the largest input it receives on the batch proves
  (:func:`.fixed.state_bound`) that no value of its step can leave 24 bits, it steps in int32 without the
  clamps -- the same integers (every clamp would be a no-op) at half the bytes and a third of the ops.
- ``float``: Lava's ``floating_pt`` models: synapses in float64 (as Lava's connection processes), the
  current plus bias rounded once to float32, the shared float step :func:`ilif_deploy.neuron_step.ilif_step`.

No pipeline delay is simulated: every layer of a Lava run sees the network step k of a sample at its
own step, which is what the delays in the NetSpec arrange.  So the engine runs layer by layer, each
synapse once over all T steps (a batch of T x B), and each neuron layer's loop over the steps.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

import numpy as np
import torch

from ilif_deploy.errors import UserError
from ilif_deploy.families import all_but, declare
from ilif_deploy.neuron_step import ILIFState, ilif_step, zero_state
from ilif_deploy.runtime import TORCH_INFERENCE_OPS, conv2d

from .fixed import (CONV_BITS, DENSE_BITS, INPUT_MAX, PORT_BITS, STATE_MAX, FixedLayer, FixedOps, FixedPoint,
                    QuantizedNet, ilif_step_fixed, integrate_readout, lut_lookup, quantize_input, quantize_spec,
                    state_bound, torch_fixed_ops, torch_lut, wrap, zero_fixed_state)
from .netspec import INPUT, OUTPUT, NetSpec, Synapse

#: the engine runs every feature Lava runs, with the same step functions (float: ilif_step; fixed: ilif_step_fixed)
ENGINE_FLOAT = declare("torch engine (float)", all_but())
ENGINE_FIXED = declare("torch engine (fixed point)", all_but())

MODES = ("fixed", "float")
EXACT_LIMIT = 2 ** 53  # every integer below this is exact in float64, and so is every sum that stays below
EXACT_LIMIT_FLOAT32 = 2 ** 24


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


def _row_sum(syn: Synapse, w: np.ndarray) -> float:
    """The largest sum of |weight| into one neuron (what one unit of input can add up to)."""
    if syn.kind == "conv":
        return float(np.abs(w).reshape(w.shape[0], -1).sum(1).max(initial=0))
    if syn.kind == "dense":
        return float(np.abs(w).sum(1).max(initial=0))
    return float(np.abs(w).max(initial=0))


def _exact_dtype(row_sum: float, max_in: float, layer: str) -> torch.dtype:
    """The cheapest float type in which every partial sum of a synapse's integers is exact: float32
    when max |input| x ``row_sum`` (the largest sum of |mantissa| into one neuron) < 2**24 (spikes into
    8-bit weights up to a fan-in of 65,000), else float64 (< 2**53); beyond that the synapse is refused."""
    bound = row_sum * max_in
    if bound >= EXACT_LIMIT:
        raise UserError(f"layer '{layer}': a synaptic sum could reach {bound:.3g} >= 2**53, beyond exact float64 "
                        f"integers; the torch engine cannot reproduce it exactly (use --engine lava)")
    return torch.float32 if bound < EXACT_LIMIT_FLOAT32 else torch.float64


class FixedBounds:
    """What the bound checks need of a fixed-point network (plain numbers, no tensors): per synapse the
    largest sum of |mantissa| into one neuron, per layer its incoming synapses and largest |bias|."""

    def __init__(self, spec: NetSpec, quantized: QuantizedNet):
        self.spec, self.quantized = spec, quantized
        self.row_sums = [_row_sum(s, m) for s, m in zip(spec.synapses, quantized.mantissas)]
        self.incoming = {lay.name: spec.incoming_indexed(lay.name) for lay in spec.layers + [spec.readout]}
        self.bias_max = {k: float(np.abs(q.bias_int).max(initial=0)) for k, q in quantized.layers.items()}
        #: per synapse the largest message of a non-graded source: 1 (a spike), a multi-spike layer's largest
        #: count (its saturated membrane over its threshold), or a delta encoder's largest change
        self.message_max = [float(STATE_MAX // max(quantized.layers[s.source].vth_int, 1)) if s.counts
                            else float(STATE_MAX >> quantized.layers[s.source].state_exp) if s.delta else 1.0
                            for s in spec.synapses]

    def batch(self, input_max: float):
        """For graded input up to ``input_max`` (integer LSBs; spikes: 1): the largest |sum| of every synapse,
        and per neuron layer whether :func:`.fixed.state_bound` proves its state stays in range.  Layers are
        visited in order, so a delta encoder's messages are bounded by its own states' bound (else by the
        largest state)."""
        bounds, in_range, reach = {}, {}, {}
        for name in [lay.name for lay in self.spec.layers] + [OUTPUT]:
            for i, s in self.incoming[name]:
                msg = input_max if s.graded else self.message_max[i]
                if s.delta and s.source in reach:
                    msg = min(msg, reach[s.source] / 2.0 ** self.quantized.layers[s.source].state_exp + 1)
                bounds[i] = self.row_sums[i] * msg
            if name == OUTPUT:
                continue
            q = self.quantized.layers[name]
            a = sum(bounds[i] for i, _ in self.incoming[name])
            x = a * 2.0 ** q.a_exp + 1 + self.bias_max[name]  # + 1: a right shift floors negatives
            reach[name] = state_bound(q, x, self.spec.timesteps + self.spec.prefill)
            in_range[name] = reach[name] < STATE_MAX
        return bounds, in_range

    def in_range_on(self, name: str, a_max: float, bounds: Dict[int, float]) -> bool:
        """Whether :func:`.fixed.state_bound` proves layer ``name``'s state stays in range on this batch, from the
        largest |feed-forward input sum| it actually receives (``a_max``, over all steps; a recurrent synapse's
        current adds its bound from ``bounds``).  Known once a layer's input is computed and far tighter than
        :meth:`batch`'s worst case (a trained ResNet-18 proves none of its layers there, nearly all here)."""
        q = self.quantized.layers[name]
        a = a_max + sum(bounds[i] for i, s in self.incoming[name] if s.recurrent)
        x = a * 2.0 ** q.a_exp + 1 + self.bias_max[name]
        return state_bound(q, x, self.spec.timesteps + self.spec.prefill) < STATE_MAX


@dataclass
class FixedArrays:
    """What a fixed-point run computes with: the quantised network, its mantissas as torch tensors (exact
    integers in the float type :func:`_exact_dtype` proves exact), its layers (``bias_int`` as tensors), the
    integer ops and the bounds.  The engine makes its own; fine-tuning (:mod:`.finetune`) makes one per
    training step whose tensors carry gradients (``differentiable``: values are kept as exact-integer float64
    instead of int64, and spikes as floats)."""

    quantized: QuantizedNet
    weights: List[torch.Tensor]
    layers: Dict[str, FixedLayer]
    ops: FixedOps
    bounds: FixedBounds
    differentiable: bool = False


def synapse_dtypes(spec: NetSpec, bounds: FixedBounds) -> List[torch.dtype]:
    """Per synapse, the cheapest float type whose sums of its mantissas are exact (:func:`_exact_dtype`)."""
    return [_exact_dtype(r, INPUT_MAX if s.graded else m, s.target)
            for r, s, m in zip(bounds.row_sums, spec.synapses, bounds.message_max)]


def fixed_arrays(spec: NetSpec, quantized: QuantizedNet, ops: FixedOps, device) -> FixedArrays:
    """The engine's :class:`FixedArrays` of ``quantized`` on ``device``."""
    bounds = FixedBounds(spec, quantized)
    weights = [torch.as_tensor(np.asarray(w, np.float64), dtype=d, device=device)
               for w, d in zip(quantized.mantissas, synapse_dtypes(spec, bounds))]
    layers = {k: replace(q, bias_int=torch.as_tensor(q.bias_int, device=device)) for k, q in quantized.layers.items()}
    return FixedArrays(quantized, weights, layers, ops, bounds)


class TorchEngine:
    """Runs ``spec`` batched in torch (see the module docstring).

    Args:
        spec: the network description (:func:`~ilif_deploy.converters.lava.netspec.build_netspec` or a ``.lava.h5``).
        mode: "fixed" or "float".
        fixed: the fixed-point format (default :class:`~.fixed.FixedPoint`); ignored when ``quantized`` is given.
        quantized: the fixed-point network (e.g. the mantissas stored in a ``.lava.h5``).
        device: any torch device.
        compile: fixed mode: fuse each neuron layer's loop over the steps with ``torch.compile`` (needs a
            C++ compiler on CPU; seconds of compiling per layer shape first).  Integer arithmetic is exact,
            so the fused kernel gives the same integers as eager mode (tests/test_fixed_point.py).
    """

    def __init__(self, spec: NetSpec, mode: str = "fixed", fixed: Optional[FixedPoint] = None,
                 quantized: Optional[QuantizedNet] = None, device="cpu", compile: bool = False):
        if mode not in MODES:
            raise UserError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if spec.timesteps < 1:
            raise UserError("the network description has no number of time steps T")
        (ENGINE_FIXED if mode == "fixed" else ENGINE_FLOAT).check(spec.neuron_views())
        self.spec, self.mode, self.device = spec, mode, torch.device(device)
        self.quantized = (quantized or quantize_spec(spec, fixed)) if mode == "fixed" else None
        self.compile = bool(compile) and mode == "fixed"
        dev = dict(device=self.device)
        self.incoming = {lay.name: spec.incoming_indexed(lay.name) for lay in spec.layers + [spec.readout]}
        self.recurrent = {k: [(i, s) for i, s in v if s.recurrent] for k, v in self.incoming.items()}
        self.bias = {lay.name: torch.as_tensor(np.asarray(lay.bias, np.float64), **dev)
                     for lay in spec.layers + [spec.readout]}
        if mode == "fixed":
            luts = torch_lut(self.quantized.fp.frac_bits, self.device)
            # one table for every layer, closed over: traceable by torch.compile
            ops = replace(torch_fixed_ops(), table=lambda _, idx: lut_lookup(luts, idx))
            self.fixed = fixed_arrays(spec, self.quantized, ops, self.device)
            self.weights = self.fixed.weights
            # a layer proven in range steps in int32 (half the bytes of int64): its bias once in that dtype
            self.bias_int32 = {k: q.bias_int.to(torch.int32) for k, q in self.fixed.layers.items()}
        else:
            self.fixed = None
            self.weights = [torch.as_tensor(np.asarray(s.weight, np.float64), **dev) for s in spec.synapses]

    def _synapse(self, i: int, s: Synapse, src: torch.Tensor, fixed: Optional[FixedArrays] = None) -> torch.Tensor:
        """The current of synapse ``i`` from source values ``[B, *in_shape]`` (float64 in float mode; exact
        integers in float32 or float64 in fixed mode, with the weights of ``fixed``)."""
        w, b = (fixed.weights if fixed is not None else self.weights)[i], src.shape[0]
        src = src.to(w.dtype)
        if s.kind == "conv":
            return conv2d(src, w, None, s.stride, s.padding, s.dilation, s.groups)
        flat = src.reshape(b, -1)
        out = flat @ w.T if s.kind == "dense" else flat * w
        return out.reshape(b, *s.out_shape)

    def _current(self, i: int, s: Synapse, src: torch.Tensor, wraps: Dict[str, torch.Tensor],
                 bounds: Dict[int, float], fixed: Optional[FixedArrays]) -> torch.Tensor:
        """Synapse ``i``'s current; in fixed mode as integers (int64; exact-integer float64 when ``fixed`` is
        differentiable), wrapped (and counted) as Lava's connection process does wherever ``bounds`` (the
        largest |sum| each synapse can produce on this batch) does not rule a wrap out."""
        cur = self._synapse(i, s, src, fixed)
        if fixed is not None:
            cur = cur.to(torch.float64 if fixed.differentiable else torch.int64)
            bits = CONV_BITS if s.kind == "conv" else DENSE_BITS
            if bounds[i] >= 2 ** (bits - 1) - 1:
                cur, n = wrap(cur, bits)
                wraps[s.target] = wraps[s.target] + n
            shift = fixed.quantized.post_shifts[i]
            if shift:  # Lava's Dense weight_exp < 0: an arithmetic right shift of the (wrapped) sum
                cur = fixed.ops.shift(cur, -shift)
        return cur

    def _port(self, name: str, total: torch.Tensor, wraps: Dict[str, torch.Tensor], bounds: Dict[int, float],
              fixed: Optional[FixedArrays]):
        """What the neuron's port makes of the summed current: in fixed mode an int32 wrap (counted), unless
        the synapses' bounds rule it out."""
        if fixed is not None and sum(bounds[i] for i, _ in self.incoming[name]) >= 2 ** (PORT_BITS - 1) - 1:
            total, n = wrap(total, PORT_BITS)
            wraps[name] = wraps[name] + n
        return total

    def _input_current(self, name: str, values: Dict[str, torch.Tensor], wraps: Dict[str, torch.Tensor],
                       bounds: Dict[int, float], fixed: Optional[FixedArrays]):
        """The summed feed-forward input of ``name`` over all steps (a recurrent synapse's current is added
        step by step, and the port's wrap after it)."""
        total = None
        for i, s in self.incoming[name]:
            if not s.recurrent:
                cur = self._current(i, s, values[s.source], wraps, bounds, fixed)
                total = cur if total is None else total + cur
        return total if self.recurrent[name] else self._port(name, total, wraps, bounds, fixed)

    def _feedback(self, name: str, wraps: Dict[str, torch.Tensor], bounds: Dict[int, float],
                  fixed: FixedArrays):
        """For a fixed-point layer with a recurrent synapse: its port's input at a step from the feed-forward
        part ``a`` and the spikes of the step before (``None`` at the first step), wrapped as the port does."""
        def feedback(a: torch.Tensor, before: Optional[torch.Tensor]) -> torch.Tensor:
            for i, s in (self.recurrent[name] if before is not None else []):
                a = a + self._current(i, s, before, wraps, bounds, fixed)
            return self._port(name, a, wraps, bounds, fixed)
        return feedback

    def _float_sequence(self, lay, a_in: torch.Tensor) -> torch.Tensor:
        """A float neuron layer over its feed-forward input ``a_in`` ``[T, B, ...]`` (float64), in the Lava
        process's order: (input + recurrent input of the step before) + bias, rounded to float32, through
        the synaptic current when it has one, then the shared float step.  Spikes ``[T, B, ...]`` (uint8)."""
        state = zero_state(a_in[0].to(torch.float32), TORCH_INFERENCE_OPS)
        syn = torch.zeros_like(a_in[0], dtype=torch.float32)
        lam = torch.tensor(lay.syn_lam, dtype=torch.float32)
        prev, out = None, []
        delta = lay.delta
        bias = self.bias[lay.name].to(torch.float32)
        for t in range(a_in.shape[0]):
            a = a_in[t]
            for i, s in (self.recurrent[lay.name] if t > 0 else []):
                a = a + self._synapse(i, s, prev)
            if delta:  # lava's SigmaDelta: the sigma sums the input, the bias comes after it
                x = a.to(torch.float32)
                if lay.syn_lam != 0.0:
                    syn = syn + x
                    x = syn
                x = x + bias
            else:
                x = (a + self.bias[lay.name]).to(torch.float32)
                if lay.syn_lam != 0.0:
                    syn = lam * syn + x
                    x = syn
            rec = ilif_step(x, state, lay.params, TORCH_INFERENCE_OPS)
            state, prev = rec.state, rec.spikes
            out.append(rec.spikes if delta else rec.spikes.to(spike_dtype(lay.params.multi_spike)))
        return torch.stack(out)

    @torch.no_grad()
    def run(self, x: torch.Tensor, record: bool = True) -> EngineResult:
        """Run a batch ``x`` ``[T, B, *input_shape]`` (float units) from zero state."""
        return self.forward(x, record)

    def forward(self, x: torch.Tensor, record: bool = True, fixed: Optional[FixedArrays] = None) -> EngineResult:
        """:meth:`run` (without torch.no_grad), in fixed mode with the arrays ``fixed`` (default: the engine's
        own).  Fine-tuning passes differentiable ones: the same operations in the same order, on exact-integer
        float64 values that carry gradients (spikes come back as floats then, and the output keeps its graph)."""
        spec = self.spec
        fixed = (fixed or self.fixed) if self.mode == "fixed" else None
        grad = fixed is not None and fixed.differentiable
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
        if fixed is not None:
            ints, saturated = quantize_input(x.to(torch.float64), fixed.quantized.fp, torch)
            bounds, in_range = fixed.bounds.batch(float(ints.abs().max()) if ints.numel() else 0.0)
            layers = {k: replace(q, in_range=in_range[k]) for k, q in fixed.layers.items()}
        else:
            bounds = {}
        # layer by layer, all T steps of a synapse in one call (between layers the network is feed-forward: a
        # layer's input at step t needs only its sources at step t), then the neuron's loop over t (which adds
        # a recurrent synapse's current step by step)
        # a network with delta encoders runs its pre-fill (NetSpec.prefill): P steps before the sample, on which
        # a layer at depth d runs its last d - 1 on what reached it; the steps are rows, the sample's from row P on
        P = spec.prefill
        xin = (ints if fixed is not None else x).to(torch.float64)
        if P:
            xin = torch.cat([xin.new_zeros((P,) + tuple(xin.shape[1:])), xin])
        R = P + T
        values = {INPUT: xin.reshape(R * B, *spec.input_shape)}
        spikes = {}
        for lay in spec.layers:
            a_in = self._input_current(lay.name, values, wraps, bounds, fixed).reshape(R, B, *lay.shape)
            start = P - (lay.depth - 1) if P else 0
            a_in = a_in[start:]
            if fixed is not None:
                layer = layers[lay.name]
                if not layer.in_range and a_in.numel():  # what this batch actually sends may prove it
                    lo, hi = torch.aminmax(a_in.detach())
                    layer = replace(layer, in_range=fixed.bounds.in_range_on(
                        lay.name, float(max(-lo, hi)), bounds))
                feedback = self._feedback(lay.name, wraps, bounds, fixed) if self.recurrent[lay.name] else None
                state = zero_fixed_state((B, *lay.shape), torch, device=self.device)
                if grad:
                    state = ILIFState(*(v.to(torch.float64) for v in state))
                elif layer.in_range and feedback is None and fixed is self.fixed:
                    # every value of its step is below 2**23 (its decays' products are made in float64)
                    a_in, layer = a_in.to(torch.int32), replace(layer, bias_int=self.bias_int32[lay.name])
                    state = ILIFState(*(v.to(torch.int32) for v in state))
                run = _compiled_fixed_sequence() if self.compile and feedback is None and not grad else fixed_sequence
                s_all, n = run(a_in, state, layer, fixed.ops, feedback, grad)
                over[lay.name] = over[lay.name] + n
            else:
                s_all = self._float_sequence(lay, a_in)
            if start:  # nothing was sent before the layer ran
                s_all = torch.cat([s_all.new_zeros((start,) + tuple(s_all.shape[1:])), s_all])
            # 0/1, counts and a delta encoder's messages (< 2**24): exact in float32
            values[lay.name] = s_all.reshape(R * B, *lay.shape).to(torch.float32)
            s_all = s_all[P:]
            if record:  # a delta encoder's messages in float units, as the runtime sends them
                spikes[lay.name] = s_all if fixed is None or not lay.delta else \
                    s_all.to(torch.float64) * 2.0 ** -fixed.quantized.fp.frac_bits
        out = self._input_current(OUTPUT, values, wraps, bounds, fixed).reshape(R, B, *spec.readout.shape)
        if spec.readout.syn_lam:  # over the pre-fill too: what reached the readout before the sample counts
            if grad:
                out = integrate_readout(out, spec.readout.syn_lam, True, decay=fixed.ops.decay, stack=torch.stack)
            else:
                out = torch.from_numpy(integrate_readout(out.cpu().numpy(), spec.readout.syn_lam,
                                                         fixed is not None)).to(out.device)
        out = out[P:]
        if fixed is not None:
            out = out.to(torch.float64) * fixed.quantized.readout_scale
        output = out + self.bias[OUTPUT]
        return EngineResult(output=output, spikes=spikes,
                            overflows={k: int(v) for k, v in over.items()} if fixed is not None else {},
                            synapse_wraps={k: int(v) for k, v in wraps.items()} if fixed is not None else {},
                            input_saturated=int(saturated) if fixed is not None else 0)


def overflow_risks(fb: FixedBounds, input_max: float) -> List[str]:
    """Before running: per target layer, whether max |input| x sum |mantissa| can exceed what Lava's
    accumulators hold (int32 Dense/Sparse, 24-bit Conv), where a sum wraps.  One line per
    layer at risk; an empty list proves that no synaptic sum can wrap on inputs up to ``input_max``
    (float units).  (State saturation is always counted by the step itself, so it is not warned of.)"""
    bounds, _ = fb.batch(min(input_max * 2 ** fb.quantized.fp.input_frac_bits, INPUT_MAX))
    out = []
    for name in [lay.name for lay in fb.spec.layers] + [OUTPUT]:
        worst = max((bounds[i] / 2 ** ((CONV_BITS if s.kind == "conv" else DENSE_BITS) - 1)
                     for i, s in fb.incoming[name]), default=0.0)
        if worst >= 1.0:
            out.append(f"layer '{name}': synaptic sums can reach {worst:.3g}x what Lava's accumulator holds "
                       f"(such sums wrap; counted per layer in synapse_wraps)")
    return out


def fixed_sequence(a_in: torch.Tensor, state, layer, ops, feedback=None, keep_dtype: bool = False):
    """One fixed-point layer over ``a_in`` ``[T, B, ...]``: spikes ``[T, B, ...]`` (uint8; with ``keep_dtype``
    as the step made them: fine-tuning's floats) and saturations.  ``feedback(a, spikes_before)``, for a
    recurrent layer, makes the neuron's input of each step."""
    out, over, before = [], 0, None
    syn = torch.zeros_like(a_in[0]) if layer.decay_syn else None
    for t in range(a_in.shape[0]):
        step = ilif_step_fixed(a_in[t] if feedback is None else feedback(a_in[t], before), state, layer, ops, syn)
        state, syn, before, over = step.state, step.syn, step.spikes, over + step.overflows
        out.append(step.spikes if keep_dtype else step.spikes.to(spike_dtype(layer.multi_spike or bool(layer.delta))))
    return torch.stack(out), over


def spike_dtype(multi_spike: bool) -> torch.dtype:
    """How a layer's spikes are kept: 0/1 in a byte, a multi-spike layer's counts (or a delta encoder's integer
    messages) in 32 bits."""
    return torch.int32 if multi_spike else torch.uint8


@functools.lru_cache(maxsize=None)
def _compiled_fixed_sequence():
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)  # one per layer kind
    return torch.compile(fixed_sequence, dynamic=False)


__all__ = ["TorchEngine", "EngineResult", "FixedArrays", "FixedBounds", "fixed_arrays", "overflow_risks", "MODES"]
