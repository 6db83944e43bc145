"""ilif-simulate: run an exported network on Lava's CPU backend and compare with torch."""
from __future__ import annotations

import json
import sys
import warnings

from .common import add_data_args, add_model_args, open_dataset, open_input, parser, run_cli


def build_parser():
    p = parser("ilif-simulate", "Simulate a network on Lava (Loihi2SimCfg, CPU) and report agreement with the "
                                "torch reference runtime.",
               "example: ilif-simulate digits.lava.h5 --data digits --samples 100 --mode fixed")
    add_model_args(p)
    add_data_args(p, samples=100, batch_size=64, batch_help="samples per Lava run (one network is reused)")
    p.add_argument("--mode", choices=["float", "fixed"], default="float", help="Lava process models to use")
    p.add_argument("--json", help="write the report as JSON to this file")
    p.add_argument("--frac-bits", type=int, default=16,
                   help="(fixed) fractional bits of the 24-bit neuron state (default 16)")
    p.add_argument("--input-frac-bits", type=int, default=8,
                   help="(fixed) fractional bits of analog input values (default 8)")
    p.add_argument("--dense-conv-limit", type=int,
                   help="(model and graph files) write plain convs with at most this many matrix entries as Dense "
                        "(default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        from ..atomic import write_text_atomic
        from ..converters import OptionError
        from ..data import DataWarning
        from ..converters.lava import build_netspec, require_lava
        from ..converters.lava.network import FixedPoint
        from ..converters.lava.runner import simulate

        require_lava()
        opened = open_input(args)
        if opened.kind == "lava":
            if args.dense_conv_limit is not None:
                raise OptionError(f"--dense-conv-limit does not apply to {opened.path}: its synapses are fixed")
            source = (opened.artifact, opened.graph)
        else:
            source = (build_netspec(opened.graph, dense_conv_limit=args.dense_conv_limit or 0), opened.graph)
        fixed = FixedPoint(frac_bits=args.frac_bits, input_frac_bits=args.input_frac_bits)
        rep = simulate(source, data=open_dataset(args, opened.graph), samples=None, mode=args.mode,
                       batch=args.batch_size, progress=not args.no_progress, fixed=fixed)
        silent = [k for k, v in rep.firing_rate.items() if v == 0]
        if silent:
            warnings.warn(f"layer(s) {', '.join(silent)} never fired on {rep.samples} samples", DataWarning)
        print(rep.table())
        print(f"mode {args.mode}: {rep.headline()}")
        d = rep.details
        print(f"Lava: {d['lava_processes']} processes, {d['lava_seconds']:.1f} s, "
              f"{d['ms_per_sample_step']:.2f} ms per sample-step")
        if args.json:
            write_text_atomic(args.json, json.dumps(rep.to_dict(), indent=2))
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
