"""ilif-export: trained ILIF network -> intermediate graph -> target artifact."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import (add_data_args, add_model_args, claim_outputs, open_dataset, open_input, parser, ranged,
                     run_cli)


def build_parser():
    from ..converters import TARGETS

    p = parser("ilif-export", "Export a trained ILIF/LIF spiking network to Lava (HDF5), NIR, ONNX or the IR graph "
                              "file.", "example: ilif-export example:digits_ilif --target nir -o digits.nir")
    add_model_args(p)
    p.add_argument("--target", required=True, choices=list(TARGETS), help="what to write")
    p.add_argument("-o", "--output", help="output file (default: model name + the target's suffix)")
    p.add_argument("--summary", action="store_true", help="print the intermediate graph as a table")
    p.add_argument("--fidelity", action="store_true", default=None,
                   help="(nir, onnx) also measure how the written file's run agrees with the exact model")
    p.add_argument("--fold-bn", action="store_true", default=None,
                   help="(ir, nir, onnx) write the graph with BatchNorm folded into the weights (exact in real "
                        "arithmetic, not always in float32; the report says how many spikes moved). Lava always "
                        "folds. Default: BN kept as its own node, bit-exact with the module")
    p.add_argument("--check-samples", type=ranged(int, 0, 10_000), default=8,
                   help="inputs on which a lowered graph (--fold-bn, Lava) is compared with the exact one (default 8)")
    p.add_argument("--json", help="write what was exported (and measured) as JSON to this file")
    add_data_args(p, default=None)
    p.set_defaults(samples=None)
    return p


def main(argv=None) -> int:
    return run_cli(lambda: _run(argv))


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    claim_outputs(output=args.output, json=args.json)

    def go() -> int:
        from ..atomic import write_text_atomic
        from ..converters import TARGETS, export, get_exporter

        get_exporter(args.target, fidelity=args.fidelity, fold_bn=args.fold_bn)  # options checked before any work
        opened = open_input(args)
        graph = opened.graph
        if args.summary:
            print(graph.summary())
        out = Path(args.output) if args.output else Path(opened.path.name.split(".")[0] + TARGETS[args.target].suffix)
        data = open_dataset(args, graph) if args.data else None  # default: ilif_deploy.data.probe_inputs
        info = export(graph, args.target, out, fold_bn=bool(args.fold_bn), check_samples=args.check_samples,
                      fidelity=args.fidelity, data=data, consume=True)
        print(f"wrote {out} (target {args.target})")
        for k, v in (info or {}).items():
            if k != "path":
                print(f"  {k}: {v}")
        if args.json:
            write_text_atomic(args.json, json.dumps(info, indent=2, default=str))
        return 0

    return go()


if __name__ == "__main__":
    sys.exit(main())
