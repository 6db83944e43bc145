"""Node types of the intermediate graph.

Each node is a small dataclass checked when it is built (and again by ``Graph.validate``): required
parameters have no default, arrays are float32 numpy arrays of a fixed rank, pairs are two ints in
range, and every string that drives behaviour is one of a fixed set.  ``shape`` is the output shape
of *one sample at one time step* (no time, no batch dimension), channel first (``[C, H, W]`` for
images, ``[F]`` for vectors).  Time is implicit: the graph describes one step; neuron nodes carry
state from step to step.  :meth:`Node.to_dict` / :func:`node_from_dict` are the one serialised form,
used by every file format.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import ClassVar, Dict, List, Optional, Tuple

import numpy as np

from ..errors import GraphError
from ..neuron_step import ILIFParams

Shape = Tuple[int, ...]
Pair = Tuple[int, int]
ENCODINGS = ("direct", "sequence")
READOUTS = ("sum", "none")
AFFINE_SOURCES = ("batchnorm", "gain", "scale")


# ----------------------------------------------------------------------------- typed fields
# Each checked field carries ``check(value) -> coerced value`` in its metadata; it raises ValueError
# with what is wrong, which Node.check turns into a GraphError naming the node and the field.
def _typed(default, check):
    return field(default=default, metadata={"check": check})


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _need(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def array(ndim: int, optional: bool = False):
    """A finite float32 array of rank ``ndim`` (``None`` allowed only when ``optional``)."""
    def check(v):
        if v is None and optional:
            return None
        _need(v is not None, "is required")
        a = np.asarray(v)
        _need(a.dtype.kind in "fiub" and a.ndim == ndim, f"must be a {ndim}-d array, got {a.dtype} {list(a.shape)}")
        a = a.astype(np.float32, copy=False)
        _need(bool(np.isfinite(a).all()), "has non-finite values")
        return a
    return _typed(None if optional else MISSING, check)


def pair(default: Pair, minimum: int):
    def check(v):
        t = tuple(v) if isinstance(v, (tuple, list, np.ndarray)) else (v, v)
        _need(len(t) == 2 and all(_is_int(i) and i >= minimum for i in t), f"must be two integers >= {minimum}, "
                                                                            f"got {v!r}")
        return (int(t[0]), int(t[1]))
    return _typed(default, check)


def integer(default: int, minimum: int):
    def check(v):
        _need(_is_int(v) and v >= minimum, f"must be an integer >= {minimum}, got {v!r}")
        return int(v)
    return _typed(default, check)


def choice(default: str, options: Tuple[str, ...]):
    def check(v):
        _need(v in options, f"must be one of {', '.join(options)}, got {v!r}")
        return v
    return _typed(default, check)


def number(default=MISSING, minimum: Optional[float] = None):
    def check(v):
        _need(not isinstance(v, bool) and isinstance(v, (int, float, np.number)) and math.isfinite(v)
              and (minimum is None or v >= minimum),
              f"must be a finite number{'' if minimum is None else f' >= {minimum}'}, got {v!r}")
        return float(v)
    return _typed(default, check)


def _names(v):
    _need(isinstance(v, (tuple, list)) and all(isinstance(i, str) for i in v), f"must be a list of names, got {v!r}")
    return tuple(v)


def _flag(v):
    _need(isinstance(v, (bool, np.bool_)), f"must be true or false, got {v!r}")
    return bool(v)


@dataclass(eq=False)
class Node:
    """Base of all nodes.  ``name`` is unique in a graph (torch module path where there is one);
    every other field is keyword-only."""

    name: str
    shape: Shape = ()
    op: ClassVar[str] = "node"
    #: ops whose output is a linear function of their input (candidates for synaptic fusion)
    linear: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> "Node":
        """Coerce and check every field (called on construction and by ``Graph.validate``)."""
        if not isinstance(self.name, str) or not self.name:
            raise GraphError(f"a {self.op} node needs a non-empty name, got {self.name!r}")
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if shape is None or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
            raise GraphError(f"node '{self.name}' ({self.op}): shape must be positive integers, got {self.shape!r}")
        self.shape = tuple(int(s) for s in shape)
        for f in fields(self):
            if "check" in f.metadata:
                try:
                    setattr(self, f.name, f.metadata["check"](getattr(self, f.name)))
                except ValueError as e:
                    raise GraphError(f"node '{self.name}' ({self.op}): {f.name} {e}") from None
        return self

    def need(self, cond: bool, msg: str) -> None:
        if not cond:
            raise GraphError(f"node '{self.name}' ({self.op}): {msg}")

    def infer(self, in_shapes: List[Shape]) -> Shape:
        """Per-sample output shape given the inputs' shapes (one input passes through unchanged)."""
        self.need(len(in_shapes) >= 1, "has no input edge")
        self.need(len(in_shapes) == 1, f"expects exactly 1 input, has {len(in_shapes)}")
        return tuple(in_shapes[0])

    def attrs(self) -> dict:
        """Parameters that are not arrays (for the summary table)."""
        return {f.name: getattr(self, f.name) for f in fields(self)[2:]
                if not isinstance(getattr(self, f.name), np.ndarray) and getattr(self, f.name) is not None}

    def arrays(self) -> Dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}

    def to_dict(self) -> Tuple[dict, Dict[str, np.ndarray]]:
        """JSON-ready ``{"op", "name", "shape", "attrs"}`` and the node's arrays by field name."""
        attrs = {}
        for f in fields(self)[2:]:
            v = getattr(self, f.name)
            if v is not None and not isinstance(v, np.ndarray):
                attrs[f.name] = v.to_dict() if isinstance(v, ILIFParams) else list(v) if isinstance(v, tuple) else v
        return {"op": self.op, "name": self.name, "shape": list(self.shape), "attrs": attrs}, self.arrays()


