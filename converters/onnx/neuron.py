"""One ILIF neuron layer unrolled over T steps with standard ONNX ops only.

This replicates :func:`ilif_deploy.neuron_step.ilif_step` operation by operation, in the same
order and float32 precision (each torch op becomes one ONNX op, Python-scalar operands become
float32 scalar initializers), so onnxruntime rounds the way torch does, except that its
``exp`` and torch's differ in the last bit for a few percent of inputs (see :func:`_sigmoid`)::

    ciu[t]  = lam_i * (ciu[t-1] + drive[t-1])   -> Add, Mul          (only when lam_i != 0)
    I[t]    = x[t] - relu(ciu[t])               -> Relu, Sub         (only when lam_i != 0)
    U[t]    = lam * m[t-1] + I[t]               -> Mul, Add
    S[t]    = U[t] >= v_th                      -> GreaterOrEqual, Cast
    (tensor names as everywhere: I -> ``u``, U -> ``v_pre``, m -> ``v``; see docs/ilif.md)
    mbar[t] = U[t] - S[t] * v_th                -> Mul, Sub
    mpiu[t] = lam_u * (mpiu[t-1] + S[t]*mbar[t]) -> Mul, Add, Mul     (only when lam_u != 0)
    m[t]    = mbar[t] - S[t] * sigmoid(mpiu[t]) -> Neg, Exp, Add, Reciprocal (or Sigmoid), Mul, Sub
                                                   (only when lam_u != 0)
    drive[t]= S[t] * c[t]   (c = x, or I for ciu_source="net")      (only when lam_i != 0)

Two exact simplifications keep the graph small: at t = 1 every state is zero, so terms like
``lam * 0 + I`` are left out (``0 + a == a`` in IEEE arithmetic, sign of zero aside, which no
later op can observe), and at t = T only the spikes are computed (the states are never read).
``U >= v_th`` equals the reference's ``(U - v_th) >= 0`` exactly in IEEE arithmetic.
"""
from __future__ import annotations

import json
from typing import List, Optional

import numpy as np

from ilif_deploy.neuron_step import ILIFParams

from .builder import OnnxBuilder


def params_doc(name: str, family: str, p: ILIFParams) -> str:
    """The neuron parameters as a JSON string (node doc_strings and model metadata)."""
    return json.dumps({"neuron": name, "family": family, **p.to_dict(), "tau_steps": p.tau,
                       "mpiu_enabled": p.mpiu_enabled, "ciu_enabled": p.ciu_enabled})


def _sj_charge(b: OnnxBuilder, p: ILIFParams, name: str, s_: str, m: Optional[str], current: str) -> str:
    """SpikingJelly's charges as ilif_step computes them (``m`` None: the membrane is 0 at the first step, written
    out as a zero tensor so every operation rounds as there): decay_input ``v + (I - (v - rest)) g``, leak
    ``v - (v - rest) g + I``, g = ``/ charge_tau`` or ``* charge_gain``."""
    v = m if m is not None else b.op("Sub", [current, current], f"{s_}/v0")  # +0 (x - x), as zeros_like
    rest = b.scalar(f"{name}/rest", p.rest)
    below = b.op("Sub", [v, rest], f"{s_}/above_rest")
    d = b.op("Sub", [current, below], f"{s_}/drive") if p.charge == "decay_input" else below
    d = (b.op("Div", [d, b.scalar(f"{name}/charge_tau", p.charge_tau)], f"{s_}/charge") if p.charge_tau is not None
         else b.op("Mul", [d, b.scalar(f"{name}/charge_gain", p.charge_gain)], f"{s_}/charge"))
    if p.charge == "decay_input":
        return b.op("Add", [v, d], f"{s_}/v_pre")
    return b.op("Add", [b.op("Sub", [v, d], f"{s_}/leaked"), current], f"{s_}/v_pre")


def _fire(b: OnnxBuilder, p: ILIFParams, v: str, v_th: str, name: str, doc: str = "") -> str:
    """``v >= v_th`` or ``v > v_th`` by the layer's rule (bool); equal to the runtime's ``(v - v_th) >= 0`` and
    ``not (v_th - v >= 0)`` in IEEE arithmetic."""
    return b.op("GreaterOrEqual" if p.compare == ">=" else "Greater", [v, v_th], name, doc=doc)


