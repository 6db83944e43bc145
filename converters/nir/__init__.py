"""NIR target: IR -> NIR file (``nir.write``) and NIR file -> IR (ilif-deploy's own files exactly,
foreign LIF/IF/CubaLIF/LI graphs with NIR's documented semantics).  See docs/nir.md.

Public entry points (called by ``ilif-export``, ``ilif_deploy.load_model`` and the CLI's ``load_graph``):

- :func:`export_graph` ``(graph, path, **options) -> dict``
- :func:`read_graph` ``(path, dt=None) -> Graph``
- :func:`load_nir_model` ``(path, dt=None) -> nn.Module`` (``[T, B, ...] -> [T, B, ...]``, ``ilif_settings``)
"""
from __future__ import annotations

import importlib

#: public name -> the submodule that defines it (imported on first use: reading the conventions, as the
#: command-line tools' --help does, loads neither nir nor torch)
_PUBLIC = {"export_graph": "files", "read_graph": "files", "load_nir_model": "files", "NIRModel": "files",
           "to_nir": "export", "NIRExportError": "export", "from_nir": "importer", "read_nir": "importer",
           "NIRImportError": "importer", "DEFAULT_DT": "conventions"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
