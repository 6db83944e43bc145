"""ilif-energy: per-layer operation counts and energy from recorded spikes."""
from __future__ import annotations

import json
import sys

from .common import (add_data_args, add_model_args, claim_outputs, open_dataset, open_input, parser, ranged,
                     run_cli)


def build_parser():
    p = parser("ilif-energy", "Per-layer AC/MAC counts and SOP energy of a spiking network, from spikes recorded "
                              "on real data (all numbers per inference).")
    add_model_args(p)
    add_data_args(p, batch_size=32)  # --data none: an analytic estimate at --rate
    p.add_argument("--rate", type=ranged(float, 0.0, 1.0, what="a firing probability per neuron and step"),
                   help="with --data none: assumed firing rate per neuron and step, in [0, 1]")
    p.add_argument("--input", choices=("spikes", "analog"),
                   help="with --data none: the network's input is spikes (firing at --rate: accumulates) or analog "
                        "frames (dense: multiply-accumulates); default: what the file says (a netx network "
                        "without an input neuron takes spikes), else analog")
    p.add_argument("--energy-model", default="paper",
                   help="paper | horowitz-fp32 | horowitz-fp16 | horowitz-int32 | horowitz-int8 | loihi | loihi2 "
                        "(Loihi 1's op prices + measured static power of the placed Loihi 2 cores) | "
                        "a .json/.yaml file with e_ac_pj, e_mac_pj, ... (default paper: 0.9/4.6 pJ)")
    p.add_argument("--memory", help="add memory-access energy: sram8k | sram32k | sram1m | dram | pJ per access")
    p.add_argument("--conventions", choices=["paper", "neurobench", "spikingjelly"], default="paper",
                   help="a named set of counting conventions (docs/energy.md): paper (default; the paper's "
                        "Appendix H), neurobench (NeuroBench 2.3.0's SynapticOperations: pooling=separate, "
                        "analog=nonzero, zero_weights=skip, ann_padding=real; its metric names in the report) or "
                        "spikingjelly (SynOpCounter: pooling=separate; its SynOps in the report); "
                        "-c overrides single choices")
    p.add_argument("--convention", "-c", action="append", default=[], metavar="KEY=VALUE",
                   help="counting convention, repeatable: ann_padding=dense|real, analog=dense|nonzero, "
                        "direct_once=true|false, pooling=fuse|separate, add=free|count, bn=folded|unfolded, "
                        "zero_weights=count|skip, bias=free|count, neurons=auto|none|count, shortcuts=true|false, "
                        "classifier=true|false")
    p.add_argument("--compare", help="a second model file (e.g. the LIF twin) profiled on the same data")
    p.add_argument("--name", help="name of the model in reports (default: the file name)")
    p.add_argument("--compare-name", help="name of the --compare model (default: its file name)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda where torch has one)")
    p.add_argument("--compile", nargs="?", const="on", default="auto", choices=("auto", "on", "off"),
                   help="fuse each neuron layer's time loop with torch.compile: neuron layers several times "
                        "faster, spikes identical to eager mode in our tests (docs/energy.md); needs a C++ "
                        "compiler and compiles for seconds first.  auto (default): where the run is long enough "
                        "to pay for compiling (about 1e10 neuron updates, e.g. a CIFAR-10 test set on "
                        "ResNet-18) and a compiler is present, else eager; --compile alone: on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--csv", help="write the per-layer table as CSV")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--html", help="write an interactive HTML report (plotly, works offline)")
    p.add_argument("--markdown", help="write the report as Markdown")
    return p


