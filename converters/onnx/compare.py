"""Run an exported model in onnxruntime and compare it with the torch reference runtime."""
from __future__ import annotations

from typing import Dict, Optional, Union

import numpy as np
import onnx

from ilif_deploy.errors import DataError


def session(model: Union[str, "onnx.ModelProto"], threads: Optional[int] = None):
    """An onnxruntime CPU session for a model file or in-memory model (default graph optimisations)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def model_input(sess, x: np.ndarray, timesteps: int) -> np.ndarray:
    """Bring ``x`` (``[B, ...]`` or ``[T, B, ...]``) to what the model's input expects."""
    x = np.asarray(x, dtype=np.float32)
    want = len(sess.get_inputs()[0].shape)
    if x.ndim == want:
        return x
    if x.ndim == want - 1:  # a sequence model given one frame: repeat it (direct encoding)
        return np.broadcast_to(x, (timesteps, *x.shape)).copy()
    raise DataError(f"input of shape {list(x.shape)} does not fit the model input {sess.get_inputs()[0].shape}")


def run_onnx(model, x: np.ndarray, timesteps: int, batch_size: int = 64, sess=None) -> Dict[str, np.ndarray]:
    """All graph outputs of ``model`` on ``x``, in batches of ``batch_size`` samples (batch axis is
    0 for ``[B, ...]`` direct inputs, 1 for ``[T, B, ...]``; outputs are concatenated on their batch axis)."""
    sess = sess or session(model)
    x = model_input(sess, x, timesteps)
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    seq = len(sess.get_inputs()[0].shape) == x.ndim and isinstance(sess.get_inputs()[0].shape[0], int)
    n = x.shape[1] if seq else x.shape[0]
    parts = {k: [] for k in names}
    for i in range(0, n, batch_size):
        xb = x[:, i:i + batch_size] if seq else x[i:i + batch_size]
        for k, v in zip(names, sess.run(names, {name: xb})):
            parts[k].append(v)
    return {k: np.concatenate(v, axis=0 if k == "logits" else 1) for k, v in parts.items()}


def compare_with_runtime(graph, model, data, timesteps: Optional[int] = None, batch_size: int = 64, labels=None):
    """Run ``graph`` in the torch runtime and ``model`` (file or ModelProto, or None to build one with spike
    outputs) in onnxruntime on ``data`` (a :class:`~ilif_deploy.data.Dataset`, or an array
    ``[N, *input_shape]`` / ``[N, T, *input_shape]`` with ``labels``); per-layer spike agreement comes from a
    copy of the model built with ``record_spikes=True`` (same computation, extra outputs).
    Returns an :class:`~ilif_deploy.agreement.Agreement` (reference "torch runtime", candidate "onnxruntime")."""
    from ilif_deploy import ir as N
    from ilif_deploy.agreement import AgreementCounter
    from ilif_deploy.data import as_dataset
    from ilif_deploy.runtime import run

    from .export import build_model

    T = int(timesteps or graph.timesteps)
    neurons = [k for k in graph.topological_order() if isinstance(graph.nodes[k], N.SPIKING)]
    meta = {}
    if model is not None:
        m = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
        meta = {p.key: p.value for p in m.metadata_props}
    recorded = build_model(graph, T, encoding=meta.get("encoding"), record_spikes=True,
                           sigmoid="op" if meta.get("mpiu_sigmoid") == "Sigmoid op" else "exp",
                           functions=meta.get("neuron_functions") == "true")
    direct = (meta.get("encoding") or graph.encoding) == "direct"
    data = as_dataset(data, graph.input_shape, T, labels)
    if direct and data.encoding == "sequence":
        raise DataError(f"the ONNX model takes one frame per sample (direct encoding); {data.name} has "
                        f"{data.timesteps} frames per sample (export with --dataset/encoding sequence)")
    runs = [session(recorded)] + ([session(model)] if model is not None else [])
    counter = AgreementCounter(neurons, "torch runtime", "onnxruntime")
    for batch in data.batches(batch_size, T):
        xin = (batch.x[0] if direct else batch.x).numpy()
        got = [dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: xin}))) for s in runs]
        # a model without a sum readout has no 'logits' output: compare the per-step outputs summed
        logits = got[-1]["logits"] if "logits" in got[-1] else got[-1]["output"].sum(0)
        out, rec = run(graph, batch.x, T, record=neurons)
        counter.add(rec, {k: got[0][f"spikes:{k}"] for k in neurons}, out.sum(0), logits, batch.y)
    return counter.result()
