"""NetSpec -> Lava processes on ``Loihi2SimCfg`` (CPU), and a runner that streams many samples.

One built network serves all samples: the source plays the samples back to back (T steps each)
and every ILIF process resets itself at the start of each of its windows, so the network runs
as a pipeline, one sample per T steps, without rebuilding or pausing.  Arrays arrive in the IR's
channel-first layout and are converted here to Lava's (W, H, C) layout.

Modes: ``"float"`` (floating_pt models; Lava's connection processes compute in float64, the ILIF
model rounds the incoming current to float32 like the torch runtime) and ``"fixed"``
(fixed_pt models: 8-bit weight mantissas with one exponent per target layer, integer state; see
:class:`ilif_deploy.converters.lava.process.ilif.PyILIFModelFixed`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ilif_deploy.errors import UserError

from .compat import require_lava
from .fixed import PORT_BITS, FixedPoint, QuantizedNet, integrate_readout, quantize_input, quantize_spec, wrap
from .netspec import INPUT, LAVA_FIXED, LAVA_FLOAT, OUTPUT, NetSpec, Synapse

MODES = {"float": "floating_pt", "fixed": "fixed_pt"}


def lava_shape(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """IR channel-first shape -> Lava layout ((C, H, W) -> (W, H, C))."""
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def to_lava(a: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Per-sample array(s) in IR layout ``[..., *shape]`` -> Lava layout."""
    if len(shape) != 3:
        return a
    lead = a.ndim - 3
    return np.transpose(a, tuple(range(lead)) + (lead + 2, lead + 1, lead))


