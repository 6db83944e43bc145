"""Run a network on Lava's CPU backend and compare it, spike by spike, with the torch runtime."""
from __future__ import annotations

import os
import time
from typing import Optional, Tuple, Union

import numpy as np

from ilif_deploy import ir as N
from ilif_deploy.data import data_layout
from ilif_deploy.ir.graph import Graph

from .netspec import NetSpec, build_netspec


def _inputs(x: np.ndarray, spec: NetSpec) -> np.ndarray:
    """Data ``[n, *input_shape]`` (direct encoding: repeated over T) or ``[n, T, *input_shape]`` -> ``[n, T, ...]``."""
    sequence, _ = data_layout(x.shape, spec.input_shape, spec.timesteps)
    return x if sequence else np.repeat(x[:, None], spec.timesteps, axis=1)


def _source(source) -> Tuple[NetSpec, Graph]:
    if isinstance(source, Graph):
        return build_netspec(source), source
    if isinstance(source, tuple):
        return source
    from .h5 import read
    return read(source)


def simulate(source: Union[Graph, str, os.PathLike, Tuple[NetSpec, Graph]], data: str = "digits",
             samples: Optional[int] = 100, mode: str = "float", *, x: Optional[np.ndarray] = None,
             y: Optional[np.ndarray] = None, batch: int = 64, progress: bool = True, fixed=None,
             fast_conv: bool = True) -> dict:
    """Simulate ``source`` on ``Loihi2SimCfg`` (CPU) and compare with the torch runtime.

    Args:
        source: an IR graph, a ``.lava.h5`` file from ``ilif-export --target lava``, or ``(spec, graph)``.
        data: "digits" (the fixed test split) or an ``.npz`` with ``x`` (and ``y``); ignored when ``x`` is given.
        samples: number of samples (the first ones); None = all.
        mode: "float" (floating_pt models) or "fixed" (Loihi-style fixed_pt models).
        batch: samples per Lava run (one built network is reused for all batches).
        fixed: :class:`converters.lava.network.FixedPoint` settings for mode "fixed".
    Returns:
        a report: mode, samples, timesteps, accuracy_torch, accuracy_lava (None without labels),
        prediction_agreement, spike_agreement {layer: fraction of equal spikes},
        overall_spike_agreement, spike_mismatches, firing_rate {layer: spikes per neuron-step (torch)},
        overflows {layer: count} (fixed mode), lava_processes, lava_seconds and ms_per_sample_step
        (wall time of the Lava runs, including compiling and starting the worker processes, about
        0.5-1.5 s; see benchmarks/bench_lava.py for steady-state step times).
    """
    import torch
    from tqdm import tqdm

    from ilif_deploy.data import load_dataset
    from ilif_deploy.runtime import run as torch_run

    from .network import build

    spec, graph = _source(source)
    if x is None:
        x, y = load_dataset(data, samples)
    elif samples is not None:
        x, y = x[:samples], (None if y is None else y[:samples])
    x = _inputs(np.asarray(x, dtype=np.float32), spec)
    n, T = x.shape[0], spec.timesteps
    names = [lay.name for lay in spec.layers]
    missing = [k for k in names if not isinstance(graph.nodes.get(k), (N.Neuron, N.MaxPool2d))]
    if missing:
        raise ValueError(f"the IR graph stored with the network lacks neuron layer(s) {missing}")
    batch = max(1, min(batch, n))
    equal = {k: 0 for k in names}
    total = {k: 0 for k in names}
    fired = {k: 0.0 for k in names}
    pred_torch, pred_lava = [], []
    t_lava = 0.0
    net = build(spec, mode=mode, samples=batch, record=True, fixed=fixed, fast_conv=fast_conv)
    try:
        bar = tqdm(total=n, desc=f"Lava ({mode})", unit="sample", disable=not progress)
        for start in range(0, n, batch):
            part = x[start:start + batch]
            # float64 synapses: Lava's Dense/Conv accumulate in float64, torch's in float32 in another
            # order; an ulp at the threshold would flip a spike (seen on ResNet-18 at T = 4)
            out_ref, rec = torch_run(graph, torch.from_numpy(np.ascontiguousarray(part.swapaxes(0, 1))),
                                     record=names, synapse_dtype=torch.float64)
            t0 = time.perf_counter()
            out_lava, spikes = net.run(part)
            t_lava += time.perf_counter() - t0
            for k in names:
                ref = rec[k].numpy()
                equal[k] += int((spikes[k] == ref).sum())
                total[k] += ref.size
                fired[k] += float(ref.sum())
            pred_torch.append(out_ref.sum(0).argmax(-1).numpy())
            pred_lava.append(out_lava.sum(0).argmax(-1))
            bar.update(len(part))
        bar.close()
        overflows = net.overflows() if mode == "fixed" else {}
        processes = net.processes
    finally:
        net.stop()
    pt, pl = np.concatenate(pred_torch), np.concatenate(pred_lava)
    acc = (lambda p: None if y is None else float((p == y[:n]).mean()))
    return {
        "mode": mode,
        "samples": int(n),
        "timesteps": int(T),
        "accuracy_torch": acc(pt),
        "accuracy_lava": acc(pl),
        "prediction_agreement": float((pt == pl).mean()),
        "spike_agreement": {k: equal[k] / total[k] for k in names},
        "overall_spike_agreement": sum(equal.values()) / max(1, sum(total.values())),
        "spike_mismatches": int(sum(total.values()) - sum(equal.values())),
        "firing_rate": {k: fired[k] / total[k] for k in names},
        "overflows": overflows,
        "lava_processes": processes,
        "lava_seconds": t_lava,
        "ms_per_sample_step": 1000.0 * t_lava / (n * T),
    }


def report_table(report: dict) -> str:
    """The per-layer part of a :func:`simulate` report as aligned text (pandas)."""
    import pandas as pd

    rows = [{"layer": k, "spike_agreement": f"{v:.6f}", "firing_rate": f"{report['firing_rate'][k]:.4f}",
             **({"overflows": report["overflows"].get(k, 0)} if report["overflows"] else {})}
            for k, v in report["spike_agreement"].items()]
    return pd.DataFrame(rows).to_string(index=False)
