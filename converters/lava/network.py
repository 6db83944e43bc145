"""NetSpec -> Lava processes on ``Loihi2SimCfg`` (CPU), and a runner that streams many samples.

One built network serves all samples: the source plays the samples back to back (T steps each)
and every ILIF process resets itself at the start of each of its windows, so the network runs
as a pipeline, one sample per T steps, without rebuilding or pausing.  Arrays arrive in the IR's
channel-first layout and are converted here to Lava's (W, H, C) layout.

Modes: ``"float"`` (floating_pt models; Lava's connection processes compute in float64, the ILIF
model rounds the incoming current to float32 like the torch runtime) and ``"fixed"``
(fixed_pt models: 8-bit weight mantissas with one exponent per target layer, integer state; see
:class:`converters.lava.process.ilif.PyILIFModelFixed`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .compat import require_lava
from .netspec import INPUT, OUTPUT, Layer, NetSpec, Synapse

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
class FixedPoint:
    """Fixed-point settings: state LSB = 2**-frac_bits; analog input LSB = 2**-input_frac_bits."""

    frac_bits: int = 16
    input_frac_bits: int = 8
    weight_bits: int = 8  # signed mantissa, one exponent per target layer


def quantize_layer(incoming: List[Synapse], fp: FixedPoint) -> Tuple[List[np.ndarray], int]:
    """8-bit mantissas (as Lava's mixed-sign Dense wants them: even numbers in [-256, 254]) of every
    synapse into one layer, and the layer's shift ``a_exp`` that turns the summed input into state units."""
    mag = max((np.abs(s.weight).max() * 2.0 ** (fp.frac_bits - (fp.input_frac_bits if s.graded else 0))
               for s in incoming), default=0.0)
    top = 2 ** (fp.weight_bits - 1) - 1
    e = math.ceil(math.log2(mag / top)) if mag > 0 else 0
    mants = []
    for s in incoming:
        g = fp.input_frac_bits if s.graded else 0
        m = np.clip(np.round(s.weight * 2.0 ** (fp.frac_bits - g - e)), -top - 1, top)
        mants.append((2 * m).astype(np.int64))  # Lava's bit-accurate Dense drops the LSB of mixed-sign weights
    return mants, e - 1


@dataclass
class LavaNetwork:
    """A built Lava network: the processes, and how to read its output."""

    spec: NetSpec
    mode: str
    chunk: int
    source: object
    neurons: Dict[str, object]
    out_sink: object
    spike_sinks: Dict[str, object] = field(default_factory=dict)
    readout_scale: float = 1.0
    connections: List[object] = field(default_factory=list)
    _started: bool = False

    @property
    def processes(self) -> int:
        """Number of Lava processes (each one an OS process on the CPU backend)."""
        return 2 + len(self.neurons) + len(self.connections) + len(self.spike_sinks)

    def _run(self, steps: int) -> None:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        self.source.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag=MODES[self.mode]))
        self._started = True

    def stop(self) -> None:
        """Shut the Lava runtime (and its worker processes) down."""
        if self._started:
            self.source.stop()
            self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Samples ``[n, T, *input_shape]`` (IR layout) -> source data ``[*lava_shape, n*T]``."""
        shape = self.spec.input_shape
        n, T = x.shape[:2]
        data = to_lava(x.reshape(n * T, *shape), shape)
        data = np.moveaxis(data, 0, -1)
        if self.mode == "fixed":
            lim = 2 ** 23 - 1
            data = np.clip(np.round(data * 2.0 ** self.fp.input_frac_bits), -lim, lim)
        return np.ascontiguousarray(data)

    def run(self, x: np.ndarray, progress=None) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """Run samples ``x`` ``[n, T, *input_shape]`` through the network.

        Returns the readout per step ``[T, n, *out_shape]`` (the last layer's currents incl. bias,
        float) and, when built with ``record=True``, the spikes of each layer ``[T, n, *shape]``
        in IR layout.  ``progress`` is called with the number of samples finished after each chunk.
        """
        T, C, depth = self.spec.timesteps, self.chunk, self.spec.depth
        n = x.shape[0]
        if x.shape[1] != T:
            raise ValueError(f"input has {x.shape[1]} steps, the network was built for T={T}")
        timeline: Dict[str, List[np.ndarray]] = {k: [] for k in [OUTPUT, *self.spike_sinks]}
        sinks = {OUTPUT: self.out_sink, **self.spike_sinks}
        done = 0
        while done < n:
            part = x[done:done + C]
            if len(part) < C:
                part = np.concatenate([part, np.zeros((C - len(part),) + part.shape[1:], part.dtype)])
            data = self.encode(part)
            if self._started:
                self.source.data.set(data)
            else:
                self.source.data.init = data  # before compiling, a Var's initial value is set directly
            self._run(C * T)
            for k, sink in sinks.items():
                timeline[k].append(sink.data.get())
            done += C
            if progress:
                progress(min(done, n))
        # the last `depth` steps are still in flight: flush them
        self._run(depth)
        for k, sink in sinks.items():
            timeline[k].append(sink.data.get()[..., :depth])
        result = {}
        for k, parts in timeline.items():
            full = np.concatenate(parts, axis=-1)
            d = depth if k == OUTPUT else self.spec.layer(k).depth
            full = full[..., d:d + n * T]  # output of sample s, step t sits at index s*T + t + depth
            full = np.moveaxis(full, -1, 0)
            shape = self.spec.layer(k).shape
            full = from_lava(full, shape).reshape(n, T, *shape).swapaxes(0, 1)
            result[k] = full
        out = result.pop(OUTPUT).astype(np.float64) * self.readout_scale + self.spec.readout.bias
        return out, result


def _connect(src_port, syn: Synapse, w_lava, dst_port, mode: str, connections: list) -> None:
    """One connection process (plus ``syn.delay`` identity relays) from ``src_port`` to ``dst_port``."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.sparse.process import Sparse
    from scipy import sparse as sp

    bits = 24 if syn.graded else 0
    out_l = lava_shape(syn.out_shape)
    if syn.kind == "conv":
        conn = Conv(weight=w_lava, input_shape=lava_shape(syn.in_shape), padding=syn.padding[::-1],
                    stride=syn.stride[::-1], dilation=syn.dilation[::-1], groups=syn.groups,
                    num_message_bits=bits)
        src_port.connect(conn.s_in)
        out = conn.a_out
    else:
        flat_in = src_port.flatten() if len(syn.in_shape) > 1 else src_port
        conn = Dense(weights=w_lava, num_message_bits=bits) if syn.kind == "dense" else \
            Sparse(weights=sp.csr_matrix(w_lava), num_message_bits=bits)
        flat_in.connect(conn.s_in)
        out = conn.a_out
    connections.append(conn)
    n_out = int(np.prod(out_l))
    for _ in range(syn.delay):
        # a residual shortcut is shorter than the main path: delay it by relays (each adds one step)
        relay = Sparse(weights=sp.identity(n_out, format="csr", dtype=np.int64 if mode == "fixed" else float),
                       num_message_bits=24)
        (out.flatten() if len(out_l) > 1 else out).connect(relay.s_in)
        out = relay.a_out.reshape(out_l) if len(out_l) > 1 else relay.a_out
        connections.append(relay)
    if syn.kind != "conv" and len(out_l) > 1 and syn.delay == 0:
        out = out.reshape(out_l)
    out.connect(dst_port)


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


