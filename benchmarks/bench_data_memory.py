"""Peak memory of ``ilif-energy`` on a streamed dataset: 200 vs 2,000 samples (it should not grow).

    .venv/bin/python benchmarks/bench_data_memory.py [--frames 20] [--size 32]

Writes DVS-like event frames ``[N, T, 2, H, W]`` float32 to an ``.npy`` (2,000 samples at T = 20, 32x32:
328 MB) and a small sequence network as an ``.ir.npz``, then runs ``ilif-energy`` in a fresh process for
each sample count and prints its peak RSS (``getrusage`` of the child).  Holding the data in memory would
add the file's size; streaming keeps a batch.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ilif_deploy as D
from ilif_deploy import ir as N


def network(T: int, size: int) -> D.Graph:
    rng = np.random.default_rng(0)
    g = D.Graph(metadata={"timesteps": T, "source": "bench"})
    g.add(N.Input("input", (2, size, size), encoding="sequence"))
    g.add(N.Conv2d("conv", (8, size, size), weight=rng.normal(0, 0.5, (8, 2, 3, 3)), bias=np.full(8, 0.2),
                   padding=1), ["input"])
    g.add(N.Neuron("n1", (8, size, size)), ["conv"])
    g.add(N.AvgPool2d("pool", (8, size // 4, size // 4), kernel=(4, 4), stride=(4, 4)), ["n1"])
    g.add(N.Flatten("flat", (8 * (size // 4) ** 2,)), ["pool"])
    g.add(N.Linear("fc", (10,), weight=rng.normal(0, 0.3, (10, 8 * (size // 4) ** 2))), ["flat"])
    g.add(N.Output("output", (10,)), ["fc"])
    return g.validate()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=20, help="T (default 20, as DVS-Gesture)")
    p.add_argument("--size", type=int, default=32, help="frame height = width (default 32)")
    args = p.parse_args(argv)
    tool = str(Path(sys.executable).parent / "ilif-energy")
    with tempfile.TemporaryDirectory() as d:
        frames = np.lib.format.open_memmap(f"{d}/frames.npy", mode="w+", dtype=np.float32,
                                           shape=(2000, args.frames, 2, args.size, args.size))
        rng = np.random.default_rng(1)
        for i in range(0, 2000, 100):
            frames[i:i + 100] = rng.random(frames[i:i + 100].shape, dtype=np.float32) < 0.1
        frames.flush()
        del frames
        network(args.frames, args.size).save(f"{d}/net.ir.npz")
        size_mb = Path(f"{d}/frames.npy").stat().st_size / 2 ** 20
        print(f"data: {size_mb:.0f} MB of [2000, {args.frames}, 2, {args.size}, {args.size}] float32 frames (.npy)")
        for n in (200, 2000):
            t0 = time.perf_counter()
            # each run in its own process: RUSAGE_CHILDREN then reports the largest child so far,
            # so 200 samples go first
            subprocess.run([tool, f"{d}/net.ir.npz", "--data", f"{d}/frames.npy", "--samples", str(n),
                            "--no-progress", "--batch-size", "32"], check=True, capture_output=True)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"ilif-energy on {n:5d} samples: peak RSS {rss:7.1f} MB, {time.perf_counter() - t0:5.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
