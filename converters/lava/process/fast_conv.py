"""Faster CPU process models for Lava's own ``Conv`` process (same process, same semantics).

Why: Lava's CPU ``Conv`` models compute with ``scipy.signal.convolve2d`` once per (output, input)
channel pair in a Python loop -- one sample of a CIFAR ResNet-18 took 424 s for T = 2 here.
These models do the same convolution as one matrix product per group (im2col + BLAS, float64 /
int64), keeping Lava's layout ((W, H, C) input, (C_out, W, H, C_in) flipped kernel), its
one-step output buffer and, in fixed point, its 24-bit clamp.  They are selected with
``Loihi2SimCfg(exception_proc_model_map=...)`` (see :func:`ilif_deploy.converters.lava.network.run_config`).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils
from lava.proc.conv.models import PyConvModelFixed, PyConvModelFloat
from lava.proc.conv.process import Conv

import ilif_deploy.converters.lava.compat  # noqa: F401  (the Python 3.11 import fix, before lava.magma)


def conv_whc(x: np.ndarray, weight: np.ndarray, stride, padding, dilation, groups: int, dtype) -> np.ndarray:
    """Lava's convolution (``lava.proc.conv.utils.conv``) as im2col + matrix product.

    ``x``: (W, H, C_in); ``weight``: (C_out, kW, kH, C_in / groups), flipped like Lava's; returns (W', H', C_out).
    """
    xc = np.ascontiguousarray(np.transpose(x, (2, 1, 0)), dtype=dtype)  # (C, H, W)
    k = np.transpose(weight[:, ::-1, ::-1, :], (0, 3, 2, 1)).astype(dtype)  # (O, I/g, kH, kW), correlation
    sx, sy = int(stride[0]), int(stride[1])
    px, py = int(padding[0]), int(padding[1])
    dx, dy = int(dilation[0]), int(dilation[1])
    groups = int(groups)
    o, ig, kh, kw = k.shape
    xp = np.pad(xc, ((0, 0), (py, py), (px, px)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (dy * (kh - 1) + 1, dx * (kw - 1) + 1), axis=(1, 2))
    win = win[:, ::sy, ::sx, ::dy, ::dx]  # (C, H', W', kH, kW)
    og = o // groups
    outs = [np.tensordot(k[g * og:(g + 1) * og], win[g * ig:(g + 1) * ig], axes=([1, 2, 3], [0, 3, 4]))
            for g in range(groups)]
    out = np.concatenate(outs, axis=0) if groups > 1 else outs[0]  # (O, H', W')
    return np.transpose(out, (2, 1, 0))


class _FastConv:
    def run_spk(self) -> None:
        if self.a_buf is None:
            self.a_buf = np.zeros(self.a_out.shape)
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool)
        out = conv_whc(s_in, self.weight, self.stride, self.padding, self.dilation, self.groups[0], self._dtype)
        self.a_buf = self.clamp_precision(out.astype(self.weight.dtype))


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFastConvModelFloat(_FastConv, PyConvModelFloat):
    """Float Conv as one matrix product (float64)."""

    _dtype = np.float64


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFastConvModelFixed(_FastConv, PyConvModelFixed):
    """Fixed-point Conv as one integer matrix product (int64, then Lava's signed 24-bit clamp)."""

    _dtype = np.int64

    def clamp_precision(self, x: np.ndarray) -> np.ndarray:
        return utils.signed_clamp(x, bits=24)
