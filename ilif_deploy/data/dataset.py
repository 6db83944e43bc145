"""One dataset type for every tool: samples with labels and a known layout, yielded as time-major batches.

On disk and in the API a dataset is sample-major: each sample is one frame ``[C, H, W]`` fed at every
step (direct encoding) or a frame per step ``[T, C, H, W]`` (sequence encoding).  Inside, everything runs
time-major: :meth:`Dataset.batches` yields ``[T, B, C, H, W]`` float32 tensors, lazily (a batch at a time),
so the memory a tool needs does not grow with the dataset.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Callable, Iterator, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0
#: after preprocessing, inputs beyond this magnitude get a warning (unscaled or unnormalised data)
LARGE_INPUT = 50.0


class DataWarning(UserWarning):
    """Data that looks wrong for the network; the tools print it as one ``warning:`` line."""


def warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


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
    DataError naming both layouts when neither fits, or when ``timesteps`` is given and differs from T.
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


@dataclass(frozen=True)
class Preprocess:
    """Per-sample preprocessing, in this order: ``scale`` (1/255 for uint8 images, as ``ToTensor``), ``resize``
    of every frame to (H, W) (bilinear, antialiased, as torchvision's ``Resize``), then ``(x - mean) / std``
    per channel (``Normalize``)."""

    scale: Optional[float] = None
    resize: Optional[Tuple[int, int]] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: ``[..., C, H, W]`` (one sample or a batch) -> float32."""
        x = np.asarray(x, dtype=np.float32)
        if self.scale is not None:
            x = x * np.float32(self.scale)
        if self.resize is not None and tuple(x.shape[-2:]) != tuple(self.resize):
            import torch
            import torch.nn.functional as F

            t = torch.from_numpy(np.ascontiguousarray(x)).reshape(-1, *x.shape[-3:])
            t = F.interpolate(t, size=tuple(self.resize), mode="bilinear", align_corners=False, antialias=True)
            x = t.reshape(*x.shape[:-2], *self.resize).numpy()
        if self.mean is not None:
            c = x.shape[-3]
            mean = np.broadcast_to(np.asarray(self.mean, np.float32), (c,)).reshape(c, 1, 1)
            std = np.broadcast_to(np.asarray(self.std, np.float32), (c,)).reshape(c, 1, 1)
            x = (x - mean) / std
        return x

    def describe(self) -> str:
        parts = ([f"x{self.scale:.6g}"] if self.scale is not None else []) + (
            [f"resize {self.resize[0]}x{self.resize[1]}"] if self.resize else []) + (
            [f"normalize mean {list(self.mean)} std {list(self.std)}"] if self.mean is not None else [])
        return ", ".join(parts) or "none"


class Batch(NamedTuple):
    """Time-major inputs ``x`` ``[T, B, *frame]`` (a torch float32 tensor; direct encoding: the same frame at
    every step, a view), labels ``y`` ``[B]`` or None, and the index of the batch's first sample."""

    x: "object"
    y: Optional[np.ndarray]
    start: int


class Dataset:
    """``len(self)`` samples of ``frame_shape`` ``[C, H, W]``: one frame per sample (``timesteps`` None,
    direct encoding) or ``timesteps`` frames per sample (sequence encoding), optional integer labels.

    Subclasses implement :meth:`raw` (``[B, ...]`` before preprocessing for samples ``start..stop``);
    ``preprocess`` is applied on the fly.  ``name`` says where the data came from (reports print it)."""

    def __init__(self, name: str, length: int, frame_shape: Sequence[int], timesteps: Optional[int] = None,
                 labels: Optional[np.ndarray] = None, preprocess: Optional[Preprocess] = None):
        self.name, self.length = name, int(length)
        self.frame_shape, self.timesteps = tuple(int(s) for s in frame_shape), timesteps
        self.labels = None if labels is None else np.asarray(labels).astype(np.int64).reshape(-1)
        self.preprocess = preprocess or Preprocess()
        if self.preprocess.resize:  # what the network sees
            self.frame_shape = self.frame_shape[:-2] + tuple(self.preprocess.resize)
        if self.labels is not None and len(self.labels) != self.length:
            raise DataError(f"{name}: {len(self.labels)} labels for {self.length} samples")
        if self.length < 1:
            raise DataError(f"{name}: no samples")

    @property
    def encoding(self) -> str:
        return "direct" if self.timesteps is None else "sequence"

    def __len__(self) -> int:
        return self.length

    def raw(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def take(self, n: Optional[int]) -> "Dataset":
        """The first ``n`` samples (all for None)."""
        if n is None or n >= self.length:
            return self
        if n < 1:
            raise DataError(f"--samples must be >= 1, got {n}")
        return _Subset(self, 0, n)

    def window(self, start: int, stop: int) -> "Dataset":
        """Samples ``start .. stop`` (fine-tuning reads its shuffled batches as windows)."""
        if not 0 <= start < stop <= self.length:
            raise DataError(f"{self.name}: no samples {start}..{stop} in {self.length}")
        return self if (start, stop) == (0, self.length) else _Subset(self, start, stop)

    def shard(self, rank: int, world: int) -> "Dataset":
        """Block ``rank`` of ``world`` contiguous, near-equal blocks (data-parallel runs: every sample in
        exactly one block, the blocks in order)."""
        start, stop = rank * self.length // world, (rank + 1) * self.length // world
        if stop <= start:
            raise DataError(f"{self.name}: {self.length} samples cannot be shared among {world} processes")
        return self if (start, stop) == (0, self.length) else _Subset(self, start, stop)

    def describe(self) -> str:
        """What a report says about the data: name, samples, layout, preprocessing."""
        layout = "x".join(map(str, self.frame_shape))
        layout = f"{layout} per sample" if self.timesteps is None else f"T={self.timesteps} x {layout}"
        return f"{self.name}: {self.length} samples, {layout}, preprocessing {self.preprocess.describe()}"

    def batches(self, batch_size: int = 32, timesteps: Optional[int] = None,
                num_classes: Optional[int] = None) -> Iterator[Batch]:
        """Time-major batches ``[T, B, *frame]``; ``timesteps`` is T for direct data (required) and must
        equal the data's T for sequence data.  Non-finite values are refused (array and index named);
        inputs far outside the expected range and labels outside ``[0, num_classes)`` get a warning."""
        import torch

        if batch_size < 1:
            raise DataError(f"--batch-size must be >= 1, got {batch_size}")
        T = timesteps or self.timesteps
        if self.timesteps is not None and timesteps and timesteps != self.timesteps:
            raise DataError(f"{self.name} has T={self.timesteps} frames per sample but the network runs T={timesteps}")
        if not T:
            raise DataError(f"{self.name} has one frame per sample and the network records no T: pass --timesteps")
        warned = set()
        for start in range(0, self.length, batch_size):
            stop = min(self.length, start + batch_size)
            x = self.preprocess(self.raw(start, stop))
            if not np.isfinite(x).all():
                bad = np.argwhere(~np.isfinite(x))[0]
                raise DataError(f"{self.name}: sample {start + int(bad[0])} holds {x[tuple(bad)]} at index "
                                f"{[int(i) for i in bad[1:]]}")
            if "range" not in warned and np.abs(x).max(initial=0.0) > LARGE_INPUT:
                warned.add("range")
                warn(f"{self.name}: inputs reach {np.abs(x).max():.4g} after preprocessing "
                     f"({self.preprocess.describe()}); scaled and normalised as in training? (--normalize, --scale)")
            y = None if self.labels is None else self.labels[start:stop]
            if y is not None and num_classes and "labels" not in warned and ((y < 0) | (y >= num_classes)).any():
                warned.add("labels")
                bad = int(y[(y < 0) | (y >= num_classes)][0])
                warn(f"{self.name}: labels outside 0..{num_classes - 1} (e.g. {bad}): accuracy is meaningless")
            xt = torch.from_numpy(np.ascontiguousarray(x))
            if self.timesteps is None:
                xt = xt.unsqueeze(0).expand(T, *xt.shape)
            else:
                xt = xt.transpose(0, 1)
            yield Batch(xt, y, start)


class _Subset(Dataset):
    """Samples ``offset .. offset + n`` of ``base`` (frames as the base reads them, before preprocessing)."""

    def __init__(self, base: Dataset, offset: int, stop: int):
        super().__init__(base.name, stop - offset, base.frame_shape, base.timesteps,
                         None if base.labels is None else base.labels[offset:stop], base.preprocess)
        self.base, self.offset = base, offset

    def raw(self, start: int, stop: int) -> np.ndarray:
        return self.base.raw(self.offset + start, self.offset + stop)


class ArrayDataset(Dataset):
    """Samples from an array ``x`` ``[N, C, H, W]`` or ``[N, T, C, H, W]`` (a memory-mapped ``.npy`` is read
    a batch at a time).  uint8 data is scaled by 1/255 unless ``preprocess`` says otherwise."""

    def __init__(self, name: str, x, labels=None, timesteps: Optional[int] = None,
                 preprocess: Optional[Preprocess] = None, frame_dims: int = 3):
        x_shape = tuple(np.shape(x))
        dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x[:0] if x_shape else x).dtype  # reads no data
        if len(x_shape) < 2 or np.dtype(dtype).kind not in "fiub":
            raise DataError(f"{name}: x must be a numeric array [N, ...], got shape {list(x_shape)} of "
                            f"{np.dtype(dtype)}")
        sequence = timesteps is not None or len(x_shape) == frame_dims + 2
        if np.asarray(x[:0]).dtype == np.uint8 and (preprocess is None or preprocess.scale is None):
            warn(f"{name}: x is uint8 (0..255): scaled by 1/255 as ToTensor does (--scale 1 keeps the raw values)")
            preprocess = replace(preprocess or Preprocess(), scale=1 / 255)
        super().__init__(name, x_shape[0], x_shape[2:] if sequence else x_shape[1:],
                         x_shape[1] if sequence else None, labels, preprocess)
        self.x = x

    def raw(self, start: int, stop: int) -> np.ndarray:
        return np.array(self.x[start:stop])  # a copy: memory-mapped files are read-only


class FunctionDataset(Dataset):
    """Samples made one at a time by ``load(i) -> array`` (image files, event recordings, a torch Dataset)."""

    def __init__(self, name: str, length: int, load: Callable[[int], np.ndarray], frame_shape, timesteps=None,
                 labels=None, preprocess: Optional[Preprocess] = None):
        super().__init__(name, length, frame_shape, timesteps, labels, preprocess)
        self.load = load

    def raw(self, start: int, stop: int) -> np.ndarray:
        return np.stack([np.asarray(self.load(i), dtype=np.float32) for i in range(start, stop)])


def as_dataset(data, input_shape, timesteps: Optional[int] = None, labels=None) -> Dataset:
    """``data`` as a :class:`Dataset` for a network with per-step input ``input_shape``: a Dataset as is;
    an array ``[N, *input_shape]`` / ``[N, T, *input_shape]`` (with ``labels``); a torch ``Dataset``
    yielding ``(x, y)``; a torch ``DataLoader`` (its dataset)."""
    if isinstance(data, Dataset):
        return data
    try:
        import torch.utils.data as tud

        if isinstance(data, tud.DataLoader):
            data = data.dataset
        if isinstance(data, tud.Dataset):
            first = np.asarray(data[0][0], dtype=np.float32)
            sequence, T = data_layout((1, *first.shape), input_shape, timesteps)
            ys = np.asarray([int(data[i][1]) for i in range(len(data))])
            return FunctionDataset(type(data).__name__, len(data), lambda i: np.asarray(data[i][0], np.float32),
                                   first.shape[1:] if sequence else first.shape, T if sequence else None, ys)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    sequence, T = data_layout(np.shape(data), input_shape, timesteps)
    return ArrayDataset("array", data, labels, T if sequence else None, frame_dims=len(tuple(input_shape)))


def probe_inputs(graph, n: int, seed: int = 0) -> Dataset:
    """``n`` inputs to compare two versions of ``graph`` on: the digits test split for [1, 8, 8] direct
    inputs, else uniform [0, 1) frames (one per sample for direct encoding, T per sample for sequence)."""
    shape = tuple(graph.input_shape)
    if shape == (1, 8, 8) and graph.encoding == "direct":
        x, y = digits("test")
        return ArrayDataset("digits (test split)", x[:n], y[:n])
    per_sample = shape if graph.encoding == "direct" else (graph.timesteps or 1, *shape)
    x = np.random.default_rng(seed).random((n, *per_sample), dtype=np.float32)
    return ArrayDataset(f"uniform random frames (seed {seed})", x, timesteps=None if graph.encoding == "direct"
                        else per_sample[0], frame_dims=len(shape))
