"""Atomic file output: a reader never sees a half-written file, a failure leaves nothing behind."""
from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple, Union

from .errors import UserError
from .limits import release_freed_memory
from .signals import signals_held


#: longest file name most file systems take (ext4, xfs, btrfs, tmpfs)
NAME_MAX = 255
#: every temporary file lives in a folder of its own beside its destination, marked by this file (holding the
#: writer's PID): a killed write's leftovers are recognised by the marker, never by a name a user file could have
TEMP_PREFIX, TEMP_MARKER = ".ilif-deploy-tmp-", "ilif-deploy-temp"


def _remove_stale(folder: Path) -> None:
    """Temp folders of earlier writes into ``folder`` whose process is gone (killed by SIGKILL or a crash)."""
    for old in folder.glob(f"{TEMP_PREFIX}*"):
        marker = old / TEMP_MARKER
        if not (old.is_dir() and not old.is_symlink() and marker.is_file()):
            continue
        with contextlib.suppress(OSError, ValueError):
            pid = int(marker.read_text().strip())
            if pid != os.getpid() and not _alive(pid):
                shutil.rmtree(old)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        pass
    return True


# ----------------------------------------------------------------------------- the one output gate
class _Run:
    """The files one command reads and writes, so that no output is an input or another output."""

    def __init__(self):
        self.inputs: Dict[tuple, str] = {}
        # (flag, path as typed), claimed before the work starts (claim_outputs)
        self.outputs: Dict[tuple, Tuple[str, Union[str, os.PathLike]]] = {}


_RUN: Optional[_Run] = None


@contextlib.contextmanager
def run_scope() -> Iterator[None]:
    """Within the block (one command of a CLI), every input read (:func:`note_input`) and output written is
    remembered, and an output that is an input, or another output, is refused."""
    global _RUN
    outer, _RUN = _RUN, _Run()
    try:
        yield
    finally:
        _RUN = outer


def _keys(path: Path) -> Tuple[tuple, ...]:
    """What identifies a file: its resolved path, and its device and inode where it exists (a hard link)."""
    real = Path(os.path.realpath(path))
    try:
        st = real.stat()
        return (("path", str(real)), ("inode", st.st_dev, st.st_ino))
    except OSError:
        return (("path", str(real)),)


def _kind(mode: int) -> Optional[str]:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return None


def note_input(path: Union[str, os.PathLike], what: str = "an input") -> None:
    """Remember ``path`` as read by this command (nothing outside a :func:`run_scope`)."""
    if _RUN is None:
        return
    for key in _keys(Path(path)):
        if key in _RUN.outputs:
            flag, out = _RUN.outputs[key]
            raise UserError(f"{out} (the {flag} output of this command) is the same file as {what} {path}: writing "
                            f"it would destroy what is read; name another output")
        _RUN.inputs.setdefault(key, what)


def check_destination(path: Union[str, os.PathLike]) -> Path:
    """The one output gate: ``path`` (symlinks followed) is a new file or a regular file, never a device, FIFO,
    socket or folder, and never an input of this command.  Returns the path to write."""
    path = Path(path)
    if len(path.name) > NAME_MAX:
        raise UserError(f"{path.name[:40]}...: a file name of {len(path.name)} characters (at most {NAME_MAX})")
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    if str(real.parent) and not real.parent.exists():
        raise UserError(f"output folder does not exist: {real.parent}")
    with contextlib.suppress(FileNotFoundError):
        kind = _kind(real.stat().st_mode)
        if kind is not None:
            raise UserError(f"{path} is {kind}: outputs are written to regular files (give a file name)")
    if _RUN is not None:
        for key in _keys(real):
            if key in _RUN.inputs:
                raise UserError(f"{path} is {_RUN.inputs[key]} of this command: writing there would destroy it; "
                                f"name another output")
    return real


