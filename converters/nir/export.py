"""IR graph -> NIR graph (standard NIR primitives only, so ``nir.read`` accepts the file).

Mapping (per sample; NIR types never include the batch dimension):

* Conv2d -> ``nir.Conv2d`` (grouped ones with a dense block-diagonal weight, see upstream);
  Linear -> ``nir.Affine`` (with bias) or ``nir.Linear``;
  Affine (an unfolded BN) -> 1x1 ``nir.Conv2d`` with a diagonal weight for ``[C, H, W]`` or a diagonal ``nir.Affine``
  for ``[F]``; AvgPool2d / AdaptiveAvgPool2d (divisible sizes) -> ``nir.AvgPool2d``;
  SumPool2d -> ``nir.SumPool2d``; Flatten -> ``nir.Flatten`` (per-sample dims); Add -> ``nir.Scale`` of
  ones with several incoming edges (NIR sums a node's inputs).
* LIF (ILIF with both inhibitory units off) -> ``nir.LIF`` with ``tau = dt/(1-lam)``, ``r = tau/dt``
  (``nir.IF`` with ``r = 1/dt`` when ``lam = 1``),
  ``v_leak = 0``, ``v_reset`` (0 for soft reset).  NIR's LIF resets *to* ``v_reset`` and fires on ``>``;
  ilif-deploy's soft reset (subtract ``v_th``) and ``>=`` are written in the node's metadata.
* ILIF -> a nested ``nir.NIRGraph`` (see :func:`ilif_subgraph`) whose compartments are standard
  primitives with recurrent edges, plus the exact parameters in metadata.
* LeakyIntegrator -> ``nir.LI``.

Every node carries ``metadata["ilif_deploy"]`` (JSON) and the top graph the IR's node order, edges and
run settings, so :func:`ilif_deploy.converters.nir.importer.from_nir` restores the IR exactly.
"""
from __future__ import annotations

import json
from typing import Dict, Optional, Tuple

import nir
import numpy as np

from ilif_deploy import families
from ilif_deploy import ir as N
from ilif_deploy.errors import GraphError
from ilif_deploy.ir.graph import Graph
from ilif_deploy.neuron_step import ILIFParams

from .conventions import DEFAULT_DT, META_FORMAT, META_KEY, META_VERSION, tau_from_lam
from .upstream import dense_group_weight

#: the extra reset per spike standing in for ``S * sigmoid(mpiu)`` in the linear realisation:
#: sigmoid(0), the value at the MPIU's resting state (NIR has neither a product nor a sigmoid)
MPIU_LINEAR_RESET = 0.5


class NIRExportError(GraphError):
    """The graph holds something NIR cannot express; the message names the node."""


def _full(shape, value) -> np.ndarray:
    """A per-neuron array of one value (nir.read's type checks break on scalar parameters), as a read-only view of a
    single float32: the file stores every value, but a ResNet-18's graph held 27 MB of copies of a few numbers."""
    return np.broadcast_to(np.float32(value), tuple(shape))


def _nir_name(name: str) -> str:
    # '/' separates HDF5 groups; everything else is a legal group name
    return name.replace("/", "|")


def _node_meta(node: N.Node, **extra) -> dict:
    """The node's one serialised form (:meth:`~ilif_deploy.ir.Node.to_dict`) with the names of the
    arrays it holds; the arrays themselves are in the standard NIR node (``bn_stats`` in metadata)."""
    entry, arrays = node.to_dict()
    entry["arrays"] = sorted(arrays)
    entry.update(extra)
    return entry


def _meta(entry: dict, arrays: Optional[Dict[str, np.ndarray]] = None) -> dict:
    out = {META_KEY: json.dumps(entry)}
    for k, v in (arrays or {}).items():
        out[k] = np.asarray(v, dtype=np.float32)
    return out


