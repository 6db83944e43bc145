"""Fixed-point-aware fine-tuning (``ilif-finetune``): epochs of Adam over labelled data through the engine's own
fixed-point forward (:class:`.fixed_tuner.FixedTuner`), the accuracy before and after on the torch engine, a
checkpoint per epoch, resume, and the result as an IR graph on its fixed-point grid
(:func:`.fixed_tuner.tuned_graph`).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch

from ilif_deploy.errors import UserError
from ilif_deploy.ir.graph import Graph

from .engine import TorchEngine
from .fixed import FixedPoint, quantize_spec
from .fixed_tuner import DEFAULT_ALPHA, FixedTuner, same_integers, snapped_spec, ste_fixed_ops, tuned_graph
from .netspec import NetSpec, build_netspec

CHECKPOINT_FORMAT = "ilif-deploy-finetune"


@dataclass
class FineTuneResult:
    """What :func:`finetune` made: the fine-tuned ``graph`` (on its fixed-point grid; save it with
    ``graph.save(path)``), the ``tuner`` (its integers: ``tuner.quantized()``), one entry per epoch in ``history``
    (``loss``, ``train_accuracy`` of the fixed-point forward, ``accuracy`` on the evaluation data when given) and
    the evaluation data's fixed-point accuracy ``before`` and ``after`` fine-tuning (None without it)."""

    graph: Graph
    tuner: FixedTuner
    history: List[dict] = field(default_factory=list)
    before: Optional[float] = None
    after: Optional[float] = None
    #: the float network's accuracy on the evaluation data (Lava's float arithmetic: the torch engine, float mode)
    float_accuracy: Optional[float] = None
    #: wall-clock seconds of the training epochs run by this call (not evaluation)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        fp = self.tuner.fp
        return {"fixed_point": {"frac_bits": fp.frac_bits, "input_frac_bits": fp.input_frac_bits,
                                "weight_bits": fp.weight_bits},
                "accuracy": {"float": self.float_accuracy, "fixed_before": self.before, "fixed_after": self.after},
                "epochs": len(self.history), "seconds": self.seconds, "history": self.history}


def _as_spec(source, timesteps: Optional[int]) -> Tuple[NetSpec, Graph]:
    """``(NetSpec, Graph)`` of a model, a graph or a model file."""
    if isinstance(source, torch.nn.Module):
        from ilif_deploy.tracing import trace

        source = trace(source, timesteps=timesteps)
    elif not isinstance(source, Graph):
        from ilif_deploy.converters import open_graph

        source = open_graph(source, **({"timesteps": timesteps} if timesteps else {}))
    return build_netspec(source), source


def _dataset(data, graph: Graph, split: str):
    from ilif_deploy.data import Dataset, open_data

    if isinstance(data, Dataset):
        return data
    return open_data(data, input_shape=graph.input_shape, timesteps=graph.timesteps, split=split,
                     dataset=graph.metadata.get("dataset"))


@torch.no_grad()
def fixed_accuracy(tuner: FixedTuner, data, batch_size: int = 256, progress: bool = False,
                   mode: str = "fixed") -> float:
    """Top-1 accuracy (0..1) of the current network on ``data`` (a labelled Dataset) as the torch engine runs
    it in fixed point -- the engine itself, with the integers an export would have (``mode="float"``: the
    network as trained, in Lava's float arithmetic)."""
    q, spec = tuner.quantized()
    engine = TorchEngine(spec, mode, quantized=q if mode == "fixed" else None, device=tuner.device)
    right = 0
    for b in _batches(data, batch_size, spec.timesteps, progress, "evaluating"):
        pred = engine.run(b.x.to(tuner.device), record=False).output.sum(0).argmax(1).cpu().numpy()
        right += int((pred == b.y).sum())
    return right / len(data)