def node_from_dict(entry: dict, arrays: Dict[str, np.ndarray]) -> Node:
    """Inverse of :meth:`Node.to_dict`; unknown ops and fields are refused by name."""
    if not isinstance(entry, dict) or not isinstance(entry.get("attrs", {}), dict):
        raise GraphError(f"malformed node entry {str(entry)[:80]!r}")
    name, op = entry.get("name"), entry.get("op")
    cls = NODE_TYPES.get(op)
    if cls is None:
        raise GraphError(f"node '{name}' has unknown op {op!r} (known: {', '.join(NODE_TYPES)})")
    known = {f.name: f for f in fields(cls)[2:]}
    kw = {**entry.get("attrs", {}), **arrays}
    if op in ("neuron", "recurrent_neuron") and "kind" in kw:
        _legacy_kind(kw)
    unknown = sorted(set(kw) - set(known))
    if unknown:
        raise GraphError(f"node '{name}' ({op}): unknown field(s) {unknown} (known: {sorted(known)})")
    for k, v in kw.items():
        if known[k].type in ("ILIFParams",):
            kw[k] = ILIFParams.from_dict(v)
        elif isinstance(v, list):
            kw[k] = tuple(v)
    try:
        return cls(name, tuple(entry.get("shape", ())), **kw)
    except TypeError as e:  # a required field is missing
        raise GraphError(f"node '{name}' ({op}): {e}") from None


def _legacy_kind(kw: dict) -> None:
    """Files written before the neuron families (graph format 1, NIR metadata 2, .lava.h5) name the source module
    in ``kind`` ("ilif", "lif", "iplif"); the parameters say everything but that IPLIF's decay was learned."""
    kind = kw.pop("kind")
    if kind not in ("ilif", "lif", "iplif"):
        raise GraphError(f"unknown neuron kind {kind!r} in a file of an older layout (known: ilif, lif, iplif)")
    if kind == "iplif" and isinstance(kw.get("params"), dict):
        kw["params"] = {**kw["params"], "learned_decay": True}


node = dataclass(eq=False, kw_only=True)


def _conv_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@node
class Input(Node):
    """Network input.  ``encoding="direct"``: the same analog frame at every step (the authors'
    evaluation); ``"sequence"``: a different frame per step (e.g. DVS events)."""

    encoding: str = choice("direct", ENCODINGS)
    op: ClassVar[str] = "input"

    def infer(self, in_shapes):
        self.need(not in_shapes, "an input node has no incoming edges")
        return self.shape


