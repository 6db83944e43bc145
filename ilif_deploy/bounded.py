"""The one bounded reader: what every file reader calls before it reads a byte of a file.

- :func:`input_file`: the path is a regular file (a FIFO, device, socket or folder is refused before it is
  opened: a FIFO would block forever, ``/dev/zero`` never ends), and it is noted as an input of the command, so
  the output gate (:mod:`ilif_deploy.atomic`) never writes over it.
- :func:`worth`: how many bytes a file may ask us to allocate for the arrays it declares -- a multiple of its
  size plus a floor -- so a small file cannot ask for gigabytes (a 9 KB HDF5 file can declare a dataset of any
  shape while storing nothing; a 3 MB zip can inflate to 3 GB).
- :func:`check_zip`: a zip archive (``.pt``, ``.npz``, ``.ir.npz``) declares no more uncompressed bytes than it
  is worth and no member name twice (a duplicate record is loaded by torch while zip tools show the other).
HDF5 files get the same budget in :func:`ilif_deploy.converters.hdf5_safety.check_self_contained`.
"""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import Union

from .atomic import note_input
from .errors import UserError

MIB = 1 << 20
#: the largest frame read or made (pixels): 4096 x 4096, far beyond any network's input
MAX_FRAME_PIXELS = 4096 * 4096
#: a file may declare arrays of at most WORTH_FACTOR x its size + WORTH_FLOOR bytes: compressed weights of real
#: networks stay far below (gzip'd int8 mantissas: ~2x), a file declaring more is not a network of ours
WORTH_FACTOR, WORTH_FLOOR = 64, 128 * MIB


class InputError(UserError):
    """An input file that cannot be read safely; the message names the file and why."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def input_file(path: Union[str, os.PathLike], what: str = "an input") -> Path:
    """``path`` as a regular file to read (symlinks followed), noted as ``what`` of the running command;
    InputError for anything else, before it is opened."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p} is {_kind(st.st_mode)}: {what} must be a regular file")
    note_input(p, what)
    return p


def worth(path: Union[str, os.PathLike]) -> int:
    """Bytes of declared arrays a file of this size may ask for (see :data:`WORTH_FACTOR`)."""
    return WORTH_FACTOR * os.stat(path).st_size + WORTH_FLOOR


def refuse_declared(path, declared: int, what: str = "its arrays", largest: str = "") -> None:
    """InputError when ``declared`` bytes (``what`` declares them; ``largest``: the name of the largest) exceed
    what ``path`` is worth."""
    limit = worth(path)
    if declared > limit:
        raise InputError(f"{path}: {what} declare {declared:,} bytes{f' (the largest: {largest})' if largest else ''}"
                         f", more than a file of {os.stat(path).st_size:,} bytes may ask for ({limit:,}); not read")


def check_zip(path: Union[str, os.PathLike]) -> None:
    """A zip archive's members: no name twice, declared uncompressed sizes within what the file is worth
    (checked from its central directory, before anything is inflated).  Not a zip: nothing to check."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: a damaged zip archive ({e})") from None
    seen: set = set()
    dup = next((i.filename for i in infos if i.filename in seen or seen.add(i.filename)), None)
    if dup is not None:
        raise InputError(f"{path}: the record {dup!r} is in the archive twice (one reader takes one copy, another "
                         f"the other); not read")
    refuse_declared(path, sum(i.file_size for i in infos), "its zip members")
