"""Atomic file output: a reader never sees a half-written file, a failure leaves nothing behind."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

from .errors import UserError


#: longest file name most file systems take (ext4, xfs, btrfs, tmpfs)
NAME_MAX = 255


def _temp_prefix(path: Path) -> str:
    """``.NAME.PID.`` -- shortened so that the temp name (prefix + 8 random characters + ``.tmpSUFFIX``)
    still fits NAME_MAX for a legal 255-character destination name."""
    tail = f".{os.getpid()}."
    room = NAME_MAX - len(tail) - 8 - len(f".tmp{path.suffix}") - 1
    return f".{path.name[:max(room, 1)]}{tail}"


def _remove_stale(path: Path) -> None:
    """Temp files of earlier writes of ``path`` whose process is gone (killed by SIGKILL or a crash)."""
    prefix = _temp_prefix(path).rsplit(".", 2)[0] + "."
    for old in path.parent.glob(f"{glob_escape(prefix)}*.tmp{glob_escape(path.suffix)}"):
        pid = old.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                old.unlink()


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
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
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=f".tmp{path.suffix}", dir=path.parent or ".")
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
