"""One check every HDF5 reader runs first (NIR files, ``.lava.h5``, netx ``.net``): a file may hold
only its own data.

Why: HDF5 lets a dataset's bytes live in another file (external storage), a link point into another
file (external link) and a dataset be stitched from other files (virtual datasets).  h5py -- and so
``nir.read`` -- follows all three silently, so a crafted 30 KB NIR file could make an export copy any
local file the user can read into its ``.ir.npz`` or ``.onnx``.  None of the formats we read needs them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ilif_deploy.errors import UserError


class UnsafeHDF5(UserError):
    """An HDF5 file that refers to data outside itself."""


def check_self_contained(path) -> None:
    """Raise :class:`UnsafeHDF5` naming the first object that reads outside ``path``: an external
    link, a dataset with external storage, or a virtual dataset.  Links are not followed.  A file that
    is not HDF5 at all passes: the format's own reader then says what it is."""
    import h5py

    from ilif_deploy.bounded import input_file, refuse_declared

    path = input_file(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        return  # not HDF5 (or unreadable): the format's own reader says what it is
    with f:
        try:
            declared, where = _walk(path, f)
            refuse_declared(path, declared, "its datasets", where)
        except UserError:
            raise
        except (RuntimeError, OSError, KeyError, ValueError) as e:  # h5py on a damaged index (local heap, B-tree)
            raise UserError(f"{path}: damaged HDF5 structure ({type(e).__name__}: {e})") from None


def _walk(path: Path, f):
    """Refuse what reads outside the file; return the bytes its datasets declare (read into memory by every
    reader, whatever the file stores) and the largest dataset's name."""
    import h5py

    stack = [f]
    seen, declared, largest = 0, 0, (0, "")
    while stack:
        group = stack.pop()
        for name in group:
            seen += 1
            if seen > MAX_OBJECTS:
                raise UnsafeHDF5(f"{path}: more than {MAX_OBJECTS:,} HDF5 objects (not a file we write or read)")
            link = group.get(name, getlink=True)
            where = f"{group.name.rstrip('/')}/{name}"
            if isinstance(link, h5py.ExternalLink):
                raise UnsafeHDF5(f"{path}: {where} is an external link to {link.filename}:{link.path}; "
                                 f"refused (a file must hold its own data)")
            if isinstance(link, h5py.SoftLink):
                continue  # resolved inside this file; its target is visited where it lives
            try:
                obj = group[name]
            except (KeyError, OSError, RuntimeError) as e:
                raise UserError(f"{path}: {where} cannot be read ({e})") from None
            if isinstance(obj, h5py.Group):
                stack.append(obj)
            elif isinstance(obj, h5py.Dataset):
                if obj.external:
                    raise UnsafeHDF5(f"{path}: dataset {where} keeps its data in {obj.external[0][0]} "
                                     f"(HDF5 external storage); refused (a file must hold its own data)")
                if obj.is_virtual:
                    raise UnsafeHDF5(f"{path}: dataset {where} is a virtual dataset made of other files; "
                                     f"refused (a file must hold its own data)")
                size = int(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize if obj.shape else \
                    obj.dtype.itemsize
                declared += size
                largest = max(largest, (size, where))
    return declared, largest[1]


#: no NIR, Lava or netx file of a real network comes near this many groups and datasets
MAX_OBJECTS = 1_000_000

__all__ = ["check_self_contained", "UnsafeHDF5"]
