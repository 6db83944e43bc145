"""Arguments, input files and error handling shared by the command-line tools."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from typing import Callable, Optional

from .. import __version__, parallel
from ..atomic import DISK_ERRORS
from ..converters.nir.conventions import NIR_PRESETS, RESETS, ConventionWarning
from ..run_args import SettingsWarning
from ..data import PRESETS, DataWarning
from ..architectures import NEURON_KINDS
from ..errors import DataError, UserError
from .launch import Terminated, terminate_as_exception

#: the model-file options every tool takes, as ``open_file`` keywords
MODEL_OPTIONS = ("arch", "arch_module", "args", "dataset", "num_classes", "in_channels", "neuron", "tau", "v_th",
                 "lam_u", "lam_i", "ciu_source", "timesteps", "input_shape", "trust_pickle", "dt", "if_convention",
                 "nir_from", "reset", "max_memory")


def ranged(kind: type, lo: float, hi: float, open_low: bool = False, what: str = ""):
    """An argparse type: a ``kind`` (int or float) in [lo, hi] (``open_low``: above lo), finite; a float flag
    given a whole number takes it, an int flag refuses a fraction (2.7 steps is not 2).  ``what`` the value is
    ("a firing probability") is said with a refusal."""
    def convert(text: str):
        try:
            value = kind(text) if kind is float else int(text, 10)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got "
                                             f"{text!r}") from None
        low_ok = value > lo if open_low else value >= lo
        if not (low_ok and value <= hi):  # also refuses nan (no comparison holds)
            raise argparse.ArgumentTypeError(f"{value!r} is outside {'(' if open_low else '['}{lo:g}, {hi:g}]"
                                             + (f" ({what})" if what else ""))
        return value
    return convert


def ranged_tuple(lo: int, hi: int, lengths):
    """An argparse type: comma-separated integers in [lo, hi], as many as one of ``lengths``."""
    one = ranged(int, lo, hi)

    def convert(text: str):
        values = tuple(one(v.strip()) for v in text.split(","))
        if len(values) not in lengths:
            raise argparse.ArgumentTypeError(f"expected {' or '.join(map(str, lengths))} comma-separated integers, "
                                             f"got {len(values)}")
        return values
    return convert


#: the largest sizes the flags take (far beyond any network or data set; a value past them is a typo or an attack)
MAX_SIDE, MAX_COUNT = 65536, 1_000_000
#: more samples than any data set holds (ImageNet's training set: 1.3 million)
MAX_SAMPLES = 1_000_000_000


class _OneLineParser(argparse.ArgumentParser):
    """argparse that says a bad command line in one line (its usage block is what --help is for)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


