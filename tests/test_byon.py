"""Bring your own network: what researchers write -- plain torch layers around this project's neurons with time
folded into the batch, single-step loops, snntorch and SpikingJelly (2.0 here; 0.0.0.0.12, the authors' API, in
test_byon_spikingjelly012.py) -- traced into the graph, whose spikes equal the module's own at every step."""
from __future__ import annotations


import pytest
import torch
from torch import nn

import ilif_deploy as D
from ilif_deploy import ir as N
from ilif_deploy.errors import TraceError

T = 8


def _module_spikes(net, x, names, single: bool, reset):
    """The module's own spikes of the modules ``names`` ``{name: [T, B, ...]}`` and its output, stepping it over
    ``x`` ``[T, B, ...]`` one call per step (``single``) or in one call."""
    mods = dict(net.named_modules())
    seen = {k: [] for k in names}
    hooks = [mods[k].register_forward_hook(lambda m, i, o, k=k: seen[k].append(o[0] if isinstance(o, tuple) else o))
             for k in names]
    reset(net)
    with torch.no_grad():
        if single:
            outs = [net(x[t]) for t in range(x.shape[0])]
            out = torch.stack([o[0] if isinstance(o, tuple) else o for o in outs])
        else:
            out = net(x)
    for h in hooks:
        h.remove()
    reset(net)
    return {k: torch.stack(v) if single else v[0] for k, v in seen.items()}, out


def _check(net, shape, names, single, reset, seed=0, scale=1.0, encoding="direct", **trace_kw):
    """Trace ``net`` and compare the graph's spikes with the module's on random input over T steps."""
    g = D.trace(net, shape, T, encoding=encoding, **trace_kw)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((T, 4, *shape) if encoding == "sequence" else (4, *shape), generator=gen) * scale
    xt = x if encoding == "sequence" else x.unsqueeze(0).expand(T, *x.shape).contiguous()
    ref, out = _module_spikes(net, xt, names, single, reset)
    got_out, rec = D.run(g, xt, record=list(names))
    rates = {k: float((v > 0).float().mean()) for k, v in ref.items()}
    assert all(0.02 < r < 0.98 for r in rates.values()), rates  # every layer fires: the comparison means something
    for k in names:
        assert torch.equal(rec[k], ref[k]), k
    assert torch.equal(got_out, out)
    return g


