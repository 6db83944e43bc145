"""Activity recording: run a graph over a dataset and keep only the counts the energy needs.

Per batch, every watched node's output ``[T, B, ...]`` is reduced on the fly (through the
runtime's ``observe`` hook) to per-step, per-position counts of non-zero values summed over the
batch, so memory stays at ``T x (node size)`` per node whatever the dataset size.
"""
from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional

import numpy as np
import torch

from ilif_deploy import ir as N
from ilif_deploy.data import as_dataset
from ilif_deploy.errors import UserError
from ilif_deploy.ir.graph import Graph
from ilif_deploy.parallel import all_min, all_sum, world
from ilif_deploy.runtime import NeuronCompileError, run, run_neuron


@dataclass
class Activity:
    """Recorded (or assumed) activity of a graph, summed over ``samples`` inferences.

    ``counts[name]``: float64 ``[T, *shape]``, per step and position the number of samples whose
    value there was non-zero (spikes for a neuron layer).  ``binary[name]``: every value seen was
    0 or 1.  ``continuous[name]`` (neuron layers): number of (sample, neuron) pairs that spiked in
    more than half of the T steps.  ``changes[name]`` (neuron layers, when asked for): membrane updates as NeuroBench's
    NeuronOperations counts them -- every neuron at the first step, then each neuron whose membrane before firing
    (``v_pre``, snntorch's ``mem``) differs from the step before.  ``rate``: set for an analytic estimate (no data).
    """

    timesteps: int
    samples: int
    counts: Dict[str, np.ndarray] = field(default_factory=dict)
    binary: Dict[str, bool] = field(default_factory=dict)
    continuous: Dict[str, float] = field(default_factory=dict)
    changes: Dict[str, float] = field(default_factory=dict)
    correct: Optional[int] = None
    rate: Optional[float] = None
    input: Optional[str] = None  # an analytic estimate's assumed input: "spikes" or "analog"
    #: the data had a time axis (a different frame per step), so the input is not repeated
    sequence: bool = False

    @property
    def accuracy(self) -> Optional[float]:
        """Share of correctly classified samples (argmax of the output summed over T), if labels were given."""
        return None if self.correct is None else self.correct / self.samples

    def reduce(self, device: str = "cpu") -> "Activity":
        """The activity of every process of a data-parallel job together (:mod:`ilif_deploy.parallel`):
        counts, samples, continuous firing and correct predictions summed (float64, exact for integers below
        2^53, so equal to one process's whatever the order), ``binary`` true only where it is true everywhere."""
        names, cont, bins = sorted(self.counts), sorted(self.continuous), sorted(self.binary)
        changed = sorted(self.changes)
        flat = all_sum(np.concatenate([self.counts[k].ravel() for k in names]
                                      + [[self.continuous[k] for k in cont], [self.changes[k] for k in changed],
                                         [self.samples, self.correct or 0]]),
                       device)
        binary = all_min([float(self.binary[k]) for k in bins], device)
        counts, at = {}, 0
        for k in names:
            n = self.counts[k].size
            counts[k] = flat[at:at + n].reshape(self.counts[k].shape)
            at += n
        return Activity(timesteps=self.timesteps, samples=int(flat[-2]), counts=counts,
                        binary={k: bool(b) for k, b in zip(bins, binary)},
                        continuous={k: float(flat[at + i]) for i, k in enumerate(cont)},
                        changes={k: float(flat[at + len(cont) + i]) for i, k in enumerate(changed)},
                        correct=None if self.correct is None else int(flat[-1]), rate=self.rate,
                        sequence=self.sequence)


def watched_nodes(graph: Graph) -> list:
    """Nodes whose outputs the counting needs: every node except the output and weight/affine
    layers' own outputs that feed nothing but other cost-free ops (kept simple: all but Output)."""
    return [n for n in graph.topological_order() if not isinstance(graph.nodes[n], N.Output)]


#: neuron updates (samples x T x neurons) from which ``compile_neurons="auto"`` compiles.  Why this many: the
#: first compile of ResNet-18's neuron layers takes up to ~44 s here; one CIFAR sample at T = 4 (4.45 GFLOP,
#: 2.2e6 neuron updates) takes ~68 ms eager and ~50 ms compiled (65 / 89 GFLOP/s, docs/energy.md), so it pays
#: from ~2,500 samples (5.5e9 updates); 1e10 keeps a margin of 2.  A CIFAR-10 test set (10,000 samples)
#: compiles; the digits set (4.5e6 updates) and every test of this project run eagerly.
AUTO_COMPILE_UPDATES = 1e10


