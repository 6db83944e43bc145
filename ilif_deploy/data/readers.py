"""``--data``: a name or a path, read into a :class:`~ilif_deploy.data.dataset.Dataset`.

=========================================  =====================================================================
``digits``                                 scikit-learn's bundled digits, the fixed test split (or ``--split train``)
``file.npz``                               frames: array ``x`` (``--x-key``) ``[N, C, H, W]`` or ``[N, T, C, H, W]``,
                                           labels ``y`` (``--y-key``); events: 1-D ``x, y, t, p`` (+ ``sample``,
                                           ``label``), made into T frames
``file.npy``                               frames ``[N, ...]``, memory-mapped (read a batch at a time), no labels
``cifar-10-batches-py/``                   the CIFAR-10 python folder (``test_batch`` or ``data_batch_1..5``)
``cifar-100-python/``                      the CIFAR-100 python folder (``test`` or ``train``; fine labels)
a folder of ``0.pt`` ... (or its ``test/``)  the authors' DVSCIFAR10-pt: per-sample ``(frames [T, C, H, W], label)``
a folder with ``NMNIST/``, ``DVSGesture/``  tonic's datasets, as tonic's downloads unpack them
or ``CIFAR10DVS/``
a folder of class folders                  images (``root/<class>/*.png|jpg|...``), classes in sorted order
=========================================  =====================================================================
"""
from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import DataError
from .dataset import ArrayDataset, Dataset, FunctionDataset, Preprocess, digits, warn
from .npy import NpyRows
from .presets import DatasetPreset, normalization, preset
from .safe_pickle import load_batch
from ..bounded import MAX_FRAME_PIXELS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLITS = ("test", "train")


def _cifar(path: Path, split: str) -> Optional[Tuple[str, list]]:
    """(name, batch files) of a CIFAR python folder (or a folder holding one), or None."""
    for folder in (path, path / "cifar-10-batches-py", path / "cifar-100-python"):
        if any((folder / n).is_file() for n in ("batches.meta", "test_batch", "data_batch_1")):
            names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
            files = [folder / n for n in names]
            return "CIFAR-10", [f for f in files if f.is_file()] or files[:1]
        if (folder / "meta").is_file() and (folder / split).is_file():
            return "CIFAR-100", [folder / split]
    return None


class CifarDataset(Dataset):
    """CIFAR python batches: uint8 ``[N, 3072]`` rows (R, G, B planes of 32 x 32), one batch file in memory."""

    def __init__(self, name: str, files, preprocess: Preprocess):
        self.files, self.offsets, labels = [], [0], []
        for f in files:
            if not f.is_file():
                raise DataError(f"{f}: missing CIFAR batch file")
            d = load_batch(f)
            y = d.get("labels", d.get("fine_labels"))
            if y is None or len(y) != len(d["data"]):
                raise DataError(f"{f}: no labels for its {len(d['data'])} images")
            self.files.append(f)
            self.offsets.append(self.offsets[-1] + len(y))
            labels += list(y)
        super().__init__(f"{name} {files[0].parent}", len(labels), (3, 32, 32), None, np.asarray(labels), preprocess)
        self._cached = (None, None)

    def raw(self, start: int, stop: int) -> np.ndarray:
        out = []
        for i in range(start, stop):
            k = int(np.searchsorted(self.offsets, i, side="right")) - 1
            if self._cached[0] != k:
                self._cached = (k, load_batch(self.files[k])["data"])
            out.append(self._cached[1][i - self.offsets[k]].reshape(3, 32, 32))
        return np.stack(out)


def _image_folder(path: Path, channels: int, pre: Preprocess) -> Optional[Dataset]:
    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((path / name).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        return None
    from PIL import Image

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"{path}: images feed 1- or 3-channel inputs, the network takes {channels}")

    def load(i: int) -> np.ndarray:
        with Image.open(files[i][0]) as im:
            if im.size[0] * im.size[1] > MAX_FRAME_PIXELS:  # checked from the header, before decoding
                raise DataError(f"{files[i][0]}: an image of {im.size[0]}x{im.size[1]} pixels, more than "
                                f"{MAX_FRAME_PIXELS:,} (not a frame a network takes); not decoded")
            a = np.asarray(im.convert(mode), dtype=np.uint8)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    first = load(0)
    return FunctionDataset(f"image folder {path} ({len(classes)} classes)", len(files), load, first.shape,
                           labels=np.asarray([c for _, c in files]),
                           preprocess=replace(pre, scale=pre.scale or 1 / 255))


