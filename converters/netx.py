"""lava-dl netx networks (``.net``, HDF5) read into the IR -- for energy reports, NIR, ONNX and simulation
of what lava-dl users have.  Needs h5py only (not lava-dl).

netx layout (lava-dl 0.6.0, ``lava.lib.dl.netx.hdf5``): ``/layer/<i>`` with ``type`` (``input``, ``dense``,
``conv``, ``flatten``, ...), ``shape`` (C, H, W), ``weight``, ``bias`` and a ``neuron`` group
(``type`` CUBA or LOIHI, ``iDecay``, ``vDecay``, ``vThMant``, ``refDelay``, ``gradedSpike``, ``wgtExp``).

Loihi's CUBA neuron, in the units of the weights (Loihi scales weights and threshold by 2**6 alike)::

    u[t] = (1 - iDecay/4096) u[t-1] + sum(w 2**wgtExp s)       current
    v[t] = (1 - vDecay/4096) v[t-1] + u[t] + bias              voltage
    s[t] = v[t] > vThMant;  v[t] = 0 where s[t]                 hard reset

as IR nodes (a ``dense_rec`` block: Linear -> RecurrentNeuron): Linear/Conv2d (bias folded in when the current
does not decay) -> [LeakyIntegrator
(1 - iDecay/4096)] -> [Affine shift bias] -> Neuron(lam = 1 - vDecay/4096, v_th = vThMant, reset to 0, '>').
This is the float reading: Loihi rounds each decay toward zero in 12-bit fixed point, so spikes can differ
from lava-dl's fixed-point run where a membrane lands next to the threshold.  The input layer (a neuron
that encodes ``x * weight + bias``) becomes Affine -> Neuron.  SDNN (sigma-delta) layers read as netx runs them
with lava's ``lava.proc.sdn`` processes: the input layer a delta encoder of the frames (``Delta``), every other
layer synapse -> sigma (``LeakyIntegrator(lam=1)``) -> [bias] -> delta encoder of its ReLU (``SigmaDelta``), a
``sigma_output`` layer the sigma alone -- in the threshold's units (``vThMant``; a graded message weighs ``W / 64``,
a 0/1 spike ``W / 4096``).  What has no IR form is refused by name: CUBA ``gradedSpike``, refractory periods > 1
step, pooling/transposed/average layers.

Writing (:func:`export_graph`, ``ilif-export --target netx``) goes the other way for what netx can run: spike
input -> (Linear or Conv2d -> [LeakyIntegrator] -> LIF with hard reset to 0 and the ``>`` rule) per layer, each
layer a netx ``dense`` / ``conv`` block with a CUBA neuron (``iDecay`` from the current's decay; 4096 when there
is none), a recurrent LIF (``RecurrentNeuron``) a ``dense_rec`` block, flattens as ``flatten`` layers.  netx has
no ILIF neuron and no soft reset (Loihi's CUBA resets to zero), and adds biases to the voltage, not to a
decaying current: those are refused by name, as are pooling and residual layers and a non-spiking readout.
BatchNorm is folded into the synapse first.  Loihi computes in integers: each layer's weights, bias and
threshold are scaled by one power of two (the largest that keeps the weights within Loihi's 8-bit mantissas of
-256 .. 254) and rounded; ``info["rounding"]`` says how far any value moved.  The decays ``vDecay = (1 - lam)
4096`` (and ``iDecay``) are rounded the same way, and Loihi truncates each decayed value: spikes equal the float
network's where those are exact (``lam = 1``, or dyadic values), as the tests with lava-dl's own loader show.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ilif_deploy import families
from ilif_deploy import ir as N
from ilif_deploy.errors import UserError
from ilif_deploy.ir.graph import Graph
from ilif_deploy.neuron_step import ILIFParams

DECAY_ONE = 4096
#: lava-dl's netx: graded spikes carry 6 fractional bits (``spike_exp``) and a sigma-delta's states 6 more
#: (``state_exp``); an SDNN layer's messages are 16 bits unless its neuron group says ``messageBits``
SPIKE_EXP, SDNN_MESSAGE_BITS = 6, 16


def _sdnn_weight_scale(graded: bool) -> float:
    """A sigma-delta's file weight per unit of its threshold's: its sum is compared with vThMant << 12 (spike_exp +
    state_exp), so a graded message (payload << 6) weighs W / 2**6 and a 0/1 spike W / 2**12."""
    return 2.0 ** (SPIKE_EXP if graded else 2 * SPIKE_EXP)


class NetxError(UserError):
    """A netx file this reader cannot express; the message names the layer and what it holds."""


def looks_like_netx(f) -> bool:
    """An open h5py File laid out as netx writes it (no ilif-deploy format attribute, /layer/0/type)."""
    return "format" not in f.attrs and "layer" in f and "0" in f["layer"] and "type" in f["layer/0"]


def _str(v) -> str:
    v = np.asarray(v).reshape(-1)[0] if np.ndim(v) else v
    return v.decode() if isinstance(v, bytes) else str(v)


def _sdnn(path, i: int, n: dict, input_layer: bool):
    """(None, ILIFParams or None, weight exponent) of an SDNN neuron group, as netx runs it: the input layer a
    ``Delta`` encoder of its input, ``sigma_output`` a ``Sigma`` integrator (params None: the readout), every other
    layer a ``SigmaDelta`` (sigma, ReLU of sigma + bias, delta encoder).  netx passes no activation to them: ReLU,
    lava's default, whatever the file says."""
    act = _str(n.get("activation", b"relu"))
    if act != "relu" and not input_layer:
        raise NetxError(f"{path}: layer {i}: SDNN activation {act!r}: lava-dl's netx runs every sigma-delta layer with "
                        f"ReLU (it passes no activation to lava's SigmaDelta), so the file would not run as it says")
    if bool(n.get("cum_error", False)) or bool(n.get("cumError", False)):
        raise NetxError(f"{path}: layer {i}: cumulative-error delta encoding is not expressible here")
    bits = int(n.get("messageBits", SDNN_MESSAGE_BITS))
    if not 1 <= bits <= 24:
        raise NetxError(f"{path}: layer {i}: messageBits = {bits} is outside [1, 24]")
    if "sigma_output" in n and not input_layer:
        return None, None, int(n.get("wgtExp", 0)), bits
    v_th = float(n.get("vThMant", 0))
    if not v_th >= 0:  # 0: every change is sent (lava-dl's PilotNet SDNN has such layers)
        raise NetxError(f"{path}: layer {i}: vThMant = {v_th:g} must be >= 0")
    return None, ILIFParams(lam=1.0, v_th=v_th, lam_u=0.0, lam_i=0.0, delta="unit" if input_layer else "relu"), \
        int(n.get("wgtExp", 0)), bits


