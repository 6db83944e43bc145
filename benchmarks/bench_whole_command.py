"""Benchmark: the whole command a user runs, against the script they would otherwise write.

    .venv/bin/python benchmarks/bench_whole_command.py [--pairs 3] [--samples 32]

(SpikingJelly 2.0 in the same venv: ``.venv/bin/pip install --no-deps spikingjelly==2.0.0 loguru``; scripts/setup.sh
--test installs it.)

Model: spiking_resnet18 in the authors' checkpoint layout (random weights, BatchNorm calibrated to ~30 % firing),
T = 4, ``--samples`` random 3x32x32 frames in an ``.npy``, batch 8, one thread on both sides.  Each pair runs, in
turn and in fresh processes (start-up, imports, loading and tracing included):

- ``ilif-energy r18.pth --arch spiking_resnet18 --data x.npy -T 4 --batch-size 8 --threads 1`` (the whole report:
  per-layer ACs/MACs, energy, firing rates), and
- a 15-line script that loads the same checkpoint into the same torch module (``ilif_deploy.load_model``, the
  authors' architecture) and counts synaptic operations with SpikingJelly 2.0's ``SynOpCounter`` under
  ``DispatchCounterMode`` on the same frames and batches, ``torch.set_num_threads(1)`` first.

Prints each pair's wall times, the median of the ratio script / ilif-energy (goal >= 1.4x: the in-process
ratio, 1.5-1.6x, is the ceiling) and the peak RSS of each (``os.wait4``); then, for ``simulate(engine="torch",
mode="fixed")`` on the same data (``ilif-simulate --engine torch``), the share of its CPU time spent in the engine
with and without a reference run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SCRIPT = r"""
import sys, numpy as np, torch
torch.set_num_threads(1)
from ilif_deploy import load_model
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
model = load_model(sys.argv[1], arch="spiking_resnet18", num_classes=10).eval()
x = np.load(sys.argv[2])
counter = SynOpCounter()
with torch.no_grad(), DispatchCounterMode([counter]):
    for i in range(0, len(x), 8):
        xb = torch.as_tensor(x[i:i + 8])
        model(xb.unsqueeze(0).expand(4, *xb.shape).contiguous())
print(counter.get_total())
"""


def timed(argv, cwd) -> tuple:
    """(wall seconds, peak RSS in MB, stdout) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({p.returncode})")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=32)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_authors_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_authors_checkpoint(d / "r18.pth")
        np.save(d / "x.npy", np.random.default_rng(0).random((args.samples, 3, 32, 32)).astype(np.float32))
        ours = [str(BIN / "ilif-energy"), "r18.pth", "--arch", "spiking_resnet18", "--num-classes", "10",
                "--data", "x.npy", "-T", "4", "--batch-size", "8", "--threads", "1", "--no-progress"]
        theirs = [sys.executable, "-c", SCRIPT, "r18.pth", "x.npy"]
        ratios = []
        for i in range(args.pairs):
            a, rss_a, _ = timed(ours, d)
            b, rss_b, _ = timed(theirs, d)
            ratios.append(b / a)
            print(f"pair {i + 1}: ilif-energy {a:.2f} s ({rss_a:.0f} MB), SynOpCounter script {b:.2f} s "
                  f"({rss_b:.0f} MB), ratio {b / a:.2f}x", flush=True)
        print(f"median ratio SynOpCounter script / ilif-energy, whole commands at 1 thread: "
              f"{statistics.median(ratios):.2f}x (goal >= 1.4x)")
        import torch

        from ilif_deploy.converters import open_graph
        from ilif_deploy.converters.lava import simulate

        torch.set_num_threads(1)
        g = open_graph(d / "r18.pth", arch="spiking_resnet18", num_classes=10, timesteps=4)
        x = np.load(d / "x.npy")
        for reference in ("runtime", "none"):
            t0 = time.process_time()
            rep = simulate(g, x=x, mode="fixed", engine="torch", batch=8, progress=False, compare=reference)
            total = time.process_time() - t0
            print(f"simulate(engine='torch', mode='fixed', compare={reference!r}), {args.samples} samples: "
                  f"{total:.2f} s CPU, the engine {rep.details['seconds']:.2f} s = "
                  f"{100 * rep.details['seconds'] / total:.0f} % (goal >= 80 % without a reference), "
                  f"{rep.details['samples_per_second']:.1f} samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
