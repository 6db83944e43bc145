"""Shared fixtures: the test data in the repository, the graph zoo (each model traced once per
session), and the ``slow`` marker (long Lava runs: skipped locally, run in CI (``CI`` set) or with
``--runslow``)."""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # tests/zoo.py

import zoo  # noqa: E402

ROOT = TESTS.parent
GOLDEN = TESTS / "data" / "ilif_reference_steps.npz"
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


def make_authors_checkpoint(path: Path, arch: str = "spiking_resnet18", seed: int = 0, num_classes: int = 10,
                            in_channels: int = 3, frames=(4, 8, 32), **build_kwargs) -> Path:
    """Write a checkpoint of ``arch`` as the authors' train.py saves it (``{'net': state_dict, 'optimizer',
    'lr_scheduler', 'epoch', 'max_test_acc'}``) with random weights and BN statistics calibrated on ``frames`` =
    (T, batch, size) random inputs so that every neuron layer has realistic activity (~30 % firing).  The module
    and key names are the authors' own; ``build_kwargs`` (``neuron="plif"``, ``in_size=``) go to the builder."""
    from ilif_deploy.architectures import build

    torch.manual_seed(seed)
    model = build(arch, num_classes=num_classes, in_channels=in_channels, **build_kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
            torch.nn.init.uniform_(m.weight, 0.8, 1.5)
            torch.nn.init.normal_(m.bias, 0.4, 0.3)
    model.train()
    T, B, size = frames
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(T, B, in_channels, size, size))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=200)
    torch.save({"net": model.state_dict(), "optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(),
                "epoch": 0, "max_test_acc": 0.0}, path)
    return path


def make_authors_resnet18(path: Path, seed: int = 0, num_classes: int = 10) -> Path:
    return make_authors_checkpoint(path, "spiking_resnet18", seed, num_classes)


@pytest.fixture(scope="session")
def authors_resnet18_path(tmp_path_factory) -> Path:
    return make_authors_resnet18(tmp_path_factory.mktemp("authors") / "resnet18_ckpt.pth")


@pytest.fixture(scope="session")
def authors_vgg11_path(tmp_path_factory) -> Path:
    """The authors' DVS-CIFAR10 VGG-11 layout (2 input channels, 10 classes), random weights."""
    return make_authors_checkpoint(tmp_path_factory.mktemp("authors") / "vgg11_ckpt.pth", "spiking_vgg11_bn",
                                   in_channels=2, frames=(4, 4, 48))


@pytest.fixture(scope="session")
def lava():
    """Lava importable (scripts/setup.sh installs it); without it: skipped locally, a failure in CI."""
    from ilif_deploy.converters.lava import LavaUnavailable, require_lava

    try:
        require_lava()
    except LavaUnavailable as e:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(str(e))


@pytest.fixture(scope="session")
def spikingjelly():
    """SpikingJelly 2.0's activation_based API (scripts/setup.sh --test installs it); without it: skipped locally, a
    failure in CI."""
    try:
        from spikingjelly.activation_based import functional, layer, neuron
    except ImportError as e:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"SpikingJelly 2.0 is not installed ({e})")
    return neuron, layer, functional


#: SpikingJelly 0.0.0.0.12 (the authors' clock_driven API), installed apart by scripts/setup.sh --test
SPIKINGJELLY_012 = ROOT / ".venv" / "spikingjelly-0.0.0.0.12"


@pytest.fixture(scope="session")
def netx(lava):
    """lava-dl's netx module (scripts/setup.sh installs lava-dl); without it: skipped locally, a failure in CI."""
    from ilif_deploy.converters.lava.compat import LavaUnavailable, require_netx

    try:
        return require_netx()
    except LavaUnavailable as e:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(str(e))


@pytest.fixture(scope="session")
def interop() -> Path:
    """../shared/interop: files published by other projects (not part of this repository). Tests that read
    them skip when it is absent (a clean clone on its own); nothing of ours is hidden by that skip."""
    folder = ROOT.parent / "shared" / "interop"
    if not folder.is_dir():
        pytest.skip(f"the interop corpus {folder} is not beside this checkout")
    return folder


@pytest.fixture(scope="session")
def golden():
    return np.load(GOLDEN)


@pytest.fixture(scope="session")
def digits_ilif_path() -> Path:
    return EXAMPLE_MODELS / "digits_ilif.pt"


@pytest.fixture(scope="session")
def digits_lif_path() -> Path:
    return EXAMPLE_MODELS / "digits_lif.pt"


@pytest.fixture(scope="session")
def digits_test():
    """scikit-learn's digits test split: x [450, 1, 8, 8] float32, y [450]."""
    from ilif_deploy.data import digits

    return digits("test")


def _traced(path, shape=(1, 8, 8), T=4, **kw):
    import ilif_deploy

    return ilif_deploy.trace(ilif_deploy.load_model(path, **kw), shape, T)


@pytest.fixture(scope="session")
def _graphs(digits_ilif_path, digits_lif_path, authors_resnet18_path):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = {
                "digits_ilif": lambda: _traced(digits_ilif_path),
                "digits_lif": lambda: _traced(digits_lif_path),
                "resnet18": lambda: _traced(authors_resnet18_path, (3, 32, 32), 2, arch="spiking_resnet18",
                                            num_classes=10),
                "toy_resnet": zoo.toy_resnet,
                "maxpool_net": zoo.maxpool_net,
                "recurrent_net": zoo.recurrent_net,
            }[name]()
        return cache[name]

    return get


@pytest.fixture
def graph_of(_graphs):
    """``graph_of(name)``: a private copy of a zoo graph (``digits_ilif``, ``digits_lif``, ``resnet18``
    (authors' layout, random weights, T = 2), ``toy_resnet``, ``maxpool_net``, ``recurrent_net``), traced once per
    session."""
    return lambda name: copy.deepcopy(_graphs(name))


@pytest.fixture(scope="session")
def digits_ilif_graph(_graphs):
    """The traced digits ILIF model, shared: do not modify (use ``graph_of`` for a copy)."""
    return _graphs("digits_ilif")


@pytest.fixture(scope="session")
def digits_lif_graph(_graphs):
    return _graphs("digits_lif")
