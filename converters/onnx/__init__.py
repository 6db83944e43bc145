"""ONNX target: the IR network unrolled over T steps, neuron dynamics in standard ONNX ops.

``export_graph(graph, path)`` writes a model that onnxruntime runs as is (no custom ops): the
ILIF equations of :mod:`ilif_deploy.neuron_step` as Mul/Add/Sub/Relu/Sigmoid/GreaterOrEqual/Cast
per step, synapses as Conv/Gemm/BatchNormalization/pools on the time-merged batch.  See
docs/onnx.md for the input/output layout and the naming scheme.

Note: this package is named ``ilif_deploy.converters.onnx``; ``import onnx`` inside it is an absolute
import and resolves to the real onnx library.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import onnx

from ilif_deploy.atomic import atomic_path

from .compare import compare_with_runtime, run_onnx, session
from .export import OPSET, SUPPORTED_OPS, UnsupportedNodeError, build_model

__all__ = ["export_graph", "build_model", "UnsupportedNodeError", "SUPPORTED_OPS", "OPSET", "run_onnx",
           "session", "compare_with_runtime"]


def export_graph(graph, path, timesteps: Optional[int] = None, encoding: Optional[str] = None,
                 record_spikes: bool = False, opset: int = OPSET, sigmoid: str = "exp", functions: bool = False,
                 fidelity: bool = False, fidelity_data=None, check: bool = True) -> dict:
    """Write ``graph`` as an ONNX model to ``path`` (atomically) and return what was written.

    See :func:`build_model` for ``timesteps``, ``encoding``, ``record_spikes``, ``opset``, ``sigmoid``
    and ``functions``.
    ``check`` runs ``onnx.checker.check_model(full_check=True)`` before writing.  ``fidelity``
    also runs the file in onnxruntime on ``fidelity_data`` (a Dataset; default 16 inputs of
    :func:`ilif_deploy.data.probe_inputs`) and compares it with the torch reference runtime (an
    :class:`~ilif_deploy.agreement.Agreement`).
    Returns:
        a dict: ``path``, ``bytes`` (file size), ``onnx_nodes``, ``initializers``, ``parameters``,
        ``timesteps``, ``encoding``, ``neuron_layers``, ``export_seconds`` (and ``fidelity``).
    """
    t0 = time.perf_counter()
    model = build_model(graph, timesteps, encoding, record_spikes, opset, sigmoid, functions)
    if check:
        onnx.checker.check_model(model, full_check=True)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    seconds = time.perf_counter() - t0
    meta = {p.key: p.value for p in model.metadata_props}
    info = {"path": str(path), "bytes": Path(path).stat().st_size, "onnx_nodes": len(model.graph.node),
            "initializers": len(model.graph.initializer),
            "parameters": int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer)),
            "opset": opset, "timesteps": int(meta["timesteps"]), "encoding": meta["encoding"],
            "neuron_layers": len(json.loads(meta["ilif.neurons"])), "checked": bool(check),
            "export_seconds": round(seconds, 3)}
    if fidelity:
        from ilif_deploy.data import probe_inputs

        data = fidelity_data if fidelity_data is not None else probe_inputs(graph, 16)
        info["fidelity"] = compare_with_runtime(graph, path, data, timesteps=info["timesteps"]).to_dict()
    return info
