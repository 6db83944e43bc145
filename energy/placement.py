"""Placement on Loihi cores: per neuron layer, how many cores of Loihi 1 and Loihi 2 it needs under the chips'
published per-core limits, and which limit decided it.

The network is taken as Lava runs it (:func:`ilif_deploy.converters.lava.build_netspec`: synapses fused per pair of
neuron layers), one layer's neurons split evenly over its cores, no two layers sharing a core (as Lava's and
nengo-loihi's mappers place them).

**Loihi 1** (Davies et al., IEEE Micro 38(1), 2018; nengo-loihi ``block.py``): per core at most 1,024 compartments,
4,096 input axons, 4,096 output axons and 1,048,576 bits (16,384 64-bit words) of synaptic memory; 128 cores per
chip.  A neuron takes one compartment per state of its own (the synaptic current lives in the membrane's
compartment; ILIF's CIU and MPIU are two more).  Synapses are stored one by one (no weight sharing for
convolutions): each input axon holds its synapses into the core in blocks of up to 64, each block
``weights x (8 weight bits + index bits) + 10`` header bits rounded up to 64-bit words, the index bits the fewest of
6..12 that address the core's compartments (nengo-loihi ``SynapseConfig.bits_per_axon``; a dense row needs no
index).  A dense synapse feeds every core from every source neuron; a convolution split into strips of output
rows feeds a core only the input rows its strip reads.  A neuron needs one output axon per core it reaches.

**Loihi 2** (lava-dl's compiler logs and Lava's mapper, see docs/energy.md): a core holds 8,192 state words, a
neuron of Loihi's CUBA model two (current and voltage: 4,096 neurons), ILIF five (current, voltage, CIU, its input
register, MPIU); the compiler fills cores to 87.5 % (3,584 CUBA neurons, what its logs show); a core's synaptic
memory holds 12,000 synapses (the ``SynMem`` budget of the logs, whose unit they do not state: read here as synaptic
weights, an assumption), a convolution's weights shared across its output positions; 120 cores per chip (Lava's
``NUM_VIRTUAL_CORES_L3``).  These are modelled limits, not a compiler: on PilotNet LIF (lava-dl's published
placement: 74 cores) this model gives 78.

**Spike routes** (what the ``loihi``/``loihi2`` energy models price per spike): the cores are laid out in layer order
on a mesh of routers, 4 cores per router (Davies 2018: cores share a router in groups of four), 8 routers east-west
per row, rows stacked north-south (the chip's 128 cores as 8 x 4 routers; beyond one chip the rows go on, so a
chip-to-chip link is priced as mesh hops -- an assumption, as is the order of the layout).  A spike of a layer is one
packet to each core of the layers it feeds that it reaches (``_Synapses.reach``; a layer feeding nothing sends one,
to the host), and a packet travels the mean east-west and north-south router distance between the two layers' cores.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np

from ilif_deploy import families

LOIHI1 = {"compartments": 1024, "input_axons": 4096, "output_axons": 4096, "synapse_bits": 16384 * 64,
          "cores_per_chip": 128}
#: nengo-loihi's synapse format: index bits it can use, synapses per block, header bits per block
LOIHI1_INDEX_BITS, LOIHI1_BLOCK, LOIHI1_HEADER_BITS, LOIHI1_WEIGHT_BITS = (6, 7, 8, 9, 10, 11, 12), 64, 10, 8
LOIHI2 = {"state_words": 8192, "fill": 0.875, "synapses": 12000, "cores_per_chip": 120}
#: the mesh of the route model: cores per router, routers per east-west row
CORES_PER_ROUTER, ROUTERS_PER_ROW = 4, 8


def _routers(first: int, count: int) -> np.ndarray:
    """(x, y) router coordinates of ``count`` cores laid out from core index ``first``."""
    r = (first + np.arange(count)) // CORES_PER_ROUTER
    return np.stack([r % ROUTERS_PER_ROW, r // ROUTERS_PER_ROW], axis=1).astype(np.float64)


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of |a_i - b_j| over all pairs, in O((m + k) log k): a layer placed one neuron per core has 10^5 cores."""
    b = np.sort(b)
    below = np.concatenate([[0.0], np.cumsum(b)])
    i = np.searchsorted(b, a)
    total = (a * i - below[i] + (below[-1] - below[i]) - a * (len(b) - i)).sum()
    return float(total / (len(a) * len(b)))


