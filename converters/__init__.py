"""Exporters from the IR graph to target artifacts, one module (or small package) per target.

Each target module provides ``export_graph(graph, path, **options) -> dict`` (what it wrote and
any measurements) and is imported only when asked for, so a missing optional backend (Lava)
only affects its own target.
"""
from __future__ import annotations

import importlib
from typing import Callable

#: target name -> (module, function, file suffix)
TARGETS = {
    "ir": ("converters.ir_file", "export_graph", ".ir.npz"),
    "lava": ("converters.lava", "export_graph", ".lava.h5"),
    "nir": ("converters.nir", "export_graph", ".nir"),
    "onnx": ("converters.onnx", "export_graph", ".onnx"),
}


class TargetUnavailable(RuntimeError):
    """The target's converter (or the library it needs) is not installed here."""


def get_exporter(target: str) -> Callable:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    module, func, _ = TARGETS[target]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise TargetUnavailable(f"target {target!r} is not available: {e}") from e
    return getattr(mod, func)
