"""Every zoo graph through every target, compared with the reference runtime on the same inputs.

ir and nir must come back exactly (same outputs and spikes); onnxruntime must reproduce every spike
(logits within 1e-5); Lava's float models every spike of the runtime in Lava's arithmetic (float64
synapses).  A pair a target cannot express must be refused by name, writing nothing.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ilif_deploy import ir as N
from ilif_deploy.converters import TARGETS, get_exporter, open_graph
from ilif_deploy.converters.netx import NetxError
from ilif_deploy.families import FeatureError
from ilif_deploy.converters.nir import NIRExportError
from ilif_deploy.runtime import run
from zoo import random_frames

GRAPHS = ["digits_ilif", "digits_lif", "toy_resnet", "maxpool_net", "recurrent_net", "resnet18"]
#: (graph, target) pairs the target cannot express: the error and what it must say
REFUSED = {("maxpool_net", "nir"): (NIRExportError, "'mp'.*NIR has no max pooling"),
           # netx writes Linear/Conv2d -> [current] -> hard-reset LIF layers (tests/test_netx_export.py); each zoo
           # graph holds a neuron or a bias netx has no form for, named in the refusal
           **{(g, "netx"): (NetxError if g == "recurrent_net" else FeatureError, message) for g, message in (
               ("digits_ilif", r"netx: layer 'neuron1' \(ilif\) uses ciu"),
               ("digits_lif", r"netx: layer 'neuron1' \(lif\) uses reset:subtract"),
               ("toy_resnet", r"layer 'a' \(ilif\) uses ciu"), ("maxpool_net", r"layer 'a' \(ilif\) uses ciu"),
               ("recurrent_net", "'rec': a bias into its decaying current"),
               ("resnet18", r"layer 'layer1\.0\.relu1' \(ilif\) uses ciu"))}}
SLOW = {("resnet18", "lava")}  # one sample takes ~25 s on Lava's CPU backend
CASES = [pytest.param(g, t, marks=[pytest.mark.slow] if (g, t) in SLOW else [], id=f"{g}-{t}")
         for g in GRAPHS for t in TARGETS]


def _inputs(name, graph, digits_test):
    if name.startswith("digits"):
        return digits_test[0][:16]
    return random_frames(graph, 1 if name == "resnet18" else 4)


@pytest.mark.parametrize("name, target", CASES)
def test_target_agrees_with_runtime(name, target, graph_of, digits_test, tmp_path, request):
    g = graph_of(name)
    x = _inputs(name, g, digits_test)
    path = tmp_path / f"{name}{TARGETS[target].suffix}"
    neurons = [n.name for n in g.nodes.values() if isinstance(n, N.SPIKING)]
    ref, rec = run(g, x, record=neurons)
    rates = [float(rec[k].mean()) for k in neurons]
    assert min(rates) > 0.02 and max(rates) < 0.9, rates  # every layer active: the comparison means something
    if (name, target) in REFUSED:
        error, message = REFUSED[name, target]
        with pytest.raises(error, match=message):
            get_exporter(target)(g, path)
        assert list(tmp_path.iterdir()) == []
        return
    if target == "lava":
        request.getfixturevalue("lava")
    get_exporter(target)(g, path)
    if target in ("ir", "nir"):
        back = open_graph(path)
        out, rec_back = run(back, x, record=neurons)
        assert torch.equal(out, ref)
        assert all(torch.equal(rec_back[k], rec[k]) for k in neurons)
    elif target == "onnx":
        from ilif_deploy.converters.onnx import compare_with_runtime

        agreement = compare_with_runtime(g, path, x)
        assert agreement.total_flips == 0, agreement.spike_flips
        assert agreement.max_abs_logit_diff <= 1e-5 and agreement.prediction_agreement == 1.0
    else:
        from ilif_deploy.converters.lava import simulate

        agreement = simulate(path, x=x, mode="float", progress=False)
        assert set(neurons) <= set(agreement.spike_agreement)  # (max-pools of spikes are Lava layers too)
        assert set(agreement.spike_agreement.values()) == {1.0} and agreement.prediction_agreement == 1.0
        assert np.isclose(agreement.firing_rate[neurons[0]], rates[0])
