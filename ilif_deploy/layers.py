"""Multi-step versions of torch's stateless layers: they take ``[T, B, ...]``.

They subclass the torch layers, so state_dict keys are unchanged (the authors' checkpoints
load into them) and the tracer recognises them as the plain layer they extend.  Time and batch
are merged for the call (``[T*B, ...]``) and split again afterwards.
"""
from __future__ import annotations

import torch
from torch import nn


class _MultiStep:
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.dim() < 3:
            raise ValueError(f"{type(self).__name__} expects [T, B, ...], got shape {tuple(x.shape)}")
        y = super().forward(x.flatten(0, 1))  # type: ignore[misc]
        return y.unflatten(0, x.shape[:2])


class Conv2d(_MultiStep, nn.Conv2d):
    """``nn.Conv2d`` over ``[T, B, C, H, W]``."""


class BatchNorm2d(_MultiStep, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over ``[T, B, C, H, W]`` (statistics over T, B, H, W while training)."""


class BatchNorm1d(_MultiStep, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over ``[T, B, F]``."""


class AvgPool2d(_MultiStep, nn.AvgPool2d):
    """``nn.AvgPool2d`` over ``[T, B, C, H, W]``."""


class MaxPool2d(_MultiStep, nn.MaxPool2d):
    """``nn.MaxPool2d`` over ``[T, B, C, H, W]``."""


class AdaptiveAvgPool2d(_MultiStep, nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` over ``[T, B, C, H, W]``."""


class Dropout(nn.Dropout):
    """Dropout over ``[T, B, ...]`` with one mask per sample for all T steps, as the authors'
    (SpikingJelly's ``layer.Dropout``): a neuron dropped at one step is dropped at every step.
    Identity in eval mode (the tracer drops it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x[0]).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * keep


class Flatten(nn.Flatten):
    """Flatten each sample of ``[T, B, ...]`` to ``[T, B, F]``."""

    def __init__(self):
        super().__init__(start_dim=2, end_dim=-1)
