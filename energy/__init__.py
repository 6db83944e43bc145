"""Energy of spiking networks from the IR: activity recording, exact operation counts, energy
models and reports (docs/energy.md; the ILIF paper's Appendix H).

Typical use::

    from ilif_deploy import energy
    rep = energy.profile(graph, x, labels=y, energy_model="paper")
    rep.frame          # per-layer pandas table (units in the column names)
    rep.totals, rep.ann
    rep.to_json("r.json"); rep.to_html("r.html", compare=other_report)
"""
from __future__ import annotations

from typing import Optional, Union

from ilif_deploy.data import Dataset
from ilif_deploy.data.dataset import warn
from ilif_deploy.errors import UserError
from ilif_deploy.ir.graph import Graph
from ilif_deploy.parallel import world

from . import columns  # noqa: F401  (energy.columns: the report's column names)
from .conventions import Conventions
from .count import Plan, count
from .fanout import dense_macs, fanout_map
from .models import PRESETS, EnergyModel, load_energy_model
from .record import Activity, assumed_activity, record_activity
from .placement import placement, placement_table
from .judges import spikingjelly_metrics
from .static import neurobench_metrics, static_metrics
from .report import Report, comparison_frame, headline_metrics

__all__ = ["profile", "estimate", "ann_baseline", "Report", "Conventions", "EnergyModel", "PRESETS",
           "load_energy_model", "record_activity", "assumed_activity", "count", "fanout_map", "dense_macs",
           "Activity", "comparison_frame", "static_metrics",
           "placement", "placement_table", "neurobench_metrics", "spikingjelly_metrics",
           "PRESET_METRICS", "attach_preset_metrics", "headline_metrics"]


#: presets whose tool names its own metrics: the report then carries them under ``meta["metrics"][name]``
PRESET_METRICS = {"neurobench": neurobench_metrics, "spikingjelly": spikingjelly_metrics}


def attach_preset_metrics(report: Report, preset: Optional[str]) -> Report:
    """Add ``preset``'s own metrics (:data:`PRESET_METRICS`) to ``report.meta["metrics"]``; other names are a
    no-op.  :func:`profile` does it when given a preset name; the CLI when ``--conventions`` names one."""
    if preset in PRESET_METRICS:
        report.meta.setdefault("metrics", {})[preset] = PRESET_METRICS[preset](report)
    return report


def _resolve(energy_model, conventions, memory):
    model = load_energy_model(energy_model).with_memory(memory)
    if isinstance(conventions, str):
        conventions = Conventions.preset(conventions)
    conv = conventions if isinstance(conventions, Conventions) else Conventions(**(conventions or {}))
    count_neurons = conv.neurons == "count" or (conv.neurons == "auto" and model.prices_updates)
    return model, conv, count_neurons


def _watch_for_any_pooling(graph: Graph, conv: Conventions) -> list:
    """The nodes to record so that the report can be re-counted under either pooling convention (the verdict
    re-prices it under SpikingJelly's, where a pool is a layer of its own and its output a source)."""
    other = conv.with_(pooling="separate" if conv.pooling == "fuse" else "fuse")
    return sorted(set(Plan(graph, conv).watch()) | set(Plan(graph, other).watch()))