SIGMOIDS = ("exp", "op")


def _sigmoid(b: OnnxBuilder, a: str, name: str, how: str) -> str:
    """sigmoid(a) as torch's CPU kernel computes it, ``1 / (1 + exp(0 - a))`` (``how="exp"``), or
    as the single ONNX ``Sigmoid`` op (``how="op"``).

    Why the default spells it out: onnxruntime's Sigmoid is a polynomial approximation that
    differs from torch.sigmoid in the last bit for about 60 % of inputs (max error 1.5e-7), the
    spelled-out form for about 4 % (max error 8.9e-8, both against float64), so the MPIU states
    stay closer to the reference.
    """
    if how == "op":
        return b.op("Sigmoid", [a], name)
    one = b.scalar("one", 1.0)
    e = b.op("Exp", [b.op("Neg", [a], f"{name}/neg")], f"{name}/exp")
    return b.op("Reciprocal", [b.op("Add", [e, one], f"{name}/plus_1")], name)


def emit_neuron(b: OnnxBuilder, name: str, family: str, p: ILIFParams, steps_in: List[str],
                sigmoid: str = "exp", step_input=None) -> List[str]:
    """Append the unrolled dynamics of neuron layer ``name``; ``steps_in`` holds the input current
    tensor of each step (``[B, ...]``); returns the spike tensor (0/1 float32) of each step.
    ``sigmoid`` chooses how the MPIU sigmoid is written (see :func:`_sigmoid`).  ``step_input(t, x,
    previous_spikes)``, if given, makes the current of step t from x and the spikes of step t - 1 (None at
    t = 1): a recurrent layer."""
    T = len(steps_in)
    doc = params_doc(name, family, p)
    lam = b.scalar(f"{name}/lam", p.lam)
    v_th = b.scalar(f"{name}/v_th", p.v_th)
    lam_u = b.scalar(f"{name}/lam_u", p.lam_u) if p.mpiu_enabled else None
    lam_i = b.scalar(f"{name}/lam_i", p.lam_i) if p.ciu_enabled else None
    # state after the previous step; None means "all zero" (t = 0)
    m: Optional[str] = None
    mpiu: Optional[str] = None
    ciu: Optional[str] = None
    drive: Optional[str] = None
    spikes = []
    for t, x in enumerate(steps_in, start=1):
        s_ = f"{name}/t{t}"
        last = t == T
        if step_input is not None:
            x = step_input(t, x, spikes[-1] if spikes else None)
        if p.delta is not None:  # a delta encoder, as ilif_step: d = act(x) - v, sent where |d| >= v_th, v += sent
            act = b.op("Relu", [x], f"{s_}/act") if p.delta == "relu" else x
            d = act if m is None else b.op("Sub", [act, m], f"{s_}/change")
            size = b.op("Add", [b.op("Relu", [d], f"{s_}/up"), b.op("Relu", [b.op("Neg", [d], f"{s_}/neg")],
                                                                         f"{s_}/down")], f"{s_}/size")
            fire = b.op("Cast", [b.op("GreaterOrEqual", [size, v_th], f"{s_}/fire")], f"{s_}/fired", to=1)
            spikes.append(b.op("Mul", [d, fire], f"{s_}/spikes", doc=doc))
            m = spikes[-1] if m is None else b.op("Add", [m, spikes[-1]], f"{s_}/v")
            continue
        current = x
        if p.ciu_enabled:
            if ciu is None and drive is None:
                ciu = None  # lam_i * (0 + 0): the clamp is 0 and I = x
            else:
                acc = drive if ciu is None else (ciu if drive is None else
                                                 b.op("Add", [ciu, drive], f"{s_}/ciu_in"))
                ciu = b.op("Mul", [lam_i, acc], f"{s_}/ciu")
                clamp = b.op("Relu", [ciu], f"{s_}/ciu_relu")
                current = b.op("Sub", [x, clamp], f"{s_}/u")
        if p.charge != "lam":
            v_pre = _sj_charge(b, p, name, s_, m, current)
        elif m is None:
            v_pre = current
        else:
            leak = b.op("Mul", [lam, m], f"{s_}/leak")
            v_pre = b.op("Add", [leak, current], f"{s_}/v_pre")
        if m is not None:
            if p.reset == "subtract_next":  # snntorch: last step's spike, from the kept membrane, taken off now
                fired = b.op("Cast", [_fire(b, p, m, v_th, f"{s_}/fired_before")], f"{s_}/spiked_before", to=1)
                v_pre = b.op("Sub", [v_pre, b.op("Mul", [fired, v_th], f"{s_}/late_reset")], f"{s_}/v_pre_reset")
        if p.multi_spike:  # (U > 0) * trunc(U / v_th); for U > 0 trunc is floor (ONNX has no Trunc)
            positive = b.op("Cast", [b.op("Greater", [v_pre, b.scalar("zero", 0.0)], f"{s_}/positive")],
                            f"{s_}/positive_f", to=1)
            count = b.op("Floor", [b.op("Div", [v_pre, v_th], f"{s_}/ratio")], f"{s_}/floor")
            spike = b.op("Mul", [positive, count], f"{s_}/spikes", doc=doc)
        else:
            spike = b.op("Cast", [_fire(b, p, v_pre, v_th, f"{s_}/fire", doc)], f"{s_}/spikes", to=1)  # 1 = FLOAT
        spikes.append(spike)
        if last:
            break  # the states after the last step are never read
        # without an MPIU (or floor) the reset potential is the new state: name it m, as everywhere
        mbar_name = f"{s_}/mbar" if p.mpiu_enabled or p.v_min is not None else f"{s_}/v"
        if p.reset == "subtract":
            mbar = b.op("Sub", [v_pre, b.op("Mul", [spike, v_th], f"{s_}/reset")], mbar_name)
        elif p.reset == "subtract_next":  # the membrane is kept; the threshold comes off at the next step
            mbar = b.op("Identity", [v_pre], mbar_name)
        else:  # hard reset of NIR-imported neurons, as ilif_step: (1 - S) * U + S * v_reset
            keep = b.op("Sub", [b.scalar("one", 1.0), spike], f"{s_}/no_spike")
            v_reset = b.scalar(f"{name}/v_reset", p.v_reset)
            mbar = b.op("Add", [b.op("Mul", [keep, v_pre], f"{s_}/kept"),
                                b.op("Mul", [spike, v_reset], f"{s_}/reset")], mbar_name)
        if p.mpiu_enabled:
            gate = b.op("Mul", [spike, mbar], f"{s_}/mpiu_drive")
            if mpiu is not None:
                gate = b.op("Add", [mpiu, gate], f"{s_}/mpiu_in")
            mpiu = b.op("Mul", [lam_u, gate], f"{s_}/mpiu")
            sig = _sigmoid(b, mpiu, f"{s_}/mpiu_sigmoid", sigmoid)
            m = b.op("Sub", [mbar, b.op("Mul", [spike, sig], f"{s_}/mpiu_inhibit")],
                     f"{s_}/v" if p.v_min is None else f"{s_}/v_unfloored")
        else:
            m = mbar
        if p.v_min is not None:  # relu(v - v_min) + v_min, as ilif_step (sinabs' floor)
            v_min = b.scalar(f"{name}/v_min", p.v_min)
            m = b.op("Add", [b.op("Relu", [b.op("Sub", [m, v_min], f"{s_}/above_floor")], f"{s_}/floor_relu"),
                             v_min], f"{s_}/v")
        if p.ciu_enabled:
            source = x if p.ciu_source == "synaptic" else current
            drive = b.op("Mul", [spike, source], f"{s_}/ciu_drive")
    return spikes


