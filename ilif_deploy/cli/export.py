"""ilif-export: trained ILIF network -> intermediate graph -> target artifact."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_model_args, load_graph, run_cli


def build_parser() -> argparse.ArgumentParser:
    from converters import TARGETS

    p = argparse.ArgumentParser(
        prog="ilif-export",
        description="Export a trained ILIF/LIF spiking network to Lava (HDF5), NIR, ONNX or the IR graph file.",
        epilog="example: ilif-export examples/models/digits_ilif.pt --target nir -o digits.nir")
    add_model_args(p)
    p.add_argument("--target", required=True, choices=list(TARGETS), help="what to write")
    p.add_argument("-o", "--output", help="output file (default: model name + the target's suffix)")
    p.add_argument("--summary", action="store_true", help="print the intermediate graph as a table")
    p.add_argument("--fidelity", action="store_true",
                   help="(nir) also measure how a generic NIR consumer's run of the file agrees with the exact model")
    p.add_argument("--json", help="write what was exported (and measured) as JSON to this file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        from converters import TARGETS, TargetUnavailable, get_exporter

        try:
            exporter = get_exporter(args.target)
        except TargetUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        graph = load_graph(args)
        if args.summary:
            print(graph.summary())
        out = Path(args.output) if args.output else Path(Path(args.model).stem + TARGETS[args.target][2])
        options = {"fidelity": True} if args.fidelity else {}
        info = exporter(graph, out, **options)
        print(f"wrote {out} (target {args.target})")
        for k, v in (info or {}).items():
            if k != "path":
                print(f"  {k}: {v}")
        if args.json:
            from ..atomic import write_text_atomic
            write_text_atomic(args.json, json.dumps(info, indent=2, default=str))
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