def _batches(data, batch_size: int, timesteps: int, progress: bool, what: str, order=None):
    """Batches of ``data`` (in the order of ``order``, a permutation of the batch indices), with a progress bar."""
    from tqdm import tqdm

    n = (len(data) + batch_size - 1) // batch_size
    order = range(n) if order is None else order
    for j in tqdm(order, total=n, desc=what, unit="batch", disable=not progress, leave=False):
        start = int(j) * batch_size
        yield from data.window(start, min(len(data), start + batch_size)).batches(batch_size, timesteps)


def _fingerprint(spec: NetSpec, fp: FixedPoint, settings: dict) -> str:
    """What a checkpoint must match to be resumed: the network's structure and initial values, the format and
    the training settings."""
    h = hashlib.sha256()
    # delta_state_exp only where it is set: the checkpoints of every other network keep their fingerprints
    fmt = [fp.frac_bits, fp.input_frac_bits, fp.weight_bits] + ([fp.delta_state_exp] if fp.delta_state_exp else [])
    h.update(json.dumps({"fp": fmt, **settings,
                         "layers": [[lay.name, list(lay.shape)] for lay in spec.layers],
                         "synapses": [[s.source, s.target, s.kind, list(np.shape(s.weight))] for s in spec.synapses]},
                        sort_keys=True).encode())
    for s in spec.synapses:
        h.update(np.ascontiguousarray(s.weight, np.float64).tobytes())
    return h.hexdigest()