def lif_node(p: ILIFParams, shape, dt: float, metadata: Optional[dict] = None) -> nir.NIRNode:
    """``nir.LIF`` (or ``nir.IF`` for ``lam == 1``) for a LIF layer of per-sample ``shape``."""
    if p.lam == 1.0:
        return nir.IF(r=_full(shape, 1.0 / dt), v_threshold=_full(shape, p.v_th), v_reset=_full(shape, p.v_reset),
                      metadata=metadata or {})
    tau = tau_from_lam(p.lam, dt)
    # NIR's LIF leaks toward v_leak and scales its input by dt/tau: SpikingJelly's decay_input charge is exactly
    # that (r = 1); the other charges take the input unscaled (r = tau/dt)
    r = 1.0 if p.charge == "decay_input" else tau / dt
    return nir.LIF(tau=_full(shape, tau), r=_full(shape, r), v_leak=_full(shape, p.rest if p.charge != "lam" else 0.0),
                   v_threshold=_full(shape, p.v_th), v_reset=_full(shape, p.v_reset), metadata=metadata or {})


def ilif_subgraph(p: ILIFParams, shape, dt: float, metadata: Optional[dict] = None) -> nir.NIRGraph:
    """ILIF as a nested NIR graph of standard primitives: the closest *linear* realisation.

    Compartments (names as in torch, Lava and the reports)::

        input -> v (nir.LI: membrane, decay lam, gain 1) -> spike (nir.Threshold v_th) -> output
        spike -> reset (nir.Scale -lam*v_th) -> v            soft reset, exact
        spike -> mpiu  (nir.Scale -lam*k)     -> v            MPIU: k = sigmoid(0) per spike, instead of
                                                              sigmoid(mpiu[t]) (no product/sigmoid in NIR)
        spike -> ciu (nir.LI: decay lam_i, gain lam_i*v_th) -> ciu_inhibit (nir.Scale -1) -> v
                                                              CIU: drive v_th per spike instead of S*c

    Recurrent edges act one step later in a discrete executor, which is where the reset and the
    inhibition belong (they shape U[t+1]); the factor ``lam`` on reset/MPIU is the membrane decay
    that ILIF applies to the reset membrane.  Exact up to the linearisations named above and
    NIR's ``>`` spike rule (ILIF fires on ``>=``).
    """
    s = tuple(shape)
    tau = tau_from_lam(p.lam, dt)
    nodes = {
        "input": nir.Input(input_type=np.array(s)),
        "v": nir.LI(tau=_full(s, tau), r=_full(s, tau / dt), v_leak=_full(s, 0.0)),
        "spike": nir.Threshold(threshold=_full(s, p.v_th)),
        "reset": nir.Scale(scale=_full(s, -p.lam * p.v_th)),
        "output": nir.Output(output_type=np.array(s)),
    }
    edges = [("input", "v"), ("v", "spike"), ("spike", "output"), ("spike", "reset"), ("reset", "v")]
    if p.mpiu_enabled:
        nodes["mpiu"] = nir.Scale(scale=_full(s, -p.lam * MPIU_LINEAR_RESET))
        edges += [("spike", "mpiu"), ("mpiu", "v")]
    if p.ciu_enabled:
        tau_i = tau_from_lam(p.lam_i, dt)
        gain = p.lam_i * p.v_th  # per-step input gain r*dt/tau_i
        nodes["ciu"] = nir.LI(tau=_full(s, tau_i), r=_full(s, gain * tau_i / dt), v_leak=_full(s, 0.0))
        nodes["ciu_inhibit"] = nir.Scale(scale=_full(s, -1.0))
        edges += [("spike", "ciu"), ("ciu", "ciu_inhibit"), ("ciu_inhibit", "v")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata or {})


