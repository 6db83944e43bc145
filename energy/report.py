"""Energy report: a per-layer pandas table, totals, ANN baseline, and CSV/JSON/Markdown output."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np

from ilif_deploy.atomic import write_text_atomic

from .columns import ANN_ENERGY, COLUMNS, ENERGY, NEURON_ENERGY, SYNAPTIC_ENERGY
from .conventions import Conventions
from .count import Row
from .models import EnergyModel, energy_pj

if TYPE_CHECKING:
    import pandas as pd

# pandas (~0.2 s and ~30 MB) is imported where a table is made, not with the package: ilif-energy records the
# spikes and places the layers first, and the import then does not add to those phases' peak memory

#: what a spreadsheet reads as the start of a formula in a text cell (OWASP's list for CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(frame):
    """``frame`` with every text cell a spreadsheet would run as a formula (a layer named ``=SUM(...)`` in a file)
    prefixed with ``'``, so it is shown as text; numbers are left as they are."""
    import pandas as pd

    out = frame.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out


def _num(v: float) -> str:
    """4 decimals, or n/a where a quantity does not exist (e.g. continuous firing without data)."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _clean(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v.item())
    return v


@dataclass
class Report:
    """Counts and energy of one model on one dataset (all numbers per inference).

    ``frame``: one row per counted IR node (see :data:`COLUMNS`); ``totals``: sums and overall
    rates; ``ann``: the ANN baseline of the same topology; ``rates``: firing rate per neuron layer
    (rows) and time step (columns).
    """

    model_name: str
    rows: List[Row]
    energy_model: EnergyModel
    conventions: Conventions
    samples: int
    timesteps: int
    count_neurons: bool
    accuracy: Optional[float] = None
    rate: Optional[float] = None
    data: str = ""
    meta: dict = field(default_factory=dict)
    #: what the counts came from (kept so the report can be re-priced under other models: energy.verdict);
    #: not part of any output
    graph: Optional[object] = field(default=None, repr=False, compare=False)
    activity: Optional[object] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        import pandas as pd

        recs = []
        self._energy = []
        self._verdicts = {}  # per compared report: the terminal, Markdown and HTML show the same re-pricing
        mesh = self.energy_model.mesh
        placed = ((self.meta.get("placement") or {}).get("layers") or {}) if mesh else {}
        for r in self.rows:
            e = energy_pj(self.energy_model, r, self.count_neurons, placed.get(r.name, {}).get(f"{mesh}_route"))
            self._energy.append(e)
            rec = {col: getattr(r, attr) for col, attr in COLUMNS.items()}
            rec["shape"] = "x".join(map(str, r.shape))
            rec[ENERGY] = e["total"]
            rec[SYNAPTIC_ENERGY] = e["synaptic"]
            rec[NEURON_ENERGY] = e["neuron"] + e["spikes"]
            rec[ANN_ENERGY] = e["ann"]
            rec["note"] = r.note
            recs.append(rec)
        self.frame = pd.DataFrame(recs)
        neurons = [r for r in self.rows if r.op == "neuron"]
        n_neuron_steps = sum(r.neurons for r in neurons) * self.timesteps
        spikes = sum(r.spikes for r in neurons)
        self.totals = {
            "acs": sum(r.acs for r in self.rows),
            "macs": sum(r.macs for r in self.rows),
            "neuron_acs": sum(r.neuron_acs for r in self.rows),
            "neuron_macs": sum(r.neuron_macs for r in self.rows),
            "spikes": spikes,
            "firing_rate": spikes / n_neuron_steps if n_neuron_steps else float("nan"),
            "continuous_firing_rate": (sum(r.continuous_rate * r.neurons for r in neurons)
                                       / sum(r.neurons for r in neurons)) if neurons else float("nan"),
            "energy_pj": sum(e["total"] for e in self._energy),
            "synaptic_energy_pj": sum(e["synaptic"] for e in self._energy),
            "neuron_energy_pj": sum(e["neuron"] + e["spikes"] for e in self._energy),
            "memory_energy_pj": sum(e["memory"] for e in self._energy),
        }
        self.ann = {"macs": sum(r.ann_macs for r in self.rows), "acs": sum(r.ann_acs for r in self.rows),
                    "energy_pj": sum(e["ann"] for e in self._energy)}
        # static energy: a whole-network term (the placement's cores x T x step time), not any layer's
        cores = ((self.meta.get("placement") or {}).get("totals") or {}).get("loihi2_cores")
        static = self.energy_model.static_w_per_core * self.energy_model.step_s * 1e12 * (cores or 0) * self.timesteps
        self.totals["static_energy_pj"] = static
        self.totals["energy_pj"] += static
        self.totals["energy_uj"] = self.totals["energy_pj"] * 1e-6
        self.ann["energy_uj"] = self.ann["energy_pj"] * 1e-6
        self.totals["ann_to_snn_energy_ratio"] = (self.ann["energy_pj"] / self.totals["energy_pj"]
                                                  if self.totals["energy_pj"] else float("nan"))
        self.rates = pd.DataFrame({r.name: r.rate_per_step for r in neurons},
                                  index=[f"t={t + 1}" for t in range(self.timesteps)]).T
        self.rates.index.name = "neuron layer"

    # ------------------------------------------------------------------ outputs
    def to_dict(self) -> dict:
        """JSON-ready content: ``layers``, ``totals``, ``ann``, ``energy_model``, ``samples``, ``timesteps`` ..."""
        layers = []
        for r, e in zip(self.rows, self._energy):
            layers.append({k: _clean(v) for k, v in {
                "name": r.name, "op": r.op, "shape": list(r.shape), "input": r.input_kind, "source": r.source,
                "fanout_mean": r.fanout_mean, "neurons": r.neurons, "acs": r.acs, "macs": r.macs,
                "neuron_acs": r.neuron_acs, "neuron_macs": r.neuron_macs, "spikes": r.spikes,
                "firing_rate": r.firing_rate if r.op == "neuron" else None,
                "continuous_firing_rate": r.continuous_rate if r.op == "neuron" else None,
                "firing_rate_per_step": r.rate_per_step or None, "acs_per_step": r.acs_per_step or None,
                "memory_accesses": r.mem_accesses, "energy_pj": e["total"], "synaptic_energy_pj": e["synaptic"],
                "neuron_energy_pj": e["neuron"] + e["spikes"], "memory_energy_pj": e["memory"],
                "ann_macs": r.ann_macs, "ann_acs": r.ann_acs, "ann_energy_pj": e["ann"], "note": r.note,
            }.items()})
        return {
            "model": self.model_name, "data": self.data, "samples": self.samples, "timesteps": self.timesteps,
            "per": "inference (counts summed over the samples and divided by their number)",
            "accuracy": _clean(self.accuracy), "assumed_rate": self.rate,
            "energy_model": self.energy_model.to_dict(), "conventions": self.conventions.to_dict(),
            "neuron_updates_counted": self.count_neurons,
            "layers": layers, "totals": {k: _clean(v) for k, v in self.totals.items()},
            "ann": {k: _clean(v) for k, v in self.ann.items()}, **self.meta,
        }

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    def provenance_lines(self) -> List[str]:
        """``key: value`` lines of what produced the report (tool and version, UTC time, model file and its
        sha256, command line, data), when the caller recorded them in ``meta["provenance"]``."""
        return [f"{k}: {v}" for k, v in (self.meta.get("provenance") or {}).items()]

    def to_csv(self, path=None, compare: Optional["Report"] = None) -> str:
        """The per-layer table; provenance as leading ``# key: value`` lines (pandas: ``comment="#"``);
        floats to 10 significant digits (counts averaged over samples carry float noise beyond that).  With
        ``compare``, both models' rows, a leading ``model`` column telling them apart."""
        import pandas as pd

        head = "".join(f"# {line}\n" for line in self.provenance_lines())
        frame = self.frame
        if compare is not None:
            frame = pd.concat([f.assign(**{"model": r.model_name})[["model"] + list(f.columns)]
                               for r, f in ((self, self.frame), (compare, compare.frame))], ignore_index=True)
        text = head + formula_safe(frame).to_csv(index=False, float_format="%.10g")
        if path is not None:
            write_text_atomic(path, text)
        return text

    def headline(self) -> str:
        """Two lines: what was run, and the totals (per inference)."""
        t, a = self.totals, self.ann
        acc = f", accuracy {self.accuracy:.2%}" if self.accuracy is not None else ""
        if self.rate is not None:
            src = f"assumed firing rate {self.rate}"
        else:
            src = f"{self.samples} samples" + (f" of {self.data}" if self.data else "")
        neuron = ""
        if t["neuron_acs"] or t["neuron_macs"]:
            neuron = f" + neuron updates {t['neuron_acs'] / 1e6:.4f} M ACs, {t['neuron_macs'] / 1e6:.4f} M MACs"
        return (f"{self.model_name}: {src}, T={self.timesteps}{acc}; energy model {self.energy_model.name}\n"
                f"SNN {t['acs'] / 1e6:.4f} M ACs + {t['macs'] / 1e6:.4f} M MACs{neuron} = "
                f"{t['energy_pj'] / 1e6:.4f} uJ per inference (firing rate {_num(t['firing_rate'])}, "
                f"continuous firing {_num(t['continuous_firing_rate'])}); "
                f"ANN {a['macs'] / 1e6:.4f} M MACs = {a['energy_pj'] / 1e6:.4f} uJ")

    def summary_tables(self, compare: Optional["Report"] = None) -> List[Tuple[str, pd.DataFrame]]:
        """``(title, table)`` pairs shown by the Markdown and HTML reports: the static metrics and, when the
        report was made under a preset that names its own metrics (``neurobench``, ``spikingjelly``), those
        under the tool's names; one row per model."""
        import pandas as pd

        reports = [self] + ([compare] if compare is not None else [])
        tables = []
        if all(r.meta.get("static") for r in reports):
            tables.append(("Static metrics", pd.DataFrame([{
                "model": r.model_name, "parameters": t["parameters"], "synapses": t["synapses"],
                "neurons": t["neurons"], "compartments": t["compartments"],
                "connection sparsity": round(t["connection_sparsity"], 6),
                "footprint float32 [bytes]": t["footprint_float32_bytes"],
                "footprint fixed point [bytes]": t["footprint_fixed_bytes"],
                "Loihi cores (lower bound)": t.get("loihi_cores_min"),
                "Loihi 1 cores (placed)": r.totals.get("loihi1_cores"),
                "Loihi 2 cores (placed)": r.totals.get("loihi2_cores"),
                "Loihi 2 chips": r.totals.get("loihi2_chips")}
                for r in reports for t in [r.meta["static"]["totals"]]])))
        for tool, title in (("neurobench", "NeuroBench metrics (NeuroBench 2.3.0's names and definitions)"),
                            ("spikingjelly", "SpikingJelly metrics (SynOpCounter's and its estimators' definitions)")):
            if all(tool in (r.meta.get("metrics") or {}) for r in reports):
                tables.append((title, pd.DataFrame([{"model": r.model_name, **headline_metrics(r.meta["metrics"][tool])}
                                                    for r in reports])))
        return tables

    def title(self, compare: Optional["Report"] = None) -> str:
        """What the report is about: the model (vs the compared one), its energy model and whether neuron updates
        are counted -- the setting that can decide a verdict."""
        who = self.model_name + (f" vs {compare.model_name}" if compare is not None else "")
        return f"{who} ({self.energy_model.name}, neuron updates {'counted' if self.count_neurons else 'not counted'})"

    def verdict(self, compare: "Report") -> Optional[pd.DataFrame]:
        """This report and ``compare`` under every energy model of :mod:`.verdict` (None when either keeps no
        recorded activity)."""
        from .verdict import verdict_frame

        if self.activity is None or compare.activity is None:
            return None
        if id(compare) not in self._verdicts:
            self._verdicts[id(compare)] = (compare, verdict_frame(self, compare))  # compare held: its id stays its
        return self._verdicts[id(compare)][1]

    def to_markdown(self, path=None, compare: Optional["Report"] = None) -> str:
        lines = [f"# Energy report: {self.title(compare)}", "", self.headline().replace("\n", "  \n"), ""]
        if compare is not None:
            lines += [compare.headline().replace("\n", "  \n"), ""]
        lines += [f"Conventions: {', '.join(f'{k}={v}' for k, v in self.conventions.to_dict().items())}; "
                  f"energy model {self.energy_model.name}; neuron updates counted: {self.count_neurons}.", ""]
        if compare is not None:
            lines += ["## Comparison", "", markdown_table(comparison_frame(self, compare)), ""]
            verdict = self.verdict(compare)
            if verdict is not None:
                lines += [f"## Verdict: {self.model_name} vs {compare.model_name} under each energy model", "",
                          markdown_table(verdict), ""]
        for title, df in self.summary_tables(compare):
            lines += [f"## {title}", "", markdown_table(df), ""]
        lines += ["## Per layer", "", markdown_table(self.frame), "",
                  "## Firing rate per neuron layer and time step", "",
                  markdown_table(self.rates, index=True), ""]
        if compare is not None:
            lines += [f"## Per layer: {compare.model_name}", "", markdown_table(compare.frame),
                      "", f"## Firing rate per step: {compare.model_name}", "",
                      markdown_table(compare.rates, index=True), ""]
        if self.provenance_lines():
            lines += ["## Provenance", ""] + [f"- {line}" for line in self.provenance_lines()] + [""]
        text = "\n".join(lines)
        if path is not None:
            write_text_atomic(path, text)
        return text

    def to_html(self, path=None, compare: Optional["Report"] = None) -> str:
        from .html import report_html

        text = report_html(self, compare, comparison_frame(self, compare) if compare is not None else None)
        if path is not None:
            write_text_atomic(path, text)
        return text