def recurrent_input(b: OnnxBuilder, node):
    """``step_input`` of a RecurrentNeuron, op for op as the runtime: ``a = x + Gemm(s, W, b)``, then
    ``current = syn_lam * current + (a * in_scale + in_shift)`` and ``current * mem_scale + mem_shift``."""
    n = node.name
    w = b.const(f"{n}.weight", node.weight)
    bias = b.const(f"{n}.bias", node.bias if node.bias is not None else np.zeros(node.weight.shape[0], np.float32))
    k = {key: b.scalar(f"{n}/{key}", getattr(node, key)) for key in ("in_scale", "in_shift", "syn_lam", "mem_scale",
                                                                      "mem_shift")}
    state = {"current": None}

    def step(t, x, previous):
        s_ = f"{n}/t{t}"
        if previous is None:  # F.linear(0, W, b) == b
            a = b.op("Add", [x, bias], f"{s_}/a")
        else:
            a = b.op("Add", [x, b.op("Gemm", [previous, w, bias], f"{s_}/recurrent", transB=1)], f"{s_}/a")
        c = b.op("Add", [b.op("Mul", [a, k["in_scale"]], f"{s_}/in_gain"), k["in_shift"]], f"{s_}/in_shift")
        if state["current"] is not None:  # at t = 1: syn_lam * 0 + c == c
            c = b.op("Add", [b.op("Mul", [k["syn_lam"], state["current"]], f"{s_}/syn_leak"), c], f"{s_}/syn")
        state["current"] = c
        return b.op("Add", [b.op("Mul", [c, k["mem_scale"]], f"{s_}/mem_gain"), k["mem_shift"]], f"{s_}/current")
    return step