def recurrent_subgraph(node: N.RecurrentNeuron, dt: float, metadata: Optional[dict] = None) -> nir.NIRGraph:
    """A RecurrentNeuron as the nested graph snntorch writes for ``RLeaky`` (and reads back)::

        input -> lif (nir.LIF, or nir.CubaLIF with a synaptic current) -> output
        lif -> w_rec (nir.Affine, the recurrent weight and bias) -> lif    one step later in a discrete run

    The layer's gains become the neuron's ``r``/``v_leak``/``w_in`` under forward Euler (``lam = 1 - dt/tau``)."""
    p, s = node.params, tuple(node.shape)
    if not p.is_lif:
        raise NIRExportError(f"node '{node.name}' (recurrent_neuron): a recurrent ILIF layer has no NIR form yet "
                             f"(recurrent LIF/CubaLIF layers do)")
    tau = tau_from_lam(p.lam, dt)
    th, reset = _full(s, p.v_th), _full(s, p.v_reset)
    if node.syn_lam == 0.0:
        gain, leak = node.in_scale * node.mem_scale, node.in_shift * node.mem_scale + node.mem_shift
        neuron = nir.LIF(tau=_full(s, tau), r=_full(s, gain * tau / dt), v_leak=_full(s, leak * tau / dt),
                         v_threshold=th, v_reset=reset)
    else:
        if node.in_shift != 0.0:
            raise NIRExportError(f"node '{node.name}' (recurrent_neuron): a shift into the synaptic current has "
                                 f"no NIR CubaLIF form")
        tau_syn = tau_from_lam(node.syn_lam, dt)
        neuron = nir.CubaLIF(tau_syn=_full(s, tau_syn), tau_mem=_full(s, tau), r=_full(s, node.mem_scale * tau / dt),
                             v_leak=_full(s, node.mem_shift * tau / dt), v_threshold=th, v_reset=reset,
                             w_in=_full(s, node.in_scale * tau_syn / dt))
    bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0], np.float32)
    nodes = {"input": nir.Input(input_type=np.array(s)), "lif": neuron,
             "w_rec": nir.Affine(weight=node.weight, bias=bias), "output": nir.Output(output_type=np.array(s))}
    edges = [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata or {})


#: NIR has one spike rule and one reset (reset to v_reset, ">"); what a layer does beyond them is written as the
#: nearest NIR neuron plus the exact parameters in metadata (read back exactly here), and said in words
NIR_EXPORT = families.declare("nir", families.all_but("spike:delta"), {
    "spike:delta": "NIR has no graded (sigma-delta) neuron: its neurons send 0/1 spikes; export it as --target netx"})


def conventions(p: ILIFParams) -> dict:
    """What the standard NIR neuron of a layer leaves out, in words (the node's metadata)."""
    reset = {"subtract": "soft: subtract v_th at the spike (NIR v_reset ignored)",
             "subtract_next": "snntorch's: subtract v_th at the next step, after the decay (NIR v_reset ignored)",
             "zero": f"hard: to v_reset = {p.v_reset}"}[p.reset]
    charge = {"lam": "forward Euler, lam = 1 - dt/tau, input gain r*dt/tau = 1",
              "decay_input": "forward Euler: U = v + (I - (v - v_leak)) dt/tau (SpikingJelly's decay_input; r = 1)",
              "leak": "forward Euler: U = v - (v - v_leak) dt/tau + I (SpikingJelly 2.0's decay_input=False)"}
    out = {"discretisation": charge[p.charge], "reset": reset,
           "threshold": ("S = (U > 0) * trunc(U / v_th) spikes per step (multi-spike; sinabs reads nir.IF so)"
                         if p.multi_spike else f"S = U {p.compare} v_th")}
    if p.v_min is not None:
        out["membrane_floor"] = f"v = relu(v - v_min) + v_min, v_min = {p.v_min}"
    if p.learned_decay:
        out["learned_decay"] = "lam was trained (PLIF); a constant here"
    return out


def _pool_args(node) -> dict:
    return {"kernel_size": np.array(node.kernel), "stride": np.array(node.stride), "padding": np.array(node.padding)}


