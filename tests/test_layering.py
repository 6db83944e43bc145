"""The house rules, read from the source: one import namespace, layers that only import downwards,
no import circles, and ruff's lint passing."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: folder -> installed package (setup.py FOLDERS)
FOLDERS = {"ilif_deploy": "ilif_deploy", "converters": "ilif_deploy.converters", "energy": "ilif_deploy.energy",
           "examples": "ilif_deploy.examples"}
#: layers, lowest first: a module may import its own layer and the ones below it
LAYERS = ["core", "ilif_deploy.converters", "ilif_deploy.energy", "ilif_deploy.cli"]


def _modules():
    """Installed module name -> source file, for every module of the four folders."""
    out = {}
    for folder, pkg in FOLDERS.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = list(f.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg] + parts)] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """(line, imported module) for every import in the file, function-level ones included; relative
    imports resolved against the installed name; ``from pkg import sub`` counts as importing ``pkg.sub``."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            for a in node.names:
                sub = f"{mod}.{a.name}"
                yield node.lineno, sub if sub in MODULES else mod


def _graph():
    return {name: {m for _, m in _imports(name, path) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def _layer(name: str):
    if name.startswith("ilif_deploy.examples"):
        return None  # runnable scripts and bundled data, not a library layer
    for layer in reversed(LAYERS[1:]):
        if name == layer or name.startswith(layer + "."):
            return LAYERS.index(layer)
    return 0


def test_bare_folder_names_are_never_imported():
    bad = [f"{path.relative_to(ROOT)}:{line}: import {mod}" for name, path in MODULES.items()
           for line, mod in _imports(name, path) if mod.split(".")[0] in ("converters", "energy", "examples")]
    assert bad == [], bad


def test_layers_import_only_downwards():
    graph, bad = _graph(), []
    for name, deps in graph.items():
        for dep in deps:
            mine, theirs = _layer(name), _layer(dep)
            # the bundled-model lookup (ilif_deploy.examples itself) is data every layer may read
            if mine is not None and (theirs is None and dep != "ilif_deploy.examples" or
                                     theirs is not None and theirs > mine):
                bad.append(f"{name} -> {dep}")
    assert bad == [], bad
    core = [n for n in MODULES if _layer(n) == 0]
    assert "ilif_deploy.model_files" in core and "ilif_deploy.runtime" in core and len(core) >= 15


def test_no_import_circles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == [], cycles
    assert ("ilif_deploy.converters.onnx.export" in graph["ilif_deploy.converters.onnx.compare"]
            and "ilif_deploy.energy.html" in graph["ilif_deploy.energy.report"])  # the graph sees lazy imports


def test_ruff_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    assert Path(ruff).exists(), "ruff is not installed (pip install -r requirements.txt)"
    res = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
