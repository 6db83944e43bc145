"""Runnable examples and the bundled digits models, installed as ``ilif_deploy.examples``.

``python -m ilif_deploy.examples.main_job`` runs every tool on the bundled models from any folder;
every tool reads them as ``example:digits_ilif`` and ``example:digits_lif`` (files in ``models/``).
"""
from pathlib import Path

MODELS = Path(__file__).resolve().parent / "models"
PREFIX = "example:"


def model_path(name: str) -> Path:
    """The bundled model ``name`` (``digits_ilif``, ``digits_lif``); a ValueError lists the bundled ones."""
    path = MODELS / f"{name}.pt"
    if not path.is_file():
        raise ValueError(f"no bundled example model {name!r}; bundled: "
                         + ", ".join(PREFIX + p.stem for p in sorted(MODELS.glob("*.pt"))))
    return path