def node_to_nir(node: N.Node, in_shape: Tuple[int, ...], dt: float) -> nir.NIRNode:
    """One IR node as one NIR node (with ilif-deploy metadata)."""
    entry = _node_meta(node)
    if isinstance(node, N.Input):
        return nir.Input(input_type=np.array(node.shape), metadata=_meta(entry))
    if isinstance(node, N.Output):
        return nir.Output(output_type=np.array(node.shape), metadata=_meta(entry))
    if isinstance(node, N.Conv2d):
        bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0], np.float32)
        return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=dense_group_weight(node.weight, node.groups),
                          stride=tuple(node.stride), padding=tuple(node.padding), dilation=tuple(node.dilation),
                          groups=1, bias=bias, metadata=_meta(entry))
    if isinstance(node, N.Linear):
        if node.bias is None:
            return nir.Linear(weight=node.weight, metadata=_meta(entry))
        return nir.Affine(weight=node.weight, bias=node.bias, metadata=_meta(entry))
    if isinstance(node, N.Affine):
        arrays = {"bn_stats": node.bn_stats} if node.bn_stats is not None else {}
        if len(node.shape) == 1:
            return nir.Affine(weight=np.diag(node.scale), bias=node.shift, metadata=_meta(entry, arrays))
        if len(node.shape) == 3:  # a 1x1 convolution with a diagonal weight (see upstream.dense_group_weight)
            c = node.shape[0]
            w = dense_group_weight(node.scale.reshape(c, 1, 1, 1), c)
            return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=w, stride=(1, 1), padding=(0, 0),
                              dilation=(1, 1), groups=1, bias=node.shift, metadata=_meta(entry, arrays))
        raise NIRExportError(f"node '{node.name}' (affine): per-channel affine of a {len(node.shape)}-d tensor "
                             f"{list(node.shape)} has no NIR form (supported: [F] and [C, H, W])")
    if isinstance(node, N.AvgPool2d):
        if not node.count_include_pad and any(node.padding):
            raise NIRExportError(f"node '{node.name}' (avgpool2d): count_include_pad=False with padding: no NIR form")
        return nir.AvgPool2d(**_pool_args(node), metadata=_meta(entry))
    if isinstance(node, N.SumPool2d):
        return nir.SumPool2d(**_pool_args(node), metadata=_meta(entry))
    if isinstance(node, N.AdaptiveAvgPool2d):
        h, w = in_shape[1:]
        oh, ow = node.output_size
        if h % oh or w % ow:
            raise NIRExportError(f"node '{node.name}' (adaptive_avgpool2d): input {h}x{w} is not a multiple of the "
                                 f"output {oh}x{ow}, so it is no fixed NIR AvgPool2d (it can be folded into a "
                                 "Flatten -> Linear right after it, but this one is followed by something else)")
        k = (h // oh, w // ow)
        return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(k), padding=np.array((0, 0)),
                             metadata=_meta(entry))
    if isinstance(node, N.Flatten):
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=int(node.start_dim),
                           end_dim=int(node.end_dim), metadata=_meta(entry))
    if isinstance(node, N.Add):
        return nir.Scale(scale=_full(node.shape, 1.0), metadata=_meta(entry))
    if isinstance(node, N.Neuron):
        p = node.params
        entry["dt"] = dt
        entry["conventions"] = conventions(p)
        if p.is_lif:
            return lif_node(p, node.shape, dt, metadata=_meta(entry))
        entry["conventions"]["linear_realisation"] = (
            f"MPIU as a constant extra reset {MPIU_LINEAR_RESET} per spike; CIU driven by v_th per spike")
        return ilif_subgraph(p, node.shape, dt, metadata=_meta(entry))
    if isinstance(node, N.RecurrentNeuron):
        entry["dt"], entry["conventions"] = dt, conventions(node.params)
        return recurrent_subgraph(node, dt, metadata=_meta(entry))
    if isinstance(node, N.LeakyIntegrator):
        s = node.shape
        if node.lam == 1.0:
            return nir.I(r=_full(s, 1.0 / dt), metadata=_meta(entry))
        tau = tau_from_lam(node.lam, dt)
        return nir.LI(tau=_full(s, tau), r=_full(s, tau / dt), v_leak=_full(s, 0.0), metadata=_meta(entry))
    if isinstance(node, N.MaxPool2d):
        raise NIRExportError(f"node '{node.name}' (maxpool2d): NIR has no max pooling; use average pooling "
                             "or export to another target")
    if isinstance(node, N.ReLU):
        raise NIRExportError(f"node '{node.name}' (relu): an ANN activation; NIR describes spiking networks (its "
                             f"graph runs in the runtime, ONNX and the energy report)")
    raise NIRExportError(f"node '{node.name}': op {node.op!r} has no NIR mapping")


