"""Node types of the intermediate graph.

Each node is a small dataclass: its parameters as float32 numpy arrays or plain numbers, and
``shape``, the output shape of *one sample at one time step* (no time, no batch dimension).
Time is implicit: the graph describes one step; neuron nodes carry state from step to step.
Channel-first layout everywhere (``[C, H, W]`` for images, ``[F]`` for vectors).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, Optional, Tuple

import numpy as np

from ..neuron_step import ILIFParams

Shape = Tuple[int, ...]
Pair = Tuple[int, int]


@dataclass(eq=False)
class Node:
    """Base of all nodes.  ``name`` is unique in a graph (torch module path where there is one)."""

    name: str
    shape: Shape = ()
    op: ClassVar[str] = "node"
    #: ops whose output is a linear function of their input (candidates for synaptic fusion)
    linear: ClassVar[bool] = False

    def attrs(self) -> dict:
        """Parameters that are not arrays (for the summary table and serialisation)."""
        out = {}
        for f in fields(self):
            if f.name in ("name", "shape"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) or v is None:
                continue
            out[f.name] = v
        return out

    def arrays(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}


@dataclass(eq=False)
class Input(Node):
    """Network input.  ``encoding="direct"``: the same analog frame at every step (the authors'
    evaluation); ``"sequence"``: a different frame per step (e.g. DVS events)."""

    encoding: str = "direct"
    op: ClassVar[str] = "input"


@dataclass(eq=False)
class Output(Node):
    """Network output: per-step values ``[T, B, *shape]``; a classifier's logits are their sum over T."""

    readout: str = "sum"
    op: ClassVar[str] = "output"


@dataclass(eq=False)
class Conv2d(Node):
    """2-D convolution; ``weight`` is ``[out, in/groups, kh, kw]``, ``bias`` ``[out]`` or None.

    ``folded`` names BatchNorm modules whose affine map was folded into ``weight``/``bias``
    (the energy module can still count them under the "BN not folded" convention)."""

    weight: np.ndarray = None
    bias: Optional[np.ndarray] = None
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    folded: Tuple[str, ...] = ()
    op: ClassVar[str] = "conv2d"
    linear: ClassVar[bool] = True


@dataclass(eq=False)
class Linear(Node):
    """Fully connected layer; ``weight`` is ``[out, in]``, ``bias`` ``[out]`` or None."""

    weight: np.ndarray = None
    bias: Optional[np.ndarray] = None
    folded: Tuple[str, ...] = ()
    op: ClassVar[str] = "linear"
    linear: ClassVar[bool] = True


@dataclass(eq=False)
class Affine(Node):
    """Per-channel ``y = scale[c] * x + shift[c]`` (channel = first per-sample axis).

    A BatchNorm in eval mode that could not be folded into a preceding conv/linear
    (e.g. BN after a residual add).  For a BN, ``bn_stats`` keeps its running mean, running var,
    weight and bias (rows of a ``[4, C]`` array) and ``eps``, so the reference runtime can apply
    torch's own batch-norm kernel and match the source module bit for bit; converters use
    ``scale``/``shift``."""

    scale: np.ndarray = None
    shift: np.ndarray = None
    source: str = "batchnorm"
    bn_stats: Optional[np.ndarray] = None
    eps: float = 0.0
    op: ClassVar[str] = "affine"
    linear: ClassVar[bool] = True


@dataclass(eq=False)
class AvgPool2d(Node):
    kernel: Pair = (2, 2)
    stride: Pair = (2, 2)
    padding: Pair = (0, 0)
    count_include_pad: bool = True
    op: ClassVar[str] = "avgpool2d"
    linear: ClassVar[bool] = True


@dataclass(eq=False)
class SumPool2d(Node):
    kernel: Pair = (2, 2)
    stride: Pair = (2, 2)
    padding: Pair = (0, 0)
    op: ClassVar[str] = "sumpool2d"
    linear: ClassVar[bool] = True


@dataclass(eq=False)
class MaxPool2d(Node):
    kernel: Pair = (2, 2)
    stride: Pair = (2, 2)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    op: ClassVar[str] = "maxpool2d"


@dataclass(eq=False)
class AdaptiveAvgPool2d(Node):
    """Adaptive average pooling to ``output_size`` (a fixed linear map once the input size is known)."""

    output_size: Pair = (1, 1)
    op: ClassVar[str] = "adaptive_avgpool2d"
    linear: ClassVar[bool] = True


@dataclass(eq=False)
class Flatten(Node):
    """Per-sample flatten of axes ``start_dim..end_dim`` (per-sample axes, no T/B)."""

    start_dim: int = 0
    end_dim: int = -1
    op: ClassVar[str] = "flatten"
    linear: ClassVar[bool] = True


@dataclass(eq=False)
class Add(Node):
    """Element-wise sum of all inputs (residual connections)."""

    op: ClassVar[str] = "add"
    linear: ClassVar[bool] = True


@dataclass(eq=False)
class Neuron(Node):
    """A layer of ILIF neurons (LIF when both inhibitory units are off).

    ``kind`` is what the source module was ("ilif", "lif", "iplif"); the dynamics are fully
    given by ``params`` (an :class:`ILIFParams`, see :mod:`ilif_deploy.neuron_step`)."""

    params: ILIFParams = field(default_factory=lambda: ILIFParams.from_tau(1.1))
    kind: str = "ilif"
    op: ClassVar[str] = "neuron"

    def attrs(self) -> dict:
        d = {"kind": self.kind, "tau": self.params.tau}
        d.update(self.params.to_dict())
        return d


@dataclass(eq=False)
class LeakyIntegrator(Node):
    """Non-spiking leaky integrator ``y[t] = lam * y[t-1] + x[t]`` (y[0] = 0), state per element.

    Added for networks imported from NIR: the synaptic current of a ``CubaLIF`` and ``LI``
    readout layers.  ``lam`` is the decay per step (dimensionless); input gains are separate
    :class:`Affine` nodes."""

    lam: float = 0.0
    op: ClassVar[str] = "leaky_integrator"


NODE_TYPES = {cls.op: cls for cls in (Input, Output, Conv2d, Linear, Affine, AvgPool2d, SumPool2d, MaxPool2d,
                                      AdaptiveAvgPool2d, Flatten, Add, Neuron, LeakyIntegrator)}
