"""Networks written with SpikingJelly 0.0.0.0.12's ``clock_driven`` API (the authors' version), traced and compared
with the modules' own spikes.  Run by tests/test_byon_spikingjelly012.py in a process of its own, with that
version first on ``sys.path`` (SpikingJelly 2.0, the venv's, has the same package name).  Prints one JSON line:
``{case: {"equal": bool, "rates": {...}, "families": [...]}}``.

The authors' neuron classes live in their repository's ``modules/neuron.py``; a package of that name is written
here with the ILIF, LIF and PLIF neurons as docs/ilif.md states them on SpikingJelly's single-step nodes, so the
classes the tracer knows by name are what it meets.
"""
from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from pathlib import Path

import torch
from torch import nn

import ilif_deploy as D

T = 8
MODULES_NEURON = '''
import torch
from spikingjelly.clock_driven.neuron import LIFNode, ParametricLIFNode


class InhibitoryLIFNeuron(LIFNode):
    """ILIF (docs/ilif.md) on SpikingJelly's single-step LIF: CIU decay 0.03 on the raw input, MPIU decay 1."""

    def __init__(self, tau=2., decay_input=False, v_threshold=1., v_reset=None, **kwargs):
        super().__init__(tau, decay_input, v_threshold, v_reset)
        self.register_memory('ciu', 0.)
        self.register_memory('drive', 0.)
        self.register_memory('mpiu', 0.)

    def forward(self, x):
        if isinstance(self.ciu, float):  # memories start as 0. until the first step gives them a shape
            self.ciu, self.drive, self.mpiu = (torch.zeros_like(x) for _ in range(3))
        self.ciu = 0.03 * (self.ciu + self.drive)
        self.neuronal_charge(x - torch.clamp(self.ciu, min=0))
        spike = self.neuronal_fire()
        self.drive = spike * x
        self.neuronal_reset(spike)
        self.mpiu = 1 * (self.mpiu + spike * self.v)
        self.v = self.v - spike * torch.sigmoid(self.mpiu)
        return spike


class BPTTNeuron(LIFNode):
    def __init__(self, tau=2., decay_input=False, v_threshold=1., v_reset=None, **kwargs):
        super().__init__(tau, decay_input, v_threshold, v_reset)


class PLIFNeuron(ParametricLIFNode):
    def __init__(self, tau=2., decay_input=False, v_threshold=1., v_reset=None, **kwargs):
        super().__init__(tau, decay_input, v_threshold, v_reset)
'''


def _run(net, x, names, single):
    from spikingjelly.clock_driven import functional

    mods = dict(net.named_modules())
    seen = {k: [] for k in names}
    hooks = [mods[k].register_forward_hook(lambda m, i, o, k=k: seen[k].append(o)) for k in names]
    functional.reset_net(net)
    with torch.no_grad():
        out = torch.stack([net(x[t]) for t in range(T)]) if single else net(x)
    for h in hooks:
        h.remove()
    functional.reset_net(net)
    return {k: torch.stack(v) if single else v[0] for k, v in seen.items()}, out


def _case(net, names, single, bias=1.0, high=0.2):
    torch.manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.fill_(bias)
            if isinstance(m, nn.Linear):
                nn.init.uniform_(m.weight, -0.05, high)
    net.eval()
    g = D.trace(net, (2, 8, 8), T, encoding="sequence")
    x = torch.rand(T, 4, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 2.0
    ref, out = _run(net, x, names, single)
    got, rec = D.run(g, x, record=names)
    equal = all(torch.equal(rec[k], ref[k]) for k in names) and torch.equal(got, out)
    return {"equal": equal, "rates": {k: float(v.mean()) for k, v in ref.items()},
            "families": sorted({n.family for n in g.nodes.values() if n.op == "neuron"})}


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    (folder / "modules").mkdir()
    (folder / "modules" / "__init__.py").write_text("")
    (folder / "modules" / "neuron.py").write_text(textwrap.dedent(MODULES_NEURON))
    sys.path.insert(0, str(folder))
    from modules import neuron as authors
    from spikingjelly.clock_driven import layer, neuron

    def single(make, bias=1.0, high=0.2):
        return _case(nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), make(), nn.AvgPool2d(2),
                                   nn.Flatten(), nn.Linear(128, 10), make()), ["2", "6"], True, bias, high)

    results = {
        "LIFNode (defaults: decay_input, hard reset to 0)": single(neuron.LIFNode, 1.5, 0.1),
        "LIFNode (decay_input=False, v_reset=None)": single(lambda: neuron.LIFNode(decay_input=False, v_reset=None),
                                                             0.6, 0.08),
        "IFNode": single(neuron.IFNode, 0.2, 0.08),
        "ParametricLIFNode": single(neuron.ParametricLIFNode, 1.5, 0.1),
        "authors' InhibitoryLIFNeuron": single(lambda: authors.InhibitoryLIFNeuron(tau=1.1), 0.8, 0.11),
        "authors' BPTTNeuron": single(lambda: authors.BPTTNeuron(tau=1.1), 0.8, 0.08),
        "authors' PLIFNeuron": single(lambda: authors.PLIFNeuron(tau=1.1), 0.8, 0.08),
        "MultiStepLIFNode in SeqToANNContainers": _case(nn.Sequential(
            layer.SeqToANNContainer(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8)),
            neuron.MultiStepLIFNode(tau=1.5),
            layer.SeqToANNContainer(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(128, 10)),
            neuron.MultiStepLIFNode(tau=1.5)), ["1", "3"], False, 1.0, 0.12),
    }
    import spikingjelly
    print(json.dumps({"version": Path(spikingjelly.__file__).parent.parent.name, "cases": results}))


if __name__ == "__main__":
    main()
