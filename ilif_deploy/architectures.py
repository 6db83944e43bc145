"""The architecture registry and the neuron layers a network is built with.

The built-in architectures -- the authors' ten (:mod:`ilif_deploy.paper_models`, under their state_dict key names)
and the digits example net (:mod:`ilif_deploy.digits_model`) -- register themselves when the registry is first
asked (:data:`BUILTIN_MODULES`, imported by name, so this module imports neither them nor torch: the command-line
tools answer ``--help`` without loading torch).

All models are multi-step: ``forward(x)`` takes ``[T, B, ...]`` and returns per-step outputs
``[T, B, classes]``; neuron state is reset on every call (neurons keep no state between calls).
The authors' evaluation reads out ``logits = output.sum(0)`` and predicts ``argmax``.
"""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Callable, Dict, List, Optional

from .errors import UserError

#: the neuron layers an architecture can be built with (``--neuron``) and their classes in
#: :mod:`ilif_deploy.neurons`: the authors' ``-neuron_model`` ILIF, LIF, PLIF and relu (their ANN baseline, run at
#: T = 1), and IPLIF (ILIF with PLIF's learned decay, paper Table 3)
NEURON_KINDS = {"ilif": "ILIF", "lif": "LIF", "plif": "PLIF", "iplif": "IPLIF", "relu": "ReLU"}
#: the modules that register the built-in architectures (imported by name on first use)
BUILTIN_MODULES = ("ilif_deploy.paper_models", "ilif_deploy.digits_model")
ARCHITECTURES: Dict[str, Callable] = {}
#: default run settings per architecture (input_shape per sample and step, timesteps, encoding)
DEFAULT_SETTINGS: Dict[str, dict] = {}
#: packages declare their own architectures here (``[project.entry-points."ilif_deploy.architectures"]``,
#: ``name = "package.module"``: importing the module registers them with :func:`register_arch`)
ENTRY_POINT_GROUP = "ilif_deploy.architectures"


def register_arch(name: str, input_shape, timesteps: int, encoding: str = "direct"):
    """Decorator: make a builder ``fn(**kwargs) -> nn.Module`` loadable by name from model files."""
    def deco(fn):
        ARCHITECTURES[name] = fn
        DEFAULT_SETTINGS[name] = {"input_shape": list(input_shape), "timesteps": timesteps, "encoding": encoding}
        return fn
    return deco


def load_arch_module(module: str) -> None:
    """Import ``module`` (the user's own code, e.g. ``--arch-module mypkg.nets``) so that its
    :func:`register_arch` calls run.  As ``python -m`` does, the current folder is searched first (a console
    script's path holds only its own folder), then the installed packages."""
    import os
    import sys

    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"--arch-module {module}: cannot import it ({e}); looked in the current folder {here} "
                        f"and the installed packages (run from the folder that holds {module.split('.')[0]}"
                        f"{'/' if '.' in module else '.py'}, or install it)") from None
    finally:
        if added:
            sys.path.remove(here)


def load_builtins() -> Dict[str, Callable]:
    """Register the built-in architectures (once); the registry."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return ARCHITECTURES


def known() -> List[str]:
    """Every registered architecture's name, the built-in ones included."""
    return sorted(load_builtins())


def find_arch(name: str) -> Callable:
    """The builder registered as ``name``, looking in the installed packages' entry points
    (group :data:`ENTRY_POINT_GROUP`) when it is not registered yet."""
    load_builtins()
    if name not in ARCHITECTURES:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                ep.load()
    if name not in ARCHITECTURES:
        raise UserError(f"architecture {name!r} is not registered here (known: {', '.join(sorted(ARCHITECTURES))}); "
                        f"register yours with ilif_deploy.register_arch in a module given with --arch-module, or "
                        f"in an installed package's '{ENTRY_POINT_GROUP}' entry point")
    return ARCHITECTURES[name]


def build(name: str, **kwargs):
    """Build architecture ``name``; the model remembers ``arch_spec`` so :func:`save` can write it."""
    builder = find_arch(name)
    try:
        model = builder(**kwargs)
    except TypeError as e:  # an argument the builder does not take
        raise UserError(f"architecture {name!r}: {e}") from None
    model.arch_spec = {"arch": name, "kwargs": dict(kwargs)}
    return model


def make_neuron(neuron: str = "ilif", **neuron_kwargs):
    """A neuron layer by kind (a key of :data:`NEURON_KINDS`) with its keyword arguments (``tau`` is the
    initial tau of the learnable PLIF/IPLIF)."""
    if neuron not in NEURON_KINDS:
        raise UserError(f"unknown neuron kind {neuron!r}; known: {', '.join(NEURON_KINDS)}")
    if neuron in ("plif", "iplif") and "tau" in neuron_kwargs:
        neuron_kwargs["init_tau"] = neuron_kwargs.pop("tau")
    from . import neurons

    cls = getattr(neurons, NEURON_KINDS[neuron])
    try:
        return cls(**neuron_kwargs)
    except TypeError as e:
        bad = str(e).rsplit("argument ", 1)[-1]
        takes = ", ".join(inspect.signature(cls).parameters)
        raise UserError(f"neuron kind {neuron!r} does not take {bad} (it takes {takes})") from None


class _Neurons:
    """Builds the neuron layers of one network, all with the same kind and settings."""

    def __init__(self, neuron: str, neuron_kwargs: Optional[dict]):
        self.kind, self.kwargs = neuron, dict(neuron_kwargs or {})
        make_neuron(self.kind, **dict(self.kwargs))  # settings checked once, before any layer is built

    def __call__(self):
        return make_neuron(self.kind, **dict(self.kwargs))
