"""Model files: our safe format, the authors' checkpoints, pickles only on request, clear errors."""
import pytest
import torch

import ilif_deploy
from ilif_deploy import ModelFileError, load_model, save
from ilif_deploy.architectures import build


def _same_output(a, b, shape, T=3):
    torch.manual_seed(0)
    x = torch.rand(T, 2, *shape)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_own_format_round_trip_and_weights_only(tmp_path):
    torch.manual_seed(3)
    model = build("digits_convnet", neuron="lif", neuron_kwargs={"tau": 2.0})
    path = tmp_path / "m.pt"
    save(model, path, timesteps=6, input_shape=[1, 8, 8], encoding="direct", note="hello")
    raw = torch.load(path, weights_only=True)  # must not need pickled classes
    assert raw["format"] == "ilif-deploy-model" and raw["arch"] == "digits_convnet"
    loaded = load_model(path)
    assert loaded.ilif_settings == {"timesteps": 6, "input_shape": [1, 8, 8], "encoding": "direct", "note": "hello"}
    assert loaded.neuron1.kind == "lif" and loaded.neuron1.tau == 2.0
    assert not loaded.training
    assert _same_output(model.eval(), loaded, (1, 8, 8))
    assert not list(tmp_path.glob(".m.pt.*"))  # no temporary file left behind


def test_authors_resnet18_checkpoint_loads_strictly(authors_resnet18_path):
    sd = torch.load(authors_resnet18_path, weights_only=True)["net"]
    assert len(sd) == 126
    for key in ("conv1.weight", "layer1.0.bn1.running_var", "layer1.0.conv1.bias", "layer2.0.shortcut.weight",
                "layer2.0.shortcut.bias", "bn1.weight", "linear.bias"):
        assert key in sd
    assert "conv1.bias" not in sd and "layer1.0.shortcut.weight" not in sd
    model = load_model(authors_resnet18_path, arch="spiking_resnet18", num_classes=10)
    assert model.linear.out_features == 10
    assert model.ilif_settings["timesteps"] == 6  # train.py's default


def test_dataparallel_prefix_is_stripped(tmp_path):
    model = build("digits_convnet")
    path = tmp_path / "dp.pth"
    torch.save({"net": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    assert _same_output(model.eval(), load_model(path, arch="digits_convnet", num_classes=10), (1, 8, 8))


def test_checkpoint_without_arch_says_what_to_pass(authors_resnet18_path):
    with pytest.raises(ModelFileError, match="arch=NAME"):
        load_model(authors_resnet18_path)


def test_wrong_class_count_names_the_mismatch(authors_resnet18_path):
    with pytest.raises(ModelFileError, match="linear.weight"):
        load_model(authors_resnet18_path, arch="spiking_resnet18", num_classes=100)


def test_pickled_module_needs_explicit_trust(tmp_path):
    model = build("digits_convnet")
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(ModelFileError, match="trust_pickle=True"):
        load_model(path)
    loaded = load_model(path, trust_pickle=True)
    assert _same_output(model.eval(), loaded, (1, 8, 8))


@pytest.mark.parametrize("content", [b"", b"junk\n", b"not a model at all", bytes(range(256)) * 10])
def test_corrupt_files_give_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="bad.pt"):
        load_model(path)


def test_foreign_object_and_missing_file(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelFileError, match="not an ilif-deploy model"):
        load_model(path)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_save_refuses_models_without_architecture(tmp_path):
    with pytest.raises(ModelFileError, match="arch_spec"):
        save(torch.nn.Sequential(ilif_deploy.ILIF()), tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_digits_example_models_are_committed_and_accurate(digits_ilif_path, digits_lif_path):
    from ilif_deploy.data import digits

    x, y = digits("test")
    for path, kind in ((digits_ilif_path, "ilif"), (digits_lif_path, "lif")):
        model = load_model(path)
        assert model.neuron1.kind == kind
        T = model.ilif_settings["timesteps"]
        with torch.no_grad():
            pred = model(torch.as_tensor(x).unsqueeze(0).expand(T, *x.shape)).sum(0).argmax(1).numpy()
        assert (pred == y).mean() >= 0.95