def _neuron(path, i: int, g, layer_name: str, input_layer: bool = False):
    """(current decay lam_i or None, ILIFParams, weight exponent, message bits) of /layer/i/neuron (message bits:
    0 for 0/1 spikes)."""
    if "neuron" not in g:
        raise NetxError(f"{path}: layer {i} ({_str(g['type'][()])}) has no neuron")
    n = {k: g["neuron"][k][()] for k in g["neuron"]}
    kind = _str(n.get("type", b"?"))
    if kind == "SDNN":
        return _sdnn(path, i, n, input_layer)
    if kind not in ("CUBA", "LOIHI"):
        raise NetxError(f"{path}: layer {i}: neuron type {kind} is not expressible here (CUBA, LOIHI and SDNN are)")
    if bool(n.get("gradedSpike", False)):
        raise NetxError(f"{path}: layer {i}: graded spikes (sigma-delta / SDNN) are not expressible here")
    if int(n.get("refDelay", 1)) > 1:
        raise NetxError(f"{path}: layer {i}: a refractory period of {int(n['refDelay'])} steps is not expressible")
    i_decay, v_decay = int(n.get("iDecay", DECAY_ONE)), int(n.get("vDecay", 0))
    for key, v in (("iDecay", i_decay), ("vDecay", v_decay)):
        if not 0 <= v <= DECAY_ONE:
            raise NetxError(f"{path}: layer {i}: {key} = {v} is outside [0, 4096]")
    v_th = float(n.get("vThMant", 0))
    if not v_th > 0:
        raise NetxError(f"{path}: layer {i}: vThMant = {v_th:g} must be > 0")
    params = ILIFParams(lam=1.0 - v_decay / DECAY_ONE, v_th=v_th, lam_u=0.0, lam_i=0.0, reset="zero",
                        v_reset=0.0, compare=">")
    lam_current = None if i_decay == DECAY_ONE else 1.0 - i_decay / DECAY_ONE
    return lam_current, params, int(n.get("wgtExp", 0)), 0