def parser(prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    p = _OneLineParser(prog=prog, description=description, epilog=epilog)
    p.add_argument("--version", action="version", version=f"{prog} (ilif-deploy) {__version__}")
    return p


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options that say how to read a model file (each refused by name where it does not apply)."""
    g = p.add_argument_group("model file")
    g.add_argument("model", help="model file: ilif-deploy .pt, authors' checkpoint ({'net': state_dict}, "
                                 "with --arch/--num-classes), IR graph .ir.npz, .nir, or .lava.h5; the kind is "
                                 "read from the content")
    g.add_argument("--arch", help="architecture of a bare checkpoint (e.g. spiking_resnet18, spiking_vgg11_bn)")
    g.add_argument("--arch-module", metavar="PACKAGE.MODULE",
                   help="import this module of yours first (it runs your code) so that its "
                        "ilif_deploy.register_arch architectures can be loaded")
    g.add_argument("--dataset", choices=list(PRESETS),
                   help="the paper's setting: input shape, T, classes and encoding of " + ", ".join(
                       f"{p.name} ({'x'.join(map(str, p.input_shape))}, T={p.timesteps}, {p.num_classes} classes, "
                       f"{p.encoding})" for p in PRESETS.values()) + "; each overridable by the flags below (CIFAR "
                       "at T=6, train.py's default and the paper's headline and energy table; the paper also reports "
                       "T=4: -T 4)")
    g.add_argument("--num-classes", type=ranged(int, 1, MAX_COUNT), help="number of classes of a bare checkpoint")
    g.add_argument("--in-channels", type=ranged(int, 1, MAX_SIDE),
                   help="input channels of a bare checkpoint (2 for DVS data)")
    g.add_argument("--neuron", choices=list(NEURON_KINDS),
                   help="neuron of a bare checkpoint, as train.py's -neuron_model: ilif (default), lif, plif (learned "
                        "decay), relu (their ANN baseline, run at T = 1); iplif: ILIF with PLIF's learned decay")
    g.add_argument("--args", metavar="ARGS_TXT",
                   help="the args.txt train.py wrote for the checkpoint (default: args.txt beside it, if there): "
                        "architecture, neuron, tau, T and dataset come from it; flags given override it, with a "
                        "warning where they contradict it"),
    n = p.add_argument_group("neuron settings (checkpoints store none; default: the paper's tau=1.1, v_th=1, "
                             "lam_u=1, lam_i=0.03, ciu_source=synaptic)")
    n.add_argument("--tau", type=ranged(float, 1.0, 1e9), help="membrane time constant in steps, >= 1 "
                                                                 "(lam = 1 - 1/tau)")
    n.add_argument("--v-th", type=ranged(float, 0.0, 1e9, open_low=True), help="firing threshold (> 0)")
    n.add_argument("--lam-u", type=ranged(float, 0.0, 1.0), help="MPIU decay per step in [0, 1] (0: no MPIU)")
    n.add_argument("--lam-i", type=ranged(float, 0.0, 1.0), help="CIU decay per step in [0, 1] (0: no CIU)")
    n.add_argument("--ciu-source", choices=["synaptic", "net"], help="what drives the CIU: synaptic (the authors' "
                                                                      "code) or net (the paper's Eq. 15)")
    g.add_argument("--timesteps", "-T", type=ranged(int, 1, MAX_COUNT),
                   help="time steps T (default: the model file's setting)")
    g.add_argument("--input-shape", type=ranged_tuple(1, MAX_SIDE, (1, 2, 3)),
                   help="one sample's shape, channel first, e.g. 3,32,32 (default: the model file's setting)")
    r = p.add_argument_group("NIR files from other tools (how their continuous-time neurons are stepped)")
    r.add_argument("--nir-from", choices=sorted(NIR_PRESETS),
                   help="the tool that wrote the file: sets --dt, --if-convention and --reset as it means them (" +
                        "; ".join(f"{k}: dt {v['dt']:g} s, {v['if_convention']}, reset "
                                  f"{v['reset'] or 'not recorded'}" + (", multi-spike IAF" if v.get('multi_spike')
                                                                       else "")
                                  for k, v in sorted(NIR_PRESETS.items())) + ")")
    r.add_argument("--reset", choices=RESETS,
                   help="how the file's neurons reset (NIR records only v_reset): subtract (by the threshold; "
                        "snntorch's Leaky default, taken off at the next step as snntorch does), zero, or "
                        "to-v-reset (the file's v_reset, what NIR says); without it a file whose tool does not "
                        "record its reset is read to v_reset with a warning")
    r.add_argument("--dt", type=ranged(float, 0.0, 1e3, open_low=True),
                   help="simulation step in seconds for NIR time constants (decay 1 - dt/tau; default 1e-4, "
                        "snntorch's)")
    r.add_argument("--if-convention", choices=["euler", "per_step"],
                   help="how nir.IF's r is read: euler (v += dt r I, the NIR equation; default) or per_step "
                        "(v += r I: Norse, sinabs, BindsNET)")
    g.add_argument("--max-memory", type=ranged(float, 0.0, 1e6, open_low=True), metavar="GB",
                   help="refuse a network whose activations for one sample over T steps exceed this (default: "
                        "half of this machine's memory)")
    g.add_argument("--trust-pickle", action="store_true", default=None,
                   help="allow model files that contain pickled Python objects (runs code from the file: "
                        "only for files you trust)")


def _samples(text: str) -> Optional[int]:
    """--samples N or --samples all (None: every sample)."""
    if text == "all":
        return None
    try:
        n = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of samples or 'all', got {text!r}") from None
    if not 1 <= n <= MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"the number of samples must be in [1, {MAX_SAMPLES:,}] (or 'all'), got "
                                         f"{n:,}")
    return n


class _Given(argparse.Action):
    """Stores the value and notes that it was given (``args.<dest>_given``), so a default can be told apart."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def add_data_args(p: argparse.ArgumentParser, default: Optional[str] = "digits", samples: Optional[int] = None,
                  batch_size: Optional[int] = None, batch_help: str = "samples per runtime call") -> None:
    """Where the data comes from and how it is preprocessed (ilif_deploy.data.open_data); ``--batch-size``
    where the tool runs the data in batches (default ``batch_size``)."""
    g = p.add_argument_group("data")
    g.add_argument("--data", default=default, action=_Given,
                   help="digits | file.npz (frames x[, y], or events x, y, t, p) | file.npy | a CIFAR-10/100 python "
                        "folder | a folder with tonic's NMNIST/, DVSGesture/ or CIFAR10DVS/ | a folder of class "
                        f"folders of images (default {default})")
    g.add_argument("--samples", type=_samples, default=samples, help="the first N samples, or all" +
                   (f" (default {samples})" if samples else " (default: all)"))
    g.add_argument("--split", default="test", choices=["test", "train"], help="which split of a dataset folder")
    g.add_argument("--x-key", default="x", help="(.npz) array of inputs (default x)")
    g.add_argument("--y-key", default="y", help="(.npz) array of labels (default y)")
    g.add_argument("--normalize", help="per-channel (x - mean) / std: cifar10 | cifar100 | imagenet | MEAN,STD | "
                                       "M1,M2,M3/S1,S2,S3 | none (default: the --dataset preset's, else none)")
    g.add_argument("--scale", type=ranged(float, -1e30, 1e30),
                   help="multiply raw values first (default: 1/255 for uint8 images, else 1)")
    g.add_argument("--resize", type=ranged(int, 1, 4096),
                   help="resize every frame to N x N (default: the preset's, e.g. 48 for dvs-cifar10 events)")
    g.add_argument("--sensor-size", type=ranged_tuple(1, 4096, (2,)), metavar="W,H",
                   help="(events) the sensor's width and height (default: the preset's, else the events' extent)")
    g.add_argument("--threads", type=ranged(int, 1, 4 * (os.cpu_count() or 1)),
                   help="torch intra-op threads (default: torch's own choice; at most 4 per CPU)")
    if batch_size:
        g.add_argument("--batch-size", "--batch", type=ranged(int, 1, MAX_COUNT), default=batch_size,
                       dest="batch_size",
                       help=f"{batch_help} (default {batch_size})")


