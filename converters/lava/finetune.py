"""Fixed-point-aware fine-tuning: train a network through the very forward pass that Lava's ``fixed_pt`` models
and the torch engine compute, so that what fixed point costs in accuracy is trained back.

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

import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import numpy as np
import torch

from ilif_deploy.errors import GraphError, UserError
from ilif_deploy.ir.graph import Graph

from .engine import FixedArrays, FixedBounds, TorchEngine, synapse_dtypes
from .fixed import (DECAY_ONE, LUT_STEPS_PER_UNIT, FixedOps, FixedPoint, QuantizedNet, native_format, quantize_spec,
                    sigmoid_lut)
from .netspec import OUTPUT, NetSpec, build_netspec
from .spec_graph import per_channel, spec_graph

#: the authors' surrogate: the derivative of sigmoid(alpha x) (modules/neuron.py, alpha = 4)
DEFAULT_ALPHA = 4.0
CHECKPOINT_FORMAT = "ilif-deploy-finetune"


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
                    as_int=lambda x: x.to(torch.float64), table=table, count=count, fire=fire, shift=shift)


def _shifts(spec: NetSpec, quantized: QuantizedNet) -> List[int]:
    """Per synapse, the power of two from float units to state LSBs before the layer's exponent (as
    :func:`.fixed.quantize_weights` computes it)."""
    fp = quantized.fp
    return [fp.frac_bits - (fp.input_frac_bits if s.graded else 0) + p
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
            w = s.weight
            if s.kind == "sparse":
                per = per_channel(np.asarray(w).reshape(s.in_shape))
                if per is None:
                    raise GraphError(f"the shortcut into '{s.target}' scales neurons of one channel differently: "
                                     f"fine-tuning trains one gain per channel")
                w = per
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
        if s.kind == "sparse":
            return w.reshape((-1,) + (1,) * (len(s.in_shape) - 1)).expand(s.in_shape).reshape(-1)
        return w

    def _bias(self, i: int) -> Optional[torch.Tensor]:
        lay, b = self.spec.layers[i], self.biases[str(i)] if str(i) in self.biases else None
        if b is None:
            return None
        return b.reshape((-1,) + (1,) * (len(lay.shape) - 1)).expand(lay.shape)

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
    def arrays(self) -> Tuple[FixedArrays, NetSpec]:
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
        one = float(2 ** self.fp.frac_bits)
        layers = {}
        for i, lay in enumerate(spec.layers):
            fl = q.layers[lay.name]
            bias = torch.as_tensor(np.asarray(fl.bias_int, np.float64), dtype=torch.float64, device=self.device)
            b = self._bias(i)
            if b is not None:
                bias = _ste(bias, b * one)
            kw = {"bias_int": bias}
            lam = self._lam(i)
            if lam is not None:
                kw["decay_lam"] = _ste(torch.tensor(float(fl.decay_lam), dtype=torch.float64, device=self.device),
                                       lam * DECAY_ONE)
                kw["decay_in"] = _ste(torch.tensor(float(fl.decay_in), dtype=torch.float64, device=self.device),
                                      (1 - lam) * DECAY_ONE)
            vth = self._vth(i)
            if vth is not None:
                kw["vth_int"] = _ste(torch.tensor(float(fl.vth_int), dtype=torch.float64, device=self.device),
                                     vth * one)
            layers[lay.name] = replace(fl, **kw)
        return FixedArrays(q, weights, layers, self.ops, bounds, differentiable=True), spec

    def forward(self, x: torch.Tensor, record: bool = False):
        """The engine's fixed-point run of ``x`` ``[T, B, *input]`` (float units) with gradients: an
        :class:`~.engine.EngineResult` whose ``output`` ``[T, B, classes]`` keeps its graph."""
        arrays, _ = self.arrays()
        return self.engine.forward(x, record=record, fixed=arrays)

    def quantized(self) -> Tuple[QuantizedNet, NetSpec]:
        """The integers of the current values and the float network they were quantised from."""
        spec = self.current_spec()
        return quantize_spec(spec, self.fp), spec


def snapped_spec(spec: NetSpec, quantized: QuantizedNet) -> NetSpec:
    """``spec`` with every float value put exactly on its fixed-point grid (weights = mantissa x 2**(exponent),
    biases = bias_int / 2**frac_bits, thresholds = vth_int / 2**frac_bits, decays = d / 4096): the same integers
    come back from :func:`.fixed.quantize_spec` (the largest mantissa of a layer keeps its exponent: training
    re-chose it every step, so it is above half the range), and every value is exact in float32."""
    fp = quantized.fp
    synapses = []
    for s, m, k, e in zip(spec.synapses, quantized.mantissas, _shifts(spec, quantized), _exponents(spec, quantized)):
        synapses.append(replace(s, weight=np.asarray(m, np.float64) / 2 * 2.0 ** (e + 1 - k)))
    layers = []
    for lay in spec.layers:
        fl = quantized.layers[lay.name]
        params = replace(lay.params, v_th=fl.vth_int / 2.0 ** fp.frac_bits) if lay.kind == "neuron" else lay.params
        if params.learned_decay:
            params = _with_lam(params, fl.decay_lam / DECAY_ONE)
        layers.append(replace(lay, bias=np.asarray(fl.bias_int, np.float64) / 2.0 ** fp.frac_bits, params=params))
    return replace(spec, synapses=synapses, layers=layers, quantized=None)


def tuned_graph(tuner: FixedTuner, source_metadata: Optional[dict] = None, readout: str = "sum") -> Graph:
    """The fine-tuned network as an IR graph on its fixed-point grid, with the format recorded
    (``metadata["fixed_point"]``: exports and simulations use it by default)."""
    q, spec = tuner.quantized()
    meta = {k: v for k, v in (source_metadata or {}).items() if k not in ("fixed_point", "torch_module", "arch")}
    fp = tuner.fp
    meta["fixed_point"] = {"frac_bits": fp.frac_bits, "input_frac_bits": fp.input_frac_bits,
                           "weight_bits": fp.weight_bits, "from": "fixed-point fine-tuning (ilif-finetune)"}
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


# ---------------------------------------------------------------------------------------------------- training
@dataclass
class FineTuneResult:
    """What :func:`finetune` made: the fine-tuned ``graph`` (on its fixed-point grid; save it with
    ``graph.save(path)``), the ``tuner`` (its integers: ``tuner.quantized()``), one entry per epoch in ``history``
    (``loss``, ``train_accuracy`` of the fixed-point forward, ``accuracy`` on the evaluation data when given) and
    the evaluation data's fixed-point accuracy ``before`` and ``after`` fine-tuning (None without it)."""

    graph: Graph
    tuner: FixedTuner
    history: List[dict] = field(default_factory=list)
    before: Optional[float] = None
    after: Optional[float] = None
    #: the float network's accuracy on the evaluation data (Lava's float arithmetic: the torch engine, float mode)
    float_accuracy: Optional[float] = None
    #: wall-clock seconds of the training epochs run by this call (not evaluation)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        fp = self.tuner.fp
        return {"fixed_point": {"frac_bits": fp.frac_bits, "input_frac_bits": fp.input_frac_bits,
                                "weight_bits": fp.weight_bits},
                "accuracy": {"float": self.float_accuracy, "fixed_before": self.before, "fixed_after": self.after},
                "epochs": len(self.history), "seconds": self.seconds, "history": self.history}


