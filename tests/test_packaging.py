"""The wheel: one import namespace (``ilif_deploy``) holding every subpackage of the card's folders and
the bundled models, and an installed copy that works from any folder, whatever files lie there."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"ilif_deploy": "ilif_deploy", "converters": "ilif_deploy/converters", "energy": "ilif_deploy/energy",
           "examples": "ilif_deploy/examples"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    (whl,) = out.glob("ilif_deploy-*.whl")
    return whl


def test_wheel_holds_one_namespace_and_every_subpackage(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"ilif_deploy", wheel.name.split("-py")[0] + ".dist-info"}
    for folder, installed in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            assert f"{installed}/{init.parent.relative_to(ROOT / folder).as_posix()}/__init__.py".replace("/./", "/") \
                in names, init
    assert {"ilif_deploy/examples/models/digits_ilif.pt", "ilif_deploy/examples/models/digits_lif.pt",
            "ilif_deploy/converters/lava/process/ilif.py"} <= set(names)


def test_installed_copy_works_from_another_folder_beside_lookalike_files(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip does for a pure-Python wheel
    work = tmp_path / "work"
    work.mkdir()
    for name in ("energy.py", "converters.py", "examples.py"):
        (work / name).write_text("raise ImportError('a user file, not ilif-deploy')\n")
    env = {"PYTHONPATH": str(site), "PATH": str(Path(sys.executable).parent)}
    probe = ("import ilif_deploy.energy as e, ilif_deploy.converters as c, ilif_deploy.examples as x; "
             "print(e.__file__, c.__file__, x.model_path('digits_ilif'))")
    res = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert all(p.startswith(str(site)) for p in res.stdout.split()), res.stdout
    res = subprocess.run([sys.executable, "-m", "ilif_deploy.cli.export", "example:digits_ilif", "--target", "ir",
                          "-o", "digits.ir.npz"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (work / "digits.ir.npz").stat().st_size > 10_000
