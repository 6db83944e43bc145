"""The ``--target lava`` artifact: one HDF5 file with the network as this project's Lava builder
runs it.  (Not a lava-dl netx file: netx's CUBA neuron resets to zero and fires on ``v > vth``, while ILIF
and this project's LIF use soft reset and ``>=``, and netx has no pooling/residual layers.)

Every array is stored once, in the precision it is used in (version 3)::

    /                    attrs: format="ilif-deploy-lava", version, timesteps, encoding, dense_conv_limit
    /ir_graph            the exact IR graph (ilif-deploy .npz bytes; float32 weights): the float synapses are
                         rebuilt from it on reading (build_netspec is deterministic), and ilif-simulate compares
                         with the torch runtime on it
    /fixed               attrs frac_bits, input_frac_bits, weight_bits (and delta_state_exp where a network has delta
                         encoders and it is not 0): the fixed-point format of the mantissas
    /layer/0             type="input", shape [C, H, W], encoding
    /layer/<i>           type="neuron" | "maxpool" (a neuron layer) ... and last "readout" (files before version 4:
                         the neuron's source module, "ilif" | "lif" | "iplif", for "neuron")
        name, shape, depth (connections from the input), a_exp (the layer's weight exponent)
        neuron/          type="ILIF", family (its label, :mod:`ilif_deploy.families`), attrs params (JSON of every
                         ILIFParams field) and syn_lam (decay of a synaptic current, 0: none), compartments (the
                         names of its state variables)
        synapse/<j>/     source (layer name or "input"; its own name: a recurrent synapse), kind ("dense" |
                         "conv" | "sparse"), in_shape,
                         out_shape, stride, padding, dilation, groups, delay (extra steps), graded (analog input),
                         counts (spike counts of a multi-spike layer; version 4), delta (a delta encoder's
                         messages; absent: False), mantissa (int8 or int16:
                         signed weight_bits mantissas m; Lava's Dense takes 2 m)

Versions 1 and 2 stored float64 weights and biases per synapse (2.3x the float32 weights for ResNet-18);
they are still read.  Writing needs only h5py (no Lava).
"""
from __future__ import annotations

import io
import json
import os
from typing import Callable, Optional, Tuple, Union

import h5py
import numpy as np

from ilif_deploy import families
from ilif_deploy.atomic import Extent, write_hdf5_atomic
from ilif_deploy.errors import UserError
from ilif_deploy.ir.graph import Graph
from ilif_deploy.limits import release_freed_memory
from ilif_deploy.neuron_step import ILIFParams

from .fixed import (FixedPoint, QuantizedLayer, native_format, quantization_format, quantize_layer, quantize_spec,
                    quantized_layers)
from .netspec import INPUT, OUTPUT, Layer, NetSpec, Synapse, build_netspec, spec_frame

FORMAT = "ilif-deploy-lava"
VERSION = 4
#: the layer types of files before version 4 (the neuron's source module) and what they are now
_LEGACY_TYPES = {"ilif": "neuron", "lif": "neuron", "iplif": "neuron"}