def headline_metrics(values: dict) -> dict:
    """A tool's metrics as one line of numbers: an estimator's result (a dict with ``energy_pj``) as its total in
    pJ, a group of numbers (NeuroBench's NeuronOperations) as its members; lists and detail stay in the JSON."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict) and "energy_pj" in v:
            out[f"{k} [pJ]"] = v["energy_pj"]["total_pj"]
        elif isinstance(v, dict):
            out.update({sk: sv for sk, sv in v.items() if isinstance(sv, (int, float))})
        elif v is None or isinstance(v, (int, float)):
            out[k] = v
    return out


def markdown_table(df: pd.DataFrame, index: bool = False) -> str:
    """A GitHub Markdown table (pandas' own ``to_markdown`` needs the optional ``tabulate`` package)."""
    if index:
        df = df.reset_index()

    def fmt(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, (float, np.floating)):
            # whole counts in full (1.63031e+07 hides digits that matter), the rest to 6 significant digits
            return f"{int(v)}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"
        return str(v).replace("|", "\\|")

    head = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for rec in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in rec) + " |")
    return "\n".join(lines)


def comparison_frame(a: Report, b: Report) -> pd.DataFrame:
    """Totals of two reports side by side (e.g. ILIF vs LIF)."""
    import pandas as pd

    keys = [("accuracy", None), ("ACs [M/inference]", "acs"), ("MACs [M/inference]", "macs"),
            ("spikes [1/inference]", "spikes"), ("firing rate [spikes/neuron/step]", "firing_rate"),
            ("continuous firing [share of neurons]", "continuous_firing_rate"),
            ("energy [uJ/inference]", "energy_uj"), ("ANN energy [uJ/inference]", None)]
    rows = []
    for label, k in keys:
        def val(r):
            if label == "accuracy":
                return r.accuracy
            if k is None:
                return r.ann["energy_uj"]
            v = r.totals[k]
            return v / 1e6 if label.endswith("[M/inference]") else v
        va, vb = val(a), val(b)
        ratio = (va / vb) if (va is not None and vb not in (None, 0)) else None
        rows.append({"quantity": label, a.model_name: va, b.model_name: vb, f"{a.model_name} / {b.model_name}": ratio})
    return pd.DataFrame(rows)
