"""Atomic file output: a reader never sees a half-written file, a failure leaves nothing behind."""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(path: Union[str, os.PathLike], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
