"""Neuron families: every feature x every backend exact against the runtime or refused by name, every backend
declares every feature, and a new feature is refused everywhere until a backend implements it."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ilif_deploy import families
from ilif_deploy import ir as N
from ilif_deploy.families import FEATURES, Feature
from ilif_deploy.neuron_step import ILIFParams

import feature_matrix as fm


def test_every_backend_declares_every_feature_and_has_a_conformance_runner():
    backends = fm.load_backends()
    assert set(backends) == set(fm.RUNNERS), "a backend without a runner in tests/feature_matrix.py (or vice versa)"
    for name, b in backends.items():
        assert not b.undeclared(), f"{name} neither supports nor refuses {sorted(b.undeclared())}"
    assert set(fm.VARIANTS) == set(FEATURES), "every feature needs its example network in tests/feature_matrix.py"


def test_every_parameter_belongs_to_one_feature():
    owners = families.field_owners()
    assert "" not in owners.values(), f"parameters no feature declares: {[k for k, v in owners.items() if not v]}"


@pytest.mark.parametrize("feature", list(FEATURES))
def test_feature_is_exact_or_refused_by_name_in_every_backend(feature, lava):
    graph = fm.example(feature)
    assert feature in graph.nodes["n1"].features
    _, _, rec = fm._reference(graph)
    rates = [float((rec[k] > 0).float().mean()) for k in ("n1", "n2")]
    assert min(rates) > 0.05 and max(rates) < 0.99, rates  # active layers: the comparison means something
    if feature not in fm.UNOBSERVABLE:  # the example exercises its feature: without it, other spikes
        _, _, twin = fm._reference(fm.base_twin(graph))
        assert not all(np.array_equal(rec[k], twin[k]) for k in ("n1", "n2"))
    cells = {b: fm.cell(feature, b, graph) for b in fm.load_backends()}
    silent = {b: c for b, c in cells.items() if c[0] not in ("exact", "refused")}
    assert not silent, silent
    for b, (verdict, message) in cells.items():
        if verdict == "refused":  # one line naming the backend, the layer and the feature
            first = "n0" if "n0" in graph.nodes else "n1"  # the delta example's input encoder comes first
            assert message.startswith(f"{b}: layer '{first}'") and feature in message and "\n" not in message


def test_multi_spike_counts_reach_the_next_layer_as_counts():
    graph = fm.example("spike:count")
    _, _, rec = fm._reference(graph)
    assert float(rec["n1"].max()) >= 2  # several spikes in one step happen in the example


def test_a_new_feature_is_refused_everywhere_until_a_backend_declares_it(monkeypatch, lava):
    """An adaptive threshold added the way a contributor would: a parameter and its Feature.  Without a backend
    implementing it, every backend refuses it by name -- and the declaration test above would fail for each."""

    @dataclasses.dataclass(frozen=True)
    class AdaptiveParams(ILIFParams):
        theta: float = 0.0

    toy = Feature("adaptive_threshold", "the threshold rises by theta per spike", lambda v: v.params.theta != 0.0,
                  fields=("theta",), states=("threshold",))
    monkeypatch.setitem(FEATURES, toy.name, toy)
    graph = fm.example("adaptive_threshold", AdaptiveParams, {"theta": 0.25})
    assert "adaptive_threshold" in graph.nodes["n1"].features
    for name, backend in fm.load_backends().items():
        assert backend.undeclared() == {"adaptive_threshold"}
        verdict, message = fm.cell("adaptive_threshold", name, graph)
        assert verdict == "refused" and "not declared by this backend" in message, (name, verdict, message)


def test_family_names_compartments_and_costs():
    def node(**kw):
        return N.Neuron("n", (4,), params=ILIFParams(**{"lam": 0.5, "lam_u": 0.0, "lam_i": 0.0, **kw}))

    ilif = N.Neuron("n", (4,), params=ILIFParams.from_tau(1.1))
    cases = [(ilif, "ilif", 3, (3.0, 1.0, 1.0, 3.0)), (node(), "lif", 1, (1.0, 0.0, 0.0, 1.0)),
             (node(lam=1.0, multi_spike=True, v_min=-1.0), "multi-spike if", 1, (2.0, 2.0, 0.0, 1.0)),
             (node(learned_decay=True), "plif", 1, (1.0, 0.0, 0.0, 1.0)),
             (node(lam=0.0, reset="zero", compare=">"), "threshold", 1, (1.0, 0.0, 0.0, 0.0)),
             (N.RecurrentNeuron("r", (3,), params=ILIFParams(lam=0.5, lam_u=0.0, lam_i=0.0), weight=np.eye(3),
                                syn_lam=0.5), "recurrent cuba-lif", 2, (2.0, 0.0, 0.0, 1.0))]
    for n, name, comps, cost in cases:
        assert (n.family, families.compartments(n), families.update_cost(n)) == (name, comps, cost), n.family
    assert families.state_names(ilif) == ("v", "ciu", "ciu_drive", "mpiu")


def test_parameters_outside_their_domain_are_refused_whatever_the_source():
    from ilif_deploy.errors import UserError

    for kw, message in [({"lam": -0.1}, "lam = -0.1 is outside"), ({"lam": 0.5, "v_th": 0.0}, "v_th = 0 must be > 0"),
                        ({"lam": 0.5, "lam_i": 2.0}, "lam_i = 2 is outside"),
                        ({"lam": 0.5, "multi_spike": True}, "multi_spike .* no inhibitory units"),
                        ({"lam": 0.5, "reset": "subtract_next"}, "subtract_next"),
                        ({"lam": 0.5, "v_min": 2.0}, "v_min = 2 must be below v_th")]:
        with pytest.raises(UserError, match=message):
            ILIFParams(**kw)
