"""The ILIF neuron as a Lava process with two process models (floating_pt, fixed_pt).

This folder holds nothing else: when compiling, Lava imports every ``.py`` file beside a
Process to look for its ProcessModels.  Imports are absolute because Lava also executes this
file as a stand-alone module during that search.

Compartments (Vars, one value per neuron): ``u`` the inhibited input current I[t], ``v`` the
membrane potential m[t] (after reset and MPIU inhibition), ``ciu`` and ``mpiu`` the two
inhibitory units (``ciu`` before the clamp), ``ciu_drive`` = S[t] * c[t] (what the CIU takes in at
the next step), ``bias`` a constant current, ``syn`` the synaptic current i[t] = syn_lam * i[t-1] + a[t]
of a CubaLIF (used when ``syn_lam`` != 0).  Equations: docs/ilif.md.

Ports: ``a_in`` the synaptic input, ``r_in`` the recurrent input (the layer's own spikes of the step
before, through a Dense: Lava's one step of connection delay is the recurrence's), dropped at the first
step of each sample window, where it still carries the previous sample's last spikes.

Timing: every connection process (Dense, Conv, Sparse) delays by one step, so a layer that is
``delay`` connections away from the input sees network step k at Lava step ``delay + k + 1``.
With ``period = T`` the process runs one sample per T steps back to back (a pipeline): it
resets its state at the first step of each window, so one built network serves many samples
without being rebuilt or paused.  Before its first window it sends no spikes.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

import ilif_deploy.converters.lava.compat  # noqa: F401  (the Python 3.11 import fix, before lava.magma)
from ilif_deploy.converters.lava.fixed import PORT_BITS, FixedLayer, FixedPoint, ilif_step_fixed, wrap
from ilif_deploy.neuron_step import NUMPY_OPS, ILIFParams, ILIFState, ilif_step

class ILIF(AbstractProcess):
    """A layer of ILIF neurons (LIF when ``lam_u == lam_i == 0``).

    Args:
        shape: the layer's shape in Lava's layout ((W, H, C) for images, (F,) for vectors).
        lam, v_th, lam_u, lam_i, ciu_source: the ILIF parameters (dimensionless; see ILIFParams).
        reset, v_reset, compare: "subtract" (soft reset, the contract) or "zero" (hard reset to
            ``v_reset``, NIR's and Lava's own LIF); spike rule ">=" (the contract) or ">".
        bias: constant input current added every step (scalar or array of ``shape``).
        syn_lam: decay per step of a synaptic current between the input and the membrane (0: none).
        delay: connections between the network input and this layer (steps of pipeline delay).
        period: steps per sample T (state is reset every T steps); 0 = never reset.
        fixed: fixed-point settings for the ``fixed_pt`` model: frac_bits (state LSB = 2**-frac_bits),
            a_exp (left shift applied to a_in), bias_int, vth_int, v_reset_int, decay_lam/decay_u/decay_i
            (12-bit): the fields of :class:`ilif_deploy.converters.lava.fixed.FixedLayer`.
    """

    def __init__(self, *, shape, lam: float, v_th: float = 1.0, lam_u: float = 1.0, lam_i: float = 0.03,
                 ciu_source: str = "synaptic", reset: str = "subtract", v_reset: float = 0.0, compare: str = ">=",
                 bias=0.0, syn_lam: float = 0.0, delay: int = 0, period: int = 0, fixed: dict = None, name: str = None,
                 log_config=None):
        shape = tuple(int(s) for s in shape)
        fixed = dict(fixed or {})
        super().__init__(shape=shape, name=name, log_config=log_config)
        self.a_in = InPort(shape=shape)
        self.r_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        for var in ("u", "v", "ciu", "mpiu", "ciu_drive", "syn"):
            setattr(self, var, Var(shape=shape, init=0))
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias, dtype=np.float64), shape).copy())
        self.lam = Var(shape=(1,), init=lam)
        self.syn_lam = Var(shape=(1,), init=float(syn_lam))
        self.v_th = Var(shape=(1,), init=v_th)
        self.lam_u = Var(shape=(1,), init=lam_u)
        self.lam_i = Var(shape=(1,), init=lam_i)
        self.ciu_from_net = Var(shape=(1,), init=int(ciu_source == "net"))
        self.hard_reset = Var(shape=(1,), init=int(reset == "zero"))
        self.v_reset = Var(shape=(1,), init=float(v_reset))
        self.strict = Var(shape=(1,), init=int(compare == ">"))
        self.delay = Var(shape=(1,), init=int(delay))
        self.period = Var(shape=(1,), init=int(period))
        # fixed-point representation (used by the fixed_pt model only)
        frac_bits = int(fixed.get("frac_bits", 16))
        self.frac_bits = Var(shape=(1,), init=frac_bits)
        self.a_exp = Var(shape=(1,), init=int(fixed.get("a_exp", 0)))
        self.bias_int = Var(shape=shape, init=np.broadcast_to(
            np.asarray(fixed.get("bias_int", 0), dtype=np.int64), shape).copy())
        default = FixedLayer.from_params(ILIFParams(lam=lam, v_th=v_th, lam_u=lam_u, lam_i=lam_i, ciu_source=ciu_source,
                                                    reset=reset, v_reset=v_reset, compare=compare),
                                         0.0, 0, FixedPoint(frac_bits=frac_bits), syn_lam)
        for key in ("vth_int", "v_reset_int", "decay_lam", "decay_u", "decay_i", "decay_syn"):
            setattr(self, key, Var(shape=(1,), init=int(fixed.get(key, getattr(default, key)))))
        self.overflows = Var(shape=(1,), init=0)
        self.wraps = Var(shape=(1,), init=0)  # int32 sums of the input port wrapped (fixed_pt)


class _WindowMixin:
    """What both models share: the parameter Vars (same types in both) and the pipeline
    bookkeeping (which step of a sample this Lava step is)."""

    bias: np.ndarray = LavaPyType(np.ndarray, float)
    lam: np.ndarray = LavaPyType(np.ndarray, float)
    syn_lam: np.ndarray = LavaPyType(np.ndarray, float)
    v_th: np.ndarray = LavaPyType(np.ndarray, float)
    lam_u: np.ndarray = LavaPyType(np.ndarray, float)
    lam_i: np.ndarray = LavaPyType(np.ndarray, float)
    ciu_from_net: np.ndarray = LavaPyType(np.ndarray, int)
    hard_reset: np.ndarray = LavaPyType(np.ndarray, int)
    v_reset: np.ndarray = LavaPyType(np.ndarray, float)
    strict: np.ndarray = LavaPyType(np.ndarray, int)
    v_reset_int: np.ndarray = LavaPyType(np.ndarray, np.int64)
    delay: np.ndarray = LavaPyType(np.ndarray, int)
    period: np.ndarray = LavaPyType(np.ndarray, int)
    frac_bits: np.ndarray = LavaPyType(np.ndarray, int)
    a_exp: np.ndarray = LavaPyType(np.ndarray, int)
    bias_int: np.ndarray = LavaPyType(np.ndarray, np.int64)
    vth_int: np.ndarray = LavaPyType(np.ndarray, np.int64)
    decay_lam: np.ndarray = LavaPyType(np.ndarray, int)
    decay_u: np.ndarray = LavaPyType(np.ndarray, int)
    decay_i: np.ndarray = LavaPyType(np.ndarray, int)
    decay_syn: np.ndarray = LavaPyType(np.ndarray, int)
    overflows: np.ndarray = LavaPyType(np.ndarray, np.int64)
    wraps: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _window_step(self) -> int:
        """Step k of the current sample (0-based), or -1 before this layer's first input arrives."""
        t = self.time_step - 1 - int(self.delay[0])
        if t < 0:
            return -1
        period = int(self.period[0])
        return t % period if period > 0 else t

    def _inputs(self, dtype):
        """This step's synaptic input (the recurrent one included from the second step of a window on)
        and the window step k (-1: before the first window)."""
        a_in, r_in = self.a_in.recv().astype(dtype), self.r_in.recv().astype(dtype)
        k = self._window_step()
        return (a_in + r_in if k > 0 else a_in), k


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyILIFModelFloat(_WindowMixin, PyLoihiProcessModel):
    """Floating-point ILIF: the shared :func:`ilif_step` on numpy float32, like the torch runtime.

    Incoming currents arrive in float64 from Lava's connection processes; they are rounded once
    to float32 (with the bias) and every neuron operation is done in float32, as torch does.
    """

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    r_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    syn: np.ndarray = LavaPyType(np.ndarray, np.float32)
    u: np.ndarray = LavaPyType(np.ndarray, np.float32)
    v: np.ndarray = LavaPyType(np.ndarray, np.float32)
    ciu: np.ndarray = LavaPyType(np.ndarray, np.float32)
    mpiu: np.ndarray = LavaPyType(np.ndarray, np.float32)
    ciu_drive: np.ndarray = LavaPyType(np.ndarray, np.float32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._params = None

    def _ilif_params(self) -> ILIFParams:
        if self._params is None:
            self._params = ILIFParams(lam=float(self.lam[0]), v_th=float(self.v_th[0]), lam_u=float(self.lam_u[0]),
                                      lam_i=float(self.lam_i[0]),
                                      ciu_source="net" if int(self.ciu_from_net[0]) else "synaptic",
                                      reset="zero" if int(self.hard_reset[0]) else "subtract",
                                      v_reset=float(self.v_reset[0]), compare=">" if int(self.strict[0]) else ">=")
        return self._params

    def run_spk(self) -> None:
        a_in, k = self._inputs(np.float64)
        if k < 0:
            self.s_out.send(np.zeros(self.s_out.shape))
            return
        if k == 0:
            for arr in (self.u, self.v, self.ciu, self.mpiu, self.ciu_drive, self.syn):
                arr[...] = 0
        x = (a_in + self.bias).astype(np.float32)
        if float(self.syn_lam[0]) != 0.0:
            self.syn[...] = np.float32(self.syn_lam[0]) * self.syn + x
            x = self.syn.copy()
        state = ILIFState(v=self.v, mpiu=self.mpiu, ciu=self.ciu, ciu_drive=self.ciu_drive)
        rec = ilif_step(x, state, self._ilif_params(), NUMPY_OPS)
        self.u[...] = rec.u
        self.v[...] = rec.state.v
        self.mpiu[...] = rec.state.mpiu
        self.ciu[...] = rec.state.ciu
        self.ciu_drive[...] = rec.state.ciu_drive
        self.s_out.send(rec.spikes)


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyILIFModelFixed(_WindowMixin, PyLoihiProcessModel):
    """Loihi-style fixed-point ILIF: integer state of 24 bits (LSB = 2**-frac_bits), decays as
    12-bit fractions, input a_in scaled by 2**a_exp (the per-layer weight exponent), and
    sigmoid(mpiu) from a 1024-entry lookup table.  A value leaving the signed 24-bit range is
    saturated and counted in ``overflows`` (never wrapped silently); the summed input wraps at int32 as
    Lava's port would, counted in ``wraps``.
    """

    # int64, wrapped to int32 in run_spk: Lava's int32 port would wrap the sum of several connections silently
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    r_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    syn: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    ciu: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    mpiu: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    ciu_drive: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._layer = None

    def _fixed_layer(self) -> FixedLayer:
        if self._layer is None:
            self._layer = FixedLayer(
                frac_bits=int(self.frac_bits[0]), a_exp=int(self.a_exp[0]), vth_int=int(self.vth_int[0]),
                decay_lam=int(self.decay_lam[0]), decay_u=int(self.decay_u[0]), decay_i=int(self.decay_i[0]),
                ciu_on=float(self.lam_i[0]) != 0.0, mpiu_on=float(self.lam_u[0]) != 0.0,
                ciu_from_net=bool(int(self.ciu_from_net[0])), bias_int=self.bias_int.astype(np.int64),
                hard_reset=bool(int(self.hard_reset[0])), v_reset_int=int(self.v_reset_int[0]),
                strict=bool(int(self.strict[0])), decay_syn=int(self.decay_syn[0]))
        return self._layer

    def run_spk(self) -> None:
        a_in, k = self._inputs(np.int64)
        if k < 0:
            self.s_out.send(np.zeros(self.s_out.shape, dtype=np.int32))
            return
        a_in, wrapped = wrap(a_in, PORT_BITS)
        self.wraps[0] += int(wrapped)
        if k == 0:
            for arr in (self.u, self.v, self.ciu, self.mpiu, self.ciu_drive, self.syn):
                arr[...] = 0
        state = ILIFState(*(getattr(self, n).astype(np.int64) for n in ILIFState._fields))
        step = ilif_step_fixed(a_in, state, self._fixed_layer(), syn=self.syn.astype(np.int64))
        if step.syn is not None:
            self.syn[...] = step.syn
        self.overflows[0] += int(step.overflows)
        self.u[...] = step.u
        for n in ILIFState._fields:
            getattr(self, n)[...] = getattr(step.state, n)
        self.s_out.send(step.spikes.astype(np.int32))
