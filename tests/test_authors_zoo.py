"""Every network the authors' train.py trains, loaded from a checkpoint in their layout (key names as their code
writes them, written out here from their models/*.py), traced exactly; their PLIF neuron; run folders (checkpoint +
args.txt) that load with nothing but the path; the presets and readers of their datasets."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ilif_deploy as D
from ilif_deploy import ir as N
from ilif_deploy.architectures import DEFAULT_SETTINGS
from ilif_deploy.cli import energy as energy_cli
from ilif_deploy.cli import export as export_cli
from ilif_deploy.converters import open_graph
from ilif_deploy.errors import UserError
from ilif_deploy.paper_models import AUTHORS_ARCHITECTURES, RESNETS, VGG_CFGS
from conftest import make_authors_checkpoint

T = 2


def _expected_keys(arch: str, c_in: int, classes: int = 10) -> dict:
    """Key -> shape of some entries and the number of keys of ``arch``'s state_dict, from the structure of the
    authors' models/*.py (not from our code)."""
    bn = 5  # weight, bias, running_mean, running_var, num_batches_tracked
    if arch.startswith("spiking_resnet"):
        blocks, exp = RESNETS[int(arch[len("spiking_resnet"):])]
        convs = 2 if exp == 1 else 3
        shortcuts = 3 + (exp != 1)  # layer2..4 always; layer1 too where the bottleneck widens 64 -> 256
        n = 1 + bn + 2 + sum(blocks) * (convs * (2 + bn)) + 2 * shortcuts
        keys = {"conv1.weight": (64, c_in, 3, 3), "linear.weight": (classes, 512 * exp),
                "bn1.running_var": (512 * exp,), f"layer3.{blocks[2] - 1}.conv2.bias": (256,),
                "layer2.0.shortcut.weight": (128 * exp, 64 * exp, 1, 1),
                "layer1.0.conv1.weight": (64, 64, 3, 3) if exp == 1 else (64, 64, 1, 1)}
        if exp == 4:
            keys.update({"layer1.0.shortcut.weight": (256, 64, 1, 1), "layer4.2.conv3.weight": (2048, 512, 1, 1)})
        return {"count": n, "shapes": keys, "absent": ["layer1.0.shortcut.weight"] if exp == 1 else []}
    if arch.startswith("spiking_vgg"):
        cfg = VGG_CFGS[int(arch[len("spiking_vgg"):-3])]
        convs = sum(1 for stage in cfg for v in stage if v != "M")
        # stage 3 of VGG-16: conv, bn, neuron, dropout per conv, so its second conv is index 4
        return {"count": convs * (2 + bn) + 2, "shapes": {
            "layer1.0.weight": (64, c_in, 3, 3), "layer3.4.weight": (256, 256, 3, 3), "layer3.5.running_mean": (256,),
            "classifier.1.weight": (classes, 25088)}, "absent": ["classifier.0.weight"]}
    if arch == "vggsnn":  # Layer, Layer, pool, ... : the eighth Layer is features.10
        return {"count": 8 * (2 + bn) + 2, "shapes": {
            "features.0.fwd.0.weight": (64, 2, 3, 3), "features.10.fwd.0.weight": (512, 512, 3, 3),
            "features.10.fwd.1.running_mean": (512,), "classifier.weight": (classes, 512 * 3 * 3)},
            "absent": ["features.2.weight"]}
    assert arch == "snn5_noAP"
    return {"count": 5 * (2 + bn) + 2, "shapes": {
        "features.1.fwd.0.weight": (64, 16, 5, 5), "features.3.fwd.0.weight": (256, 128, 5, 5),
        "classifier.weight": (classes, 256)}, "absent": []}


