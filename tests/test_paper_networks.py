"""The paper's networks as their authors trained them: checkpoints in the authors' layout, exact graphs by
default, dataset presets and neuron settings, VGG-11 through every target at both DVS sizes, and users'
own architectures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nir
import onnx
import pytest
import torch

import ilif_deploy as D
from conftest import make_authors_checkpoint
from ilif_deploy import ir as N
from ilif_deploy import layers as L
from ilif_deploy.paper_models import VGG11_CFG
from ilif_deploy.cli import export as export_cli
from ilif_deploy.converters import get_exporter, open_graph
from ilif_deploy.converters.lava import load as load_lava
from ilif_deploy.converters.onnx import compare_with_runtime


def _events(shape, T, n, seed=0):
    """``[T, n, *shape]`` 0/1 event frames (a new frame per step, as DVS data)."""
    return (torch.rand(T, n, *shape, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


@pytest.fixture(scope="module")
def vgg(authors_vgg11_path):
    return D.load_model(authors_vgg11_path, arch="spiking_vgg11_bn", dataset="dvs-cifar10")


def test_authors_vgg11_checkpoint_loads_strictly_and_its_graph_is_exact(authors_vgg11_path, vgg, tmp_path):
    sd = torch.load(authors_vgg11_path, weights_only=True)["net"]
    assert len(sd) == 58 and {"layer1.0.weight", "layer1.1.running_var", "layer3.4.weight", "layer5.5.bias",
                              "classifier.1.weight", "classifier.1.bias"} <= set(sd)
    assert vgg.ilif_settings == {"input_shape": [2, 48, 48], "timesteps": 10, "encoding": "sequence",
                                 "dataset": "dvs-cifar10"}
    g = open_graph(authors_vgg11_path, arch="spiking_vgg11_bn", dataset="dvs-cifar10")
    assert (g.input_shape, g.timesteps, g.encoding) == ((2, 48, 48), 10, "sequence")
    x = _events((2, 48, 48), 10, 2)
    out, rec = D.run(g, x, record=[n.name for n in g.of_type(N.Neuron)])
    with torch.no_grad():
        ref = vgg(x)
    assert (out.sum(0) - ref.sum(0)).abs().max().item() == 0  # bit for bit (within 1e-5 is what is asked)
    assert len(rec) == 8 and min(float(r.mean()) for r in rec.values()) > 0.05
    torch.save({"net": {"module." + k: v for k, v in sd.items()}}, tmp_path / "dp.pth")  # DataParallel
    assert torch.equal(D.run(open_graph(tmp_path / "dp.pth", arch="spiking_vgg11_bn", dataset="dvs-cifar10"), x), out)


def test_authors_resnet18_with_two_input_channels(tmp_path):
    path = make_authors_checkpoint(tmp_path / "r18_dvs.pth", "spiking_resnet18", in_channels=2, frames=(2, 4, 48))
    model = D.load_model(path, arch="spiking_resnet18", dataset="dvs-cifar10")
    assert model.conv1.in_channels == 2
    g = open_graph(path, arch="spiking_resnet18", dataset="dvs-cifar10")
    assert (g.input_shape, g.timesteps, g.encoding) == ((2, 48, 48), 10, "sequence")
    x = _events((2, 48, 48), 10, 2)
    with torch.no_grad():
        ref = model(x)
    out, rec = D.run(g, x, record=[n.name for n in g.of_type(N.Neuron)])
    assert (out.sum(0) - ref.sum(0)).abs().max().item() == 0
    assert len(rec) == 17 and min(float(r.mean()) for r in rec.values()) > 0.02


def test_key_mismatch_is_one_readable_line(authors_vgg11_path, tmp_path):
    sd = torch.load(authors_vgg11_path, weights_only=True)["net"]
    sd["features.0.weight"] = sd.pop("layer1.0.weight")
    torch.save({"net": sd}, tmp_path / "renamed.pth")
    with pytest.raises(D.ModelFileError) as e:
        D.load_model(tmp_path / "renamed.pth", arch="spiking_vgg11_bn")
    msg = str(e.value)
    assert "\n" not in msg and "1 keys missing, e.g. layer1.0.weight; 1 unexpected, e.g. features.0.weight" in msg
    with pytest.raises(D.ModelFileError, match=r"classifier.1.weight: \[10, 25088\] in the file, \[11, 25088\]"):
        D.load_model(authors_vgg11_path, arch="spiking_vgg11_bn", dataset="dvs-gesture")


def test_dropout_keeps_one_mask_per_sample_over_all_steps():
    drop = L.Dropout(0.5).train()
    out = drop(torch.ones(6, 8, 100))
    assert all(torch.equal(out[t], out[0]) for t in range(6))  # the same neurons dropped at every step
    assert not torch.equal(out[0, 0], out[0, 1]) and set(out.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(torch.ones(6, 8, 100)), torch.ones(6, 8, 100))


def test_presets_and_neuron_settings_from_the_cli(authors_vgg11_path, tmp_path, capsys):
    out = tmp_path / "g.ir.npz"
    assert export_cli.main([str(authors_vgg11_path), "--arch", "spiking_vgg11_bn", "--dataset", "dvs-cifar10",
                            "--tau", "2", "--lam-i", "0.1", "--ciu-source", "net", "-T", "6", "--target", "ir",
                            "-o", str(out)]) == 0
    g = D.Graph.load(out)
    assert (g.input_shape, g.timesteps, g.encoding) == ((2, 48, 48), 6, "sequence")
    p = g.nodes["layer1.2"].params
    assert (p.lam, p.lam_i, p.ciu_source, p.lam_u) == (0.5, 0.1, "net", 1.0)
    assert g.metadata["dataset"] == "dvs-cifar10"  # recorded with the graph, so in every artifact and report
    assert g.metadata["arch"] == {"arch": "spiking_vgg11_bn", "kwargs": {
        "in_channels": 2, "num_classes": 10, "neuron_kwargs": {"tau": 2.0, "lam_i": 0.1, "ciu_source": "net"}}}
    capsys.readouterr()
    assert export_cli.main([str(authors_vgg11_path), "--arch", "spiking_vgg11_bn", "--dataset", "dvs-gesture",
                            "--target", "ir", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights do not match architecture 'spiking_vgg11_bn'" in err
    assert export_cli.main([str(authors_vgg11_path), "--arch", "spiking_vgg11_bn", "--neuron", "lif", "--lam-u",
                            "0.5", "--target", "ir", "-o", str(out)]) == 2
    assert "neuron kind 'lif' does not take 'lam_u'" in capsys.readouterr().err


def _hand_ann_macs(size: int, classes: int) -> int:
    """Dense MACs of VGG-11 at size x size with 2 input channels: every 3x3 conv (padding 1, taps on the
    padding counted, the usual convention) plus the classifier; pools are adds, BN folded."""
    macs, c, h = 0, 2, size
    for stage in VGG11_CFG:
        for v in stage:
            if v == "M":
                h //= 2
            else:
                macs += v * h * h * c * 9
                c = v
    return macs + 512 * 7 * 7 * classes


@pytest.mark.parametrize("size, T", [(48, 10), (128, 2)])
def test_vgg11_through_every_target(size, T, vgg, tmp_path, capsys):
    from ilif_deploy import energy

    g = D.trace(vgg, (2, size, size), T, encoding="sequence")
    x = _events((2, size, size), T, 2, seed=1)
    report = {}
    t0 = time.perf_counter()
    info = get_exporter("onnx")(g, tmp_path / "v.onnx")
    report["onnx"] = (info["bytes"], round(time.perf_counter() - t0, 2))
    onnx.checker.check_model(onnx.load(str(tmp_path / "v.onnx")), full_check=True)
    agreement = compare_with_runtime(g, tmp_path / "v.onnx", x.transpose(0, 1).numpy(), batch_size=2)  # [N, T, ...]
    assert agreement.max_abs_logit_diff <= 1e-4 and agreement.total_flips == 0
    t0 = time.perf_counter()
    get_exporter("nir")(g, tmp_path / "v.nir")
    report["nir"] = ((tmp_path / "v.nir").stat().st_size, round(time.perf_counter() - t0, 2))
    ng = nir.read(str(tmp_path / "v.nir"))
    assert isinstance(ng.nodes["classifier.1"], nir.Affine) and isinstance(ng.nodes["avgpool"], nir.Flatten)
    assert torch.equal(D.run(open_graph(tmp_path / "v.nir"), x), D.run(g, x))
    t0 = time.perf_counter()
    info = get_exporter("lava")(g, tmp_path / "v.lava.h5")
    report["lava"] = ((tmp_path / "v.lava.h5").stat().st_size, round(time.perf_counter() - t0, 2),
                      info["lava_processes"])
    spec, _ = load_lava(tmp_path / "v.lava.h5")
    assert info["synapses"] == {"conv": 8, "dense": 1}  # pool -> conv merged into strided convs
    # no giant matrices: a merged pool -> conv kernel is 4x its conv's (2x2 taps), the readout reads the last
    # neuron layer (512 x size/16 x size/16, cut by the last pool) through pooling folded into the classifier
    assert all(s.weight.size <= 4 * 512 * 512 * 9 for s in spec.synapses if s.kind == "conv")
    (dense,) = [s for s in spec.synapses if s.kind == "dense"]
    assert dense.weight.shape == (10, 512 * (size // 16) ** 2)
    assert [s.stride[0] for s in spec.synapses if s.kind == "conv"] == [1, 2, 2, 1, 2, 1, 2, 1]
    ann = energy.ann_baseline(g)
    assert sum(ann.values()) == _hand_ann_macs(size, 10)
    with capsys.disabled():
        print(f"\nVGG-11 {size}x{size} T={T}: (bytes, seconds[, Lava processes]) {report}")


@pytest.mark.slow
def test_vgg11_lava_float_one_sample_is_spike_exact(vgg, lava, tmp_path):
    from ilif_deploy.converters.lava import simulate

    g = D.trace(vgg, (2, 48, 48), 10, encoding="sequence")
    get_exporter("lava")(g, tmp_path / "v.lava.h5")
    x = _events((2, 48, 48), 10, 1, seed=2).transpose(0, 1).numpy()  # [N, T, C, H, W]
    t0 = time.perf_counter()
    rep = simulate(tmp_path / "v.lava.h5", x=x, mode="float", progress=False)
    print(f"\nLava float VGG-11 48x48 T=10, one sample: {time.perf_counter() - t0:.1f} s wall, "
          f"{rep.details['lava_processes']} processes")
    assert len(rep.spike_agreement) == 8 and rep.overall_spike_agreement == 1.0 and rep.prediction_agreement == 1.0
    assert min(rep.firing_rate.values()) > 0.05


def test_fold_bn_is_a_lowering_that_says_how_far_it_moved(tmp_path):
    exact, folded = tmp_path / "exact.onnx", tmp_path / "folded.onnx"
    for path, extra in ((exact, []), (folded, ["--fold-bn"])):
        assert export_cli.main(["example:digits_ilif", "--target", "onnx", "-o", str(path), "--json",
                                str(path) + ".json", *extra]) == 0
    ops = {p: {n.op_type for n in onnx.load(str(p)).graph.node} for p in (exact, folded)}
    assert "BatchNormalization" in ops[exact] and "BatchNormalization" not in ops[folded]
    info = {p: json.loads(Path(str(p) + ".json").read_text()) for p in (exact, folded)}
    assert "lowering" not in info[exact]
    low = info[folded]["lowering"]
    assert low["samples"] == 8 and set(low["spike_agreement"]) == {"neuron1", "neuron2"}
    assert low["reference"] == "exact graph" and low["candidate"] == "BN folded" and low["accuracy_reference"] == 1.0
    assert export_cli.main(["example:digits_ilif", "--target", "lava", "-o", str(tmp_path / "d.lava.h5"), "--json",
                            str(tmp_path / "lava.json")]) == 0  # Lava always folds, in float64
    assert json.loads((tmp_path / "lava.json").read_text())["lowering"]["candidate"].endswith("(Lava)")


USER_NETS = '''
from torch import nn
from ilif_deploy import ILIF, register_arch


class Tiny(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.lif = ILIF()

    def forward(self, x):
        return self.lif(self.fc(x))


@register_arch("tiny_user_net", input_shape=(4,), timesteps=3)
def tiny_user_net(width=3):
    return Tiny(width)
'''


def test_users_own_architectures_load_in_our_safe_format(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "userarch").mkdir(parents=True)
    (src / "userarch" / "__init__.py").write_text("")
    (src / "userarch" / "nets.py").write_text(USER_NETS)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "userarch"\nversion = "0.1"\n'
        '[project.entry-points."ilif_deploy.architectures"]\ntiny_user_net = "userarch.nets"\n'
        '[tool.setuptools]\npackages = ["userarch"]\n')
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setattr(D.architectures, "ARCHITECTURES", dict(D.ARCHITECTURES))
    import importlib

    importlib.import_module("userarch.nets")
    D.save(D.build("tiny_user_net", width=5), tmp_path / "tiny.pt")
    assert torch.load(tmp_path / "tiny.pt", weights_only=True)["arch"] == "tiny_user_net"
    tool = [sys.executable, "-m", "ilif_deploy.cli.export", str(tmp_path / "tiny.pt"), "--target", "ir", "-o"]

    def cli(out, *extra, pythonpath):
        return subprocess.run(tool + [str(tmp_path / out), *extra], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(pythonpath)}, cwd=tmp_path)

    res = cli("a.ir.npz", pythonpath=src)
    assert res.returncode == 2 and "'tiny_user_net' is not registered here" in res.stderr and "--arch-module" in \
        res.stderr
    res = cli("a.ir.npz", "--arch-module", "userarch.nets", pythonpath=src)
    assert res.returncode == 0, res.stderr
    assert D.Graph.load(tmp_path / "a.ir.npz").nodes["fc"].weight.shape == (5, 4)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(src)], check=True, capture_output=True)
    res = cli("b.ir.npz", pythonpath=site)  # installed: found through its entry point, no flag
    assert res.returncode == 0, res.stderr
