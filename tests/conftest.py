"""Shared fixtures.  Slow tests (long Lava runs) are skipped locally and run in CI
(environment variable CI set) or with ``--runslow``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden" / "ilif_reference_steps.npz"
EXAMPLE_MODELS = ROOT / "examples" / "models"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow (CI runs them always)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="slow: runs in CI, or locally with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def make_authors_resnet18(path: Path, seed: int = 0, num_classes: int = 10) -> Path:
    """Write an authors'-format checkpoint ``{'net': state_dict}`` of spiking_resnet18 with random
    weights and BN statistics that give every neuron layer realistic activity (~30 % firing)."""
    from ilif_deploy.architectures import build

    torch.manual_seed(seed)
    model = build("spiking_resnet18", num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
            torch.nn.init.uniform_(m.weight, 0.8, 1.5)
            torch.nn.init.normal_(m.bias, 0.4, 0.3)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, 8, 3, 32, 32))
    torch.save({"net": model.state_dict(), "acc": 0.0, "epoch": 0}, path)
    return path


@pytest.fixture(scope="session")
def authors_resnet18_path(tmp_path_factory) -> Path:
    return make_authors_resnet18(tmp_path_factory.mktemp("authors") / "resnet18_ckpt.pth")


@pytest.fixture(scope="session")
def golden():
    if not GOLDEN.exists():
        pytest.fail(f"golden vectors not found at {GOLDEN} (shared/ must sit beside the checkout)")
    return np.load(GOLDEN)


@pytest.fixture(scope="session")
def digits_ilif_path() -> Path:
    return EXAMPLE_MODELS / "digits_ilif.pt"


@pytest.fixture(scope="session")
def digits_lif_path() -> Path:
    return EXAMPLE_MODELS / "digits_lif.pt"