def _recurrent_neuron(path, i: int, lay, name: str, params: ILIFParams, lam_c, wgt_exp: int, bias):
    """A ``dense_rec`` block's neuron: its recurrent weights feed the current as the input weights do;
    netx adds the bias to the voltage, which is the current's input when the current does not persist."""
    w = np.asarray(lay["weight_rec"][()], np.float64) * 2.0 ** wgt_exp
    n = w.shape[0] if w.ndim == 2 else int(np.prod(lay["shape"][()]))
    w = w.reshape(n, n)
    if lam_c is not None and bias is not None and np.any(bias):
        if not np.all(bias == bias[0]):
            raise NetxError(f"{path}: layer {i}: a per-neuron bias after a decaying current of a recurrent layer "
                            f"is not expressible here")
        return N.RecurrentNeuron(name, params=params, weight=w.astype(np.float32), syn_lam=lam_c,
                                 mem_shift=float(bias[0]))
    return N.RecurrentNeuron(name, params=params, weight=w.astype(np.float32),
                             bias=None if bias is None else np.broadcast_to(bias, (n,)).astype(np.float32),
                             syn_lam=0.0 if lam_c is None else lam_c)


def read_netx(path, timesteps=None) -> Graph:
    """IR graph of the netx file at ``path`` (see the module docstring); ``timesteps`` sets T (netx files
    store none)."""
    from .hdf5_safety import check_self_contained

    path = Path(path)
    check_self_contained(path)
    try:
        return _read(path, timesteps)
    except NetxError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:  # h5py on damaged bytes
        raise NetxError(f"{path}: not a readable netx network ({type(e).__name__}: {e})") from None


