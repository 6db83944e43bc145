"""The verdict under every energy model: two reports of the same data (ILIF vs LIF, or any ``--compare``)
re-priced from their recorded spikes under each model and convention in :data:`VARIANTS`, side by side, so the
setting that decides which network costs less is in view (counting neuron updates reverses the digits verdict)."""
from __future__ import annotations

from dataclasses import replace
from typing import List, Tuple

import pandas as pd

from .judges import spikingjelly_lemaire, spikingjelly_simple
from .models import load_energy_model

HOROWITZ = "published 45 nm estimates (Horowitz 2014)"
#: (label, energy model, memory, convention overrides, evidence grade of its prices); an energy model named in
#: :data:`JUDGES` is another tool's estimator reproduced from the re-counted report (:mod:`.judges`)
VARIANTS: List[Tuple[str, str, object, dict, str]] = [
    ("paper: synaptic ops only (Appendix H, 45 nm fp32)", "paper", None, {"neurons": "none"}, "modelled"),
    ("paper + neuron updates", "paper", None, {"neurons": "count"}, "modelled"),
    ("Horowitz int32 + neuron updates", "horowitz-int32", None, {"neurons": "count"}, HOROWITZ),
    ("Horowitz int8 + neuron updates", "horowitz-int8", None, {"neurons": "count"}, HOROWITZ),
    ("Lemaire-style: paper + neuron updates + SRAM 32 kB accesses", "paper", "sram32k", {"neurons": "count"},
     "modelled"),
    ("Lemaire et al. 2022 as SpikingJelly 2.0 estimates it: int32 ops, addressing, SRAM priced by buffer size",
     "spikingjelly-lemaire", None, {"pooling": "separate"},
     "published 45 nm estimates (Horowitz 2014) by buffer size; potentials per state compartment (ILIF's: ours)"),
    ("SpikingJelly 2.0 simple: fp32 MACs/ACs + 24.96 pJ per byte of weight, bias and state traffic",
     "spikingjelly-simple", None, {"pooling": "separate"}, HOROWITZ),
    ("Loihi 1 (Davies 2018): synaptic ops, compartment updates, spikes", "loihi", None, {"neurons": "count"},
     "pre-silicon figures (Davies Table 2)"),
    ("Loihi 2: Loihi 1's dynamic prices + static power of the placed cores", "loihi2", None, {"neurons": "count"},
     "dynamic assumed (Loihi 1's); static measured on silicon (PilotNet LIF), per core modelled"),
]


def repriced(report, energy_model, memory=None, **conventions):
    """``report`` counted again from its recorded activity under other conventions and priced by another model
    (a :class:`~ilif_deploy.energy.report.Report`)."""
    from .count import count

    if report.graph is None or report.activity is None:
        raise ValueError("the report keeps no recorded activity to re-price (made by energy.profile?)")
    model = load_energy_model(energy_model).with_memory(memory)
    conv = replace(report.conventions, **conventions)
    count_neurons = conv.neurons == "count" or (conv.neurons == "auto" and model.prices_updates)
    rows = count(report.graph, report.activity, conv, prices_neuron_updates=model.prices_updates)
    return type(report)(model_name=report.model_name, rows=rows, energy_model=model, conventions=conv,
                        samples=report.samples, timesteps=report.timesteps, count_neurons=count_neurons,
                        accuracy=report.accuracy, rate=report.rate, data=report.data,
                        meta={"placement": report.meta.get("placement")}, graph=report.graph,
                        activity=report.activity)


#: other tools' estimators, by the name VARIANTS gives them: each prices a report re-counted under the variant's
#: conventions (the energy model of that re-count does not enter)
JUDGES = {"spikingjelly-lemaire": spikingjelly_lemaire, "spikingjelly-simple": spikingjelly_simple}


def _energy_uj(report, model, memory, conv) -> float:
    if model in JUDGES:
        return JUDGES[model](repriced(report, "paper", **conv))["energy_pj"]["total_pj"] * 1e-6
    return repriced(report, model, memory, **conv).totals["energy_uj"]


def verdict_frame(a, b) -> pd.DataFrame:
    """Energy per inference (uJ) of ``a`` and ``b`` under every :data:`VARIANTS` entry, their ratio and which
    costs less, with the evidence behind each model's prices."""
    rows = []
    for label, model, memory, conv, grade in VARIANTS:
        ea, eb = _energy_uj(a, model, memory, conv), _energy_uj(b, model, memory, conv)
        rows.append({"energy model": label, f"{a.model_name} [uJ]": ea, f"{b.model_name} [uJ]": eb,
                     f"{a.model_name} / {b.model_name}": ea / eb if eb else None,
                     "cheaper": a.model_name if ea < eb else b.model_name if eb < ea else "equal",
                     "evidence": grade})
    return pd.DataFrame(rows)


__all__ = ["VARIANTS", "JUDGES", "repriced", "verdict_frame"]
