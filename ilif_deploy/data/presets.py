"""The paper's datasets as settings: what the network expects and how the authors preprocessed the data.

What the authors' ``train.py``/``inference.py`` (github.com/KaiSUN1/ILIF) do, written down:

- CIFAR-10 / CIFAR-100 (torchvision, test split): ``ToTensor()`` (uint8 -> [0, 1]) then ``Normalize`` with
  mean (0.4914, 0.4822, 0.4465) / std (0.2023, 0.1994, 0.2010), resp. (0.5071, 0.4867, 0.4408) /
  (0.2675, 0.2565, 0.2761); the same frame fed at every step (direct encoding).  T = 6 (train.py's default).
- Tiny-ImageNet (their ``TinyImageNet``): 3 x 64 x 64, 200 classes, ``ToTensor()`` then ``Normalize`` with mean
  (0.4802, 0.4481, 0.3975) / std (0.2302, 0.2265, 0.2262).
- DVS-CIFAR10 pre-processed (``-dataset DVSCIFAR10-pt``): a folder of per-sample ``N.pt`` files (frames, label),
  read by :mod:`ilif_deploy.data.readers` with the ``dvs-cifar10`` preset.
- DVS-Gesture: SpikingJelly's ``DVS128Gesture(data_type='frame', frames_number=T, split_by='number')``: the
  events of a recording split into T slices of equal event count (the remainder goes to the last slice),
  each slice integrated into a 2 x 128 x 128 frame of event counts per polarity; no resizing, no
  normalisation; frame t is fed at step t.
- DVS-CIFAR10: their ``CIFAR10DVS(use_frame=True, frames_num=T, split_by='number', normalization=None)`` (the same
  slicing of the 128 x 128 recordings), then per frame ``ToPILImage -> Resize(48) -> ToTensor`` from their own
  ``utils.augmentation`` (not in the public repository).  Here: bilinear, antialiased resize to 48 x 48, the
  counts kept as they are (their ``ToTensor`` on float frames does not rescale).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import DataError

#: per-channel (mean, std) by name
NORMALIZATIONS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "tiny-imagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
}


@dataclass(frozen=True)
class DatasetPreset:
    """The settings a dataset of the paper implies: one sample's ``input_shape`` per step (channel first),
    ``timesteps`` T, ``num_classes``, ``encoding`` ("direct": the same frame every step; "sequence": a new
    event frame per step) and the authors' preprocessing (``normalize``: a key of :data:`NORMALIZATIONS`;
    ``sensor``: the event camera's (W, H) for event data).  Each is overridable on the command line."""

    name: str
    input_shape: Tuple[int, ...]
    timesteps: int
    num_classes: int
    encoding: str
    normalize: Optional[str] = None
    sensor: Optional[Tuple[int, int]] = None


#: the paper's settings (the authors' train.py / inference.py), plus the bundled digits.  CIFAR at T = 6: train.py's
#: default and the paper's headline (95.49 %, Table 1) and energy table (Table 5); the paper also reports T = 4
PRESETS = {p.name: p for p in (
    DatasetPreset("cifar10", (3, 32, 32), 6, 10, "direct", "cifar10"),
    DatasetPreset("cifar100", (3, 32, 32), 6, 100, "direct", "cifar100"),
    DatasetPreset("tiny-imagenet", (3, 64, 64), 6, 200, "direct", "tiny-imagenet"),
    DatasetPreset("dvs-cifar10", (2, 48, 48), 10, 10, "sequence", sensor=(128, 128)),
    DatasetPreset("dvs-gesture", (2, 128, 128), 20, 11, "sequence", sensor=(128, 128)),
    DatasetPreset("digits", (1, 8, 8), 4, 10, "direct"),
)}


def preset(name: str) -> DatasetPreset:
    """The preset ``name`` (a key of :data:`PRESETS`); a DataError lists them."""
    if name not in PRESETS:
        raise DataError(f"unknown dataset preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def normalization(spec: Optional[str]) -> Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]]:
    """``cifar10|cifar100|imagenet``, ``MEAN,STD`` (one value for every channel) or
    ``M1,M2,M3/S1,S2,S3``; None or ``none``: no normalisation."""
    if spec in (None, "none"):
        return None
    if spec in NORMALIZATIONS:
        return NORMALIZATIONS[spec]
    try:
        if "/" in spec:
            mean, std = (tuple(float(v) for v in part.split(",")) for part in spec.split("/"))
        else:
            mean, std = (float(v) for v in spec.split(","))
            mean, std = (mean,), (std,)
    except ValueError:
        raise DataError(f"--normalize {spec!r}: use {', '.join(NORMALIZATIONS)}, MEAN,STD or M1,M2,../S1,S2,.."
                        ) from None
    if len(mean) != len(std) or not all(s > 0 for s in std):
        raise DataError(f"--normalize {spec!r}: as many means as stds, every std > 0")
    return mean, std
