"""ONNX target: the IR network unrolled over T steps, neuron dynamics in standard ONNX ops.

``export_graph(graph, path)`` writes a model that onnxruntime runs as is (no custom ops): the
ILIF equations of :mod:`ilif_deploy.neuron_step` as Mul/Add/Sub/Relu/Sigmoid/GreaterOrEqual/Cast
per step, synapses as Conv/Gemm/BatchNormalization/pools on the time-merged batch.  See
docs/onnx.md for the input/output layout and the naming scheme.

Note: this package is named ``converters.onnx``; ``import onnx`` inside it is an absolute import
and resolves to the real onnx library.
"""
from .compare import Comparison, compare_with_runtime, run_onnx, session
from .export import OPSET, SUPPORTED_OPS, UnsupportedNodeError, build_model, export_graph

__all__ = ["export_graph", "build_model", "UnsupportedNodeError", "SUPPORTED_OPS", "OPSET", "run_onnx",
           "session", "compare_with_runtime", "Comparison"]