def compile_pays(graph: Graph, samples: int, timesteps: int, device: str = "cpu") -> bool:
    """Whether ``compile_neurons="auto"`` compiles: enough neuron updates (:data:`AUTO_COMPILE_UPDATES`) and a
    compiler torch.compile can use (a C++ compiler on CPU, triton on CUDA)."""
    import importlib.util
    import shutil

    neurons = sum(int(np.prod(n.shape)) for n in graph.of_type(N.SPIKING))
    if samples * timesteps * neurons < AUTO_COMPILE_UPDATES:
        return False
    if str(device).startswith("cuda"):
        return importlib.util.find_spec("triton") is not None
    return any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def record_activity(graph: Graph, x, labels=None, *, batch_size: int = 32, device: str = "cpu",
                    timesteps: Optional[int] = None, progress: bool = True,
                    watch: Optional[Iterable[str]] = None, compile_neurons=False,
                    membrane_changes: bool = False) -> Activity:
    """Run ``graph`` on the data ``x`` in batches and reduce the activity of the watched nodes.

    Args:
        graph: validated IR graph.
        x: a :class:`~ilif_deploy.data.Dataset` (streamed a batch at a time), or anything
            :func:`~ilif_deploy.data.as_dataset` takes (``[N, *input_shape]`` direct or
            ``[N, T, *input_shape]`` sequence arrays, torch datasets).
        labels: optional ``[N]`` class labels for an array ``x`` (for the accuracy shown in reports).
        batch_size: samples per runtime call.
        device: torch device name (``"cpu"``, ``"cuda"``, ...).
        timesteps: T (default: the graph's).
        progress: show a tqdm progress bar.
        watch: node names to reduce (default :func:`watched_nodes`).
        compile_neurons: fuse the neuron layers with ``torch.compile`` (see :func:`ilif_deploy.run`): True,
            False, or ``"auto"``: compile where :func:`compile_pays`, falling back to eager mode (with a
            warning) if the compiler fails.
        membrane_changes: also count each neuron layer's membrane updates as NeuroBench's NeuronOperations does
            (``Activity.changes``); each neuron layer then runs a second time, for its states.

    Inside a ``torch.distributed`` job (``torchrun``; :mod:`ilif_deploy.parallel`) each process records its
    block of the data (:meth:`~ilif_deploy.data.Dataset.shard`) and every process returns the job's activity,
    equal to a single process's on the whole data.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise UserError(f"batch_size (--batch-size) must be >= 1, got {batch_size}")
    dev = torch.device(device)
    data = as_dataset(x, graph.input_shape, timesteps or graph.timesteps, labels)
    rank, size = world()
    if size > 1:
        data = data.shard(rank, size)
        progress = progress and rank == 0
    n, sequence = len(data), data.encoding == "sequence"
    T = timesteps or data.timesteps or graph.timesteps
    if not T:
        raise UserError("the graph records no 'timesteps': pass timesteps= (command line: -T/--timesteps)")
    names = set(watch if watch is not None else watched_nodes(graph))
    neurons = {k for k in names if isinstance(graph.nodes[k], N.SPIKING)}
    graded = {k for k in neurons if graph.nodes[k].params.delta is not None}
    acc: Dict[str, torch.Tensor] = {}
    binary = {k: True for k in names}
    cont = {k: torch.zeros((), dtype=torch.float64, device=dev) for k in neurons}
    half = T / 2.0

    # Per-batch sums are exact in float32 (integers < 2**24); they are moved into float64 totals
    # before the float32 partial sums could reach 2**24 samples.
    partial: Dict[str, torch.Tensor] = {}
    state = {"in_partial": 0}
    # membrane changes: the input current of each plain neuron layer is kept until that layer ran, and the layer is
    # run again for its states (the runtime keeps none); recurrent layers have no NeuroBench definition
    feeding = {graph.inputs_of(k)[0]: k for k in neurons if isinstance(graph.nodes[k], N.Neuron)} \
        if membrane_changes else {}
    currents: Dict[str, torch.Tensor] = {}
    changes = {feeding[p]: torch.zeros((), dtype=torch.float64, device=dev) for p in feeding}

    def observe(name: str, out: torch.Tensor) -> None:
        if name in feeding:
            currents[feeding[name]] = out
        if name in changes:
            with torch.no_grad():
                v_pre = run_neuron(graph.nodes[name], currents.pop(name), return_states=True)[1]["v_pre"]
            changes[name] += out[0].numel() + (v_pre[1:] != v_pre[:-1]).sum()
        if name not in names:
            return
        if name in graded:  # a delta encoder's messages: one event per non-zero change, whatever its sign and size
            c = (out != 0).sum(1, dtype=torch.float32)
        elif name in neurons:  # spikes are 0/1 (or counts) by construction: count them directly
            c = out.sum(1)
            cont[name] += (out.sum(0) > half).sum()
        else:
            nz = out != 0
            c = nz.sum(1, dtype=torch.float32)
            if binary[name]:
                binary[name] = not bool((nz & (out != 1)).any())
        if name in partial:
            partial[name] += c
        else:
            partial[name] = c

    def flush() -> None:
        for k, v in partial.items():
            v = v.to(torch.float64)
            acc[k] = acc[k] + v if k in acc else v
        partial.clear()
        state["in_partial"] = 0

    fallback = compile_neurons == "auto"
    if fallback:
        compile_neurons = compile_pays(graph, n * max(size, 1), int(T), device)

    def forward(xb):
        nonlocal compile_neurons
        if not (fallback and compile_neurons):
            return run(graph, xb, T, observe=observe, compile_neurons=compile_neurons)
        kept = ({k: v.clone() for k, v in partial.items()}, {k: v.clone() for k, v in cont.items()},
                {k: v.clone() for k, v in changes.items()})
        try:
            return run(graph, xb, T, observe=observe, compile_neurons=True)
        except NeuronCompileError as e:
            warnings.warn(f"{e}; running the neuron layers in eager mode", RuntimeWarning, stacklevel=3)
            compile_neurons = False
            partial.clear()  # the failed batch's layers before the neurons were already counted: undo them
            partial.update(kept[0])
            for k, v in kept[1].items():
                cont[k].copy_(v)
            for k, v in kept[2].items():
                changes[k].copy_(v)
            return run(graph, xb, T, observe=observe, compile_neurons=False)

    correct = 0
    bar = tqdm(total=n, unit="sample", desc="recording activity", disable=not progress, leave=False)
    try:
        for batch in data.batches(batch_size, T, num_classes=int(np.prod(graph.output_node.shape))):
            xb = batch.x.to(dev)
            if state["in_partial"] + xb.shape[1] >= 2 ** 24:
                flush()
            out = forward(xb)
            state["in_partial"] += xb.shape[1]
            if batch.y is not None:
                correct += int((out.sum(0).flatten(1).argmax(1).cpu().numpy() == batch.y).sum())
            bar.update(xb.shape[1])
    finally:
        bar.close()
    flush()
    act = Activity(timesteps=int(T), samples=int(n),
                   counts={k: v.cpu().numpy() for k, v in acc.items()}, binary=binary,
                   continuous={k: float(v.item()) for k, v in cont.items()},
                   changes={k: float(v.item()) for k, v in changes.items()},
                   correct=correct if data.labels is not None else None, sequence=bool(sequence))
    return act.reduce(device) if size > 1 else act


#: what an analytic estimate may assume the network's input is
INPUT_KINDS = ("spikes", "analog")


def input_kind(graph: Graph) -> str:
    """What the network takes when no data says it: the reader's word (``metadata["input_kind"]``: a netx network
    without an input neuron takes spikes), else analog."""
    kind = graph.metadata.get("input_kind", "analog")
    return kind if kind in INPUT_KINDS else "analog"


def assumed_activity(graph: Graph, rate: float, timesteps: Optional[int] = None,
                     input: Optional[str] = None) -> Activity:
    """Activity for an analytic estimate: every neuron spikes with probability ``rate`` per step,
    analog nodes are dense (one sample).  ``input``: ``"spikes"`` (the input also spikes at ``rate``: each
    costs its fan-out in accumulates) or ``"analog"`` (dense frames: multiply-accumulates); default
    :func:`input_kind`."""
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"--rate must be a firing probability per neuron and step in [0, 1], got {rate}")
    input = input or input_kind(graph)
    if input not in INPUT_KINDS:
        raise UserError(f"--input must be one of {', '.join(INPUT_KINDS)}, got {input!r}")
    T = timesteps or graph.timesteps
    if not T:
        raise UserError("the graph records no 'timesteps': pass timesteps= (command line: -T/--timesteps)")
    act = Activity(timesteps=int(T), samples=1, rate=float(rate), input=input)
    # Propagate "spiking" through ops that keep spikes binary; everything else is analog.
    for name in graph.topological_order():
        node = graph.nodes[name]
        if isinstance(node, N.Output):
            continue
        preds = graph.inputs_of(name)
        if isinstance(node, N.SPIKING) or (isinstance(node, N.Input) and input == "spikes"):
            spiking = True
        elif isinstance(node, (N.Flatten, N.MaxPool2d)) and preds:
            spiking = act.binary[preds[0]]
        else:
            spiking = False
        act.binary[name] = spiking
        act.counts[name] = np.full((T, *node.shape), rate if spiking else 1.0)
        if isinstance(node, N.SPIKING):
            act.continuous[name] = float("nan")
    return act
