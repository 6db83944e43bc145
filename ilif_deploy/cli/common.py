"""Arguments and model loading shared by the command-line tools."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ..ir.graph import Graph


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options that say how to read a model file."""
    g = p.add_argument_group("model file")
    g.add_argument("model", help="model file: ilif-deploy .pt, authors' checkpoint ({'net': state_dict}, "
                                 "with --arch/--num-classes), IR graph .npz, or .nir")
    g.add_argument("--arch", help="architecture of a bare checkpoint (e.g. spiking_resnet18, spiking_vgg11_bn)")
    g.add_argument("--num-classes", type=int, help="number of classes of a bare checkpoint")
    g.add_argument("--neuron", choices=["ilif", "lif", "iplif"], help="neuron kind of a bare checkpoint (default ilif)")
    g.add_argument("--timesteps", "-T", type=int, help="time steps T (default: the model file's setting)")
    g.add_argument("--input-shape", type=lambda s: tuple(int(v) for v in s.split(",")),
                   help="one sample's shape, channel first, e.g. 3,32,32 (default: the model file's setting)")
    g.add_argument("--no-fold-bn", dest="fold_bn", action="store_false",
                   help="keep every BatchNorm as its own affine node (bit-exact with torch; folding into the conv "
                        "before it is exact in real arithmetic but may move a float32 membrane potential by an ulp)")
    g.add_argument("--trust-pickle", action="store_true",
                   help="allow model files that contain pickled Python objects (runs code from the file: "
                        "only for files you trust)")


def load_graph(args: argparse.Namespace) -> Graph:
    """Read ``args.model`` into an IR graph (loading and tracing a torch model when needed)."""
    from ..model_files import load_model
    from ..trace import trace

    path = Path(args.model)
    if path.suffix.lower() in (".npz", ".nir"):
        if path.suffix.lower() == ".npz":
            g = Graph.load(path)
        else:
            try:
                from converters.nir import read_graph  # type: ignore
            except ImportError as e:
                raise SystemExit(f"error: reading .nir needs the NIR converter: {e}")
            g = read_graph(path)
        if args.timesteps:
            g.metadata["timesteps"] = args.timesteps
        return g
    kw = {}
    if args.neuron:
        kw["neuron"] = args.neuron
    model = load_model(path, arch=args.arch, num_classes=args.num_classes, trust_pickle=args.trust_pickle, **kw)
    settings = dict(model.ilif_settings)
    T = args.timesteps or settings.get("timesteps")
    shape = args.input_shape or settings.get("input_shape")
    if not T or not shape:
        raise ValueError(f"{path}: no timesteps/input shape stored: pass --timesteps and --input-shape")
    return trace(model, tuple(shape), int(T), encoding=settings.get("encoding", "direct"),
                 fold_bn=getattr(args, "fold_bn", True))


def run_cli(main: Callable[[], int]) -> int:
    """Turn the errors users cause into one clear line and exit code 2 (no traceback)."""
    from ..ir.graph import GraphError
    from ..model_files import ModelFileError
    from ..trace import TraceError

    try:
        return main()
    except (ModelFileError, TraceError, GraphError, FileNotFoundError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