def _steps(b: OnnxBuilder, name: str, x: str, static: bool, T: int) -> List[str]:
    """The per-step inputs of a layer: ``x`` repeated (``static``) or split along the merged T axis."""
    if static:
        return [x] * T
    if T == 1:
        return [x]
    steps = [f"{name}/x_t{t}" for t in range(1, T + 1)]
    b.op("Split", [x], f"{name}/split_T", outputs=steps, axis=0, num_outputs=T)
    return steps


def _join(b: OnnxBuilder, name: str, per_step: List[str], out: str) -> str:
    if len(per_step) == 1:
        return b.op("Identity", per_step, f"{name}/output", outputs=[out])
    return b.op("Concat", per_step, f"{name}/concat_T", outputs=[out], axis=0)


def emit_leaky_integrator(b: OnnxBuilder, name: str, lam: float, x: str, static: bool, T: int) -> str:
    """A LeakyIntegrator (a synaptic current) unrolled as the runtime runs it: ``y[0] = x[0]``,
    ``y[t] = lam * y[t-1] + x[t]``; output ``[T*B, ...]`` step-major."""
    k, ys = b.scalar(f"{name}/lam", lam), []
    for t, xt in enumerate(_steps(b, name, x, static, T), start=1):
        ys.append(xt if not ys else b.op("Add", [b.op("Mul", [k, ys[-1]], f"{name}/t{t}/leak"), xt], f"{name}/t{t}"))
    return _join(b, name, ys, name)


def emit_layer(b: OnnxBuilder, name: str, family: str, p: ILIFParams, x: str, static: bool, T: int,
               out: str, sigmoid: str = "exp", step_input=None) -> str:
    """A whole neuron layer: input ``x`` (``[T*B, ...]`` step-major, or ``[B, ...]`` fed at every
    step when ``static``) -> spikes ``[T*B, ...]`` in tensor ``out``."""
    spikes = emit_neuron(b, name, family, p, _steps(b, name, x, static, T), sigmoid, step_input)
    return _join(b, name, spikes, out)


#: domain of the model-local functions that wrap neuron layers (``functions=True``)
FUNCTION_DOMAIN = "ilif_deploy"


def layer_function(name: str, family: str, p: ILIFParams, static: bool, T: int, sigmoid: str, opset: int):
    """The neuron layer as an ONNX model-local function ``ilif_deploy.<KIND>`` (overload = layer
    name) whose body is the standard-op step above; onnxruntime inlines it, Netron shows one node
    per layer that opens into its steps.  Constants become Constant nodes (functions have no
    initializers)."""
    from onnx import helper

    fb = OnnxBuilder()
    emit_layer(fb, name, family, p, "x", static, T, "spikes", sigmoid)
    consts = [helper.make_node("Constant", [], [k], name=k, value=fb.tensor(k)) for k in fb.initializers]
    for c in consts:  # value tensors keep their own name field; clear it for a clean Constant
        c.attribute[0].t.name = ""
    return helper.make_function(FUNCTION_DOMAIN, op_type(family), ["x"], ["spikes"], consts + fb.nodes,
                                [helper.make_opsetid("", opset)], doc_string=params_doc(name, family, p),
                                overload=name)


def op_type(family: str) -> str:
    """Function op type for a neuron family ("ilif" -> "ILIF", "multi-spike if" -> "MULTI_SPIKE_IF")."""
    return "".join(c if c.isalnum() else "_" for c in family).upper()
