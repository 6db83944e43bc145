"""The IR graph itself as an artifact (``.ir.npz``): for inspection and for re-loading without torch models."""
from __future__ import annotations

from ilif_deploy.ir.graph import Graph


def export_graph(graph: Graph, path, **_options) -> dict:
    """Write ``graph`` to ``path`` (npz, no pickles, atomic)."""
    graph.save(path)
    return {"path": str(path), "nodes": len(graph.nodes)}
