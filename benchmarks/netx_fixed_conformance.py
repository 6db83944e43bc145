"""lava-dl netx networks in fixed point: ilif-deploy's torch engine and Lava build against lava-dl's own loader
(``lava.lib.dl.netx.hdf5.Network`` on Lava's ``fixed_pt`` models), spike for spike on every layer and step.

    .venv/bin/python benchmarks/netx_fixed_conformance.py [FILE.net ...] [-T 16] [--samples 3]

Without files: every ``.net`` of ../shared/interop/netx.  Input: random spikes (p = 0.3) for a network that takes
spikes; for one whose input layer is a neuron (netx drives it through its bias), random integer frames, which
netx's caller turns into the bias with the input layer's transform (``weight * x + bias``) and our reading does
in the graph.  Prints, per file and format, the spikes compared, the mismatches and the saturated states.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def netx_spikes(path: Path, x: np.ndarray, graph, T: int) -> dict:
    """{layer name: spikes [T, *shape] (IR layout)} of lava-dl's netx running ``path`` on one sample ``x``
    ([T, *input_shape] spikes, or [*input_shape] integer frame for an input neuron) in Lava fixed_pt."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from ilif_deploy.converters.lava.compat import require_netx
    from ilif_deploy.converters.lava.network import from_lava, to_lava

    netx = require_netx()
    net = netx.hdf5.Network(net_config=str(path))
    names = [n.name for n in graph.nodes.values() if n.op in ("neuron", "recurrent_neuron")]
    input_neuron = "layer0" in graph.nodes and "layer0.encode" in graph.nodes
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
    sinks = []
    for layer in net.layers:
        sink = Sink(shape=layer.out.shape, buffer=steps)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        got = [np.moveaxis(s.data.get(), -1, 0) for s in sinks]
    finally:
        net.stop()
    out = {}
    for i, (name, g) in enumerate(zip(names, got)):
        shape = tuple(graph.nodes[name].shape)
        delay = i if input_neuron else i + 1
        out[name] = from_lava(g[delay:delay + T], shape).reshape(T, *shape)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("-T", type=int, default=16)
    ap.add_argument("--samples", type=int, default=3)
    args = ap.parse_args()
    from ilif_deploy.converters.lava.engine import TorchEngine
    from ilif_deploy.converters.lava.fixed import FixedPoint, native_format
    from ilif_deploy.converters.lava.netspec import build_netspec
    from ilif_deploy.converters.netx import read_netx

    files = args.files or sorted((ROOT.parent / "shared" / "interop" / "netx").glob("*.net"))
    rng = np.random.default_rng(0)
    for path in files:
        graph = read_netx(path, timesteps=args.T)
        spec = build_netspec(graph)
        input_neuron = "layer0.encode" in graph.nodes
        for label, fp in (("ilif-deploy default (16, 8)", FixedPoint()),
                          ("the file's own (6, 0)", native_format(graph.metadata))):
            engine = TorchEngine(spec, "fixed", fp)
            compared = mismatched = saturated = 0
            for _ in range(args.samples):
                if input_neuron:
                    frame = rng.integers(0, 4, graph.input_shape).astype(np.float32)
                    x = np.broadcast_to(frame, (args.T, *graph.input_shape)).copy()
                    ref = netx_spikes(path, frame, graph, args.T)
                else:
                    x = (rng.random((args.T, *graph.input_shape)) < 0.3).astype(np.float32)
                    ref = netx_spikes(path, x, graph, args.T)
                r = engine.run(torch.as_tensor(x)[:, None])
                for name, want in ref.items():
                    got = r.spikes[name][:, 0].numpy()
                    compared += int(want.size)
                    mismatched += int((got != want).sum())
                saturated += sum(r.overflows.values())
            print(f"{path.name:28s} {label:32s} spikes compared {compared:>9,}  mismatched {mismatched:>7,}  "
                  f"saturated states {saturated:,}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
