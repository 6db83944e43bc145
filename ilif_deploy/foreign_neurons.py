"""Neuron modules of other libraries and of the authors' code, each read once into the neuron families.

The tracer (:mod:`ilif_deploy.tracing`) treats every module this table knows as a leaf and asks it for the layer's
:class:`~ilif_deploy.neuron_step.ILIFParams`, whether the module steps once per call ("single") or takes a whole
sequence (``[T, B, ...]``, "multi"), and for snntorch's ``Synaptic``/``RLeaky`` their synaptic current or recurrent
synapse.  Classes are matched by their exact qualified name (a subclass may change the step, so it is not taken
for its parent), and the libraries are never imported here: a network that uses none of them needs none of them.

What each library computes was read in its code and is reproduced operation for operation by the shared step
(docs/families.md): SpikingJelly 0.0.0.0.12 (``clock_driven``, the authors' API) and 2.0 (``activation_based``)
``LIFNode``/``IFNode``/``ParametricLIFNode`` (charge forms ``decay_input``/``leak``, soft reset with
``v_reset=None``, hard reset to 0, ``>=``); the authors' ``InhibitoryLIFNeuron``/``MultiStepILIFNeuron`` (ILIF),
``BPTTNeuron`` (LIF) and ``PLIFNeuron`` (PLIF); snntorch ``Leaky``/``Synaptic``/``RLeaky`` (``>``, the threshold
taken off one step late for ``reset_mechanism="subtract"``, hard reset to 0 for ``"zero"``).  Configurations no
family declares are refused naming the module and the setting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .errors import TraceError
from .neuron_step import ILIFParams
from .neurons import ILIF


@dataclass(frozen=True)
class NeuronModule:
    """What a neuron module is: its parameters, its step mode ("single": one step per call, state kept in the
    module; "multi": ``[T, B, ...]`` per call), a synaptic current's decay (snntorch ``Synaptic``) and a recurrent
    synapse's weight and bias (snntorch ``RLeaky``)."""

    params: ILIFParams
    step: str
    syn_lam: Optional[float] = None
    recurrent: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None


