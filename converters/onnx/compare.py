"""Run an exported model in onnxruntime and compare it with the torch reference runtime."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Union

import numpy as np
import onnx


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
    raise ValueError(f"input of shape {list(x.shape)} does not fit the model input {sess.get_inputs()[0].shape}")


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


@dataclass
class Comparison:
    """onnxruntime vs the torch reference runtime on the same input."""

    max_abs_logit_diff: float
    prediction_agreement: float  # fraction of samples with the same argmax
    samples: int
    #: neuron layer -> fraction of (step, sample, neuron) spikes that agree
    spike_agreement: Dict[str, float] = field(default_factory=dict)
    #: neuron layer -> number of spikes that differ
    spike_flips: Dict[str, int] = field(default_factory=dict)
    #: samples with at least one differing spike
    samples_with_flips: int = 0
    #: max |logit difference| over the samples whose spikes all agree (nan when there are none)
    max_abs_logit_diff_clean: float = float("nan")
    #: neuron layer -> samples whose first differing spike (in layer order) is in that layer;
    #: later differences in such a sample are usually consequences of the first one
    first_flip_layers: Dict[str, int] = field(default_factory=dict)

    @property
    def total_flips(self) -> int:
        return int(sum(self.spike_flips.values()))

    def summary(self) -> dict:
        return {"samples": self.samples, "max_abs_logit_diff": self.max_abs_logit_diff,
                "prediction_agreement": self.prediction_agreement,
                "min_layer_spike_agreement": min(self.spike_agreement.values(), default=1.0),
                "spike_flips": self.total_flips, "samples_with_flips": self.samples_with_flips,
                "max_abs_logit_diff_without_flips": self.max_abs_logit_diff_clean}


def compare_with_runtime(graph, model, x: np.ndarray, timesteps: Optional[int] = None,
                         batch_size: int = 64) -> Comparison:
    """Run ``graph`` in the torch runtime and ``model`` (file or ModelProto, or None to build one
    with spike outputs) in onnxruntime on ``x``; per-layer spike agreement comes from a copy of
    the model built with ``record_spikes=True`` (same computation, extra outputs)."""
    import torch

    from ilif_deploy import ir as N
    from ilif_deploy.runtime import run

    from .export import build_model

    T = int(timesteps or graph.timesteps)
    neurons = [k for k in graph.topological_order() if isinstance(graph.nodes[k], N.Neuron)]
    meta = {}
    if model is not None:
        m = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
        meta = {p.key: p.value for p in m.metadata_props}
    recorded = build_model(graph, T, encoding=meta.get("encoding"), record_spikes=True,
                           sigmoid="op" if meta.get("mpiu_sigmoid") == "Sigmoid op" else "exp",
                           functions=meta.get("neuron_functions") == "true")
    got = run_onnx(recorded, x, T, batch_size)
    file_out = run_onnx(model, x, T, batch_size) if model is not None else got
    # a model without a sum readout has no 'logits' output: compare the per-step outputs summed
    logits_file = file_out["logits"] if "logits" in file_out else file_out["output"].sum(0)
    ref_logits, ref_spikes = [], {k: [] for k in neurons}
    xt = torch.as_tensor(np.asarray(x, np.float32))
    seq = xt.dim() == len(graph.input_node.shape) + 2
    n = xt.shape[1] if seq else xt.shape[0]
    for i in range(0, n, batch_size):
        out, rec = run(graph, xt[:, i:i + batch_size] if seq else xt[i:i + batch_size], T, record=neurons)
        ref_logits.append(out.sum(0).numpy())
        for k in neurons:
            ref_spikes[k].append(rec[k].numpy())
    ref = np.concatenate(ref_logits)
    agree, flips, first = {}, {}, {}
    seen = np.zeros(n, dtype=bool)
    for k in neurons:
        r, o = np.concatenate(ref_spikes[k], axis=1), got[f"spikes:{k}"]
        diff = r != o
        flips[k] = int(diff.sum())
        agree[k] = 1.0 - flips[k] / r.size
        per_sample = diff.reshape(diff.shape[0], n, -1).any(axis=(0, 2))
        if (per_sample & ~seen).any():
            first[k] = int((per_sample & ~seen).sum())
        seen |= per_sample
    return Comparison(max_abs_logit_diff=float(np.abs(logits_file - ref).max()),
                      prediction_agreement=float((logits_file.argmax(1) == ref.argmax(1)).mean()),
                      samples=int(n), spike_agreement=agree, spike_flips=flips,
                      samples_with_flips=int(seen.sum()), first_flip_layers=first,
                      max_abs_logit_diff_clean=float(np.abs(logits_file - ref)[~seen].max()) if (~seen).any()
                      else float("nan"))