def _read(path: Path, timesteps) -> Graph:
    import h5py

    with h5py.File(path, "r") as f:
        if not looks_like_netx(f):
            raise NetxError(f"{path}: not a lava-dl netx network (no /layer/0/type)")
        layers = f["layer"]
        try:
            order = sorted(layers, key=int)
        except ValueError:
            raise NetxError(f"{path}: layer groups must be numbered 0, 1, ...") from None
        from .lava.fixed import LOIHI_INTEGERS  # numpy only: no Lava import

        g = Graph(metadata={"timesteps": int(timesteps) if timesteps else None, "source": "netx",
                            "fixed_point": {**LOIHI_INTEGERS, "from": "the netx file (Loihi's own integers)"}})
        prev, shape, readout = None, None, None
        graded = False  # does the layer before send graded messages (an SDNN layer's deltas)?
        for idx in order:
            lay = layers[idx]
            i = int(idx)
            kind = _str(lay["type"][()])
            name = f"layer{i}"
            if kind == "input":
                shape = tuple(int(s) for s in lay["shape"][()])
                g.add(N.Input("input", shape, encoding="sequence"))
                if "neuron" not in lay:  # only the input's shape: spikes come in as they are
                    g.metadata["input_kind"] = "spikes"
                    prev = "input"
                    continue
                lam_c, params, _, bits = _neuron(path, i, lay, name, input_layer=True)
                if params.delta is not None:  # netx's Delta encoder of the input frames
                    if "weight" in lay or "bias" in lay:
                        raise NetxError(f"{path}: layer {i}: an SDNN input layer with a weight or bias (lava's Delta "
                                        f"process takes neither, so netx cannot run it)")
                    g.add(N.Neuron(name, params=params), ["input"])
                    g.metadata["input_kind"] = "analog"
                    g.metadata.setdefault("message_bits", {})[name] = bits
                    prev, graded = name, True
                    continue
                scale = float(np.asarray(lay["weight"][()]).reshape(-1)[0]) if "weight" in lay else 1.0
                shift = float(np.asarray(lay["bias"][()]).reshape(-1)[0]) if "bias" in lay else 0.0
                g.add(N.Affine(f"{name}.encode", scale=np.full(shape[0], scale, np.float32),
                               shift=np.full(shape[0], shift, np.float32), source="gain"), ["input"])
                g.add(N.Neuron(name, params=params), [f"{name}.encode"])
                prev = name
                continue
            if prev is None:  # no input layer (e.g. the oxford tutorial): a flat input of inFeatures
                shape = (int(lay["inFeatures"][()]),) if "inFeatures" in lay else None
                if shape is None:
                    raise NetxError(f"{path}: the first layer ({kind}) gives no input size")
                g.add(N.Input("input", shape, encoding="sequence"))
                g.metadata["input_kind"] = "spikes"  # a synapse first: netx feeds it spikes
                prev = "input"
            if kind == "flatten":
                g.add(N.Flatten(name), [prev])
                prev = name
                continue
            if kind not in ("dense", "dense_rec", "conv"):
                raise NetxError(f"{path}: layer {i}: type {kind!r} is not expressible here (input, dense, "
                                f"dense_rec, conv, flatten are)")
            if readout is not None:
                raise NetxError(f"{path}: layer {readout} has no neuron (netx runs it as a non-spiking integrator, "
                                f"a readout) but layer {i} follows it: it would receive nothing")
            if "neuron" not in lay and kind == "conv":
                raise NetxError(f"{path}: layer {i} (conv) has no neuron group: lava-dl's netx cannot run that either "
                                f"(its create_conv reads the neuron group unconditionally); only a dense layer "
                                f"without one is a readout")
            sdnn = "neuron" in lay and _str(lay["neuron"]["type"][()]) == "SDNN"
            if graded and not sdnn:
                raise NetxError(f"{path}: layer {i} ({kind}) is not a sigma-delta layer but takes the graded messages "
                                f"of the SDNN layer before it; that mix is not expressible here")
            if "neuron" not in lay and kind == "dense":
                # netx's default for a layer without a neuron: CUBA with iDecay 0 (the current never decays), vDecay
                # 4096 (v = u + bias each step) and a threshold v never reaches -- a non-spiking readout
                readout, wgt_exp = i, 0
                lam_c, params = 1.0, None
            else:
                lam_c, params, wgt_exp, bits = _neuron(path, i, lay, name)
            w = np.asarray(lay["weight"][()], np.float64) * 2.0 ** wgt_exp
            bias = np.asarray(lay["bias"][()], np.float32).reshape(-1) if "bias" in lay else None
            if sdnn:
                w = w / _sdnn_weight_scale(graded)
                lam_c = 1.0  # the sigma: a sum that never decays, the bias after it
                if params is None:
                    readout = i
                    if bias is not None and np.any(bias):
                        raise NetxError(f"{path}: layer {i}: a bias on a sigma_output layer (lava's Sigma process "
                                        f"takes none, so netx cannot run it)")
                else:
                    g.metadata.setdefault("message_bits", {})[name] = bits
                graded = params is not None
            if kind == "conv":
                w = w.reshape(w.shape[:4]) if w.ndim == 5 else w  # slayer's (out, in, kh, kw, 1)
                syn = N.Conv2d(f"{name}.synapse", weight=w.astype(np.float32),
                               bias=bias if lam_c is None else None,
                               stride=tuple(int(v) for v in lay["stride"][()]),
                               padding=tuple(int(v) for v in lay["padding"][()]),
                               dilation=tuple(int(v) for v in lay["dilation"][()]), groups=int(lay["groups"][()]))
            else:
                out_f = int(lay["outFeatures"][()]) if "outFeatures" in lay else w.shape[0]
                w = w.reshape(out_f, -1)
                if prev != "input" and len(g.nodes[prev].shape or ()) > 1:
                    g.add(N.Flatten(f"{name}.flatten"), [prev])
                    prev = f"{name}.flatten"
                syn = N.Linear(f"{name}.synapse", weight=w.astype(np.float32), bias=bias if lam_c is None else None)
            g.add(syn, [prev])
            prev = syn.name
            if kind == "dense_rec":
                g.add(_recurrent_neuron(path, i, lay, name, params, lam_c, wgt_exp, bias), [prev])
                syn.bias = None
                prev = name
                _infer(g, path)
                continue
            current = f"{name}.sigma" if sdnn else f"{name}.current"
            if params is None:  # the readout: y[t] = u[t] + bias, u[t] = u[t-1] + W s[t]
                syn.bias = None
                g.add(N.LeakyIntegrator(current, lam=lam_c), [prev])
                prev = current
                if bias is not None and np.any(bias):
                    c = syn.weight.shape[0]
                    g.add(N.Affine(name, scale=np.ones(c, np.float32),
                                   shift=np.broadcast_to(bias, (c,)).astype(np.float32), source="gain"), [prev])
                    prev = name
                _infer(g, path)
                continue
            if lam_c is not None:
                g.add(N.LeakyIntegrator(current, lam=lam_c), [prev])
                prev = current
                if bias is not None and np.any(bias):
                    c = syn.weight.shape[0]
                    g.add(N.Affine(f"{name}.bias", scale=np.ones(c, np.float32),
                                   shift=np.broadcast_to(bias, (c,)).astype(np.float32), source="gain"), [prev])
                    prev = f"{name}.bias"
            g.add(N.Neuron(name, params=params), [prev])
            prev = name
            _infer(g, path)
        g.add(N.Output("output"), [prev])
        _infer(g, path)
    return g.validate()


