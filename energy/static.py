"""Static metrics of a graph -- what does not depend on data: parameters, memory footprint, connection
sparsity, synapses, neurons and compartments, per layer and in total (the quantities NeuroBench calls
Footprint and ConnectionSparsity, and what a neuromorphic chip has to hold)."""
from __future__ import annotations

from typing import Dict

import numpy as np

from ilif_deploy import families
from ilif_deploy import ir as N
from ilif_deploy.ir.graph import Graph

#: bytes per value in the Lava fixed-point format (docs/lava.md): 8-bit weight mantissas, biases and
#: thresholds as 24-bit state values held in 32 bits
FIXED_WEIGHT_BYTES, FIXED_STATE_BYTES = 1, 4

#: Loihi (1) per-core limits, Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
#: IEEE Micro 38(1), 2018: 1,024 compartments and 128 KB of synaptic memory per core, 128 cores per chip.
#: Synapses are stored one by one there (no weight sharing for convolutions).
LOIHI_COMPARTMENTS_PER_CORE, LOIHI_SYNAPSE_BYTES_PER_CORE, LOIHI_CORES_PER_CHIP = 1024, 128 * 1024, 128


STATIC = families.declare("static metrics", families.all_but())


def _weight_stats(weight, bias, positions: int) -> dict:
    """Parameters, weights, zero weights, sparsity, synapses (non-zero taps x output ``positions``) and
    footprints of one weight matrix (first axis: outputs) and its optional bias."""
    w = np.asarray(weight)
    b = 0 if bias is None else int(np.size(bias))
    per_out = np.count_nonzero(w.reshape(w.shape[0], -1), axis=1)  # non-zero taps per output channel
    zero = int(w.size - per_out.sum())
    return {"parameters": int(w.size) + b, "weights": int(w.size), "zero_weights": zero,
            "connection_sparsity": zero / w.size if w.size else 0.0, "synapses": int(per_out.sum()) * positions,
            "footprint_float32_bytes": 4 * (int(w.size) + b),
            "footprint_fixed_bytes": FIXED_WEIGHT_BYTES * int(w.size) + FIXED_STATE_BYTES * b}


