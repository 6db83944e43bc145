"""How far an artifact (ONNX, a generic NIR consumer, Lava) is from a reference run: one vocabulary for
every target and report.

Feed :class:`AgreementCounter` batch by batch with both runs' spikes per neuron layer ``[T, B, ...]``
and logits ``[B, classes]``; :meth:`AgreementCounter.result` gives an :class:`Agreement`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np


@dataclass
class Agreement:
    """``candidate`` compared with ``reference`` on ``samples`` samples of ``timesteps`` steps.

    Per neuron layer: ``spike_agreement`` (share of equal (step, sample, neuron) entries),
    ``spike_flips`` (entries that differ), ``first_flip_layers`` (samples whose first differing spike,
    in layer order, is in that layer: later differences are usually its consequences) and the
    reference's ``firing_rate`` (spikes per neuron and step).  ``details`` holds what only one target
    measures (Lava's overflows and run time, NIR's dt, ...).
    """

    reference: str
    candidate: str
    samples: int
    timesteps: int
    spike_agreement: Dict[str, float]
    spike_flips: Dict[str, int]
    #: (step, sample, neuron) entries compared per layer
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
        total = sum(self.compared.values())
        return 1.0 - self.total_flips / total if total else 1.0

    def to_dict(self) -> dict:
        """JSON-ready: every field plus ``overall_spike_agreement`` and ``spike_mismatches``."""
        d = {k: v for k, v in self.__dict__.items() if k != "details"}
        d.update(overall_spike_agreement=self.overall_spike_agreement, spike_mismatches=self.total_flips)
        d.update(self.details)
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in d.items()}

    def headline(self) -> str:
        """One line: spike agreement, predictions and accuracies."""
        def acc(v):
            return "n/a" if v is None else f"{100 * v:.2f} %"

        return (f"{self.candidate} vs {self.reference}, {self.samples} samples x T={self.timesteps}: spike agreement "
                f"{self.overall_spike_agreement:.6f} ({self.total_flips} differ, {self.samples_with_flips} samples), "
                f"same prediction {100 * self.prediction_agreement:.2f} %, accuracy {acc(self.accuracy_reference)} -> "
                f"{acc(self.accuracy_candidate)}, max |logit diff| {self.max_abs_logit_diff:.3g}")

    def table(self) -> str:
        """The per-layer part as aligned text (pandas)."""
        import pandas as pd

        rows = [{"layer": k, "spike_agreement": f"{v:.6f}", "flips": self.spike_flips[k],
                 "first_flips": self.first_flip_layers.get(k, 0), "firing_rate": f"{self.firing_rate[k]:.4f}",
                 **({"overflows": self.details["overflows"].get(k, 0)} if self.details.get("overflows") else {})}
                for k, v in self.spike_agreement.items()]
        return pd.DataFrame(rows).to_string(index=False)


class AgreementCounter:
    """Accumulates spike and prediction agreement over batches (memory: counts only)."""

    def __init__(self, layers: Sequence[str], reference: str, candidate: str):
        self.layers, self.reference, self.candidate = list(layers), reference, candidate
        self.equal = dict.fromkeys(self.layers, 0)
        self.size = dict.fromkeys(self.layers, 0)
        self.fired = dict.fromkeys(self.layers, 0.0)
        self.fired_candidate = dict.fromkeys(self.layers, 0.0)
        self.first = dict.fromkeys(self.layers, 0)
        self.samples = self.flipped = self.same_pred = 0
        self.correct_ref = self.correct_cand = 0
        self.labelled = True
        self.max_diff, self.max_diff_clean, self.timesteps = 0.0, float("nan"), 0

    def add(self, ref_spikes: Dict[str, np.ndarray], cand_spikes: Dict[str, np.ndarray], ref_logits, cand_logits,
            labels=None) -> None:
        """One batch: spikes ``[T, B, ...]`` per layer (any array type), logits ``[B, classes]``."""
        ref_logits, cand_logits = np.asarray(ref_logits, np.float64), np.asarray(cand_logits, np.float64)
        n = ref_logits.shape[0]
        seen = np.zeros(n, dtype=bool)
        for k in self.layers:
            r, c = np.asarray(ref_spikes[k]), np.asarray(cand_spikes[k]).reshape(np.shape(ref_spikes[k]))
            self.timesteps = r.shape[0]
            diff = r != c
            self.equal[k] += int(r.size - diff.sum())
            self.size[k] += r.size
            self.fired[k] += float(r.sum())
            self.fired_candidate[k] += float(c.sum())
            per_sample = diff.reshape(r.shape[0], n, -1).any(axis=(0, 2))
            self.first[k] += int((per_sample & ~seen).sum())
            seen |= per_sample
        dl = np.abs(ref_logits - cand_logits).max(axis=tuple(range(1, ref_logits.ndim))) if n else np.zeros(0)
        self.max_diff = max(self.max_diff, float(dl.max(initial=0.0)))
        if (~seen).any():
            clean = float(dl[~seen].max())
            self.max_diff_clean = clean if np.isnan(self.max_diff_clean) else max(self.max_diff_clean, clean)
        pr, pc = ref_logits.reshape(n, -1).argmax(1), cand_logits.reshape(n, -1).argmax(1)
        self.same_pred += int((pr == pc).sum())
        if labels is None:
            self.labelled = False
        else:
            y = np.asarray(labels).reshape(-1)
            self.correct_ref += int((pr == y).sum())
            self.correct_cand += int((pc == y).sum())
        self.flipped += int(seen.sum())
        self.samples += n

    def result(self, **details) -> Agreement:
        per = {k: self.equal[k] / self.size[k] if self.size[k] else 1.0 for k in self.layers}
        def rate(fired):
            return {k: fired[k] / self.size[k] if self.size[k] else 0.0 for k in self.layers}

        def acc(correct):
            return correct / self.samples if self.labelled and self.samples else None

        return Agreement(
            reference=self.reference, candidate=self.candidate, samples=self.samples, timesteps=self.timesteps,
            spike_agreement=per, spike_flips={k: self.size[k] - self.equal[k] for k in self.layers},
            compared=dict(self.size),
            first_flip_layers={k: v for k, v in self.first.items() if v}, firing_rate=rate(self.fired),
            firing_rate_candidate=rate(self.fired_candidate), samples_with_flips=self.flipped,
            prediction_agreement=self.same_pred / self.samples if self.samples else 1.0,
            max_abs_logit_diff=self.max_diff, max_abs_logit_diff_clean=self.max_diff_clean,
            accuracy_reference=acc(self.correct_ref), accuracy_candidate=acc(self.correct_cand),
            details=details)
