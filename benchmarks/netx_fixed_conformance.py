"""lava-dl netx networks in fixed point: ilif-deploy's torch engine and Lava build against lava-dl's own loader
(``lava.lib.dl.netx.hdf5.Network`` on Lava's ``fixed_pt`` models), spike for spike on every layer and step.

    .venv/bin/python benchmarks/netx_fixed_conformance.py [FILE.net ...] [-T 16] [--samples 3]

Without files: every ``.net`` of ../shared/interop/netx.  Input: random spikes (p = 0.03 per step) for a
network that takes spikes; for one whose input layer is a neuron (netx drives it through its bias), random
integer frames, which netx's caller turns into the bias with the input layer's transform (``weight * x +
bias``) and our reading does in the graph.  netx runs with ``reset_interval = T`` (its way of running one sample
of T steps through its pipeline).  Prints, per file and format, the values compared, the mismatches and the
saturated states.

A sigma-delta (SDNN) file is fed integer frames (0..255, changing for the first half of the T steps, then held, so
the deltas die out) through its Delta input layer; netx never resets a sigma-delta, so one sample runs from Lava's
first step, and its graded messages (every layer, every step) and the sigma_output are compared with the engine's,
which runs the same pre-fill (NetSpec.prefill).  lava-dl's own SDNN files (its PilotNet SDNN tutorial and test
networks) are in its repository, e.g. ``tutorials/lava/lib/dl/netx/pilotnet_sdnn/network.net``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from netx_reference import netx_sdnn_outputs, netx_spikes  # noqa: E402 - the tests' own reference run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("-T", type=int, default=16)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--no-lava-build", dest="lava_build", action="store_false",
                    help="skip running our own Lava build of each network")
    ap.add_argument("--rate", type=float, default=0.03, help="input spike probability per step")
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
        if spec.prefill:
            sdnn(path, graph, spec, args, rng)
            continue
        input_neuron = "layer0.encode" in graph.nodes
        cases = []  # (engine input [T, *shape], netx's spikes), the same for every format
        for _ in range(args.samples):
            if input_neuron:
                frame = rng.integers(0, 4, graph.input_shape).astype(np.float32)
                cases.append((np.broadcast_to(frame, (args.T, *graph.input_shape)).copy(),
                               netx_spikes(path, frame, graph, args.T)))
            else:
                x = (rng.random((args.T, *graph.input_shape)) < args.rate).astype(np.float32)
                cases.append((x, netx_spikes(path, x, graph, args.T)))
        fired = sum(int(v.sum()) for _, ref in cases for k, v in ref.items() if k != "readout")
        for label, fp in (("ilif-deploy default (16, 8)", FixedPoint()),
                          ("the file's own (6, 0)", native_format(graph.metadata))):
            engine = TorchEngine(spec, "fixed", fp)
            compared = mismatched = saturated = 0
            for x, ref in cases:
                r = engine.run(torch.as_tensor(x)[:, None])
                for name, want in ref.items():  # every layer's spikes, and a readout's v per step
                    got = (r.output if name == "readout" else r.spikes[name])[:, 0].numpy().reshape(want.shape)
                    compared += int(want.size)
                    mismatched += int((got != want).sum())
                saturated += sum(r.overflows.values())
            print(f"{path.name:28s} {label:28s} values compared {compared:>9,} (netx spikes {fired:>7,})  "
                  f"mismatched {mismatched:>6,}  saturated states {saturated:,}", flush=True)
        if args.lava_build:  # our own Lava build of the network, in the file's format, against our torch engine
            from ilif_deploy.converters.lava import simulate

            rep = simulate(graph, x=np.stack([x for x, _ in cases]), mode="fixed", engine="torch",
                           verify=len(cases), progress=False)
            v = rep.details["verify"]
            print(f"{path.name:28s} our Lava build vs torch engine: spike mismatches {v['spike_mismatches']}, "
                  f"saturated states {sum(rep.details['overflows'].values())}", flush=True)
    return 0


def sdnn(path: Path, graph, spec, args, rng) -> None:
    """One SDNN file: every layer's messages and the sigma_output against lava-dl's netx, in the file's format."""
    from ilif_deploy.converters.lava.engine import TorchEngine

    engine = TorchEngine(spec, "fixed")
    names = [lay.name for lay in spec.layers]
    readout = spec.readout.syn_lam == 1.0  # a sigma_output (else the last layer's messages are the output)
    compared = mismatched = messages = saturated = wraps = 0
    for _ in range(args.samples):
        frames = rng.integers(0, 256, size=(args.T, *graph.input_shape))
        frames[args.T // 2:] = frames[args.T // 2 - 1]
        ref = netx_sdnn_outputs(path, frames)
        r = engine.run(torch.as_tensor(frames[:, None].astype(np.float32)))
        ours = [r.spikes[k][:, 0].numpy() * 2.0 ** 6 for k in names]
        if readout:
            ours.append(r.output[:, 0].numpy() * 2.0 ** 12)
        for got, want in zip(ours, ref):
            compared += int(want.size)
            mismatched += int((got.reshape(want.shape) != want).sum())
        messages += sum(int((want != 0).sum()) for want in ref[:len(names)])
        saturated += sum(r.overflows.values())
        wraps += sum(r.synapse_wraps.values())
    print(f"{path.name:28s} SDNN at the file's integers: values compared {compared:,} (netx messages {messages:,}), "
          f"mismatched {mismatched:,}, saturated {saturated:,}, wrapped sums {wraps:,}", flush=True)
    if args.lava_build:
        from ilif_deploy.converters.lava import simulate

        x = np.stack([rng.integers(0, 256, size=(args.T, *graph.input_shape)) for _ in range(args.samples)])
        rep = simulate(graph, x=x.astype(np.float32), mode="fixed", engine="torch", verify=args.samples,
                       progress=False)
        v = rep.details["verify"]
        print(f"{path.name:28s} our Lava build vs torch engine: spike mismatches {v['spike_mismatches']}, "
              f"max |readout diff| {v['max_abs_logit_diff']:g}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
