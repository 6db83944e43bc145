"""Counts on a model imported from NIR (or an IR .npz file) equal counts on the model traced from torch."""
from __future__ import annotations

import numpy as np
import torch

import ilif_deploy as I
from ilif_deploy import energy
from ilif_deploy.converters import nir as nir_mod
from ilif_deploy.ir.graph import Graph

COMPARED = ["acs", "macs", "spikes", "ann_macs", "firing_rate", "continuous_rate", "fanout_mean"]


def assert_same_counts(a, b):
    ra = {r.name: r for r in a.rows}
    rb = {r.name: r for r in b.rows}
    assert ra.keys() == rb.keys()
    for name in ra:
        for k in COMPARED:
            va, vb = getattr(ra[name], k), getattr(rb[name], k)
            assert va == vb or (np.isnan(va) and np.isnan(vb)), f"{name}.{k}: {va} != {vb}"
    assert a.totals["energy_pj"] == b.totals["energy_pj"] and a.ann == b.ann


def test_digits_counts_nir_equal_torch(tmp_path, digits_ilif_graph, digits_test):
    x, y = digits_test
    traced = digits_ilif_graph
    nir_mod.export_graph(traced, tmp_path / "digits.nir")
    imported = nir_mod.read_graph(tmp_path / "digits.nir")
    a = energy.profile(traced, x, y, progress=False)
    b = energy.profile(imported, x, y, progress=False)
    assert_same_counts(a, b)
    assert a.totals["acs"] > 1e5 and a.accuracy == b.accuracy


def test_resnet18_counts_nir_equal_torch(tmp_path, authors_resnet18_path):
    model = I.load_model(authors_resnet18_path, arch="spiking_resnet18", num_classes=10)
    traced = I.trace(model, (3, 32, 32), 4)
    nir_mod.export_graph(traced, tmp_path / "r18.nir")
    imported = nir_mod.read_graph(tmp_path / "r18.nir")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)).numpy()
    a = energy.profile(traced, x, progress=False, batch_size=4)
    b = energy.profile(imported, x, progress=False, batch_size=4)
    assert_same_counts(a, b)
    assert 0.05 < a.totals["firing_rate"] < 0.6  # realistic activity: the comparison means something


def test_counts_survive_ir_file_round_trip(tmp_path, digits_lif_graph, digits_test):
    x, _ = digits_test
    traced = digits_lif_graph
    traced.save(tmp_path / "g.npz")
    assert_same_counts(energy.profile(traced, x[:100], progress=False),
                       energy.profile(Graph.load(tmp_path / "g.npz"), x[:100], progress=False))