def _as_spec(source, timesteps: Optional[int]) -> Tuple[NetSpec, Graph]:
    """``(NetSpec, Graph)`` of a model, a graph or a model file."""
    if isinstance(source, torch.nn.Module):
        from ilif_deploy.tracing import trace

        source = trace(source, timesteps=timesteps)
    elif not isinstance(source, Graph):
        from ilif_deploy.converters import open_graph

        source = open_graph(source, **({"timesteps": timesteps} if timesteps else {}))
    return build_netspec(source), source


def _dataset(data, graph: Graph, split: str):
    from ilif_deploy.data import Dataset, open_data

    if isinstance(data, Dataset):
        return data
    return open_data(data, input_shape=graph.input_shape, timesteps=graph.timesteps, split=split,
                     dataset=graph.metadata.get("dataset"))


@torch.no_grad()
def fixed_accuracy(tuner: FixedTuner, data, batch_size: int = 256, progress: bool = False,
                   mode: str = "fixed") -> float:
    """Top-1 accuracy (0..1) of the current network on ``data`` (a labelled Dataset) as the torch engine runs
    it in fixed point -- the engine itself, with the integers an export would have (``mode="float"``: the
    network as trained, in Lava's float arithmetic)."""
    q, spec = tuner.quantized()
    engine = TorchEngine(spec, mode, quantized=q if mode == "fixed" else None, device=tuner.device)
    right = 0
    for b in _batches(data, batch_size, spec.timesteps, progress, "evaluating"):
        pred = engine.run(b.x.to(tuner.device), record=False).output.sum(0).argmax(1).cpu().numpy()
        right += int((pred == b.y).sum())
    return right / len(data)