def _route(src: np.ndarray, targets) -> dict:
    """Per spike of a layer on routers ``src``: packets and mean east-west / north-south hops per packet, over
    ``targets`` = [(router coordinates of the target's cores, cores one spike reaches)]."""
    packets = ew = ns = 0.0
    for dst, reach in targets:
        d = [_mean_distance(src[:, axis], dst[:, axis]) for axis in (0, 1)]
        packets += reach
        ew, ns = ew + reach * d[0], ns + reach * d[1]
    if not packets:  # feeds nothing placed: one packet out of the core (to the host), no hops counted
        return {"packets": 1.0, "ew_hops": 0.0, "ns_hops": 0.0}
    return {"packets": float(packets), "ew_hops": float(ew / packets), "ns_hops": float(ns / packets)}


def loihi1_axon_bits(weights: int, compartments_on_core: int, dense: bool) -> int:
    """Synaptic memory bits of one input axon holding ``weights`` synapses into a Loihi 1 core (nengo-loihi's
    formula): blocks of up to 64 synapses, each ``n x bits per synapse + 10`` rounded up to 64-bit words."""
    if weights <= 0:
        return 0
    need = max(1, math.ceil(math.log2(max(compartments_on_core, 2))))
    index = 0 if dense else next((b for b in LOIHI1_INDEX_BITS if b >= need), LOIHI1_INDEX_BITS[-1])
    per = LOIHI1_WEIGHT_BITS + index
    bits = 0
    for start in range(0, weights, LOIHI1_BLOCK):
        n = min(LOIHI1_BLOCK, weights - start)
        bits += -64 * (-(n * per + LOIHI1_HEADER_BITS) // 64)
    return bits


def _loihi1_compartments(view) -> int:
    """Loihi 1 compartments per neuron: one per state, the synaptic current sharing the membrane's."""
    return families.compartments(view) - (1 if "synaptic_current" in families.features(view) else 0)


def _loihi2_words(view) -> int:
    """Loihi 2 state words per neuron: the input current register plus every state of the neuron (a synaptic
    current is that register)."""
    return len(families.state_names(view)) + (0 if "synaptic_current" in families.features(view) else 1)


def _tiles(k: int, h: int, w: int):
    """``k`` cores over an ``h`` x ``w`` output grid: near-square tiles, (rows, cols) of one tile."""
    t = max(1, min(k, h * w))
    a = min(h, max(1, round(math.sqrt(t * h / w))))
    b = min(w, -(-t // a))
    return -(-h // a), -(-w // b)


class _Synapses:
    """What the placement needs of one synapse into a layer: its source neurons, its weights as stored (a
    convolution's unrolled for Loihi 1, shared for Loihi 2; zeros included, as dense storage keeps them) and its
    non-zero weights, and for a convolution its geometry."""

    def __init__(self, syn):
        w = np.asarray(syn.weight)
        self.sources, self.kind = int(np.prod(syn.in_shape)), syn.kind
        if syn.kind == "conv":
            positions = int(np.prod(syn.out_shape[1:]))
            self.unrolled, self.nonzero = w.size * positions, int(np.count_nonzero(w)) * positions
            self.shared = int(w.size)
            self.geometry = (syn.in_shape, syn.out_shape, w.shape[2:], syn.stride, syn.dilation)
        else:
            self.unrolled = self.shared = int(w.size)
            self.nonzero = int(np.count_nonzero(w))
            self.geometry = None

    def axons(self, cores: int) -> int:
        """Input axons of one core when the target is split over ``cores``: every source neuron for a dense
        synapse, a diagonal shortcut's own share, a convolution's inputs under one output tile."""
        if self.kind == "sparse":
            return -(-self.sources // cores)
        if self.geometry is None:
            return self.sources
        (c_in, h_in, w_in), (_, h_out, w_out), (kh, kw), (sh, sw), (dh, dw) = self.geometry
        rows, cols = _tiles(cores, h_out, w_out)
        return c_in * min(h_in, (rows - 1) * sh + dh * (kh - 1) + 1) * min(w_in, (cols - 1) * sw + dw * (kw - 1) + 1)

    def reach(self, cores: int) -> int:
        """Cores of this synapse's target that one source neuron reaches: all of a dense target's, one of a
        diagonal's, the output tiles a convolution's window from it overlaps (at most 2 x 2)."""
        if self.kind == "dense":
            return cores
        if self.kind == "sparse":
            return 1
        return min(cores, 4)

    def bits(self, cores: int, compartments_on_core: int) -> int:
        """Synaptic memory bits of one Loihi 1 core: per input axon its share of the weights, stored densely
        (zeros kept, no index bits) or as non-zero synapses with index bits, whichever is smaller."""
        axons = max(self.axons(cores), 1)
        dense = axons * loihi1_axon_bits(-(-self.unrolled // (cores * axons)), compartments_on_core, True)
        sparse = axons * loihi1_axon_bits(-(-self.nonzero // (cores * axons)), compartments_on_core, False)
        return min(dense, sparse)


def _loihi1_layer(n: int, comp: int, syns, reach: int = 0, start: Optional[tuple] = None) -> tuple:
    """(cores, deciding limit, what one core holds) of a Loihi 1 layer of ``n`` neurons whose neurons each reach
    ``reach`` cores of the layers they feed.  ``start``: the (cores, limit) this layer got with ``reach`` 0; every
    count below it is over a limit other than the output axons (the last one checked, so never the one named), so
    the search resumes there with the same result as from the start."""
    def fits(k):
        m = -(-n // k)
        use = {"compartments": m * comp, "input_axons": sum(s.axons(k) for s in syns),
               "synapse_bits": sum(s.bits(k, m * comp) for s in syns), "output_axons": m * reach}
        return [key for key, v in use.items() if v > LOIHI1[key]], use

    k = max(1, -(-n * comp // LOIHI1["compartments"]))  # no fewer cores than the compartments need
    if k < n:
        # a layer over a limit that is smallest at one neuron per core (compartments, input and output axons:
        # the 1x1 output tile has the fewest inputs) is over at every count: the search below would try them all
        over, use = fits(n)
        if set(over) & {"compartments", "input_axons", "output_axons"}:
            return n, f"{over[0]} (over even at one neuron per core)", use
    decided = "compartments" if k > 1 else "fits one core"
    if start is not None and start[0] > k:
        k, decided = start
    while True:
        over, use = fits(k)
        if not over:
            return k, decided, use
        if k >= n:  # one neuron per core and still over: a limit more cores cannot meet
            return k, f"{over[0]} (over even at one neuron per core)", use
        decided, k = over[0], k + 1


def placement(graph) -> Dict[str, object]:
    """Per neuron layer and in total: Loihi 1 cores (and the limit that decided them, what a core holds) and Loihi 2
    cores (and the limit that decided them), and per chip the route of a spike (``loihi1_route``, ``loihi2_route``:
    packets, mean east-west and north-south hops per packet); totals ``loihi1_cores``, ``loihi1_chips``,
    ``loihi2_cores``, ``loihi2_chips`` and ``loihi1_placeable`` (False: a layer exceeds a limit even at one neuron
    per core). ``{"unavailable": reason}`` for a network Lava cannot run (nothing to place)."""
    from ilif_deploy.converters.lava.netspec import build_netspec
    from ilif_deploy.errors import UserError

    g = graph
    if not g.timesteps:  # the placement does not depend on T; the builder wants one
        g = type(graph)(nodes=graph.nodes, edges=list(graph.edges), metadata={**graph.metadata, "timesteps": 1})
    syns = []  # one per synapse, in the spec's order: counting its weights is the costly part
    try:  # each synapse counted as it is built, its float64 weights dropped then
        spec = build_netspec(g, take_layer=lambda layer, incoming: syns.extend(_Synapses(s) for _, s in incoming))
    except UserError as e:  # GraphError too: an op Lava has no form for
        return {"unavailable": str(e)}
    views = {v.name: v for v in spec.neuron_views()}
    incoming = {lay.name: [syns[i] for i, _ in spec.incoming_indexed(lay.name)] for lay in spec.layers}
    outgoing = {lay.name: [(s.target, syns[i]) for i, s in enumerate(spec.synapses)
                           if s.source == lay.name and s.target != lay.name] for lay in spec.layers}
    layers: Dict[str, dict] = {}
    for lay in spec.layers:
        n, view, syns = int(np.prod(lay.shape)), views[lay.name], incoming[lay.name]
        c1 = _loihi1_compartments(view)
        k1, why1, use1 = _loihi1_layer(n, c1, syns)
        words = _loihi2_words(view)
        per_core = int(LOIHI2["state_words"] * LOIHI2["fill"]) // words
        by_neurons = -(-n // per_core)
        by_synapses = -(-sum(s.shared for s in syns) // LOIHI2["synapses"])
        k2 = max(by_neurons, by_synapses, 1)
        why2 = "fits one core" if k2 == 1 else ("synaptic memory" if by_synapses > by_neurons else "neurons")
        layers[lay.name] = {"neurons": n, "loihi1_compartments_per_neuron": c1, "loihi1_cores": k1,
                            "loihi1_limit": why1, "loihi1_core_use": use1, "loihi2_state_words_per_neuron": words,
                            "loihi2_neurons_per_core": per_core, "loihi2_cores": k2, "loihi2_limit": why2}
    # output axons: one per core a neuron reaches; a layer whose neurons reach more cores than a core has output
    # axons for gets more cores (a second pass, the targets' cores known)
    for name, info in layers.items():
        reach = sum(syn.reach(layers[t]["loihi1_cores"]) for t, syn in outgoing[name] if t in layers)
        if reach:
            k, why, use = _loihi1_layer(info["neurons"], info["loihi1_compartments_per_neuron"], incoming[name],
                                        reach, start=(info["loihi1_cores"], info["loihi1_limit"]))
            info.update(loihi1_cores=k, loihi1_limit=why, loihi1_core_use=use)
    for chip in ("loihi1", "loihi2"):
        first, at = {}, 0
        for name, info in layers.items():
            first[name], at = at, at + info[f"{chip}_cores"]
        where = {name: _routers(first[name], info[f"{chip}_cores"]) for name, info in layers.items()}
        for name, info in layers.items():
            info[f"{chip}_route"] = _route(where[name], [(where[t], syn.reach(layers[t][f"{chip}_cores"]))
                                                          for t, syn in outgoing[name] if t in layers])
    t1 = sum(v["loihi1_cores"] for v in layers.values())
    t2 = sum(v["loihi2_cores"] for v in layers.values())
    totals = {"loihi1_cores": t1, "loihi1_chips": -(-t1 // LOIHI1["cores_per_chip"]), "loihi2_cores": t2,
              "loihi2_chips": -(-t2 // LOIHI2["cores_per_chip"]),
              # a layer over a limit even at one neuron per core (a fan-in beyond 4,096 input axons) cannot be
              # placed on Loihi 1 as modelled: its count is then one core per neuron, a bound, not a placement
              "loihi1_placeable": not any("even at one neuron" in v["loihi1_limit"] for v in layers.values())}
    return {"layers": layers, "totals": totals}


def placement_table(result: dict) -> Optional[str]:
    """The per-layer partition as text lines (None when there is nothing placed)."""
    if "layers" not in result:
        return None
    rows = [f"{'layer':<20} {'neurons':>9} {'Loihi 1 cores':>13}  {'decided by':<22} {'Loihi 2 cores':>13}  decided by"]
    for name, v in result["layers"].items():
        rows.append(f"{name[:20]:<20} {v['neurons']:>9,} {v['loihi1_cores']:>13,}  {v['loihi1_limit'][:22]:<22} "
                    f"{v['loihi2_cores']:>13,}  {v['loihi2_limit']}")
    t = result["totals"]
    rows.append(f"{'total':<20} {'':>9} {t['loihi1_cores']:>13,}  {str(t['loihi1_chips']) + ' chip(s)':<22} "
                f"{t['loihi2_cores']:>13,}  {t['loihi2_chips']} chip(s)")
    return "\n".join(rows)


__all__ = ["placement", "placement_table", "loihi1_axon_bits", "LOIHI1", "LOIHI2"]
