"""Column names of the per-layer report table, in one place (units in every name; counts per inference)."""

ACS = "ACs [ops/inference]"
MACS = "MACs [ops/inference]"
FIRING = "firing rate [spikes/neuron/step]"
CONTINUOUS = "continuous firing [share of neurons]"
ENERGY = "energy [pJ/inference]"
SYNAPTIC_ENERGY = "synaptic energy [pJ/inference]"
NEURON_ENERGY = "neuron energy [pJ/inference]"
ANN_ENERGY = "ANN energy [pJ/inference]"

#: DataFrame column -> Row attribute
COLUMNS = {
    "name": "name",
    "op": "op",
    "shape": "shape",
    "input": "input_kind",
    "fanout mean [synapses]": "fanout_mean",
    "neurons [count]": "neurons",
    ACS: "acs",
    MACS: "macs",
    "neuron ACs [ops/inference]": "neuron_acs",
    "neuron MACs [ops/inference]": "neuron_macs",
    "spikes [1/inference]": "spikes",
    FIRING: "firing_rate",
    CONTINUOUS: "continuous_rate",
    "memory accesses [words/inference]": "mem_accesses",
    "ANN MACs [ops/inference]": "ann_macs",
    "ANN ACs [ops/inference]": "ann_acs",
}
ENERGY_COLUMNS = [ENERGY, SYNAPTIC_ENERGY, NEURON_ENERGY, ANN_ENERGY]
#: what the command line prints per layer
SHORT = ["name", "op", "input", ACS, MACS, FIRING, ENERGY]
