"""Model files: our own format (safe to load), the authors' checkpoints, and opt-in pickles.

Our format is a plain dict that ``torch.load(weights_only=True)`` accepts::

    {"format": "ilif-deploy-model", "version": 1,
     "arch": name, "arch_kwargs": {...},          # rebuilt with ilif_deploy.architectures.build
     "state_dict": {...},
     "settings": {"timesteps": T, "input_shape": [C, H, W], "encoding": "direct", ...}}

The authors' checkpoints are dicts with key ``'net'`` holding a state_dict; they need the
architecture name and class count (``arch=``, ``num_classes=``).  Whole pickled modules are
loaded only with ``trust_pickle=True``, because unpickling runs arbitrary code.
"""
from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .architectures import DEFAULT_SETTINGS, build, known
from .atomic import atomic_path
from .errors import ModelFileError, UserError
from .neurons import ReLU

MODEL_FORMAT = "ilif-deploy-model"
MODEL_VERSION = 1
SETTING_KEYS = ("timesteps", "input_shape", "encoding")


def save(model: nn.Module, path: Union[str, os.PathLike], **settings) -> None:
    """Save ``model`` (built with :func:`ilif_deploy.architectures.build`) with its run settings.

    Args:
        model: a module with an ``arch_spec`` (every registered architecture has one).
        path: destination ``.pt`` file (written atomically).
        settings: run settings: ``timesteps`` (steps), ``input_shape`` (one sample, channel first),
            ``encoding`` ("direct"/"sequence"), plus anything JSON-like (e.g. ``accuracy``).
    """
    spec = getattr(model, "arch_spec", None)
    if spec is None:
        raise ModelFileError(f"{type(model).__name__} has no arch_spec: build it with ilif_deploy.architectures.build "
                             "(or register your builder with ilif_deploy.register_arch) so it can be saved safely")
    merged = dict(getattr(model, "ilif_settings", None) or DEFAULT_SETTINGS.get(spec["arch"], {}))
    merged.update(settings)
    missing = [k for k in SETTING_KEYS if k not in merged]
    if missing:
        raise ModelFileError(f"missing run settings {missing}: pass them to save(...)")
    payload = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "arch": spec["arch"],
               "arch_kwargs": _plain(spec["kwargs"]), "settings": _plain(merged),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _plain(obj):
    """Tuples become lists so the payload stays within what weights_only loading allows."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _check_zip_crcs(path: Path) -> None:
    """torch's zip reader does not check the CRC-32 it stores per record, so a flipped bit in a tensor
    loaded as a silently different weight (5 of 5 seeded flips in the hostile census); zipfile checks it."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # a legacy (non-zip) file, or not a model at all: torch.load says which
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ModelFileError(f"{path}: a damaged zip archive ({e})") from None
    if bad is not None:
        raise ModelFileError(f"{path}: damaged: record {bad.split('/', 1)[-1]!r} fails its CRC-32 check")


def resolve_example(path) -> Path:
    """``path`` as a file: ``example:NAME`` names a bundled example model (``example:digits_ilif``), from any
    folder; anything else is the path it says."""
    from .examples import PREFIX, model_path

    if not str(path).startswith(PREFIX):
        return Path(path)
    try:
        return model_path(str(path)[len(PREFIX):])
    except ValueError as e:
        raise ModelFileError(str(e)) from None


