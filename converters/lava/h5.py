"""The ``--target lava`` artifact: an HDF5 file laid out like lava-dl netx networks.

netx keeps one group per layer under ``/layer/<i>`` with datasets ``type``, ``shape``, ``weight``
and a ``neuron`` group.  This file does the same, with what ILIF needs on top::

    /                    attrs: format="ilif-deploy-lava", version, timesteps, encoding
    /layer/0             type="input", shape [C, H, W], encoding
    /layer/<i>           type="ilif" | "lif" | "iplif" (a neuron layer) ... and last "readout"
        name, shape, depth (connections from the input)
        neuron/          type="ILIF", attrs params (JSON of every ILIFParams field),
                         compartments=["u", "v", "ciu", "mpiu"], bias [shape]
        bias             (readout only) constant output current [shape]
        synapse/<j>/     source (layer name or "input"), kind ("dense" | "conv" | "sparse"),
                         weight, in_shape, out_shape, stride, padding, dilation, groups,
                         delay (extra steps), graded (analog input)
    /ir_graph            the exact IR graph (ilif-deploy .npz bytes) the file was made from, so
                         ilif-simulate can compare with the torch runtime

Shapes and arrays are channel-first (the IR's layout); the Lava loader converts to Lava's (W, H, C).
netx cannot run these files: its CUBA neuron resets to zero and fires on ``v > vth``, while ILIF
(and this project's LIF) use soft reset and ``>=``; and netx has no pooling/residual layers.
Writing needs only h5py (no Lava).
"""
from __future__ import annotations

import io
import json
import os
from typing import Tuple, Union

import h5py
import numpy as np

from ilif_deploy.atomic import atomic_path
from ilif_deploy.errors import UserError
from ilif_deploy.ir.graph import Graph
from ilif_deploy.neuron_step import ILIFParams

from .netspec import INPUT, OUTPUT, Layer, NetSpec, Synapse

FORMAT = "ilif-deploy-lava"
VERSION = 2
COMPARTMENTS = ["u", "v", "ciu", "mpiu"]


class LavaFileError(UserError):
    """A file that is not a readable ilif-deploy Lava network; the message names what is wrong."""


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def write(spec: NetSpec, graph: Graph, path: Union[str, os.PathLike]) -> None:
    """Write ``spec`` (and the IR ``graph`` it came from) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=FORMAT, version=VERSION, timesteps=spec.timesteps, encoding=spec.encoding,
                           source=str(spec.metadata.get("source", "")))
            root = f.create_group("layer")
            g0 = root.create_group("0")
            g0["type"], g0["shape"], g0["encoding"] = "input", np.asarray(spec.input_shape), spec.encoding
            for i, layer in enumerate(spec.layers + [spec.readout], start=1):
                g = root.create_group(str(i))
                g["type"] = layer.kind
                g["name"], g["shape"], g["depth"] = layer.name, np.asarray(layer.shape), layer.depth
                if layer.params is not None:
                    n = g.create_group("neuron")
                    n["type"], n["compartments"] = "ILIF", COMPARTMENTS
                    n.attrs["params"] = json.dumps(layer.params.to_dict())
                    n.create_dataset("bias", data=layer.bias.astype(np.float64), compression="gzip")
                else:
                    g["bias"] = layer.bias.astype(np.float64)
                syn = g.create_group("synapse")
                for j, s in enumerate(spec.incoming(layer.name)):
                    h = syn.create_group(str(j))
                    h["source"], h["kind"] = s.source, s.kind
                    h.create_dataset("weight", data=s.weight, compression="gzip")
                    for k in ("in_shape", "out_shape", "stride", "padding", "dilation"):
                        h[k] = np.asarray(getattr(s, k))
                    h["groups"], h["delay"], h["graded"] = s.groups, s.delay, int(s.graded)
            graph_tmp = str(tmp) + ".ir.npz"
            try:
                graph.save(graph_tmp)
                with open(graph_tmp, "rb") as fh:
                    f.create_dataset("ir_graph", data=np.frombuffer(fh.read(), dtype=np.uint8))
            finally:
                if os.path.exists(graph_tmp):
                    os.unlink(graph_tmp)


def read(path: Union[str, os.PathLike]) -> Tuple[NetSpec, Graph]:
    """Read a file written by :func:`write`: the network description and the IR graph."""
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
            layers, synapses = [], []
            for i in range(1, n):
                g = layers_g[str(i)]
                kind = _str(g["type"][()])
                name = _str(g["name"][()])
                shape = tuple(int(v) for v in g["shape"][()])
                if "neuron" in g:
                    nn = g["neuron"]
                    if "params" in nn.attrs:
                        params = ILIFParams.from_dict(json.loads(_str(nn.attrs["params"])))
                    else:  # version 1 stored the contract's five parameters as datasets
                        params = ILIFParams(**{k: float(nn[k][()]) for k in ("lam", "v_th", "lam_u", "lam_i")},
                                            ciu_source=_str(nn["ciu_source"][()]))
                    bias = nn["bias"][()]
                else:
                    params, bias = None, g["bias"][()]
                layers.append(Layer(name=name, shape=shape, params=params, bias=bias, kind=kind,
                                    depth=int(g["depth"][()])))
                for j in range(len(g["synapse"])):
                    h = g["synapse"][str(j)]
                    tup = lambda k: tuple(int(v) for v in h[k][()])  # noqa: E731
                    synapses.append(Synapse(source=_str(h["source"][()]), target=name, kind=_str(h["kind"][()]),
                                            weight=h["weight"][()], in_shape=tup("in_shape"),
                                            out_shape=tup("out_shape"), stride=tup("stride"),
                                            padding=tup("padding"), dilation=tup("dilation"),
                                            groups=int(h["groups"][()]), delay=int(h["delay"][()]),
                                            graded=bool(h["graded"][()])))
            ir_bytes = f["ir_graph"][()].tobytes()
        except KeyError as e:
            raise LavaFileError(f"{path}: missing entry {e}") from None
    if not layers or layers[-1].kind != "readout" or layers[-1].name != OUTPUT:
        raise LavaFileError(f"{path}: the last layer must be the readout")
    names = {INPUT} | {lay.name for lay in layers}
    for s in synapses:
        if s.source not in names:
            raise LavaFileError(f"{path}: synapse into '{s.target}' reads unknown layer '{s.source}'")
    graph = Graph.load(io.BytesIO(ir_bytes))
    spec = NetSpec(input_shape=input_shape, timesteps=timesteps, encoding=encoding, layers=layers[:-1],
                   synapses=synapses, readout=layers[-1], metadata=dict(graph.metadata))
    return spec, graph