@node
class Output(Node):
    """Network output: per-step values ``[T, B, *shape]``; ``readout="sum"``: a classifier's logits
    are their sum over T."""

    readout: str = choice("sum", READOUTS)
    op: ClassVar[str] = "output"


@node
class Conv2d(Node):
    """2-D convolution; ``weight`` is ``[out, in/groups, kh, kw]``, ``bias`` ``[out]`` or None.

    ``folded`` names BatchNorm modules whose affine map was folded into ``weight``/``bias``
    (the energy module can still count them under the "BN not folded" convention)."""

    weight: np.ndarray = array(4)
    bias: Optional[np.ndarray] = array(1, optional=True)
    stride: Pair = pair((1, 1), 1)
    padding: Pair = pair((0, 0), 0)
    dilation: Pair = pair((1, 1), 1)
    groups: int = integer(1, 1)
    folded: Tuple[str, ...] = _typed((), _names)
    op: ClassVar[str] = "conv2d"
    linear: ClassVar[bool] = True

    def infer(self, in_shapes):
        x = super().infer(in_shapes)
        self.need(len(x) == 3, f"expects input [C, H, W], got {list(x)}")
        o, ig, kh, kw = self.weight.shape
        self.need(ig * self.groups == x[0], f"weight expects {ig * self.groups} input channels, input has {x[0]}")
        self.need(o % self.groups == 0, f"{o} output channels not divisible by groups={self.groups}")
        self.need(self.bias is None or self.bias.shape == (o,),
                  f"bias shape {None if self.bias is None else self.bias.shape} != ({o},)")
        h = _conv_out(x[1], kh, self.stride[0], self.padding[0], self.dilation[0])
        w = _conv_out(x[2], kw, self.stride[1], self.padding[1], self.dilation[1])
        self.need(h > 0 and w > 0, f"output would be empty for input {list(x)}")
        return (o, h, w)


@node
class Linear(Node):
    """Fully connected layer; ``weight`` is ``[out, in]``, ``bias`` ``[out]`` or None."""

    weight: np.ndarray = array(2)
    bias: Optional[np.ndarray] = array(1, optional=True)
    folded: Tuple[str, ...] = _typed((), _names)
    op: ClassVar[str] = "linear"
    linear: ClassVar[bool] = True

    def infer(self, in_shapes):
        x = super().infer(in_shapes)
        o, i = self.weight.shape
        self.need(len(x) == 1 and x[0] == i, f"weight expects input [{i}], got {list(x)}")
        self.need(self.bias is None or self.bias.shape == (o,), "bias shape does not match weight")
        return (o,)


@node
class Affine(Node):
    """Per-channel ``y = scale[c] * x + shift[c]`` (channel = first per-sample axis).

    ``source="batchnorm"``: a BatchNorm in eval mode; ``bn_stats`` then keeps its running mean,
    running var, weight and bias (rows of a ``[4, C]`` array) and ``eps``, so the reference runtime
    can apply torch's own batch-norm kernel and match the source module bit for bit; converters
    use ``scale``/``shift``.  ``"gain"``/``"scale"``: input gains and ``Scale`` nodes of NIR imports."""

    scale: np.ndarray = array(1)
    shift: np.ndarray = array(1)
    source: str = choice("batchnorm", AFFINE_SOURCES)
    bn_stats: Optional[np.ndarray] = array(2, optional=True)
    eps: float = number(0.0, minimum=0.0)
    op: ClassVar[str] = "affine"
    linear: ClassVar[bool] = True

    def infer(self, in_shapes):
        x = super().infer(in_shapes)
        c = x[0] if x else 0
        self.need(self.scale.shape == (c,) and self.shift.shape == (c,),
                  f"scale/shift must have one value per channel ({c}), have {self.scale.shape}/{self.shift.shape}")
        self.need(self.bn_stats is None or self.bn_stats.shape == (4, c), "bn_stats must be [4, channels]")
        self.need(self.bn_stats is None or bool((self.bn_stats[1].astype(np.float64) + self.eps > 0).all()),
                  "a BatchNorm running variance + eps must be > 0 (it divides by its square root)")
        return x