class LavaFileError(UserError):
    """A file that is not a readable ilif-deploy Lava network; the message names what is wrong."""


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class _DatasetFile(Extent):
    """A seekable binary file whose bytes are a uint8 HDF5 dataset of the file's final size."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset

    def write(self, b) -> int:
        data = np.frombuffer(b, dtype=np.uint8)
        self.dataset[self.pos:self.pos + data.size] = data
        return super().write(b)


def _embed_graph(f: h5py.File, name: str, graph: Graph) -> None:
    """``graph``'s ``.npz`` file (:meth:`~ilif_deploy.ir.graph.Graph.write_npz`) as the uint8 dataset ``name``, written
    straight into it: a first pass measures the file, a second writes it into a dataset of that size.  Why: the
    ``.npz`` made in memory first (``to_bytes``) peaked 70 MB above a ResNet-18's 43 MB beside the HDF5 file's own
    copy; the file is the one ``create_dataset(name, data=<its bytes>)`` writes."""
    extent = Extent()
    graph.write_npz(extent)
    graph.write_npz(_DatasetFile(f.create_dataset(name, shape=(extent.size,), dtype=np.uint8)))


class _LayerStore:
    """Stores each layer of the network as ``/layer/<i>`` when it is handed over quantized (written, let go), the
    readout last: the writer of a built spec and the one that builds as it writes share it."""

    def __init__(self, root: h5py.Group, fp: FixedPoint):
        self.root, self.fp = root, fp
        self.stored, self._readout = 0, None

    def put(self, q: QuantizedLayer, incoming) -> None:
        """A quantized layer and its incoming ``(index, synapse)`` pairs (:data:`OUTPUT`, the readout, is held
        until :meth:`finish`)."""
        if q.layer.name == OUTPUT:
            self._readout = (q, incoming)
        else:
            self._store(q, incoming)

    def finish(self) -> None:
        self._store(*self._readout)
        self._readout = None

    def _store(self, q: QuantizedLayer, incoming) -> None:
        fp, layer = self.fp, q.layer
        self.stored += 1
        g = self.root.create_group(str(self.stored))
        g["type"] = layer.kind
        g["name"], g["shape"], g["depth"] = layer.name, np.asarray(layer.shape), layer.depth
        g["a_exp"] = q.a_exp
        if layer.params is not None:
            n = g.create_group("neuron")
            view = families.NeuronView(layer.name, layer.params, layer.syn_lam, any(s.recurrent for _, s in incoming))
            n["type"], n["family"] = "ILIF", families.family(view)
            n["compartments"] = ["u", *families.state_names(view)]
            n.attrs["params"] = json.dumps(layer.params.to_dict())
            n.attrs["syn_lam"] = layer.syn_lam
        syn = g.create_group("synapse")
        for j, ((_, s), mantissa) in enumerate(zip(incoming, q.mantissas)):
            h = syn.create_group(str(j))
            h["source"], h["kind"] = s.source, s.kind
            # halved back in place (the layer's own array, let go once written; an arithmetic shift: the mantissas
            # are even, and >> is 10x faster than //)
            mantissa >>= 1
            stored = mantissa.astype(np.int8 if fp.weight_bits <= 8 else np.int16)
            h.create_dataset("mantissa", data=stored, compression="gzip")
            for key in ("in_shape", "out_shape", "stride", "padding", "dilation"):
                h[key] = np.asarray(getattr(s, key))
            h["groups"], h["delay"], h["graded"], h["counts"] = s.groups, s.delay, int(s.graded), int(s.counts)
            if s.delta:
                h["delta"] = 1


def _write_file(path, graph: Graph, spec: NetSpec, fp: FixedPoint, dense_conv_limit: int,
                layers: Callable[[_LayerStore], None]) -> None:
    """The file: its header (``spec``'s input, time steps, encoding and source; its layers may be still to come),
    the layers ``layers(store)`` puts into the store in the spec's order, the IR graph."""
    def fill(target):
        with h5py.File(target, "w") as f:
            f.attrs.update(format=FORMAT, version=VERSION, timesteps=spec.timesteps, encoding=spec.encoding,
                           source=str(spec.metadata.get("source", "")), dense_conv_limit=int(dense_conv_limit))
            f.create_group("fixed").attrs.update(frac_bits=fp.frac_bits, input_frac_bits=fp.input_frac_bits,
                                                 weight_bits=fp.weight_bits)
            if fp.delta_state_exp:  # written only where it matters: files of networks without one stay as they were
                f["fixed"].attrs["delta_state_exp"] = fp.delta_state_exp
            root = f.create_group("layer")
            g0 = root.create_group("0")
            g0["type"], g0["shape"], g0["encoding"] = "input", np.asarray(spec.input_shape), spec.encoding
            store = _LayerStore(root, fp)
            layers(store)
            store.finish()
            release_freed_memory()  # the float64 weights and mantissas, before the IR graph's copy is made
            _embed_graph(f, "ir_graph", graph)

    write_hdf5_atomic(path, fill)


def write(spec: NetSpec, graph: Graph, path: Union[str, os.PathLike], fixed: Optional[FixedPoint] = None,
          dense_conv_limit: int = 0, consume: bool = False) -> None:
    """Write ``spec`` (built from ``graph`` with ``dense_conv_limit``) and its mantissas in ``fixed``
    (default :func:`~.fixed.quantization_format`) to ``path`` atomically, one layer at a time: each layer's
    mantissas are made, written and let go before the next (a ResNet-18's int64 mantissas are 85 MB whole).
    ``consume``: the caller hands ``spec`` over, and its float64 weights (the file holds mantissas, not them: twice
    the network's float32 bytes) are dropped layer by layer as they are quantized; its structure stays.
    :func:`build_and_write` builds the spec as it writes, never holding it whole."""
    fp = quantization_format(spec, fixed)

    def layers(store: _LayerStore) -> None:
        for q in quantized_layers(spec, fp, drop_weights=consume):
            store.put(q, [(i, spec.synapses[i]) for i in q.synapses])

    _write_file(path, graph, spec, fp, dense_conv_limit, layers)


def build_and_write(graph: Graph, path: Union[str, os.PathLike], fixed: Optional[FixedPoint] = None,
                    dense_conv_limit: int = 0) -> NetSpec:
    """:func:`build_netspec` and :func:`write` in one pass: each layer is built, quantized, written and let go
    before the next is built (``take_layer``), so the float64 synapses (twice the network's float32 bytes) are never
    in memory whole.  The file is the one :func:`write` writes.  Returns the spec, its structure only (weights None).
    """
    frame = spec_frame(graph)  # the header, before any layer is built
    fp = quantization_format(frame, fixed)
    native = fp == native_format(frame.metadata)
    built = []

    def layers(store: _LayerStore) -> None:
        built.append(build_netspec(graph, dense_conv_limit=dense_conv_limit, take_layer=lambda layer, incoming:
                                   store.put(quantize_layer(layer, incoming, fp, native), incoming)))

    _write_file(path, graph, frame, fp, dense_conv_limit, layers)
    return built[0]


def _same_structure(path, stored: NetSpec, built: NetSpec) -> None:
    """The layers and synapses listed in the file are the ones its IR graph builds (else it was edited)."""
    def shape_of(spec):
        return ([(lay.name, lay.kind, tuple(lay.shape), lay.depth) for lay in spec.layers + [spec.readout]],
                [(s.source, s.target, s.kind, tuple(s.in_shape), tuple(s.out_shape), s.delay, s.graded, s.counts)
                 for s in spec.synapses])

    a, b = shape_of(stored), shape_of(built)
    if a != b:
        what = "layers" if a[0] != b[0] else "synapses"
        raise LavaFileError(f"{path}: the {what} listed in the file differ from what its IR graph builds "
                            f"(edited?); re-export it with ilif-export MODEL --target lava")


def read(path: Union[str, os.PathLike]) -> Tuple[NetSpec, Graph]:
    """Read a file written by :func:`write`: the network description and the IR graph."""
    from ..hdf5_safety import check_self_contained

    check_self_contained(path)  # returns for files that are not HDF5: h5py says what they are below
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise LavaFileError(f"{path}: not an HDF5 file ({e})") from None
    with f:
        if _str(f.attrs.get("format", "")) != FORMAT:
            raise LavaFileError(f"{path}: not an ilif-deploy Lava network (format={f.attrs.get('format')!r}); "
                                f"write one with: ilif-export MODEL --target lava")
        if int(f.attrs.get("version", 0)) > VERSION:
            raise LavaFileError(f"{path}: format version {f.attrs['version']} is newer than this ilif-deploy "
                                f"reads ({VERSION})")
        try:
            layers_g = f["layer"]
            n = len(layers_g)
            g0 = layers_g["0"]
            if _str(g0["type"][()]) != "input":
                raise LavaFileError(f"{path}: /layer/0 must be the input layer")
            input_shape = tuple(int(v) for v in g0["shape"][()])
            timesteps, encoding = int(f.attrs["timesteps"]), _str(f.attrs["encoding"])
            layers, synapses, mantissas, exponents = [], [], [], {}
            fixed = FixedPoint(**{k: int(v) for k, v in f["fixed"].attrs.items()}) if "fixed" in f else None
            dense_conv_limit = int(f.attrs.get("dense_conv_limit", 0))
            for i in range(1, n):
                g = layers_g[str(i)]
                kind = _str(g["type"][()])
                kind = _LEGACY_TYPES.get(kind, kind)
                name = _str(g["name"][()])
                shape = tuple(int(v) for v in g["shape"][()])
                if "a_exp" in g:
                    exponents[name] = int(g["a_exp"][()])
                if "neuron" in g:
                    nn = g["neuron"]
                    if "params" in nn.attrs:
                        params = ILIFParams.from_dict(json.loads(_str(nn.attrs["params"])))
                    else:  # version 1 stored the contract's five parameters as datasets
                        params = ILIFParams(**{k: float(nn[k][()]) for k in ("lam", "v_th", "lam_u", "lam_i")},
                                            ciu_source=_str(nn["ciu_source"][()]))
                    bias = nn["bias"][()] if "bias" in nn else None
                else:
                    params, bias = None, g["bias"][()] if "bias" in g else None
                layers.append(Layer(name=name, shape=shape, params=params, bias=bias, kind=kind,
                                    depth=int(g["depth"][()])))
                for j in range(len(g["synapse"])):
                    h = g["synapse"][str(j)]
                    tup = lambda k: tuple(int(v) for v in h[k][()])  # noqa: E731
                    if "mantissa" in h:
                        mantissas.append(2 * h["mantissa"][()].astype(np.int64))
                    synapses.append(Synapse(source=_str(h["source"][()]), target=name, kind=_str(h["kind"][()]),
                                            weight=h["weight"][()] if "weight" in h else None,
                                            in_shape=tup("in_shape"),
                                            out_shape=tup("out_shape"), stride=tup("stride"),
                                            padding=tup("padding"), dilation=tup("dilation"),
                                            groups=int(h["groups"][()]), delay=int(h["delay"][()]),
                                            graded=bool(h["graded"][()]),
                                            counts=bool(h["counts"][()]) if "counts" in h else False,
                                            delta=bool(h["delta"][()]) if "delta" in h else False))
            ir_bytes = f["ir_graph"][()].tobytes()
        except KeyError as e:
            raise LavaFileError(f"{path}: missing entry {e}") from None
        except (OSError, ValueError, TypeError, IndexError) as e:  # damaged chunks (h5py), wrong types or shapes
            raise LavaFileError(f"{path}: damaged or malformed ({type(e).__name__}: {e})") from None
    if not layers or layers[-1].kind != "readout" or layers[-1].name != OUTPUT:
        raise LavaFileError(f"{path}: the last layer must be the readout")
    names = {INPUT} | {lay.name for lay in layers}
    for s in synapses:
        if s.source not in names:
            raise LavaFileError(f"{path}: synapse into '{s.target}' reads unknown layer '{s.source}'")
    try:
        graph = Graph.load(io.BytesIO(ir_bytes))
    except UserError as e:
        raise LavaFileError(f"{path}: its stored IR graph is damaged ({e})") from None
    spec = NetSpec(input_shape=input_shape, timesteps=timesteps, encoding=encoding, layers=layers[:-1],
                   synapses=synapses, readout=layers[-1], metadata=dict(graph.metadata))
    if any(s.weight is None for s in synapses):  # version 3: the float synapses come from the IR graph
        built = build_netspec(graph, dense_conv_limit=dense_conv_limit)
        _same_structure(path, spec, built)
        spec = built
    if fixed is not None:
        if len(mantissas) != len(synapses):
            raise LavaFileError(f"{path}: {len(mantissas)} mantissa arrays for {len(synapses)} synapses")
        for m, s in zip(mantissas, spec.synapses):
            if m.shape != np.shape(s.weight):
                raise LavaFileError(f"{path}: mantissas of the synapse {s.source} -> {s.target} have shape "
                                    f"{list(m.shape)}, its weights {list(np.shape(s.weight))}")
        spec.quantized = quantize_spec(spec, fixed, mantissas=mantissas, exponents=exponents)
    return spec, graph
