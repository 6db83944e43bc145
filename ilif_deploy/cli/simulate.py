"""ilif-simulate: run an exported network on Lava's CPU backend and compare with torch."""
from __future__ import annotations

import argparse
import sys

from .common import add_model_args, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ilif-simulate",
                                description="Simulate a network on Lava (Loihi2SimCfg, CPU) and report agreement "
                                            "with the torch reference runtime.")
    add_model_args(p)
    p.add_argument("--data", default="digits", help="digits | file.npz (default digits)")
    p.add_argument("--samples", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("--mode", choices=["float", "fixed"], default="float", help="Lava process models to use")
    p.add_argument("--json", help="write the report as JSON to this file")
    return p


def main(argv=None) -> int:
    build_parser().parse_args(argv)

    def go() -> int:
        print("error: the Lava target is not available in this build", file=sys.stderr)
        return 2

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