def _qualname(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


def _scalar(path: str, m: nn.Module, name: str, value) -> float:
    """A layer-wide parameter as a float (the value as the module holds it: float32 tensors stay float32 values)."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1)
        if flat.numel() == 0 or not bool((flat == flat[0]).all()):
            raise TraceError(f"module '{path}' ({type(m).__name__}): {name} differs between neurons; the graph holds "
                             f"one value per layer")
        return float(flat[0])
    return float(value)


def _refuse(path: str, m: nn.Module, why: str) -> TraceError:
    return TraceError(f"module '{path}' ({_qualname(m)}): {why}")


# ----------------------------------------------------------------------------- SpikingJelly (both APIs)
def _sj_reset(path: str, m: nn.Module) -> dict:
    v_reset = getattr(m, "v_reset", None)
    if v_reset is None:
        return dict(reset="subtract")
    if float(v_reset) != 0.0:
        raise _refuse(path, m, f"v_reset={v_reset}: SpikingJelly starts the membrane at v_reset, the graph's "
                               f"neurons at 0 (v_reset None or 0 are read)")
    return dict(reset="zero", v_reset=0.0)


def _sj_common(path: str, m: nn.Module) -> dict:
    if getattr(m, "detach_reset", False) not in (False, True):
        raise _refuse(path, m, "unknown detach_reset")
    return dict(v_th=_scalar(path, m, "v_threshold", m.v_threshold), lam_u=0.0, lam_i=0.0, compare=">=",
                **_sj_reset(path, m))


def _sj_lif(api: str):
    def read(path: str, m: nn.Module) -> ILIFParams:
        tau = float(m.tau)
        if not tau > 1.0:
            raise _refuse(path, m, f"tau={tau}: a decay 1 - 1/tau in [0, 1) needs tau > 1")
        common = _sj_common(path, m)
        if m.decay_input:
            return ILIFParams(lam=1.0 - 1.0 / tau, charge="decay_input", charge_tau=tau, **common)
        if api == "clock_driven":  # 0.0.0.0.12: v * (1 - 1/tau) + x with v_reset None or 0
            return ILIFParams(lam=1.0 - 1.0 / tau, **common)
        return ILIFParams(lam=1.0 - 1.0 / tau, charge="leak", charge_tau=tau, **common)
    return read


def _sj_if(path: str, m: nn.Module) -> ILIFParams:
    return ILIFParams(lam=1.0, **_sj_common(path, m))


def _sj_plif(api: str):
    def read(path: str, m: nn.Module) -> ILIFParams:
        with torch.no_grad():
            q = m.w.detach().sigmoid()  # float32, as the module computes it
            keep = 1.0 - q
        common = dict(_sj_common(path, m), learned_decay=True)
        if m.decay_input:
            return ILIFParams(lam=float(keep), charge="decay_input", charge_gain=float(q), **common)
        if api == "clock_driven":  # v * (1 - w.sigmoid()) + x
            return ILIFParams(lam=float(keep), **common)
        return ILIFParams(lam=float(keep), charge="leak", charge_gain=float(q), **common)
    return read


def _sj_step(m: nn.Module) -> str:
    return "multi" if getattr(m, "step_mode", "s") == "m" else "single"


# ----------------------------------------------------------------------------- the authors' neurons
def _authors_ilif(path: str, m: nn.Module) -> ILIFParams:
    """Their InhibitoryLIFNeuron: SpikingJelly's LIFNode (decay_input=False, v_reset=None) plus the CIU
    (0.03 (inhibition + prev_input * prev_spike), on the raw input) and the MPIU (1 * (memory + S v), subtracted as
    S sigmoid(memory)), constants in their code."""
    if m.decay_input or m.v_reset is not None:
        raise _refuse(path, m, "ILIF is defined with decay_input=False and v_reset=None (the authors' defaults)")
    return ILIFParams.from_tau(float(m.tau), v_th=_scalar(path, m, "v_threshold", m.v_threshold), lam_u=1.0,
                               lam_i=0.03, ciu_source="synaptic")


# ----------------------------------------------------------------------------- snntorch
def _snn_check(path: str, m: nn.Module) -> None:
    if not getattr(m, "init_hidden", False):
        raise _refuse(path, m, "init_hidden=False: the module takes its state as arguments; build it with "
                               "init_hidden=True (snntorch keeps the state inside, as the tracer needs)")
    if getattr(m, "inhibition", False):
        raise _refuse(path, m, "inhibition=True (only the largest membrane fires) has no neuron family")
    if getattr(m, "state_quant", False):
        raise _refuse(path, m, "state_quant (quantised states) has no neuron family")
    if _scalar(path, m, "graded_spikes_factor", getattr(m, "graded_spikes_factor", 1.0)) != 1.0:
        raise _refuse(path, m, "graded_spikes_factor != 1 (scaled spikes) has no neuron family")
    if not getattr(m, "reset_delay", True):
        raise _refuse(path, m, "reset_delay=False changes where snntorch takes the threshold off in a way no neuron "
                               "family declares; the default reset_delay=True is read")


def _snn_reset(path: str, m: nn.Module, zero_ok: bool) -> dict:
    mech = getattr(m, "reset_mechanism", "subtract")
    if mech == "subtract":
        return dict(reset="subtract_next")
    if mech == "zero" and zero_ok:
        return dict(reset="zero", v_reset=0.0)
    raise _refuse(path, m, f"reset_mechanism={mech!r}: " + (
        "snntorch zeroes the next step's whole membrane, input included; no neuron family declares that"
        if mech == "zero" else "no reset has no neuron family"))


def _snn_lif(path: str, m: nn.Module, zero_ok: bool = True) -> ILIFParams:
    _snn_check(path, m)
    beta = m.beta.detach().clamp(0, 1) if isinstance(m.beta, torch.Tensor) else min(max(float(m.beta), 0.0), 1.0)
    return ILIFParams(lam=_scalar(path, m, "beta", beta), v_th=_scalar(path, m, "threshold", m.threshold),
                      lam_u=0.0, lam_i=0.0, compare=">", learned_decay=bool(getattr(m, "learn_beta", False)),
                      **_snn_reset(path, m, zero_ok))


def _snn_synaptic(path: str, m: nn.Module) -> NeuronModule:
    params = _snn_lif(path, m, zero_ok=False)
    alpha = m.alpha.detach().clamp(0, 1) if isinstance(m.alpha, torch.Tensor) else min(max(float(m.alpha), 0), 1)
    return NeuronModule(params, "single", syn_lam=_scalar(path, m, "alpha", alpha))


def _snn_rleaky(path: str, m: nn.Module) -> NeuronModule:
    params = _snn_lif(path, m, zero_ok=False)
    rec = m.recurrent
    if isinstance(rec, nn.Linear):
        w = rec.weight.detach().cpu().float().numpy().copy()
        b = None if rec.bias is None else rec.bias.detach().cpu().float().numpy().copy()
        return NeuronModule(params, "single", recurrent=(w, b))
    if type(rec).__name__ == "RecurrentOneToOne":  # x * V: a diagonal synapse
        return NeuronModule(params, "single", recurrent=(None, rec.V.detach().cpu().float().numpy().copy()))
    raise _refuse(path, m, f"a recurrent {type(rec).__name__} (convolutional recurrence) has no graph form")


# ----------------------------------------------------------------------------- the table
def _plain(read: Callable[[str, nn.Module], ILIFParams], step) -> Callable[[str, nn.Module], NeuronModule]:
    return lambda path, m: NeuronModule(read(path, m), step(m) if callable(step) else step)


#: exact qualified class name -> reader(path, module) -> NeuronModule.  The authors' classes live in their
#: repository's modules/neuron.py (imported as ``modules.neuron``).
FOREIGN: Dict[str, Callable[[str, nn.Module], NeuronModule]] = {
    **{f"spikingjelly.clock_driven.neuron.{prefix}{cls}": _plain(read, "multi" if prefix else "single")
       for prefix in ("", "MultiStep")
       for cls, read in (("LIFNode", _sj_lif("clock_driven")), ("IFNode", _sj_if),
                         ("ParametricLIFNode", _sj_plif("clock_driven")))},
    "spikingjelly.activation_based.neuron.lif.LIFNode": _plain(_sj_lif("activation_based"), _sj_step),
    "spikingjelly.activation_based.neuron.integrate_and_fire.IFNode": _plain(_sj_if, _sj_step),
    "spikingjelly.activation_based.neuron.plif.ParametricLIFNode": _plain(_sj_plif("activation_based"), _sj_step),
    "modules.neuron.InhibitoryLIFNeuron": _plain(_authors_ilif, "single"),
    "modules.neuron.MultiStepILIFNeuron": _plain(_authors_ilif, "multi"),
    "modules.neuron.BPTTNeuron": _plain(_sj_lif("clock_driven"), "single"),
    "modules.neuron.PLIFNeuron": _plain(_sj_plif("clock_driven"), "single"),
    "snntorch._neurons.leaky.Leaky": _plain(_snn_lif, "single"),
    "snntorch._neurons.synaptic.Synaptic": _snn_synaptic,
    "snntorch._neurons.rleaky.RLeaky": _snn_rleaky,
}
#: stateless modules of those libraries that vanish at inference (their dropouts)
PASSTHROUGH = {"spikingjelly.clock_driven.layer.Dropout", "spikingjelly.clock_driven.layer.Dropout2d",
               "spikingjelly.clock_driven.layer.MultiStepDropout",
               "spikingjelly.activation_based.layer.dropout.Dropout",
               "spikingjelly.activation_based.layer.dropout.Dropout2d"}
#: containers that apply their children to every step: time merged into the batch (SeqToANN) or step by step
CONTAINERS = {"spikingjelly.clock_driven.layer.SeqToANNContainer", "spikingjelly.clock_driven.layer.MultiStepContainer",
              "spikingjelly.activation_based.layer.container.SeqToANNContainer",
              "spikingjelly.activation_based.layer.container.MultiStepContainer"}


def neuron_module(path: str, m: nn.Module) -> Optional[NeuronModule]:
    """The :class:`NeuronModule` of ``m`` if it is a neuron layer the tracer knows (this project's, or one of
    :data:`FOREIGN`), else None; TraceError where a known neuron is set up in a way no family declares."""
    if isinstance(m, ILIF):
        return NeuronModule(m.step_params(), "multi")
    read = FOREIGN.get(_qualname(m))
    return None if read is None else read(path, m)


def is_neuron(m: nn.Module) -> bool:
    return isinstance(m, ILIF) or _qualname(m) in FOREIGN


def is_passthrough(m: nn.Module) -> bool:
    return _qualname(m) in PASSTHROUGH


def is_container(m: nn.Module) -> bool:
    return _qualname(m) in CONTAINERS


def known_text() -> str:
    """The neuron classes the tracer reads (for messages)."""
    libs = sorted({name.split(".")[0] for name in FOREIGN})
    label = {"modules": "the authors' modules.neuron"}
    return ("ilif_deploy ILIF/LIF/PLIF/IPLIF; " + "; ".join(
        f"{label.get(lib, lib)}: {', '.join(sorted({n.rsplit('.', 1)[1] for n in FOREIGN if n.startswith(lib + '.')}))}"
        for lib in libs))
