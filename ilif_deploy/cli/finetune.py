"""ilif-finetune: fine-tune a trained network through its fixed-point forward pass (Loihi's integers) and save it
as an IR graph that exports bit-exact with what was trained."""
from __future__ import annotations

import json
import os
import sys

from .common import (MAX_COUNT, add_data_args, add_model_args, claim_outputs, open_dataset, open_input, parser,
                     ranged, run_cli)


def build_parser():
    p = parser("ilif-finetune", "Fine-tune a trained network with the forward pass of Lava's fixed_pt models (the "
                                "torch engine: quantised weights, biases, decays, the sigmoid table, saturation) and "
                                "straight-through gradients with the authors' sigmoid surrogate, to recover the "
                                "accuracy that fewer bits cost.  Trains on --split train; the result (-o, an .ir.npz "
                                "graph of the network as Lava runs it, on its fixed-point grid) exports and simulates "
                                "bit-exact with the fine-tuning forward pass.",
               "examples: ilif-finetune example:digits_ilif --weight-bits 4 -o digits_ilif_w4.ir.npz\n"
               "          ilif-finetune r18.pt --data ~/cifar-10-batches-py --weight-bits 6 --epochs 5 "
               "--checkpoint r18.ckpt -o r18_w6.ir.npz\n"
               "          ilif-export digits_ilif_w4.ir.npz --target lava -o digits_ilif_w4.lava.h5")
    add_model_args(p)
    add_data_args(p, batch_size=64, batch_help="samples per training step")
    p.set_defaults(split="train")
    t = p.add_argument_group("fine-tuning")
    t.add_argument("-o", "--output", required=True, help="the fine-tuned network (.ir.npz), written atomically")
    t.add_argument("--weight-bits", type=ranged(int, 2, 8),
                   help="signed weight mantissa bits (default: the file's, else 8)")
    t.add_argument("--frac-bits", type=ranged(int, 1, 22),
                   help="fractional bits of the 24-bit neuron state (default: the file's, else 16)")
    t.add_argument("--input-frac-bits", type=ranged(int, 0, 23),
                   help="fractional bits of analog input values (default: the file's, else 8)")
    t.add_argument("--epochs", type=ranged(int, 0, MAX_COUNT), default=30, help="passes over the data (default 30)")
    t.add_argument("--lr", type=ranged(float, 0.0, 10.0, open_low=True), default=3e-3,
                   help="Adam's learning rate, cosine-annealed over the epochs (default 3e-3)")
    t.add_argument("--alpha", type=ranged(float, 0.0, 1e3, open_low=True), default=4.0,
                   help="steepness of the sigmoid surrogate gradient (default 4, the authors')")
    t.add_argument("--train-thresholds", action="store_true",
                   help="also train each neuron layer's threshold (quantised to the state LSB like the rest)")
    t.add_argument("--seed", type=ranged(int, 0, 2 ** 63 - 1), default=0, help="seed of the batch order (default 0)")
    t.add_argument("--eval-data",
                   help="labelled data for the accuracy before, after and per epoch (read with the --data options, "
                        "its test split); 'none' for none.  Default: --data's test split where --data has splits "
                        "(digits, a dataset folder), else none")
    t.add_argument("--checkpoint", help="write the training state here after every epoch (atomically)")
    t.add_argument("--resume", action="store_true", help="continue from --checkpoint (same model and settings)")
    t.add_argument("--device", default="cpu", help="torch device (default cpu; cuda where torch has one)")
    t.add_argument("--json", help="write the report (format, accuracies, per-epoch history) as JSON to this file")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    return run_cli(lambda: _run(argv))


def _eval_spec(args):
    """The evaluation data's spec: --eval-data, else --data where it has a test split (digits, a folder)."""
    if args.eval_data is not None:
        return None if args.eval_data == "none" else args.eval_data
    return args.data if args.data == "digits" or os.path.isdir(os.path.expanduser(args.data)) else None


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    claim_outputs(output=args.output, json=args.json, checkpoint=args.checkpoint)

    from ..converters import OptionError

    if args.resume and not args.checkpoint:
        raise OptionError("--resume needs --checkpoint (the file to continue from)")
    if args.resume and not os.path.isfile(args.checkpoint):
        raise OptionError(f"--resume: {args.checkpoint} does not exist")
    if not args.output.endswith(".ir.npz"):
        raise OptionError(f"-o {args.output}: the fine-tuned network is an IR graph file; name it *.ir.npz")

    import torch

    from ..atomic import write_text_atomic
    from ..converters.lava.finetune import finetune
    from ..converters.lava.fixed import FixedPoint, native_format

    if args.device != "cpu":
        try:
            dev = torch.device(args.device)
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError) as e:
            raise OptionError(f"--device {args.device}: {str(e).splitlines()[0]}") from None
    opened = open_input(args)
    if opened.kind == "lava":
        raise OptionError(f"{opened.path} is a Lava network file: its weights are stored integers; fine-tune the "
                          f"model or graph it was exported from")
    graph = opened.graph
    train = open_dataset(args, graph)
    evaluation = None
    spec = _eval_spec(args)
    if spec is not None:
        saved = (args.data, args.split, args.samples)
        args.data, args.split, args.samples = spec, "test", None
        evaluation = open_dataset(args, graph)
        args.data, args.split, args.samples = saved
    base = native_format(graph.metadata) or FixedPoint()
    fixed = FixedPoint(frac_bits=base.frac_bits if args.frac_bits is None else args.frac_bits,
                       input_frac_bits=base.input_frac_bits if args.input_frac_bits is None else args.input_frac_bits,
                       weight_bits=base.weight_bits if args.weight_bits is None else args.weight_bits)
    result = finetune(graph, train, fixed=fixed, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      alpha=args.alpha, device=args.device, eval_data=evaluation, checkpoint=args.checkpoint,
                      resume=args.resume, seed=args.seed, thresholds=args.train_thresholds,
                      progress=not args.no_progress)
    result.graph.save(args.output)
    report = result.to_dict()
    report.update(output=args.output, train_data=train.describe(),
                  eval_data=None if evaluation is None else evaluation.describe())
    fp = report["fixed_point"]
    print(f"fixed point: {fp['weight_bits']}-bit weights, {fp['frac_bits']} fractional bits of state, analog input "
          f"{fp['input_frac_bits']}")
    print(f"trained {len(train)} samples x {len(result.history)} epochs ({train.name}); "
          f"{result.seconds:.1f} s, {result.seconds / max(len(result.history), 1):.2f} s per epoch")
    if evaluation is not None:
        print(f"accuracy on {evaluation.name} ({len(evaluation)} samples): float {result.float_accuracy:.2%}, fixed "
              f"point before {result.before:.2%}, after {result.after:.2%}")
    print(f"wrote {args.output} (export it with ilif-export --target lava|nir|onnx; simulate it with ilif-simulate "
          f"--mode fixed: the same integers)")
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
