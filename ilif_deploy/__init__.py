"""ilif-deploy: export trained ILIF spiking networks to Lava, NIR and ONNX, and count their energy.

Public API (names kept stable for the converters, the energy module, examples and outside checks):

- :class:`ILIF`, :class:`LIF`, :class:`IPLIF`: multi-step torch neurons ``[T, ...] -> [T, ...]``.
- :func:`load_model`, :func:`save`: model files (safe loading by default).
- :func:`trace`: torch module -> :class:`Graph` (the intermediate representation).
- :func:`run`: executes a graph in torch, ``[T, B, ...] -> [T, B, ...]``.
- :class:`UserError` and its family: what the command-line tools print as one line.

Exporters, file readers (:func:`ilif_deploy.converters.open_graph`) and energy reports live in the
subpackages ``ilif_deploy.converters`` and ``ilif_deploy.energy``; this core imports neither.
"""
from . import paper_models  # noqa: F401  (registers the authors' architectures)
from .architectures import ARCHITECTURES, build, register_arch
from .errors import DataError, GraphError, ModelFileError, TraceError, UserError
from .ir import Graph
from .model_files import load_model, save
from .neuron_step import ILIFParams, ilif_step
from .neurons import ILIF, IPLIF, LIF, rectangle, sigmoid
from .runtime import logits, run
from .trace import trace

__version__ = "0.1.0"

__all__ = ["ILIF", "LIF", "IPLIF", "ILIFParams", "ilif_step", "rectangle", "sigmoid", "load_model", "save",
           "build", "register_arch", "ARCHITECTURES", "trace", "TraceError", "Graph", "GraphError", "run", "logits",
           "ModelFileError", "UserError", "DataError", "__version__"]
