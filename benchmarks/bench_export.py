"""Benchmark: the whole export command per target -- wall time and peak memory against the model's weight bytes.

    .venv/bin/python benchmarks/bench_export.py [--pairs 3] [--targets onnx,lava,nir]

(``scripts/setup.sh --test`` makes that venv, Lava included; without Lava the lava target is skipped.)

Model: spiking_resnet18 in the authors' checkpoint layout (random weights, BatchNorm calibrated to ~30 % firing,
tests/conftest.py), CIFAR-10 setting (T = 6).  Each round runs ``ilif-export r18.pth --arch spiking_resnet18
--dataset cifar10 --target X -o out --threads 1`` (``--threads N``; 0 leaves torch's default) for every target in
turn, each in a fresh process (start-up, imports, loading, tracing, the lowering check of 8 samples and the atomic
write included), and a bare ``python -c "import torch"`` (the baseline every tool pays).  Printed per target: the
median wall time, its ratio to the ONNX export's (goal for Lava: <= 1.5x), and the median peak RSS (``os.wait4``)
above the baseline, in MB and as a multiple of the model's float32 weight bytes (goal: <= 3x).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MAKE_MODEL = """
import importlib.util, sys, torch
from pathlib import Path
root, out = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(root / "tests"))
spec = importlib.util.spec_from_file_location("bench_conftest", root / "tests" / "conftest.py")
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)
conftest.make_authors_resnet18(out, seed=0)
state = torch.load(out, weights_only=True)["net"]
print(sum(v.numel() * 4 for v in state.values() if v.is_floating_point()) / 2 ** 20)
"""


def run(cmd) -> tuple:
    """(wall seconds, peak RSS in MB) of ``cmd`` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3, help="rounds over all targets")
    ap.add_argument("--targets", default="onnx,lava,nir")
    ap.add_argument("--threads", type=int, default=1, help="--threads of every export (0: torch's default)")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if "lava" in targets and importlib.util.find_spec("lava") is None:
        print("lava not installed: the lava target is skipped (scripts/setup.sh --test installs it)")
        targets.remove("lava")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "r18.pth"
        # the model is made in a child process: a parent holding torch and a ResNet would be copied into every
        # forked child, and its pages counted in their peak RSS before they exec
        weight_mb = float(subprocess.run([sys.executable, "-c", MAKE_MODEL, str(ROOT), str(model)], check=True,
                                         capture_output=True, text=True).stdout.split()[-1])
        suffix = {"onnx": ".onnx", "lava": ".lava.h5", "nir": ".nir", "ir": ".ir.npz"}
        times = {t: [] for t in ["torch"] + targets}
        rss = {t: [] for t in ["torch"] + targets}
        for _ in range(args.pairs):
            w, m = run([sys.executable, "-c", "import torch"])
            times["torch"].append(w)
            rss["torch"].append(m)
            for t in targets:
                out = tmp / f"r18{suffix[t]}"
                w, m = run([str(BIN / "ilif-export"), str(model), "--arch", "spiking_resnet18", "--dataset", "cifar10",
                            "--target", t, "-o", str(out)]
                           + (["--threads", str(args.threads)] if args.threads else []))
                times[t].append(w)
                rss[t].append(m)
                out.unlink()
    base = statistics.median(rss["torch"])
    print(f"spiking_resnet18 (CIFAR-10, T=6), --threads {args.threads or 'default'}: {weight_mb:.1f} MB of float32 "
          "weights; import torch: "
          f"{statistics.median(times['torch']):.2f} s, {base:.0f} MB peak RSS; medians of {args.pairs}")
    onnx = statistics.median(times["onnx"]) if "onnx" in times else None
    for t in targets:
        s, m = statistics.median(times[t]), statistics.median(rss[t])
        ratio = f"{s / onnx:5.2f}x ONNX" if onnx else ""
        print(f"  --target {t:<5} {s:7.2f} s  {ratio}   peak RSS {m:6.0f} MB = {m - base:6.0f} MB above torch "
              f"= {(m - base) / weight_mb:5.1f}x the weights   (runs: {', '.join(f'{v:.2f}' for v in times[t])} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
