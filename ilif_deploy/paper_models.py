"""The ten architectures the authors' ``train.py -model`` trains (github.com/KaiSUN1/ILIF), under their module and
state_dict key names, so their checkpoints load strictly:

- ``spiking_resnet{18,34}`` (``PreActBlock``) and ``spiking_resnet{50,101,152}`` (``PreActBottleneck``, expansion 4,
  three neurons per block, a 2048-wide head) from models/spiking_resnet.py;
- ``spiking_vgg{11,13,16,19}_bn`` from models/spiking_vgg_bn.py (stages ``layer1``..``layer5``);
- ``vggsnn`` and ``snn5_noAP`` from models/vgg_model.py (``features.N.fwd.0/1``, ``features.N.act``).

Their shape quirks are kept, and refused by name where their code would fail (:meth:`check_input`, called by the
tracer before anything runs): the ResNets' ``AvgPool2d(4)`` is fixed, so they run at 32x32 (and 48x48) but not at
64x64; ``vggsnn`` hard-codes 2 input channels and sizes its classifier from the input size its builder is given
(``in_size``, train.py's ``fc_hw``); ``snn5_noAP`` hard-codes 3 channels and 32x32.  All are multi-step
(``[T, B, ...] -> [T, B, classes]``), built from this project's layers; the authors run them one step at a time
with ``functional.reset_net`` after each batch, which computes the same.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

from torch import nn

from . import layers as L
from .architectures import _Neurons, register_arch
from .errors import UserError
from .ir.nodes import _conv_out

#: the stages of the ResNets: (planes, stride)
RESNET_STAGES = [(64, 1), (128, 2), (256, 2), (512, 2)]
#: blocks per stage of each ResNet depth and its block type's expansion
RESNETS = {18: ([2, 2, 2, 2], 1), 34: ([3, 4, 6, 3], 1), 50: ([3, 4, 6, 3], 4), 101: ([3, 4, 23, 3], 4),
           152: ([3, 8, 36, 3], 4)}
#: the authors' VGG configurations: five stages of conv widths, each closed by a 2x2 average pooling ("M")
VGG_CFGS = {
    11: [[64, "M"], [128, "M"], [256, 256, "M"], [512, 512, "M"], [512, 512, "M"]],
    13: [[64, 64, "M"], [128, 128, "M"], [256, 256, "M"], [512, 512, "M"], [512, 512, "M"]],
    16: [[64, 64, "M"], [128, 128, "M"], [256, 256, 256, "M"], [512, 512, 512, "M"], [512, 512, 512, "M"]],
    19: [[64, 64, "M"], [128, 128, "M"], [256, 256, 256, 256, "M"], [512, 512, 512, 512, "M"],
         [512, 512, 512, 512, "M"]],
}
VGG11_CFG = VGG_CFGS[11]


def _size_error(arch: str, shape: Sequence[int], why: str) -> UserError:
    return UserError(f"{arch} at {'x'.join(map(str, shape))} input: {why}")


# --------------------------------------------------------------------------- ResNets
class PreActBlock(nn.Module):
    """Pre-activation basic block: the shortcut adds the block's first neuron's *spikes* (identity or
    conv1x1+bias), as the authors' code does.  ``relu1``/``relu2`` are the neuron layers."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, neuron: Callable[[], nn.Module], dropout: float):
        super().__init__()
        self.bn1 = L.BatchNorm2d(in_planes)
        self.conv1 = L.Conv2d(in_planes, planes, 3, stride, 1, bias=True)
        self.bn2 = L.BatchNorm2d(planes)
        self.dropout = L.Dropout(dropout)
        self.conv2 = L.Conv2d(planes, planes, 3, 1, 1, bias=True)
        self.shortcut = _shortcut(in_planes, planes, stride)
        self.relu1 = neuron()
        self.relu2 = neuron()

    def forward(self, x):
        x = self.relu1(self.bn1(x))
        out = self.conv1(x)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + self.shortcut(x)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (1x1 with the stride, 3x3, 1x1 to 4x the planes), three neurons ``relu1``..
    ``relu3``, dropout before ``conv3``; the shortcut adds the first neuron's spikes."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, neuron: Callable[[], nn.Module], dropout: float):
        super().__init__()
        out = planes * self.expansion
        self.bn1 = L.BatchNorm2d(in_planes)
        self.conv1 = L.Conv2d(in_planes, planes, 1, stride, 0, bias=True)
        self.bn2 = L.BatchNorm2d(planes)
        self.conv2 = L.Conv2d(planes, planes, 3, 1, 1, bias=True)
        self.bn3 = L.BatchNorm2d(planes)
        self.dropout = L.Dropout(dropout)
        self.conv3 = L.Conv2d(planes, out, 1, 1, 0, bias=True)
        self.shortcut = _shortcut(in_planes, out, stride)
        self.relu1 = neuron()
        self.relu2 = neuron()
        self.relu3 = neuron()

    def forward(self, x):
        x = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(x))))
        out = self.conv3(self.dropout(self.relu3(self.bn3(out))))
        return out + self.shortcut(x)


