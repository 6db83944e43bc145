"""The ILIF neuron as a Lava process with two process models (floating_pt, fixed_pt).

This folder holds nothing else: when compiling, Lava imports every ``.py`` file beside a
Process to look for its ProcessModels.  Imports are absolute because Lava also executes this
file as a stand-alone module during that search.

Compartments (Vars, one value per neuron): ``u`` the inhibited input current I[t], ``v`` the
membrane potential m[t] (after reset and MPIU inhibition), ``ciu`` and ``mpiu`` the two
inhibitory units (``ciu`` before the clamp), ``ciu_drive`` = S[t] * c[t] (what the CIU takes in at
the next step), ``syn`` the synaptic current i[t] = syn_lam * i[t-1] + a[t] of a CubaLIF (used when
``syn_lam`` != 0).  Constants (the parameters, the bias, the fixed-point layer, the timing) are
``proc_params``.  Equations: docs/ilif.md.  A multi-spike layer sends its spike counts as graded messages.

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
    """A layer of neurons of any family :mod:`ilif_deploy.families` declares (ILIF; LIF when ``lam_u == lam_i
    == 0``; IF, PLIF, sinabs' multi-spike IAF, snntorch's Leaky, ...).

    Its Vars are its state only (``u``, ``v``, ``ciu``, ``mpiu``, ``ciu_drive``, ``syn``) and two counters
    (``overflows``, ``wraps``); everything constant reaches the models through ``proc_params``, as Lava's own
    ``LIFReset`` keeps its reset interval, so the models read the very :class:`ILIFParams` and
    :class:`FixedLayer` the rest of the project uses instead of rebuilding them from Vars.

    Args:
        shape: the layer's shape in Lava's layout ((W, H, C) for images, (F,) for vectors).
        params: the neuron parameters (every feature the step implements).
        bias: constant input current added every step (scalar or array of ``shape``), float units.
        syn_lam: decay per step of a synaptic current between the input and the membrane (0: none).
        delay: connections between the network input and this layer (steps of pipeline delay).
        period: steps per sample T (state is reset every T steps); 0 = never reset.
        run_steps: Lava steps per run of the network (samples and the drain after them, a multiple of T); with
            it, saturations and wraps are counted only on the steps of the run's real samples (the ``live_steps``
            Var, set before each run): the drain steps and the unused windows of a short last batch, where biases
            alone drive the neurons, are not samples.  0: counted on every step.
        fixed: the layer in fixed point for the ``fixed_pt`` model (its ``bias_int`` in Lava's layout);
            None: quantised from ``params`` at 16 fractional bits.
        prefill: the network's pre-fill (NetSpec.prefill; 0: none).  Then a sample's window is ``period = T +
            prefill`` steps, every layer resets at the same step of it (the one at which the first layer takes the
            sample's first frame: Lava step ``prefill + 1`` of the window), the deeper ones dropping what arrives
            then (the previous sample's), and runs from there:
            a layer ``delay`` connections deep runs ``delay - 1`` steps before the sample reaches it, as lava-dl's
            netx does from Lava's first step.
    """

    def __init__(self, *, shape, params: ILIFParams, bias=0.0, syn_lam: float = 0.0, delay: int = 0, period: int = 0,
                 fixed: FixedLayer = None, name: str = None, log_config=None, run_steps: int = 0, prefill: int = 0):
        shape = tuple(int(s) for s in shape)
        bias = np.broadcast_to(np.asarray(bias, dtype=np.float64), shape).copy()
        if fixed is None:
            fixed = FixedLayer.from_params(params, np.zeros(shape), 0, FixedPoint(), syn_lam)
        super().__init__(shape=shape, params=params, bias=bias, syn_lam=float(syn_lam), delay=int(delay),
                         period=int(period), fixed=fixed, name=name, log_config=log_config, run_steps=int(run_steps),
                         prefill=int(prefill))
        self.a_in = InPort(shape=shape)
        self.r_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        for var in STATES:
            setattr(self, var, Var(shape=shape, init=0))
        self.overflows = Var(shape=(1,), init=0)  # saturated states (fixed_pt)
        self.wraps = Var(shape=(1,), init=0)  # int32 sums of the input port wrapped (fixed_pt)
        self.live_steps = Var(shape=(1,), init=0)  # steps of real samples in this run (with run_steps)


#: the state Vars, in both models (u: the inhibited current; ciu_drive: the CIU's input register)
STATES = ("u", "v", "ciu", "mpiu", "ciu_drive", "syn")


class _WindowMixin:
    """What both models share: the counters and the pipeline bookkeeping (which step of a sample this Lava
    step is)."""

    overflows: np.ndarray = LavaPyType(np.ndarray, np.int64)
    wraps: np.ndarray = LavaPyType(np.ndarray, np.int64)
    live_steps: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _counted(self) -> bool:
        """Whether this step belongs to a real sample of the run (its saturations and wraps are counted)."""
        run = self.proc_params["run_steps"]
        if run <= 0:
            return True
        p = self.proc_params
        if p["prefill"]:  # the window's steps from the reset to the sample's last step here
            local = (self.time_step - 1) % run - p["prefill"] - 1
            return 0 <= local < int(self.live_steps[0]) and local % p["period"] < p["delay"] - 1 + \
                p["period"] - p["prefill"]
        local = (self.time_step - 1) % run - p["delay"]
        return 0 <= local < int(self.live_steps[0])

    def _window_step(self) -> int:
        """Step k of the current sample (0-based), or -1 before this layer's first input arrives."""
        t = self.time_step - 1 - self.proc_params["delay"]
        if t < 0:
            return -1
        period = self.proc_params["period"]
        return t % period if period > 0 else t

    def _inputs(self, dtype):
        """This step's synaptic input (the recurrent one included after a window's first step), whether the layer
        runs at this step, and whether its state resets first (the first step of its window)."""
        a_in, r_in = self.a_in.recv().astype(dtype), self.r_in.recv().astype(dtype)
        prefill = self.proc_params["prefill"]
        if prefill:  # one reset step for every layer, where what arrives is the previous sample's
            s = self.time_step - 1 - prefill - 1
            if s < 0:
                return a_in, False, False
            if s % self.proc_params["period"] == 0:  # the first layer takes the sample's first frame at this step
                return (a_in if self.proc_params["delay"] <= 1 else a_in * 0), True, True
            return a_in + r_in, True, False
        k = self._window_step()
        return (a_in + r_in if k > 0 else a_in), k >= 0, k == 0


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyILIFModelFloat(_WindowMixin, PyLoihiProcessModel):
    """Floating-point neurons: the shared :func:`ilif_step` on numpy float32, like the torch runtime.

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

    def run_spk(self) -> None:
        a_in, runs, reset = self._inputs(np.float64)
        if not runs:
            self.s_out.send(np.zeros(self.s_out.shape))
            return
        if reset:
            for name in STATES:
                getattr(self, name)[...] = 0
        syn_lam, params = self.proc_params["syn_lam"], self.proc_params["params"]
        if params.delta is not None:  # lava's SigmaDelta: the sigma sums the input, the bias comes after it
            x = a_in.astype(np.float32)
            if syn_lam != 0.0:
                self.syn[...] = self.syn + x
                x = self.syn.copy()
            x = x + self.proc_params["bias"].astype(np.float32)
        else:
            x = (a_in + self.proc_params["bias"]).astype(np.float32)
            if syn_lam != 0.0:
                self.syn[...] = np.float32(syn_lam) * self.syn + x
                x = self.syn.copy()
        state = ILIFState(v=self.v, mpiu=self.mpiu, ciu=self.ciu, ciu_drive=self.ciu_drive)
        rec = ilif_step(x, state, params, NUMPY_OPS)
        self.u[...] = rec.u
        for n in ILIFState._fields:
            getattr(self, n)[...] = getattr(rec.state, n)
        self.s_out.send(rec.spikes)


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyILIFModelFixed(_WindowMixin, PyLoihiProcessModel):
    """Loihi-style fixed-point neurons: integer state of 24 bits (LSB = 2**-frac_bits), decays as
    12-bit fractions, input a_in scaled by 2**a_exp (the per-layer weight exponent), and
    sigmoid(mpiu) from a 1024-entry lookup table (:func:`ilif_step_fixed`).  A value leaving the signed 24-bit
    range is saturated and counted in ``overflows`` (never wrapped silently); the summed input wraps at int32 as
    Lava's port would, counted in ``wraps``.
    """

    # int64, wrapped to int32 in run_spk: Lava's int32 port would wrap the sum of several connections silently
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    r_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    syn: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    ciu: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    mpiu: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    ciu_drive: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        a_in, runs, reset = self._inputs(np.int64)
        if not runs:
            self.s_out.send(np.zeros(self.s_out.shape, dtype=np.int32))
            return
        a_in, wrapped = wrap(a_in, PORT_BITS)
        counted = self._counted()
        self.wraps[0] += int(wrapped) if counted else 0
        if reset:
            for name in STATES:
                getattr(self, name)[...] = 0
        state = ILIFState(*(getattr(self, n).astype(np.int64) for n in ILIFState._fields))
        step = ilif_step_fixed(a_in, state, self.proc_params["fixed"], syn=self.syn.astype(np.int64))
        if step.syn is not None:
            self.syn[...] = step.syn
        self.overflows[0] += int(step.overflows) if counted else 0
        self.u[...] = step.u
        for n in ILIFState._fields:
            getattr(self, n)[...] = getattr(step.state, n)
        self.s_out.send(step.spikes.astype(np.int32))
