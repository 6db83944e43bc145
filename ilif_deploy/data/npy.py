"""An ``.npy`` read a slice of rows at a time with plain file reads.  Why not ``np.load(mmap_mode='r')``:
pages of a memory map stay resident once touched, so a pass over a 2,000-sample file grows the process
by what it read; reading rows into a fresh buffer keeps one batch."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError


class NpyRows:
    """``x[start:stop]`` of an ``.npy`` on disk (C order, no object dtype); ``shape`` and ``dtype`` as an array's.
    The header is parsed by numpy; the file's size is checked against it before anything is read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                    version, np.lib.format.read_array_header_2_0)  # 2.0 and 3.0 share the layout
                shape, fortran, dtype = read_header(f, max_header_size=10_000)
                self.offset = f.tell()
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable .npy array ({e})") from None
        if dtype.hasobject:
            raise DataError(f"{path}: an .npy of Python objects (needs a pickle): refused")
        if fortran and len(shape) > 1:
            raise DataError(f"{path}: a Fortran-order .npy: save it with np.save(np.ascontiguousarray(x))")
        self.shape, self.dtype = tuple(int(s) for s in shape), dtype
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        need = self.offset + (self.shape[0] if self.shape else 1) * self.row_bytes
        have = os.path.getsize(self.path)
        if have < need:
            raise DataError(f"{path}: the header says {list(self.shape)} {dtype} ({need:,} bytes) but the file "
                            f"has {have:,} (truncated?)")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1) or not self.shape:
            raise TypeError("NpyRows reads contiguous row slices x[start:stop]")
        start, stop, _ = key.indices(self.shape[0])
        count = max(stop - start, 0)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            rows = np.fromfile(f, self.dtype, count * self.row_bytes // max(self.dtype.itemsize, 1))
        return rows.reshape((count,) + self.shape[1:])


__all__ = ["NpyRows"]