def _shortcut(in_planes: int, out: int, stride: int) -> nn.Module:
    if stride != 1 or in_planes != out:
        return L.Conv2d(in_planes, out, 1, stride, 0, bias=True)
    return nn.Identity()


class PreActResNet(nn.Module):
    """The authors' pre-activation spiking ResNet: conv3x3(64) -> four stages -> BN -> neuron -> AvgPool2d(4) ->
    flatten -> dropout -> Linear(512 x expansion)."""

    def __init__(self, depth: int, num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                 dropout: float = 0.0, in_channels: int = 3):
        super().__init__()
        if depth not in RESNETS:
            raise UserError(f"spiking_resnet{depth}: the authors' ResNets are {', '.join(map(str, RESNETS))}")
        blocks, expansion = RESNETS[depth]
        block = PreActBlock if expansion == 1 else PreActBottleneck
        self.arch, self.width = f"spiking_resnet{depth}", 512 * expansion
        factory = _Neurons(neuron, neuron_kwargs)
        self.conv1 = L.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        in_planes = 64
        for i, ((planes, stride), n) in enumerate(zip(RESNET_STAGES, blocks), start=1):
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(block(in_planes, planes, s, factory, dropout))
                in_planes = planes * expansion
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.bn1 = L.BatchNorm2d(self.width)
        self.pool = L.AvgPool2d(4)
        self.flat = L.Flatten()
        self.drop = L.Dropout(dropout)
        self.linear = nn.Linear(self.width, num_classes)
        self.relu1 = factory()

    def check_input(self, shape: Sequence[int]) -> None:
        """Refuse, before anything runs, an input the fixed ``AvgPool2d(4)`` does not reduce to 1x1."""
        hw = [int(s) for s in shape[1:]]
        for _ in range(3):  # layer2..layer4 halve (3x3 or 1x1 with stride 2): ceil(h / 2)
            hw = [_conv_out(s, 1, 2, 0) for s in hw]
        pooled = [(s - 4) // 4 + 1 if s >= 4 else 0 for s in hw]
        if pooled != [1, 1]:
            raise _size_error(self.arch, shape, f"its AvgPool2d(4) is fixed (the authors' code), so layer4's "
                              f"{hw[0]}x{hw[1]} leave {pooled[0]}x{pooled[1]}x{self.width} = "
                              f"{max(pooled[0], 0) * max(pooled[1], 0) * self.width} features for "
                              f"Linear({self.width}); their code fails here too. It runs at 32x32 (CIFAR) and 48x48")

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.pool(self.relu1(self.bn1(out)))
        return self.linear(self.drop(self.flat(out)))


# --------------------------------------------------------------------------- VGG-BN
class SpikingVGGBN(nn.Module):
    """The authors' spiking VGG with BN: stages ``layer1``..``layer5``, each a Sequential of Conv3x3(bias) ->
    BN -> neuron -> dropout (per conv of its cfg) closed by AvgPool2d(2, 2); then AdaptiveAvgPool2d((7, 7)) and
    ``classifier = Sequential(Flatten, Linear(25088, classes))`` (keys ``layer3.4.weight``, ``classifier.1.weight``)."""

    def __init__(self, depth: int, num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                 dropout: float = 0.0, in_channels: int = 3):
        super().__init__()
        self.arch = f"spiking_vgg{depth}_bn"
        factory = _Neurons(neuron, neuron_kwargs)
        c = in_channels
        for i, stage in enumerate(VGG_CFGS[depth], start=1):
            layers: List[nn.Module] = []
            for v in stage:
                if v == "M":
                    layers.append(L.AvgPool2d(2, 2))
                else:
                    layers += [L.Conv2d(c, v, 3, 1, 1, bias=True), L.BatchNorm2d(v), factory(), L.Dropout(dropout)]
                    c = v
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.avgpool = L.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(L.Flatten(), nn.Linear(512 * 7 * 7, num_classes))

    def check_input(self, shape: Sequence[int]) -> None:
        if min(shape[1:]) < 32:
            raise _size_error(self.arch, shape, "five 2x2 average poolings need at least 32x32")

    def forward(self, x):
        out = self.layer5(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        return self.classifier(self.avgpool(out))


# --------------------------------------------------------------------------- vggsnn, snn5_noAP
class Layer(nn.Module):
    """models/vgg_model.py's ``Layer``: ``fwd = Sequential(Conv2d(bias), BatchNorm2d)``, then the neuron ``act``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, neuron: Callable[[], nn.Module]):
        super().__init__()
        self.fwd = nn.Sequential(L.Conv2d(c_in, c_out, kernel, stride, padding), L.BatchNorm2d(c_out))
        self.act = neuron()

    def forward(self, x):
        return self.act(self.fwd(x))


def _pool() -> nn.Module:
    # the authors reuse one Sequential(AvgPool2d(2)) four times; parameter-free, so separate instances have the
    # same state_dict and give each use its own name in the graph
    return nn.Sequential(L.AvgPool2d(2))


class VGGSNN(nn.Module):
    """``vggsnn``: eight Layers (2 input channels, hard-coded) with four 2x2 poolings, then flatten -> dropout ->
    ``classifier = Linear(512 * W * W)``, W = in_size / 16 (train.py passes ``fc_hw`` = the dataset's size: 48 for
    DVSCIFAR10-pt, 128 for dvsgesture).  Its builder drops ``-drop_rate`` (passed under another keyword), so the
    dropout is 0 whatever was asked."""

    def __init__(self, num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                 dropout: float = 0.0, in_channels: int = 2, in_size: int = 48):
        super().__init__()
        if in_channels != 2:
            raise UserError(f"vggsnn hard-codes 2 input channels (event polarities), got in_channels={in_channels}")
        if not isinstance(in_size, int) or in_size < 16:
            raise UserError(f"vggsnn: in_size (train.py's fc_hw) must be an integer >= 16, got {in_size!r} (with "
                            f"-dataset DVSCIFAR10 train.py passes None and the authors' code raises TypeError)")
        self.in_size = in_size
        factory = _Neurons(neuron, neuron_kwargs)
        widths = [(2, 64), (64, 128), "M", (128, 256), (256, 256), "M", (256, 512), (512, 512), "M", (512, 512),
                  (512, 512), "M"]
        self.features = nn.Sequential(*[_pool() if w == "M" else Layer(w[0], w[1], 3, 1, 1, factory)
                                        for w in widths])
        self.side = in_size // 16
        self.flatten = L.Flatten()  # torch.flatten(x, -3) in the authors' forward; no parameters
        self.classifier = nn.Linear(512 * self.side * self.side, num_classes)
        self.drop = L.Dropout(0.0)

    def check_input(self, shape: Sequence[int]) -> None:
        if [s // 16 for s in shape[1:]] != [self.side, self.side]:
            raise _size_error("vggsnn", shape, f"its classifier was built for {self.in_size}x{self.in_size} input "
                              f"(in_size, train.py's fc_hw): 512x{self.side}x{self.side} features after four 2x2 "
                              f"poolings")

    def forward(self, x):
        return self.classifier(self.drop(self.flatten(self.features(x))))


class SNN5NoAP(nn.Module):
    """``snn5_noAP`` (the paper's Figure 2 statistics): five strided Layers without pooling (3 input channels and
    32x32 hard-coded), then flatten -> dropout -> ``classifier = Linear(256)``."""

    SPEC = [(3, 16, 3, 1), (16, 64, 5, 2), (64, 128, 5, 2), (128, 256, 5, 4), (256, 256, 3, 2)]

    def __init__(self, num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                 dropout: float = 0.0, in_channels: int = 3):
        super().__init__()
        if in_channels != 3:
            raise UserError(f"snn5_noAP hard-codes 3 input channels, got in_channels={in_channels}")
        factory = _Neurons(neuron, neuron_kwargs)
        self.features = nn.Sequential(*[Layer(i, o, k, s, 1, factory) for i, o, k, s in self.SPEC])
        self.flatten = L.Flatten()
        self.classifier = nn.Linear(256, num_classes)
        self.drop = L.Dropout(dropout)

    def check_input(self, shape: Sequence[int]) -> None:
        hw = list(shape[1:])
        for _, _, k, s in self.SPEC:
            hw = [_conv_out(v, k, s, 1) for v in hw]
        if hw != [1, 1]:
            raise _size_error("snn5_noAP", shape, f"its strided convolutions leave {hw[0]}x{hw[1]}x256 for "
                              f"Linear(256): the authors' network takes 32x32 only")

    def forward(self, x):
        return self.classifier(self.drop(self.flatten(self.features(x))))


# --------------------------------------------------------------------------- registration
def _register_resnet(depth: int) -> None:
    @register_arch(f"spiking_resnet{depth}", input_shape=(3, 32, 32), timesteps=6)
    def builder(num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                dropout: float = 0.0, in_channels: int = 3) -> nn.Module:
        return PreActResNet(depth, num_classes, neuron, neuron_kwargs, dropout, in_channels)


def _register_vgg(depth: int) -> None:
    # VGG-11 is the paper's DVS network (DVS-CIFAR10 by default); VGG-13/16/19 its CIFAR ones (Table 6)
    dvs = depth == 11
    shape, T, encoding = ((2, 48, 48), 10, "sequence") if dvs else ((3, 32, 32), 6, "direct")

    @register_arch(f"spiking_vgg{depth}_bn", input_shape=shape, timesteps=T, encoding=encoding)
    def builder(num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
                dropout: float = 0.0, in_channels: int = shape[0]) -> nn.Module:
        return SpikingVGGBN(depth, num_classes, neuron, neuron_kwargs, dropout, in_channels)


for _depth in RESNETS:
    _register_resnet(_depth)
for _depth in VGG_CFGS:
    _register_vgg(_depth)


@register_arch("vggsnn", input_shape=(2, 48, 48), timesteps=10, encoding="sequence")
def vggsnn(num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None, dropout: float = 0.0,
           in_channels: int = 2, in_size: int = 48) -> nn.Module:
    return VGGSNN(num_classes, neuron, neuron_kwargs, dropout, in_channels, in_size)


@register_arch("snn5_noAP", input_shape=(3, 32, 32), timesteps=6)
def snn5_noAP(num_classes: int = 10, neuron: str = "ilif", neuron_kwargs: Optional[dict] = None,
              dropout: float = 0.0, in_channels: int = 3) -> nn.Module:
    return SNN5NoAP(num_classes, neuron, neuron_kwargs, dropout, in_channels)


#: the architectures train.py's -model accepts, in its order
AUTHORS_ARCHITECTURES = [f"spiking_resnet{d}" for d in RESNETS] + [f"spiking_vgg{d}_bn" for d in VGG_CFGS] + [
    "vggsnn", "snn5_noAP"]