@node
class _Pool(Node):
    """What the pooling nodes share: window, stride and zero padding (pairs, H then W)."""

    kernel: Pair = pair((2, 2), 1)
    stride: Pair = pair((2, 2), 1)
    padding: Pair = pair((0, 0), 0)

    def infer(self, in_shapes):
        x = super().infer(in_shapes)
        self.need(len(x) == 3, f"expects input [C, H, W], got {list(x)}")
        d = getattr(self, "dilation", (1, 1))
        h = _conv_out(x[1], self.kernel[0], self.stride[0], self.padding[0], d[0])
        w = _conv_out(x[2], self.kernel[1], self.stride[1], self.padding[1], d[1])
        self.need(h > 0 and w > 0, f"output would be empty for input {list(x)}")
        return (x[0], h, w)


@node
class AvgPool2d(_Pool):
    count_include_pad: bool = _typed(True, _flag)
    op: ClassVar[str] = "avgpool2d"
    linear: ClassVar[bool] = True


@node
class SumPool2d(_Pool):
    op: ClassVar[str] = "sumpool2d"
    linear: ClassVar[bool] = True


@node
class MaxPool2d(_Pool):
    dilation: Pair = pair((1, 1), 1)
    op: ClassVar[str] = "maxpool2d"


@node
class AdaptiveAvgPool2d(Node):
    """Adaptive average pooling to ``output_size`` (a fixed linear map once the input size is known)."""

    output_size: Pair = pair((1, 1), 1)
    op: ClassVar[str] = "adaptive_avgpool2d"
    linear: ClassVar[bool] = True

    def infer(self, in_shapes):
        x = super().infer(in_shapes)
        self.need(len(x) == 3, f"expects input [C, H, W], got {list(x)}")
        return (x[0], *self.output_size)

    def averaging(self, size: int, axis: int) -> np.ndarray:
        """``[out, size]`` float64 matrix of the pooling along ``axis`` (0: H, 1: W) of an input ``size``
        long: torch's bins ``[floor(o*size/out), ceil((o+1)*size/out))``, each row one bin's mean.  The
        pooling is ``A_h @ X @ A_w.T`` per channel: overlapping bins and upsampling (out > size) included."""
        out = self.output_size[axis]
        a = np.zeros((out, size))
        for o in range(out):
            lo, hi = (o * size) // out, -(-((o + 1) * size) // out)
            a[o, lo:hi] = 1.0 / (hi - lo)
        return a


@node
class Flatten(Node):
    """Per-sample flatten of axes ``start_dim..end_dim`` (per-sample axes, no T/B)."""

    start_dim: int = integer(0, -64)
    end_dim: int = integer(-1, -64)
    op: ClassVar[str] = "flatten"
    linear: ClassVar[bool] = True

    def infer(self, in_shapes):
        x = super().infer(in_shapes)
        nd = max(len(x), 1)
        s, e = self.start_dim % nd, self.end_dim % nd
        self.need(s <= e, f"start_dim {self.start_dim} after end_dim {self.end_dim} for input {list(x)}")
        return x[:s] + (int(np.prod(x[s:e + 1])),) + x[e + 1:]


@node
class Add(Node):
    """Element-wise sum of all inputs (residual connections)."""

    op: ClassVar[str] = "add"
    linear: ClassVar[bool] = True

    def infer(self, in_shapes):
        self.need(len(in_shapes) >= 2, f"an add needs at least 2 inputs, has {len(in_shapes)}")
        self.need(all(s == in_shapes[0] for s in in_shapes), f"inputs have different shapes {in_shapes}")
        return tuple(in_shapes[0])


class _Spiking:
    """What the spiking nodes share: their dynamics are ``params`` (see :mod:`ilif_deploy.neuron_step`), what
    they use of them is their feature set and family (:mod:`ilif_deploy.families`)."""

    def _check_params(self) -> None:
        self.need(isinstance(self.params, ILIFParams), f"params must be ILIFParams, got {type(self.params).__name__}")

    @property
    def family(self) -> str:
        from ..families import family
        return family(self)

    @property
    def features(self):
        from ..families import features
        return features(self)


