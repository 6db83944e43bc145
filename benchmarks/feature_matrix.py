"""The neuron feature x backend matrix: every feature of ``ilif_deploy.families`` through every backend that
declares itself, each cell run on a small network that uses the feature (tests/feature_matrix.py) and judged
against the reference runtime.

    .venv/bin/python benchmarks/feature_matrix.py [--markdown]

Cells: ``exact`` (same spikes as the runtime: every layer, every step; fixed point on dyadic weights and integer
inputs, where it computes the same numbers), ``refused`` (one line naming the backend, the layer and the
feature).  Anything else -- ``SILENT`` (a refused feature ran), ``DIFFERS`` (a supported one computed something
else), ``REFUSED`` (a supported one was refused), ``UNNAMED`` -- is a failure; the script exits 1 and
tests/test_families.py fails on the same cells.  About 20 s (Lava float and fixed point included).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import feature_matrix as fm  # noqa: E402

from ilif_deploy import families  # noqa: E402

SHORT = {"graph file (.ir.npz)": "ir file", "lava (float)": "lava f", "lava (fixed point)": "lava fx",
         "torch engine (float)": "engine f", "torch engine (fixed point)": "engine fx", "static metrics": "static"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (docs/families.md)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    cells = fm.matrix()
    backends = list(dict.fromkeys(b for _, b in cells))
    heads = [SHORT.get(b, b) for b in backends]
    mark = {"exact": "exact", "refused": "refused"}
    rows = [[f] + [mark.get(cells[f, b][0], cells[f, b][0]) for b in backends] for f in families.FEATURES]
    if args.markdown:
        print("| feature | " + " | ".join(heads) + " |")
        print("|---|" + "---|" * len(heads))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        width = max(len(f) for f in families.FEATURES)
        cols = [max(len(h), 7) for h in heads]
        print(" " * width + "  " + "  ".join(h.ljust(c) for h, c in zip(heads, cols)))
        for r in rows:
            print(r[0].ljust(width) + "  " + "  ".join(v.ljust(c) for v, c in zip(r[1:], cols)))
    bad = {k: v for k, v in cells.items() if v[0] not in ("exact", "refused")}
    counts = {v: sum(1 for c in cells.values() if c[0] == v) for v in sorted({c[0] for c in cells.values()})}
    print(f"\n{len(families.FEATURES)} features x {len(backends)} backends = {len(cells)} cells: {counts}; "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    for (f, b), (verdict, detail) in bad.items():
        print(f"{verdict}: {f} x {b}: {detail}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