def build(spec: NetSpec, mode: str = "float", chunk: int = 1, record: bool = False,
          fixed: Optional[FixedPoint] = None, neuron: str = "ilif") -> LavaNetwork:
    """Create the Lava processes of ``spec``.

    Args:
        mode: "float" or "fixed".
        chunk: samples per source buffer (one Lava run streams ``chunk`` samples).
        record: also record every layer's spikes (one sink process per layer).
        fixed: fixed-point settings (mode "fixed").
        neuron: "ilif" (this project's process) or "lava_lif" (Lava's built-in LIF, hard reset,
            for speed comparisons only: its dynamics differ from ILIF/soft-reset LIF).
    """
    require_lava()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if spec.timesteps < 1:
        raise ValueError("the network description has no number of time steps T")
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from .process import ILIF

    fp = fixed or FixedPoint()
    T = spec.timesteps
    src = Source(data=np.zeros(lava_shape(spec.input_shape) + (chunk * T,)))
    neurons: Dict[str, object] = {}
    ports = {INPUT: src.s_out}
    connections: list = []
    readout_scale = 1.0
    for layer in spec.layers + [spec.readout]:
        incoming = spec.incoming(layer.name)
        weights = [s.weight for s in incoming]
        a_exp = 0
        if mode == "fixed":
            weights, a_exp = quantize_layer(incoming, fp)
        shape_l = lava_shape(layer.shape)
        if layer is spec.readout:
            dst = Sink(shape=shape_l, buffer=chunk * T)
            readout_scale = 2.0 ** (a_exp - fp.frac_bits) if mode == "fixed" else 1.0
        elif neuron == "lava_lif":
            from lava.proc.lif.process import LIF
            p = layer.params
            dst = LIF(shape=shape_l, du=1.0, dv=1.0 - p.lam, vth=p.v_th, bias_mant=to_lava(layer.bias, layer.shape),
                      name=layer.name)
        else:
            p = layer.params
            fx = None
            if mode == "fixed":
                fx = dict(frac_bits=fp.frac_bits, a_exp=a_exp,
                          bias_int=np.round(to_lava(layer.bias, layer.shape) * 2.0 ** fp.frac_bits).astype(np.int64))
            dst = ILIF(shape=shape_l, lam=p.lam, v_th=p.v_th, lam_u=p.lam_u, lam_i=p.lam_i,
                       ciu_source=p.ciu_source, bias=to_lava(layer.bias, layer.shape), delay=layer.depth,
                       period=T, fixed=fx, name=layer.name)
        for syn, w in zip(incoming, weights):
            _connect(ports[syn.source], syn, _lava_weight(syn, w), dst.a_in, mode, connections)
        if layer is not spec.readout:
            neurons[layer.name] = dst
            ports[layer.name] = dst.s_out
        else:
            out_sink = dst
    spike_sinks = {}
    if record:
        for name, proc in neurons.items():
            sink = Sink(shape=proc.s_out.shape, buffer=chunk * T)
            proc.s_out.connect(sink.a_in)
            spike_sinks[name] = sink
    net = LavaNetwork(spec=spec, mode=mode, chunk=chunk, source=src, neurons=neurons, out_sink=out_sink,
                      spike_sinks=spike_sinks, readout_scale=readout_scale, connections=connections)
    net.fp = fp
    return net


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
    neu = ILIF(shape=(n,), lam=params.lam, v_th=params.v_th, lam_u=params.lam_u, lam_i=params.lam_i,
               ciu_source=params.ciu_source, delay=1, period=T)
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