def static_metrics(graph: Graph) -> Dict[str, dict]:
    """``{"layers": {name: {...}}, "totals": {...}}``: for each weight layer ``parameters`` (weights + biases;
    an affine/BN: scale + shift), ``weights``, ``zero_weights``, ``connection_sparsity`` (zero weights /
    weights), ``synapses`` (non-zero weight x the output positions it is applied at; taps on zero padding
    included), ``footprint_float32_bytes`` and ``footprint_fixed_bytes`` (int8 mantissas + 32-bit biases);
    for each neuron layer ``neurons``, ``compartments`` (neurons x state variables), its per-layer
    parameters (threshold and decays, 4 bytes each) and ``state_bytes`` (4 per compartment: float32, or the
    24-bit fixed-point state held in 32 bits).  Totals add ``loihi_cores_min`` / ``loihi_chips_min``: an
    estimated lower bound on Loihi cores (:data:`LOIHI_COMPARTMENTS_PER_CORE`, :data:`LOIHI_SYNAPSE_BYTES_PER_CORE`)."""
    STATIC.check_graph(graph)
    layers: Dict[str, dict] = {}
    for name in graph.topological_order():
        node = graph.nodes[name]
        if isinstance(node, (N.Conv2d, N.Linear)):
            positions = int(np.prod(node.shape[1:])) if isinstance(node, N.Conv2d) else 1
            layers[name] = {"op": node.op, **_weight_stats(node.weight, node.bias, positions)}
        elif isinstance(node, N.Affine):
            n = int(np.size(node.scale)) + int(np.size(node.shift))
            layers[name] = {"op": node.op, "parameters": n, "weights": 0, "zero_weights": 0,
                            "connection_sparsity": 0.0, "synapses": 0, "footprint_float32_bytes": 4 * n,
                            "footprint_fixed_bytes": 0}  # folded into the weights on a chip
        elif isinstance(node, N.SPIKING):
            neurons = int(np.prod(node.shape))
            k = families.compartments(node)
            layers[name] = {"op": node.op, "parameters": 1 + k, "neurons": neurons, "compartments": neurons * k,
                            "footprint_float32_bytes": 4 * (1 + k),
                            "footprint_fixed_bytes": FIXED_STATE_BYTES * (1 + k), "state_bytes": 4 * neurons * k}
            if isinstance(node, N.RecurrentNeuron):  # plus its recurrent synapse, counted as a weight layer's
                syn = _weight_stats(node.weight, node.bias, 1)
                for key in ("parameters", "footprint_float32_bytes", "footprint_fixed_bytes"):
                    syn[key] += layers[name][key]
                layers[name].update(syn)
    keys = ("parameters", "weights", "zero_weights", "synapses", "neurons", "compartments",
            "footprint_float32_bytes", "footprint_fixed_bytes", "state_bytes")
    totals = {k: sum(v.get(k, 0) for v in layers.values()) for k in keys}
    totals["connection_sparsity"] = totals["zero_weights"] / totals["weights"] if totals["weights"] else 0.0
    # a lower bound: every neuron layer on cores of its own, each holding at most 1,024 compartments and
    # 128 KB of 8-bit synapses; packing, axon tables and routing limits are not modelled
    by_compartments = sum(-(-v["compartments"] // LOIHI_COMPARTMENTS_PER_CORE) for v in layers.values()
                          if "compartments" in v)
    by_synapses = sum(-(-v["synapses"] * FIXED_WEIGHT_BYTES // LOIHI_SYNAPSE_BYTES_PER_CORE)
                      for v in layers.values() if v.get("synapses"))
    totals["loihi_cores_min"] = max(by_compartments, by_synapses)
    totals["loihi_chips_min"] = -(-totals["loihi_cores_min"] // LOIHI_CORES_PER_CHIP)
    return {"layers": layers, "totals": totals,
            "notes": "footprints hold parameters (fixed point: int8 mantissas, 32-bit biases and thresholds, "
                     "BN/affine folded into the weights); state_bytes is the neuron state (4 bytes per compartment); "
                     "loihi_cores_min: estimated lower bound from Loihi's published per-core limits (1,024 "
                     "compartments, 128 KB synaptic memory; Davies et al. 2018), 8-bit synapses stored one by one"}


def _synaptic_rows(report):
    return [r for r in report.rows if r.op in ("conv2d", "linear")]


#: NeuroBench 2.3.0's NeuronOperations: operations per membrane update, by snntorch neuron type and reset
NEUROBENCH_NEURON_OPS = {"Leaky": {"subtract": 4, "zero": 4}, "Synaptic": {"subtract": 6, "zero": 8}}


def _neurobench_type(node):
    """(snntorch type, reset) NeuroBench would price ``node`` as, or None: a plain LIF/IF membrane is its
    ``Leaky``, one with a synaptic current its ``Synaptic``; ILIF's units and other features have no price there."""
    if not isinstance(node, N.Neuron):
        return None
    f = families.features(node) - {"spike:>=", "spike:>", "charge:lam", "learned_decay"}
    resets = {"reset:subtract": "subtract", "reset:subtract_next": "subtract", "reset:zero": "zero"}
    reset = [resets[r] for r in f if r in resets]
    extra = f - set(resets) - {"synaptic_current"}
    if len(reset) != 1 or extra:
        return None
    return ("Synaptic" if "synaptic_current" in f else "Leaky"), reset[0]


def neurobench_neuron_operations(report) -> dict:
    """NeuroBench's NeuronOperations per inference: ``Effective Neuron Ops`` (membrane updates recorded in
    ``report.activity.changes`` x the operations per update of the layer's snntorch type) and ``Neuron Dense Ops``
    (neurons x T x the same); neuron layers NeuroBench has no price for are named in ``unpriced``."""
    act, g, T = report.activity, report.graph, report.timesteps
    effective = dense = 0.0
    unpriced = []
    for node in g.of_type(N.SPIKING):
        kind = _neurobench_type(node)
        if kind is None:
            unpriced.append(node.name)
            continue
        ops = NEUROBENCH_NEURON_OPS[kind[0]][kind[1]]
        effective += ops * act.changes[node.name] / act.samples
        dense += ops * int(np.prod(node.shape)) * T
    return {"Effective Neuron Ops": effective, "Neuron Dense Ops": dense, "unpriced": unpriced}


def neurobench_metrics(report) -> dict:
    """The report's numbers as NeuroBench 2.3.0 defines them, per inference (read them from a report made
    under ``Conventions.preset("neurobench")``; benchmarks/neurobench_equality.py shows them equal to
    NeuroBench's own on the same module and data):

    - ``Effective_ACs`` / ``Effective_MACs``: conv/linear operations driven by binary / analog inputs
      (pools and neuron updates are not synaptic operations there);
    - ``Dense``: the same layers' dense operations over all T steps;
    - ``ActivationSparsity``: 1 - spikes / neuron-steps over all neuron layers;
    - ``MembraneUpdates``: neurons x T (NeuroBench itself reads membranes of snntorch neurons only);
    - ``ParameterCount`` and ``Footprint`` (bytes): of the torch module the graph was traced from, parameters
      and buffers as torch stores them (NeuroBench's definition); for a graph read from a file, the
      graph's float32 parameters;
    - ``ConnectionSparsity``: zero weights / weights of the conv/linear layers (NeuroBench rounds to 4 places);
    - ``NeuronOperations``: :func:`neurobench_neuron_operations`, when the activity was recorded with membrane
      changes (``profile(..., conventions="neurobench")``, ``ilif-energy --conventions neurobench``).
    """
    t, T = report.totals, report.timesteps
    syn = _synaptic_rows(report)
    neurons = sum(r.neurons for r in report.rows if r.op == "neuron")
    static = report.meta.get("static", {}).get("totals", {})
    module = report.meta.get("graph", {}).get("torch_module") or {}
    rate = t["firing_rate"]
    return {"Effective_ACs": sum(r.acs for r in syn), "Effective_MACs": sum(r.macs for r in syn),
            "Dense": sum(r.ann_macs for r in syn) * T,
            "ActivationSparsity": None if rate != rate else 1.0 - rate, "MembraneUpdates": neurons * T,
            "ParameterCount": module.get("parameters", static.get("parameters")),
            "Footprint": module.get("footprint_bytes", static.get("footprint_float32_bytes")),
            "ConnectionSparsity": static.get("connection_sparsity"),
            **({"NeuronOperations": neurobench_neuron_operations(report)}
               if report.activity is not None and report.activity.changes else {})}


__all__ = ["static_metrics", "neurobench_metrics", "neurobench_neuron_operations"]
