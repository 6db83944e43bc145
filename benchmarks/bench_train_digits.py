"""Time the digits training example on this machine (goal: ILIF >= 95 % test accuracy in < 5 min on 2 cores).

    .venv/bin/python benchmarks/bench_train_digits.py
"""
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import train_digits  # noqa: E402


def main() -> int:
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for neuron in ("ilif", "lif"):
            t0 = time.perf_counter()
            train_digits.main(["--neuron", neuron, "--out", tmp])
            seconds = time.perf_counter() - t0
            acc = torch.load(Path(tmp) / f"digits_{neuron}.pt", weights_only=True)["settings"]["test_accuracy"]
            print(f"{neuron}: {seconds:.1f} s wall, test accuracy {acc * 100:.2f} % "
                  f"(goal: < 300 s, >= 95 %: {'met' if seconds < 300 and acc >= 0.95 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
