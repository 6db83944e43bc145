"""Run a network on Lava's CPU backend and compare it, spike by spike, with the torch runtime."""
from __future__ import annotations

import os
import time
import warnings
from typing import Optional, Tuple, Union

import numpy as np

from ilif_deploy import ir as N
from ilif_deploy.ir.graph import Graph
from ilif_deploy.ir.lowering import fold_batchnorm
from ilif_deploy.parallel import all_max, all_sum, world

from .netspec import NetSpec, build_netspec


def _source(source, backend=None) -> Tuple[NetSpec, Graph]:
    if isinstance(source, Graph):
        if backend is not None:  # the backend that will run it names what it refuses, before anything is built
            backend.check_graph(source)
        return build_netspec(source), source
    if isinstance(source, tuple):
        return source
    from .h5 import read
    return read(source)


ENGINES = ("lava", "torch")
#: the reference runs simulate() can make beside the engine (see its ``compare`` argument)
COMPARES = ("runtime", "both", "none")


class FixedPointWarning(UserWarning):
    """A fixed-point network whose sums or states can leave their ranges on the data given."""


def _backend(engine: str, mode: str):
    """The declared backend (:mod:`ilif_deploy.families`) of an engine and mode."""
    from .engine import ENGINE_FIXED, ENGINE_FLOAT
    from .netspec import LAVA_FIXED, LAVA_FLOAT

    return {("lava", "fixed"): LAVA_FIXED, ("lava", "float"): LAVA_FLOAT, ("torch", "fixed"): ENGINE_FIXED,
            ("torch", "float"): ENGINE_FLOAT}.get((engine, mode))