def open_dataset(args: argparse.Namespace, graph):
    """The Dataset ``args.data`` names, preprocessed for ``graph`` (its preset from --dataset or the graph's
    metadata); a DataError when its frames do not fit the network's input."""
    from ..data import open_data

    apply_threads(args)
    ds = open_data(args.data, input_shape=graph.input_shape, timesteps=graph.timesteps,
                   dataset=getattr(args, "dataset", None) or graph.metadata.get("dataset"), split=args.split,
                   x_key=args.x_key, y_key=args.y_key, normalize=args.normalize, scale=args.scale, resize=args.resize,
                   sensor=args.sensor_size, samples=args.samples)
    if ds.frame_shape != tuple(graph.input_shape):
        given = getattr(args, "data_given", False)
        frames, takes = ("x".join(map(str, s)) for s in (ds.frame_shape, graph.input_shape))
        raise DataError(f"{'' if given else 'no --data given, so the default was read: '}{ds.name}: frames of "
                        f"{frames}, the network takes {takes} per step "
                        f"({'--resize, --dataset, --input-shape' if given else 'pass --data'})")
    return ds


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads``, set before the first torch operation of the command (loading and tracing the model run
    on torch's threads too: set later, a loaded 2-core machine spent 0.95-5.99 s there at 2 threads against
    0.31-0.43 s at 1)."""
    if getattr(args, "threads", None):
        import torch

        if torch.get_num_threads() != args.threads:
            torch.set_num_threads(args.threads)


def open_input(args: argparse.Namespace, path=None):
    """The :class:`~ilif_deploy.converters.OpenedFile` of ``path`` (default ``args.model``) with the
    model options given on the command line (``--threads`` applied first)."""
    from ..converters import open_file
    from ..limits import freeze_imports

    apply_threads(args)
    freeze_imports()

    return open_file(path or args.model, **{k: getattr(args, k) for k in MODEL_OPTIONS})


def load_graph(args: argparse.Namespace, path=None):
    """The IR graph of ``path`` (default ``args.model``)."""
    return open_input(args, path).graph


def printable(text: str) -> str:
    """``text`` with every control character written as its escape (``\\n``, ``\\x1b``, ``\\x00``): names
    taken from files (a state_dict key, a NIR node) can neither forge more lines nor drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {printable(message)}", file=sys.stderr)


def run_cli(main: Callable[[], int]) -> int:
    """Run a tool: the whole command, parsing its arguments included (so the signal handlers are in place
    from the start, and a command's inputs and outputs are checked against each other: :func:`claim_outputs`).
    A :class:`UserError` (or a file-system error naming a file) becomes one line on stderr, control characters
    escaped, and exit code 2; a closed output pipe ends quietly; anything else keeps its traceback."""
    from ..atomic import run_scope

    previous = terminate_as_exception()
    try:
        with warnings.catch_warnings(), run_scope():
            warnings.simplefilter("always", DataWarning)
            warnings.simplefilter("always", ConventionWarning)
            warnings.simplefilter("always", SettingsWarning)
            warnings.showwarning = _one_line_warning
            code = main()
        sys.stdout.flush()
        return code
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except SystemExit as e:  # argparse's --help, --version and one-line errors: main(argv) returns, never exits
        sys.stdout.flush()
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except UserError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: nothing left to say, and nobody to say it to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if e.filename is None and e.errno not in DISK_ERRORS:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {printable(e.strerror or e)}{printable(where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        parallel.leave()
        for s, handler in previous.items():
            signal.signal(s, handler)


def claim_outputs(**flags) -> None:
    """The outputs a command was asked to write, by flag (``output=args.output, json=args.json``): checked by
    the output gate before any work (:func:`ilif_deploy.atomic.claim_outputs`)."""
    from ..atomic import claim_outputs as claim

    claim({("-o" if k == "output" else f"--{k.replace('_', '-')}"): v for k, v in flags.items()})
