"""Fixed-point-aware fine-tuning on the digits models: fixed-point test accuracy before and after, and the
time of a fine-tuning epoch against a float training epoch of the same model.

    .venv/bin/python benchmarks/bench_finetune.py [--bits 4 3] [--seeds 0 1 2] [--epochs 30] [--thresholds]

For digits ILIF and LIF (float test accuracy 99.56 % / 99.33 %, Lava's float arithmetic) at each weight-mantissa
width: the torch engine's fixed-point accuracy on all 450 test digits before fine-tuning and after (the last
epoch's network: no epoch is chosen by its test accuracy), per seed of the batch order, and whether the goal --
within 0.3 pp of float -- is met; ``--thresholds`` adds rows with the thresholds trained too.  The time ratio
compares one epoch of ``finetune`` (the engine's fixed-point
forward with straight-through gradients, quantising every step) with one epoch of float BPTT training of the
torch model (examples/train_digits.py's loop) on the same 1,347 training digits, batch 64, on this machine.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ilif_deploy import load_model
from ilif_deploy.converters import open_graph
from ilif_deploy.converters.lava.finetune import finetune
from ilif_deploy.converters.lava.fixed import FixedPoint
from ilif_deploy.data import digits


def float_epoch_seconds(name: str, batch: int = 64, repeats: int = 3) -> float:
    """Seconds of one float training epoch of the bundled model (Adam, BPTT through its neurons), best of
    ``repeats``."""
    model = load_model(f"example:{name}")
    x, y = (torch.as_tensor(a) for a in digits("train"))
    T = 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best = float("inf")
    for _ in range(repeats):
        model.train()
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].unsqueeze(0).expand(T, *x[i:i + batch].shape)
            loss = torch.nn.functional.cross_entropy(model(xb).sum(0), y[i:i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", type=int, nargs="+", default=[4, 3])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--thresholds", action="store_true", help="also run with the thresholds trained")
    args = p.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}; {args.epochs} epochs, lr 3e-3 (the defaults)")
    print("| model | weight bits | thresholds | float | fixed before | fixed after (per seed) | mean after | "
          "goal (float - 0.3 pp) |")
    print("|---|---|---|---|---|---|---|---|")
    epoch_times = {}
    for name in ("digits_ilif", "digits_lif"):
        g = open_graph(f"example:{name}")
        for bits, th in [(b, t) for b in args.bits for t in ([False, True] if args.thresholds else [False])]:
            runs = [finetune(g, "digits", fixed=FixedPoint(weight_bits=bits), epochs=args.epochs, seed=s,
                             eval_data="digits", thresholds=th, progress=False) for s in args.seeds]
            after = [r.after for r in runs]
            fl = runs[0].float_accuracy
            met = sum(a >= fl - 0.003 - 1e-9 for a in after)
            if not th:
                epoch_times.setdefault(name, []).extend(r.seconds / max(len(r.history), 1) for r in runs)
            print(f"| {name} | {bits} | {'trained' if th else 'kept'} | {fl:.2%} | {runs[0].before:.2%} | "
                  f"{', '.join(f'{a:.2%}' for a in after)} | {np.mean(after):.2%} | met by {met} of {len(after)} |")
    print()
    for name, times in epoch_times.items():
        flt = float_epoch_seconds(name)
        ft = float(np.median(times))
        print(f"{name}: fine-tuning epoch {ft:.2f} s (median of {len(times)}), float training epoch {flt:.2f} s: "
              f"ratio {ft / flt:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
