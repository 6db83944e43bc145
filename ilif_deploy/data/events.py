"""Event data through tonic: its dataset classes on folders users downloaded (N-MNIST, DVS-Gesture,
CIFAR10-DVS), raw event arrays in an ``.npz``, and T frames per recording made as the authors make them."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np

from ..bounded import MAX_FRAME_PIXELS
from ..errors import DataError

#: tonic's dataset classes we read, by the folder name tonic gives them
TONIC_DATASETS = ("NMNIST", "DVSGesture", "CIFAR10DVS")
EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])


def _tonic(module: str):
    """A tonic module, or one line saying how to get it: tonic is optional (the ``events`` extra)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DataError(f"event data needs tonic ({e}); install it: pip install 'ilif-deploy[events]'") from None


def frames_by_count(events: np.ndarray, timesteps: int, sensor: Tuple[int, int]) -> np.ndarray:
    """``[T, 2, H, W]`` float32 event counts per polarity: the recording split into ``timesteps`` slices of
    N // T events each, the last slice taking the remainder -- SpikingJelly's ``split_by='number'``, the
    authors' preprocessing (tonic's own ``ToFrame(n_event_bins=T)`` drops the remainder instead) -- each
    slice accumulated by tonic's ``ToFrame``.  ``sensor`` is (W, H)."""

    ToFrame = _tonic("tonic.transforms").ToFrame
    w, h = sensor
    if w * h > MAX_FRAME_PIXELS:
        raise DataError(f"a {w}x{h} sensor makes frames of more than {MAX_FRAME_PIXELS:,} pixels (--sensor-size W,H)")
    if len(events) and (events["x"].max() >= w or events["y"].max() >= h or events["x"].min() < 0
                        or events["y"].min() < 0):
        raise DataError(f"events at x up to {events['x'].max()}, y up to {events['y'].max()} lie outside the "
                        f"{w}x{h} sensor (--sensor-size W,H)")
    to_frame = ToFrame(sensor_size=(w, h, 2), n_event_bins=1)
    n, per = len(events), len(events) // timesteps
    out = np.zeros((timesteps, 2, h, w), np.float32)
    for t in range(timesteps):
        part = events[t * per:n if t == timesteps - 1 else (t + 1) * per]
        if len(part):
            out[t] = to_frame(part)[0]
    return out


def _offline(cls, folder: Path):
    """tonic's class, told that its data is on disk.  Why: tonic checks for the original archive and a
    full-size extraction (e.g. >= 10,000 N-MNIST files) and otherwise downloads; this tool never downloads,
    so a folder that exists is taken as it is."""
    return type(cls.__name__, (cls,), {"_check_exists": lambda self: folder.is_dir(),
                                       "download": lambda self: None})


def tonic_dataset(path: Path, split: str):
    """(tonic dataset, its name, sensor (W, H)) for a folder holding one of :data:`TONIC_DATASETS` (the
    folder itself, or the one ``save_to`` folder tonic was given), or None."""
    for name in TONIC_DATASETS:
        root = path.parent if path.name == name else path
        if not (root / name).is_dir():
            continue
        cls = getattr(_tonic("tonic.datasets"), name)
        kw = {} if name == "CIFAR10DVS" else {"train": split == "train"}
        if name == "CIFAR10DVS" and split != "test":
            raise DataError(f"{path}: CIFAR10-DVS has no train/test split on disk (tonic reads all recordings)")
        ds = _offline(cls, root / name)(save_to=str(root), **kw)
        if len(ds) == 0:
            raise DataError(f"{path}: tonic found no {name} recordings under {root / name}")
        return ds, name, tuple(cls.sensor_size[:2])
    return None


def structured(events: np.ndarray) -> np.ndarray:
    """Any (x, y, t, p) record array (tonic's field orders differ per dataset) as int64 fields x, y, t, p."""
    out = np.empty(len(events), EVENT_DTYPE)
    for f in EVENT_DTYPE.names:
        out[f] = events[f]
    return out


def npz_recordings(path: Path, f) -> Tuple[Callable[[int], np.ndarray], int, Optional[np.ndarray]]:
    """Raw events in an ``.npz``: 1-D arrays ``x, y, t, p`` (one entry per event), optional ``sample``
    (the recording each event belongs to, 0..N-1; default: one recording) and ``label`` (one per recording)."""
    n_events = len(f["x"])
    for k in ("y", "t", "p"):
        if np.shape(f[k]) != (n_events,):
            raise DataError(f"{path}: event arrays x, y, t, p must be 1-D and equally long ({k} is "
                            f"{list(np.shape(f[k]))}, x {n_events})")
    cols = {k: np.asarray(f[k]) for k in ("x", "y", "t", "p")}
    sample = np.asarray(f["sample"]).astype(np.int64) if "sample" in f else np.zeros(n_events, np.int64)
    if sample.shape != (n_events,) or (n_events and sample.min() < 0):
        raise DataError(f"{path}: 'sample' must give a recording index >= 0 for every event")
    n = int(sample.max()) + 1 if n_events else 1
    if n > n_events + 1:  # every recording holds events: an index beyond their count is not a recording
        raise DataError(f"{path}: 'sample' reaches recording {n - 1:,} with {n_events:,} events in all")
    labels = np.asarray(f["label"]).astype(np.int64).reshape(-1) if "label" in f else None
    if labels is not None and len(labels) != n:
        raise DataError(f"{path}: {len(labels)} labels for {n} recordings")
    order = np.argsort(sample, kind="stable")
    starts = np.searchsorted(sample[order], np.arange(n + 1))

    def recording(i: int) -> np.ndarray:
        idx = order[starts[i]:starts[i + 1]]
        rec = np.empty(len(idx), EVENT_DTYPE)
        for k in EVENT_DTYPE.names:
            rec[k] = cols[k][idx]
        return rec[np.argsort(rec["t"], kind="stable")]

    return recording, n, labels


def looks_like_events(f) -> bool:
    return {"x", "y", "t", "p"} <= set(f.keys()) and np.ndim(f["x"]) == 1


def event_sensor(recording: Callable[[int], np.ndarray], n: int) -> Tuple[int, int]:
    """(W, H) covering every event of the first recordings (when neither a preset nor --sensor-size says)."""
    w = h = 1
    for i in range(min(n, 16)):
        r = recording(i)
        if len(r):
            w, h = max(w, int(r["x"].max()) + 1), max(h, int(r["y"].max()) + 1)
    return w, h


__all__ = ["frames_by_count", "tonic_dataset", "npz_recordings", "looks_like_events", "event_sensor", "structured"]
