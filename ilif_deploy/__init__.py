"""ilif-deploy: export trained ILIF spiking networks to Lava, NIR and ONNX, and count their energy.

Public API (names kept stable for the converters, the energy module, examples and outside checks):

- :class:`ILIF`, :class:`LIF`, :class:`PLIF`, :class:`IPLIF`: multi-step torch neurons ``[T, ...] -> [T, ...]``.
- :func:`load_model`, :func:`save`: model files (safe loading by default; ``example:NAME`` for a bundled model).
- :func:`trace`: torch module -> :class:`Graph` (the intermediate representation), for networks written with
  this project's layers, plain torch, snntorch or SpikingJelly, multi-step or single-step.
- :func:`run`: executes a graph in torch, ``[T, B, ...] -> [T, B, ...]``.
- :class:`UserError` and its family: what the command-line tools print as one line.
- :func:`finetune` and :class:`FixedPoint`: fixed-point-aware fine-tuning (``ilif-finetune``), from the Lava target's
  fixed-point module (``ilif_deploy.converters.lava.finetune``; torch only, no Lava), loaded when first named.

Exporters, file readers (:func:`ilif_deploy.converters.open_graph`) and energy reports live in the
subpackages ``ilif_deploy.converters`` and ``ilif_deploy.energy``; this core imports neither.  Names are
imported on first use, so ``import ilif_deploy`` (and a tool's ``--help``) does not load torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "ILIF": "neurons", "LIF": "neurons", "PLIF": "neurons", "IPLIF": "neurons", "rectangle": "neurons",
    "sigmoid": "neurons", "ILIFParams": "neuron_step", "ilif_step": "neuron_step", "load_model": "model_files",
    "save": "model_files", "build": "architectures", "register_arch": "architectures", "trace": "tracing",
    "Graph": "ir", "run": "runtime", "logits": "runtime", "TraceError": "errors", "GraphError": "errors",
    "ModelFileError": "errors", "UserError": "errors", "DataError": "errors",
    "finetune": "converters.lava.finetune", "FixedPoint": "converters.lava.fixed",
}
__all__ = sorted(_PUBLIC) + ["ARCHITECTURES", "__version__"]


def __getattr__(name: str):
    if name == "ARCHITECTURES":  # the registry with the built-in architectures in it
        from .architectures import load_builtins

        return load_builtins()
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    try:  # a submodule (ilif_deploy.layers, ilif_deploy.ir, ...), as an eager package would have it
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'ilif_deploy' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
