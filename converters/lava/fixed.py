"""Loihi-style fixed point in one place: the number format, every quantisation (weights, input,
bias, threshold, decays, the sigmoid table, the readout scale) and the one fixed-point ILIF step.

The step :func:`ilif_step_fixed` is pure and integer-only, written against a small array namespace
(:data:`NUMPY_FIXED`, :func:`torch_fixed_ops`) as :func:`ilif_deploy.neuron_step.ilif_step` is for
float: Lava's ``fixed_pt`` process model (``process/ilif.py``) and the batched torch engine
(:mod:`.engine`) both call it, so they cannot drift apart.  This file lives outside ``process/``
because Lava imports every file in a process's folder when it compiles.

Format (one LSB of state = 2**-frac_bits of a float unit; every state a signed 24-bit integer)::

    a_in     summed synaptic input as Lava delivers it (int32 messages)
    x        = (a_in << a_exp) + bias_int           a_exp: the layer's weight exponent
    syn      = decay(syn, decay_syn) + x; x = syn    a synaptic current (CubaLIF), when decay_syn > 0
    ciu      = decay(ciu + ciu_drive, decay_i)       decays are 12-bit fractions d / 4096, on magnitudes
    u        = x - max(ciu, 0)                       (the inhibited current I[t])
    v_pre    = decay(v, decay_lam) + u               (subtract_next: - (v >= vth_int) * vth_int, snntorch's;
                                                      decay_input: v + decay(u - (v - rest), decay_in); leak:
                                                      v - decay(v - rest, decay_in) + u, SpikingJelly's)
    S        = v_pre >= vth_int                      ('>' with strict; multi_spike: v_pre > 0 ? v_pre // vth_int : 0)
    mbar     = v_pre - S * vth_int                   (hard reset: S ? v_reset_int : v_pre; subtract_next: v_pre)
    mpiu     = decay(mpiu + S * mbar, decay_u)
    v        = mbar - S * lut[mpiu]                  sigmoid(mpiu) from a 1024-entry table
    v        = max(v, v_min_int)                     a membrane floor (v_min_int not None)
    ciu_drive= S * (x or u)

A delta encoder (``ILIFParams.delta``: lava-dl's sigma-delta, as lava's ``lava.proc.sdn`` fixed-point models compute
it) keeps ``FixedPoint.delta_state_exp`` more fractional bits in its states than the network's format (lava's
``state_exp``, 6 at Loihi's integers) and sends its changes with the format's (``s >> state_exp``; lava's
``spike_exp`` is then the format's 6)::

    x        = (a_in << a_exp);  syn = syn + x; x = syn    its sigma (a synaptic current that never decays)
    act      = relu(x + bias_int)  (or x + bias_int)     the bias after the sigma
    d        = act - v                                    v: what the receivers hold
    S        = d where |d| >= vth_int, else 0;  v += S;  message = S >> state_exp

Every value that leaves the signed 24-bit range is saturated and counted (``overflows``).

What Lava's own connection processes do in fixed point, reproduced by the engine (measured on
lava-nc 0.10.0): ``Dense``/``Sparse`` accumulate in int32 and wrap; ``Conv`` wraps its sum to 24
bits (``lava.proc.conv.utils.signed_clamp`` is a modulo); an InPort sums its incoming messages in
int32.  The mantissas of a mixed-sign ``Dense`` lose their LSB, so they are stored doubled (even).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ilif_deploy.errors import UserError
from ilif_deploy.neuron_step import ILIFParams, ILIFState

STATE_BITS = 24
STATE_MAX = 2 ** (STATE_BITS - 1) - 1
DECAY_BITS = 12
DECAY_ONE = 1 << DECAY_BITS
LUT_SIZE = 1024
LUT_STEPS_PER_UNIT = 64  # sigmoid table resolution: 1/64 of a state unit, covering [-8, 8)
LUT_SHIFT_BITS = 6  # log2(LUT_STEPS_PER_UNIT)
#: graded messages (analog input) are 24-bit: the input encoder saturates there
INPUT_MAX = STATE_MAX
#: Lava's accumulators: Dense/Sparse and InPort sums in int32, Conv wraps to 24 bits
DENSE_BITS, CONV_BITS, PORT_BITS = 32, 24, 32


@dataclass(frozen=True)
class FixedPoint:
    """The network-wide format: state LSB = 2**-frac_bits (float units), analog input LSB =
    2**-input_frac_bits, weights as signed ``weight_bits`` mantissas with one exponent per target layer."""

    frac_bits: int = 16
    input_frac_bits: int = 8
    weight_bits: int = 8
    #: the fractional bits a delta encoder's states keep beyond ``frac_bits`` (its messages carry ``frac_bits``):
    #: lava.proc.sdn's state_exp, 6 at Loihi's integers; 0 in ilif-deploy's own formats (16 bits are plenty)
    delta_state_exp: int = 0

    def __post_init__(self) -> None:
        for name, lo, hi in (("frac_bits", 1, 22), ("input_frac_bits", 0, 23), ("weight_bits", 2, 8),
                             ("delta_state_exp", 0, 22 - self.frac_bits if isinstance(self.frac_bits, int) else 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise UserError(f"fixed point: {name} must be an integer in [{lo}, {hi}], got {v!r}")


#: the format of a file that holds Loihi's own integers (lava-dl netx): weights and thresholds are integers whose
#: Loihi scale is 2**6 (``a_in << 6``, ``vth << 6``, ``bias << 6`` in Lava's fixed-point LIF), input frames integers
LOIHI_INTEGERS = {"frac_bits": 6, "input_frac_bits": 0, "delta_state_exp": 6}


def native_format(metadata: dict) -> Optional[FixedPoint]:
    """The fixed-point format the file a graph was read from holds its numbers in (``metadata["fixed_point"]``,
    set by the reader -- a netx file's are Loihi's integers -- or by fine-tuning, which trained them), or None for
    a float network (ilif-deploy then chooses its format)."""
    f = metadata.get("fixed_point")
    if not f:
        return None
    return FixedPoint(frac_bits=int(f["frac_bits"]), input_frac_bits=int(f["input_frac_bits"]),
                      weight_bits=int(f.get("weight_bits", FixedPoint.weight_bits)),
                      delta_state_exp=int(f.get("delta_state_exp", 0)))


@functools.lru_cache(maxsize=None)
def sigmoid_lut(frac_bits: int) -> np.ndarray:
    """Sigmoid of the MPIU as a table: entry i holds sigmoid(z_i) * 2**frac_bits (state units) for the
    bin z in [(i - 512) / 64, (i - 511) / 64), evaluated at the bin's midpoint."""
    z = (np.arange(LUT_SIZE) - LUT_SIZE // 2 + 0.5) / LUT_STEPS_PER_UNIT
    lut = np.round(2.0 ** frac_bits / (1.0 + np.exp(-z))).astype(np.int64)
    lut.flags.writeable = False
    return lut


def source_frac_bits(syn, fp: FixedPoint) -> int:
    """Fractional bits of what a synapse (:class:`~.netspec.Synapse`) carries: the analog input's, a delta
    encoder's messages (the format's), none for 0/1 spikes and spike counts."""
    return fp.input_frac_bits if syn.graded else fp.frac_bits if syn.delta else 0


def layer_frac_bits(params: Optional[ILIFParams], fp: FixedPoint) -> int:
    """Fractional bits of a layer's states: the format's, and a delta encoder's ``delta_state_exp`` more (the
    readout, ``params`` None, keeps the format's)."""
    return fp.frac_bits + (fp.delta_state_exp if params is not None and params.delta is not None else 0)


def quantize_weights(weights: Sequence[np.ndarray], source_frac: Sequence[int], fp: FixedPoint,
                     post_shifts: Optional[Sequence[int]] = None, state_frac_bits: Optional[int] = None,
                     min_exp: Optional[int] = None) -> Tuple[List[np.ndarray], int]:
    """Mantissas of every synapse into one layer and the layer's shift ``a_exp``.

    One exponent per target layer, chosen so the largest weight uses the full ``weight_bits``; each source
    carries ``source_frac`` fractional bits of its own (:func:`source_frac_bits`), the target's states
    ``state_frac_bits`` (default: the format's).  Mantissas come back doubled (even numbers,
    [-256, 254] at 8 bits) as Lava's mixed-sign Dense wants them; ``a_exp`` accounts for the factor 2,
    so ``sum(mant * s) << a_exp`` is the input current in state LSBs.  ``post_shifts``: per synapse, a right
    shift of its sum (before ``a_exp``) that its mantissas are scaled up by."""
    post_shifts = post_shifts or [0] * len(source_frac)
    state = fp.frac_bits if state_frac_bits is None else state_frac_bits
    shifts = [state - f + p for f, p in zip(source_frac, post_shifts)]  # float -> state LSBs per source
    mag = max((np.abs(w).max(initial=0.0) * 2.0 ** k for w, k in zip(weights, shifts)), default=0.0)
    top = 2 ** (fp.weight_bits - 1) - 1
    e = math.ceil(math.log2(mag / top)) if mag > 0 else 0
    if min_exp is not None:  # never scale the mantissas up beyond the integers themselves
        e = max(e, min_exp)
    return [_mantissas(w, k - e, top) for w, k in zip(weights, shifts)], e - 1


def _mantissas(w: np.ndarray, shift: int, top: int) -> np.ndarray:
    """``2 * clip(round(w * 2**shift), -top - 1, top)`` as int64, rounded in one float64 scratch array (a
    ResNet-18's weights are 11 M: each temporary the plain expression made was 89 MB)."""
    a = np.multiply(w, 2.0 ** shift, dtype=np.float64)
    np.round(a, out=a)
    np.clip(a, -top - 1, top, out=a)
    a *= 2
    return a.astype(np.int64)


def quantize_input(x, fp: FixedPoint, xp: Any = np):
    """Analog input (float units) -> graded messages in 2**-input_frac_bits LSBs, saturated at 24 bits.
    Returns (integers as int64, how many values were saturated or not finite)."""
    scaled = x * float(2 ** fp.input_frac_bits)
    bad = ~xp.isfinite(scaled) | (abs(scaled) > INPUT_MAX)
    if xp is np:
        ints = np.clip(np.round(np.nan_to_num(scaled, nan=0.0)), -INPUT_MAX, INPUT_MAX).astype(np.int64)
    else:
        ints = xp.clamp(xp.round(xp.nan_to_num(scaled, nan=0.0)), -INPUT_MAX, INPUT_MAX).to(xp.int64)
    return ints, bad.sum()


def readout_scale(a_exp: int, fp: FixedPoint) -> float:
    """Float units per LSB of the readout's integer input sum."""
    return 2.0 ** (a_exp - fp.frac_bits)


@dataclass(frozen=True)
class FixedLayer:
    """Everything :func:`ilif_step_fixed` needs about one neuron layer, as integers.  ``bias_int`` is an
    array of the layer's shape (in whatever layout and array type the caller steps in)."""

    frac_bits: int
    a_exp: int
    vth_int: int
    decay_lam: int
    decay_u: int
    decay_i: int
    ciu_on: bool
    mpiu_on: bool
    ciu_from_net: bool
    bias_int: Any = 0
    hard_reset: bool = False
    v_reset_int: int = 0
    strict: bool = False
    #: decay of a synaptic current between the input and the neuron (12 bits; 0: no such current)
    decay_syn: int = 0
    #: the neuron features beyond ILIF's (see ILIFParams): snntorch's late reset, spike counts, a membrane floor
    subtract_next: bool = False
    multi_spike: bool = False
    v_min_int: Optional[int] = None
    #: SpikingJelly's charges (ILIFParams.charge): the leak per step 1/tau as 12 bits, the rest level in state LSBs
    charge: str = "lam"
    decay_in: int = 0
    rest_int: int = 0
    #: a delta encoder (ILIFParams.delta: "unit" or "relu"; its frac_bits include FixedPoint.delta_state_exp) and
    #: the right shift from its states to its messages
    delta: Optional[str] = None
    state_exp: int = 0
    #: proven (by :func:`state_bound`) that no value can leave the 24-bit range: saturation is skipped,
    #: which changes no result (every clamp would be a no-op) and saves most of the step's work
    in_range: bool = False

    @classmethod
    def from_params(cls, params: ILIFParams, bias, a_exp: int, fp: FixedPoint, syn_lam: float = 0.0) -> "FixedLayer":
        """Quantise a layer: threshold, reset level and bias to state LSBs (rounded), decays (and the synaptic
        current's, ``syn_lam``) to 12 bits."""
        frac = layer_frac_bits(params, fp)
        one = 2.0 ** frac
        return cls(frac_bits=frac, delta=params.delta, state_exp=frac - fp.frac_bits, a_exp=int(a_exp),
                   vth_int=int(round(params.v_th * one)),
                   decay_lam=int(round(params.lam * DECAY_ONE)), decay_u=int(round(params.lam_u * DECAY_ONE)),
                   decay_i=int(round(params.lam_i * DECAY_ONE)), ciu_on=params.ciu_enabled,
                   mpiu_on=params.mpiu_enabled, ciu_from_net=params.ciu_source == "net",
                   bias_int=np.round(np.asarray(bias, np.float64) * one).astype(np.int64),
                   hard_reset=params.reset == "zero", v_reset_int=int(round(params.v_reset * one)),
                   strict=params.compare == ">", decay_syn=int(round(syn_lam * DECAY_ONE)),
                   subtract_next=params.reset == "subtract_next", multi_spike=params.multi_spike,
                   v_min_int=None if params.v_min is None else int(round(params.v_min * one)),
                   charge=params.charge, decay_in=int(round((1.0 - params.lam) * DECAY_ONE)),
                   rest_int=int(round(params.rest * one)))

    @property
    def lut(self) -> np.ndarray:
        return sigmoid_lut(self.frac_bits)


@dataclass(frozen=True)
class FixedOps:
    """The integer array operations the fixed step needs (numpy or torch)."""

    decay: Callable[[Any, int], Any]  # v * d / 4096 rounded toward zero (Loihi's decay on magnitudes)
    clip: Callable[[Any, int, int], Any]
    relu: Callable[[Any], Any]
    table: Callable[["FixedLayer", Any], Any]  # the layer's sigmoid table at idx
    count: Callable[[Any, int], Any]  # (v, vth) -> v // vth where v > 0, else 0: a multi-spike neuron's spikes
    #: (v, vth, strict) -> 1 where v > vth (strict) or v >= vth, else 0, as int64: whether a neuron fires.  An op of
    #: its own so that fine-tuning (:mod:`.finetune`) can give the threshold a surrogate gradient
    fire: Callable[[Any, int, bool], Any]
    #: (x, e) -> x << e (e >= 0) or x >> -e: an arithmetic shift, flooring (fine-tuning: x * 2**e, floored)
    shift: Callable[[Any, int], Any]


def _decay_numpy(v, d: int):
    return np.sign(v) * ((np.abs(v) * d) >> DECAY_BITS)


def integrate_readout(a, lam: float, fixed: bool, decay: Callable[[Any, int], Any] = _decay_numpy,
                      stack: Callable = np.stack):
    """The readout's leaky integrator over the steps (axis 0) of its input current ``a``: ``y[t] = lam y[t-1] +
    a[t]`` -- in fixed point (``a`` in state LSBs, int64) with the 12-bit decay of the neurons' synaptic current,
    rounded toward zero on the magnitude (a netx readout, ``lam = 1``, sums exactly); in float64 otherwise.
    ``decay``/``stack``: the array namespace's (fine-tuning integrates torch tensors with its own decay)."""
    if lam == 0.0:
        return a
    out, y = [], a[0] * 0
    d = int(round(lam * DECAY_ONE))
    for t in range(a.shape[0]):
        if fixed:
            y = (y if d == DECAY_ONE else decay(y, d)) + a[t]
        else:
            y = lam * y + a[t]
        out.append(y)
    return stack(out)


def _shift(x, e: int):
    return x << e if e >= 0 else x >> -e


def _fire_int(v, vth: int, strict: bool):
    return (v > vth) if strict else (v >= vth)


NUMPY_FIXED = FixedOps(decay=_decay_numpy, clip=np.clip, relu=lambda x: np.maximum(x, 0),
                       table=lambda layer, idx: layer.lut[idx],
                       count=lambda v, vth: np.where(v > 0, v // vth, 0),
                       fire=lambda v, vth, strict: _fire_int(v, vth, strict).astype(np.int64), shift=_shift)


@functools.lru_cache(maxsize=None)
def torch_fixed_ops() -> FixedOps:
    """The step's ops on torch integer tensors: int64, or int32 where a layer is proven in range (every value of
    the step below 2**23: :func:`state_bound`), which moves half the bytes.  Each op returns its input's dtype."""
    import torch

    luts = {}

    def table(layer: "FixedLayer", idx):
        key = (layer.frac_bits, idx.device)
        if key not in luts:
            luts[key] = torch_lut(layer.frac_bits, idx.device)
        return lut_lookup(luts[key], idx)

    return FixedOps(decay=torch_decay, clip=torch.clamp, relu=lambda x: torch.clamp(x, min=0),
                    table=table,
                    count=lambda v, vth: torch.where(v > 0, torch.div(v, vth, rounding_mode="floor"), 0),
                    fire=torch_fire, shift=_shift)


def torch_decay(v, d: int):
    """``sign(v) * ((|v| d) >> 12)`` on a torch integer tensor, in float64: ``|v| d`` is exact there while below
    2**53 (every value the step decays is a sum of two 24-bit states, so ``|v| d`` < 2**38), the division by 4096
    only moves the exponent, and the conversion back truncates toward zero.  Three passes, and the int32 tensors of
    an in-range layer never hold the 36-bit product (int64 multiply-and-divide was the step's slowest op)."""
    import torch

    return (v.to(torch.float64) * (d / DECAY_ONE)).to(v.dtype)


def torch_fire(v, vth: int, strict: bool):
    """1 where ``v > vth`` (strict) or ``v >= vth``, else 0, in ``v``'s integer dtype: on integers that is
    ``clamp(v - vth + 1, 0, 1)`` (``v - vth`` when strict), two cheap passes instead of a comparison into bools
    and a conversion."""
    import torch

    return torch.clamp(v - (vth if strict else vth - 1), 0, 1)


def torch_lut(frac_bits: int, device) -> dict:
    """The sigmoid table (:func:`sigmoid_lut`) on ``device`` per integer dtype (the step looks it up in its own)."""
    import torch

    lut = torch.tensor(sigmoid_lut(frac_bits), device=device)  # a copy: the table is read-only
    return {torch.int64: lut, torch.int32: lut.to(torch.int32)}


def lut_lookup(luts: dict, idx):
    """``luts[idx.dtype][idx]`` as one ``index_select`` (a third of advanced indexing's time on CPU)."""
    return luts[idx.dtype].index_select(0, idx.reshape(-1)).view(idx.shape)


class FixedStep(NamedTuple):
    """One fixed-point step: 0/1 spikes (int64), the new state, how many values were saturated in
    this step (an integer, or a 0-d tensor under torch), the inhibited current ``u`` and the synaptic
    current ``syn`` (None for a layer without one)."""

    spikes: Any
    state: ILIFState
    overflows: Any
    u: Any
    syn: Any = None


def ilif_step_fixed(a_in, state: ILIFState, layer: FixedLayer, ops: FixedOps = NUMPY_FIXED, syn=None) -> FixedStep:
    """Advance one layer by one step in integers (see the module docstring for the equations).

    Args:
        a_in: the summed synaptic input of this step, int64 (what Lava's InPort delivers).
        state: the integer state after the previous step (all zeros at the first step), int64 arrays.
        layer: the layer's quantised parameters.
        ops: :data:`NUMPY_FIXED` or :func:`torch_fixed_ops`.
        syn: the synaptic current after the previous step (layers with ``decay_syn``; zeros at the first).
    """
    counts = [0]

    def sat(v):
        if layer.in_range:
            return v
        counts.append((abs(v) > STATE_MAX).sum())
        return ops.clip(v, -STATE_MAX, STATE_MAX)

    def decay(v, d: int):
        return v if d == DECAY_ONE else ops.decay(v, d)

    if layer.delta is not None:
        return _delta_step_fixed(a_in, state, layer, ops, syn, sat, counts)
    x = sat(ops.shift(a_in, layer.a_exp) + layer.bias_int)
    if layer.decay_syn:
        x = syn = sat(decay(syn, layer.decay_syn) + x)
    if layer.ciu_on:
        ciu = sat(decay(state.ciu + state.ciu_drive, layer.decay_i))
        u = sat(x - ops.relu(ciu))
    else:
        ciu, u = state.ciu, x
    def fired(v):
        return ops.fire(v, layer.vth_int, layer.strict)

    if layer.charge == "lam":
        v_pre = sat(decay(state.v, layer.decay_lam) + u)
    elif layer.charge == "decay_input":
        v_pre = sat(state.v + ops.decay(sat(u - (state.v - layer.rest_int)), layer.decay_in))
    else:
        v_pre = sat(state.v - ops.decay(state.v - layer.rest_int, layer.decay_in) + u)
    if layer.subtract_next:
        v_pre = sat(v_pre - fired(state.v) * layer.vth_int)
    spikes = ops.count(v_pre, layer.vth_int) if layer.multi_spike else fired(v_pre)
    if layer.hard_reset:
        mbar = v_pre - spikes * (v_pre - layer.v_reset_int)
    elif layer.subtract_next:
        mbar = v_pre
    else:
        mbar = v_pre - spikes * layer.vth_int
    if layer.mpiu_on:
        mpiu = sat(decay(state.mpiu + spikes * mbar, layer.decay_u))
        idx = ops.clip(ops.shift(mpiu, LUT_SHIFT_BITS - layer.frac_bits) + LUT_SIZE // 2, 0, LUT_SIZE - 1)
        v = sat(mbar - spikes * ops.table(layer, idx))
    else:
        mpiu, v = state.mpiu, mbar
    if layer.v_min_int is not None:
        v = ops.relu(v - layer.v_min_int) + layer.v_min_int
    drive = sat(spikes * (u if layer.ciu_from_net else x)) if layer.ciu_on else state.ciu_drive
    return FixedStep(spikes, ILIFState(v=v, mpiu=mpiu, ciu=ciu, ciu_drive=drive), sum(counts[1:], counts[0]), u,
                     syn if layer.decay_syn else None)


def _delta_step_fixed(a_in, state: ILIFState, layer: FixedLayer, ops: FixedOps, syn, sat, counts) -> FixedStep:
    """:func:`ilif_step_fixed` of a delta encoder (see the module docstring)."""
    x = ops.shift(a_in, layer.a_exp)
    if layer.decay_syn:  # the sigma
        x = syn = sat((syn if layer.decay_syn == DECAY_ONE else ops.decay(syn, layer.decay_syn)) + x)
    x = sat(x + layer.bias_int)
    d = sat((ops.relu(x) if layer.delta == "relu" else x) - state.v)
    sent = d * ops.fire(ops.relu(d) + ops.relu(-d), layer.vth_int, False)
    return FixedStep(ops.shift(sent, -layer.state_exp), state._replace(v=state.v + sent), sum(counts[1:], counts[0]),
                     x, syn if layer.decay_syn else None)


def state_bound(layer: FixedLayer, x_bound: float, timesteps: int) -> float:
    """The largest magnitude any value of the step can take over ``timesteps`` steps from zero state when
    ``|x| <= x_bound`` every step (decays round toward zero, so |decay(v)| <= d/4096 |v|).  Below
    STATE_MAX no saturation can occur, and ``replace(layer, in_range=True)`` gives the same results."""
    if layer.delta is not None:  # the sigma sums |x| at most T times; act and v within it, their difference twice
        return 2 * (x_bound * timesteps if layer.decay_syn else x_bound) * (1 + 1e-12) + 1
    lam, lam_u, lam_i = (layer.decay_lam / DECAY_ONE, layer.decay_u / DECAY_ONE, layer.decay_i / DECAY_ONE)
    sig = float(sigmoid_lut(layer.frac_bits).max()) if layer.mpiu_on else 0.0
    ciu = mpiu = v = drive = syn = 0.0
    worst, x_in = x_bound, x_bound
    for _ in range(int(timesteps)):
        if layer.decay_syn:  # the current sums decayed inputs: the neuron sees up to x_in / (1 - lam_syn)
            x_bound = syn = layer.decay_syn / DECAY_ONE * syn + x_in
            worst = max(worst, syn)
        if layer.ciu_on:
            ciu = lam_i * (ciu + drive)
        u = x_bound + ciu
        v_pre = lam * v + u + (layer.vth_int if layer.subtract_next else 0) + 2 * abs(layer.rest_int) + (
            v if layer.charge != "lam" else 0)  # SpikingJelly's charges: v plus at most |u| + |v| + |rest| more
        mbar = max(v_pre, abs(layer.v_reset_int)) if layer.hard_reset else v_pre
        if layer.mpiu_on:
            mpiu = lam_u * (mpiu + mbar)
        v = max(mbar + sig, abs(layer.v_min_int or 0))
        drive = u if layer.ciu_from_net else x_bound
        worst = max(worst, ciu, u, v_pre, mpiu, v, drive)
    return worst * (1 + 1e-12) + 1  # margin for the float arithmetic of the bound itself


@dataclass
class QuantizedNet:
    """A NetSpec in fixed point: the mantissas of every synapse (``spec.synapses`` order, doubled as
    Lava's Dense takes them), each neuron layer's :class:`FixedLayer` (bias in the IR's channel-first
    layout) and the readout's exponent.  What the Lava builder, the torch engine and the file share."""

    fp: FixedPoint
    mantissas: List[np.ndarray]
    layers: dict  # name -> FixedLayer
    readout_exp: int
    #: per synapse, the right shift of its sum (graded synapses into a layer that also takes spikes)
    post_shifts: Optional[List[int]] = None

    @property
    def readout_scale(self) -> float:
        return readout_scale(self.readout_exp, self.fp)



@dataclass
class QuantizedLayer:
    """One layer as :func:`quantized_layers` makes it: its incoming synapses (indices into ``spec.synapses``) with
    their mantissas and post shifts, its shift ``a_exp`` and its :class:`FixedLayer` (None for the readout)."""

    layer: Any
    synapses: List[int]
    mantissas: List[np.ndarray]
    post_shifts: List[int]
    a_exp: int
    fixed: Optional[FixedLayer]


def quantization_format(spec, fp: Optional[FixedPoint] = None) -> FixedPoint:
    """``fp``, else the format of the file ``spec`` was read from (:func:`native_format`), else :class:`FixedPoint`."""
    return fp or native_format(spec.metadata) or FixedPoint()


def quantized_layers(spec, fp: FixedPoint, mantissas: Optional[List[np.ndarray]] = None,
                     exponents: Optional[dict] = None, drop_weights: bool = False) -> Iterator[QuantizedLayer]:
    """Each layer of ``spec`` quantised in turn, in ``spec.layers + [spec.readout]`` order (see
    :func:`quantize_spec`), for a writer that stores a layer and lets it go before the next is made.
    ``drop_weights``: a layer's float64 synapse weights are dropped (``weight`` None) once its mantissas are made."""
    native = fp == native_format(spec.metadata)
    for layer in spec.layers + [spec.readout]:
        incoming = spec.incoming_indexed(layer.name)
        stored = None if mantissas is None else ([mantissas[i] for i, _ in incoming], int(exponents[layer.name]))
        q = quantize_layer(layer, incoming, fp, native, stored)
        if drop_weights:
            for _, syn in incoming:
                syn.weight = None
        yield q


def quantize_layer(layer, incoming, fp: FixedPoint, native: bool,
                   stored: Optional[Tuple[List[np.ndarray], int]] = None) -> QuantizedLayer:
    """One layer quantised: ``layer`` (a :class:`~ilif_deploy.converters.lava.netspec.Layer`) and its incoming
    ``(index, synapse)`` pairs with their float64 weights; ``native``: ``fp`` is the format of the file the network
    was read from (:func:`native_format`); ``stored``: the mantissas and exponent a ``.lava.h5`` keeps, taken as
    they are."""
    post = {i: 0 for i, _ in incoming}
    if {s.graded for _, s in incoming} == {True, False}:
        for i, s in incoming:
            if s.graded:
                if s.kind == "conv":
                    raise UserError(f"layer '{layer.name}' sums the analog input through a convolution with "
                                    f"spikes: fixed point has no per-synapse shift for Lava's Conv")
                post[i] = fp.input_frac_bits
    if stored is not None:
        m, a_exp = stored
    else:
        # at a file's own integers (netx), a convolution's weights are the file's: lava-dl's netx hands them to
        # Lava's Conv as they are (no exponent; it wraps its sum at 24 bits), so they are not scaled up to fill the
        # mantissa
        as_is = native and incoming and all(s.kind == "conv" for _, s in incoming)
        m, a_exp = quantize_weights([s.weight for _, s in incoming], [source_frac_bits(s, fp) for _, s in incoming],
                                    fp, [post[i] for i, _ in incoming], layer_frac_bits(layer.params, fp),
                                    min_exp=1 if as_is else None)
    return QuantizedLayer(layer, [i for i, _ in incoming], list(m), [post[i] for i, _ in incoming], a_exp,
                          None if layer.params is None else
                          FixedLayer.from_params(layer.params, layer.bias, a_exp, fp, layer.syn_lam))


def quantize_spec(spec, fp: Optional[FixedPoint] = None, mantissas: Optional[List[np.ndarray]] = None,
                  exponents: Optional[dict] = None) -> QuantizedNet:
    """Quantise every layer of ``spec`` (a :class:`~ilif_deploy.converters.lava.netspec.NetSpec`) with
    one exponent per target layer (format :func:`quantization_format`: ``fp``, else the format of the file the
    network was read from -- a netx file's Loihi integers -- else :class:`FixedPoint`); ``mantissas``/``exponents``
    (as stored in a ``.lava.h5``) are taken as they are instead of being recomputed from the float weights.

    A layer that sums the analog input with spikes (a recurrent layer right after the input) shares one
    exponent between them, but an input message carries 2**input_frac_bits per float unit and a spike 1: its
    graded synapses are quantised as spike synapses and shift their sum right by ``input_frac_bits``
    (``post_shifts``; Lava's Dense ``weight_exp``), or their mantissas would round to 0."""
    fp = quantization_format(spec, fp)
    mants: List[Optional[np.ndarray]] = [None] * len(spec.synapses)
    post = [0] * len(spec.synapses)
    layers, readout_exp = {}, 0
    for q in quantized_layers(spec, fp, mantissas, exponents):
        for i, m, p in zip(q.synapses, q.mantissas, q.post_shifts):
            mants[i], post[i] = m, p
        if q.fixed is None:
            readout_exp = q.a_exp
        else:
            layers[q.layer.name] = q.fixed
    return QuantizedNet(fp=fp, mantissas=mants, layers=layers, readout_exp=readout_exp, post_shifts=post)


def wrap(x, bits: int):
    """Two's-complement wrap of integers to ``bits`` (what an int32 accumulator or Lava's 24-bit
    ``signed_clamp`` does), and how many values wrapped."""
    half = 1 << (bits - 1)
    out = (x + half) % (2 * half) - half
    return out, (out != x).sum()


def zero_fixed_state(shape, xp: Any = np, **kw) -> ILIFState:
    z = xp.zeros(shape, dtype=xp.int64, **kw)
    return ILIFState(v=z, mpiu=z, ciu=z, ciu_drive=z)


__all__ = ["FixedPoint", "FixedLayer", "FixedStep", "FixedOps", "NUMPY_FIXED", "torch_fixed_ops", "torch_lut",
           "lut_lookup", "ilif_step_fixed", "quantize_weights", "source_frac_bits", "layer_frac_bits",
           "quantize_input", "quantize_spec", "quantized_layers", "quantize_layer", "QuantizedLayer",
           "quantization_format", "state_bound", "QuantizedNet", "readout_scale", "sigmoid_lut",
           "wrap", "integrate_readout", "zero_fixed_state", "STATE_BITS", "STATE_MAX", "DECAY_BITS", "INPUT_MAX",
           "DENSE_BITS", "CONV_BITS", "PORT_BITS", "native_format", "LOIHI_INTEGERS"]