# ------------------------------------------------------------------ plain torch around this project's neurons
class Folded(nn.Module):
    """Multi-step, written with plain torch layers: time folded into the batch around them."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.lif1 = D.ILIF(tau=2.0)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        self.lif2 = D.LIF(tau=2.0, v_th=0.5)

    def forward(self, x):  # [T, B, C, H, W]
        T_, B = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1))).unflatten(0, (T_, B))
        s = self.pool(self.lif1(y).flatten(0, 1)).flatten(1)
        return self.lif2(self.fc(s).view(T_, B, -1))


def test_plain_torch_layers_with_time_folded_into_the_batch():
    torch.manual_seed(0)
    net = Folded().eval()
    with torch.no_grad():
        net.bn.bias.fill_(0.6)
    g = _check(net, (2, 8, 8), ["lif1", "lif2"], False, lambda n: None, scale=2.0, encoding="sequence")
    assert [n.op for n in g.nodes.values()] == ["input", "conv2d", "affine", "neuron", "avgpool2d", "flatten",
                                                "linear", "neuron", "output"]


def test_a_neuron_on_time_merged_into_the_batch_is_refused():
    class Wrong(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = D.LIF()

        def forward(self, x):
            return self.lif(x.flatten(0, 1)).view(x.shape)

    with pytest.raises(TraceError, match="neuron 'lif' receives time merged into the batch"):
        D.trace(Wrong(), (4,), T)


# ------------------------------------------------------------------ snntorch, single-step
def _snn_reset(net):
    from snntorch import utils

    utils.reset(net)


@pytest.mark.parametrize("mechanism", ["subtract", "zero"])
def test_snntorch_single_step_network(mechanism):
    """snntorch as its tutorials write it: nn.Sequential with init_hidden=True neurons, ``spk, mem = net(x)`` once
    per step; the default subtract reset (the threshold taken off at the next step) and reset to zero."""
    import snntorch as snn

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.MaxPool2d(2),
                        snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism=mechanism),
                        nn.Flatten(), nn.Linear(6 * 4 * 4, 10),
                        snn.Leaky(beta=0.9, threshold=0.6, init_hidden=True, output=True, reset_mechanism=mechanism))
    g = _check(net, (1, 8, 8), ["2", "5"], True, _snn_reset, scale=2.0)
    reset = {n.params.reset for n in g.of_type(N.Neuron)}
    assert reset == {"subtract_next" if mechanism == "subtract" else "zero"}


def test_snntorch_synaptic_and_rleaky():
    import snntorch as snn

    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(12, 20), snn.Synaptic(alpha=0.6, beta=0.8, init_hidden=True),
                        nn.Linear(20, 16), snn.RLeaky(beta=0.7, linear_features=16, init_hidden=True),
                        nn.Linear(16, 5), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    with torch.no_grad():
        net[3].recurrent.weight.mul_(2.0)  # a recurrence strong enough to change spikes
    g = _check(net, (12,), ["1", "3", "5"], True, _snn_reset, scale=1.5)
    assert [n.op for n in g.nodes.values()] == ["input", "linear", "leaky_integrator", "neuron", "linear",
                                                "recurrent_neuron", "linear", "neuron", "output"]


def test_snntorch_settings_no_family_declares_are_refused_by_name():
    import snntorch as snn

    for neuron, message in [(snn.Leaky(beta=0.5), "init_hidden=False"),
                            (snn.Leaky(beta=0.5, init_hidden=True, reset_delay=False), "reset_delay=False"),
                            (snn.Synaptic(alpha=0.5, beta=0.5, init_hidden=True, reset_mechanism="zero"),
                             "zeroes the next step's whole membrane"),
                            (snn.Leaky(beta=0.5, init_hidden=True, graded_spikes_factor=2.0),
                             "graded_spikes_factor")]:
        with pytest.raises(TraceError, match=f"module '1' \\(snntorch.*{message}"):
            D.trace(nn.Sequential(nn.Linear(4, 4), neuron), (4,), T)


# ------------------------------------------------------------------ SpikingJelly 2.0 (activation_based)
def _sj_net(neuron, layer, multi: bool, node=None, **kw):
    mode = "m" if multi else "s"
    make = node or neuron.LIFNode
    return nn.Sequential(layer.Conv2d(2, 8, 3, padding=1, step_mode=mode), layer.BatchNorm2d(8, step_mode=mode),
                         make(step_mode=mode, **kw), layer.AvgPool2d(2, step_mode=mode),
                         layer.Flatten(step_mode=mode), layer.Linear(8 * 4 * 4, 10, step_mode=mode),
                         make(step_mode=mode, **kw))


@pytest.mark.parametrize("kind, kw", [("LIFNode", {}), ("LIFNode", {"decay_input": False, "v_reset": None}),
                                      ("IFNode", {}), ("ParametricLIFNode", {"init_tau": 3.0})])
@pytest.mark.parametrize("multi", [False, True])
def test_spikingjelly_2_networks_single_and_multi_step(spikingjelly, kind, kw, multi):
    neuron, layer, functional = spikingjelly
    torch.manual_seed(3)
    net = _sj_net(neuron, layer, multi, getattr(neuron, kind), **kw).eval()
    # both layers fire, neither always: decay_input divides the input by tau, an IF integrates it all
    bias, high = (0.2, 0.08) if kind == "IFNode" else (1.5, 0.25) if kw.get("decay_input", True) else (0.6, 0.15)
    with torch.no_grad():
        net[1].bias.fill_(bias)
        nn.init.uniform_(net[5].weight, -0.05, high)
    _check(net, (2, 8, 8), ["2", "6"], not multi, functional.reset_net, scale=2.0, encoding="sequence")


def test_spikingjelly_2_seq_to_ann_container(spikingjelly):
    neuron, layer, functional = spikingjelly
    torch.manual_seed(4)
    net = nn.Sequential(layer.SeqToANNContainer(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8)),
                        neuron.LIFNode(step_mode="m", tau=1.5),
                        layer.SeqToANNContainer(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)),
                        neuron.LIFNode(step_mode="m", tau=1.5)).eval()
    with torch.no_grad():
        net[0][1].bias.fill_(1.0)
        nn.init.uniform_(net[2][2].weight, -0.06, 0.08)
    g = _check(net, (2, 8, 8), ["1", "3"], False, functional.reset_net, scale=2.0, encoding="sequence")
    assert [n.name for n in g.nodes.values()][1:4] == ["0.0", "0.1", "1"]


def test_spikingjelly_settings_no_family_declares_are_refused(spikingjelly):
    neuron, layer, functional = spikingjelly
    with pytest.raises(TraceError, match="v_reset=0.5: SpikingJelly starts the membrane at v_reset"):
        D.trace(nn.Sequential(nn.Linear(4, 4), neuron.LIFNode(v_reset=0.5)), (4,), T)
    with pytest.raises(TraceError, match="mixes single-step neurons .* and multi-step ones"):
        D.trace(nn.Sequential(neuron.LIFNode(step_mode="s"), D.LIF()), (4,), T)


# ------------------------------------------------------------------ the front door
def test_arch_module_is_found_in_the_current_folder_as_python_m_does(tmp_path):
    """``ilif-export ... --arch-module mynets`` run (the console script, whose path holds only its own folder) in
    the folder that holds mynets.py: imported from there; a name that is nowhere says where it looked."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "mynets.py").write_text(
        "from torch import nn\nimport ilif_deploy\n\n\n@ilif_deploy.register_arch('my_mlp', input_shape=(4,), "
        "timesteps=3)\ndef my_mlp():\n    return nn.Sequential(nn.Linear(4, 3), ilif_deploy.LIF())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    make = "import ilif_deploy, mynets; ilif_deploy.save(ilif_deploy.build('my_mlp'), 'm.pt')"
    subprocess.run([sys.executable, "-c", make], cwd=tmp_path, env=env, check=True, capture_output=True)
    tool = str(Path(sys.executable).parent / "ilif-export")
    res = subprocess.run([tool, "m.pt", "--arch-module", "mynets", "--target", "ir", "-o", "g.ir.npz"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert D.Graph.load(tmp_path / "g.ir.npz").nodes["0"].weight.shape == (3, 4)
    res = subprocess.run([tool, "m.pt", "--arch-module", "yournets", "--target", "ir", "-o", "h.ir.npz"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and f"looked in the current folder {tmp_path}" in res.stderr, res.stderr


def test_the_readmes_python_block_runs_from_any_folder(tmp_path, monkeypatch):
    """example: names work in load_model and open_graph, so the README's block needs no path into the checkout."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"### Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["acc"] > 0.9 and (tmp_path / "digits.onnx").is_file()


def test_the_main_job_without_lava_runs_the_rest_and_names_what_it_skipped(tmp_path, monkeypatch, capsys):
    """A plain ``pip install .`` has no Lava: every other step still runs, one last line says what was skipped."""
    from ilif_deploy.examples import main_job

    monkeypatch.setattr(main_job, "lava_installed", lambda: False)
    assert main_job.main(["--out", str(tmp_path), "--samples", "5", "--epochs", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("main job: skipped 2 step(s) that run Lava") and "lava-nc==0.10.0" in last
    assert {"digits_ilif.lava.h5", "digits_ilif.onnx", "energy.html", "digits_ilif_w4.ir.npz",
            "simulate_w4_fixed.json"} <= {p.name for p in tmp_path.iterdir()}  # fine-tuning needs no Lava
    assert not (tmp_path / "simulate_float.json").exists()


def test_the_readmes_snntorch_model_keeps_its_accuracy_on_lava(tmp_path, lava):
    """examples/byon_snntorch.py (the README's section): the traced graph has the module's accuracy, Lava float runs
    it spike for spike; snntorch's NIR route reads the reset as zero and loses accuracy."""
    import json

    from ilif_deploy.cli import export, simulate
    from ilif_deploy.examples import byon_snntorch

    assert byon_snntorch.main(["--out", str(tmp_path)]) == 0
    acc = json.loads((tmp_path / "accuracy.json").read_text())
    assert acc["graph"] == acc["module"] > 0.9 and acc["nir_without_reset"] < acc["module"]
    assert export.main([str(tmp_path / "snn.ir.npz"), "--target", "lava", "-o", str(tmp_path / "snn.lava.h5")]) == 0
    assert simulate.main([str(tmp_path / "snn.lava.h5"), "--data", "digits", "--samples", "60", "--mode", "float",
                          "--json", str(tmp_path / "sim.json")]) == 0
    sim = json.loads((tmp_path / "sim.json").read_text())
    assert sim["overall_spike_agreement"] == 1.0 and sim["prediction_agreement"] == 1.0


def test_the_readmes_bring_your_own_network_block_runs(tmp_path, monkeypatch, spikingjelly):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## Bring your own network.*?```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    for name, family in (("mine", "ilif"), ("folded", "ilif"), ("snn", "lif"), ("sj", "lif")):
        g = D.Graph.load(tmp_path / f"{name}.ir.npz")
        assert g.timesteps == 6 and g.of_type(N.Neuron)[0].family == family, name
