"""Exact fan-out maps and dense (ANN) operation counts of IR nodes.

The fan-out of an input position is the number of real synapses leaving it: the gradient of the
summed output of the layer with every weight replaced by 1, taken with respect to the input.  That
one autograd pass handles borders, padding, stride, dilation and groups exactly, and, for a chain
such as ``avgpool -> flatten -> linear``, counts every path from the position to an output.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ilif_deploy import ir as N

#: linear pools that can be folded into the following weight layer
LINEAR_POOLS = (N.AvgPool2d, N.SumPool2d, N.AdaptiveAvgPool2d)
WEIGHT_LAYERS = (N.Conv2d, N.Linear)


def _adaptive_bins(size: int, out: int) -> torch.Tensor:
    # torch's adaptive pooling bin [floor(o*size/out), ceil((o+1)*size/out))
    return torch.tensor([-(-((o + 1) * size) // out) - (o * size) // out for o in range(out)], dtype=torch.float64)


def structural(node: N.Node, y: torch.Tensor) -> torch.Tensor:
    """Apply ``node`` to ``y`` ``[B, *shape]`` with all weights 1 and no bias (connectivity only)."""
    if isinstance(node, N.Conv2d):
        w = torch.ones(node.weight.shape, dtype=y.dtype)
        return F.conv2d(y, w, None, node.stride, node.padding, node.dilation, node.groups)
    if isinstance(node, N.Linear):
        return F.linear(y, torch.ones(node.weight.shape, dtype=y.dtype))
    if isinstance(node, (N.AvgPool2d, N.SumPool2d, N.MaxPool2d)):
        c = y.shape[1]
        dil = getattr(node, "dilation", (1, 1))
        w = torch.ones(c, 1, *node.kernel, dtype=y.dtype)
        return F.conv2d(y, w, None, node.stride, node.padding, dil, c)
    if isinstance(node, N.AdaptiveAvgPool2d):
        bh = _adaptive_bins(y.shape[2], node.output_size[0])
        bw = _adaptive_bins(y.shape[3], node.output_size[1])
        return F.adaptive_avg_pool2d(y, node.output_size) * (bh[:, None] * bw[None, :])
    if isinstance(node, N.Flatten):
        return y.flatten(1 + node.start_dim % (y.dim() - 1), 1 + node.end_dim % (y.dim() - 1))
    raise TypeError(f"node '{node.name}' ({node.op}) has no synaptic connectivity")


def fanout_map(in_shape: Sequence[int], chain: Sequence[N.Node]) -> np.ndarray:
    """Fan-out (number of synaptic paths to the chain's outputs) of every input position.

    Args:
        in_shape: per-sample shape of the source feeding ``chain[0]``.
        chain: nodes applied in order (e.g. ``[pool, flatten, linear]`` or ``[conv]``).
    Returns:
        float64 array of ``in_shape`` with integer values.
    """
    x = torch.zeros(1, *in_shape, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = x
        for node in chain:
            y = structural(node, y)
        y.sum().backward()
    return x.grad[0].numpy()


def dense_macs(node: N.Node, in_shape: Sequence[int], padding: str = "dense") -> float:
    """MACs of one ANN evaluation of a conv/linear (one sample, one step).

    ``padding="dense"`` counts every kernel tap at every output position (taps on zero padding
    included: the usual ANN count); ``"real"`` counts only taps on real input positions.
    """
    if isinstance(node, N.Linear):
        return float(node.weight.size)
    if isinstance(node, N.Conv2d):
        if padding == "dense":
            o, ig, kh, kw = node.weight.shape
            return float(np.prod(node.shape) * ig * kh * kw)
        return float(fanout_map(in_shape, [node]).sum())
    raise TypeError(f"node '{node.name}' ({node.op}) is not a weight layer")


def pool_window_adds(node: N.Node, in_shape: Sequence[int]) -> float:
    """Additions of one dense evaluation of a linear pool: (taps on real inputs) per output."""
    return float(fanout_map(in_shape, [node]).sum())
