"""Console scripts and the digits training example."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ilif_deploy.cli import export as export_cli
from ilif_deploy.ir import Graph

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tool", ["ilif-export", "ilif-energy", "ilif-simulate", "ilif-finetune"])
def test_console_scripts_have_help(tool):
    exe = shutil.which(tool) or str(Path(sys.executable).parent / tool)
    assert Path(exe).exists(), f"{tool} is not installed (pip install -e .)"
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"usage: {tool}" in res.stdout and "--trust-pickle" in res.stdout


def test_export_ir_target_writes_a_loadable_graph(tmp_path, digits_ilif_path, capsys):
    out = tmp_path / "digits.ir.npz"
    assert export_cli.main([str(digits_ilif_path), "--target", "ir", "-o", str(out), "--summary"]) == 0
    text = capsys.readouterr().out
    assert "neuron1" in text and f"wrote {out}" in text
    g = Graph.load(out)
    assert g.metadata["timesteps"] == 4 and len(g.nodes) == 11  # BN kept as its own node: exact by default
    assert g.nodes["bn1"].source == "batchnorm" and "lowering" not in text


def test_export_bad_input_is_one_clear_line(tmp_path, capsys, authors_resnet18_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("junk\n")
    assert export_cli.main([str(junk), "--target", "ir", "-o", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "junk.pt" in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()
    assert export_cli.main([str(authors_resnet18_path), "--target", "ir", "-o", str(tmp_path / "y.npz")]) == 2
    assert "--arch" in capsys.readouterr().err


def test_training_example_reaches_95_percent(tmp_path):
    """The README's example: ILIF on digits, >= 95 % test accuracy (its time is measured by
    benchmarks/bench_train_digits.py, not asserted here)."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train_digits
    finally:
        sys.path.pop(0)
    assert train_digits.main(["--neuron", "ilif", "--out", str(tmp_path)]) == 0
    saved = torch.load(tmp_path / "digits_ilif.pt", weights_only=True)
    assert saved["settings"]["test_accuracy"] >= 0.95


def _tool(name):
    return shutil.which(name) or str(Path(sys.executable).parent / name)


@pytest.mark.parametrize("argv, message", [
    (["ilif-export", "{nir}", "--target", "ir", "--arch", "spiking_resnet18"],
     "--arch does not apply to a NIR file ({nir}); it applies to a torch model file"),
    (["ilif-energy", "{ir}", "--input-shape", "1,8,8", "--data", "none", "--rate", "0.1"],
     "--input-shape does not apply to an IR graph file"),
    (["ilif-export", "example:digits_ilif", "--target", "lava", "--fidelity"],
     "--fidelity does not apply to the lava target; it applies to --target nir and --target onnx"),
    (["ilif-export", "{ir}", "--target", "lava", "--fold-bn"],
     "--fold-bn does not apply to the lava target; it applies to --target ir and --target nir and --target onnx"),
    (["ilif-export", "{ir}", "--target", "onnx", "--tau", "2"], "--tau does not apply to an IR graph file"),
    (["ilif-export", "{tmp}", "--target", "ir"], "{tmp} is a folder: the model file must be a regular file"),
    (["ilif-export", "example:digits_ilif", "--target", "ir", "-o", "{tmp}"],
     "{tmp} is a folder: outputs are written to regular files"),
    (["ilif-energy", "example:digits_ilif", "--data", "{tmp}"], "{tmp}: a folder, but no CIFAR batches, tonic dataset"),
    (["ilif-export", "example:nope", "--target", "ir"], "no bundled example model 'nope'; bundled: example:"),
])
def test_inapplicable_flags_and_folders_are_one_line(tmp_path, digits_ilif_graph, argv, message, capsys):
    from ilif_deploy.cli import energy
    from ilif_deploy.converters.nir import export_graph

    paths = {"tmp": str(tmp_path), "ir": str(tmp_path / "g.ir.npz"), "nir": str(tmp_path / "g.nir")}
    digits_ilif_graph.save(paths["ir"])
    export_graph(digits_ilif_graph, paths["nir"])
    main = {"ilif-export": export_cli.main, "ilif-energy": energy.main}[argv[0]]
    assert main([a.format(**paths) for a in argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(**paths)}") and err.count("\n") == 1, err


@pytest.mark.parametrize("tool", ["ilif-export", "ilif-energy", "ilif-simulate", "ilif-finetune"])
def test_version_and_closed_pipe(tool, tmp_path):
    import ilif_deploy

    res = subprocess.run([_tool(tool), "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"{tool} (ilif-deploy) {ilif_deploy.__version__}"
    args = {"ilif-export": ["--target", "ir", "--summary", "-o", str(tmp_path / "g.ir.npz")],
            "ilif-energy": ["--data", "none", "--rate", "0.1"],
            "ilif-simulate": ["--samples", "1", "--no-progress"],
            "ilif-finetune": ["--epochs", "0", "--no-progress", "-o", str(tmp_path / "t.ir.npz")]}[tool]
    proc = subprocess.Popen([_tool(tool), "example:digits_ilif", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader has gone (as `| head` does) before anything is printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_bugs_keep_their_traceback():
    from ilif_deploy.cli.common import run_cli
    from ilif_deploy.errors import UserError

    def buggy():
        raise ValueError("a bug of ours, not the user's")

    with pytest.raises(ValueError, match="a bug of ours"):
        run_cli(buggy)
    assert run_cli(lambda: (_ for _ in ()).throw(UserError("bad file"))) == 2
