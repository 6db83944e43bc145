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
from ilif_deploy.errors import UserError

#: linear pools that can be folded into the following weight layer
LINEAR_POOLS = (N.AvgPool2d, N.SumPool2d, N.AdaptiveAvgPool2d)
WEIGHT_LAYERS = (N.Conv2d, N.Linear)


def _adaptive_bins(size: int, out: int) -> torch.Tensor:
    # torch's adaptive pooling bin [floor(o*size/out), ceil((o+1)*size/out))
    return torch.tensor([-(-((o + 1) * size) // out) - (o * size) // out for o in range(out)], dtype=torch.float64)


def _connections(node: N.Node, dtype, nonzero: bool) -> torch.Tensor:
    if nonzero:
        return torch.as_tensor(np.asarray(node.weight) != 0, dtype=dtype)
    return torch.ones(node.weight.shape, dtype=dtype)


def structural(node: N.Node, y: torch.Tensor, nonzero: bool = False) -> torch.Tensor:
    """Apply ``node`` to ``y`` ``[B, *shape]`` with all weights 1 and no bias (connectivity only); with
    ``nonzero``, a conv/linear weight that is exactly 0 becomes 0 (no synapse)."""
    if isinstance(node, N.Conv2d):
        w = _connections(node, y.dtype, nonzero)
        return F.conv2d(y, w, None, node.stride, node.padding, node.dilation, node.groups)
    if isinstance(node, N.Linear):
        return F.linear(y, _connections(node, y.dtype, nonzero))
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


def coverage_1d(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> np.ndarray:
    """For each of ``size`` input positions along one axis, how many (output position, kernel tap)
    pairs read it: the 1-D fan-out of a sliding window, borders and padding included."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    cov = np.zeros(size)
    for o in range(max(out, 0)):  # per output position the taps that land inside: O(out), not O(kernel)
        start = o * stride - padding  # input position of tap 0
        k_lo = -(start // dilation) if start < 0 else 0  # the first tap at or after position 0
        k_hi = min(kernel - 1, (size - 1 - start) // dilation)
        if k_hi >= k_lo:
            cov[start + k_lo * dilation:start + k_hi * dilation + 1:dilation] += 1
    return cov


def _window_fanout(node: N.Node, in_shape: Sequence[int]) -> np.ndarray:
    """Fan-out of a conv or pool: separable, ``(channels reached) x cov_h[y] x cov_w[x]``."""
    C, H, W = in_shape
    if isinstance(node, N.Conv2d):
        kh, kw = node.weight.shape[2:]
        per_channel = node.weight.shape[0] // node.groups  # output channels of the input channel's group
        stride, padding, dilation = node.stride, node.padding, node.dilation
    else:
        (kh, kw), per_channel = node.kernel, 1
        stride, padding, dilation = node.stride, node.padding, getattr(node, "dilation", (1, 1))
    ch = coverage_1d(H, kh, stride[0], padding[0], dilation[0])
    cw = coverage_1d(W, kw, stride[1], padding[1], dilation[1])
    return np.broadcast_to(per_channel * np.outer(ch, cw), (C, H, W)).copy()


def fanout_map(in_shape: Sequence[int], chain: Sequence[N.Node]) -> np.ndarray:
    """Fan-out (number of synaptic paths to the chain's outputs) of every input position.

    Args:
        in_shape: per-sample shape of the source feeding ``chain[0]``.
        chain: nodes applied in order (e.g. ``[pool, flatten, linear]`` or ``[conv]``).
    Returns:
        float64 array of ``in_shape`` with integer values.
    """
    window = (N.Conv2d, N.AvgPool2d, N.SumPool2d, N.MaxPool2d)
    core = [c for c in chain if not isinstance(c, N.Flatten)]
    # Fast exact paths for the common shapes (a conv/pool alone, or [pool, flatten,] linear);
    # everything else goes through autograd.  tests/test_energy.py checks both against brute force.
    if len(core) == 1 and isinstance(core[0], window) and len(in_shape) == 3:
        return _window_fanout(core[0], in_shape)
    if isinstance(core[-1], N.Linear):
        # A linear layer is all-to-all, so a position that reaches it at all (through any pools)
        # has exactly one synapse to each output of the folded weight matrix: counting paths
        # instead would multiply by the number of overlapping windows (e.g. x49 for the
        # adaptive 1x1 -> 7x7 pool before spiking_vgg11_bn's classifier).
        outs = float(core[-1].weight.shape[0])
        if len(core) == 1:
            return np.full(tuple(in_shape), outs)
        if len(core) == 2 and isinstance(core[0], window) and len(in_shape) == 3:
            return (_window_fanout(core[0], in_shape) > 0) * outs
        prefix = [c for c in chain if c is not core[-1]]
        return (fanout_map_autograd(in_shape, prefix) > 0) * outs
    return fanout_map_autograd(in_shape, chain)


def nonzero_fanout_map(in_shape: Sequence[int], chain: Sequence[N.Node]) -> np.ndarray:
    """:func:`fanout_map` counting only synapses whose weight is non-zero (NeuroBench's rule: a pruned
    weight costs no operation).  ``chain`` is one conv/linear, optionally after Flatten nodes; a
    fused pool in front of it has no per-synapse weight to test (use ``pooling=separate``)."""
    core = [c for c in chain if not isinstance(c, N.Flatten)]
    if len(core) != 1 or not isinstance(core[0], WEIGHT_LAYERS):
        raise UserError(f"zero_weights=skip counts the synapses of one weight layer; '{chain[-1].name}' is reached "
                        "through a pool folded into it: add -c pooling=separate")
    return fanout_map_autograd(in_shape, chain, nonzero=True)


def fanout_map_autograd(in_shape: Sequence[int], chain: Sequence[N.Node], nonzero: bool = False) -> np.ndarray:
    """:func:`fanout_map` for any chain: gradient of the summed all-ones output w.r.t. the input (``nonzero``:
    see :func:`structural`)."""
    x = torch.zeros(1, *in_shape, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = x
        for node in chain:
            y = structural(node, y, nonzero)
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
