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
        #: name -> array; the arrays are the IR's own (no copy where the dtype is already right): they become
        #: tensors only where the model is filled in memory (:meth:`fill`) or written (:func:`save_streamed`)
        self.initializers: Dict[str, np.ndarray] = {}

    def const(self, name: str, value, dtype=np.float32) -> str:
        """A named initializer (created once; a second call with the same name reuses it)."""
        if name not in self.initializers:
            self.initializers[name] = np.asarray(value, dtype=dtype)
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

    def tensor(self, name: str) -> onnx.TensorProto:
        return numpy_helper.from_array(self.initializers[name], name=name)

    def make_head(self, name: str, inputs: List[onnx.ValueInfoProto], outputs: List[onnx.ValueInfoProto],
                  doc: str = "", **model_kw) -> onnx.ModelProto:
        """The model of the collected nodes without its initializers (:meth:`fill` adds them in memory,
        :func:`save_streamed` writes them to a file).  ``helper.make_graph`` and ``make_model`` each copy what
        they are given (a ResNet-18 held its weights three times over in protos)."""
        return helper.make_model(helper.make_graph(self.nodes, name, inputs, outputs, doc_string=doc), **model_kw)

    def fill(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """Write every initializer into ``model``'s graph, one at a time (each held once, in the model)."""
        for k in self.initializers:
            model.graph.initializer.append(self.tensor(k))
        return model


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


#: protobuf field numbers: ModelProto.graph, GraphProto.initializer, TensorProto.raw_data (onnx/onnx.proto)
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9
_LEN = 2  # protobuf wire type of a length-delimited field


def _tensor_head(name: str, array: np.ndarray) -> bytes:
    """``numpy_helper.from_array(array, name)`` serialized without its ``raw_data``, which is the array's own
    little-endian bytes and comes last (the last field ``from_array`` sets; protobuf writes fields in number order):
    the head and then the bytes are that tensor, never copied into a proto nor its serialization into a ``bytes``."""
    one = np.asarray(array).reshape(-1)[:1] if np.size(array) else np.zeros(1, dtype=array.dtype)
    t = numpy_helper.from_array(one, name=name)
    if not t.HasField("raw_data") or t.raw_data != one.astype(one.dtype.newbyteorder("<")).tobytes():
        raise TypeError(f"initializer {name!r}: dtype {array.dtype} is not stored as raw little-endian bytes")
    del t.dims[:]
    t.dims.extend(array.shape)
    t.ClearField("raw_data")
    return t.SerializeToString()


def save_streamed(head: onnx.ModelProto, builder: OnnxBuilder, file) -> None:
    """Write ``head`` with ``builder``'s initializers to ``file`` (an open binary file), each initializer's bytes
    written from its array.

    Why not ``onnx.save_model``: it serializes the whole model into one ``bytes`` object first, a second copy of
    every weight beside the proto (the peak of an export); making each tensor's proto and serialization in turn
    still held the largest twice over.  Protobuf merges repeated occurrences of an embedded message field
    (``MergeFrom``: repeated fields are appended), so the file is ``head`` serialized, then a second ``graph`` field
    holding only the initializers: every protobuf reader (onnx, onnxruntime, Netron) parses it as the model
    :meth:`OnnxBuilder.fill` makes in memory (tested)."""
    def field(number: int, payload_size: int) -> bytes:
        return _varint(number << 3 | _LEN) + _varint(payload_size)

    heads = {k: _tensor_head(k, a) for k, a in builder.initializers.items()}
    sizes = {k: len(heads[k]) + len(field(_TENSOR_RAW_DATA, a.nbytes)) + a.nbytes
             for k, a in builder.initializers.items()}
    graph_size = sum(len(field(_GRAPH_INITIALIZER, n)) + n for n in sizes.values())
    file.write(head.SerializeToString())
    file.write(field(_MODEL_GRAPH, graph_size))
    for k, a in builder.initializers.items():
        data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))  # a copy only of a strided array
        file.write(field(_GRAPH_INITIALIZER, sizes[k]))
        file.write(heads[k])
        file.write(field(_TENSOR_RAW_DATA, data.nbytes))
        file.write(memoryview(data.reshape(-1).view(np.uint8)))


def tensor_info(name: str, dims: Sequence, doc: str = "") -> onnx.ValueInfoProto:
    """A float32 graph input/output; string dims are symbolic (e.g. ``"batch"``)."""
    vi = helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))
    if doc:
        vi.doc_string = doc
    return vi
