"""How far an artifact (ONNX, a generic NIR consumer, Lava) is from a reference run: one vocabulary for
every target and report.  Feed :class:`AgreementCounter` batch by batch with both runs' spikes per
neuron layer ``[T, B, ...]`` and logits ``[B, classes]``; :meth:`AgreementCounter.result` gives an
:class:`Agreement`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np


@dataclass
class Agreement:
    """``candidate`` against ``reference`` on ``samples`` samples of ``timesteps`` steps.  Per neuron
    layer: ``spike_agreement`` (share of equal (step, sample, neuron) entries), ``spike_flips`` (entries
    that differ of ``compared``), ``first_flip_layers`` (samples whose first differing spike, in layer
    order, is there: later differences are mostly its consequences), ``firing_rate`` (spikes per neuron
    and step; a delta encoder's messages) of both runs.  ``details``: what only one target measures (Lava's
    overflows, run time)."""

    reference: Optional[str]  # None: no reference run (the candidate's own counts only)
    candidate: str
    samples: int
    timesteps: int
    spike_agreement: Dict[str, float]
    spike_flips: Dict[str, int]
    compared: Dict[str, int]
    first_flip_layers: Dict[str, int]
    firing_rate: Dict[str, float]
    firing_rate_candidate: Dict[str, float]
    samples_with_flips: int
    prediction_agreement: float
    max_abs_logit_diff: float
    #: max |logit difference| over the samples whose spikes all agree (nan when there are none)
    max_abs_logit_diff_clean: float
    accuracy_reference: Optional[float] = None
    accuracy_candidate: Optional[float] = None
    details: dict = field(default_factory=dict)

    @property
    def total_flips(self) -> int:
        return int(sum(self.spike_flips.values()))

    @property
    def overall_spike_agreement(self) -> float:
        """Share of equal spike entries over all neuron layers together."""
        return 1.0 - self.total_flips / max(1, sum(self.compared.values()))

    def to_dict(self) -> dict:
        """JSON-ready: every field (``details`` merged in), ``overall_spike_agreement``, ``spike_mismatches``."""
        d = {**asdict(self), **self.details, "overall_spike_agreement": self.overall_spike_agreement,
             "spike_mismatches": self.total_flips}
        del d["details"]
        return {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in d.items()}

    def headline(self) -> str:
        """One line: spike agreement, predictions, accuracies."""
        acc = {k: "n/a" if v is None else f"{100 * v:.2f} %" for k, v in
               (("r", self.accuracy_reference), ("c", self.accuracy_candidate))}
        if self.reference is None:
            rate = sum(self.firing_rate[k] * self.compared[k] for k in self.compared) / max(1, sum(
                self.compared.values()))
            return (f"{self.samples} samples x T={self.timesteps}: firing rate {rate:.4f}, accuracy {acc['c']} (no "
                    f"reference run; --reference runtime compares with the torch runtime)")
        return (f"{self.candidate} vs {self.reference}, {self.samples} samples x T={self.timesteps}: spike agreement "
                f"{self.overall_spike_agreement:.6f} ({self.total_flips} differ, {self.samples_with_flips} samples), "
                f"same prediction {100 * self.prediction_agreement:.2f} %, accuracy {acc['r']} -> {acc['c']}, "
                f"max |logit diff| {self.max_abs_logit_diff:.3g}")

    def table(self) -> str:
        """The per-layer part as aligned text (pandas)."""
        import pandas as pd

        over = self.details.get("overflows") or {}
        compared = {} if self.reference is None else None
        return pd.DataFrame([{"layer": k, **(compared if compared is not None else {
                                  "spike_agreement": f"{v:.6f}", "flips": self.spike_flips[k],
                                  "first_flips": self.first_flip_layers.get(k, 0)}),
                              "firing_rate": f"{self.firing_rate[k]:.4f}", **({"overflows": over.get(k, 0)}
                                                                             if over else {})}
                             for k, v in self.spike_agreement.items()]).to_string(index=False)


class AgreementCounter:
    """Accumulates spike and prediction agreement over batches (memory: counts only)."""

    def __init__(self, layers: Sequence[str], reference: str, candidate: str, graded: Sequence[str] = ()):
        """``graded``: layers whose values are graded messages (delta encoders): their rate counts the messages
        sent (non-zero values), not their sum."""
        self.layers, self.reference, self.candidate = list(layers), reference, candidate
        self.graded = frozenset(graded)
        self.counts = {k: dict.fromkeys(self.layers, 0) for k in ("flips", "size", "fired", "fired_c", "first")}
        self.samples = self.flipped = self.same = self.correct_r = self.correct_c = self.timesteps = 0
        self.labelled, self.max_diff, self.max_clean = True, 0.0, float("nan")

    def add(self, ref_spikes: Dict[str, np.ndarray], cand_spikes: Dict[str, np.ndarray], ref_logits, cand_logits,
            labels=None) -> None:
        """One batch: spikes ``[T, B, ...]`` per layer (any array type), logits ``[B, classes]``."""
        ref_logits, cand_logits = np.asarray(ref_logits, np.float64), np.asarray(cand_logits, np.float64)
        n, c = ref_logits.shape[0], self.counts
        seen = np.zeros(n, dtype=bool)
        for k in self.layers:
            r = np.asarray(ref_spikes[k])
            s = np.asarray(cand_spikes[k]).reshape(r.shape)
            diff = (r != s).reshape(r.shape[0], n, -1)
            self.timesteps = r.shape[0]
            fired = (lambda a: (a != 0).sum()) if k in self.graded else (lambda a: a.sum())
            for key, v in (("flips", diff.sum()), ("size", r.size), ("fired", fired(r)), ("fired_c", fired(s))):
                c[key][k] += v.item() if hasattr(v, "item") else v
            per_sample = diff.any(axis=(0, 2))
            c["first"][k] += int((per_sample & ~seen).sum())
            seen |= per_sample
        dl = np.abs(ref_logits - cand_logits).reshape(n, -1).max(axis=1, initial=0.0)
        self.max_diff = max(self.max_diff, float(dl.max(initial=0.0)))
        if (~seen).any():
            self.max_clean = float(np.nanmax([self.max_clean, dl[~seen].max()]))
        pr, pc = ref_logits.reshape(n, -1).argmax(1), cand_logits.reshape(n, -1).argmax(1)
        self.same += int((pr == pc).sum())
        self.labelled &= labels is not None
        if labels is not None:
            y = np.asarray(labels).reshape(-1)
            self.correct_r += int((pr == y).sum())
            self.correct_c += int((pc == y).sum())
        self.flipped, self.samples = self.flipped + int(seen.sum()), self.samples + n

    def reduce(self, device: str = "cpu") -> "AgreementCounter":
        """Combine, in place, the counters of every process of a data-parallel job (:mod:`ilif_deploy.parallel`):
        counts summed exactly, logit differences maximised.  Every process then holds the job's counter."""
        from .parallel import all_max, all_min, all_sum

        keys = ("flips", "size", "fired", "fired_c", "first")
        scalars = ("samples", "flipped", "same", "correct_r", "correct_c")
        summed = all_sum([self.counts[k][lay] for k in keys for lay in self.layers]
                         + [getattr(self, a) for a in scalars], device)
        it = iter(int(v) for v in summed)
        for k in keys:
            for lay in self.layers:
                self.counts[k][lay] = next(it)
        for a in scalars:
            setattr(self, a, next(it))
        clean = -np.inf if self.max_clean != self.max_clean else self.max_clean  # nan: no clean sample here
        most = all_max([self.max_diff, clean, self.timesteps], device)
        self.max_diff, self.timesteps = float(most[0]), int(most[2])
        self.max_clean = float("nan") if most[1] == -np.inf else float(most[1])
        self.labelled = bool(all_min([float(self.labelled)], device)[0])
        return self

    def result(self, **details) -> Agreement:
        c, size = self.counts, self.counts["size"]
        share = lambda key: {k: c[key][k] / size[k] if size[k] else 0.0 for k in self.layers}  # noqa: E731
        acc = lambda correct: correct / self.samples if self.labelled and self.samples else None  # noqa: E731
        return Agreement(
            reference=self.reference, candidate=self.candidate, samples=self.samples, timesteps=self.timesteps,
            spike_agreement={k: 1.0 - v for k, v in share("flips").items()}, spike_flips=dict(c["flips"]),
            compared=dict(size), first_flip_layers={k: v for k, v in c["first"].items() if v},
            firing_rate=share("fired"), firing_rate_candidate=share("fired_c"), samples_with_flips=self.flipped,
            prediction_agreement=self.same / self.samples if self.samples else 1.0, max_abs_logit_diff=self.max_diff,
            max_abs_logit_diff_clean=self.max_clean, accuracy_reference=acc(self.correct_r),
            accuracy_candidate=acc(self.correct_c), details=details)