def _infer(g: Graph, path) -> None:
    from ilif_deploy.ir.graph import infer_shape

    try:
        for name in g.topological_order():
            node = g.nodes[name]
            if not isinstance(node, N.Input) and not node.shape:  # only the nodes added since the last call
                node.shape = infer_shape(node, [tuple(g.nodes[p].shape) for p in g.inputs_of(name)])
    except (UserError, ValueError) as e:
        raise NetxError(f"{path}: the layers do not fit together ({e})") from None


WEIGHT_MAX = 254  # Loihi's 8-bit mixed-sign weights are even mantissas in [-256, 254]


@dataclass
class _Block:
    """One netx layer to write, in the graph's units: synapse -> [current] -> neuron."""

    syn: N.Node  # Linear or Conv2d
    neuron: N.Node  # Neuron or RecurrentNeuron
    weight: np.ndarray
    weight_rec: Optional[np.ndarray]  # dense_rec: from the layer's own spikes of the step before
    bias: np.ndarray  # into the voltage (netx's bias), per neuron (dense) or channel (conv)
    lam_c: float  # current decay per step (0: the current does not persist)
    flatten: bool  # a flatten layer comes before it
    readout: bool = False  # a dense layer without a neuron: netx's non-spiking integrator, y = u + bias
    sdnn: bool = False  # a sigma-delta layer (sigma -> ReLU(+ bias) -> delta), or with readout an SDNN sigma_output
    graded_in: bool = False  # its input is graded messages (a delta encoder's): weights weigh payload << 6

    @property
    def shape(self) -> tuple:
        return tuple(self.neuron.shape)

    @property
    def weight_scale(self) -> float:
        """What a weight is multiplied by in the file: a CUBA layer's is chosen when writing (1 here); a sigma-delta
        layer's is fixed by netx's units (:func:`_sdnn_weight_scale`)."""
        return _sdnn_weight_scale(self.graded_in) if self.sdnn else 1.0

    @property
    def kind(self) -> str:
        return "conv" if isinstance(self.syn, N.Conv2d) else "dense_rec" if self.weight_rec is not None else "dense"


_CUBA = "netx's neurons are Loihi's CUBA LIF (reset to 0, fire on v > threshold); export it as --target lava or nir"
#: what netx's CUBA neuron is: one spike on v > threshold, reset to 0, an optional decaying current (iDecay), a
#: recurrent synapse (dense_rec); SDNN layers (sigma -> ReLU -> delta encoder); everything else is refused, naming
#: the layer
NETX = families.declare("netx", {"spike:>", "spike:delta", "reset:zero", "synaptic_current", "recurrence",
                                 "learned_decay", "charge:lam"}, {
    "charge:decay_input": _CUBA, "charge:leak": _CUBA,
    "spike:>=": _CUBA, "spike:count": "netx's CUBA neuron sends one spike per step", "reset:subtract": _CUBA,
    "reset:subtract_next": _CUBA, "reset:to_v_reset": _CUBA, "ciu": "netx has no ILIF neuron; " + _CUBA,
    "mpiu": "netx has no ILIF neuron; " + _CUBA, "membrane_floor": "Loihi's CUBA neuron has no membrane floor"})


def _block(syn, current, neuron, flatten: bool) -> _Block:
    w = np.asarray(syn.weight, np.float64)
    b = np.zeros(w.shape[0]) if syn.bias is None else np.asarray(syn.bias, np.float64)
    if not isinstance(neuron, N.RecurrentNeuron):
        if current is not None and np.any(b):
            raise NetxError(f"'{syn.name}': a bias into a decaying current ('{current.name}'); netx adds biases to "
                            f"the voltage")
        return _Block(syn, neuron, w, None, np.zeros_like(b) if current is not None else b,
                      0.0 if current is None else float(current.lam), flatten)
    if current is not None:
        raise NetxError(f"'{current.name}': a current before the recurrent layer '{neuron.name}' that has one of its "
                        f"own")
    n = neuron
    gain = n.in_scale * n.mem_scale
    b_rec = np.zeros_like(b) if n.bias is None else np.asarray(n.bias, np.float64)
    if n.syn_lam == 0.0:
        bias = n.mem_scale * (n.in_scale * (b + b_rec) + n.in_shift) + n.mem_shift
    elif np.any(b + b_rec) or n.in_shift != 0.0:
        raise NetxError(f"'{n.name}': a bias into its decaying current; netx adds biases to the voltage")
    else:
        bias = np.full_like(b, n.mem_shift)
    return _Block(syn, n, w * gain, np.asarray(n.weight, np.float64) * gain, bias, float(n.syn_lam), flatten)


