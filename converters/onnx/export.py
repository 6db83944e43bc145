"""IR graph -> ONNX model: synapses on time-merged batches, neurons unrolled over T steps.

Layout inside the model: synaptic ops (Conv, Gemm, BatchNormalization, pools, Reshape, Add) see
all steps at once as one batch of ``T*B`` samples, ordered step-major (sample ``t*B + b``), so
each weight is stored once however large T is.  A neuron layer splits that batch into its T
steps (``Split`` on axis 0), runs the unrolled ILIF dynamics (:mod:`.neuron`) and concatenates
the spikes back.  With direct encoding the layers before the first neuron see the same frame at
every step, so they run once on ``[B, ...]`` and the neuron reads that tensor at every step.
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import helper

from ilif_deploy import families
from ilif_deploy.errors import GraphError, UserError
from ilif_deploy.ir import nodes as N
from ilif_deploy.ir.graph import Graph

from .builder import OnnxBuilder, tensor_info
from .neuron import (FUNCTION_DOMAIN, SIGMOIDS, emit_layer, emit_leaky_integrator, layer_function, params_doc,
                     recurrent_input)

#: opset of the default ONNX domain the exporter writes (Split with num_outputs needs >= 18)
OPSET = 18
#: ONNX IR version written (9 is what opset 18 needs; older readers accept it)
IR_VERSION = 9
BATCH = "batch"
#: every neuron feature is written op for op as ilif_step computes it (.neuron); the learned decay is a constant
ONNX = families.declare("onnx", families.all_but())


class UnsupportedNodeError(GraphError):
    """An IR node the ONNX exporter has no mapping for; the message names the node and its op."""


# A tensor while building: its name and whether it holds all steps ("merged", [T*B, ...]) or one
# frame that is the same at every step ("static", [B, ...], direct encoding before the first neuron).
Tensor = Tuple[str, str]


def _unsupported(node: N.Node, why: str) -> UnsupportedNodeError:
    return UnsupportedNodeError(
        f"node '{node.name}' (op {node.op!r}, {type(node).__name__}): {why}. The ONNX exporter supports the ops "
        f"{', '.join(SUPPORTED_OPS)}; change the model, or export the IR graph with --target ir instead")


def _pads(p) -> List[int]:
    return [int(p[0]), int(p[1]), int(p[0]), int(p[1])]


def _repeat(b: OnnxBuilder, t: Tensor, T: int, name: str) -> str:
    """A static ``[B, ...]`` tensor as the merged ``[T*B, ...]`` tensor of T identical steps."""
    if t[1] == "merged" or T == 1:
        return t[0]
    return b.op("Concat", [t[0]] * T, f"{name}/repeat_T", axis=0)


def _weighted(b: OnnxBuilder, node, x: str, op: str, **attrs) -> str:
    n = node.name
    ins = [x, b.const(f"{n}.weight", node.weight)] + ([] if node.bias is None else [b.const(f"{n}.bias", node.bias)])
    return b.op(op, ins, n, doc=f"folded: {', '.join(node.folded)}" if node.folded else None, **attrs)


def _conv(b: OnnxBuilder, node: N.Conv2d, x: str, in_shape) -> str:
    return _weighted(b, node, x, "Conv", kernel_shape=list(node.weight.shape[2:]), strides=list(node.stride),
                     pads=_pads(node.padding), dilations=list(node.dilation), group=int(node.groups))


def _affine(b: OnnxBuilder, node: N.Affine, x: str, in_shape) -> str:
    n = node.name
    if node.bn_stats is not None:
        # BatchNormalization computes invstd * weight and bias - mean * that, as torch's kernel
        # does; the precomputed scale/shift would round differently by an ulp.
        mean, var, w, bias = (np.asarray(a, np.float32) for a in node.bn_stats)
        return b.op("BatchNormalization", [x, b.const(f"{n}.weight", w), b.const(f"{n}.bias", bias),
                                           b.const(f"{n}.running_mean", mean),
                                           b.const(f"{n}.running_var", var)], n, epsilon=float(node.eps))
    bshape = [len(node.scale)] + [1] * (len(node.shape) - 1)
    scaled = b.op("Mul", [x, b.const(f"{n}.scale", node.scale.reshape(bshape))], f"{n}/scale")
    return b.op("Add", [scaled, b.const(f"{n}.shift", node.shift.reshape(bshape))], n)


def _sum_pool(b: OnnxBuilder, node: N.SumPool2d, x: str, in_shape) -> str:
    # a ones kernel per channel, as the reference runtime does: exact sums, no divide-multiply
    c = node.shape[0]
    ones = b.const(f"{node.name}.ones", np.ones((c, 1, *node.kernel), np.float32))
    return b.op("Conv", [x, ones], node.name, kernel_shape=list(node.kernel), strides=list(node.stride),
                pads=_pads(node.padding), group=int(c))


def _adaptive_pool(b: OnnxBuilder, node: N.AdaptiveAvgPool2d, x: str, in_shape: Tuple[int, ...]) -> str:
    c, oh, ow = node.shape
    ih, iw = in_shape[1:]
    if (oh, ow) == (1, 1):
        return b.op("GlobalAveragePool", [x], node.name)
    if ih % oh == 0 and iw % ow == 0:
        k = [ih // oh, iw // ow]
        return b.op("AveragePool", [x], node.name, kernel_shape=k, strides=k)
    # windows of different sizes, overlapping, or upsampling (1x1 -> 7x7): the same means as two
    # averaging matrices, A_h @ X @ A_w^T (exact in real arithmetic; sums in another order than torch's)
    a_w = b.const(f"{node.name}.average_w_T", node.averaging(iw, 1).T.astype(np.float32))
    a_h = b.const(f"{node.name}.average_h", node.averaging(ih, 0).astype(np.float32))
    rows = b.op("MatMul", [x, a_w], f"{node.name}/average_w")
    return b.op("MatMul", [a_h, rows], node.name)


def _pool(op: str, **extra):
    def emit(b: OnnxBuilder, node, x: str, in_shape) -> str:
        attrs = {k: f(node) for k, f in extra.items()}
        return b.op(op, [x], node.name, kernel_shape=list(node.kernel), strides=list(node.stride),
                    pads=_pads(node.padding), **attrs)
    return emit


#: synaptic (stateless) IR node type -> ``fn(builder, node, x, in_shape) -> output tensor`` on a batch
SYNAPSES = {
    N.Conv2d: _conv,
    N.Linear: lambda b, node, x, in_shape: _weighted(b, node, x, "Gemm", transB=1),
    N.Affine: _affine,
    N.AvgPool2d: _pool("AveragePool", count_include_pad=lambda n: int(n.count_include_pad)),
    N.SumPool2d: _sum_pool,
    N.MaxPool2d: _pool("MaxPool", dilations=lambda n: list(n.dilation)),
    N.AdaptiveAvgPool2d: _adaptive_pool,
    N.ReLU: lambda b, node, x, in_shape: b.op("Relu", [x], node.name),
    N.Flatten: lambda b, node, x, in_shape: b.op("Reshape", [x, b.shape_const(f"{node.name}/shape",
                                                                             [-1, *node.shape])], node.name),
}
SUPPORTED_OPS = (("input", "output", "add", "neuron", "recurrent_neuron", "leaky_integrator")
                 + tuple(c.op for c in SYNAPSES))


def build_parts(graph: Graph, timesteps: Optional[int] = None, encoding: Optional[str] = None,
                record_spikes: bool = False, opset: int = OPSET, sigmoid: str = "exp",
                functions: bool = False) -> Tuple[onnx.ModelProto, OnnxBuilder]:
    """:func:`build_model`'s model without its initializers, and the builder that holds them (as arrays)."""
    for node in graph.nodes.values():  # before validate(), which knows no ONNX-specific limits
        if node.op not in SUPPORTED_OPS or type(node) is not N.NODE_TYPES.get(node.op):
            raise _unsupported(node, "not an IR node type the exporter knows")
    graph.validate()
    ONNX.check_graph(graph)
    T = int(timesteps or graph.timesteps or 0)
    if T < 1:
        raise UserError("the ONNX export needs the number of time steps: the graph records no 'timesteps' "
                         "(pass timesteps= or --timesteps)")
    if opset < 18:
        raise UserError(f"opset must be >= 18 (Split with num_outputs), got {opset}")
    inp = graph.input_node
    encoding = encoding or inp.encoding
    if encoding not in ("direct", "sequence"):
        raise UserError(f"encoding must be 'direct' or 'sequence', got {encoding!r}")
    if sigmoid not in SIGMOIDS:
        raise UserError(f"sigmoid must be one of {SIGMOIDS}, got {sigmoid!r}")

    b = OnnxBuilder()
    shape = list(inp.shape)
    if encoding == "direct":
        g_in = tensor_info(inp.name, [BATCH, *shape], "one frame per sample, fed at every step (direct encoding)")
        values: Dict[str, Tensor] = {inp.name: (inp.name, "static")}
    else:
        g_in = tensor_info(inp.name, [T, BATCH, *shape], "one frame per step and sample, step-major")
        merged = b.op("Reshape", [inp.name, b.shape_const(f"{inp.name}/merge_shape", [-1, *shape])],
                      f"{inp.name}/merge_T_into_batch")
        values = {inp.name: (merged, "merged")}

    neurons_meta, spike_outputs, outputs, layer_functions = {}, [], [], []
    for name in graph.topological_order():
        node = graph.nodes[name]
        if isinstance(node, N.Input):
            continue
        ins = [values[p] for p in graph.inputs_of(name)]
        if isinstance(node, N.SPIKING):
            x, kind = ins[0]
            if functions and isinstance(node, N.Neuron):
                fn = layer_function(name, node.family, node.params, kind == "static", T, sigmoid, opset)
                layer_functions.append(fn)
                out = b.op(fn.name, [x], name, domain=FUNCTION_DOMAIN, overload=fn.overload,
                           doc=params_doc(name, node.family, node.params))
            else:  # a recurrent layer is unrolled like a neuron, with the recurrent Gemm at every step
                step = recurrent_input(b, node) if isinstance(node, N.RecurrentNeuron) else None
                out = emit_layer(b, name, node.family, node.params, x, kind == "static", T, name, sigmoid, step)
            values[name] = (out, "merged")
            neurons_meta[name] = json.loads(params_doc(name, node.family, node.params))
            if record_spikes:
                spike_outputs.append((out, name, node.shape))
        elif isinstance(node, N.LeakyIntegrator):
            x, kind = ins[0]
            values[name] = (emit_leaky_integrator(b, name, node.lam, x, kind == "static", T), "merged")
        elif isinstance(node, N.Add):
            kinds = {k for _, k in ins}
            kind = "static" if kinds == {"static"} else "merged"
            terms = [t[0] if kind == "static" else _repeat(b, t, T, f"{name}/in{i}") for i, t in enumerate(ins)]
            acc = terms[0]
            for i, other in enumerate(terms[1:], start=1):  # left to right, as the reference adds
                acc = b.op("Add", [acc, other], name if i == len(terms) - 1 else f"{name}/partial{i}")
            values[name] = (acc, kind)
        elif isinstance(node, N.Output):
            x = _repeat(b, ins[0], T, name)
            per_step = b.op("Reshape", [x, b.shape_const(f"{name}/split_shape", [T, -1, *node.shape])],
                            f"{name}/split_T_from_batch", outputs=["output"])
            outputs.append(tensor_info(per_step, [T, BATCH, *node.shape], "per-step outputs"))
            if node.readout == "sum":
                b.op("ReduceSum", [per_step, b.shape_const(f"{name}/time_axis", [0])], f"{name}/sum_over_T",
                     outputs=["logits"], keepdims=0)
                outputs.append(tensor_info("logits", [BATCH, *node.shape], "per-step outputs summed over T"))
        else:
            in_shape = tuple(graph.nodes[graph.inputs_of(name)[0]].shape)
            values[name] = (SYNAPSES[type(node)](b, node, ins[0][0], in_shape), ins[0][1])
    for tensor, name, shp in spike_outputs:
        out = b.op("Reshape", [tensor, b.shape_const(f"{name}/split_shape", [T, -1, *shp])],
                   f"{name}/spikes_per_step", outputs=[f"spikes:{name}"])
        outputs.append(tensor_info(out, [T, BATCH, *shp], f"spikes of neuron layer {name}"))

    doc = (f"ILIF spiking network '{graph.metadata.get('source', '')}' unrolled over T={T} steps by ilif-deploy. "
           f"Input '{inp.name}': " + ("[batch, " if encoding == "direct" else f"[{T}, batch, ")
           + ", ".join(map(str, shape)) + "]. Outputs: 'output' [T, batch, ...] per step"
           + (", 'logits' = sum over T." if any(o.name == "logits" for o in outputs) else "."))
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(FUNCTION_DOMAIN, 1)] if functions else [])
    model = b.make_head(str(graph.metadata.get("source") or "ilif_network"), [g_in], outputs, doc,
                        opset_imports=opsets, producer_name="ilif-deploy", doc_string=doc, functions=layer_functions)
    model.ir_version = 10 if functions else IR_VERSION  # function overloads came with IR version 10
    from ilif_deploy import __version__

    model.producer_version = __version__
    meta = {"ilif_deploy.format": "ilif-deploy-onnx", "ilif_deploy.version": __version__,
            "timesteps": str(T), "encoding": encoding, "input_shape": json.dumps(shape),
            "mpiu_sigmoid": "1/(1+exp(-a))" if sigmoid == "exp" else "Sigmoid op",
            "neuron_functions": str(bool(functions)).lower(),
            "time_layout": "synapses on merged batch [T*batch, ...] (step-major); neurons unrolled per step",
            "source": str(graph.metadata.get("source", "")),
            "ilif.neurons": json.dumps(neurons_meta)}
    helper.set_model_props(model, meta)
    return model, b