def provenance(path, argv, data, rep) -> dict:
    """What produced a report: tool and version, UTC time, the model file and its sha256, the command line,
    the data (what, samples, T, preprocessing), energy model and conventions."""
    import datetime
    import hashlib
    import shlex

    from .. import __version__

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"tool": f"ilif-energy (ilif-deploy {__version__})",
            "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model_file": str(path), "model_sha256": h.hexdigest(),
            "command": shlex.join(["ilif-energy", *argv]),
            "data": data.describe() if data is not None else f"none (assumed firing rate {rep.rate}, "
                                                                f"{rep.meta.get('assumed_input')} input)",
            "samples": rep.samples, "timesteps": rep.timesteps, "energy_model": rep.energy_model.name,
            "conventions": ", ".join(f"{k}={v}" for k, v in rep.conventions.to_dict().items())}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: _run(argv))


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    claim_outputs(csv=args.csv, json=args.json, html=args.html, markdown=args.markdown)

    def go() -> int:
        import torch

        from .. import energy, parallel
        from ..atomic import write_text_atomic
        from ..errors import UserError

        conv = energy.Conventions.parse(args.convention, base=energy.Conventions.preset(args.conventions))
        rank = 0
        if parallel.launched():  # started by torchrun: profile this process's block of the data
            if args.data == "none":
                raise UserError("--data none has nothing to share among processes: run it without torchrun")
            rank, args.device = parallel.join(args.device)
        if args.device != "cpu":
            try:
                torch.empty(0, device=args.device)
            except (RuntimeError, AssertionError) as e:
                raise UserError(f"--device {args.device!r} is not available in this torch build: {e}") from None
        if args.data == "none" and args.rate is None:
            raise UserError("--data none needs --rate R (assumed firing rate per neuron and step)")
        if args.data != "none" and args.rate is not None:
            raise UserError("--rate is only for --data none (with data, spikes are recorded)")
        if args.data != "none" and args.input is not None:
            raise UserError("--input is only for --data none (with data, the input is what the data is)")
        opened = open_input(args)
        x = None if args.data == "none" else open_dataset(args, opened.graph)
        y = None
        common = dict(rate=args.rate, input=args.input, energy_model=args.energy_model, conventions=conv,
                      memory=args.memory, batch_size=args.batch_size, device=args.device, progress=not args.no_progress,
                      compile_neurons={"on": True, "off": False}.get(args.compile, "auto"),
                      membrane_changes=args.conventions == "neurobench")
        from ..energy.record import compile_pays

        if x is not None and (args.compile == "on" or args.compile == "auto" and compile_pays(
                opened.graph, len(x), x.timesteps or opened.graph.timesteps or 1, args.device)):
            print("--compile: the first batch builds one fused kernel per neuron layer shape (seconds each; "
                  "torch caches them on disk for later runs)", file=sys.stderr)
        rep = energy.profile(opened.graph, x, y, name=args.name or opened.path.name.split(".")[0], **common)
        rep.meta["provenance"] = provenance(opened.path, argv, x, rep)
        energy.attach_preset_metrics(rep, args.conventions)
        other = None
        if args.compare:
            twin = open_input(args, args.compare)
            other = energy.profile(twin.graph, x, y, name=args.compare_name or twin.path.name.split(".")[0], **common)
            other.meta["provenance"] = provenance(twin.path, argv, x, other)
            energy.attach_preset_metrics(other, args.conventions)
        if rank != 0:  # rank 0 prints and writes the (identical) report
            return 0
        print(rep.headline())
        for tool, values in (rep.meta.get("metrics") or {}).items():
            print(f"{tool}: " + ", ".join(f"{k} {v:.6g}" for k, v in energy.headline_metrics(values).items()
                                          if v is not None))
        if other is not None:
            print(other.headline())
            print(energy.comparison_frame(rep, other).to_string(index=False))
            verdict = rep.verdict(other)
            if verdict is not None:
                print(f"verdict: {rep.model_name} vs {other.model_name} under each energy model (uJ per inference):")
                print(verdict.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(rep.frame[energy.columns.SHORT].to_string(index=False))
        for r in [rep] + ([other] if other is not None else []):
            table = energy.placement_table(r.meta["placement"])
            if table:
                print(f"placement of {r.model_name} on Loihi cores (modelled per-core limits, docs/energy.md):")
                print(table)
        if args.csv:
            rep.to_csv(args.csv, compare=other)
        if args.json:
            data = rep.to_dict()
            if other is not None:
                data["compare"] = other.to_dict()
            write_text_atomic(args.json, json.dumps(data, indent=1) + "\n")
        if args.markdown:
            rep.to_markdown(args.markdown, compare=other)
        if args.html:
            rep.to_html(args.html, compare=other)
        for flag in ("csv", "json", "markdown", "html"):
            if getattr(args, flag):
                print(f"wrote {getattr(args, flag)}")
        return 0

    return go()


if __name__ == "__main__":
    sys.exit(main())
