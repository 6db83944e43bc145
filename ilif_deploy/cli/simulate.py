"""ilif-simulate: run an exported network on Lava's CPU backend and compare with torch."""
from __future__ import annotations

import json
import sys
import warnings

from .common import (MAX_COUNT, add_data_args, add_model_args, claim_outputs, open_dataset, open_input, parser,
                     ranged, run_cli)


def build_parser():
    p = parser("ilif-simulate", "Simulate a network as Lava runs it -- on Lava (Loihi2SimCfg, CPU) or on the batched "
                                "torch engine, bit-exact with Lava -- and report agreement with the torch reference "
                                "runtime.",
               "examples: ilif-simulate digits.lava.h5 --data digits --samples 100 --mode fixed\n"
               "          ilif-simulate r18.lava.h5 --data ~/cifar-10-batches-py --samples all --engine torch "
               "--mode fixed --verify 4")
    add_model_args(p)
    add_data_args(p, samples=100, batch_size=64, batch_help="samples per Lava run (one network is reused)")
    p.add_argument("--mode", choices=["float", "fixed"], default="float",
                   help="Lava's floating_pt or fixed_pt (Loihi-style integer) models")
    p.add_argument("--engine", choices=["lava", "torch"], default="lava",
                   help="lava (the reference; 1-14 ms per sample-step on tiny nets, seconds on ResNets) or torch "
                        "(batched, the same arithmetic bit for bit: for whole test sets)")
    p.add_argument("--verify", type=ranged(int, 0, MAX_COUNT), default=0, metavar="K",
                   help="(--engine torch) also run the first K samples on Lava and report the engine's agreement")
    p.add_argument("--reference", choices=["runtime", "both", "none"],
                   help="what runs beside the engine to compare with, per batch: runtime (the torch runtime in "
                        "Lava's arithmetic: BN folded, float64 synapses), both (also the exact float32 graph), none "
                        "(the engine alone: firing rates, accuracy, throughput). Default: runtime with --engine lava, "
                        "none with --engine torch (whole test sets pay for no reference they did not ask for)")
    p.add_argument("--device", default="cpu", help="(--engine torch) torch device (default cpu)")
    p.add_argument("--compile", action="store_true",
                   help="(--engine torch, --mode fixed) fuse each neuron layer's steps with torch.compile: the same "
                        "integers, ~1.5x faster on ResNet-18; needs a C++ compiler, compiles for seconds per layer")
    p.add_argument("--json", help="write the report as JSON to this file")
    p.add_argument("--frac-bits", type=ranged(int, 1, 22),
                   help="(fixed) fractional bits of the 24-bit neuron state (default: the file's, else 16)")
    p.add_argument("--input-frac-bits", type=ranged(int, 0, 23),
                   help="(fixed) fractional bits of analog input values (default: the file's, else 8)")
    p.add_argument("--dense-conv-limit", type=ranged(int, 0, 1 << 31),
                   help="(model and graph files) write plain convs with at most this many matrix entries as Dense "
                        "(default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    return run_cli(lambda: _run(argv))


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    claim_outputs(json=args.json)

    def go() -> int:
        from .. import parallel
        from ..atomic import write_text_atomic
        from ..converters import OptionError
        from ..data import DataWarning
        from ..converters.lava import build_netspec, require_lava
        from ..converters.lava.fixed import FixedPoint
        from ..converters.lava.runner import simulate

        if args.engine == "lava" or args.verify:
            require_lava()
        if args.verify and args.engine != "torch":
            raise OptionError("--verify applies to --engine torch (it checks the torch engine against Lava)")
        if args.compile and (args.engine != "torch" or args.mode != "fixed"):
            raise OptionError("--compile applies to --engine torch --mode fixed")
        if args.verify < 0:
            raise OptionError(f"--verify must be >= 0, got {args.verify}")
        rank = 0
        if parallel.launched():  # started by torchrun: each process runs its block (docs/lava.md)
            if args.engine != "torch":
                raise OptionError("under torchrun, ilif-simulate runs --engine torch (Lava starts its own processes)")
            rank, args.device = parallel.join(args.device)
        opened = open_input(args)
        if opened.kind == "lava":
            if args.dense_conv_limit is not None:
                raise OptionError(f"--dense-conv-limit does not apply to {opened.path}: its synapses are fixed")
            source = (opened.artifact, opened.graph)
        else:
            source = (build_netspec(opened.graph, dense_conv_limit=args.dense_conv_limit or 0), opened.graph)
        fixed = None if (args.frac_bits, args.input_frac_bits) == (None, None) else FixedPoint(
            frac_bits=16 if args.frac_bits is None else args.frac_bits,
            input_frac_bits=8 if args.input_frac_bits is None else args.input_frac_bits)
        rep = simulate(source, data=open_dataset(args, opened.graph), samples=None, mode=args.mode,
                       batch=args.batch_size, progress=not args.no_progress, fixed=fixed, engine=args.engine,
                       verify=args.verify, device=args.device, compile=args.compile,
                       compare=args.reference or ("runtime" if args.engine == "lava" else "none"))
        if rank != 0:  # rank 0 prints and writes the job's (summed) result
            return 0
        silent = [k for k, v in rep.firing_rate.items() if v == 0]
        if silent:
            warnings.warn(f"layer(s) {', '.join(silent)} never fired on {rep.samples} samples", DataWarning)
        print(rep.table())
        print(f"{rep.candidate}: {rep.headline()}")
        d = rep.details
        where = f"Lava, {d['lava_processes']} processes" if args.engine == "lava" else f"torch engine on {args.device}"
        if d.get("processes"):
            where += f", {d['processes']} torchrun processes"
        rate = f", {d['samples_per_second']:,.1f} samples/s" if d.get("samples_per_second") else ""
        print(f"{where}: {d['seconds']:.1f} s, {d['ms_per_sample_step']:.3f} ms per sample-step{rate}")
        if args.mode == "fixed":
            f = d["fixed_point"]
            print(f"fixed point format: {f['frac_bits']} fractional bits, analog input {f['input_frac_bits']}, "
                  f"{f['weight_bits']}-bit weights ({f['from']})")
            print(f"fixed point: saturated states {sum(d['overflows'].values())}, wrapped synaptic sums "
                  f"{sum(d.get('synapse_wraps', {}).values())}, saturated inputs "
                  f"{d['input_saturated']}")
        if "verify" in d:
            v = d["verify"]
            print(f"verify on {v['samples']} samples: torch engine vs Lava {args.mode}: spike agreement "
                  f"{v['overall_spike_agreement']:.6f}, prediction agreement {v['prediction_agreement']:.4f}, "
                  f"max readout difference {v['max_abs_logit_diff']:.3g}")
            if args.mode == "fixed":
                print(f"verify: saturated states Lava {v['saturated_states']['lava']:,} / torch engine "
                      f"{v['saturated_states']['torch']:,}, wrapped sums Lava {v['wrapped_sums']['lava']:,} / "
                      f"torch engine {v['wrapped_sums']['torch']:,} ({'equal' if v['counts_equal'] else 'DIFFERENT'})")
        if args.json:
            write_text_atomic(args.json, json.dumps(rep.to_dict(), indent=2))
        return 0

    return go()


if __name__ == "__main__":
    sys.exit(main())