def _events(name: str, recording, n: int, labels, timesteps: Optional[int], sensor, pre: Preprocess) -> Dataset:
    from .events import frames_by_count

    if not timesteps:
        raise DataError(f"{name}: event recordings become T frames: pass --timesteps (or a --dataset preset)")
    w, h = sensor
    if w * h > MAX_FRAME_PIXELS:
        raise DataError(f"{name}: a {w}x{h} sensor makes frames of more than {MAX_FRAME_PIXELS:,} pixels "
                        f"(--sensor-size W,H)")
    return FunctionDataset(f"{name} (events -> {timesteps} frames of equal event count)", n,
                           lambda i: frames_by_count(recording(i), timesteps, sensor), (2, h, w), timesteps, labels,
                           pre)


#: largest per-sample .pt file read (a DVS-CIFAR10 sample of 10 frames of 2 x 128 x 128 float32 is 1.3 MB)
MAX_PT_SAMPLE_BYTES = 64 << 20


def _pt_folder(path: Path, split: str, channels: int, timesteps: Optional[int], pre: Preprocess,
               samples: Optional[int]) -> Optional[Dataset]:
    """The authors' ``DVSCIFAR10-pt`` layout (their ``DVSCifar10``): a folder -- or its ``test/``/``train/`` -- of
    per-sample files ``0.pt``, ``1.pt``, ... each ``torch.save((frames [T, C, H, W], label))``.  Loaded with
    ``weights_only=True``; each file's size, structure and shapes are checked before its frames are used."""
    folder = path / split if (path / split).is_dir() else path
    numbered = {int(f.stem): f for f in folder.glob("*.pt") if f.stem.isdigit()}
    if not numbered:
        return None
    n = len(numbered)
    missing = [i for i in range(n) if i not in numbered]
    if missing:
        raise DataError(f"{folder}: {n} numbered .pt samples but {missing[0]}.pt is missing (the files are 0.pt .. "
                        f"{n - 1}.pt, as the authors' DVSCifar10 reads them)")
    n = min(n, samples) if samples else n

    def load(i: int):
        import torch

        f = numbered[i]
        if not f.is_file() or f.stat().st_size > MAX_PT_SAMPLE_BYTES:
            raise DataError(f"{f}: not a regular file of at most {MAX_PT_SAMPLE_BYTES >> 20} MB")
        try:
            item = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # a pickle beyond tensors, a damaged archive
            raise DataError(f"{f}: not a (frames, label) sample ({type(e).__name__}: {str(e)[:80]})") from None
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], torch.Tensor)):
            raise DataError(f"{f}: holds {type(item).__name__}, not the (frames, label) pair of DVSCIFAR10-pt")
        frames, label = item
        if frames.dim() != 4 or frames.shape[1] != channels or (timesteps and frames.shape[0] != timesteps):
            raise DataError(f"{f}: frames of shape {list(frames.shape)}, the network takes [T={timesteps or 'T'}, "
                            f"{channels}, H, W]")
        label = torch.as_tensor(label).reshape(-1)
        if label.numel() != 1 or label.dtype.is_floating_point and label[0] != label[0].round():
            raise DataError(f"{f}: label {label.tolist()[:3]} is not one class number")
        return frames.to(torch.float32).numpy(), int(label[0])

    first, _ = load(0)
    labels = [load(i)[1] for i in range(n)]
    return FunctionDataset(f"DVSCIFAR10-pt {folder} ({n} samples)", n, lambda i: load(i)[0], first.shape[1:],
                           first.shape[0], np.asarray(labels), pre)


