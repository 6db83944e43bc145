"""A small ONNX graph builder: named nodes, shared initializers, readable tensor names.

Tensor names follow the IR: the tensor an IR node produces carries that node's name, and the
intermediate tensors of a node are ``<ir name>/<what>`` (``layer1.0.neuron1/t2/fire``), so a
reader of the file in Netron finds each layer and each neuron step by its torch module path.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class OnnxBuilder:
    """Collects nodes and initializers; every node's output tensors are named after the node."""

    def __init__(self) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: Dict[str, onnx.TensorProto] = {}

    def const(self, name: str, value, dtype=np.float32) -> str:
        """A named initializer (created once; a second call with the same name reuses it)."""
        if name not in self.initializers:
            arr = np.asarray(value, dtype=dtype)
            self.initializers[name] = numpy_helper.from_array(arr, name=name)
        return name

    def scalar(self, name: str, value: float) -> str:
        """A float32 scalar initializer (broadcasts like torch's Python-scalar operand)."""
        return self.const(name, np.float32(value))

    def shape_const(self, name: str, dims: Sequence[int]) -> str:
        return self.const(name, np.asarray(list(dims), dtype=np.int64), dtype=np.int64)

    def op(self, op_type: str, inputs: Sequence[str], name: str, outputs: Optional[Sequence[str]] = None,
           doc: Optional[str] = None, **attrs) -> str:
        """Append a node named ``name``; returns its (first) output tensor name (``name`` by default)."""
        outputs = list(outputs) if outputs is not None else [name]
        node = helper.make_node(op_type, list(inputs), outputs, name=name, **attrs)
        if doc:
            node.doc_string = doc
        self.nodes.append(node)
        return outputs[0]

    def make_graph(self, name: str, inputs: List[onnx.ValueInfoProto], outputs: List[onnx.ValueInfoProto],
                   doc: str = "") -> onnx.GraphProto:
        return helper.make_graph(self.nodes, name, inputs, outputs, list(self.initializers.values()),
                                 doc_string=doc)


def tensor_info(name: str, dims: Sequence, doc: str = "") -> onnx.ValueInfoProto:
    """A float32 graph input/output; string dims are symbolic (e.g. ``"batch"``)."""
    vi = helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))
    if doc:
        vi.doc_string = doc
    return vi
