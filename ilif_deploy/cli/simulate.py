"""ilif-simulate: run an exported network on Lava's CPU backend and compare with torch."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_model_args, load_graph, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ilif-simulate",
                                description="Simulate a network on Lava (Loihi2SimCfg, CPU) and report agreement "
                                            "with the torch reference runtime.",
                                epilog="example: ilif-simulate digits.lava.h5 --data digits --samples 100 --mode fixed")
    add_model_args(p)
    p.add_argument("--data", default="digits", help="digits | file.npz (default digits)")
    p.add_argument("--samples", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("--mode", choices=["float", "fixed"], default="float", help="Lava process models to use")
    p.add_argument("--json", help="write the report as JSON to this file")
    p.add_argument("--batch", type=int, default=64, help="samples per Lava run (default 64; one network is reused)")
    p.add_argument("--frac-bits", type=int, default=16,
                   help="(fixed) fractional bits of the 24-bit neuron state (default 16)")
    p.add_argument("--input-frac-bits", type=int, default=8,
                   help="(fixed) fractional bits of analog input values (default 8)")
    p.add_argument("--dense-conv-limit", type=int, default=0,
                   help="(model files) write plain convs with at most this many matrix entries as Dense (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        from converters.lava import LavaUnavailable, require_lava
        from converters.lava.network import FixedPoint
        from converters.lava.runner import report_table, simulate

        try:
            require_lava()
        except LavaUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.model.endswith(".h5"):
            if not Path(args.model).exists():
                raise FileNotFoundError(f"network file not found: {args.model}")
            source = args.model
        else:
            from converters.lava import build_netspec
            graph = load_graph(args)
            source = (build_netspec(graph, dense_conv_limit=args.dense_conv_limit), graph)
        fixed = FixedPoint(frac_bits=args.frac_bits, input_frac_bits=args.input_frac_bits)
        rep = simulate(source, data=args.data, samples=args.samples, mode=args.mode, batch=args.batch,
                       progress=not args.no_progress, fixed=fixed)
        print(report_table(rep))
        acc = (lambda v: "n/a (no labels)" if v is None else f"{100 * v:.2f} %")
        print(f"mode {rep['mode']}, {rep['samples']} samples x T={rep['timesteps']}: "
              f"accuracy torch {acc(rep['accuracy_torch'])}, Lava {acc(rep['accuracy_lava'])}; "
              f"same prediction {100 * rep['prediction_agreement']:.2f} %; "
              f"overall spike agreement {rep['overall_spike_agreement']:.6f} ({rep['spike_mismatches']} mismatches)")
        print(f"Lava: {rep['lava_processes']} processes, {rep['lava_seconds']:.1f} s, "
              f"{rep['ms_per_sample_step']:.2f} ms per sample-step")
        if args.json:
            from ..atomic import write_text_atomic
            write_text_atomic(args.json, json.dumps(rep, indent=2))
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