def claim_outputs(outputs: Dict[str, Optional[Union[str, os.PathLike]]]) -> None:
    """Before any work: every output a command was asked to write (``{"-o": path, "--json": path, ...}``, None:
    not asked) passes the gate, no two name the same file, and none is read later (:func:`note_input`)."""
    seen: Dict[tuple, Tuple[str, Union[str, os.PathLike]]] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        real = check_destination(path)
        for key in _keys(real):
            if key in seen:
                raise UserError(f"{path} is named by {seen[key][0]} and by {flag}: give each output its own file")
            seen[key] = (flag, path)
    if _RUN is not None:
        _RUN.outputs.update(seen)


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    ``path`` passes the output gate (:func:`check_destination`) first.  The temporary file keeps the destination's
    name (some writers -- numpy, h5py, onnx -- look at its suffix) inside a marked temp folder beside it.  On any
    exception (SIGTERM and SIGHUP too, under the CLIs) the temporary folder is removed and ``path`` is left
    untouched; temp folders of a killed earlier write are removed.  A symlinked destination is written through
    (the link stays a link); an existing file keeps its permission bits.
    """
    path = check_destination(path)
    folder = path.parent if str(path.parent) else Path(".")
    _remove_stale(folder)
    tmp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=folder))
    try:
        (tmp_dir / TEMP_MARKER).write_text(str(os.getpid()))
        tmp_path = tmp_dir / path.name
        if path.exists():
            mode = path.stat().st_mode & 0o7777
        else:  # the permissions a plain open() would give
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        tmp_path.touch(mode=0o600)
        os.chmod(tmp_path, mode)
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        if isinstance(e, OSError) and e.filename is None and e.errno in DISK_ERRORS:
            raise OSError(e.errno, e.strerror, str(path)) from e  # a full disk names the file it could not write
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


#: write errors that are the disk's, not the program's: full, over quota, over the file-size limit, read-only
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def write_text_atomic(path: Union[str, os.PathLike], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class Extent(io.RawIOBase):
    """A seekable binary file that keeps only where it is and how far it was written (``pos``, ``size``): alone it
    measures a file; writers that put the bytes somewhere (:class:`DiskFirst`, an HDF5 dataset) build on it."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def write(self, b) -> int:
        n = memoryview(b).nbytes
        self.pos += n
        self.size = max(self.size, self.pos)
        return n


class DiskFirst(Extent):
    """A seekable file for h5py's file-object driver that writes to ``path`` on disk until the disk fails, then
    goes on in memory.

    Why: written by libhdf5 itself, a file on a full disk fails inside its flush (a ``RuntimeError`` with no errno,
    with some h5py builds a segfault on close), and built whole in memory first it costs its own size beside the
    data it is made from (a ResNet-18's Lava file: 50 MB).  Here libhdf5 never sees a failed write: the first
    ``OSError`` (full disk, quota, file-size limit) is kept in :attr:`error`, what was written so far is read back
    into memory and the file is finished there, to be thrown away; only that rare path pays the memory."""

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__()
        self._fd: Optional[int] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._memory: Optional[io.BytesIO] = None
        #: the disk's error, or None: the file on disk is complete only when this stays None
        self.error: Optional[OSError] = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        if self._memory is not None:
            self._memory.seek(self.pos)
            n = self._memory.readinto(view)
        else:
            n = os.preadv(self._fd, [view], self.pos)
        self.pos += n
        return n

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        if self._memory is None:
            try:
                done = 0
                while done < len(view):
                    done += os.pwrite(self._fd, view[done:], self.pos + done)
            except OSError as e:
                self.error = e
                self._to_memory()
        if self._memory is not None:
            self._memory.seek(self.pos)
            self._memory.write(view)
        return super().write(view)

    def truncate(self, size: Optional[int] = None) -> int:
        size = self.pos if size is None else size
        if self._memory is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as e:
                self.error = e
                self._to_memory()
        if self._memory is not None:
            self._memory.truncate(size)
        self.size = size
        return size

    def _to_memory(self) -> None:
        memory = io.BytesIO()
        done = 0
        while done < self.size:  # what reached the disk: a failed write's own bytes are written again after
            chunk = os.pread(self._fd, min(self.size - done, 1 << 24), done)
            if not chunk:
                break
            memory.write(chunk)
            done += len(chunk)
        if done < self.size:
            memory.write(bytes(self.size - done))
        self._memory = memory

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._memory is not None:
            self._memory.close()
        super().close()


def write_hdf5_atomic(path: Union[str, os.PathLike], fill: Callable[[io.RawIOBase], None],
                      check: Optional[Callable[[Path], None]] = None, cyclic: bool = False) -> None:
    """Write an HDF5 file to ``path`` atomically: ``fill(target)`` writes it (``h5py.File(target, "w")``, or
    ``nir.write(target, graph)``) into a :class:`DiskFirst` temporary file beside ``path``; ``check(temp_path)``, if
    given, reads the written file back before it replaces ``path``.  ``cyclic``: ``fill`` dropped objects in
    reference cycles (a NIR graph's nodes), collected before the check (a full collection costs ~70-85 ms with
    torch loaded unless the command line froze the imports, :func:`~ilif_deploy.limits.freeze_imports`: so only
    then).  A full disk is an ``OSError`` naming ``path``, raised once libhdf5 has finished, and leaves nothing
    behind."""
    with atomic_path(path) as tmp:
        target = DiskFirst(tmp)
        try:
            with signals_held():
                fill(target)
        finally:
            target.close()
        if target.error is not None:
            e = target.error
            raise OSError(e.errno, e.strerror, str(path)) from e
        release_freed_memory(collect_cycles=cyclic)  # what ``fill`` built
        if check is not None:
            check(tmp)