def simulate(source: Union[Graph, str, os.PathLike, Tuple[NetSpec, Graph]], data="digits",
             samples: Optional[int] = 100, mode: str = "float", *, x: Optional[np.ndarray] = None,
             y: Optional[np.ndarray] = None, batch: int = 64, progress: bool = True, fixed=None,
             fast_conv: bool = True, engine: str = "lava", verify: int = 0, device: str = "cpu",
             compile: bool = False, compare: str = "runtime"):
    """Run ``source`` as Lava runs it -- on Lava's CPU backend (``engine="lava"``, the reference) or on the
    batched torch engine (``engine="torch"``, :mod:`.engine`: bit-exact with Lava, for whole test sets) --
    and compare with the torch runtime.

    Args:
        source: an IR graph, a ``.lava.h5`` file from ``ilif-export --target lava``, or ``(spec, graph)``.
        data: a :class:`~ilif_deploy.data.Dataset`, or a ``--data`` spec for :func:`ilif_deploy.data.open_data`
            ("digits", a file, a folder); ignored when ``x`` is given.
        x, y: an array ``[N, *input_shape]`` (direct) or ``[N, T, *input_shape]`` and its labels, instead of data.
        samples: number of samples (the first ones); None = all.
        mode: "float" (floating_pt models) or "fixed" (Loihi-style fixed_pt models).
        batch: samples per Lava run or torch-engine batch (one built network is reused for all batches).
        fixed: :class:`ilif_deploy.converters.lava.fixed.FixedPoint` settings for mode "fixed" (default: the
            file's stored mantissas, else the default format).
        engine: "lava" or "torch".
        verify: with ``engine="torch"``, also run the first ``verify`` samples on Lava and report the engine's
            agreement with it (``details["verify"]``).
        device: torch device of the torch engine.
        compile: fuse the torch engine's fixed-point neuron loops with ``torch.compile`` (same integers).
        compare: which reference runs beside the engine, per batch: ``"runtime"`` (the torch runtime in Lava's
            arithmetic: BN folded, float64 synapses -- the agreement), ``"both"`` (also the exact float32 graph:
            ``against_exact_graph``), or ``"none"`` (no reference: firing rates, predictions, accuracy and the
            throughput of the engine alone, for whole test sets).
    Returns:
        an :class:`~ilif_deploy.agreement.Agreement` of the engine (candidate) against the torch runtime in
        Lava's arithmetic (BN folded, float64 synapses: the reference); ``details``: ``engine``, ``mode``,
        ``against_exact_graph`` (the same against the exact float32 graph, i.e. the source module),
        ``overflows`` {layer: saturated states}, ``synapse_wraps`` {layer: wrapped sums} and
        ``input_saturated`` (fixed mode), ``lava_processes``, ``seconds`` and ``ms_per_sample_step``
        (wall time of the engine's runs; for Lava including compiling and starting the worker
        processes, about 0.5-1.5 s; see benchmarks/bench_lava.py for steady-state step times).
    """
    import torch
    from tqdm import tqdm

    from ilif_deploy.agreement import AgreementCounter
    from ilif_deploy.data import Dataset, as_dataset, open_data
    from ilif_deploy.errors import UserError
    from ilif_deploy.runtime import run as torch_run

    from .h5 import LavaFileError

    if engine not in ENGINES:
        raise UserError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UserError(f"batch (--batch-size) must be >= 1, got {batch!r}")
    spec, graph = _source(source, _backend(engine, mode))
    T = spec.timesteps
    if x is not None:
        data = as_dataset(np.asarray(x, dtype=np.float32), spec.input_shape, T, y)
    elif not isinstance(data, Dataset):
        data = open_data(str(data), input_shape=spec.input_shape, timesteps=T, dataset=graph.metadata.get("dataset"))
    data = data.take(samples)
    rank, size = world()
    if size > 1:  # a torchrun job: this process runs its block of the data; the counts are summed below
        if engine != "torch":
            raise UserError("a torchrun job runs --engine torch (Lava starts processes of its own): add --engine torch")
        whole, data = data, data.shard(rank, size)
        progress = progress and rank == 0
    n = len(data)
    names = [lay.name for lay in spec.layers]
    missing = [k for k in names if not isinstance(graph.nodes.get(k), N.SPIKING + (N.MaxPool2d,))]
    if missing:
        raise LavaFileError(f"the IR graph stored with the network lacks neuron layer(s) {missing}")
    batch = max(1, min(batch, n))
    quantized = stored_quantization(spec, fixed) if mode == "fixed" else None
    lowered = fold_batchnorm(graph)  # what Lava's synapses compute (build_netspec folds the same way)
    label = f"{'Lava' if engine == 'lava' else 'torch engine'} {mode}"
    counter = AgreementCounter(names, "torch runtime (BN folded, float64 synapses)", label, spec.delta_layers)
    exact = AgreementCounter(names, "torch runtime (exact graph, float32)", label, spec.delta_layers)
    if compare not in COMPARES:
        raise UserError(f"compare must be one of {list(COMPARES)}, got {compare!r}")
    if compare == "none":
        counter = AgreementCounter(names, None, label, spec.delta_layers)
    seconds, warned = 0.0, set()
    checker = None
    if mode == "fixed":
        from .engine import FixedBounds, overflow_risks

        checker = FixedBounds(spec, quantized)
    with _Engine(engine, spec, mode, batch, fixed, quantized, fast_conv, device, compile) as run_batch:
        bar = tqdm(total=n, desc=label, unit="sample", disable=not progress)
        for b in data.batches(batch, T, num_classes=int(np.prod(graph.output_node.shape))):
            xt, labels = b.x, b.y
            if checker is not None:  # the static check, per batch before it runs
                for line in overflow_risks(checker, float(xt.abs().max()) if xt.numel() else 0.0):
                    if line not in warned:
                        warned.add(line)
                        warnings.warn(f"fixed point: {line}", FixedPointWarning, stacklevel=2)
            # float64 synapses: Lava's Dense/Conv accumulate in float64, torch's in float32 in another
            # order; an ulp at the threshold would flip a spike (seen on ResNet-18 at T = 4)
            t0 = time.perf_counter()
            out, spikes = run_batch(xt)
            seconds += time.perf_counter() - t0
            if compare == "none":  # the engine alone: its own spikes and readout stand on both sides
                counter.add(spikes, spikes, out.sum(0), out.sum(0), labels)
            else:
                out_ref, rec = torch_run(lowered, xt, record=names, synapse_dtype=torch.float64)
                counter.add(rec, spikes, out_ref.sum(0), out.sum(0), labels)
            if compare == "both":
                out_exact, rec_exact = torch_run(graph, xt, record=names)
                exact.add(rec_exact, spikes, out_exact.sum(0), out.sum(0), labels)
            bar.update(xt.shape[1])
        bar.close()
        counts, processes = run_batch.counts(), run_batch.processes
    details = {}
    if size > 1:
        counter.reduce(device)
        exact.reduce(device)
        counts = _reduce_counts(counts, device)
        seconds = float(all_max([seconds], device)[0])  # the job's wall time: its slowest process
        n, data = counter.samples, whole
        details["processes"] = size
    if verify and engine == "torch" and rank == 0:
        details["verify"] = verify_against_lava(spec, data.take(verify), mode, fixed=fixed, quantized=quantized,
                                                batch=batch, fast_conv=fast_conv, device=device).to_dict()
    if mode == "fixed":
        details["fixed_point"] = fixed_point_origin(spec, fixed, quantized)
    if compare == "both":
        ex = exact.result()
        details["against_exact_graph"] = {"overall_spike_agreement": ex.overall_spike_agreement,
                                          "prediction_agreement": ex.prediction_agreement,
                                          "first_flip_layers": ex.first_flip_layers}
    return counter.result(engine=engine, mode=mode, **(counts if mode == "fixed" else {}), lava_processes=processes,
                          seconds=seconds, ms_per_sample_step=1000.0 * seconds / (n * T),
                          samples_per_second=n / seconds if seconds else None, compare=compare, **details)


def _reduce_counts(counts: dict, device: str) -> dict:
    """The fixed-point counts (``{name: {layer: n}}`` and plain totals) summed over a data-parallel job."""
    keys = sorted((k, lay) for k, v in counts.items() if isinstance(v, dict) for lay in sorted(v))
    plain = sorted(k for k, v in counts.items() if not isinstance(v, dict))
    summed = all_sum([counts[k][lay] for k, lay in keys] + [counts[k] for k in plain], device)
    out = {k: {} for k, v in counts.items() if isinstance(v, dict)}
    for (k, lay), v in zip(keys, summed):
        out[k][lay] = int(v)
    out.update({k: int(v) for k, v in zip(plain, summed[len(keys):])})
    return out


