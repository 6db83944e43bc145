"""Time per sample-step of the digits ILIF network on Lava (CPU) vs the same topology with Lava's
built-in LIF process, and vs the torch runtime.  Run: ``.venv/bin/python benchmarks/bench_lava.py``.

Both Lava networks have the same processes and connections (source, Conv/Dense synapses, two
neuron layers, a readout recorder); only the neuron process differs.  Compile and start-up are
timed separately; steady-state steps are timed over ``--samples`` samples, repeated ``--repeats``
times alternating the two networks, and the median is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def lava_step_times(spec, neuron: str, samples: int, repeats: int, mode: str):
    from ilif_deploy.converters.lava.network import build
    from ilif_deploy.data import digits

    T = spec.timesteps
    x, _ = digits("test")
    net = build(spec, mode=mode, samples=samples, neuron=neuron)
    net.source.data.init = net.encode(np.repeat(x[:samples, None], T, axis=1))
    t0 = time.perf_counter()
    net._run(T)  # compile + start the worker processes
    startup = time.perf_counter() - t0
    times = []
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            net._run(samples * T)
            times.append((time.perf_counter() - t0) / (samples * T))
    finally:
        net.stop()
    return startup, times, net.processes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dense-conv-limit", type=int, default=0,
                   help="write convs up to this many matrix entries as Dense (default 0: Lava Conv)")
    args = p.parse_args(argv)

    import ilif_deploy as D
    from ilif_deploy.converters.lava.netspec import build_netspec
    from ilif_deploy.data import digits
    from ilif_deploy.runtime import run

    graph = D.trace(D.load_model(ROOT / "examples/models/digits_ilif.pt"), (1, 8, 8), 4)
    spec = build_netspec(graph, dense_conv_limit=args.dense_conv_limit)
    T = spec.timesteps
    x, _ = digits("test")
    xb = torch.from_numpy(x[:args.samples])
    # One torch thread: with 2 OpenMP threads on a loaded 2-core machine torch's thread pool
    # spins and was measured 35x slower (6.6 vs 0.19 ms per sample-step); Lava's workers are
    # single-threaded processes too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run(graph, xb[:2])  # warm-up
    # torch first: once Lava's worker processes have run, the machine is busier for a while
    batched, single = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run(graph, xb)
        batched.append((time.perf_counter() - t0) / (args.samples * T))
        n1 = min(args.samples, 20)
        t0 = time.perf_counter()
        for i in range(n1):
            run(graph, xb[i:i + 1])
        single.append((time.perf_counter() - t0) / (n1 * T))
    torch_batched, torch_single = statistics.median(batched), statistics.median(single)
    torch.set_num_threads(threads)
    res = {"ilif": [], "lava_lif": []}
    startup = {}
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        for neuron in res:
            # float models: Lava's fixed-point LIF would need integer parameters of its own
            s, times, procs = lava_step_times(spec, neuron, args.samples, 1, "float")
            res[neuron] += times
            startup[neuron] = s

    ilif, lif = statistics.median(res["ilif"]), statistics.median(res["lava_lif"])
    print(f"digits network ({len(spec.layers)} neuron layers, {procs} Lava processes, floating_pt, "
          f"{'Dense' if args.dense_conv_limit else 'Conv'} synapses for the convs), {args.samples} samples x T={T}")
    print(f"  Lava, ILIF process                 : {1e3 * ilif:8.3f} ms per sample-step  "
          f"(runs {', '.join(f'{1e3 * t:.3f}' for t in res['ilif'])}; start-up {startup['ilif']:.2f} s)")
    print(f"  Lava, built-in LIF process         : {1e3 * lif:8.3f} ms per sample-step  "
          f"(runs {', '.join(f'{1e3 * t:.3f}' for t in res['lava_lif'])}; start-up {startup['lava_lif']:.2f} s)")
    print(f"  torch runtime, batch {args.samples:<4d}  (1 thread): {1e3 * torch_batched:8.3f} ms per sample-step")
    print(f"  torch runtime, batch 1    (1 thread): {1e3 * torch_single:8.3f} ms per sample-step")
    print(f"ratio ILIF / LIF on Lava     : {ilif / lif:.2f}x (goal <= 1.2x)")
    print(f"ratio Lava ILIF / torch      : {ilif / torch_batched:.1f}x (torch batched), "
          f"{ilif / torch_single:.2f}x (torch batch 1)")
    import os
    print(f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