@node
class Neuron(_Spiking, Node):
    """A layer of spiking neurons: ILIF, and every family it generalises (LIF, PLIF, IF, sinabs' IAF, ...);
    the dynamics are ``params``, its family and features derive from them."""

    params: ILIFParams = field(default_factory=lambda: ILIFParams.from_tau(1.1))
    op: ClassVar[str] = "neuron"

    def check(self):
        super().check()
        self._check_params()
        return self

    def attrs(self) -> dict:
        return {"family": self.family, "tau": self.params.tau, **self.params.to_dict()}


@node
class ReLU(Node):
    """``max(x, 0)``: the activation of an ANN (the authors' ``-neuron_model relu`` baseline, run at T = 1), where a
    spiking network has its neuron layers.  Stateless and analog: the layers after it cost MACs."""

    op: ClassVar[str] = "relu"


@node
class LeakyIntegrator(Node):
    """Non-spiking leaky integrator ``y[t] = lam * y[t-1] + x[t]`` (y[0] = 0), state per element.

    Added for networks imported from NIR: the synaptic current of a ``CubaLIF`` and ``LI``
    readout layers.  ``lam`` is the decay per step (dimensionless); input gains are separate
    :class:`Affine` nodes."""

    lam: float = number()
    op: ClassVar[str] = "leaky_integrator"

    def check(self):
        super().check()
        self.need(0.0 <= self.lam <= 1.0, f"lam = {self.lam:g} is outside [0, 1] (a decay per step)")
        return self


@node
class RecurrentNeuron(_Spiking, Node):
    """A layer of neurons with a recurrent synapse from its own spikes of the step before (snntorch
    ``RLeaky``, a NIR cycle through a neuron such as the NIR paper's braille RNN).  Per step t, from zero
    state (``s[-1] = 0``)::

        a[t] = x[t] + weight @ s[t-1] + bias      the feed-forward input plus the recurrent one
        i[t] = syn_lam * i[t-1] + (in_scale * a[t] + in_shift)    synaptic current (syn_lam = 0: none)
        s[t] = neuron step (params) of mem_scale * i[t] + mem_shift

    The gains are what a NIR neuron's ``r``/``w_in``/``v_leak`` become (:mod:`~ilif_deploy.converters.nir`);
    with ``weight`` = 0 the layer is the feed-forward chain Affine -> LeakyIntegrator -> Affine -> Neuron."""

    params: ILIFParams = field(default_factory=lambda: ILIFParams.from_tau(1.1))
    weight: np.ndarray = array(2)
    bias: Optional[np.ndarray] = array(1, optional=True)
    in_scale: float = number(1.0)
    in_shift: float = number(0.0)
    syn_lam: float = number(0.0, minimum=0.0)  # at most 1: checked with the weight
    mem_scale: float = number(1.0)
    mem_shift: float = number(0.0)
    op: ClassVar[str] = "recurrent_neuron"

    def check(self):
        super().check()
        self._check_params()
        n = self.weight.shape[0]
        self.need(self.syn_lam <= 1.0, f"syn_lam = {self.syn_lam:g} is outside [0, 1] (a decay per step)")
        self.need(self.weight.shape == (n, n), f"the recurrent weight must be square, got {list(self.weight.shape)}")
        self.need(self.bias is None or self.bias.shape == (n,), "bias shape does not match the recurrent weight")
        return self

    def infer(self, in_shapes):
        x = super().infer(in_shapes)
        n = self.weight.shape[0]
        self.need(tuple(x) == (n,), f"takes input [{n}] (its recurrent weight's size), got {list(x)}")
        return (n,)

    def attrs(self) -> dict:
        return {k: v for k, v in super().attrs().items() if k != "params"} | {
            "family": self.family, "tau": self.params.tau, **self.params.to_dict()}


NODE_TYPES = {cls.op: cls for cls in (Input, Output, Conv2d, Linear, Affine, AvgPool2d, SumPool2d, MaxPool2d,
                                      AdaptiveAvgPool2d, Flatten, Add, Neuron, LeakyIntegrator, RecurrentNeuron, ReLU)}

#: the node types that output spikes (0/1): neuron layers, recurrent or not
SPIKING = (Neuron, RecurrentNeuron)
