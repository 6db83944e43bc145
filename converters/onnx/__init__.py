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

import onnx

from ilif_deploy.atomic import atomic_path

from .compare import compare_with_runtime, run_onnx, session
from .builder import save_streamed
from .export import OPSET, SUPPORTED_OPS, UnsupportedNodeError, build_model, build_parts

__all__ = ["export_graph", "build_model", "UnsupportedNodeError", "SUPPORTED_OPS", "OPSET", "run_onnx",
           "session", "compare_with_runtime"]


def export_graph(graph, path, timesteps: Optional[int] = None, encoding: Optional[str] = None,
                 record_spikes: bool = False, opset: int = OPSET, sigmoid: str = "exp", functions: bool = False,
                 fidelity: bool = False, fidelity_data=None, check: bool = True, consume: bool = False) -> dict:
    """Write ``graph`` as an ONNX model to ``path`` (atomically) and return what was written.

    See :func:`build_model` for ``timesteps``, ``encoding``, ``record_spikes``, ``opset``, ``sigmoid``
    and ``functions``.
    ``check`` runs ``onnx.checker.check_model(full_check=True)`` on the file written, before it takes ``path``'s
    name.  ``consume``: the caller hands ``graph`` over (it is emptied, :meth:`~ilif_deploy.ir.graph.Graph.clear`,
    once the file is written), so the check reads the file back without the weights also in memory.  ``fidelity``
    also runs the file in onnxruntime on ``fidelity_data`` (a Dataset; default 16 inputs of
    :func:`ilif_deploy.data.probe_inputs`) and compares it with the torch reference runtime (an
    :class:`~ilif_deploy.agreement.Agreement`).
    Returns:
        a dict: ``path``, ``bytes`` (file size), ``onnx_nodes``, ``initializers``, ``parameters``,
        ``timesteps``, ``encoding``, ``neuron_layers``, ``export_seconds`` (and ``fidelity``).
    """
    t0 = time.perf_counter()
    head, builder = build_parts(graph, timesteps, encoding, record_spikes, opset, sigmoid, functions)
    meta = {p.key: p.value for p in head.metadata_props}
    initializers, parameters = len(builder.initializers), int(sum(a.size for a in builder.initializers.values()))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # the weights are never held as protos: each is serialized as it is written
            save_streamed(head, builder, f)
        del builder  # its arrays are the graph's: with the graph handed over, the weights go before the check
        if consume:
            from ilif_deploy.limits import release_freed_memory

            graph.clear()
            release_freed_memory()
        if check:  # on the file written, as every reader will parse it
            onnx.checker.check_model(str(tmp), full_check=True)
    info = {"path": str(path), "bytes": Path(path).stat().st_size, "onnx_nodes": len(head.graph.node),
            "initializers": initializers, "parameters": parameters,
            "opset": opset, "timesteps": int(meta["timesteps"]), "encoding": meta["encoding"],
            "neuron_layers": len(json.loads(meta["ilif.neurons"])), "checked": bool(check),
            "export_seconds": round(time.perf_counter() - t0, 3)}
    if fidelity:
        from ilif_deploy.data import probe_inputs

        data = fidelity_data if fidelity_data is not None else probe_inputs(graph, 16)
        info["fidelity"] = compare_with_runtime(graph, path, data, timesteps=info["timesteps"]).to_dict()
    return info
