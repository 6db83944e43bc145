"""File formats: the writer table (IR graph -> artifact) and the reader table (file -> IR graph).

Installed as ``ilif_deploy.converters``.  Each target module provides ``export_graph(graph, path,
**options) -> dict`` and is imported only when asked for, so a missing optional backend (Lava) only
affects its own target.  Every tool opens its input through :func:`open_file` / :func:`open_graph`:
the kind of file is read from its content, not its name, and an option that does not apply to that
kind (or target) is refused by name instead of being dropped.
"""
from __future__ import annotations

import importlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Tuple


from ilif_deploy.errors import GraphError, UserError
from ilif_deploy.ir.graph import Graph


class TargetUnavailable(UserError):
    """The target's converter (or the library it needs) is not installed here."""


class OptionError(UserError):
    """An option that does not apply to the input or target it was given for."""


def _refuse(options: dict, allowed, what: str, table: dict) -> None:
    """OptionError for given options (not None) outside ``allowed``, saying where they apply
    (``table``: label -> options); a False value is the ``--no-`` form of its flag."""
    bad = [k for k, v in options.items() if v is not None and k not in allowed]
    if bad:
        flags = ", ".join(("--no-" if options[k] is False else "--") + k.replace("_", "-") for k in bad)
        others = [label for label, opts in table.items() if set(bad) <= set(opts)]
        raise OptionError(f"{flags} does not apply to {what}" + (f"; it applies to {' and '.join(others)}"
                                                                 if others else ""))


@dataclass(frozen=True)
class Target:
    """A writer: ``<module>.export_graph(graph, path, **options)``, its file suffix, the options it takes."""

    module: str
    suffix: str
    options: Tuple[str, ...] = ()
    #: the writer takes a graph handed over (``consume=True``) and empties it once it needs it no more
    consumes: bool = False


#: ``fold_bn``: write the graph with BatchNorm folded into the weights (see :func:`export`; Lava always folds)
TARGETS = {"ir": Target(".ir_file", ".ir.npz", ("fold_bn",)), "lava": Target(".lava", ".lava.h5"),
           "nir": Target(".nir", ".nir", ("fidelity", "fold_bn"), consumes=True),
           "onnx": Target(".onnx", ".onnx", ("fidelity", "fold_bn"), consumes=True), "netx": Target(".netx", ".net")}


def get_exporter(target: str, **options) -> Callable:
    """The export function of ``target``; options it does not take (given as not None) are refused."""
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    _refuse(options, TARGETS[target].options, f"the {target} target",
            {f"--target {k}": v.options for k, v in TARGETS.items()})
    try:
        return importlib.import_module(TARGETS[target].module, __name__).export_graph
    except ImportError as e:
        raise TargetUnavailable(f"target {target!r} is not available: {e}") from e


def export(graph: Graph, target: str, path, fold_bn: bool = False, check_samples: int = 8, data=None,
           consume: bool = False, **options) -> dict:
    """Write ``graph`` as ``target`` at ``path``; returns what the exporter reports.

    Where the written artifact computes a lowered graph -- BatchNorm folded into the weights with
    ``fold_bn`` (ir, nir, onnx), and always for Lava (BN folded, synapses summed in float64) -- the
    lowered graph is run against the exact one on the first ``check_samples`` samples of ``data`` (a
    :class:`~ilif_deploy.data.Dataset`; default :func:`ilif_deploy.data.probe_inputs`) and ``info["lowering"]``
    says how far it moved (an :class:`~ilif_deploy.agreement.Agreement`: spikes per layer, predictions).
    ``data`` also feeds the ``fidelity`` measurement of nir and onnx.

    ``consume``: the caller will not use ``graph`` again (the command line).  Where nothing after the write needs
    it (no lowering check, no fidelity run), a writer that reads its file back (nir, onnx) empties it first
    (:meth:`~ilif_deploy.ir.graph.Graph.clear`), so the weights and the file's read-back are not in memory together.
    """
    from ilif_deploy.agreement import compare_graphs
    from ilif_deploy.data import probe_inputs
    from ilif_deploy.ir.lowering import fold_batchnorm

    exporter = get_exporter(target, fold_bn=fold_bn or None, **options)
    lowered = fold_batchnorm(graph) if fold_bn else None
    if data is not None and options.get("fidelity"):
        options["fidelity_data"] = data
    if consume and TARGETS[target].consumes and lowered is None and not options.get("fidelity"):
        options["consume"] = True
    info = exporter(lowered if fold_bn else graph, path, **{k: v for k, v in options.items() if v is not None})
    if target == "lava":  # what its synapses compute; folded after the write, which folds (and holds) its own
        lowered = fold_batchnorm(graph)
    if lowered is not None and check_samples:
        from ilif_deploy.limits import release_freed_memory

        release_freed_memory()  # what writing the artifact held, before the check runs beside the two graphs
        sample = (data if data is not None else probe_inputs(graph, check_samples)).take(check_samples)
        info["lowering"] = compare_graphs(graph, lowered, sample, name="BN folded" + (
            ", float64 synapses (Lava)" if target == "lava" else ""), float64_synapses=target == "lava").to_dict()
    return info


