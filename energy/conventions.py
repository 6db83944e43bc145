"""Counting conventions: every choice that changes an operation count, named and switchable.

Defaults follow the paper (Appendix H): synaptic ACs from recorded spikes with the real fan-out,
MACs for analog inputs, BN folded, residual adds / bias / neuron updates free.  See docs/energy.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ilif_deploy.errors import UserError

#: named sets of conventions (``--conventions NAME``; ``-c key=value`` still overrides single choices).
#: ``neurobench``: how NeuroBench 2.3.0's SynapticOperations counts (benchmarks/neurobench_equality.py shows
#: the numbers equal): pools are not synaptic layers (the layer after one sees analog values), an analog
#: input costs MACs only where it is non-zero, zero weights cost nothing, and its ``Dense`` skips the taps on
#: zero padding.  ``spikingjelly``: what SpikingJelly 2.0's SynOpCounter counts (benchmarks/bench_energy.py):
#: conv/linear ACs driven by spikes, every weight of the layer, pools separate.
PRESETS = {"paper": {},
           "neurobench": {"pooling": "separate", "analog": "nonzero", "zero_weights": "skip", "ann_padding": "real"},
           "spikingjelly": {"pooling": "separate"}}

_CHOICES = {
    "ann_padding": ("dense", "real"),
    "analog": ("dense", "nonzero"),
    "pooling": ("fuse", "separate"),
    "zero_weights": ("count", "skip"),
    "add": ("free", "count"),
    "bn": ("folded", "unfolded"),
    "bias": ("free", "count"),
    "neurons": ("auto", "none", "count"),
}


@dataclass(frozen=True)
class Conventions:
    """How each kind of operation is counted.

    - ``ann_padding``: ANN baseline MACs of a conv count the taps that fall on zero padding
      (``"dense"``, the usual count and the paper's) or only real input positions (``"real"``).
    - ``analog``: an analog (non-binary) input costs ``fan-out`` MACs for every element and step
      (``"dense"``) or only for its non-zero elements (``"nonzero"``).
    - ``direct_once``: with direct encoding the first layer sees the same frame at every step;
      True counts its MACs once per inference instead of T times.
    - ``pooling``: linear pools (avg/sum/adaptive-avg) between spiking neurons and a weight layer
      are folded into that layer (``"fuse"``: a spike costs one AC per synapse of the folded
      weight matrix; paths through overlapping windows into a conv are counted one by one) or
      are layers of their own (``"separate"``: one AC per spike and pool window, and the
      next layer then sees analog values and costs MACs).  Max pools on spikes are free (an OR).
    - ``zero_weights``: a synapse whose weight is exactly 0 (pruned) costs an operation like any other
      (``"count"``: the structural fan-out) or none (``"skip"``: NeuroBench's rule).
    - ``add``: residual adds are free (``"free"``: both branches accumulate into the same neuron
      current) or cost one AC per spike of a spiking addend and one AC per element and step for
      every analog addend after the first (``"count"``).
    - ``bn``: BatchNorm is folded into weights/thresholds and free (``"folded"``), or costs one MAC
      per element and step (``"unfolded"``), both for IR Affine nodes and for BNs that the tracer
      folded into a conv/linear (listed in its ``folded``).
    - ``bias``: a bias add is free (``"free"``) or one AC per output element and step (``"count"``).
    - ``neurons``: neuron-update operations are counted (``"count"``), not (``"none"``), or counted
      only when the energy model prices neuron updates, e.g. Loihi (``"auto"``).
    - ``shortcuts``: include 1x1 convolutions that feed a residual add (projection shortcuts).
    - ``classifier``: include weight layers that feed the network output directly.
    """

    ann_padding: str = "dense"
    analog: str = "dense"
    direct_once: bool = False
    pooling: str = "fuse"
    zero_weights: str = "count"
    add: str = "free"
    bn: str = "folded"
    bias: str = "free"
    neurons: str = "auto"
    shortcuts: bool = True
    classifier: bool = True

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"convention {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **kw) -> "Conventions":
        return replace(self, **kw)

    @classmethod
    def preset(cls, name: str) -> "Conventions":
        """A named set (:data:`PRESETS`): ``paper`` (the defaults), ``neurobench`` or ``spikingjelly``."""
        if name not in PRESETS:
            raise UserError(f"--conventions must be one of {', '.join(PRESETS)}, got {name!r}")
        return cls(**PRESETS[name])

    @classmethod
    def parse(cls, items, base: "Conventions" = None) -> "Conventions":
        """Build from ``["key=value", ...]`` strings (the CLI's ``--convention``), over ``base``."""
        kw = dict(base.to_dict()) if base is not None else {}
        names = {f.name: f.type for f in fields(cls)}
        for item in items or ():
            if "=" not in item:
                raise UserError(f"convention {item!r} must look like key=value")
            k, v = item.split("=", 1)
            k = k.strip().replace("-", "_")
            if k not in names:
                raise UserError(f"unknown convention {k!r}; known: {', '.join(names)}")
            if k in ("direct_once", "shortcuts", "classifier"):
                if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise UserError(f"convention {k} must be true or false, got {v!r}")
                kw[k] = v.lower() in ("true", "1", "yes")
            else:
                kw[k] = v
        return cls(**kw)
