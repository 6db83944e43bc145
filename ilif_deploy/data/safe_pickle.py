"""Reading the CIFAR python batches without unpickling arbitrary objects.

The files of ``cifar-10-batches-py`` / ``cifar-100-python`` are pickles of a dict holding strings, bytes,
lists of ints/strings and one numpy uint8 array.  Unpickling runs whatever callables a file names, so
:class:`ArraysOnlyUnpickler` admits exactly the globals numpy needs to rebuild an ndarray and refuses every
other one before anything is called.
"""
from __future__ import annotations

import io
import pickle

import numpy as np

from ..errors import DataError

#: the only callables a CIFAR batch may name (numpy's array reconstruction, by module and name)
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    # pickles of protocol 2 written by Python 3 rebuild bytes as _codecs.encode(str, "latin1"): no code runs
    ("_codecs", "encode"),
}
#: the size of pickle a CIFAR batch can be (10,000 images of 3,072 bytes, plus lists)
MAX_BYTES = 200 * 1024 * 1024


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits strings, bytes, numbers, lists, dicts, tuples and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return getattr(__import__(module, fromlist=[name]), name)
        raise pickle.UnpicklingError(f"the pickle names {module}.{name}, which a CIFAR batch never holds")


def load_batch(path) -> dict:
    """The dict of one CIFAR python batch file (keys decoded to str), read with :class:`ArraysOnlyUnpickler`."""
    with open(path, "rb") as f:
        blob = f.read(MAX_BYTES + 1)
    if len(blob) > MAX_BYTES:
        raise DataError(f"{path}: larger than a CIFAR batch can be ({MAX_BYTES} bytes)")
    try:
        obj = ArraysOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: refused, not a plain CIFAR batch ({e})") from None
    except Exception as e:  # truncated or foreign bytes
        raise DataError(f"{path}: not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a CIFAR batch is a dict, this holds {type(obj).__name__}")
    out = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}
    if not isinstance(out.get("data"), np.ndarray) or out["data"].dtype != np.uint8 or out["data"].ndim != 2 \
            or out["data"].shape[1] != 3072:
        raise DataError(f"{path}: no 'data' array of N x 3072 uint8 images")
    return out
