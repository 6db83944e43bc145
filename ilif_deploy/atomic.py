"""Atomic file output: a reader never sees a half-written file, a failure leaves nothing behind."""
from __future__ import annotations

import contextlib
import errno
import glob
import io
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from .errors import UserError


#: longest file name most file systems take (ext4, xfs, btrfs, tmpfs)
NAME_MAX = 255


#: room kept in a temp name for ``.PID.`` (Linux PIDs have at most 7 digits) and mkstemp's 8 characters
_PID_ROOM, _RANDOM_ROOM = 9, 8


def _temp_stem(path: Path) -> str:
    """``.NAME`` -- shortened (the same for every writer) so that ``.NAME.PID.XXXXXXXX.tmpSUFFIX`` fits
    NAME_MAX for a legal 255-character destination name."""
    room = NAME_MAX - 1 - _PID_ROOM - _RANDOM_ROOM - len(f".tmp{path.suffix}")
    return f".{path.name[:max(room, 1)]}"


def _remove_stale(path: Path) -> None:
    """Temp files of earlier writes of ``path`` whose process is gone (killed by SIGKILL or a crash)."""
    stem = _temp_stem(path)
    for old in path.parent.glob(f"{glob.escape(stem)}.*.tmp{glob.escape(path.suffix)}"):
        pid = old.name[len(stem) + 1:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                old.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        pass
    return True


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The temporary file keeps the destination's suffix, because some writers (numpy, h5py, onnx)
    look at it.  On any exception (SIGTERM too, under the CLIs) the temporary file is removed and
    ``path`` is left untouched; temp files left by a killed earlier write are removed.  A symlinked
    destination is written through (the link stays a link); an existing file keeps its permission bits.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: give a file name to write")
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.parent and not path.parent.exists():
        raise UserError(f"output folder does not exist: {path.parent}")
    if len(path.name) > NAME_MAX:
        raise UserError(f"{path.name[:40]}...: a file name of {len(path.name)} characters (at most {NAME_MAX})")
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_stem(path)}.{os.getpid()}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    if path.exists():
        mode = path.stat().st_mode & 0o7777
    else:  # mkstemp makes the file owner-only; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp_path, mode)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(e, OSError) and e.filename is None and e.errno in DISK_ERRORS:
            raise OSError(e.errno, e.strerror, str(path)) from e  # a full disk names the file it could not write
        raise


#: write errors that are the disk's, not the program's: full, over quota, over the file-size limit, read-only
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def write_text_atomic(path: Union[str, os.PathLike], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the handlers in force before.

    Why: h5py keeps its objects in a weak-value registry, and a KeyboardInterrupt raised inside that
    registry's callback is printed as "Exception ignored" and lost: 28 of 30 Ctrl-Cs sent during a 2 s
    h5py write ended in exit 0 (0 of 30 with this hold).  Building a file in memory takes about 0.3 s
    per 10 MB (1.0 s for a 32 MB NIR file), so a signal waits that long at most."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    before = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(got):
            signal.raise_signal(s)


def write_hdf5_atomic(path: Union[str, os.PathLike], fill: Callable[[io.BytesIO], None],
                      check: Optional[Callable[[Path], None]] = None) -> None:
    """Write an HDF5 file to ``path`` atomically: ``fill(target)`` writes it (``h5py.File(target, "w")``, or
    ``nir.write(target, graph)``) into memory, then plain Python file I/O puts the bytes on disk;
    ``check(temp_path)``, if given, reads the written file back before it replaces ``path``.

    Why not let libhdf5 write the file: on a full disk it fails inside its own flush (a ``RuntimeError``
    with no errno, and with some h5py builds a segfault on close), and it swallows a Ctrl-C.  In
    memory neither can happen, and a full disk becomes an ``OSError`` naming ``path``."""
    buf = io.BytesIO()
    with _signals_held():
        fill(buf)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
        if check is not None:
            check(tmp)