def _pool_folds(graph: Graph) -> Dict[str, Tuple[str, str]]:
    """Adaptive pools with uneven, overlapping or upsampling windows (no NIR AvgPool2d) that feed only a
    Flatten -> Linear: {pool: (flatten, linear)}.  NIR gets the pooling folded into the linear map."""
    folds = {}
    for pool in graph.of_type(N.AdaptiveAvgPool2d):
        (h, w), (oh, ow) = graph.nodes[graph.inputs_of(pool.name)[0]].shape[1:], pool.output_size
        chain = graph.consumers_of(pool.name)
        if (h % oh or w % ow) and len(chain) == 1 and isinstance(graph.nodes[chain[0]], N.Flatten):
            nxt = graph.consumers_of(chain[0])
            if len(nxt) == 1 and isinstance(graph.nodes[nxt[0]], N.Linear) and graph.nodes[chain[0]].start_dim == 0:
                folds[pool.name] = (chain[0], nxt[0])
    return folds


def _folded_nodes(graph: Graph, pool_name: str, flat: str, lin: str, dt: float) -> Dict[str, nir.NIRNode]:
    """adaptive pool -> flatten -> linear as NIR Flatten -> Scale(1) -> Affine(W @ P): the same map with
    the pooling matrix P folded into the weight; the metadata keeps every IR node (and W) exactly."""
    pool, linear = graph.nodes[pool_name], graph.nodes[lin]
    c, h, w = graph.nodes[graph.inputs_of(pool_name)[0]].shape
    p = np.kron(np.eye(c), np.kron(pool.averaging(h, 0), pool.averaging(w, 1)))  # [C*oh*ow, C*h*w]
    weight = (linear.weight.astype(np.float64) @ p).astype(np.float32)
    bias = linear.bias if linear.bias is not None else np.zeros(weight.shape[0], np.float32)
    note = {"folded_into": lin, "realisation": "adaptive pool folded into the linear map after it"}
    return {pool_name: nir.Flatten(input_type={"input": np.array((c, h, w))}, start_dim=0, end_dim=-1,
                                   metadata=_meta(_node_meta(pool, **note))),
            flat: nir.Scale(scale=_full((c * h * w,), 1.0), metadata=_meta(_node_meta(graph.nodes[flat], **note))),
            lin: nir.Affine(weight=weight, bias=bias, metadata=_meta(_node_meta(linear, **note),
                                                                     {"weight": linear.weight}))}


def to_nir(graph: Graph, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """The IR ``graph`` as a type-checked NIR graph (``dt``: step in seconds for NIR time constants)."""
    graph.validate()
    NIR_EXPORT.check_graph(graph)
    folded = {}
    for pool, (flat, lin) in _pool_folds(graph).items():
        folded.update(_folded_nodes(graph, pool, flat, lin, dt))
    names = {n: _nir_name(n) for n in graph.nodes}
    if len(set(names.values())) != len(names):
        raise NIRExportError("node names collide after replacing '/' (HDF5 separator); rename the nodes")
    nodes = {}
    for name in graph.topological_order():
        node = graph.nodes[name]
        preds = graph.inputs_of(name)
        in_shape = tuple(graph.nodes[preds[0]].shape) if preds else tuple(node.shape)
        if name in folded:
            nodes[names[name]] = folded[name]
            continue
        try:
            nodes[names[name]] = node_to_nir(node, in_shape, dt)
        except NIRExportError:
            raise
        except (ValueError, AssertionError) as e:
            raise NIRExportError(f"node '{name}' ({node.op}): {e}") from None
    edges = [(names[s], names[t]) for s, t in graph.edges]
    header = {"format": META_FORMAT, "version": META_VERSION, "dt": dt, "metadata": graph.metadata,
              "order": list(graph.nodes), "edges": [list(e) for e in graph.edges], "names": names}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={META_KEY: json.dumps(header, default=_json_default)})


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"metadata value {o!r} of type {type(o).__name__} is not JSON-serialisable")
