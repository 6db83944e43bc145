"""The architecture registry, the neuron layers a network is built with, and the digits example net.

The authors' ten architectures (under their state_dict key names) are in :mod:`ilif_deploy.paper_models`, which
registers them when ``ilif_deploy`` is imported.

All models are multi-step: ``forward(x)`` takes ``[T, B, ...]`` and returns per-step outputs
``[T, B, classes]``; neuron state is reset on every call (neurons keep no state between calls).
The authors' evaluation reads out ``logits = output.sum(0)`` and predicts ``argmax``.
"""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Callable, Dict, Optional

from torch import nn

from . import layers as L
from .errors import UserError
from .neurons import ILIF, IPLIF, LIF, PLIF, ReLU

#: the neuron layers an architecture can be built with (``--neuron``): the authors' ``-neuron_model`` ILIF, LIF,
#: PLIF and relu (their ANN baseline, run at T = 1), and IPLIF (ILIF with PLIF's learned decay, paper Table 3)
NEURON_KINDS = {"ilif": ILIF, "lif": LIF, "plif": PLIF, "iplif": IPLIF, "relu": ReLU}
ARCHITECTURES: Dict[str, Callable[..., nn.Module]] = {}
#: default run settings per architecture (input_shape per sample and step, timesteps, encoding)
DEFAULT_SETTINGS: Dict[str, dict] = {}
#: packages declare their own architectures here (``[project.entry-points."ilif_deploy.architectures"]``,
#: ``name = "package.module"``: importing the module registers them with :func:`register_arch`)
ENTRY_POINT_GROUP = "ilif_deploy.architectures"


def register_arch(name: str, input_shape, timesteps: int, encoding: str = "direct"):
    """Decorator: make a builder ``fn(**kwargs) -> nn.Module`` loadable by name from model files."""
    def deco(fn):
        ARCHITECTURES[name] = fn
        DEFAULT_SETTINGS[name] = {"input_shape": list(input_shape), "timesteps": timesteps, "encoding": encoding}
        return fn
    return deco


def load_arch_module(module: str) -> None:
    """Import ``module`` (the user's own code, e.g. ``--arch-module mypkg.nets``) so that its
    :func:`register_arch` calls run."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"--arch-module {module}: cannot import it ({e})") from None


def find_arch(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``, looking in the installed packages' entry points
    (group :data:`ENTRY_POINT_GROUP`) when it is not registered yet."""
    if name not in ARCHITECTURES:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                ep.load()
    if name not in ARCHITECTURES:
        raise UserError(f"architecture {name!r} is not registered here (known: {', '.join(sorted(ARCHITECTURES))}); "
                        f"register yours with ilif_deploy.register_arch in a module given with --arch-module, or "
                        f"in an installed package's '{ENTRY_POINT_GROUP}' entry point")
    return ARCHITECTURES[name]


def build(name: str, **kwargs) -> nn.Module:
    """Build architecture ``name``; the model remembers ``arch_spec`` so :func:`save` can write it."""
    builder = find_arch(name)
    try:
        model = builder(**kwargs)
    except TypeError as e:  # an argument the builder does not take
        raise UserError(f"architecture {name!r}: {e}") from None
    model.arch_spec = {"arch": name, "kwargs": dict(kwargs)}
    return model


def make_neuron(neuron: str = "ilif", **neuron_kwargs) -> nn.Module:
    """A neuron layer by kind (a key of :data:`NEURON_KINDS`) with its keyword arguments (``tau`` is the
    initial tau of the learnable PLIF/IPLIF)."""
    if neuron not in NEURON_KINDS:
        raise UserError(f"unknown neuron kind {neuron!r}; known: {', '.join(NEURON_KINDS)}")
    if neuron in ("plif", "iplif") and "tau" in neuron_kwargs:
        neuron_kwargs["init_tau"] = neuron_kwargs.pop("tau")
    try:
        return NEURON_KINDS[neuron](**neuron_kwargs)
    except TypeError as e:
        bad = str(e).rsplit("argument ", 1)[-1]
        takes = ", ".join(inspect.signature(NEURON_KINDS[neuron]).parameters)
        raise UserError(f"neuron kind {neuron!r} does not take {bad} (it takes {takes})") from None


class _Neurons:
    """Builds the neuron layers of one network, all with the same kind and settings."""

    def __init__(self, neuron: str, neuron_kwargs: Optional[dict]):
        self.kind, self.kwargs = neuron, dict(neuron_kwargs or {})
        make_neuron(self.kind, **dict(self.kwargs))  # settings checked once, before any layer is built

    def __call__(self) -> nn.Module:
        return make_neuron(self.kind, **dict(self.kwargs))


# --------------------------------------------------------------------------- digits example
class DigitsConvNet(nn.Module):
    """Small conv SNN for scikit-learn's 8x8 digits (direct encoding of the analog image).

    conv3x3(1->c1)-BN-neuron -> conv3x3(c1->c2)-BN-neuron -> AvgPool2d(2) -> Flatten -> Linear(c2*16, 10)
    """

    def __init__(self, num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                 channels=(16, 32)):
        super().__init__()
        factory = _Neurons(neuron, neuron_kwargs)
        c1, c2 = channels
        self.conv1 = L.Conv2d(1, c1, 3, 1, 1, bias=False)
        self.bn1 = L.BatchNorm2d(c1)
        self.neuron1 = factory()
        self.conv2 = L.Conv2d(c1, c2, 3, 1, 1, bias=False)
        self.bn2 = L.BatchNorm2d(c2)
        self.neuron2 = factory()
        self.pool = L.AvgPool2d(2)
        self.flatten = L.Flatten()
        self.fc = nn.Linear(c2 * 16, num_classes)

    def forward(self, x):
        x = self.neuron1(self.bn1(self.conv1(x)))
        x = self.neuron2(self.bn2(self.conv2(x)))
        return self.fc(self.flatten(self.pool(x)))


@register_arch("digits_convnet", input_shape=(1, 8, 8), timesteps=4)
def digits_convnet(num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                   channels=(16, 32)) -> nn.Module:
    return DigitsConvNet(num_classes, neuron, neuron_kwargs, tuple(channels))

