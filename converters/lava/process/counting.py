"""Lava's ``Dense``, ``Sparse`` and ``Conv`` with every wrapped fixed-point sum counted.

Why: Lava's fixed_pt connection models add in int32 (``Dense``/``Sparse``) or keep 24 bits (``Conv``'s
``signed_clamp``) and wrap silently -- ``Linear(8 -> 1, w = 1)`` fed 16384.0 on all inputs sums to
2**32 and arrives as 0.  These processes are Lava's own (subclasses, same ports and Vars) with one Var
more, ``wraps``: their models compute each sum exactly in int64, count the values that leave the
accumulator's range, and then wrap them as Lava does, so a network runs bit for bit as on Lava's
models and the count says where it did not compute what its integers mean.  The torch engine
(:mod:`ilif_deploy.converters.lava.engine`) counts the same wraps at the same places.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.models import AbstractPyConvModel
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights
from scipy.sparse import csr_matrix

import ilif_deploy.converters.lava.compat  # noqa: F401  (the Python 3.11 import fix, before lava.magma)
from ilif_deploy.converters.lava.fixed import CONV_BITS, DENSE_BITS, wrap
from ilif_deploy.converters.lava.process.fast_conv import conv_whc


class _Counted:
    """Adds the ``wraps`` Var (sums wrapped so far, all steps and outputs together)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.wraps = Var(shape=(1,), init=0)


class CountingDense(_Counted, Dense):
    """Lava's ``Dense``; fixed point: int32 sums as Lava's, wraps counted in ``wraps``."""


class CountingSparse(_Counted, Sparse):
    """Lava's ``Sparse``; fixed point: int32 sums as Lava's, wraps counted in ``wraps``."""


class CountingConv(_Counted, Conv):
    """Lava's ``Conv``; fixed point: 24-bit sums as Lava's, wraps counted in ``wraps``."""


class _CountingMatrixModel(PyLoihiProcessModel):
    """What Lava's bit-accurate Dense/Sparse models do (weights clipped and truncated to 8 bits on the
    first step, the sum of step t sent at step t + 1), with the sum taken exactly and its int32 wrap counted."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=16)
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, int, precision=5)
    wraps: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._exact = None
        # a negative weight_exp right-shifts the wrapped sum as Lava's Dense does (graded input into a layer
        # that also takes spikes); ilif-deploy scales everything else in the neuron
        self._shift = -int(self.proc_params.get("weight_exp", 0))
        if self._shift < 0:
            raise ValueError("the counting connection models take weight_exp <= 0")

    def run_spk(self) -> None:
        if self._exact is None:  # Lava's own first-step weight processing, then int64 for exact sums
            sign_mode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
            self.weights = truncate_weights(clip_weights(self.weights, sign_mode, num_bits=8), sign_mode,
                                            self.proc_params.get("num_weight_bits", 8))
            self._exact = self.weights.astype(np.int64)
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() > 0:
            exact = self._exact @ s_in.astype(np.int64)
        else:
            exact = self._exact[:, s_in.astype(bool)].sum(axis=1)
        wrapped, n = wrap(np.asarray(exact).reshape(-1), DENSE_BITS)
        self.wraps[0] += int(n)
        self.a_buff = (wrapped >> self._shift).astype(np.int32)


@implements(proc=CountingDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCountingDenseModelFixed(_CountingMatrixModel):
    weights: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)


@implements(proc=CountingSparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCountingSparseModelFixed(_CountingMatrixModel):
    weights: np.ndarray = LavaPyType(csr_matrix, np.int32, precision=8)


@implements(proc=CountingConv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCountingConvModelFixed(AbstractPyConvModel):
    """Lava's fixed-point ``Conv`` as one int64 matrix product (:func:`.fast_conv.conv_whc`), then its
    24-bit ``signed_clamp`` (a two's-complement wrap), counted."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    wraps: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        if self.a_buf is None:
            self.a_buf = np.zeros(self.a_out.shape, dtype=np.int32)
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool)
        exact = conv_whc(s_in, self.weight, self.stride, self.padding, self.dilation, self.groups[0], np.int64)
        wrapped, n = wrap(exact, CONV_BITS)
        self.wraps[0] += int(n)
        self.a_buf = wrapped.astype(np.int32)