def build_model(graph: Graph, timesteps: Optional[int] = None, encoding: Optional[str] = None,
                record_spikes: bool = False, opset: int = OPSET, sigmoid: str = "exp",
                functions: bool = False) -> onnx.ModelProto:
    """Build the ONNX model of ``graph`` unrolled over ``timesteps`` steps (no file is written).

    Args:
        graph: an IR graph (validated here).
        timesteps: T in steps (default: ``graph.metadata["timesteps"]``).
        encoding: ``"direct"``: the model input is one frame ``[B, *input_shape]`` fed at every step;
            ``"sequence"``: the input is ``[T, B, *input_shape]``.  Default: the graph's input encoding.
        record_spikes: also output every neuron layer's spikes ``[T, B, *shape]`` (named
            ``spikes:<layer>``), for checking spike agreement with another backend.
        opset: default-domain opset (>= 18).
        sigmoid: ``"exp"`` writes the MPIU sigmoid as ``1 / (1 + exp(-a))`` (Neg, Exp, Add,
            Reciprocal: closest to torch's kernel), ``"op"`` as the single ONNX ``Sigmoid`` op.
        functions: wrap each neuron layer in a model-local function (op ``ilif_deploy.ILIF``,
            overload = layer name; body of standard ops, inlined by onnxruntime): one node per
            layer in Netron instead of T steps of ~15 ops.  Needs ONNX IR version 10.
    Returns:
        the model; graph outputs ``output`` ``[T, B, *out_shape]`` (per-step outputs) and, for a
        sum readout, ``logits`` ``[B, *out_shape]`` (their sum over T).
    """
    model, builder = build_parts(graph, timesteps, encoding, record_spikes, opset, sigmoid, functions)
    return builder.fill(model)