def profile(graph: Graph, x=None, labels=None, *, rate: Optional[float] = None,
            energy_model: Union[str, EnergyModel, dict] = "paper",
            conventions: Union[None, str, dict, Conventions] = None,
            memory: Union[None, str, float] = None, batch_size: int = 32, device: str = "cpu",
            progress: bool = True, name: Optional[str] = None, data_name: str = "",
            compile_neurons=False, input: Optional[str] = None, membrane_changes: Optional[bool] = None) -> Report:
    """Count operations and energy of ``graph`` on data ``x`` (or, with ``x=None``, at an assumed
    firing ``rate`` per neuron and step).

    Args:
        graph: a validated IR graph (traced from torch, or read from NIR / an .npz graph file).
        x: a :class:`~ilif_deploy.data.Dataset` (``ilif_deploy.data.open_data``), an array ``[N, *input_shape]``
            (direct encoding) or ``[N, T, *input_shape]``, a torch Dataset; None with ``rate``.
        labels: optional ``[N]`` class labels, to report accuracy next to the energy.
        rate: assumed firing probability per neuron and step (analytic estimate; needs ``x=None``).
        input: with ``rate``: the input is ``"spikes"`` (firing at ``rate``: accumulates) or ``"analog"`` (dense
            frames: multiply-accumulates); default: what the file says the network takes, else analog.
        energy_model: preset name (``paper``, ``horowitz-fp32|fp16|int32|int8``, ``loihi``), a
            JSON/YAML file, a dict of :class:`EnergyModel` fields, or a model.
        conventions: :class:`Conventions`, a dict of its fields, or a preset name (``paper``, ``neurobench``,
            ``spikingjelly``; the last two also put that tool's metrics in ``report.meta["metrics"]``).
        memory: add memory-access energy: ``sram8k|sram32k|sram1m|dram`` or pJ per access.
        batch_size, device, progress, compile_neurons: how the runtime is driven while recording
            (``compile_neurons``: fuse neuron layers with ``torch.compile``, see :func:`ilif_deploy.run`;
            ``"auto"`` compiles where it pays, :func:`~ilif_deploy.energy.record.compile_pays`).
        name: model name shown in reports (default: the graph's source).
        membrane_changes: count membrane updates as NeuroBench's NeuronOperations does (each neuron layer runs a
            second time; default: when ``conventions`` is the preset name ``"neurobench"``).

    Inside a ``torch.distributed`` job (``torchrun``, see :func:`record_activity`) each process profiles its
    block of ``x`` and the counts are summed exactly; every process returns the whole report.
    Returns:
        a :class:`Report`; every count and energy is per inference (pJ).
    """
    model, conv, count_neurons = _resolve(energy_model, conventions, memory)
    if x is None:
        if rate is None:
            raise UserError("give data x, or rate= for an analytic estimate without data")
        act = assumed_activity(graph, rate, input=input)
    else:
        if rate is not None:
            raise UserError("give either data x or rate=, not both")
        if input is not None:
            raise UserError("input= is for an estimate without data (with data, the input is what the data is)")
        act = record_activity(graph, x, labels, batch_size=batch_size, device=device, progress=progress,
                              watch=_watch_for_any_pooling(graph, conv), compile_neurons=compile_neurons,
                              membrane_changes=conventions == "neurobench" if membrane_changes is None
                              else membrane_changes)
        data_name = data_name or (x.describe() if isinstance(x, Dataset) else "")
    rows = count(graph, act, conv, prices_neuron_updates=model.prices_updates)
    if x is not None and world()[0] == 0:  # said once per job
        silent = [r.name for r in rows if r.op == "neuron" and r.spikes == 0]
        if silent:
            warn(f"neuron layer(s) {', '.join(silent)} never fired on {act.samples} samples: the data may not be "
                 "what the network was trained on (preprocessing, --normalize), or the layer is dead")
    from ilif_deploy.limits import release_freed_memory

    release_freed_memory()  # the recording's batches are done: the placement's float64 synapses come after
    placed = placement(graph)
    release_freed_memory()  # and the placement's, before the report's tables (and pandas) are made
    rep = Report(model_name=name or str(graph.metadata.get("source", "model")), rows=rows, energy_model=model,
                 conventions=conv, samples=act.samples, timesteps=act.timesteps, count_neurons=count_neurons,
                 accuracy=act.accuracy, rate=act.rate, data=data_name if x is not None else "none",
                 meta={"graph": graph.metadata, "static": static_metrics(graph), "placement": placed,
                       **({"assumed_input": act.input} if x is None else {})}, graph=graph, activity=act)
    rep.totals.update(placed.get("totals", {}))
    return attach_preset_metrics(rep, conventions if isinstance(conventions, str) else None)


def estimate(graph: Graph, rate: float, **kw) -> Report:
    """Analytic estimate at an assumed firing rate (spikes per neuron and step), no data needed."""
    return profile(graph, None, rate=rate, **kw)


def ann_baseline(graph: Graph, conventions: Union[None, dict, Conventions] = None) -> dict:
    """Dense MACs of the same topology as an ANN, per layer (one inference): ``{name: MACs}``."""
    rep = estimate(graph, 0.0, conventions=conventions, progress=False)
    return {r.name: r.ann_macs for r in rep.rows if r.ann_macs}
