"""First contact: how long ``--help`` and ``--version`` of every tool take, against a bare ``import torch``.

    .venv/bin/python benchmarks/bench_cli_startup.py [--repeats 5]

Each command runs as a user types it (the console script, a fresh process); the median of ``--repeats`` runs is
printed.  Goal: under 0.5 s (the tools answer without importing torch; ``import torch`` alone is the reference).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def seconds(cmd, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch_s = seconds([sys.executable, "-c", "import torch"], args.repeats)
    print(f"{'import torch (reference)':32s} {torch_s:6.3f} s")
    worst = 0.0
    for tool in ("ilif-export", "ilif-energy", "ilif-simulate", "ilif-finetune"):
        for flag in ("--help", "--version"):
            s = seconds([str(BIN / tool), flag], args.repeats)
            worst = max(worst, s)
            print(f"{tool + ' ' + flag:32s} {s:6.3f} s   ({s / torch_s:.2f}x import torch)")
    print(f"slowest: {worst:.3f} s (goal < 0.5 s): {'met' if worst < 0.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
