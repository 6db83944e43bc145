"""A :class:`~.netspec.NetSpec` written back as an IR graph: the network as Lava runs it (BatchNorm folded, pooling
merged into synapses) in nodes that :func:`.netspec.build_netspec` turns into the same NetSpec again.  What
fine-tuning (:mod:`.finetune`) saves: it trains that network, not the layers it was fused from."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ilif_deploy import ir as N
from ilif_deploy.errors import GraphError
from ilif_deploy.ir.graph import Graph

from .netspec import INPUT, OUTPUT, NetSpec


def per_channel(values) -> Optional[np.ndarray]:
    """``values`` ``[C, ...]`` as one value per channel when it is constant over each channel, else None."""
    v = np.asarray(values, np.float64)
    if v.ndim <= 1:
        return v.reshape(-1).copy()
    flat = v.reshape(v.shape[0], -1)
    return flat[:, 0].copy() if np.all(flat == flat[:, :1]) else None


def spec_graph(spec: NetSpec, readout: str = "sum", metadata: Optional[dict] = None) -> Graph:
    """An IR graph whose :func:`.netspec.build_netspec` is ``spec`` again: each synapse one node chain from its
    source (conv: ``Conv2d``; dense: ``Flatten`` + ``Linear``; sparse: a per-channel ``Affine``), summed into
    the layer, its bias an ``Affine`` shift, a synaptic current a ``LeakyIntegrator``, a recurrent layer a
    ``RecurrentNeuron``, a max-pool layer a ``MaxPool2d``.  Raises GraphError naming a layer whose form has no
    such chain (a dense synapse into a multi-axis layer, a bias that differs within a channel)."""
    g = Graph(metadata=dict(metadata or {}))
    g.metadata["timesteps"] = int(spec.timesteps)
    g.add(N.Input(name=INPUT if INPUT not in {lay.name for lay in spec.layers} else "input_", shape=spec.input_shape,
                  encoding=spec.encoding))
    input_name = next(iter(g.nodes))
    names = {INPUT: input_name}

    def chain(target: str, j: int, s) -> str:
        src = names[s.source]
        base = f"{target}/syn{j}"
        if s.kind == "conv":
            g.add(N.Conv2d(name=base, shape=tuple(s.out_shape), weight=np.asarray(s.weight, np.float32),
                           stride=tuple(s.stride), padding=tuple(s.padding), dilation=tuple(s.dilation),
                           groups=int(s.groups)), [src])
            return base
        if s.kind == "sparse":
            per = per_channel(np.asarray(s.weight).reshape(s.in_shape))
            if per is None:
                raise GraphError(f"the shortcut into '{target}' scales neurons of one channel differently: no "
                                 f"per-channel form")
            c = per.shape[0]
            g.add(N.Affine(name=base, shape=tuple(s.out_shape), scale=per.astype(np.float32),
                           shift=np.zeros(c, np.float32), source="scale"), [src])
            return base
        if len(s.out_shape) != 1:
            raise GraphError(f"the synapses into '{target}' form a dense matrix onto a {list(s.out_shape)} layer: the "
                             f"IR has no reshape to write it back")
        if len(s.in_shape) > 1:
            g.add(N.Flatten(name=f"{base}/flatten", shape=(int(np.prod(s.in_shape)),)), [src])
            src = f"{base}/flatten"
        g.add(N.Linear(name=base, shape=tuple(s.out_shape), weight=np.asarray(s.weight, np.float32)), [src])
        return base

    def summed(lay, shape) -> str:
        ends = [chain(lay.name, j, s) for j, (_, s) in enumerate(spec.incoming_indexed(lay.name))
                if not s.recurrent]
        if len(ends) == 1:
            return ends[0]
        g.add(N.Add(name=f"{lay.name}/sum", shape=tuple(shape)), ends)
        return f"{lay.name}/sum"

    def biased(lay, src: str, bias) -> str:
        per = per_channel(bias)
        if per is None:
            raise GraphError(f"the constant input of '{lay.name}' differs within a channel: no per-channel form")
        if not np.any(per):
            return src
        g.add(N.Affine(name=f"{lay.name}/bias", shape=tuple(lay.shape), scale=np.ones(per.shape[0], np.float32),
                       shift=per.astype(np.float32), source="scale"), [src])
        return f"{lay.name}/bias"

    for lay in spec.layers:
        if lay.kind == "maxpool":
            (s,) = spec.incoming(lay.name)
            g.add(N.MaxPool2d(name=lay.name, shape=tuple(lay.shape), kernel=tuple(np.asarray(s.weight).shape[2:]),
                              stride=tuple(s.stride), padding=tuple(s.padding), dilation=tuple(s.dilation)),
                  [names[s.source]])
            names[lay.name] = lay.name
            continue
        rec = [s for s in spec.incoming(lay.name) if s.recurrent]
        x = summed(lay, lay.shape)
        if rec:
            g.add(N.RecurrentNeuron(name=lay.name, shape=tuple(lay.shape), params=lay.params,
                                    weight=np.asarray(rec[0].weight, np.float32),
                                    bias=np.asarray(lay.bias, np.float32).reshape(-1), syn_lam=float(lay.syn_lam)), [x])
        else:
            delta = lay.delta  # a delta encoder's bias comes after its sigma (lava's SigmaDelta)
            if not delta:
                x = biased(lay, x, lay.bias)
            if lay.syn_lam:
                g.add(N.LeakyIntegrator(name=f"{lay.name}/current", shape=tuple(lay.shape), lam=float(lay.syn_lam)),
                      [x])
                x = f"{lay.name}/current"
            if delta:
                x = biased(lay, x, lay.bias)
            g.add(N.Neuron(name=lay.name, shape=tuple(lay.shape), params=lay.params), [x])
        names[lay.name] = lay.name
    ro = spec.readout
    x = summed(ro, ro.shape)
    if ro.syn_lam:
        g.add(N.LeakyIntegrator(name="output/current", shape=tuple(ro.shape), lam=float(ro.syn_lam)), [x])
        x = "output/current"
    x = biased(ro, x, ro.bias)
    g.add(N.Output(name=OUTPUT if OUTPUT not in g.nodes else "output_", shape=tuple(ro.shape), readout=readout), [x])
    return g.validate()


__all__ = ["spec_graph", "per_channel"]
