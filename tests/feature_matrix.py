"""The neuron feature x backend matrix: every feature of :mod:`ilif_deploy.families` through every declared
backend, each cell either exact against the reference runtime or refused by name.

One small network per feature (:func:`example`): input -> linear -> neuron layer -> linear -> neuron layer ->
output, both neuron layers with the feature on a base that every backend runs where it can (netx's CUBA
neuron: reset to 0, '>'), dyadic weights and integer inputs, so fixed point computes the same numbers as float
and a difference is a bug, not rounding.  Used by tests/test_families.py and benchmarks/feature_matrix.py.
"""
from __future__ import annotations

import dataclasses
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import torch

from ilif_deploy import families
from ilif_deploy import ir as N
from ilif_deploy.families import FeatureError
from ilif_deploy.neuron_step import ILIFParams
from ilif_deploy.runtime import run
from zoo import chain_graph

T, SAMPLES, N_IN, N_HID, N_OUT = 8, 3, 6, 8, 5
#: netx's CUBA neuron: every backend runs it, so an example differs from it in its feature only
BASE = dict(lam=0.5, v_th=1.0, lam_u=0.0, lam_i=0.0, reset="zero", compare=">")
#: what each feature changes on BASE (node: "recurrent" makes the first layer a RecurrentNeuron)
VARIANTS = {
    "spike:>=": dict(compare=">="),
    "spike:>": {},
    "charge:lam": {},
    "charge:decay_input": dict(charge="decay_input", charge_tau=2.0),
    "charge:leak": dict(charge="leak", charge_gain=0.5, v_reset=0.25),
    "spike:count": dict(compare=">=", reset="subtract", multi_spike=True),
    "spike:delta": dict(lam=1.0, compare=">=", reset="subtract", delta="relu"),
    "reset:subtract": dict(reset="subtract"),
    "reset:subtract_next": dict(reset="subtract_next"),
    "reset:zero": {},
    "reset:to_v_reset": dict(v_reset=0.5),
    "ciu": dict(lam_i=0.5),
    "mpiu": dict(lam_u=0.5),
    "membrane_floor": dict(v_min=-0.125),
    "learned_decay": dict(learned_decay=True),
    "synaptic_current": dict(node="recurrent", syn_lam=0.5),
    "recurrence": dict(node="recurrent", syn_lam=0.0),
}


def _weights(rng, shape, scale=1.0):
    """Multiples of 1/8 in [-0.75 scale, scale], none zero (fan-outs are then exactly the layer sizes)."""
    w = rng.integers(-6, 9, size=shape) / 8.0 * scale  # a little more excitation than inhibition
    w[w == 0] = 0.125
    return w.astype(np.float32)


def example(feature: str, params_cls=ILIFParams, extra: dict = None) -> N.Node:
    """The network of ``feature`` (its neuron parameters BASE + VARIANTS[feature] + ``extra``)."""
    rng = np.random.default_rng(zlib.crc32(feature.encode()))  # a seed of its own, whatever else is declared
    variant = dict(VARIANTS.get(feature, {}), **(extra or {}))
    node_kind, syn_lam = variant.pop("node", "neuron"), variant.pop("syn_lam", 0.0)
    p = params_cls(**{**BASE, **variant})
    if p.delta is not None:  # SDNN layers: a delta encoder of the input, the sigma (a non-decaying sum) before each
        encoder = N.Neuron("n0", params=dataclasses.replace(p, delta="unit"))
        return chain_graph((N_IN,), [encoder, N.Linear("fc1", weight=_weights(rng, (N_HID, N_IN))),
                                     N.LeakyIntegrator("sigma1", lam=1.0), N.Neuron("n1", params=p),
                                     N.Linear("fc2", weight=_weights(rng, (N_OUT, N_HID), 1.5)),
                                     N.LeakyIntegrator("sigma2", lam=1.0), N.Neuron("n2", params=p)], T=T,
                           encoding="sequence")
    if node_kind == "recurrent":
        first = N.RecurrentNeuron("n1", params=p, weight=_weights(rng, (N_HID, N_HID), 0.5), syn_lam=syn_lam)
    else:
        first = N.Neuron("n1", params=p)
    return chain_graph((N_IN,), [N.Linear("fc1", weight=_weights(rng, (N_HID, N_IN))), first,
                                 N.Linear("fc2", weight=_weights(rng, (N_OUT, N_HID), 1.5)),
                                 N.Neuron("n2", params=p)], T=T, encoding="sequence")


