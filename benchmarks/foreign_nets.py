"""Networks written with other tools' modules, for the equality scripts (judges_equality.py with SpikingJelly 2.0,
neurobench_equality.py with snntorch): one ResNet-18 and one digits-net recipe, the tool's layers and neurons passed
in, so both scripts measure the same architectures."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


class Block(nn.Module):
    """A ResNet basic block: conv-BN-neuron, conv-BN, + shortcut (1x1 conv-BN where the shape changes), neuron."""

    def __init__(self, cin: int, cout: int, stride: int, layer, neuron: Callable[[], nn.Module]):
        super().__init__()
        self.conv1, self.bn1 = layer.Conv2d(cin, cout, 3, stride, 1, bias=False), layer.BatchNorm2d(cout)
        self.sn1 = neuron()
        self.conv2, self.bn2 = layer.Conv2d(cout, cout, 3, 1, 1, bias=False), layer.BatchNorm2d(cout)
        self.down = (nn.Sequential(layer.Conv2d(cin, cout, 1, stride, bias=False), layer.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else None)
        self.sn2 = neuron()

    def forward(self, x):
        out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
        return self.sn2(out + (x if self.down is None else self.down(x)))


def resnet18(layer, neuron: Callable[[], nn.Module], calibrate: Callable[[nn.Module], None]) -> nn.Module:
    """ResNet-18 with a CIFAR stem (3x3 conv, no max pool) of ``layer``'s modules (``torch.nn`` or SpikingJelly's
    ``layer``) and ``neuron()`` neurons; random weights (seed 0), BatchNorm set from the data's own statistics
    (``calibrate(net)`` runs one forward in train mode, momentum 1) and shifted by 0.8 so that every layer fires."""
    torch.manual_seed(0)
    blocks, cin = [], 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        blocks += [Block(cin, cout, stride, layer, neuron), Block(cout, cout, 1, layer, neuron)]
        cin = cout
    net = nn.Sequential(layer.Conv2d(3, 64, 3, 1, 1, bias=False), layer.BatchNorm2d(64), neuron(), *blocks,
                        layer.AdaptiveAvgPool2d((1, 1)), layer.Flatten(), layer.Linear(512, 10))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
            nn.init.constant_(m.bias, 0.8)
    net.train()
    with torch.no_grad():
        calibrate(net)
    return net.eval()


def with_digits_weights(net: nn.Sequential, where: dict) -> nn.Sequential:
    """``net`` with the bundled LIF digits net's weights: ``where`` maps a position in ``net`` to the digits net's
    module name (conv1, bn1, conv2, bn2, fc)."""
    import ilif_deploy as I

    src = I.load_model(ROOT / "examples" / "models" / "digits_lif.pt")
    for i, name in where.items():
        net[i].load_state_dict(getattr(src, name).state_dict())
    return net.eval()