def fixed_point_origin(spec: NetSpec, fixed, quantized) -> dict:
    """The fixed-point format a run used and where it came from (said by the report: a netx network runs at
    Loihi's own integers unless another format is asked for)."""
    from .fixed import native_format

    fp = quantized.fp
    if fixed is not None:
        origin = "asked for (--frac-bits / --input-frac-bits)"
    elif spec.quantized is not None:
        origin = "the .lava.h5 file's stored mantissas"
    elif native_format(spec.metadata) is not None:
        origin = spec.metadata["fixed_point"].get("from", "the file")
    else:
        origin = "ilif-deploy's default"
    extra = {"delta_state_exp": fp.delta_state_exp} if fp.delta_state_exp else {}  # a delta encoder's extra bits
    return {"frac_bits": fp.frac_bits, "input_frac_bits": fp.input_frac_bits, "weight_bits": fp.weight_bits,
            **extra, "from": origin}


def stored_quantization(spec: NetSpec, fixed=None):
    """The fixed-point network to run: the mantissas stored with ``spec`` (a ``.lava.h5``) when no other
    format is asked for, else ``spec`` quantised in ``fixed``."""
    from .fixed import quantize_spec

    if spec.quantized is not None and (fixed is None or fixed == spec.quantized.fp):
        return spec.quantized
    return quantize_spec(spec, fixed)


class _Engine:
    """One interface over both engines: ``run_batch(x [T, B, ...]) -> (readout [T, B, ...], spikes)``,
    then ``counts()`` (fixed-point saturations and wraps) and ``processes`` (Lava processes, or 0)."""

    def __init__(self, engine, spec, mode, batch, fixed, quantized, fast_conv, device, compile=False):
        self.engine, self.spec, self.mode = engine, spec, mode
        if engine == "lava":
            from .network import build

            self.net = build(spec, mode=mode, samples=batch, record=True, fixed=fixed, fast_conv=fast_conv,
                             quantized=quantized)
            self.processes = self.net.processes
        else:
            from .engine import TorchEngine

            self.net = TorchEngine(spec, mode, fixed, quantized=quantized, device=device, compile=compile)
            self.processes = 0
            self.totals = {"overflows": {}, "synapse_wraps": {}, "input_saturated": 0}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.engine == "lava":
            self.net.stop()

    def __call__(self, xt):
        if self.engine == "lava":
            # Lava plays samples back to back: [B, T, ...]
            return self.net.run(np.ascontiguousarray(xt.transpose(0, 1).numpy()))
        r = self.net.run(xt)
        t = self.totals
        for key in ("overflows", "synapse_wraps"):
            for k, v in getattr(r, key).items():
                t[key][k] = t[key].get(k, 0) + v
        t["input_saturated"] += r.input_saturated
        return r.output.cpu(), {k: v.cpu() for k, v in r.spikes.items()}

    def counts(self) -> dict:
        if self.mode != "fixed":
            return {"overflows": {}, "synapse_wraps": {}, "input_saturated": 0}
        if self.engine == "lava":
            return {"overflows": self.net.overflows(), "synapse_wraps": self.net.synapse_wraps(),
                    "input_saturated": self.net.input_saturated}
        return self.totals


def verify_against_lava(spec: NetSpec, data, mode: str, *, fixed=None, quantized=None, batch: int = 64,
                        fast_conv: bool = True, device: str = "cpu"):
    """The torch engine (candidate) against Lava (reference) on every sample of ``data``: spikes per layer,
    readouts, predictions (an :class:`~ilif_deploy.agreement.Agreement`)."""
    from ilif_deploy.agreement import AgreementCounter

    names = [lay.name for lay in spec.layers]
    counter = AgreementCounter(names, f"Lava {mode}", f"torch engine {mode}", spec.delta_layers)
    batch = max(1, min(batch, len(data)))
    with _Engine("lava", spec, mode, batch, fixed, quantized, fast_conv, device) as lava, \
            _Engine("torch", spec, mode, batch, fixed, quantized, fast_conv, device) as eng:
        for b in data.batches(batch, spec.timesteps):
            out_l, spk_l = lava(b.x)
            out_e, spk_e = eng(b.x)
            counter.add(spk_l, spk_e, out_l.sum(0), out_e.sum(0), b.y)
        counts = {"lava": lava.counts(), "torch": eng.counts()}
    # the saturations and wraps each engine counted on the same samples' steps: equal when the engines are
    saturated = {k: sum(v["overflows"].values()) for k, v in counts.items()}
    wrapped = {k: sum(v["synapse_wraps"].values()) for k, v in counts.items()}
    return counter.result(engine="torch", mode=mode, saturated_states=saturated, wrapped_sums=wrapped,
                          counts_equal=counts["lava"] == counts["torch"])