def _not_a_graph_file(path: Path) -> None:
    """A file of another kind given to load_model is named as what it is and what reads it (torch would call an
    HDF5 file "pickled Python objects" and advise trusting it)."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        raise ModelFileError(f"{path} is an HDF5 file (a NIR graph, a .lava.h5 or a lava-dl netx network), not a torch "
                             f"model: read it with ilif_deploy.converters.open_graph, or give it to any ilif-* tool")
    if zipfile.is_zipfile(path):
        with contextlib.suppress(zipfile.BadZipFile, OSError):
            if "__header__.npy" in zipfile.ZipFile(path).namelist():
                raise ModelFileError(f"{path} is an ilif-deploy graph file (.ir.npz), not a torch model: read it with "
                                     f"ilif_deploy.Graph.load or open_graph, or give it to any ilif-* tool")


def _torch_load(path: Path, trust_pickle: bool):
    from .bounded import check_zip, input_file

    if not path.exists() and not path.is_symlink():
        raise ModelFileError(f"model file not found: {path}")
    input_file(path, "the model file")
    _not_a_graph_file(path)
    check_zip(path)
    _check_zip_crcs(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        # torch reports both "unsafe content refused" and "corrupt pickle" this way
        if not trust_pickle and "Weights only load failed" in str(e):
            raise ModelFileError(
                f"{path} contains pickled Python objects beyond tensors and plain containers. Unpickling runs "
                "code from the file: only if you trust its origin, pass trust_pickle=True (CLI: --trust-pickle)."
            ) from None
        raise ModelFileError(f"{path}: not a readable torch model file (corrupt pickle: {e})") from None
    except Exception as e:  # torch.load raises KeyError, RuntimeError, EOFError... on foreign bytes
        raise ModelFileError(f"{path}: not a readable torch model file ({type(e).__name__}: {e})") from None


#: our format's fields and the types they must have (checked before anything is built)
MODEL_FIELDS = {"version": int, "arch": str, "arch_kwargs": dict, "settings": dict, "state_dict": dict}


def _check_fields(path: Path, obj: dict) -> None:
    for key, kind in MODEL_FIELDS.items():
        if key not in obj:
            raise ModelFileError(f"{path}: field {key!r} is missing")
        if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            raise ModelFileError(f"{path}: field {key!r} must be of type {kind.__name__}, found "
                                 f"{type(obj[key]).__name__} ({str(obj[key])[:40]!r})")
    unknown = sorted(set(obj) - set(MODEL_FIELDS) - {"format"})
    if unknown:
        raise ModelFileError(f"{path}: unknown field(s) {unknown}")
    if any(not isinstance(k, str) for k in obj["arch_kwargs"]):
        raise ModelFileError(f"{path}: arch_kwargs keys must be names")


def _check_settings(path: Path, settings: dict) -> dict:
    """The run settings a file stores, as what they are: T a whole number of steps (2.7 is not 2), the input
    shape whole positive sizes, the encoding one of the known ones."""
    from .ir.nodes import ENCODINGS

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    T, shape = settings.get("timesteps"), settings.get("input_shape")
    if T is not None and not whole(T):
        raise ModelFileError(f"{path}: settings.timesteps must be a whole number of steps >= 1, got {T!r}")
    if shape is not None and not (isinstance(shape, (list, tuple)) and 1 <= len(shape) <= 3
                                  and all(whole(s) for s in shape)):
        raise ModelFileError(f"{path}: settings.input_shape must be 1 to 3 whole sizes >= 1, got {shape!r}")
    if settings.get("encoding", "direct") not in ENCODINGS:
        raise ModelFileError(f"{path}: settings.encoding must be one of {', '.join(ENCODINGS)}, got "
                             f"{settings.get('encoding')!r}")
    return settings


def _strip_prefix(sd: dict) -> dict:
    # checkpoints saved from DataParallel / DistributedDataParallel prefix every key with 'module.'
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _build_for(path: Path, arch: str, kwargs: dict, sd: dict) -> nn.Module:
    """Build ``arch`` for the weights ``sd``: first on torch's meta device (shapes, no memory), checked
    against the file's tensors, and only then for real -- so a small file whose arguments ask for a huge
    network (``channels=[20000, 20000]``) is refused before anything is allocated."""
    if not isinstance(sd, dict):
        raise ModelFileError(f"{path}: the state_dict is a {type(sd).__name__}, not a dict of tensors")
    try:
        with torch.device("meta"):
            probe = build(arch, **kwargs)
    except UserError as e:
        raise ModelFileError(f"{path}: {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:  # arguments the builder rejects
        raise ModelFileError(f"{path}: architecture {arch!r} cannot be built with {kwargs} "
                             f"({type(e).__name__}: {e})") from None
    _check_state(probe, sd, path, arch)
    # the file's tensors become the parameters (assign): a model built for real would first allocate its own
    # random weights and then copy the file's in, holding three copies of the weights at once while it loads
    # (with the file's and, after tracing, the IR's); kept only where the file's tensors are exactly what the
    # built model would hold (same dtype) and nothing is left on the meta device (a buffer the state_dict lacks)
    own = probe.state_dict()
    if all(sd[k].dtype == v.dtype and sd[k].device.type == "cpu" for k, v in own.items()):
        probe.load_state_dict(sd, strict=True, assign=True)
        if not any(t.is_meta for t in list(probe.parameters()) + list(probe.buffers())):
            return probe
    model = build(arch, **kwargs)
    model.load_state_dict(sd, strict=True)
    return model


def _check_state(model: nn.Module, sd: dict, path: Path, arch: str) -> None:
    own = model.state_dict()
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelFileError(f"{path}: state_dict entries {bad[:3]} are not tensors")
    missing, unexpected = [k for k in own if k not in sd], [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    parts = [f"{len(missing)} keys missing, e.g. {', '.join(missing[:3])}"] if missing else []
    parts += [f"{len(unexpected)} unexpected, e.g. {', '.join(unexpected[:3])}"] if unexpected else []
    parts += [f"{len(shapes)} of another shape, e.g. {shapes[0]}: {list(sd[shapes[0]].shape)} in the file, "
              f"{list(own[shapes[0]].shape)} in the model"] if shapes else []
    if parts:
        raise ModelFileError(f"{path}: weights do not match architecture {arch!r}: {'; '.join(parts)}")


def load_model(path: Union[str, os.PathLike], arch: Optional[str] = None, num_classes: Optional[int] = None,
               trust_pickle: bool = False, dataset: Optional[str] = None, args_file=None, **kw) -> nn.Module:
    """Load a model file into a multi-step ``nn.Module`` in eval mode.

    Accepts ``example:NAME`` (a bundled model), our own format, the authors' checkpoints (``{'net': state_dict}``,
    needs ``arch`` and
    ``num_classes``), a bare state_dict (needs ``arch``), and, with ``trust_pickle=True`` only, a
    whole pickled module.  Graph files of every kind (``.ir.npz``, NIR, Lava) are read by
    :func:`ilif_deploy.converters.open_graph`.

    ``dataset`` names a preset of :data:`ilif_deploy.data.PRESETS` (``dvs-gesture``, ...): its input
    shape, T and encoding become the run settings, and a bare checkpoint is built with its class count
    and input channels.  Extra keyword arguments go to the architecture builder (e.g. ``neuron="lif"``,
    ``in_channels=2``, ``neuron_kwargs={"tau": 2.0}``, merged into the stored ones for our own format)
    except the run settings ``timesteps``, ``input_shape`` and ``encoding``, which override the rest.
    The returned module has ``ilif_settings`` (dict with those three) and ``forward([T, B, ...])``.

    An authors' checkpoint with the ``args.txt`` train.py wrote beside it (or ``args_file``) needs none of these:
    architecture, neuron, tau, T and dataset come from that file (:mod:`ilif_deploy.run_args`); what is given
    explicitly wins, with a warning where it contradicts the file, and what was taken is recorded in
    ``ilif_settings["run_args"]`` (so in the graph's metadata).
    """
    from .data import preset

    path = resolve_example(path)
    overrides = {k: kw.pop(k) for k in SETTING_KEYS if k in kw}
    obj = _torch_load(path, trust_pickle)
    run_args = None
    if isinstance(obj, dict) and obj.get("format") != MODEL_FORMAT and not isinstance(obj, nn.Module):
        arch, dataset, run_args = _with_run_args(path, args_file, arch, dataset, num_classes, kw, overrides)
    elif args_file is not None:
        raise ModelFileError(f"{path}: --args (a train.py args.txt) applies to the authors' checkpoints; this file "
                             f"stores its own settings")
    pre = preset(dataset) if dataset else None
    if isinstance(obj, nn.Module):  # only reachable with trust_pickle=True
        model, settings = obj, dict(getattr(obj, "ilif_settings", None) or {})
    elif isinstance(obj, dict) and obj.get("format") == MODEL_FORMAT:
        _check_fields(path, obj)
        if obj["version"] > MODEL_VERSION:
            raise ModelFileError(f"{path}: written by a newer ilif-deploy (format version {obj['version']})")
        name = obj["arch"]
        arch_kwargs = dict(obj.get("arch_kwargs", {}))
        if "neuron_kwargs" in kw:
            kw["neuron_kwargs"] = {**(arch_kwargs.get("neuron_kwargs") or {}), **kw["neuron_kwargs"]}
        arch_kwargs.update(kw)
        if pre and arch_kwargs.get("num_classes", pre.num_classes) != pre.num_classes:
            raise ModelFileError(f"{path}: the model has {arch_kwargs['num_classes']} classes, dataset {pre.name} "
                                 f"{pre.num_classes}")
        model = _build_for(path, name, arch_kwargs, obj["state_dict"])
        settings = _check_settings(path, dict(obj.get("settings", {})))
    elif isinstance(obj, dict) and ("net" in obj or all(isinstance(v, torch.Tensor) for v in obj.values())):
        sd = obj["net"] if "net" in obj else obj
        if not isinstance(sd, dict):
            raise ModelFileError(f"{path}: key 'net' does not hold a state_dict (found {type(sd).__name__})")
        if arch is None:
            raise ModelFileError(f"{path} is a bare checkpoint (state_dict without architecture): pass "
                                 f"arch=NAME (CLI --arch) and num_classes=N; known architectures: "
                                 f"{', '.join(known())}")
        if pre:
            kw.setdefault("in_channels", pre.input_shape[0])
        if num_classes is not None or pre:
            kw["num_classes"] = int(num_classes if num_classes is not None else pre.num_classes)
        model = _build_for(path, arch, kw, _strip_prefix(sd))
        settings = dict(DEFAULT_SETTINGS[arch])
    else:
        raise ModelFileError(f"{path}: not an ilif-deploy model, an authors' checkpoint ({{'net': state_dict}}) "
                             f"or a state_dict (found {type(obj).__name__}"
                             f"{' with keys ' + str(list(obj)[:5]) if isinstance(obj, dict) else ''})")
    if pre:
        settings.update(input_shape=list(pre.input_shape), timesteps=pre.timesteps, encoding=pre.encoding,
                        dataset=pre.name)
    if any(isinstance(m, ReLU) for m in model.modules()):
        settings["timesteps"] = 1  # an ANN (train.py's relu baseline) runs once per sample
    settings.update(overrides)
    if run_args:
        settings["run_args"] = run_args
    model.ilif_settings = settings
    return model.eval()


def _with_run_args(path: Path, args_file, arch, dataset, num_classes, kw: dict, overrides: dict):
    """``(arch, dataset, taken)`` of a checkpoint with a train.py ``args.txt`` (``kw``/``overrides`` updated in
    place with its neuron, tau, T and vggsnn's input size); unchanged and None without one."""
    from .run_args import find_args, load_options, merge, read_args

    found = find_args(path, args_file)
    if found is None:
        return arch, dataset, None
    options, taken = load_options(read_args(found), str(found))
    merged = merge(options, {"arch": arch, "dataset": dataset, "neuron": kw.get("neuron"),
                             "neuron_kwargs": kw.get("neuron_kwargs"), "timesteps": overrides.get("timesteps"),
                             "in_size": kw.get("in_size")}, str(found))
    for key in ("neuron", "neuron_kwargs", "in_size"):
        if merged.get(key) is not None:
            kw[key] = merged[key]
    overrides["timesteps"] = merged["timesteps"]
    return merged["arch"], merged["dataset"], {"file": str(found), **taken}
