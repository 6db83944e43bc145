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


@pytest.mark.parametrize("tool", ["ilif-export", "ilif-energy", "ilif-simulate"])
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
    assert g.metadata["timesteps"] == 4 and len(g.nodes) == 9


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