def compare_graphs(reference, lowered, data, batch_size: int = 1, name: str = "lowered graph",
                   float64_synapses: bool = False) -> Agreement:
    """Run two graphs with the same neuron layers (the exact one and a lowering of it, e.g. BN folded)
    through the runtime on ``data`` (a :class:`~ilif_deploy.data.Dataset` or an array) and compare them;
    ``float64_synapses`` runs ``lowered`` in Lava's arithmetic (``run(..., synapse_dtype=torch.float64)``).

    Memory: both graphs' spikes of one batch are held, as bytes (spike counts up to 255; a multi-spike layer that
    counts more keeps its float values), and a float64 run's activations are twice a float32 one's; one sample at a
    time keeps an export's check below the weights' size (ResNet-18 at T = 6, 8 samples, float64 synapses: 88 MB above
    the two graphs at a batch of 1, 194 MB at 4, in the same time; float32: 33 and 92 MB, 10 % slower at 1)."""
    import torch

    from . import ir as N
    from .data import as_dataset
    from .runtime import run

    neurons = [n.name for n in reference.of_type(N.SPIKING)]
    wanted = set(neurons)
    counter = AgreementCounter(neurons, "exact graph", name)

    def recorder(store: dict):
        def observe(node: str, out) -> None:
            if node in wanted:
                store[node] = out.to(torch.uint8) if float(out.max()) <= 255 else out
        return observe

    for b in as_dataset(data, reference.input_shape, reference.timesteps).batches(batch_size, reference.timesteps):
        rec_r, rec_l = {}, {}
        out_r = run(reference, b.x, observe=recorder(rec_r))
        out_l = run(lowered, b.x, observe=recorder(rec_l), synapse_dtype=torch.float64 if float64_synapses else None)
        counter.add(rec_r, rec_l, out_r.sum(0), out_l.sum(0), b.y)
    return counter.result()