def inputs(seed: int = 0) -> np.ndarray:
    """``[SAMPLES, T, N_IN]`` event counts 0..3 (integers > 1 reach a multi-spike layer's counts)."""
    return np.random.default_rng(seed).integers(0, 4, size=(SAMPLES, T, N_IN)).astype(np.float32)


def _reference(graph):
    x = torch.from_numpy(inputs()).transpose(0, 1)
    out, rec = run(graph, x, record=["n1", "n2"])
    return x, out, rec


def _same(what: str, a, b) -> None:
    if not torch.equal(torch.as_tensor(a).float(), torch.as_tensor(b).float()):
        raise AssertionError(f"{what} differ from the runtime's")


# ----------------------------------------------------------------------------- one runner per backend
def _runtime(graph, d: Path) -> None:
    _reference(graph)


def _graph_file(graph, d: Path) -> None:
    x, out, rec = _reference(graph)
    graph.save(d / "g.ir.npz")
    back = N.Graph.load(d / "g.ir.npz")
    out2, rec2 = run(back, x, record=["n1", "n2"])
    _same("outputs", out, out2)
    _same("spikes", rec["n1"], rec2["n1"])


def _nir(graph, d: Path) -> None:
    from ilif_deploy.converters.nir import export_graph, read_graph

    x, out, rec = _reference(graph)
    export_graph(graph, d / "g.nir")
    out2, rec2 = run(read_graph(d / "g.nir"), x, record=["n1", "n2"])
    _same("outputs", out, out2)
    _same("spikes", rec["n1"], rec2["n1"])


def _onnx(graph, d: Path) -> None:
    from ilif_deploy.converters.onnx import compare_with_runtime, export_graph

    export_graph(graph, d / "g.onnx")
    a = compare_with_runtime(graph, d / "g.onnx", inputs())
    if a.total_flips:
        raise AssertionError(f"onnxruntime flips {a.total_flips} spikes")


def _lava(mode: str, engine: str):
    def runner(graph, d: Path) -> None:
        from ilif_deploy.converters.lava import simulate

        a = simulate(graph, x=inputs(), mode=mode, engine=engine, progress=False)
        if set(a.spike_agreement.values()) != {1.0} or any(a.details.get("overflows", {}).values()):
            raise AssertionError(f"spike agreement {a.spike_agreement}, overflows {a.details.get('overflows')}")
    return runner


def _netx(graph, d: Path) -> None:
    from ilif_deploy.converters.netx import export_graph, read_netx

    x, out, _ = _reference(graph)
    export_graph(graph, d / "g.net")
    _same("output spikes", out, run(read_netx(d / "g.net", T), x))


def _energy(graph, d: Path) -> None:
    from ilif_deploy import energy

    x, _, rec = _reference(graph)
    rows = {r.name: r for r in energy.profile(graph, inputs(), progress=False).rows}
    # events: a count of k spikes is k events, a graded message (a delta encoder's change) one
    events = {k: float((rec[k] != 0).sum() if graph.nodes[k].params.delta else rec[k].sum()) for k in ("n1", "n2")}
    for name in ("n1", "n2"):
        spikes = events[name] / SAMPLES
        comps = families.compartments(graph.nodes[name])
        if not np.isclose(rows[name].spikes, spikes, rtol=1e-12) or rows[name].updates != (
                graph.nodes[name].shape[0] * T * comps):
            raise AssertionError(f"{name}: {rows[name].spikes} spikes, {rows[name].updates} updates")
    # every event reaches each of fc2's N_OUT outputs: one AC each (a graded one: one MAC)
    ops = rows["fc2"].macs if graph.nodes["n1"].params.delta else rows["fc2"].acs
    if not np.isclose(ops * SAMPLES, events["n1"] * N_OUT, rtol=1e-12, atol=0):
        raise AssertionError(f"fc2: {ops} synaptic ops for {events['n1'] / SAMPLES} events")