def _batches(data, batch_size: int, timesteps: int, progress: bool, what: str, order=None):
    """Batches of ``data`` (in the order of ``order``, a permutation of the batch indices), with a progress bar."""
    from tqdm import tqdm

    n = (len(data) + batch_size - 1) // batch_size
    order = range(n) if order is None else order
    for j in tqdm(order, total=n, desc=what, unit="batch", disable=not progress, leave=False):
        start = int(j) * batch_size
        yield from data.window(start, min(len(data), start + batch_size)).batches(batch_size, timesteps)


def _fingerprint(spec: NetSpec, fp: FixedPoint, settings: dict) -> str:
    """What a checkpoint must match to be resumed: the network's structure and initial values, the format and
    the training settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"fp": [fp.frac_bits, fp.input_frac_bits, fp.weight_bits], **settings,
                         "layers": [[lay.name, list(lay.shape)] for lay in spec.layers],
                         "synapses": [[s.source, s.target, s.kind, list(np.shape(s.weight))] for s in spec.synapses]},
                        sort_keys=True).encode())
    for s in spec.synapses:
        h.update(np.ascontiguousarray(s.weight, np.float64).tobytes())
    return h.hexdigest()


def _save_checkpoint(path, state: dict) -> None:
    from ilif_deploy.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path, fingerprint: str) -> dict:
    """A checkpoint of :func:`finetune`, checked as the bounded reader checks files (a regular file, a zip that
    declares no more than it is worth) and read with ``torch.load(weights_only=True)``; refused by name when it is
    another run's.  Not noted as an input: resuming reads the checkpoint the run then replaces, epoch by epoch (the
    CLI claims it as an output, so it can be neither the model nor the data)."""
    import zipfile
    from pathlib import Path

    from ilif_deploy.bounded import check_zip
    from ilif_deploy.errors import ModelFileError

    if not Path(path).is_file():  # a FIFO or device would block or never end: refused before it is opened
        raise ModelFileError(f"{path}: the checkpoint to resume from is not a regular file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a fine-tuning checkpoint (not a torch zip file)")
    check_zip(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file: one line, torch's reason by its kind
        raise ModelFileError(f"{path}: not a fine-tuning checkpoint torch can read safely ({type(e).__name__})") \
            from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: not an ilif-finetune checkpoint")
    if state.get("fingerprint") != fingerprint:
        raise ModelFileError(f"{path}: a checkpoint of another network, format or training settings (resume with "
                             f"the model, --weight-bits/--frac-bits, --lr, --batch-size, --epochs and --seed it was "
                             f"started with)")
    return state


def finetune(model_or_graph, data="digits", *, fixed: Optional[FixedPoint] = None, epochs: int = 30,
             lr: float = 3e-3, batch_size: int = 64, alpha: float = DEFAULT_ALPHA, device="cpu", eval_data=None,
             split: str = "train", timesteps: Optional[int] = None, checkpoint=None, resume: bool = False,
             seed: int = 0, thresholds: bool = False, progress: bool = True, on_epoch=None) -> FineTuneResult:
    """Fine-tune a trained network through its fixed-point forward pass (see the module docstring).

    Args:
        model_or_graph: a torch module, an IR :class:`~ilif_deploy.ir.graph.Graph`, or a model file (any kind
            ilif-deploy reads).
        data: labelled training data: a :class:`~ilif_deploy.data.Dataset` or a ``--data`` spec (its ``split``).
        fixed: the fixed-point format (:class:`~.fixed.FixedPoint`; default: the file's, else 16/8/8 bits).
        epochs: passes over ``data``; lr: Adam's learning rate (cosine-annealed over the epochs); batch_size:
            samples per step; alpha: the surrogate's steepness.
        device: torch device ("cpu", "cuda").
        eval_data: labelled data for the accuracy before, after and per epoch (a Dataset or spec; None: none).
        checkpoint: a file written (atomically) after every epoch; ``resume``: continue from it.
        seed: the batch order's seed.
        thresholds: also train each neuron layer's threshold (quantised to the state LSB like the rest).
        on_epoch: called with each epoch's history entry after its checkpoint is written.
    Returns:
        a :class:`FineTuneResult`.
    """
    from tqdm import tqdm

    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise UserError(f"fine-tuning needs epochs >= 0, batch size >= 1 and lr > 0 (got {epochs}, {batch_size}, "
                        f"{lr})")
    spec, graph = _as_spec(model_or_graph, timesteps)
    train = _dataset(data, graph, split)
    if train.labels is None:
        raise UserError(f"{train.name}: fine-tuning needs labels (--y-key)")
    evaluation = None if eval_data is None else _dataset(eval_data, graph, "test")
    tuner = FixedTuner(spec, fixed, alpha, device, thresholds)
    params = [p for p in tuner.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    gen = torch.Generator().manual_seed(int(seed))
    fingerprint = _fingerprint(spec, tuner.fp, {"lr": lr, "batch_size": batch_size, "epochs": epochs, "seed": seed,
                                                "alpha": alpha,  "train": [train.name, len(train)]})
    result = FineTuneResult(graph=graph, tuner=tuner)
    first = 0
    if resume and checkpoint is not None:
        state = _load_checkpoint(checkpoint, fingerprint)
        tuner.load_state_dict(state["tuner"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        first, result.before, result.float_accuracy = int(state["epoch"]), state.get("before"), \
            state.get("float_accuracy")
        result.history = [dict(h) for h in state["history"]]
    if evaluation is not None and result.before is None:
        result.before = fixed_accuracy(tuner, evaluation, progress=progress)
        result.float_accuracy = fixed_accuracy(tuner, evaluation, progress=progress, mode="float")
    n_batches = (len(train) + batch_size - 1) // batch_size
    bar = tqdm(range(first, epochs), initial=first, total=epochs, desc="fine-tuning", unit="epoch",
               disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        tuner.train()
        total = right = 0.0
        order = torch.randperm(n_batches, generator=gen)
        for b in _batches(train, batch_size, spec.timesteps, progress, f"epoch {epoch + 1}", order):
            x = b.x.to(tuner.device)
            logits = tuner(x).output.sum(0)
            y = torch.as_tensor(b.y, device=tuner.device)
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            right += int((logits.detach().argmax(1) == y).sum())
        sched.step()
        result.seconds += time.perf_counter() - started
        entry = {"epoch": epoch + 1, "loss": total / len(train), "train_accuracy": right / len(train)}
        if evaluation is not None:
            entry["accuracy"] = fixed_accuracy(tuner, evaluation)
        result.history.append(entry)
        bar.set_postfix({k: f"{v:.4f}" for k, v in entry.items() if k != "epoch"})
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch + 1,
                                          "tuner": tuner.state_dict(), "optimizer": opt.state_dict(),
                                          "scheduler": sched.state_dict(), "generator": gen.get_state(),
                                          "history": result.history, "before": result.before,
                                          "float_accuracy": result.float_accuracy})
        if on_epoch is not None:
            on_epoch(entry)
    if evaluation is not None:
        result.after = result.history[-1]["accuracy"] if result.history else result.before
    result.graph = tuned_graph(tuner, graph.metadata, graph.output_node.readout)
    differ = same_integers(tuner.quantized()[0], quantize_spec(build_netspec(result.graph)))
    if differ:  # the saved graph must export to the trained integers; a difference is a bug of ours
        raise RuntimeError(f"the fine-tuned graph does not quantise to the trained integers: {'; '.join(differ[:3])}")
    return result
