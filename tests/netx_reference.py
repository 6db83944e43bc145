"""lava-dl's own netx loader as the reference for netx files: one sample through ``lava.lib.dl.netx.hdf5.Network``
on Lava's fixed_pt models, every layer's spikes (tests/test_netx_fixed.py, benchmarks/netx_fixed_conformance.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def netx_spikes(path: Path, x: np.ndarray, graph, T: int) -> dict:
    """{layer name: spikes [T, *shape] (IR layout)} of lava-dl's netx running ``path`` on one sample ``x``
    ([T, *input_shape] spikes, or [*input_shape] integer frame for an input neuron) in Lava fixed_pt; with a
    readout (a last dense layer without a neuron) also ``"readout"``: its ``v = u + bias`` per step [T, n]."""
    from lava.proc.io.source import RingBuffer as Source

    from ilif_deploy.converters.lava.compat import require_netx
    from ilif_deploy.converters.lava.network import from_lava, to_lava

    netx = require_netx()
    names = [n.name for n in graph.nodes.values() if n.op in ("neuron", "recurrent_neuron")]
    input_neuron = "layer0" in graph.nodes and "layer0.encode" in graph.nodes
    # netx's own way to run one sample of T steps through its pipeline: every layer resets u and v every T
    # steps, each one step after the layer before (its connection's delay) -- our engine's windows
    net = netx.hdf5.Network(net_config=str(path), reset_interval=T, reset_offset=0 if input_neuron else 1)
    lag = len(net.layers) - (1 if input_neuron else 0)
    steps = T + lag + 1
    if input_neuron:
        enc = graph.nodes["layer0.encode"]
        frame = np.rint(x * enc.scale.reshape(-1, *[1] * (x.ndim - 1)) + enc.shift.reshape(-1, *[1] * (x.ndim - 1)))
        net.in_layer.neuron.bias_mant.init = to_lava(frame, frame.shape).astype(np.int32)
        src = None
    else:
        frames = to_lava(np.concatenate([x, np.zeros((steps - T,) + x.shape[1:], x.dtype)]), x.shape[1:])
        src = Source(data=np.moveaxis(frames, 0, -1))
        src.s_out.connect(net.inp)
    import h5py

    with h5py.File(path, "r") as f:  # a last dense layer without a neuron: netx's readout, whose v we probe
        last = f["layer"][str(len(f["layer"]) - 1)]
        readout = "neuron" not in last and last["type"][0] in (b"dense", "dense")
    monitor = None
    if readout:
        from lava.proc.monitor.process import Monitor

        monitor = Monitor()
        monitor.probe(target=net.layers[-1].neuron.v, num_steps=steps)
    sinks = _layer_sinks(net, steps)
    try:
        got = _run_fixed_pt(net, steps, sinks)
        v = None
        if monitor is not None:
            data = monitor.get_data()
            v = np.asarray(next(iter(next(iter(data.values())).values())))  # [steps, n], Loihi units (x 2**6)
    finally:
        net.stop()
    out = {}
    if v is not None:  # the readout: v = u + bias in the file's integers, for steps 0..T-1 of the sample
        delay = len(got) - 1 if input_neuron else len(got)
        out["readout"] = v[delay:delay + T].astype(np.float64) / 64.0
        got, names = got[:-1], names
    for i, (name, g) in enumerate(zip(names, got)):
        shape = tuple(graph.nodes[name].shape)
        delay = i if input_neuron else i + 1
        out[name] = from_lava(g[delay:delay + T], shape).reshape(T, *shape)
    return out


def netx_sdnn_outputs(path: Path, frames: np.ndarray) -> list:
    """lava-dl's netx running the SDNN file ``path`` on Lava fixed_pt: every layer's messages per step as Lava sends
    them ([T, *shape] in IR layout, graded payloads with 6 fractional bits; a sigma_output its sigma, 12 more), for
    integer ``frames`` [T, C, H, W] fed to the input layer's Delta encoder, each layer aligned to the step of the
    frame it answers (one step per synapse); what a layer sends before the frames reach it (Lava runs every layer
    from the first step, so a bias is sent early) is not among them: ilif-deploy's engine runs that pre-fill too
    (NetSpec.prefill)."""
    from lava.proc.io.source import RingBuffer as Source

    from ilif_deploy.converters.lava.compat import require_netx
    from ilif_deploy.converters.lava.network import from_lava, to_lava

    netx = require_netx()
    T = frames.shape[0]
    net = netx.hdf5.Network(net_config=str(path))
    steps = T + len(net.layers)
    padded = np.concatenate([frames, np.zeros((steps - T,) + frames.shape[1:], frames.dtype)])
    src = Source(data=np.moveaxis(to_lava(padded, frames.shape[1:]), 0, -1).astype(np.int32))
    # netx 0.6.0's Input block leaves its InPort unconnected inside (its sub-model cannot compile): feed the Delta
    src.s_out.connect(net.layers[0].neuron.a_in)
    sinks = _layer_sinks(net, steps)
    try:
        got = _run_fixed_pt(net, steps, sinks)
    finally:
        net.stop()
    out = []
    for i, (g, layer) in enumerate(zip(got, net.layers)):
        a = np.asarray(from_lava(g[i:i + T], _ir_shape(layer)), np.float64)
        out.append(a)
    return out


def _ir_shape(layer) -> tuple:
    shape = tuple(layer.out.shape)  # Lava's (W, H, C) or (N,)
    return shape[::-1] if len(shape) == 3 else shape


def _layer_sinks(net, steps: int) -> list:
    """A ring-buffer sink of ``steps`` on every layer's output of a netx network."""
    from lava.proc.io.sink import RingBuffer as Sink

    sinks = []
    for layer in net.layers:
        sink = Sink(shape=layer.out.shape, buffer=steps)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    return sinks


def _run_fixed_pt(net, steps: int, sinks: list) -> list:
    """Run ``net`` for ``steps`` steps on Lava's fixed_pt models; every sink's values ``[steps, *shape]``."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    return [np.moveaxis(s.data.get(), -1, 0) for s in sinks]