def _sdnn_block(syn, current, shift, neuron, flatten: bool, graded_in: bool) -> _Block:
    """Linear/Conv2d -> LeakyIntegrator(lam 1) [-> Affine shift] -> delta encoder (ReLU): netx's SDNN layer; with
    ``neuron`` None the sigma alone, an SDNN ``sigma_output``."""
    if current is None or current.lam != 1.0:
        raise NetxError(f"'{syn.name}': an SDNN layer takes its sigma, a non-decaying integrator "
                        f"(LeakyIntegrator(lam=1)), between the synapse and the delta encoder")
    if syn.bias is not None and np.any(syn.bias):
        raise NetxError(f"'{syn.name}': a bias into a sigma (it would be summed every step); netx's SDNN adds it after")
    if neuron is not None and neuron.params.delta != "relu":
        raise NetxError(f"'{neuron.name}': lava-dl's netx runs every sigma-delta layer after the input with ReLU; "
                        f"a delta encoder of activation {neuron.params.delta!r} is written only as the input layer")
    if neuron is None and shift is not None and np.any(shift):
        raise NetxError(f"'{syn.name}': a bias after an SDNN sigma_output (lava's Sigma process takes none)")
    w = np.asarray(syn.weight, np.float64)
    bias = np.zeros(w.shape[0]) if shift is None else np.broadcast_to(shift, (w.shape[0],)).astype(np.float64)
    return _Block(syn, neuron if neuron is not None else current, w, None, bias, 1.0, flatten,
                  readout=neuron is None, sdnn=True, graded_in=graded_in)


def _readout_block(syn, current, shift, flatten: bool) -> _Block:
    """A Linear -> LeakyIntegrator(lam 1) [-> Affine shift] at the end: netx's dense layer without a neuron."""
    if not isinstance(syn, N.Linear) or current is None or current.lam != 1.0:
        raise NetxError(f"'{syn.name}': a non-spiking readout; netx writes one only as a dense layer into a "
                        f"non-decaying integrator (Linear -> LeakyIntegrator(lam=1)), its bias after it")
    if syn.bias is not None and np.any(syn.bias):
        raise NetxError(f"'{syn.name}': a bias into the readout's integrator; netx adds it after (y = u + bias)")
    w = np.asarray(syn.weight, np.float64)
    bias = np.zeros(w.shape[0]) if shift is None else np.broadcast_to(shift, (w.shape[0],)).astype(np.float64)
    return _Block(syn, current, w, None, bias, 1.0, flatten, readout=True)