@pytest.mark.parametrize("arch", AUTHORS_ARCHITECTURES)
def test_every_architecture_loads_strictly_and_traces_exactly(arch, tmp_path):
    shape = tuple(DEFAULT_SETTINGS[arch]["input_shape"])
    ckpt = make_authors_checkpoint(tmp_path / "checkpoint_max.pth", arch, in_channels=shape[0],
                                   frames=(T, 2, shape[1]))
    raw = torch.load(ckpt, weights_only=True)
    assert set(raw) == {"net", "optimizer", "lr_scheduler", "epoch", "max_test_acc"}
    want = _expected_keys(arch, shape[0])
    sd = raw["net"]
    assert len(sd) == want["count"], (len(sd), want["count"])
    for key, s in want["shapes"].items():
        assert tuple(sd[key].shape) == s, key
    assert not any(k in sd for k in want["absent"])
    model = D.load_model(ckpt, arch=arch, num_classes=10)  # strict: every key used, none missing
    g = D.trace(model, shape, T, encoding=DEFAULT_SETTINGS[arch]["encoding"])
    x = torch.rand(T, 2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
    out, rec = D.run(g, x, record=[n.name for n in g.of_type(N.Neuron)])
    assert float((out - ref).abs().max()) == 0.0
    assert sum(float(v.sum()) for v in rec.values()) > 0  # the layers fire: the comparison means something


def test_shape_quirks_are_refused_by_name_where_the_authors_code_fails(tmp_path):
    with pytest.raises(UserError, match=r"spiking_resnet50 at 3x64x64 input: its AvgPool2d\(4\) is fixed .* "
                                        r"2x2x2048 = 8192 features for Linear\(2048\)"):
        D.trace(D.build("spiking_resnet50"), (3, 64, 64), T)
    D.trace(D.build("spiking_resnet18", in_channels=2), (2, 48, 48), T)  # 48x48 pools to 1x1: their DVS setting
    D.trace(D.build("spiking_vgg16_bn"), (3, 64, 64), T)  # VGG takes any size (adaptive pooling)
    with pytest.raises(UserError, match="snn5_noAP at 3x48x48 input: .* takes 32x32 only"):
        D.trace(D.build("snn5_noAP"), (3, 48, 48), T)
    with pytest.raises(UserError, match="snn5_noAP hard-codes 3 input channels"):
        D.build("snn5_noAP", in_channels=2)
    with pytest.raises(UserError, match="vggsnn hard-codes 2 input channels"):
        D.build("vggsnn", in_channels=3)
    with pytest.raises(UserError, match="vggsnn at 2x128x128 input: its classifier was built for 48x48"):
        D.trace(D.build("vggsnn"), (2, 128, 128), T)
    D.trace(D.build("vggsnn", in_size=128), (2, 128, 128), 1)  # dvsgesture: fc_hw = 128


# ------------------------------------------------------------------ PLIF
def test_plif_equals_spikingjellys_parametric_lif_equations():
    """The authors' PLIF is SpikingJelly's ParametricLIFNode(decay_input=False, v_reset=None, v_threshold=1) with
    init_tau = -tau; its documented update, written out: ``v = v * (1 - sigmoid(w)) + x``, ``s = v >= 1``,
    ``v = v - s``, w = -ln(init_tau - 1)."""
    from ilif_deploy.architectures import make_neuron

    plif = make_neuron("plif", tau=1.1)
    assert float(plif.w.detach()) == pytest.approx(-np.log(0.1)) and plif.step_params().learned_decay
    with torch.no_grad():
        plif.w.fill_(0.7)  # a trained value
    x = torch.rand(40, 3, 50, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.2
    w = torch.tensor(0.7)
    v, ref = torch.zeros(3, 50), []
    for t in range(40):
        v = v * (1.0 - w.sigmoid()) + x[t]
        s = (v - 1.0 >= 0).float()
        v = v - s * 1.0
        ref.append(s)
    ref = torch.stack(ref)
    out = plif(x)
    assert torch.equal(out, ref) and 0.1 < float(ref.mean()) < 0.9
    out.sum().backward()
    assert plif.w.grad is not None and float(plif.w.grad) != 0.0  # the decay learns
    assert N.Neuron("n", (50,), params=plif.step_params()).family == "plif"


@pytest.fixture(scope="module")
def plif_resnet18(tmp_path_factory):
    ckpt = make_authors_checkpoint(tmp_path_factory.mktemp("plif") / "ckpt.pth", "spiking_resnet18",
                                   frames=(T, 4, 32), neuron="plif", neuron_kwargs={"tau": 1.1})
    sd = torch.load(ckpt, weights_only=True)["net"]
    assert sd["layer1.0.relu1.w"].shape == () and "relu1.w" in sd  # one learnable w per neuron layer
    return ckpt


def test_plif_resnet18_exports_to_every_target_with_the_usual_agreement(plif_resnet18, tmp_path):
    from ilif_deploy.converters.lava import export_graph as export_lava
    from ilif_deploy.converters.lava import simulate
    from ilif_deploy.converters.nir import export_graph as export_nir
    from ilif_deploy.converters.nir import read_graph
    from ilif_deploy.converters.onnx import compare_with_runtime, export_graph as export_onnx

    g = open_graph(plif_resnet18, arch="spiking_resnet18", neuron="plif", num_classes=10, timesteps=T)
    assert {n.family for n in g.of_type(N.Neuron)} == {"plif"}
    assert len({n.params.lam for n in g.of_type(N.Neuron)}) == 1  # one w per layer, all at their init here
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ref, rec = D.run(g, x, T, record=[n.name for n in g.of_type(N.Neuron)])
    assert 0.02 < float(np.mean([float(v.mean()) for v in rec.values()])) < 0.9
    g.save(tmp_path / "p.ir.npz")
    assert torch.equal(D.run(open_graph(tmp_path / "p.ir.npz"), x, T), ref)
    export_nir(g, tmp_path / "p.nir")
    back = read_graph(tmp_path / "p.nir")
    assert torch.equal(D.run(back, x, T), ref) and {n.family for n in back.of_type(N.Neuron)} == {"plif"}
    export_onnx(g, tmp_path / "p.onnx")
    a = compare_with_runtime(g, tmp_path / "p.onnx", x.numpy())
    assert a.total_flips == 0 and a.prediction_agreement == 1.0
    export_lava(g, tmp_path / "p.lava.h5")
    sim = simulate(tmp_path / "p.lava.h5", x=x.numpy()[:2], mode="float", engine="torch", progress=False)
    assert sim.overall_spike_agreement == 1.0


def test_plif_is_counted_like_lif(plif_resnet18):
    from ilif_deploy import energy

    g = open_graph(plif_resnet18, arch="spiking_resnet18", neuron="plif", num_classes=10, timesteps=T)
    twin = open_graph(plif_resnet18, arch="spiking_resnet18", neuron="plif", num_classes=10, timesteps=T)
    for n in twin.of_type(N.Neuron):  # the same decays, declared as plain LIF
        n.params = type(n.params)(**{**n.params.to_dict(), "learned_decay": False})
    x = np.random.default_rng(3).random((2, 3, 32, 32)).astype(np.float32)
    a, b = (energy.profile(h, x, progress=False, conventions=energy.Conventions(neurons="count")) for h in (g, twin))
    assert a.totals == b.totals
    assert all(r.note.startswith("plif: 1 compartment") for r in a.rows if r.op == "neuron")


# ------------------------------------------------------------------ run folders
NAMESPACE = ("Namespace(seed=1234, name='', T={T}, tau=1.1, b=128, epochs=200, j=0, data_dir='./data', "
             "dataset='{dataset}', out_dir='./logs', surrogate='sigmoid', resume=None, pre_train=None, amp=True, "
             "opt='SGD', lr=0.1, momentum=0.9, lr_scheduler='CosALR', step_size=100, gamma=0.1, T_max=200, "
             "model='{model}', drop_rate=0.0, weight_decay=0.0005, loss_lambda=0.05, mse_n_reg=False, loss_means=1.0, "
             "save_init=False, neuron_model='{neuron}', multiple_step=True, cutupmix_auto=False, label_smoothing=0.0)")


def _run_folder(d, model, neuron, dataset, T_run, **build):
    """A folder as train.py leaves it: checkpoint_max.pth and args.txt (the Namespace line, then epoch lines)."""
    d.mkdir()
    shape = {"cifar10": (3, 32), "cifar100": (3, 32), "DVSCIFAR10-pt": (2, 48), "DVSCIFAR10": (2, 48)}[dataset]
    classes = 100 if dataset == "cifar100" else 10
    make_authors_checkpoint(d / "checkpoint_max.pth", model, num_classes=classes, in_channels=shape[0],
                            frames=(2, 2, shape[1]), neuron={"ILIF": "ilif", "LIF": "lif", "PLIF": "plif"}[neuron],
                            **build)
    (d / "args.txt").write_text(NAMESPACE.format(T=T_run, dataset=dataset, model=model, neuron=neuron) +
                                "\nepoch=0, train_loss=2.1, train_acc=0.2, test_loss=2.0, test_acc=0.25\n"
                                "after one epoch: 3.2GB\n")
    return d / "checkpoint_max.pth"


@pytest.mark.parametrize("model, neuron, dataset, T_run, build", [
    ("spiking_resnet18", "ILIF", "cifar10", 6, {}),
    ("spiking_vgg16_bn", "LIF", "cifar100", 4, {}),
    ("vggsnn", "PLIF", "DVSCIFAR10-pt", 10, {"in_size": 48}),
])
def test_a_run_folder_loads_from_the_cli_with_only_the_path(model, neuron, dataset, T_run, build, tmp_path, capsys):
    ckpt = _run_folder(tmp_path / "run", model, neuron, dataset, T_run, **build)
    out = tmp_path / "g.ir.npz"
    assert export_cli.main([str(ckpt), "--target", "ir", "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    g = open_graph(out)
    assert g.timesteps == T_run and g.metadata["arch"]["arch"] == model
    assert g.metadata["run_args"] == {"file": str(tmp_path / "run" / "args.txt"), "model": model,
                                      "neuron_model": neuron, "dataset": dataset, "T": T_run, "tau": 1.1,
                                      **({"fc_hw": 48} if model == "vggsnn" else {})}
    fam = {"ILIF": "ilif", "LIF": "lif", "PLIF": "plif"}[neuron]
    assert {n.family for n in g.of_type(N.Neuron)} == {fam}
    assert all(n.params.tau == pytest.approx(1.1) for n in g.of_type(N.Neuron)) or fam == "plif"
    # a flag that contradicts args.txt wins, and says so in one line naming both values
    assert export_cli.main([str(ckpt), "--target", "ir", "-o", str(out), "-T", "3"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"timesteps = 3 given overrides {T_run} of" in err
    assert open_graph(out).timesteps == 3


def test_run_folders_the_authors_code_cannot_run_are_refused(tmp_path, capsys):
    ckpt = _run_folder(tmp_path / "dvs", "vggsnn", "ILIF", "DVSCIFAR10", 10, in_size=48)
    assert export_cli.main([str(ckpt), "--target", "ir", "-o", str(tmp_path / "g.ir.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "passes no input size (fc_hw=None)" in err and "TypeError" in err
    (tmp_path / "dvs" / "args.txt").write_text("Namespace(model=__import__('os').system('true'))\n")
    assert export_cli.main([str(ckpt), "--target", "ir", "-o", str(tmp_path / "g.ir.npz")]) == 2
    assert "model= is not a literal value" in capsys.readouterr().err  # parsed as data, never run


# ------------------------------------------------------------------ presets, the ANN baseline, data
def test_cifar10_preset_runs_at_t6_and_the_report_shows_the_papers_ann_row(authors_resnet18_path, tmp_path):
    js = tmp_path / "e.json"
    assert energy_cli.main([str(authors_resnet18_path), "--arch", "spiking_resnet18", "--dataset", "cifar10",
                            "--data", "none", "--rate", "0.1", "-c", "shortcuts=false", "-c", "classifier=false",
                            "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["timesteps"] == 6 and rep["ann"]["macs"] == 549_126_144  # 549.13 M, the paper's Table 5 ANN row


def test_a_relu_checkpoint_loads_as_the_ann_it_is(tmp_path):
    """train.py's -neuron_model relu: the same keys as LIF (ReLU has none), run once per sample.  Its report's ANN
    row is the paper's (3x3 convolutions only, padded taps counted: 549.13 M); its own counted MACs are the taps
    that reach real pixels, the ANN baseline under ann_padding=real."""
    from ilif_deploy import energy

    ckpt = make_authors_checkpoint(tmp_path / "ann.pth", "spiking_resnet18", frames=(1, 2, 32), neuron="relu")
    g = open_graph(ckpt, arch="spiking_resnet18", neuron="relu", num_classes=10)
    assert g.timesteps == 1 and len(g.of_type(N.ReLU)) == 17 and not g.of_type(N.Neuron)
    conv = energy.Conventions(shortcuts=False, classifier=False)
    rep = energy.estimate(g, 0.0, conventions=conv, progress=False)
    assert rep.ann["macs"] == 549_126_144 and rep.totals["acs"] == 0
    real = energy.ann_baseline(g, energy.Conventions(ann_padding="real", shortcuts=False, classifier=False))
    assert rep.totals["macs"] == sum(real.values()) == 475_562_752


def test_tiny_imagenet_preset(tmp_path):
    from ilif_deploy.data import PRESETS, normalization

    path = tmp_path / "r.pth"
    torch.save({"net": D.build("spiking_resnet18", num_classes=200).state_dict()}, path)
    p = PRESETS["tiny-imagenet"]
    assert (p.input_shape, p.num_classes, p.timesteps) == ((3, 64, 64), 200, 6)
    assert normalization(p.normalize) == ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))
    with pytest.raises(UserError, match="AvgPool2d"):  # the ResNets crash at 64x64 in the authors' code too
        open_graph(path, arch="spiking_resnet18", dataset="tiny-imagenet")


def test_dvscifar10_pt_folders_are_read_with_checks(tmp_path):
    from ilif_deploy.data import open_data
    from ilif_deploy.errors import DataError

    folder = tmp_path / "dvs" / "test"
    folder.mkdir(parents=True)
    rng = torch.Generator().manual_seed(0)
    for i in range(3):  # frames at the sensor's 128 x 128, as the preprocessed files hold them
        torch.save((torch.randint(0, 4, (10, 2, 128, 128), generator=rng).float(), torch.tensor([i + 3])),
                   folder / f"{i}.pt")
    ds = open_data(str(tmp_path / "dvs"), input_shape=(2, 48, 48), timesteps=10, dataset="dvs-cifar10")
    assert len(ds) == 3 and ds.labels.tolist() == [3, 4, 5] and ds.frame_shape == (2, 48, 48)
    batch = next(ds.batches(3, 10))
    assert tuple(batch.x.shape) == (10, 3, 2, 48, 48)
    (folder / "1.pt").unlink()
    with pytest.raises(DataError, match="1.pt is missing"):
        open_data(str(folder), input_shape=(2, 48, 48), timesteps=10, dataset="dvs-cifar10")
    torch.save({"frames": 1}, folder / "1.pt")
    with pytest.raises(DataError, match="not the \\(frames, label\\) pair"):
        open_data(str(folder), input_shape=(2, 48, 48), timesteps=10, dataset="dvs-cifar10")
    torch.save((torch.zeros(8, 2, 48, 48), torch.tensor([1])), folder / "1.pt")
    with pytest.raises(DataError, match=r"frames of shape \[8, 2, 48, 48\], the network takes \[T=10, 2"):
        open_data(str(folder), input_shape=(2, 48, 48), timesteps=10, dataset="dvs-cifar10")


# ------------------------------------------------------------------ the deeper networks through every target
@pytest.fixture(scope="module", params=["spiking_resnet50", "spiking_vgg16_bn"])
def deep_net(request, tmp_path_factory):
    ckpt = make_authors_checkpoint(tmp_path_factory.mktemp(request.param) / "ckpt.pth", request.param,
                                   frames=(T, 4, 32))
    return request.param, open_graph(ckpt, arch=request.param, num_classes=10, timesteps=T)


def test_resnet50_and_vgg16_export_to_onnx_nir_and_lava(deep_net, tmp_path):
    import onnx

    from ilif_deploy.converters.lava import export_graph as export_lava
    from ilif_deploy.converters.lava import load
    from ilif_deploy.converters.nir import export_graph as export_nir
    from ilif_deploy.converters.nir import read_graph
    from ilif_deploy.converters.onnx import compare_with_runtime, export_graph as export_onnx

    arch, g = deep_net
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    ref, rec = D.run(g, x, T, record=[n.name for n in g.of_type(N.Neuron)])
    assert min(float(v.mean()) for v in rec.values()) > 0.01  # every layer fires
    export_onnx(g, tmp_path / "m.onnx")
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    a = compare_with_runtime(g, tmp_path / "m.onnx", x.numpy())
    assert a.prediction_agreement == 1.0 and a.max_abs_logit_diff < 1e-4
    export_nir(g, tmp_path / "m.nir")  # nir.read with type checks is part of writing
    assert torch.equal(D.run(read_graph(tmp_path / "m.nir"), x, T), ref)
    export_lava(g, tmp_path / "m.lava.h5")
    spec, _ = load(tmp_path / "m.lava.h5")
    assert len(spec.layers) == len(g.of_type(N.Neuron))


@pytest.mark.slow
def test_resnet50_and_vgg16_run_on_lava(deep_net, tmp_path, lava):
    """One sample on Lava's CPU backend, float: every spike of the runtime (wall time in docs/lava.md)."""
    from ilif_deploy.converters.lava import export_graph as export_lava
    from ilif_deploy.converters.lava import simulate

    _, g = deep_net
    export_lava(g, tmp_path / "m.lava.h5")
    x = np.random.default_rng(5).random((1, 3, 32, 32)).astype(np.float32)
    rep = simulate(tmp_path / "m.lava.h5", x=x, mode="float", progress=False)
    assert rep.overall_spike_agreement == 1.0 and rep.prediction_agreement == 1.0
