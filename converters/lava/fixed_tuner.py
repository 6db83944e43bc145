"""The trainable fixed-point network of fine-tuning (:mod:`.finetune` runs the training): a network trained
through the very forward pass that Lava's ``fixed_pt`` models and the torch engine compute, so that what fixed
point costs in accuracy is trained back.

The forward is :meth:`.engine.TorchEngine.forward` -- the engine itself, not an imitation -- with differentiable
:class:`~.engine.FixedArrays`: every training step quantises the current float weights, biases and (PLIF) decays
with the one quantiser the export uses (:func:`.fixed.quantize_spec`), so the integers are those an export of the
weights would give, and the neuron is :func:`.fixed.ilif_step_fixed` run on exact-integer float64 tensors with
straight-through ops (:func:`ste_fixed_ops`):

- rounding (weights, biases, decays, the 12-bit decay products, shifts) passes its gradient straight through;
- the threshold (``fire``) is a step forward and the authors' surrogate backward, the derivative of
  ``sigmoid(alpha * (v - v_th))`` (alpha = 4) in float units;
- the MPIU's sigmoid table is read forward and differentiated as the sigmoid it tabulates;
- saturation (``clip``) passes gradients inside the range only.

What is trained is the network as Lava runs it (:class:`~.netspec.NetSpec`: BatchNorm folded, pooling merged into
its synapses): its synapse weights, the neuron layers' biases (per channel where the bias is, as a folded
BatchNorm's) and learned decays.  The result (:func:`tuned_graph`) is an IR graph of that network whose weights lie
exactly on their fixed-point grid, so exporting it (``--target lava``, the torch engine) gives the trained integers
again, bit for bit; saved as ``.ir.npz`` it reads like any other model file.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import List, Optional, Tuple

import numpy as np
import torch

from ilif_deploy.ir.graph import Graph

from .engine import FixedArrays, FixedBounds, TorchEngine, synapse_dtypes
from .fixed import (DECAY_ONE, LUT_STEPS_PER_UNIT, FixedOps, FixedPoint, QuantizedNet, layer_frac_bits, native_format,
                    quantize_spec, sigmoid_lut, source_frac_bits)
from .netspec import OUTPUT, NetSpec
from .spec_graph import per_channel, spec_graph

#: the authors' surrogate: the derivative of sigmoid(alpha x) (modules/neuron.py, alpha = 4)
DEFAULT_ALPHA = 4.0


def _ste(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` forward, the gradient of ``like`` backward (a straight-through estimator)."""
    return like + (value - like).detach()