def _netx_layers(graph: Graph) -> Tuple[Optional[N.Node], List[_Block]]:
    """(the input layer's delta encoder or None, the netx layers) of a graph netx can express, or NetxError naming
    what it cannot."""
    blocks, syn, current, flatten, shift, encoder = [], None, None, False, None, None
    graded = False  # the messages of the layer before are graded (a delta encoder's)
    for node in (graph.nodes[n] for n in graph.topological_order()):
        if isinstance(node, (N.Input, N.Output)):
            continue
        if blocks and blocks[-1].readout:
            raise NetxError(f"'{node.name}' ({node.op}) after the readout '{blocks[-1].syn.name}': netx's readout "
                            f"never spikes, so nothing may follow it")
        if isinstance(node, N.Flatten):
            flatten = bool(blocks)
        elif isinstance(node, (N.Linear, N.Conv2d)):
            if syn is not None:
                raise NetxError(f"'{node.name}': two synapses in a row (netx has one per layer)")
            syn = node
        elif isinstance(node, N.LeakyIntegrator) and syn is not None and current is None:
            current = node
        elif (isinstance(node, N.Affine) and current is not None and shift is None and node.bn_stats is None
              and np.all(node.scale == 1.0)):
            shift = np.asarray(node.shift, np.float64)  # a constant after the current: only a readout's bias
        elif (isinstance(node, N.Neuron) and syn is None and not blocks and encoder is None
              and graph.inputs_of(node.name) == [graph.input_node.name] and node.params.delta is not None):
            NETX.check_node(node)
            if node.params.delta != "unit":
                raise NetxError(f"'{node.name}': netx's SDNN input layer is lava's Delta encoder of its input as it "
                                f"is (activation 'unit'), not {node.params.delta!r}")
            encoder, graded = node, True
        elif isinstance(node, N.SPIKING) and node.params.delta is not None:
            NETX.check_node(node)
            if syn is None or isinstance(node, N.RecurrentNeuron):
                raise NetxError(f"'{node.name}': a delta encoder is written as netx's SDNN input layer (right after "
                                f"the input) or after a synapse and its sigma")
            blocks.append(_sdnn_block(syn, current, shift, node, flatten, graded))
            syn, current, flatten, shift, graded = None, None, False, None, True
        elif isinstance(node, N.SPIKING):
            if syn is None:
                raise NetxError(f"'{node.name}': a neuron without a synapse before it")
            NETX.check_node(node)
            if graded:
                raise NetxError(f"'{node.name}': a CUBA layer after graded (sigma-delta) messages is not written")
            if shift is not None:
                raise NetxError(f"'{node.name}': a constant after its synaptic current; netx adds biases to the "
                                f"voltage")
            blocks.append(_block(syn, current, node, flatten))
            syn, current, flatten = None, None, False
        else:
            raise NetxError(f"'{node.name}' ({node.op}) is not written as netx (only Linear/Conv2d -> [current] -> "
                            f"LIF layers are)")
    if syn is not None:
        blocks.append(_sdnn_block(syn, current, shift, None, flatten, graded) if graded
                      else _readout_block(syn, current, shift, flatten))
    if not blocks:
        raise NetxError("no Linear -> LIF layer to write")
    if graph.input_node.encoding != "sequence":
        raise NetxError("netx networks take spikes: the graph's input is analog (direct encoding); "
                        "netx's input layer would encode it with a neuron of its own")
    return encoder, blocks


def _decay(lam: float) -> int:
    return int(round((1.0 - lam) * DECAY_ONE))