def _static(graph, d: Path) -> None:
    from ilif_deploy.energy.static import static_metrics

    layers = static_metrics(graph)["layers"]
    for name in ("n1", "n2"):
        want = graph.nodes[name].shape[0] * families.compartments(graph.nodes[name])
        if layers[name]["compartments"] != want:
            raise AssertionError(f"{name}: {layers[name]['compartments']} compartments, expected {want}")


#: backend name (as declared) -> runner(graph, folder): returns when the backend agrees with the runtime
RUNNERS: Dict[str, Callable] = {
    "runtime": _runtime, "graph file (.ir.npz)": _graph_file, "nir": _nir, "onnx": _onnx,
    "lava (float)": _lava("float", "lava"), "lava (fixed point)": _lava("fixed", "lava"),
    "torch engine (float)": _lava("float", "torch"), "torch engine (fixed point)": _lava("fixed", "torch"),
    "netx": _netx, "energy": _energy, "static metrics": _static,
}


def load_backends() -> Dict[str, families.Backend]:
    """Import every module that declares a backend; the declarations by name."""
    import ilif_deploy.converters.lava.engine  # noqa: F401
    import ilif_deploy.converters.lava.netspec  # noqa: F401
    import ilif_deploy.converters.netx  # noqa: F401
    import ilif_deploy.converters.nir.export  # noqa: F401
    import ilif_deploy.converters.onnx.export  # noqa: F401
    import ilif_deploy.energy.count  # noqa: F401
    import ilif_deploy.energy.static  # noqa: F401

    return dict(families.BACKENDS)


def cell(feature: str, backend: str, graph=None) -> Tuple[str, str]:
    """``(verdict, detail)`` of one cell: "exact" or "refused" are the good verdicts; "SILENT" (a refused
    feature ran), "DIFFERS" (a supported one computed something else), "REFUSED" (a supported one was refused)
    and "UNNAMED" (refused without naming the feature) are failures."""
    declared = families.BACKENDS[backend]
    graph = graph if graph is not None else example(feature)
    supported = feature in declared.supports
    with tempfile.TemporaryDirectory() as d:
        try:
            RUNNERS[backend](graph, Path(d))
        except FeatureError as e:
            if supported:
                return "REFUSED", str(e)
            named = any(f"'{n}'" in str(e) for n in ("n0", "n1"))  # n0: the delta example's input encoder
            return ("refused", str(e)) if feature in str(e) and named else ("UNNAMED", str(e))
        except AssertionError as e:
            return ("DIFFERS" if supported else "SILENT"), str(e)
    return ("exact", "") if supported else ("SILENT", "ran although declared refused")


def matrix(progress: Callable[[str], None] = lambda _: None) -> Dict[Tuple[str, str], Tuple[str, str]]:
    """Every (feature, backend) cell."""
    backends = load_backends()
    out = {}
    for feature in families.FEATURES:
        graph = example(feature)
        for backend in backends:
            progress(f"{feature} x {backend}")
            out[feature, backend] = cell(feature, backend, graph)
    return out


#: features that change nothing against BASE (they are BASE, or a constant at inference) or change the node
UNOBSERVABLE = ("spike:>", "reset:zero", "charge:lam", "learned_decay", "synaptic_current", "recurrence")


def base_twin(graph):
    """``graph`` with its neuron layers set back to BASE: an example whose spikes equal its twin's does not
    exercise its feature."""
    g = N.Graph(nodes=dict(graph.nodes), edges=list(graph.edges), metadata=dict(graph.metadata))
    for name in ("n1", "n2"):
        g.nodes[name] = dataclasses.replace(g.nodes[name], params=ILIFParams(**BASE))
    return g
