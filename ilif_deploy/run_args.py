"""The settings a run of the authors' ``train.py`` recorded: ``args.txt`` beside its checkpoints.

train.py writes ``str(args)`` -- one ``Namespace(seed=1234, name='', T=6, tau=1.1, ..., model='spiking_resnet18',
neuron_model='ILIF', ...)`` line -- then one line per epoch.  That line is read as data: the call is parsed with
:mod:`ast` and each value with ``ast.literal_eval`` (never ``eval``), so a file can hold only literals.  What a
checkpoint needs is taken from it (:func:`load_options`): the architecture, the neuron, T, tau, the dataset (so the
input shape, encoding, class count and input channels), and for ``vggsnn`` the input size its classifier was built
for.  Options given explicitly win; where they contradict the file a warning line names both values.
"""
from __future__ import annotations

import ast
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

from .errors import ModelFileError

ARGS_FILE = "args.txt"
#: largest args.txt read (train.py's first line is ~1 KB; the epoch lines add ~300 bytes each)
MAX_ARGS_BYTES = 1 << 20
#: train.py's -neuron_model -> our --neuron
NEURONS = {"ILIF": "ilif", "LIF": "lif", "PLIF": "plif", "relu": "relu"}
#: train.py's -dataset -> (our --dataset preset, the input size it passes as fc_hw: None where it passes none)
DATASETS = {"cifar10": ("cifar10", None), "cifar100": ("cifar100", None), "tiny_imagenet": ("tiny-imagenet", None),
            "DVSCIFAR10": ("dvs-cifar10", None), "DVSCIFAR10-pt": ("dvs-cifar10", 48),
            "dvsgesture": ("dvs-gesture", 128)}


class SettingsWarning(UserWarning):
    """An option given on the command line contradicts the run's args.txt (the option wins)."""


def read_args(path) -> Dict[str, object]:
    """The ``Namespace(...)`` line of a train.py ``args.txt`` as a dict of literals; ModelFileError names what
    is wrong (not a Namespace line, a value that is not a literal)."""
    from .bounded import input_file

    path = input_file(path, "the args.txt")
    try:
        if path.stat().st_size > MAX_ARGS_BYTES:
            raise ModelFileError(f"{path}: {path.stat().st_size} bytes, more than an args.txt of train.py holds "
                                 f"({MAX_ARGS_BYTES})")
        first = next((line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                      if line.strip()), "")
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        call = ast.parse(first.strip(), mode="eval").body
    except SyntaxError:
        call = None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Namespace"
            and not call.args):
        raise ModelFileError(f"{path}: its first line is not the Namespace(...) line train.py writes "
                             f"(found {first[:60]!r})")
    out = {}
    for kw in call.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError):
            raise ModelFileError(f"{path}: {kw.arg}= is not a literal value") from None
    return out


def find_args(checkpoint, args_file=None) -> Optional[Path]:
    """``args_file`` if given (it must exist), else ``args.txt`` beside ``checkpoint`` if there is one."""
    if args_file is not None:
        from .bounded import input_file

        return input_file(args_file, "the --args file")
    beside = Path(checkpoint).parent / ARGS_FILE
    return beside if beside.is_file() else None


def load_options(args: Dict[str, object], where: str) -> Tuple[dict, dict]:
    """``(options, taken)``: :func:`ilif_deploy.load_model` options from a train.py Namespace -- ``arch``,
    ``dataset`` (a preset name), ``neuron``, ``neuron_kwargs``, ``timesteps``, ``in_size`` (vggsnn) -- and the
    train.py values they came from (recorded in the graph's metadata)."""
    from .paper_models import AUTHORS_ARCHITECTURES

    def need(key):
        if key not in args:
            raise ModelFileError(f"{where}: no {key}= in its Namespace line")
        return args[key]

    model, neuron_model, dataset = need("model"), args.get("neuron_model", "ILIF"), need("dataset")
    if model not in AUTHORS_ARCHITECTURES:
        raise ModelFileError(f"{where}: model={model!r} is not one of train.py's ({', '.join(AUTHORS_ARCHITECTURES)})")
    if neuron_model not in NEURONS:
        raise ModelFileError(f"{where}: neuron_model={neuron_model!r} is not one of train.py's ({', '.join(NEURONS)})")
    if dataset not in DATASETS:
        raise ModelFileError(f"{where}: dataset={dataset!r} is not one train.py reads ({', '.join(DATASETS)})")
    neuron = NEURONS[neuron_model]
    preset, in_size = DATASETS[dataset]
    T = 1 if neuron == "relu" else need("T")  # train.py sets T = 1 for its ANN baseline
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ModelFileError(f"{where}: T={T!r} is not a number of steps")
    options = {"arch": model, "dataset": preset, "neuron": neuron, "timesteps": T}
    taken = {"model": model, "neuron_model": neuron_model, "dataset": dataset, "T": T}
    if neuron != "relu":
        tau = need("tau")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)):
            raise ModelFileError(f"{where}: tau={tau!r} is not a number")
        options["neuron_kwargs"], taken["tau"] = {"tau": float(tau)}, tau
    if model == "vggsnn":
        if in_size is None:
            raise ModelFileError(f"{where}: vggsnn with dataset={dataset!r}: train.py passes no input size "
                                 f"(fc_hw=None) and the authors' vggsnn raises TypeError; it runs with DVSCIFAR10-pt "
                                 f"(48) or dvsgesture (128)")
        options["in_size"] = taken["fc_hw"] = in_size
    return options, taken


def merge(file_options: dict, given: dict, where: str) -> dict:
    """``given`` (what the caller passed; None: not given) over ``file_options``, with a :class:`SettingsWarning`
    naming both values wherever they differ."""
    out = dict(file_options)
    for key, value in given.items():
        if value is None:
            continue
        if key in file_options and _differs(file_options[key], value):
            warnings.warn(f"{key} = {value!r} given overrides {file_options[key]!r} of {where}", SettingsWarning,
                          stacklevel=3)
        out[key] = {**file_options[key], **value} if isinstance(value, dict) and key in file_options else value
    return out


def _differs(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return any(k in a and _differs(a[k], v) for k, v in b.items())
    return a != b
