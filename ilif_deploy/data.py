"""Datasets the tools run on: scikit-learn's bundled digits, or a user's ``.npz`` file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .errors import DataError

@dataclass(frozen=True)
class DatasetPreset:
    """The settings a dataset of the paper implies: one sample's ``input_shape`` per step (channel first),
    ``timesteps`` T, ``num_classes`` and ``encoding`` ("direct": the same frame every step; "sequence": a
    new event frame per step).  Each is overridable on the command line."""

    name: str
    input_shape: Tuple[int, ...]
    timesteps: int
    num_classes: int
    encoding: str


#: the paper's settings (the authors' train.py / inference.py), plus the bundled digits
PRESETS = {p.name: p for p in (
    DatasetPreset("cifar10", (3, 32, 32), 4, 10, "direct"),
    DatasetPreset("cifar100", (3, 32, 32), 4, 100, "direct"),
    DatasetPreset("dvs-cifar10", (2, 48, 48), 10, 10, "sequence"),
    DatasetPreset("dvs-gesture", (2, 128, 128), 20, 11, "sequence"),
    DatasetPreset("digits", (1, 8, 8), 4, 10, "direct"),
)}


def preset(name: str) -> DatasetPreset:
    """The preset ``name`` (a key of :data:`PRESETS`); a DataError lists them."""
    if name not in PRESETS:
        raise DataError(f"unknown dataset preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


def digits(split: str = "test") -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as ``x [N, 1, 8, 8]`` float32 in [0, 1] and ``y [N]`` int64.

    The train/test split is fixed (25 % test, stratified, seed 0) so every tool sees the same test set.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test", "all"):
        raise DataError(f"split must be 'train', 'test' or 'all', got {split!r}")
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    if split == "all":
        return x, y
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
                                          stratify=y)
    return (xtr, ytr) if split == "train" else (xte, yte)


def data_layout(shape, input_shape, timesteps: Optional[int] = None) -> Tuple[bool, Optional[int]]:
    """How a dataset array of ``shape`` feeds a network with per-step input ``input_shape``.

    ``[N, *input_shape]``: one frame per sample, repeated over the T steps (direct encoding) ->
    ``(False, timesteps)``; ``[N, T, *input_shape]``: a frame per step -> ``(True, T)``.  Raises a
    ValueError naming both layouts when neither fits, or when ``timesteps`` is given and differs from T.
    """
    shape, input_shape = tuple(shape), tuple(input_shape)
    if shape[1:] == input_shape:
        return False, timesteps
    if shape[2:] == input_shape:
        if timesteps and shape[1] != timesteps:
            raise DataError(f"data has T={shape[1]} steps per sample but the network runs T={timesteps}")
        return True, int(shape[1])
    dims = ", ".join(map(str, input_shape))
    raise DataError(f"data shape {list(shape)} fits neither [N, {dims}] (one frame per sample) nor "
                     f"[N, T, {dims}] (a frame per step)")


def load_dataset(spec: str, samples: Optional[int] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``"digits"`` (the test split) or a path to an ``.npz`` with ``x`` (``[N, ...]`` or ``[N, T, ...]``)
    and optionally ``y``; the first ``samples`` rows when given."""
    if spec == "digits":
        x, y = digits("test")
    else:
        path = Path(spec)
        if path.is_dir():
            raise DataError(f"{spec} is a folder, not a data file (use 'digits' or an .npz with arrays x[, y])")
        if not path.exists():
            raise DataError(f"data file not found: {spec} (use 'digits' or an .npz with arrays x[, y])")
        try:
            with np.load(path, allow_pickle=False) as f:
                if "x" not in f:
                    raise DataError(f"{spec}: no array 'x' (found {list(f.keys())})")
                x = f["x"].astype(np.float32)
                y = f["y"].astype(np.int64) if "y" in f else None
        except DataError:
            raise
        except Exception as e:  # not a zip, truncated, object arrays, ...
            raise DataError(f"{spec}: not a readable .npz data file ({type(e).__name__}: {e})") from None
    if samples is not None:
        if samples < 1:
            raise DataError(f"--samples must be >= 1, got {samples}")
        x = x[:samples]
        y = None if y is None else y[:samples]
    return x, y


def probe_inputs(graph, n: int, seed: int = 0) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``n`` inputs to compare two versions of ``graph`` on: the digits test split for [1, 8, 8] direct
    inputs, else uniform [0, 1) frames (``[n, *shape]`` direct, ``[n, T, *shape]`` sequence; no labels)."""
    shape = tuple(graph.input_shape)
    if shape == (1, 8, 8) and graph.encoding == "direct":
        x, y = digits("test")
        return x[:n], y[:n]
    per_sample = shape if graph.encoding == "direct" else (graph.timesteps or 1, *shape)
    return np.random.default_rng(seed).random((n, *per_sample), dtype=np.float32), None