# ----------------------------------------------------------------------------- readers
@dataclass
class OpenedFile:
    """What a reader made of a file: its ``kind``, the IR ``graph`` and, for Lava files, the stored
    network description (``artifact``)."""

    kind: str
    path: Path
    graph: Graph
    artifact: Any = None


NEURON_OPTIONS = ("tau", "v_th", "lam_u", "lam_i", "ciu_source")


def _read_model(path: Path, arch=None, arch_module=None, args=None, dataset=None, num_classes=None, in_channels=None,
                neuron=None, timesteps=None, input_shape=None, trust_pickle=None, **neuron_options) -> OpenedFile:
    from ilif_deploy.architectures import load_arch_module
    from ilif_deploy.model_files import load_model
    from ilif_deploy.tracing import trace

    if arch_module:
        load_arch_module(arch_module)
    given = (("neuron", neuron), ("in_channels", in_channels), ("timesteps", timesteps))
    kw = {k: v for k, v in given if v is not None}
    neuron_kwargs = {k: v for k, v in neuron_options.items() if v is not None}
    model = load_model(path, arch=arch, num_classes=num_classes, trust_pickle=bool(trust_pickle), dataset=dataset,
                       args_file=args, **kw, **({"neuron_kwargs": neuron_kwargs} if neuron_kwargs else {}))
    settings = model.ilif_settings
    T, shape = timesteps or settings.get("timesteps"), input_shape or settings.get("input_shape")
    if not T or not shape:
        raise UserError(f"{path}: no timesteps/input shape stored: pass --timesteps and --input-shape")
    from ilif_deploy.ir.nodes import ENCODINGS

    if settings.get("encoding", "direct") not in ENCODINGS:
        raise UserError(f"{path}: settings.encoding must be one of {', '.join(ENCODINGS)}, got "
                        f"{settings.get('encoding')!r}")
    # the module was built here and is dropped after tracing: the graph may keep its tensors instead of copies
    return OpenedFile("model", path, trace(model, tuple(shape), int(T), encoding=settings.get("encoding", "direct"),
                                           share_weights=True))


def _graph_reader(kind: str, load: Callable[[Path], Graph]):
    def read(path: Path, timesteps=None) -> OpenedFile:
        g = load(path)
        if timesteps:
            g.metadata["timesteps"] = int(timesteps)
        return OpenedFile(kind, path, g.validate())
    return read


def _read_nir(path: Path, timesteps=None, dt=None, if_convention=None, nir_from=None, reset=None) -> OpenedFile:
    from .nir import read_graph

    g = read_graph(path, dt=dt, if_convention=if_convention, nir_from=nir_from, reset=reset)
    if timesteps:
        g.metadata["timesteps"] = int(timesteps)
    return OpenedFile("nir", path, g.validate())


def _read_netx(path: Path, timesteps=None) -> OpenedFile:
    from .netx import read_netx

    return OpenedFile("netx", path, read_netx(path, timesteps))


def _read_lava(path: Path) -> OpenedFile:
    from .lava import load

    spec, graph = load(path)
    return OpenedFile("lava", path, graph, spec)


@dataclass(frozen=True)
class Reader:
    what: str
    read: Callable[..., OpenedFile]
    options: Tuple[str, ...]


READERS = {
    "model": Reader("a torch model file", _read_model, ("arch", "arch_module", "args", "dataset", "num_classes",
                                                        "in_channels", "neuron", "timesteps", "input_shape",
                                                        "trust_pickle")
                    + NEURON_OPTIONS),
    "ir": Reader("an IR graph file (.ir.npz)", _graph_reader("ir", Graph.load), ("timesteps",)),
    "nir": Reader("a NIR file", _read_nir, ("timesteps", "dt", "if_convention", "nir_from", "reset")),
    "lava": Reader("an ilif-deploy Lava network (.lava.h5)", _read_lava, ()),
    "netx": Reader("a lava-dl netx network (.net)", _read_netx, ("timesteps",)),
}


def resolve(path) -> Path:
    """``path`` as a file: ``example:NAME`` names a bundled example model (``example:digits_ilif``)."""
    from ilif_deploy.model_files import resolve_example

    return resolve_example(path)


def _looks_like_onnx(p: Path) -> bool:
    """An ONNX protobuf: onnx parses it and finds a graph (a few bytes of random data do not parse)."""
    try:
        import onnx

        if p.stat().st_size > (1 << 31):
            return False
        model = onnx.load_model(str(p), load_external_data=False)
        return bool(model.graph.node) or bool(model.ir_version)
    except Exception:  # noqa: BLE001 - anything onnx cannot parse is simply not ONNX
        return False


