"""Run a network on Lava's CPU backend and compare it, spike by spike, with the torch runtime."""
from __future__ import annotations

import os
import time
from typing import Optional, Tuple, Union

import numpy as np

from ilif_deploy import ir as N
from ilif_deploy.ir.graph import Graph
from ilif_deploy.ir.lowering import fold_batchnorm

from .netspec import NetSpec, build_netspec


def _source(source) -> Tuple[NetSpec, Graph]:
    if isinstance(source, Graph):
        return build_netspec(source), source
    if isinstance(source, tuple):
        return source
    from .h5 import read
    return read(source)


def simulate(source: Union[Graph, str, os.PathLike, Tuple[NetSpec, Graph]], data="digits",
             samples: Optional[int] = 100, mode: str = "float", *, x: Optional[np.ndarray] = None,
             y: Optional[np.ndarray] = None, batch: int = 64, progress: bool = True, fixed=None,
             fast_conv: bool = True):
    """Simulate ``source`` on ``Loihi2SimCfg`` (CPU) and compare with the torch runtime.

    Args:
        source: an IR graph, a ``.lava.h5`` file from ``ilif-export --target lava``, or ``(spec, graph)``.
        data: a :class:`~ilif_deploy.data.Dataset`, or a ``--data`` spec for :func:`ilif_deploy.data.open_data`
            ("digits", a file, a folder); ignored when ``x`` is given.
        x, y: an array ``[N, *input_shape]`` (direct) or ``[N, T, *input_shape]`` and its labels, instead of data.
        samples: number of samples (the first ones); None = all.
        mode: "float" (floating_pt models) or "fixed" (Loihi-style fixed_pt models).
        batch: samples per Lava run (one built network is reused for all batches).
        fixed: :class:`ilif_deploy.converters.lava.network.FixedPoint` settings for mode "fixed".
    Returns:
        an :class:`~ilif_deploy.agreement.Agreement` of Lava (candidate) against the torch runtime in
        Lava's arithmetic (BN folded, float64 synapses: the reference); ``details``: ``against_exact_graph``
        (the same against the exact float32 graph, i.e. the source module), ``mode``, ``overflows`` {layer:
        count} (fixed mode), ``lava_processes``, ``lava_seconds`` and ``ms_per_sample_step`` (wall time
        of the Lava runs, including compiling and starting the worker processes, about 0.5-1.5 s; see
        benchmarks/bench_lava.py for steady-state step times).
    """
    import torch
    from tqdm import tqdm

    from ilif_deploy.agreement import AgreementCounter
    from ilif_deploy.data import Dataset, as_dataset, open_data
    from ilif_deploy.runtime import run as torch_run

    from .h5 import LavaFileError
    from .network import build

    spec, graph = _source(source)
    T = spec.timesteps
    if x is not None:
        data = as_dataset(np.asarray(x, dtype=np.float32), spec.input_shape, T, y)
    elif not isinstance(data, Dataset):
        data = open_data(str(data), input_shape=spec.input_shape, timesteps=T, dataset=graph.metadata.get("dataset"))
    data = data.take(samples)
    n = len(data)
    names = [lay.name for lay in spec.layers]
    missing = [k for k in names if not isinstance(graph.nodes.get(k), (N.Neuron, N.MaxPool2d))]
    if missing:
        raise LavaFileError(f"the IR graph stored with the network lacks neuron layer(s) {missing}")
    batch = max(1, min(batch, n))
    lowered = fold_batchnorm(graph)  # what Lava's synapses compute (build_netspec folds the same way)
    counter = AgreementCounter(names, "torch runtime (BN folded, float64 synapses)", f"Lava {mode}")
    exact = AgreementCounter(names, "torch runtime (exact graph, float32)", f"Lava {mode}")
    t_lava = 0.0
    net = build(spec, mode=mode, samples=batch, record=True, fixed=fixed, fast_conv=fast_conv)
    try:
        bar = tqdm(total=n, desc=f"Lava ({mode})", unit="sample", disable=not progress)
        for b in data.batches(batch, T, num_classes=int(np.prod(graph.output_node.shape))):
            xt, labels = b.x, b.y
            part = np.ascontiguousarray(xt.transpose(0, 1).numpy())  # Lava plays samples back to back: [B, T, ...]
            # float64 synapses: Lava's Dense/Conv accumulate in float64, torch's in float32 in another
            # order; an ulp at the threshold would flip a spike (seen on ResNet-18 at T = 4)
            out_ref, rec = torch_run(lowered, xt, record=names, synapse_dtype=torch.float64)
            out_exact, rec_exact = torch_run(graph, xt, record=names)
            t0 = time.perf_counter()
            out_lava, spikes = net.run(part)
            t_lava += time.perf_counter() - t0
            counter.add(rec, spikes, out_ref.sum(0), out_lava.sum(0), labels)
            exact.add(rec_exact, spikes, out_exact.sum(0), out_lava.sum(0), labels)
            bar.update(len(part))
        bar.close()
        overflows = net.overflows() if mode == "fixed" else {}
        processes = net.processes
    finally:
        net.stop()
    ex = exact.result()
    return counter.result(mode=mode, overflows=overflows, lava_processes=processes, lava_seconds=t_lava,
                          ms_per_sample_step=1000.0 * t_lava / (n * T),
                          against_exact_graph={"overall_spike_agreement": ex.overall_spike_agreement,
                                               "prediction_agreement": ex.prediction_agreement,
                                               "first_flip_layers": ex.first_flip_layers})
