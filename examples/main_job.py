"""The main job on the bundled example: the digits ILIF model (and its LIF twin) through every tool.

    .venv/bin/python examples/main_job.py [--out out] [--samples 100]
    python -m ilif_deploy.examples.main_job          (the same from any folder, once installed)

Runs the console scripts exactly as a user would type them (each command is printed first):
export to the IR file, NIR (with the generic-consumer fidelity check), ONNX and Lava; simulate the
Lava export on Lava's CPU backend in float and fixed point; fine-tune the model for 4-bit weights through
the fixed-point forward and run the result on the torch engine (bit-exact with Lava) over all 450 test digits;
the LIF-vs-ILIF energy report.
Everything lands in ``--out``.  Exits non-zero as soon as a step fails.  Without Lava (a plain ``pip install``)
the steps that run it are skipped and the last line names them and how to add Lava.
"""
from __future__ import annotations

import argparse
import importlib.util
import shlex
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def lava_installed() -> bool:
    """Whether Lava can be imported (looked up, not imported: that takes seconds)."""
    return importlib.util.find_spec("lava") is not None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.add_argument("--samples", type=int, default=100, help="digits test samples for the Lava simulations")
    p.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs (default 30, ~25 s)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ilif, lif = "example:digits_ilif", "example:digits_lif"  # the bundled models
    n = str(args.samples)
    steps = [
        ["ilif-export", ilif, "--target", "ir", "-o", out / "digits_ilif.ir.npz", "--summary"],
        ["ilif-export", ilif, "--target", "nir", "-o", out / "digits_ilif.nir", "--fidelity",
         "--json", out / "nir_export.json"],
        ["ilif-export", ilif, "--target", "onnx", "-o", out / "digits_ilif.onnx", "--fidelity"],
        ["ilif-export", ilif, "--target", "lava", "-o", out / "digits_ilif.lava.h5"],
        ["ilif-simulate", out / "digits_ilif.lava.h5", "--data", "digits", "--samples", n, "--mode", "float",
         "--json", out / "simulate_float.json"],
        ["ilif-simulate", out / "digits_ilif.lava.h5", "--data", "digits", "--samples", n, "--mode", "fixed",
         "--json", out / "simulate_fixed.json"],
        ["ilif-finetune", ilif, "--weight-bits", "4", "--train-thresholds", "--epochs", args.epochs,
         "-o", out / "digits_ilif_w4.ir.npz", "--json", out / "finetune_w4.json"],
        ["ilif-simulate", out / "digits_ilif_w4.ir.npz", "--data", "digits", "--samples", "all", "--engine", "torch",
         "--mode", "fixed", "--json", out / "simulate_w4_fixed.json"],
        ["ilif-energy", ilif, "--data", "digits", "--compare", lif, "--name", "ILIF", "--compare-name", "LIF",
         "--csv", out / "energy.csv", "--json", out / "energy.json", "--markdown", out / "energy.md",
         "--html", out / "energy.html"],
    ]
    t_all = time.perf_counter()
    lava = lava_installed()  # ilif-simulate runs Lava; writing its file needs h5py only
    skipped = []
    for cmd in steps:
        cmd = [str(BIN / cmd[0])] + [str(c) for c in cmd[1:]]
        shown = " ".join(shlex.quote(c) for c in [Path(cmd[0]).name] + cmd[1:])
        if not lava and cmd[0].endswith("ilif-simulate") and "torch" not in cmd:
            skipped.append(shown)
            continue
        print(f"\n$ {shown}", flush=True)
        t0 = time.perf_counter()
        if subprocess.run(cmd).returncode != 0:
            print(f"main job: step failed: {shown}", file=sys.stderr)
            return 1
        print(f"({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"\nmain job done in {time.perf_counter() - t_all:.0f} s; outputs in {out}:")
    for f in sorted(out.iterdir()):
        print(f"  {f.name:28s} {f.stat().st_size:>10,d} bytes")
    if skipped:
        print(f"main job: skipped {len(skipped)} step(s) that run Lava, which is not installed "
              f"({'; '.join(skipped)}); add it as scripts/setup.sh does (pip install -r requirements-lava.txt, then "
              f"pip install --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0; docs/lava.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
