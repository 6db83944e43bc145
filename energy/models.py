"""Energy models: prices in pJ per operation, per neuron update, per spike, per memory access.

Presets:

- ``paper``: E_AC = 0.9 pJ, E_MAC = 4.6 pJ (45 nm, fp32; the paper's Appendix H, from Horowitz 2014).
- ``horowitz-fp32|fp16|int32|int8``: Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm:
  AC = one add, MAC = one multiply + one add (add/mult pJ: fp32 0.9/3.7, fp16 0.4/1.1,
  int32 0.1/3.1, int8 0.03/0.2).
- ``loihi``: Davies et al., IEEE Micro 2018 (Loihi 1): 23.6 pJ per synaptic op, 52 pJ per
  inactive and 81 pJ per active neuron(-compartment) update, 1.7 pJ per spike within a tile.
- ``loihi2``: the same dynamic prices (Loihi 2's are unpublished) plus static energy: 0.232 W per chip (measured on
  PilotNet LIF) / 120 cores x the Loihi 2 cores of the placement (:mod:`.placement`) x T x 153 us per step.
- a user file (``.json``, or ``.yaml``/``.yml`` when PyYAML is installed) with the field names of
  :class:`EnergyModel` (e.g. ``{"name": "mychip", "e_ac_pj": 0.5, "e_mac_pj": 2.0}``).

Memory terms (optional, simplified from Lemaire et al., ICONIP 2022): ``e_mem_pj`` per 32-bit
access; presets ``sram8k`` 5 pJ, ``sram32k`` 10 pJ, ``sram1m`` 50 pJ, ``dram`` 640 pJ (Horowitz's
64-bit figures 10/20/100 pJ and 1.3-2.6 nJ, halved for 32-bit words).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Optional, Union

from ilif_deploy.errors import UserError

HOROWITZ_45NM = {  # (add pJ, mult pJ)
    "fp32": (0.9, 3.7),
    "fp16": (0.4, 1.1),
    "int32": (0.1, 3.1),
    "int8": (0.03, 0.2),
}
MESHES = ("", "loihi1", "loihi2")
MEMORY_PJ = {"sram8k": 5.0, "sram32k": 10.0, "sram1m": 50.0, "dram": 640.0}


@dataclass(frozen=True)
class EnergyModel:
    """Prices in picojoules.

    ``e_ac_pj``/``e_mac_pj``: one accumulate / multiply-accumulate (synaptic ops, and neuron
    arithmetic when neuron updates are counted as ops).  ``e_update_pj``/``e_update_active_pj``:
    one neuron-compartment update in a step without/with a spike (when set, neuron updates are
    priced this way instead of as ops).  ``e_spike_pj``: moving one spike.  ``e_mem_pj``: one
    memory access (0 = memory not modelled).
    """

    name: str
    e_ac_pj: float
    e_mac_pj: float
    e_update_pj: float = 0.0
    e_update_active_pj: float = 0.0
    e_spike_pj: float = 0.0
    e_mem_pj: float = 0.0
    #: static power of one placed Loihi 2 core (W) and the time of one step (s): static energy per inference =
    #: static_w_per_core x the placement's Loihi 2 cores x T x step_s (0: not modelled)
    static_w_per_core: float = 0.0
    step_s: float = 0.0
    #: spike routing on the placement's mesh (:mod:`.placement`): "" (a spike costs e_spike_pj), "loihi1" or
    #: "loihi2" (a spike costs, per packet to a core it reaches, e_spike_pj plus its east-west and north-south hops)
    mesh: str = ""
    e_hop_ew_pj: float = 0.0
    e_hop_ns_pj: float = 0.0
    reference: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in ("name", "reference"):
                continue
            if f.name == "mesh":
                if self.mesh not in MESHES:
                    raise UserError(f"energy model {self.name!r}: mesh must be one of {MESHES}, got {self.mesh!r}")
                continue
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < float("inf"):
                raise UserError(f"energy model {self.name!r}: {f.name} must be a finite number >= 0 (pJ), got "
                                f"{v!r}")

    @property
    def prices_updates(self) -> bool:
        return self.e_update_pj > 0 or self.e_update_active_pj > 0

    def with_memory(self, memory: Union[None, str, float]) -> "EnergyModel":
        """Add a memory price: a preset name (``sram8k``, ``sram32k``, ``sram1m``, ``dram``) or pJ per access."""
        if memory is None:
            return self
        if isinstance(memory, str) and memory in MEMORY_PJ:
            pj = MEMORY_PJ[memory]
        else:
            try:
                pj = float(memory)
            except ValueError:
                raise UserError(f"memory must be {', '.join(MEMORY_PJ)} or pJ per access, not {memory!r}") from None
        return replace(self, name=f"{self.name}+mem({memory})", e_mem_pj=pj)

    def to_dict(self) -> dict:
        return asdict(self)


def _horowitz(kind: str) -> EnergyModel:
    add, mult = HOROWITZ_45NM[kind]
    return EnergyModel(f"horowitz-{kind}", add, round(add + mult, 4),
                       reference=f"Horowitz, ISSCC 2014, 45 nm {kind}: add {add} pJ, mult {mult} pJ")


PRESETS = {
    "paper": EnergyModel("paper", 0.9, 4.6, reference="ILIF paper, Appendix H (45 nm fp32, Horowitz 2014)"),
    **{f"horowitz-{k}": _horowitz(k) for k in HOROWITZ_45NM},
    "loihi": EnergyModel("loihi", 23.6, 23.6, e_update_pj=52.0, e_update_active_pj=81.0, e_spike_pj=1.7,
                         mesh="loihi1", e_hop_ew_pj=3.0, e_hop_ns_pj=4.0,
                         reference="Davies et al., IEEE Micro 2018 (Loihi 1): 23.6 pJ/synaptic op, "
                                   "52/81 pJ per inactive/active neuron update, 1.7 pJ/spike within a tile, "
                                   "3.0/4.0 pJ per east-west/north-south hop on the placement's mesh"),
    # Intel publishes no per-operation energies for Loihi 2: its dynamic terms are Loihi 1's (an assumption); its
    # static term is measured on silicon (PilotNet LIF on one chip: 0.232 W static, 153 us per step), shared over a
    # chip's 120 mapped cores and charged for the cores the placement uses (power-gated idle cores: an assumption)
    "loihi2": EnergyModel("loihi2", 23.6, 23.6, e_update_pj=52.0, e_update_active_pj=81.0, e_spike_pj=1.7,
                          mesh="loihi2", e_hop_ew_pj=3.0, e_hop_ns_pj=4.0,
                          static_w_per_core=0.232 / 120, step_s=153e-6,
                          reference="dynamic: Loihi 1's figures (Davies 2018; Loihi 2's are unpublished); static: "
                                    "0.232 W per chip at 153 us per step measured on PilotNet LIF (lava-dl), per "
                                    "placed core of 120"),
}


#: an energy model file is a few prices: a file this large is not one
MAX_MODEL_FILE_BYTES = 1 << 20


def load_energy_model(spec: Union[str, Path, EnergyModel, dict, None] = "paper") -> EnergyModel:
    """An :class:`EnergyModel` from a preset name, a JSON/YAML file, a dict or a model (returned as is)."""
    if spec is None:
        return PRESETS["paper"]
    if isinstance(spec, EnergyModel):
        return spec
    if isinstance(spec, dict):
        return _from_dict(spec, "dict")
    key = str(spec)
    if key in PRESETS:
        return PRESETS[key]
    path = Path(key)
    if not path.exists():
        raise UserError(f"unknown energy model {key!r}: use one of {', '.join(PRESETS)} or a .json/.yaml file")
    from ilif_deploy.bounded import input_file

    input_file(path, "the energy model file")
    if path.stat().st_size > MAX_MODEL_FILE_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes, more than an energy model file holds")
    text = path.read_text(errors="replace")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore
        except ImportError:
            raise UserError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write it as JSON") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of energy-model fields, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return _from_dict(data, str(path))


def _from_dict(data: dict, where: str) -> EnergyModel:
    known = {f.name for f in fields(EnergyModel)}
    unknown = set(data) - known
    if unknown:
        raise UserError(f"{where}: unknown energy-model field(s) {sorted(unknown)}; known: {sorted(known)}")
    missing = {"e_ac_pj", "e_mac_pj"} - set(data)
    if missing:
        raise UserError(f"{where}: missing field(s) {sorted(missing)} (pJ per accumulate / multiply-accumulate)")
    data = dict(data)
    data.setdefault("name", "custom")
    try:
        return EnergyModel(**data)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


def energy_pj(model: EnergyModel, row, count_neurons: bool, route: Optional[dict] = None) -> dict:
    """Energy of one counted row, split into parts, in pJ per inference.  ``route``: the placement's route of the
    row's spikes on ``model.mesh`` (packets and mean hops per spike); without one a spike costs ``e_spike_pj``."""
    syn = model.e_ac_pj * row.acs + model.e_mac_pj * row.macs
    neuron = 0.0
    if count_neurons:
        if model.prices_updates:
            active_price = model.e_update_active_pj or model.e_update_pj
            neuron = model.e_update_pj * (row.updates - row.active_updates) + active_price * row.active_updates
        else:
            neuron = model.e_ac_pj * row.neuron_acs + model.e_mac_pj * row.neuron_macs
    if route is None:
        spikes = model.e_spike_pj * row.spikes
    else:
        spikes = row.spikes * route["packets"] * (model.e_spike_pj + route["ew_hops"] * model.e_hop_ew_pj
                                                  + route["ns_hops"] * model.e_hop_ns_pj)
    mem = model.e_mem_pj * row.mem_accesses
    ann = model.e_mac_pj * row.ann_macs + model.e_ac_pj * row.ann_acs + model.e_mem_pj * row.ann_mem_accesses
    return {"synaptic": syn, "neuron": neuron, "spikes": spikes, "memory": mem,
            "total": syn + neuron + spikes + mem, "ann": ann}