def file_kind(path) -> str:
    """The kind of file at ``path`` (a key of :data:`READERS`), read from its content."""
    from ilif_deploy.bounded import check_zip, input_file

    p = resolve(path)
    if not p.exists() and not p.is_symlink():
        raise UserError(f"model file not found: {p}")
    input_file(p, "the model file")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if not head:
        raise UserError(f"{p} is empty (0 bytes)")
    if head.startswith(b"PK\x03\x04"):
        check_zip(p)
        try:
            names = zipfile.ZipFile(p).namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise UserError(f"{p}: a damaged zip archive ({e})") from None
        if "__header__.npy" in names or any(n.endswith("data.pkl") for n in names):
            return "ir" if "__header__.npy" in names else "model"
        data = " (a numpy .npz of arrays: data goes to --data)" if all(n.endswith(".npy") for n in names) else ""
        raise UserError(f"{p}: a zip archive holding {names[:4]}, neither a torch model nor an ilif-deploy graph{data}")
    if head == b"\x89HDF\r\n\x1a\n":
        import h5py

        try:  # only attributes and names are read here; each HDF5 reader checks self-containment first
            with h5py.File(p, "r") as f:
                if f.attrs.get("format") in ("ilif-deploy-lava", b"ilif-deploy-lava") or "node" in f:
                    return "nir" if "node" in f else "lava"
                from .netx import looks_like_netx

                if looks_like_netx(f):
                    return "netx"
                found = sorted(f)[:5]
        except (OSError, RuntimeError, KeyError) as e:  # h5py raises all three on damaged metadata
            raise UserError(f"{p}: a damaged HDF5 file ({e})") from None
        raise UserError(f"{p}: an HDF5 file with {found}, neither a NIR graph, an ilif-deploy Lava network nor a "
                        f"lava-dl netx network")
    if head[:1] == b"\x80":  # a pickle (torch's legacy, non-zip format)
        return "model"
    if _looks_like_onnx(p):
        raise UserError(f"{p}: an ONNX model; ilif-deploy writes ONNX (--target onnx) but reads torch models, "
                        f".ir.npz graphs, NIR, .lava.h5 and netx .net files")
    raise UserError(f"{p}: not a file ilif-deploy reads (a torch model, .ir.npz, NIR, .lava.h5 or netx .net); "
                    f"it starts with {head!r}")


def open_file(path, **options) -> OpenedFile:
    """Read ``path`` with the reader for its kind.  Options (None means not given), for torch model files:
    ``arch, arch_module, dataset, num_classes, in_channels, neuron, tau, v_th, lam_u, lam_i, ciu_source,
    input_shape, trust_pickle``; ``timesteps`` for every graph kind but Lava's.  One the kind does not take
    raises :class:`OptionError` naming it."""
    path = resolve(path)
    reader = READERS[file_kind(path)]
    unknown = set(options) - {o for r in READERS.values() for o in r.options} - {"max_memory"}
    if unknown:
        raise TypeError(f"open_file() got unknown option(s) {sorted(unknown)}")
    max_memory = options.pop("max_memory", None)
    _refuse(options, reader.options, f"{reader.what} ({path})", {r.what: r.options for r in READERS.values()})
    _check_counts(options)
    try:
        opened = reader.read(path, **{k: v for k, v in options.items() if k in reader.options})
    except GraphError as e:
        # the graph a file describes is invalid: every reader's refusal names the file (the node check that
        # raised it knows only the node)
        if path.name not in str(e):
            raise GraphError(f"{path}: {e}") from None
        raise
    check_memory(opened.graph, max_memory, str(path))
    from ilif_deploy.limits import release_freed_memory

    release_freed_memory()  # what loading and tracing freed (the probe's activations, the file's bytes)
    return opened


def check_memory(graph: Graph, max_memory: Optional[float], what: str) -> None:
    """Set the memory limit for the command's runs (``max_memory`` GB; default half the machine's memory,
    :mod:`ilif_deploy.limits`) and refuse a graph whose activations for one sample alive at once, in float64
    (Lava's synapses, the analytic estimate), would exceed it: a small file can declare 10**9 neurons."""
    from ilif_deploy.limits import check_run, set_memory_limit

    set_memory_limit(max_memory)
    check_run(graph, int(graph.timesteps or 1), 1, itemsize=8, what=what)


#: options that count something, with their flags: each must be a whole number >= 1 when given
COUNT_OPTIONS = {"timesteps": "--timesteps/-T", "num_classes": "--num-classes", "in_channels": "--in-channels"}


def _check_counts(options: dict) -> None:
    for key, flag in COUNT_OPTIONS.items():
        v = options.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise OptionError(f"{flag} must be a whole number >= 1, got {v!r}")
    shape = options.get("input_shape")
    if shape is not None and (not shape or any(not isinstance(d, int) or d < 1 for d in shape)):
        raise OptionError(f"--input-shape must be sizes >= 1 (e.g. 3,32,32), got {','.join(map(str, shape))}")


def open_graph(path, **options) -> Graph:
    """The IR graph of the file at ``path`` (any kind; options as for :func:`open_file`)."""
    return open_file(path, **options).graph