def from_lava(a: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`to_lava` (the same axis swap)."""
    return to_lava(a, shape)


def lava_order(shape: Tuple[int, ...]) -> np.ndarray:
    """For each position of the flattened Lava layout, the index in the flattened IR layout."""
    n = int(np.prod(shape))
    return to_lava(np.arange(n).reshape(shape), shape).reshape(-1)


@dataclass
class LavaNetwork:
    """A built Lava network for ``samples`` samples per run: the processes and how to read them.

    One run plays ``samples`` samples back to back and then ``pad`` empty ones while the last
    results travel through the pipeline, so the run length ``period`` is a multiple of T and a
    later run (new data) lines up with the neurons' reset windows again.
    """

    spec: NetSpec
    mode: str
    samples: int
    source: object
    neurons: Dict[str, object]
    recorders: Dict[str, Tuple[object, str]]
    workdir: object
    fp: FixedPoint
    quantized: Optional[QuantizedNet] = None
    readout_scale: float = 1.0
    connections: List[object] = field(default_factory=list)
    fast_conv: bool = True
    input_saturated: int = 0  # analog input values beyond the 24-bit input format (fixed mode), so far
    counted: Dict[str, List[object]] = field(default_factory=dict)  # layer: processes whose wraps sum to its (fixed)
    readout_wraps: int = 0  # readout sums wrapped to int32 (fixed mode), so far
    _started: bool = False

    @property
    def window(self) -> int:
        """Lava steps per sample: T, and the pre-fill of a network with delta encoders (NetSpec.prefill)."""
        return self.spec.timesteps + self.spec.prefill

    @property
    def pad(self) -> int:
        return -(-self.spec.depth // self.window)

    @property
    def period(self) -> int:
        """Lava steps per run: (samples + pad) * window."""
        return (self.samples + self.pad) * self.window

    def _first_row(self, depth: int) -> int:
        """The Lava step (of a run) at which a process ``depth`` connections deep sees the first sample's step 0."""
        return depth + self.spec.prefill

    @property
    def processes(self) -> int:
        """Number of Lava processes (each one an OS process on the CPU backend)."""
        return 1 + len(self.neurons) + len(self.connections) + len(self.recorders)

    def _run(self, steps: int) -> None:
        from lava.magma.core.run_conditions import RunSteps

        try:
            self.source.run(condition=RunSteps(num_steps=steps), run_cfg=run_config(self.mode, self.fast_conv))
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{_worker_errors(self.source)}") from None
        self._started = True

    def stop(self) -> None:
        """Shut the Lava runtime (and its worker processes) down and remove the recording files."""
        if self._started:
            self.source.stop()
            self._started = False
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Samples ``[n, T, *input_shape]`` (IR layout) -> source data ``[*lava_shape, period]``."""
        shape, P = self.spec.input_shape, self.spec.prefill
        full = np.zeros((self.samples + self.pad, self.window) + tuple(shape), dtype=np.float64)
        full[:len(x), P:] = x  # a sample's frames after its window's pre-fill steps
        data = np.moveaxis(to_lava(full.reshape(-1, *shape), shape), 0, -1)
        if self.mode == "fixed":
            data, saturated = quantize_input(data, self.fp)
            self.input_saturated += int(saturated)
        return np.ascontiguousarray(data)

    def run(self, x: np.ndarray) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """Run samples ``x`` ``[n, T, *input_shape]`` (n <= ``samples``) through the network.

        Returns the readout per step ``[T, n, *out_shape]`` (the last layer's currents incl. bias,
        float64) and, when built with ``record=True``, every layer's spikes ``[T, n, *shape]`` (IR layout).
        """
        T = self.spec.timesteps
        n = x.shape[0]
        if x.shape[1] != T or n > self.samples:
            raise ValueError(f"input [n={n}, T={x.shape[1]}] does not fit the network built for "
                             f"{self.samples} samples of T={T} steps")
        data = self.encode(x)
        live = np.array([n * self.window])
        if self._started:
            self.source.data.set(data)  # slow (Lava moves Vars value by value); build for all samples instead
            for p in self.neurons.values():
                if hasattr(p, "live_steps") and int(p.live_steps.get()[0]) != int(live[0]):
                    p.live_steps.set(live)
        else:
            self.source.data.init = data  # before compiling, a Var's initial value is set directly
            for p in self.neurons.values():
                if hasattr(p, "live_steps"):
                    p.live_steps.init = live
        self._run(self.period)
        result = {}
        W, P, lead_out = self.window, self.spec.prefill, 0
        for k, (rec, path) in self.recorders.items():
            layer = self.spec.layer(k)
            mm = np.memmap(path, dtype=rec.proc_params["dtype"], mode="r", shape=(self.period,) + rec.a_in.shape)
            # sample s, step t sits at row s*W + prefill + depth + t; a readout after delta encoders also takes the
            # depth - 2 rows before (what reached it in the pre-fill, after the layers' reset step), which its
            # integration below includes
            lead = max(layer.depth - 2, 0) if P and layer is self.spec.readout else 0
            d = self._first_row(layer.depth) - lead
            part = np.stack([np.asarray(mm[d + i * W:d + i * W + T + lead], dtype=np.float64) for i in range(n)])
            del mm
            part = from_lava(part, layer.shape).reshape(n, T + lead, *layer.shape).swapaxes(0, 1)
            if self.mode == "fixed" and layer.delta:
                part = part * 2.0 ** -self.fp.frac_bits  # a delta encoder's messages in float units, as the runtime's
            lead_out = max(lead_out, lead)
            result[k] = part
        out = result.pop(OUTPUT)
        if self.mode == "fixed":  # the recorder takes the sum exact: wrap it as Lava's int32 port does, counted
            out, n = wrap(out.astype(np.int64), PORT_BITS)
            self.readout_wraps += int(n)
        # a leaky integrator before the output (a netx readout): over each sample's steps, as the torch engine
        out = integrate_readout(out, self.spec.readout.syn_lam, self.mode == "fixed")[lead_out:]
        out = out * self.readout_scale + self.spec.readout.bias
        return out, result

    def overflows(self) -> Dict[str, int]:
        """Per layer: how many values left the 24-bit range (fixed mode; saturated and counted)."""
        if not self._started:
            return {}
        return {k: int(p.overflows.get()[0]) for k, p in self.neurons.items() if hasattr(p, "overflows")}

    def synapse_wraps(self) -> Dict[str, int]:
        """Per target layer (``OUTPUT`` for the readout): synaptic sums that wrapped so far (fixed mode),
        in its connection processes (:mod:`.process.counting`) and in its input port."""
        if not self._started or self.mode != "fixed":
            return {}
        out = {k: sum(int(p.wraps.get()[0]) for p in procs) for k, procs in self.counted.items()}
        out[OUTPUT] = out.get(OUTPUT, 0) + self.readout_wraps
        return out


def run_config(mode: str = "float", fast_conv: bool = True):
    """``Loihi2SimCfg`` (Lava's CPU simulation of Loihi 2) for ``mode``; with ``fast_conv`` Lava's
    ``Conv`` process runs on :mod:`ilif_deploy.converters.lava.process.fast_conv` (same results, a matrix
    product instead of a Python loop over channel pairs).  Fixed mode builds the counting processes of
    :mod:`ilif_deploy.converters.lava.process.counting` instead, whose Conv model is the same product."""
    require_lava()
    from lava.magma.core.run_configs import Loihi2SimCfg

    if mode not in MODES:
        raise UserError(f"mode must be one of {list(MODES)}, got {mode!r}")
    exceptions = {}
    if fast_conv:
        from lava.proc.conv.process import Conv

        from .process.fast_conv import PyFastConvModelFixed, PyFastConvModelFloat
        exceptions[Conv] = PyFastConvModelFloat if mode == "float" else PyFastConvModelFixed
    return Loihi2SimCfg(select_tag=MODES[mode], exception_proc_model_map=exceptions)


def _worker_errors(proc) -> str:
    """The tracebacks of failed Lava worker processes (Lava itself logs them only at INFO level)."""
    try:
        actors = proc.runtime._messaging_infrastructure.actors
        found = [a.exception[1] for a in actors if a.exception]
    except Exception:  # noqa: BLE001 - best effort; the original error is raised anyway
        return ""
    return ("first error in a Lava worker process:\n" + found[0]) if found else ""


def _connect(src_port, syn: Synapse, w_lava, dst_port, mode: str, connections: list, shift: int = 0) -> object:
    """One connection process (plus ``syn.delay`` identity relays) from ``src_port`` to ``dst_port``;
    returns the connection process.  Fixed mode uses the processes that count their wraps; ``shift``
    right-shifts a Dense/Sparse sum (its ``weight_exp``)."""
    from scipy import sparse as sp

    if mode == "fixed":
        from .process.counting import CountingConv as Conv, CountingDense as Dense, CountingSparse as Sparse
    else:
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import Dense
        from lava.proc.sparse.process import Sparse

    # analog values, spike counts and a delta encoder's changes travel as graded messages
    bits = 24 if syn.graded or syn.counts or syn.delta else 0
    out_l = lava_shape(syn.out_shape)
    if syn.kind == "conv":
        conn = Conv(weight=w_lava, input_shape=lava_shape(syn.in_shape), padding=syn.padding[::-1],
                    stride=syn.stride[::-1], dilation=syn.dilation[::-1], groups=syn.groups,
                    num_message_bits=bits)
        src_port.connect(conn.s_in)
        out = conn.a_out
    else:
        flat_in = src_port.flatten() if len(syn.in_shape) > 1 else src_port
        exp = dict(weight_exp=-shift) if shift else {}
        conn = Dense(weights=w_lava, num_message_bits=bits, **exp) if syn.kind == "dense" else \
            Sparse(weights=sp.csr_matrix(w_lava), num_message_bits=bits, **exp)
        flat_in.connect(conn.s_in)
        out = conn.a_out
    connections.append(conn)
    n_out = int(np.prod(out_l))
    for _ in range(syn.delay):
        # a residual shortcut is shorter than the main path: delay it by relays (each adds one step;
        # an identity on int32 values, so a relay never wraps)
        relay = Sparse(weights=sp.identity(n_out, format="csr", dtype=np.int64 if mode == "fixed" else float),
                       num_message_bits=24)
        (out.flatten() if len(out_l) > 1 else out).connect(relay.s_in)
        out = relay.a_out.reshape(out_l) if len(out_l) > 1 else relay.a_out
        connections.append(relay)
    if syn.kind != "conv" and len(out_l) > 1 and syn.delay == 0:
        out = out.reshape(out_l)
    out.connect(dst_port)
    return conn


def _lava_weight(syn: Synapse, w: np.ndarray) -> np.ndarray:
    """Synapse weights (IR layout) -> what Lava's Dense/Conv/Sparse take."""
    if syn.kind == "conv":
        # Lava's Conv takes (C_out, W, H, C_in) and convolves (flips the kernel); torch correlates.
        return np.ascontiguousarray(np.transpose(w, (0, 3, 2, 1))[:, ::-1, ::-1, :])
    pin, pout = lava_order(syn.in_shape), lava_order(syn.out_shape)
    if syn.kind == "sparse":
        from scipy import sparse as sp
        return sp.diags(w[pin]).tocsr()
    return np.ascontiguousarray(w[pout][:, pin])


def build(spec: NetSpec, mode: str = "float", samples: int = 1, record: bool = False,
          fixed: Optional[FixedPoint] = None, neuron: str = "ilif", fast_conv: bool = True,
          quantized: Optional[QuantizedNet] = None) -> LavaNetwork:
    """Create the Lava processes of ``spec``.

    Args:
        mode: "float" or "fixed".
        samples: samples per run (one Lava run streams them back to back).
        record: also record every layer's spikes (one sink process per layer).
        fixed: fixed-point settings (mode "fixed").
        quantized: the fixed-point network (mode "fixed"; default: ``quantize_spec(spec, fixed)``).
        neuron: "ilif" (this project's process) or "lava_lif" (Lava's built-in LIF, hard reset,
            for speed comparisons only: its dynamics differ from ILIF/soft-reset LIF).
    """
    require_lava()
    if mode not in MODES:
        raise UserError(f"mode must be one of {list(MODES)}, got {mode!r}")
    (LAVA_FIXED if mode == "fixed" else LAVA_FLOAT).check(spec.neuron_views())
    if spec.timesteps < 1:
        raise UserError("the network description has no number of time steps T")
    import tempfile

    from lava.proc.io.source import RingBuffer as Source

    from .process import ILIF, FileRecorder

    if mode == "fixed" and quantized is None:
        quantized = quantize_spec(spec, fixed)
    fp = fixed or (quantized.fp if quantized else FixedPoint())
    if neuron == "lava_lif" and (any(lay.syn_lam for lay in spec.layers) or any(s.recurrent for s in spec.synapses)):
        raise UserError("neuron='lava_lif' (Lava's LIF, for speed comparisons) takes no recurrent or synaptic-current "
                        "layers")
    T = spec.timesteps
    workdir = tempfile.TemporaryDirectory(prefix="ilif-lava-")
    W = T + spec.prefill  # a sample's window (LavaNetwork.window)
    if spec.prefill and any(s.delay for s in spec.synapses):
        raise UserError("a network with delta encoders and a shortcut that skips layers: Lava's delay relays would "
                        "carry the previous sample's messages into the next one's pre-fill; run it with --engine torch")
    steps = (samples + -(-spec.depth // W)) * W
    recorders: Dict[str, Tuple[object, str]] = {}

    def recorder(name: str, shape, dtype: str):
        path = f"{workdir.name}/{len(recorders)}.bin"
        np.memmap(path, dtype=dtype, mode="w+", shape=(steps,) + tuple(shape)).flush()
        rec = FileRecorder(shape=shape, steps=steps, path=path, dtype=dtype)
        recorders[name] = (rec, path)
        return rec

    src = Source(data=np.zeros(lava_shape(spec.input_shape) + (steps,)))
    neurons: Dict[str, object] = {}
    ports = {INPUT: src.s_out}
    connections: list = []
    counted: Dict[str, list] = {}
    readout_scale = 1.0
    for layer in spec.layers + [spec.readout]:
        indexed = spec.incoming_indexed(layer.name)
        incoming = [s for _, s in indexed]
        weights = [quantized.mantissas[i] if mode == "fixed" else s.weight for i, s in indexed]
        shape_l = lava_shape(layer.shape)
        if layer is spec.readout:
            dst = recorder(OUTPUT, shape_l, "float64" if mode == "float" else "int64")
            readout_scale = quantized.readout_scale if mode == "fixed" else 1.0
        elif neuron == "lava_lif":
            from lava.proc.lif.process import LIF
            p = layer.params
            dst = LIF(shape=shape_l, du=1.0, dv=1.0 - p.lam, vth=p.v_th, bias_mant=to_lava(layer.bias, layer.shape),
                      name=layer.name)
        else:
            fx = None
            if mode == "fixed":
                q = quantized.layers[layer.name]
                fx = dataclasses.replace(q, bias_int=to_lava(np.broadcast_to(q.bias_int, layer.shape), layer.shape))
            dst = ILIF(shape=shape_l, params=layer.params, bias=to_lava(layer.bias, layer.shape),
                       syn_lam=layer.syn_lam, delay=layer.depth, period=W, fixed=fx, name=layer.name,
                       run_steps=steps, prefill=spec.prefill)
        key = OUTPUT if layer is spec.readout else layer.name
        if layer is not spec.readout:
            neurons[layer.name] = dst
            ports[layer.name] = dst.s_out
        shifts = [quantized.post_shifts[i] if mode == "fixed" else 0 for i, _ in indexed]
        counted[key] = [_connect(ports[syn.source], syn, _lava_weight(syn, w), dst.r_in if syn.recurrent else dst.a_in,
                                 mode, connections, k) for syn, w, k in zip(incoming, weights, shifts)]
        if hasattr(dst, "wraps"):
            counted[key].append(dst)
    if record:
        for layer in spec.layers:  # 0/1 spikes in a byte; counts and a delta encoder's messages need more
            proc = neurons[layer.name]
            kind = ("float32" if layer.delta and mode == "float" else "int32" if layer.delta or layer.params.multi_spike
                    else "uint8")
            proc.s_out.connect(recorder(layer.name, proc.s_out.shape, kind).a_in)
    return LavaNetwork(spec=spec, mode=mode, samples=samples, source=src, neurons=neurons, recorders=recorders,
                       workdir=workdir, fp=fp, quantized=quantized, readout_scale=readout_scale,
                       connections=connections, fast_conv=fast_conv, counted=counted)


def run_layer(x: np.ndarray, params, mode: str = "float") -> Dict[str, np.ndarray]:
    """Run one ILIF layer in Lava on analog input currents ``x`` ``[T, N]`` (no synapse scaling).

    The input reaches the neuron through an identity ``Dense`` (graded spikes), as direct input
    does in a network.  Returns ``spikes``, ``v`` (= m[t]), ``mpiu``, ``ciu`` (pre-clamp), each ``[T, N]``.
    """
    require_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from .process import ILIF

    if mode != "float":
        raise ValueError("run_layer supports mode='float' only")
    T, n = x.shape
    src = Source(data=np.ascontiguousarray(x.T.astype(np.float64)))
    dense = Dense(weights=np.eye(n), num_message_bits=24)
    neu = ILIF(shape=(n,), params=params, delay=1, period=T)
    sink = Sink(shape=(n,), buffer=T + 1)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(neu.a_in)
    neu.s_out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag=MODES[mode])
    out = {"v": [], "mpiu": [], "ciu": []}
    try:
        neu.run(condition=RunSteps(num_steps=1), run_cfg=cfg)  # the Dense delay step
        for _ in range(T):
            neu.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            for k in out:
                out[k].append(getattr(neu, k).get())
        spikes = sink.data.get()[:, 1:T + 1].T
    finally:
        neu.stop()
    res = {k: np.stack(v).astype(np.float32) for k, v in out.items()}
    res["spikes"] = spikes.astype(np.float32)
    return res
