"""ilif-deploy: export trained ILIF spiking networks to Lava, NIR and ONNX, and count their energy.

Public API (names kept stable for the converters, the energy module, examples and outside checks):

- :class:`ILIF`, :class:`LIF`, :class:`IPLIF`: multi-step torch neurons ``[T, ...] -> [T, ...]``.
- :func:`load_model`, :func:`save`: model files (safe loading by default).
- :func:`trace`: torch module -> :class:`Graph` (the intermediate representation).
- :func:`run`: executes a graph in torch, ``[T, B, ...] -> [T, B, ...]``.
"""
from .architectures import ARCHITECTURES, build, register_arch
from .ir import Graph, GraphError
from .model_files import ModelFileError, load_model, save
from .neuron_step import ILIFParams, ilif_step
from .neurons import ILIF, IPLIF, LIF, rectangle, sigmoid
from .runtime import logits, run
from .trace import TraceError, trace

__version__ = "0.1.0"

__all__ = ["ILIF", "LIF", "IPLIF", "ILIFParams", "ilif_step", "rectangle", "sigmoid", "load_model", "save",
           "build", "register_arch", "ARCHITECTURES", "trace", "TraceError", "Graph", "GraphError", "run", "logits",
           "ModelFileError", "__version__"]
