"""Data as researchers have it, one dataset type and one data path for every tool.

- :class:`Dataset`: samples (one frame ``[C, H, W]`` each, or ``[T, C, H, W]``), labels, preprocessing;
  :meth:`Dataset.batches` yields time-major ``[T, B, ...]`` batches lazily.
- :func:`open_data`: ``--data`` (a name or a path: ``.npz``/``.npy``, CIFAR folders, image folders, event
  datasets through tonic, ``digits``) -> Dataset.  :func:`as_dataset`: arrays, torch datasets/loaders.
- :data:`PRESETS`: the paper's datasets (shapes, T, classes, encoding, the authors' preprocessing).
"""
from .dataset import (ArrayDataset, Batch, DataWarning, Dataset, FunctionDataset, Preprocess, as_dataset, data_layout,
                      digits, probe_inputs)
from .presets import NORMALIZATIONS, PRESETS, DatasetPreset, normalization, preset
from .readers import open_data

__all__ = ["Dataset", "ArrayDataset", "FunctionDataset", "Batch", "Preprocess", "DataWarning", "as_dataset",
           "open_data", "data_layout", "digits", "probe_inputs", "PRESETS", "DatasetPreset", "preset",
           "NORMALIZATIONS", "normalization"]