def _save_checkpoint(path, state: dict) -> None:
    from ilif_deploy.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path, fingerprint: str) -> dict:
    """A checkpoint of :func:`finetune`, checked as the bounded reader checks files (a regular file, a zip that
    declares no more than it is worth) and read with ``torch.load(weights_only=True)``; refused by name when it is
    another run's.  Not noted as an input: resuming reads the checkpoint the run then replaces, epoch by epoch (the
    CLI claims it as an output, so it can be neither the model nor the data)."""
    import zipfile
    from pathlib import Path

    from ilif_deploy.bounded import check_zip
    from ilif_deploy.errors import ModelFileError

    if not Path(path).is_file():  # a FIFO or device would block or never end: refused before it is opened
        raise ModelFileError(f"{path}: the checkpoint to resume from is not a regular file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a fine-tuning checkpoint (not a torch zip file)")
    check_zip(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file: one line, torch's reason by its kind
        raise ModelFileError(f"{path}: not a fine-tuning checkpoint torch can read safely ({type(e).__name__})") \
            from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: not an ilif-finetune checkpoint")
    if state.get("fingerprint") != fingerprint:
        raise ModelFileError(f"{path}: a checkpoint of another network, format or training settings (resume with "
                             f"the model, --weight-bits/--frac-bits, --lr, --batch-size, --epochs, --seed and "
                             f"--train-thresholds it was started with)")
    return state


def finetune(model_or_graph, data="digits", *, fixed: Optional[FixedPoint] = None, epochs: int = 30,
             lr: float = 3e-3, batch_size: int = 64, alpha: float = DEFAULT_ALPHA, device="cpu", eval_data=None,
             split: str = "train", timesteps: Optional[int] = None, checkpoint=None, resume: bool = False,
             seed: int = 0, thresholds: bool = False, progress: bool = True, on_epoch=None) -> FineTuneResult:
    """Fine-tune a trained network through its fixed-point forward pass (see the module docstring).

    Args:
        model_or_graph: a torch module, an IR :class:`~ilif_deploy.ir.graph.Graph`, or a model file (any kind
            ilif-deploy reads).
        data: labelled training data: a :class:`~ilif_deploy.data.Dataset` or a ``--data`` spec (its ``split``).
        fixed: the fixed-point format (:class:`~.fixed.FixedPoint`; default: the file's, else 16/8/8 bits).
        epochs: passes over ``data``; lr: Adam's learning rate (cosine-annealed over the epochs); batch_size:
            samples per step; alpha: the surrogate's steepness.
        device: torch device ("cpu", "cuda").
        eval_data: labelled data for the accuracy before, after and per epoch (a Dataset or spec; None: none).
        checkpoint: a file written (atomically) after every epoch; ``resume``: continue from it.
        seed: the batch order's seed.
        thresholds: also train each neuron layer's threshold (quantised to the state LSB like the rest).
        on_epoch: called with each epoch's history entry after its checkpoint is written.
    Returns:
        a :class:`FineTuneResult`.
    """
    from tqdm import tqdm

    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise UserError(f"fine-tuning needs epochs >= 0, batch size >= 1 and lr > 0 (got {epochs}, {batch_size}, "
                        f"{lr})")
    spec, graph = _as_spec(model_or_graph, timesteps)
    train = _dataset(data, graph, split)
    if train.labels is None:
        raise UserError(f"{train.name}: fine-tuning needs labels (--y-key)")
    evaluation = None if eval_data is None else _dataset(eval_data, graph, "test")
    tuner = FixedTuner(spec, fixed, alpha, device, thresholds)
    params = [p for p in tuner.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    gen = torch.Generator().manual_seed(int(seed))
    fingerprint = _fingerprint(spec, tuner.fp, {"lr": lr, "batch_size": batch_size, "epochs": epochs, "seed": seed,
                                                "alpha": alpha, "thresholds": thresholds,
                                                "train": [train.name, len(train)]})
    result = FineTuneResult(graph=graph, tuner=tuner)
    first = 0
    if resume and checkpoint is not None:
        state = _load_checkpoint(checkpoint, fingerprint)
        tuner.load_state_dict(state["tuner"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        first, result.before, result.float_accuracy = int(state["epoch"]), state.get("before"), \
            state.get("float_accuracy")
        result.history = [dict(h) for h in state["history"]]
    if evaluation is not None and result.before is None:
        result.before = fixed_accuracy(tuner, evaluation, progress=progress)
        result.float_accuracy = fixed_accuracy(tuner, evaluation, progress=progress, mode="float")
    n_batches = (len(train) + batch_size - 1) // batch_size
    bar = tqdm(range(first, epochs), initial=first, total=epochs, desc="fine-tuning", unit="epoch",
               disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        tuner.train()
        total = right = 0.0
        order = torch.randperm(n_batches, generator=gen)
        for b in _batches(train, batch_size, spec.timesteps, progress, f"epoch {epoch + 1}", order):
            x = b.x.to(tuner.device)
            logits = tuner(x).output.sum(0)
            y = torch.as_tensor(b.y, device=tuner.device)
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            right += int((logits.detach().argmax(1) == y).sum())
        sched.step()
        result.seconds += time.perf_counter() - started
        entry = {"epoch": epoch + 1, "loss": total / len(train), "train_accuracy": right / len(train)}
        if evaluation is not None:
            entry["accuracy"] = fixed_accuracy(tuner, evaluation)
        result.history.append(entry)
        bar.set_postfix({k: f"{v:.4f}" for k, v in entry.items() if k != "epoch"})
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch + 1,
                                          "tuner": tuner.state_dict(), "optimizer": opt.state_dict(),
                                          "scheduler": sched.state_dict(), "generator": gen.get_state(),
                                          "history": result.history, "before": result.before,
                                          "float_accuracy": result.float_accuracy})
        if on_epoch is not None:
            on_epoch(entry)
    if evaluation is not None:
        result.after = result.history[-1]["accuracy"] if result.history else result.before
    result.graph = tuned_graph(tuner, graph.metadata, graph.output_node.readout)
    differ = same_integers(tuner.quantized()[0], quantize_spec(build_netspec(result.graph)))
    if differ:  # the saved graph must export to the trained integers; a difference is a bug of ours
        raise RuntimeError(f"the fine-tuned graph does not quantise to the trained integers: {'; '.join(differ[:3])}")
    return result


__all__ = ["finetune", "FineTuneResult", "fixed_accuracy", "FixedTuner", "ste_fixed_ops", "snapped_spec",
           "tuned_graph", "same_integers", "DEFAULT_ALPHA"]
