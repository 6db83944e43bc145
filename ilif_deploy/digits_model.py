"""The digits example net (the bundled ``example:digits_ilif`` / ``example:digits_lif`` models)."""
from __future__ import annotations

from typing import Optional

from torch import nn

from . import layers as L
from .architectures import _Neurons, register_arch


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