def export_graph(graph: Graph, path, **_) -> dict:
    """Write ``graph`` as a lava-dl netx network (``.net``, atomically; see the module docstring).

    A last dense layer into a non-decaying integrator (``Linear -> LeakyIntegrator(lam=1) [-> Affine shift]``) is
    written without a neuron group: netx's non-spiking readout, whose output ``u + bias`` is then in the units of
    its layer's scale.

    Returns ``{"path", "layers", "scales"}`` (the power of two each layer was scaled by) and ``rounding``
    (the largest change rounding made to a weight, bias, threshold or decay, in the graph's units)."""
    import h5py

    from ilif_deploy.atomic import write_hdf5_atomic

    from ilif_deploy.ir.lowering import fold_batchnorm

    encoder, blocks = _netx_layers(fold_batchnorm(graph.validate()))
    bits = graph.metadata.get("message_bits") or {}
    scales, rounding, quantized = [], 0.0, []
    if encoder is not None:
        rounding = abs(_sdnn_threshold(encoder.name, encoder.params.v_th) - encoder.params.v_th)
    for blk in blocks:
        p = getattr(blk.neuron, "params", None)
        if blk.sdnn:  # netx's units are fixed: thresholds and biases as they are, weights x weight_scale
            ws = blk.weight_scale
            q = {"weight": 2 * np.round(blk.weight * ws / 2), "bias": np.round(blk.bias),
                 "vThMant": _sdnn_threshold(blk.neuron.name, p.v_th) if not blk.readout else 1.0}
            if np.abs(q["weight"]).max(initial=0) > 256:
                raise NetxError(f"'{blk.syn.name}': weights up to {np.abs(blk.weight).max():g} are "
                                f"{np.abs(q['weight']).max():g} in netx's sigma-delta units (x {ws:g}), beyond Loihi's "
                                f"8-bit mantissas (-256 .. 254)")
            rounding = max(rounding, float(np.abs(q["weight"] / ws - blk.weight).max(initial=0)),
                           float(np.abs(q["bias"] - blk.bias).max(initial=0)),
                           0.0 if blk.readout else abs(q["vThMant"] - p.v_th))
            scales.append(1.0)
            quantized.append(q)
            continue
        weights = [blk.weight] + ([blk.weight_rec] if blk.weight_rec is not None else [])
        top = max(float(np.abs(w).max(initial=0)) for w in weights) or 1.0
        scale = 2.0 ** np.floor(np.log2(WEIGHT_MAX / top))
        if blk.readout and top <= WEIGHT_MAX and np.all(blk.weight % 2 == 0) and np.all(blk.bias % 1 == 0):
            scale = 1.0  # its integers hold it as it is: keep the readout's own units
        # even weight mantissas: what Loihi's mixed-sign weights hold
        # the readout has no threshold: its output (y = u + bias) comes out in units scaled by ``scale``
        v_th = 1.0 if blk.readout else p.v_th
        q = {"weight": 2 * np.round(blk.weight * scale / 2), "bias": np.round(blk.bias * scale),
             "vThMant": np.round(v_th * scale)}
        exact = [("weight", blk.weight), ("bias", blk.bias), ("vThMant", v_th)]
        if blk.weight_rec is not None:
            q["weight_rec"] = 2 * np.round(blk.weight_rec * scale / 2)
            exact.append(("weight_rec", blk.weight_rec))
        rounding = max(rounding, *(float(np.abs(q[k] / scale - v).max()) for k, v in exact))
        for lam in ((blk.lam_c,) if blk.readout else (p.lam, blk.lam_c)):
            rounding = max(rounding, abs((1.0 - _decay(lam) / DECAY_ONE) - lam))
        scales.append(float(scale))
        quantized.append(q)

    def fill(target):
        with h5py.File(target, "w") as f:
            root = f.create_group("layer")

            def group(type_: str):
                g = root.create_group(str(len(root)))
                g.create_dataset("type", data=np.array([type_.encode()]))
                return g

            if encoder is not None:  # lava's Delta encoder of the input frames
                g = group("input")
                g["shape"] = np.asarray(graph.input_shape)
                _sdnn_group(g, encoder.name, int(_sdnn_threshold(encoder.name, encoder.params.v_th)), bits)
            elif blocks[0].kind == "conv":  # netx infers a conv's input size from an input layer
                group("input")["shape"] = np.asarray(graph.input_shape)
            for blk, q in zip(blocks, quantized):
                if blk.flatten:
                    group("flatten")
                g = group(blk.kind)
                g["shape"] = np.asarray(blk.neuron.shape)
                if blk.kind == "conv":
                    for key in ("stride", "padding", "dilation"):
                        g[key] = np.asarray(getattr(blk.syn, key))
                    g["groups"] = int(blk.syn.groups)
                else:
                    g["inFeatures"], g["outFeatures"] = blk.weight.shape[1], blk.weight.shape[0]
                for key in ("weight", "weight_rec"):
                    if key in q:
                        g[key] = q[key]
                if np.any(q["bias"]):
                    g["bias"] = q["bias"]
                if blk.sdnn:
                    _sdnn_group(g, blk.neuron.name, int(q["vThMant"]), bits, sigma_output=blk.readout)
                    continue
                if blk.readout:  # no neuron group: netx's non-spiking integrator
                    continue
                n = g.create_group("neuron")
                n.create_dataset("type", data=np.array([b"CUBA"]))
                n["iDecay"], n["vDecay"] = _decay(blk.lam_c), _decay(blk.neuron.params.lam)
                n["vThMant"], n["refDelay"], n["gradedSpike"], n["wgtExp"] = int(q["vThMant"]), 1, False, 0

    write_hdf5_atomic(path, fill)
    return {"path": str(path), "layers": len(blocks), "scales": scales, "rounding": rounding}


def _sdnn_threshold(name: str, v_th: float) -> float:
    """A delta encoder's ``vThMant``: its threshold in netx's units, a whole number (0: every change is sent)."""
    q = float(np.round(v_th))
    if q == 0 and v_th > 0:
        raise NetxError(f"'{name}': a delta threshold of {v_th:g} rounds to 0 in netx's units, which would send every "
                        f"change")
    return q


def _sdnn_group(layer, name: str, v_th: int, bits: dict, sigma_output: bool = False) -> None:
    """The ``neuron`` group of an SDNN layer as lava-dl's slayer writes it (``sigma_output`` for the Sigma readout);
    ``messageBits`` only where the graph says a width other than netx's default."""
    n = layer.create_group("neuron")
    n.create_dataset("type", data=np.array([b"SDNN"]))
    n.create_dataset("activation", data=np.array([b"relu"]))
    n["vThMant"] = v_th
    if sigma_output:
        n["sigma_output"] = True
    if int(bits.get(name, SDNN_MESSAGE_BITS)) != SDNN_MESSAGE_BITS:
        n["messageBits"] = int(bits[name])


__all__ = ["read_netx", "looks_like_netx", "export_graph", "NetxError"]
