"""ilif-energy: per-layer operation counts and energy from recorded spikes."""
from __future__ import annotations

import argparse
import sys

from .common import add_model_args, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ilif-energy",
                                description="Per-layer AC/MAC counts and SOP energy of a spiking network, "
                                            "from spikes recorded on real data.")
    add_model_args(p)
    p.add_argument("--data", default="digits", help="digits | file.npz | none (default digits)")
    p.add_argument("--samples", type=int, help="number of samples (default: all)")
    return p


def main(argv=None) -> int:
    build_parser().parse_args(argv)

    def go() -> int:
        try:
            import energy.cli  # type: ignore  # noqa: F401
        except ImportError:
            print("error: the energy module is not available in this build", file=sys.stderr)
            return 2
        return energy.cli.main(argv)

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
