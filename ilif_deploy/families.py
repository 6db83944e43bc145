"""Neuron families, declared once: the features a neuron layer can use, and which backends implement them.

A neuron layer's dynamics are its :class:`~ilif_deploy.neuron_step.ILIFParams` (one step function,
:func:`~ilif_deploy.neuron_step.ilif_step`, and one fixed-point step); *which* of its behaviours a layer uses is
its **feature set**, derived here and nowhere else from its parameters and node type.  Every feature belongs to a
group of alternatives (a layer has exactly one spike rule and one reset) or stands alone (an inhibitory unit, a
synaptic current, a membrane floor, ...); a feature may add state compartments, whose names live here too.

Every backend (the runtime, the file formats, NIR, ONNX, Lava float and fixed point, the torch engine, netx,
energy counting, static metrics) declares, with :func:`declare`, each feature as supported or refused with the
reason, and calls :meth:`Backend.check` where it starts.  A layer using a feature its backend does not support
is refused with one line naming the backend, the layer and the feature.  A feature a backend has not declared at
all is refused too (and tests/test_families.py fails until it is declared), so adding a feature can never make a
backend silently compute something else.

The family *name* (:func:`family`: "ilif", "plif", "lif", "if", ...) is a label derived from the features, for
reports; nothing dispatches on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, Dict, FrozenSet, Iterable, Mapping, NamedTuple, Optional, Tuple

from .errors import GraphError
from .neuron_step import ILIFParams


class FeatureError(GraphError):
    """A backend met a neuron feature it does not implement; the message names backend, layer and feature."""


@dataclass(frozen=True)
class Feature:
    """One behaviour a neuron layer may have.

    ``group``: features of one group are alternatives, a layer has exactly one of them ("spike", "reset");
    None: the feature is on or off.  ``fields``: the :class:`ILIFParams` fields that belong to it (every field
    belongs to one feature or to :data:`CORE_FIELDS`).  ``active(node)``: does the spiking node use it.
    ``states``: the state compartments it adds beside the membrane ``v`` (names as in every backend and report).
    ``cost``: the arithmetic it adds to a neuron update, as (MACs per neuron and step, ACs per neuron and step,
    MACs per spike, ACs per spike) -- what the energy report counts under ``neurons="count"``.
    """

    name: str
    doc: str
    active: Callable[[object], bool]
    group: Optional[str] = None
    fields: Tuple[str, ...] = ()
    states: Tuple[str, ...] = ()
    cost: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


class NeuronView(NamedTuple):
    """What the features are read from: a layer's name, parameters, synaptic-current decay (0: none) and
    whether it has a recurrent synapse.  :func:`view` makes one of an IR node; backends that keep layers of their
    own (Lava's NetSpec) make one of those."""

    name: str
    params: ILIFParams
    syn_lam: float = 0.0
    recurrent: bool = False


def view(node) -> NeuronView:
    """The :class:`NeuronView` of a spiking IR node (``Neuron``/``RecurrentNeuron``), or ``node`` itself."""
    if isinstance(node, NeuronView):
        return node
    recurrent = getattr(node, "op", "") == "recurrent_neuron"
    return NeuronView(node.name, node.params, float(node.syn_lam) if recurrent else 0.0, recurrent)


def _p(v: NeuronView) -> ILIFParams:
    return v.params


#: the fields every neuron has (the membrane decay and the threshold)
CORE_FIELDS = ("lam", "v_th")
#: what every neuron update costs: the membrane's decay and input, lam * m + I (1 MAC per step); the
#: threshold comparison is not counted
CORE_COST = (1.0, 0.0, 0.0, 0.0)


def _spiking(n: NeuronView) -> bool:
    """A threshold neuron (every layer but a delta encoder, whose spike rule, charge and reset are its own)."""
    return _p(n).delta is None


FEATURES: Dict[str, Feature] = {f.name: f for f in (
    Feature("spike:>=", "one spike when U >= v_th",
            lambda n: _spiking(n) and not _p(n).multi_spike and _p(n).compare == ">=", group="spike",
            fields=("compare",)),
    Feature("spike:>", "one spike when U > v_th", lambda n: _p(n).compare == ">", group="spike"),
    Feature("spike:count", "(U > 0) * trunc(U / v_th) spikes per step (multi-spike, sinabs' IAF)",
            lambda n: _p(n).multi_spike, group="spike", fields=("multi_spike",), cost=(1.0, 0.0, 0.0, 0.0)),
    # d = act(x) - v (1 AC per step), v += S (1 AC per message); the |d| >= v_th comparison is not counted
    Feature("spike:delta", "a graded message: the change of act(x) since the last one, when |change| >= v_th "
            "(lava-dl's sigma-delta Delta/SigmaDelta encoder)", lambda n: not _spiking(n), group="spike",
            fields=("delta",), cost=(0.0, 1.0, 0.0, 1.0)),
    Feature("charge:lam", "U = lam * v + I", lambda n: _spiking(n) and _p(n).charge == "lam", group="charge",
            fields=("charge",)),
    # the core MAC becomes a division or a gain, plus the subtractions around it
    Feature("charge:decay_input", "U = v + (I - (v - rest)) / tau (SpikingJelly's decay_input=True)",
            lambda n: _p(n).charge == "decay_input", group="charge", fields=("charge_tau", "charge_gain"),
            cost=(0.0, 2.0, 0.0, 0.0)),
    Feature("charge:leak", "U = v - (v - rest) / tau + I (SpikingJelly 2.0's decay_input=False)",
            lambda n: _p(n).charge == "leak", group="charge", cost=(0.0, 2.0, 0.0, 0.0)),
    Feature("reset:subtract", "soft reset: v_th taken off at the spike",
            lambda n: _spiking(n) and _p(n).reset == "subtract", group="reset", fields=("reset",),
            cost=(0.0, 0.0, 0.0, 1.0)),
    Feature("reset:subtract_next", "v_th taken off at the next step, after the decay (snntorch's Leaky)",
            lambda n: _p(n).reset == "subtract_next", group="reset", cost=(0.0, 0.0, 0.0, 1.0)),
    Feature("reset:zero", "hard reset to 0", lambda n: _p(n).reset == "zero" and _p(n).v_reset == 0.0,
            group="reset"),
    Feature("reset:to_v_reset", "hard reset to v_reset != 0", lambda n: _p(n).reset == "zero" and _p(n).v_reset != 0.0,
            group="reset", fields=("v_reset",)),
    Feature("ciu", "current inhibitory unit (ILIF)", lambda n: _p(n).ciu_enabled, fields=("lam_i", "ciu_source"),
            states=("ciu", "ciu_drive"), cost=(1.0, 1.0, 0.0, 0.0)),
    # MPIU: lam_u * (mpiu + S * mbar) (1 MAC) per step; + mbar and - sigmoid (2 ACs) and the sigmoid itself (a
    # lookup, priced as 1 MAC) per spike
    Feature("mpiu", "membrane-potential inhibitory unit (ILIF)", lambda n: _p(n).mpiu_enabled, fields=("lam_u",),
            states=("mpiu",), cost=(1.0, 0.0, 1.0, 2.0)),
    Feature("membrane_floor", "membrane floor v_min after the reset (sinabs' min_v_mem)",
            lambda n: _p(n).v_min is not None, fields=("v_min",), cost=(0.0, 2.0, 0.0, 0.0)),
    Feature("learned_decay", "a trained membrane decay (PLIF); a constant at inference",
            lambda n: _p(n).learned_decay, fields=("learned_decay",)),
    Feature("synaptic_current", "a decaying synaptic current before the membrane (CubaLIF)",
            lambda n: n.syn_lam != 0.0, states=("syn",), cost=(1.0, 0.0, 0.0, 0.0)),
    Feature("recurrence", "a recurrent synapse from the layer's own spikes of the step before",
            lambda n: n.recurrent),
)}


def features(node) -> FrozenSet[str]:
    """The features a spiking node (``Neuron``/``RecurrentNeuron``, or a :class:`NeuronView`) uses."""
    v = view(node)
    return frozenset(name for name, f in FEATURES.items() if f.active(v))


def state_names(node) -> Tuple[str, ...]:
    """The state compartments of a spiking node: the membrane ``v`` and those its features add."""
    used = features(node)
    return ("v",) + tuple(s for name, f in FEATURES.items() if name in used for s in f.states)


def compartments(node) -> int:
    """Compartments per neuron as neuromorphic hardware counts them: the membrane, each inhibitory unit and a
    synaptic current (``ciu_drive`` is the CIU's input register, not a compartment of its own)."""
    return len([s for s in state_names(node) if s != "ciu_drive"])


def update_cost(node) -> Tuple[float, float, float, float]:
    """(MACs per neuron-step, ACs per neuron-step, MACs per spike, ACs per spike) of one neuron update of
    ``node``: the core membrane update plus what each of its features adds (:attr:`Feature.cost`)."""
    used = features(node)
    total = list(CORE_COST) if "spike:delta" not in used else [0.0] * 4  # a delta encoder has no membrane decay
    for name in used:
        total = [a + b for a, b in zip(total, FEATURES[name].cost)]
    return tuple(total)


def family(node) -> str:
    """A label for reports: "ilif", "iplif", "plif", "lif", "if", "threshold", with "multi-spike " and
    "cuba-"/"recurrent " where they apply.  Derived from :func:`features`; nothing dispatches on it."""
    f, p = features(node), view(node).params
    if "spike:delta" in f:
        return "delta-relu" if p.delta == "relu" else "delta"
    core = "threshold" if p.lam == 0.0 else "if" if p.lam == 1.0 and "learned_decay" not in f else "lif"
    name = ("i" if {"ciu", "mpiu"} & f else "") + ("p" if "learned_decay" in f else "") + core
    if "synaptic_current" in f:
        name = "cuba-" + name
    if "spike:count" in f:
        name = "multi-spike " + name
    return ("recurrent " if "recurrence" in f else "") + name


def describe(node) -> str:
    """``family (feature, feature, ...)`` for messages and report notes."""
    return f"{family(node)} ({', '.join(sorted(features(node)))})"


# ----------------------------------------------------------------------------- backends
@dataclass(frozen=True)
class Backend:
    """What one backend implements: ``supports`` features, ``refuses`` the others with a reason each."""

    name: str
    supports: FrozenSet[str]
    refuses: Mapping[str, str] = field(default_factory=dict)

    def undeclared(self) -> FrozenSet[str]:
        """Features this backend has neither supported nor refused (tests/test_families.py wants none)."""
        return frozenset(FEATURES) - self.supports - frozenset(self.refuses)

    def check_node(self, node) -> None:
        """Refuse (FeatureError) a spiking node that uses a feature this backend does not support."""
        missing = sorted(features(node) - self.supports)
        if not missing:
            return
        whys = list(dict.fromkeys(self.refuses.get(f, "not declared by this backend") for f in missing))
        uses = ", ".join(f"{f} ({FEATURES[f].doc})" for f in missing)
        raise FeatureError(f"{self.name}: layer '{node.name}' ({family(node)}) uses {uses}: {'; '.join(whys)}")

    def check(self, nodes: Iterable) -> None:
        """:meth:`check_node` on every spiking node of ``nodes`` (IR nodes or :class:`NeuronView` s; nodes
        without neuron parameters are skipped)."""
        for node in nodes:
            if isinstance(getattr(node, "params", None), ILIFParams):
                self.check_node(node)

    def check_graph(self, graph) -> None:
        self.check(graph.nodes.values())


#: every declared backend by name (the conformance test walks them all)
BACKENDS: Dict[str, Backend] = {}


def declare(name: str, supports: Iterable[str], refuses: Optional[Mapping[str, str]] = None) -> Backend:
    """Declare backend ``name``: the features it implements, and those it refuses with the reason (shown to the
    user).  Names must be features of :data:`FEATURES` (a typo is caught here, when the backend is imported)."""
    supports, refuses = frozenset(supports), dict(refuses or {})
    unknown = (supports | set(refuses)) - set(FEATURES)
    if unknown:
        raise ValueError(f"backend {name!r} declares unknown feature(s) {sorted(unknown)}")
    both = supports & set(refuses)
    if both:
        raise ValueError(f"backend {name!r} both supports and refuses {sorted(both)}")
    BACKENDS[name] = Backend(name, supports, refuses)
    return BACKENDS[name]


def all_but(*refused: str) -> FrozenSet[str]:
    """Every feature except ``refused`` (for backends that implement nearly everything)."""
    return frozenset(FEATURES) - set(refused)


def field_owners() -> Dict[str, str]:
    """{params field: the feature (or "core") it belongs to}; tests check every field has exactly one."""
    owners = {f: "core" for f in CORE_FIELDS}
    for name, feat in FEATURES.items():
        for fld in feat.fields:
            owners[fld] = name
    return {f.name: owners.get(f.name, "") for f in fields(ILIFParams)}


#: the backends every part of the core declares (the runtime and the graph file read/write every feature)
RUNTIME = declare("runtime", all_but())
GRAPH_FILE = declare("graph file (.ir.npz)", all_but())