def open_data(spec: str, *, input_shape=None, timesteps: Optional[int] = None, dataset: Optional[str] = None,
              split: str = "test", x_key: str = "x", y_key: str = "y", normalize: Optional[str] = None,
              scale: Optional[float] = None, resize: Optional[int] = None, sensor: Optional[Tuple[int, int]] = None,
              samples: Optional[int] = None) -> Dataset:
    """Read ``spec`` (a name or a path, see the module docstring) as a Dataset.

    Args:
        input_shape: the network's per-step input ``[C, H, W]`` (image folders convert to its channels).
        timesteps: T (event data is made into T frames).
        dataset: a preset name (:data:`~ilif_deploy.data.presets.PRESETS`): its normalisation and, for
            event data, sensor size and frame size (DVS-CIFAR10: resized to 48 x 48) are the defaults.
        normalize: ``cifar10|cifar100|imagenet|MEAN,STD|none`` (default: the preset's, else none).
        scale: multiply raw values first (default: 1/255 for uint8 images and arrays, else 1).
        resize: frame height = width after scaling (default: the preset's frame size for event data).
        sensor: (W, H) of event data (default: the preset's, else the events' extent).
        samples: keep the first ``samples`` samples.
    """
    if split not in SPLITS:
        raise DataError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    pre_set: Optional[DatasetPreset] = preset(dataset) if dataset else None
    norm = normalization(normalize if normalize is not None else (pre_set.normalize if pre_set else None))
    pre = Preprocess(scale=scale, mean=norm[0] if norm else None, std=norm[1] if norm else None)
    if resize:
        pre = replace(pre, resize=(resize, resize))
    if spec == "digits":
        x, y = digits(split)
        return ArrayDataset(f"digits ({split} split)", x, y, preprocess=pre).take(samples)
    path = Path(spec)
    if not path.exists():
        raise DataError(f"data not found: {spec} (use 'digits', an .npz/.npy file or a dataset folder)")
    event_pre = pre  # event frames are made at the sensor's size and resized to the preset's (DVS-CIFAR10: 48)
    if not resize and pre_set and pre_set.sensor:
        event_pre = replace(pre, resize=tuple(pre_set.input_shape[1:]))
    sensor = sensor or (pre_set.sensor if pre_set else None)
    if path.is_dir():
        found = _cifar(path, split)
        if found:
            return CifarDataset(*found, replace(pre, scale=pre.scale or 1 / 255)).take(samples)
        pt = _pt_folder(path, split, (input_shape or (2,))[0], timesteps, event_pre, samples)
        if pt is not None:
            return pt
        from .events import structured, tonic_dataset

        tonic = tonic_dataset(path, split)
        if tonic:
            ds, name, tonic_sensor = tonic
            return _events(f"{name} {path} (tonic)", lambda i: structured(ds[i][0]), len(ds),
                           np.asarray(ds.targets), timesteps, sensor or tonic_sensor, event_pre).take(samples)
        images = _image_folder(path, (input_shape or (3,))[0], pre)
        if images is not None:
            return images.take(samples)
        raise DataError(f"{path}: a folder, but no CIFAR batches, tonic dataset (NMNIST/, DVSGesture/, CIFAR10DVS/) "
                        f"or class folders of images in it")
    # arrays hold [N, *frame] or [N, T, *frame]; a frame has the network's rank (a vector for a NIR RNN)
    from ..bounded import check_zip, input_file

    input_file(path, "the data")
    if path.suffix != ".npy":
        check_zip(path)
    frame_dims = len(input_shape) if input_shape else 3
    if path.suffix == ".npy":
        return ArrayDataset(str(path), NpyRows(path), preprocess=pre, frame_dims=frame_dims).take(samples)
    return _npz(path, x_key, y_key, pre, timesteps, sensor, event_pre, samples, frame_dims)


def _npz(path: Path, x_key: str, y_key: str, pre: Preprocess, timesteps, sensor, event_pre, samples,
         frame_dims: int = 3) -> Dataset:
    from .events import event_sensor, looks_like_events, npz_recordings

    if not zipfile.is_zipfile(path):  # np.load would take any other file for a pickle and say so
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head == b"\x89HDF\r\n\x1a\n":
            raise DataError(f"{path} is an HDF5 file (a NIR graph, a .lava.h5 or a netx network: a model, not data)")
        raise DataError(f"{path}: not a .npz archive (it starts with {head!r})")
    try:
        f = np.load(path, allow_pickle=False)
        keys = list(f.keys())
    except Exception as e:  # truncated, damaged directory, ...
        raise DataError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None
    with f:
        try:
            if looks_like_events(f):
                recording, n, labels = npz_recordings(path, f)
                return _events(f"events {path}", recording, n, labels, timesteps,
                               sensor or event_sensor(recording, n), event_pre).take(samples)
            if x_key not in f:
                raise DataError(f"{path}: no array {x_key!r} (found {keys}; choose with --x-key/--y-key)")
            x = f[x_key]
            y = f[y_key] if y_key in f else None
        except DataError:
            raise
        except ValueError as e:  # object arrays need pickles: refused
            raise DataError(f"{path}: {e}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:  # a damaged member (CRC, truncated)
            raise DataError(f"{path}: damaged .npz ({type(e).__name__}: {e})") from None
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {len(y)} labels ({y_key!r}) for {len(x)} samples ({x_key!r})")
    if y is not None and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{path}: labels {y_key!r} must be integers")
        warn(f"{path}: labels {y_key!r} stored as {y.dtype}: read as integers")
    return ArrayDataset(str(path), x, y, preprocess=pre, frame_dims=frame_dims).take(samples)
