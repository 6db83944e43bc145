"""The paper's architectures (under the authors' state_dict key names) and the digits example net.

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
from .neurons import ILIF, IPLIF, LIF

NEURON_KINDS = {"ilif": ILIF, "lif": LIF, "iplif": IPLIF}
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
    """A neuron layer by kind ("ilif", "lif", "iplif") with its keyword arguments (``tau`` is the
    initial tau of the learnable IPLIF)."""
    if neuron not in NEURON_KINDS:
        raise UserError(f"unknown neuron kind {neuron!r}; known: {', '.join(NEURON_KINDS)}")
    if neuron == "iplif" and "tau" in neuron_kwargs:
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


# --------------------------------------------------------------------------- ResNet-18
class PreActBlock(nn.Module):
    """Pre-activation block: the shortcut adds the block's input *spikes* x (identity or conv1x1+bias).
    Module names as in the authors' code (``relu1``/``relu2`` are the neuron layers)."""

    def __init__(self, in_planes: int, planes: int, stride: int, neuron: Callable[[], nn.Module], dropout: float):
        super().__init__()
        self.bn1 = L.BatchNorm2d(in_planes)
        self.conv1 = L.Conv2d(in_planes, planes, 3, stride, 1, bias=True)
        self.bn2 = L.BatchNorm2d(planes)
        self.dropout = L.Dropout(dropout)
        self.conv2 = L.Conv2d(planes, planes, 3, 1, 1, bias=True)
        if stride != 1 or in_planes != planes:
            self.shortcut = L.Conv2d(in_planes, planes, 1, stride, 0, bias=True)
        else:
            self.shortcut = nn.Identity()
        self.relu1 = neuron()
        self.relu2 = neuron()

    def forward(self, x):
        x = self.relu1(self.bn1(x))
        out = self.conv1(x)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + self.shortcut(x)


class SpikingResNet18(nn.Module):
    """Pre-activation spiking ResNet-18 for 32x32 inputs (CIFAR), module names and state_dict keys as
    in the authors' code; ``in_channels=2`` is their DVS variant."""

    def __init__(self, num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                 dropout: float = 0.0, in_channels: int = 3):
        super().__init__()
        factory = _Neurons(neuron, neuron_kwargs)
        self.conv1 = L.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        in_planes = 64
        for i, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            blocks = [PreActBlock(in_planes, planes, stride, factory, dropout),
                      PreActBlock(planes, planes, 1, factory, dropout)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            in_planes = planes
        self.bn1 = L.BatchNorm2d(512)
        self.pool = L.AvgPool2d(4)
        self.flat = L.Flatten()
        self.drop = L.Dropout(dropout)
        self.linear = nn.Linear(512, num_classes)
        self.relu1 = factory()

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.pool(self.relu1(self.bn1(out)))
        return self.linear(self.drop(self.flat(out)))


@register_arch("spiking_resnet18", input_shape=(3, 32, 32), timesteps=4)
def spiking_resnet18(num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                     dropout: float = 0.0, in_channels: int = 3) -> nn.Module:
    return SpikingResNet18(num_classes, neuron, neuron_kwargs, dropout, in_channels)


# --------------------------------------------------------------------------- VGG-11 (DVS)
VGG11_CFG = [[64, "M"], [128, "M"], [256, 256, "M"], [512, 512, "M"], [512, 512, "M"]]


class SpikingVGG11BN(nn.Module):
    """Spiking VGG-11 with BN for event data, as the authors build it: stages ``layer1``..``layer5``, each
    a Sequential of Conv3x3(bias) -> BN -> neuron -> dropout (once or twice) closed by AvgPool2d(2, 2);
    then AdaptiveAvgPool2d((7, 7)) and ``classifier = Sequential(Flatten, Linear(25088, classes))``, so
    the state_dict keys are ``layer3.4.weight``, ``classifier.1.weight``, ..."""

    def __init__(self, num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                 dropout: float = 0.0, in_channels: int = 2):
        super().__init__()
        factory = _Neurons(neuron, neuron_kwargs)
        c = in_channels
        for i, stage in enumerate(VGG11_CFG, start=1):
            layers = []
            for v in stage:
                if v == "M":
                    layers.append(L.AvgPool2d(2, 2))
                else:
                    layers += [L.Conv2d(c, v, 3, 1, 1, bias=True), L.BatchNorm2d(v), factory(), L.Dropout(dropout)]
                    c = v
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.avgpool = L.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(L.Flatten(), nn.Linear(512 * 7 * 7, num_classes))

    def forward(self, x):
        out = self.layer5(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        return self.classifier(self.avgpool(out))


@register_arch("spiking_vgg11_bn", input_shape=(2, 48, 48), timesteps=10, encoding="sequence")
def spiking_vgg11_bn(num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                     dropout: float = 0.0, in_channels: int = 2) -> nn.Module:
    return SpikingVGG11BN(num_classes, neuron, neuron_kwargs, dropout, in_channels)


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
