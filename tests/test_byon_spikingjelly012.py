"""Networks written with SpikingJelly 0.0.0.0.12's clock_driven API -- the version the authors train with -- and
with the authors' neuron classes: traced, the graph's spikes equal the modules' own at every step.  Run in a process
of its own (tests/sj012_networks.py), with that version first on the path (SpikingJelly 2.0 has the same name)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import SPIKINGJELLY_012, TESTS

CASES = {"LIFNode (defaults: decay_input, hard reset to 0)": ["lif"],
         "LIFNode (decay_input=False, v_reset=None)": ["lif"], "IFNode": ["if"], "ParametricLIFNode": ["plif"],
         "authors' InhibitoryLIFNeuron": ["ilif"], "authors' BPTTNeuron": ["lif"], "authors' PLIFNeuron": ["plif"],
         "MultiStepLIFNode in SeqToANNContainers": ["lif"]}


@pytest.fixture(scope="module")
def results():
    if not (SPIKINGJELLY_012 / "spikingjelly").is_dir():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"SpikingJelly 0.0.0.0.12 is not in {SPIKINGJELLY_012} (scripts/setup.sh --test installs it)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SPIKINGJELLY_012), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, str(TESTS / "sj012_networks.py")], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_it_is_the_authors_version(results):
    assert results["version"] == "spikingjelly-0.0.0.0.12"


@pytest.mark.parametrize("case", list(CASES))
def test_clock_driven_network_traces_spike_for_spike(results, case):
    r = results["cases"][case]
    assert r["equal"], case
    assert all(0.02 < v < 0.98 for v in r["rates"].values()), r["rates"]  # both layers fire
    assert r["families"] == CASES[case]