def ste_fixed_ops(frac_bits: int, alpha: float = DEFAULT_ALPHA, device="cpu") -> FixedOps:
    """The integer ops of :func:`.fixed.ilif_step_fixed` on float64 tensors holding exact integers, with
    gradients: the same values as :func:`.fixed.torch_fixed_ops` (every intermediate stays below 2**53, so
    float64 is exact), straight-through rounding, the sigmoid surrogate at the threshold (state LSB units:
    one float unit is ``2**frac_bits`` LSBs)."""
    one = float(2 ** frac_bits)
    lut = torch.tensor(sigmoid_lut(frac_bits), dtype=torch.float64, device=device)
    z = (torch.arange(lut.numel(), dtype=torch.float64, device=device) - lut.numel() // 2 + 0.5) / LUT_STEPS_PER_UNIT
    sig = torch.sigmoid(z)
    # d table / d index: the sigmoid's slope per bin (1/64 float unit) in state LSBs
    slope = sig * (1 - sig) * one / LUT_STEPS_PER_UNIT

    def decay(v, d):
        y = v * d / DECAY_ONE
        return _ste(torch.trunc(y), y)

    def shift(x, e: int):
        y = x * float(2.0 ** e)
        return y if e >= 0 else _ste(torch.floor(y), y)

    def fire(v, vth, strict: bool):
        s = torch.sigmoid(alpha * (v - vth) / one)
        return _ste(((v > vth) if strict else (v >= vth)).to(v.dtype), s)

    def count(v, vth):
        y = torch.clamp(v, min=0) / vth
        return _ste(torch.floor(y), y)

    def table(_layer, idx):
        i = idx.detach().to(torch.int64)
        return lut[i] + slope[i] * (idx - idx.detach())

    return FixedOps(decay=decay, clip=torch.clamp, relu=lambda x: torch.clamp(x, min=0),
                    table=table, count=count, fire=fire, shift=shift)


def _shifts(spec: NetSpec, quantized: QuantizedNet) -> List[int]:
    """Per synapse, the power of two from float units to state LSBs before the layer's exponent (as
    :func:`.fixed.quantize_weights` computes it)."""
    fp, params = quantized.fp, {lay.name: lay.params for lay in spec.layers + [spec.readout]}
    return [layer_frac_bits(params[s.target], fp) - source_frac_bits(s, fp) + p
            for s, p in zip(spec.synapses, quantized.post_shifts)]


def _exponents(spec: NetSpec, quantized: QuantizedNet) -> List[int]:
    """Per synapse, its target layer's ``a_exp``."""
    return [quantized.readout_exp if s.target == OUTPUT else quantized.layers[s.target].a_exp for s in spec.synapses]


def _with_lam(params, lam: float):
    """``params`` with membrane decay ``lam`` (and SpikingJelly's charge gain that goes with it)."""
    kw = {"lam": float(lam)}
    if params.charge_gain is not None:
        kw["charge_gain"] = 1.0 - float(lam)
    elif params.charge_tau is not None:
        kw["charge_tau"] = 1.0 / (1.0 - float(lam))
    return replace(params, **kw)


def _channels_to(per_channel_values: torch.Tensor, shape) -> torch.Tensor:
    """One value per channel (first axis) broadcast over a layer of ``shape``."""
    return per_channel_values.reshape((-1,) + (1,) * (len(shape) - 1)).expand(tuple(shape))


class FixedTuner(torch.nn.Module):
    """The trainable network: one parameter per synapse weight (a sparse synapse's per channel), per neuron
    layer's bias (per channel where it is constant over a channel; else held) and per learned decay (its logit),
    in float units, float64.  :meth:`forward` is the engine's fixed-point forward with these values quantised.

    Args:
        spec: the network as Lava runs it.
        fixed: the fixed-point format (default: the file's, else :class:`~.fixed.FixedPoint`).
        alpha: the surrogate's steepness (the authors' sigmoid: 4).
        device: torch device.
        thresholds: train each neuron layer's threshold too (as ``log v_th``).
    """

    def __init__(self, spec: NetSpec, fixed: Optional[FixedPoint] = None, alpha: float = DEFAULT_ALPHA,
                 device="cpu", thresholds: bool = False):
        super().__init__()
        spec_graph(spec)  # a network whose result could not be written back is refused before any training
        self.spec, self.device = spec, torch.device(device)
        self.fp = fixed or native_format(spec.metadata) or FixedPoint()
        self.engine = TorchEngine(spec, "fixed", self.fp, device=self.device)
        self.ops = ste_fixed_ops(self.fp.frac_bits, alpha, self.device)
        dev = dict(dtype=torch.float64, device=self.device)
        self.weights = torch.nn.ParameterList()
        #: per synapse: whether it is trained (a max-pool's ones are not: its form is its meaning)
        self.trained = [self._kind(s) != "maxpool" for s in spec.synapses]
        for s in spec.synapses:
            # a shortcut's gain per channel (spec_graph above refused one that differs within a channel)
            w = per_channel(np.asarray(s.weight).reshape(s.in_shape)) if s.kind == "sparse" else s.weight
            self.weights.append(torch.nn.Parameter(torch.as_tensor(np.asarray(w, np.float64), **dev),
                                                   requires_grad=self.trained[-1]))
        self.biases = torch.nn.ParameterDict()
        self.decays = torch.nn.ParameterDict()
        self.thresholds = torch.nn.ParameterDict()
        for i, lay in enumerate(spec.layers):
            if lay.kind != "neuron":
                continue
            per = per_channel(lay.bias)
            if per is not None:
                self.biases[str(i)] = torch.nn.Parameter(torch.as_tensor(per, **dev))
            if lay.params.learned_decay and 0.0 < lay.params.lam < 1.0:
                self.decays[str(i)] = torch.nn.Parameter(torch.tensor(math.log(lay.params.lam / (1 - lay.params.lam)),
                                                                      **dev))
            if thresholds:
                self.thresholds[str(i)] = torch.nn.Parameter(torch.tensor(math.log(lay.params.v_th), **dev))

    def _kind(self, s) -> str:
        return "readout" if s.target == OUTPUT else self.spec.layer(s.target).kind

    # ------------------------------------------------------------------ the float values now
    def _weight(self, i: int) -> torch.Tensor:
        s, w = self.spec.synapses[i], self.weights[i]
        return _channels_to(w, s.in_shape).reshape(-1) if s.kind == "sparse" else w

    def _bias(self, i: int) -> Optional[torch.Tensor]:
        return _channels_to(self.biases[str(i)], self.spec.layers[i].shape) if str(i) in self.biases else None

    def _lam(self, i: int) -> Optional[torch.Tensor]:
        return torch.sigmoid(self.decays[str(i)]) if str(i) in self.decays else None

    def _vth(self, i: int) -> Optional[torch.Tensor]:
        if str(i) not in self.thresholds:
            return None
        floor = self.spec.layers[i].params.v_min
        vth = torch.exp(self.thresholds[str(i)])
        return vth if floor is None else torch.clamp(vth, min=floor + 2.0 ** -self.fp.frac_bits)

    def _params(self, i: int):
        """Layer ``i``'s neuron parameters with the current learned decay and threshold."""
        params, lam, vth = self.spec.layers[i].params, self._lam(i), self._vth(i)
        if lam is not None:
            params = _with_lam(params, float(lam.detach()))
        return params if vth is None else replace(params, v_th=float(vth.detach()))

    def current_spec(self) -> NetSpec:
        """The network with the current float values (numpy, detached): what an export of them would be."""
        synapses = [replace(s, weight=self._weight(i).detach().cpu().numpy()) for i, s in enumerate(self.spec.synapses)]
        layers = []
        for i, lay in enumerate(self.spec.layers):
            b = self._bias(i)
            layers.append(replace(lay, bias=lay.bias if b is None else b.detach().cpu().numpy().copy(),
                                  params=self._params(i)))
        return replace(self.spec, synapses=synapses, layers=layers, quantized=None)

    # ------------------------------------------------------------------ the forward
    def arrays(self) -> FixedArrays:
        """Differentiable :class:`~.engine.FixedArrays` of the current values: the integers of
        :func:`.fixed.quantize_spec` (the export's quantiser) carrying straight-through gradients."""
        spec = self.current_spec()
        q = quantize_spec(spec, self.fp)
        bounds = FixedBounds(spec, q)
        top = 2 ** (self.fp.weight_bits - 1) - 1
        weights = []
        for i, (m, k, e, dt) in enumerate(zip(q.mantissas, _shifts(spec, q), _exponents(spec, q),
                                              synapse_dtypes(spec, bounds))):
            mant = torch.as_tensor(np.asarray(m, np.float64), dtype=torch.float64, device=self.device)
            if self.trained[i]:
                # mantissa = 2 round(w 2**(k - e - 1)) (e: the layer's a_exp): slope 2**(k - e) inside the range
                inside = (mant.abs() <= 2 * top).to(torch.float64)
                mant = _ste(mant, self._weight(i).reshape(mant.shape) * float(2.0 ** (k - e)) * inside)
            weights.append(mant.to(dt))
        def integers(value):  # the quantiser's integers as float64 on the device
            return torch.as_tensor(np.asarray(value, np.float64), dtype=torch.float64, device=self.device)

        layers = {}
        for i, lay in enumerate(spec.layers):
            fl = q.layers[lay.name]
            one = float(2 ** fl.frac_bits)
            b, lam, vth = self._bias(i), self._lam(i), self._vth(i)
            kw = {"bias_int": integers(fl.bias_int) if b is None else _ste(integers(fl.bias_int), b * one)}
            if lam is not None:
                kw["decay_lam"] = _ste(integers(fl.decay_lam), lam * DECAY_ONE)
                kw["decay_in"] = _ste(integers(fl.decay_in), (1 - lam) * DECAY_ONE)
            if vth is not None:
                kw["vth_int"] = _ste(integers(fl.vth_int), vth * one)
            layers[lay.name] = replace(fl, **kw)
        return FixedArrays(q, weights, layers, self.ops, bounds, differentiable=True)

    def forward(self, x: torch.Tensor, record: bool = False):
        """The engine's fixed-point run of ``x`` ``[T, B, *input]`` (float units) with gradients: an
        :class:`~.engine.EngineResult` whose ``output`` ``[T, B, classes]`` keeps its graph."""
        return self.engine.forward(x, record=record, fixed=self.arrays())

    def quantized(self) -> Tuple[QuantizedNet, NetSpec]:
        """The integers of the current values and the float network they were quantised from."""
        spec = self.current_spec()
        return quantize_spec(spec, self.fp), spec


def snapped_spec(spec: NetSpec, quantized: QuantizedNet) -> NetSpec:
    """``spec`` with every float value put exactly on its fixed-point grid (weights = mantissa x 2**(exponent),
    biases = bias_int / 2**frac_bits, thresholds = vth_int / 2**frac_bits, decays = d / 4096): the same integers
    come back from :func:`.fixed.quantize_spec` (the largest mantissa of a layer keeps its exponent: training
    re-chose it every step, so it is above half the range), and every value is exact in float32."""
    synapses = []
    for s, m, k, e in zip(spec.synapses, quantized.mantissas, _shifts(spec, quantized), _exponents(spec, quantized)):
        synapses.append(replace(s, weight=np.asarray(m, np.float64) / 2 * 2.0 ** (e + 1 - k)))
    layers = []
    for lay in spec.layers:
        fl = quantized.layers[lay.name]
        params = replace(lay.params, v_th=fl.vth_int / 2.0 ** fl.frac_bits) if lay.kind == "neuron" else lay.params
        if params.learned_decay:
            params = _with_lam(params, fl.decay_lam / DECAY_ONE)
        layers.append(replace(lay, bias=np.asarray(fl.bias_int, np.float64) / 2.0 ** fl.frac_bits, params=params))
    return replace(spec, synapses=synapses, layers=layers, quantized=None)


def tuned_graph(tuner: FixedTuner, source_metadata: Optional[dict] = None, readout: str = "sum") -> Graph:
    """The fine-tuned network as an IR graph on its fixed-point grid, with the format recorded
    (``metadata["fixed_point"]``: exports and simulations use it by default)."""
    q, spec = tuner.quantized()
    meta = {k: v for k, v in (source_metadata or {}).items() if k not in ("fixed_point", "torch_module", "arch")}
    fp = tuner.fp
    meta["fixed_point"] = {"frac_bits": fp.frac_bits, "input_frac_bits": fp.input_frac_bits,
                           "weight_bits": fp.weight_bits, "delta_state_exp": fp.delta_state_exp,
                           "from": "fixed-point fine-tuning (ilif-finetune)"}
    return spec_graph(snapped_spec(spec, q), readout, meta)


def same_integers(a: QuantizedNet, b: QuantizedNet) -> List[str]:
    """Where two fixed-point networks differ (empty: the same integers everywhere)."""
    out = []
    for i, (x, y) in enumerate(zip(a.mantissas, b.mantissas)):
        if not np.array_equal(np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)):
            out.append(f"synapse {i}: mantissas")
    if a.readout_exp != b.readout_exp:
        out.append("readout exponent")
    for name, la in a.layers.items():
        lb = b.layers.get(name)
        if lb is None:
            out.append(f"layer {name}: missing")
            continue
        for f in ("a_exp", "vth_int", "decay_lam", "decay_u", "decay_i", "decay_syn", "decay_in"):
            if getattr(la, f) != getattr(lb, f):
                out.append(f"layer {name}: {f} {getattr(la, f)} != {getattr(lb, f)}")
        if not np.array_equal(np.broadcast_to(la.bias_int, lb.bias_int.shape) if np.ndim(la.bias_int) else la.bias_int,
                              lb.bias_int):
            out.append(f"layer {name}: bias")
    return out


__all__ = ["FixedTuner", "ste_fixed_ops", "snapped_spec", "spec_graph", "tuned_graph", "same_integers",
           "DEFAULT_ALPHA"]


__all__ = ["FixedTuner", "ste_fixed_ops", "snapped_spec", "tuned_graph", "same_integers", "DEFAULT_ALPHA"]
