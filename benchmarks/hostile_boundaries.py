"""The boundary families of the hostile census, each case run as the user runs it: the console script in a
child process, in a folder of its own, with its peak RSS (``os.wait4``), a time limit, and a before/after
inventory of every file beside it (so that a destroyed, replaced or half-written file is seen).

Families: ``outputs`` (where results may be written), ``reading`` (what a file may make us allocate),
``time`` (what may make us wait), ``values`` (numbers outside their domain), ``messages`` (text from files
reaching the terminal or a spreadsheet) and ``compatibility`` (files of other versions), plus signal sweeps
(SIGINT, SIGTERM, SIGHUP at moments from start-up to the final write).  Device nodes and FIFOs are made in the
case's own temp folder, never a real /dev path.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import h5py
import nir
import numpy as np
import torch

from ilif_deploy import ir as N
from ilif_deploy.converters import open_graph

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo import chain_graph, seed_files  # noqa: E402 - the tests' own inputs

#: a child that runs longer than this is a hang (the slowest legitimate case takes a few seconds)
TIME_LIMIT_S = 90
#: the peak resident memory no input under ``SMALL_INPUT`` bytes may make us use
RSS_LIMIT, SMALL_INPUT = 1 << 30, 1 << 20


@dataclass
class Case:
    family: str
    what: str
    tool: str  # export | energy | simulate
    argv: List[str]
    expect: str  # refuse | accept
    names: List[str] = field(default_factory=list)  # what the one error line must name
    writes: List[str] = field(default_factory=list)  # files (in the case folder) a successful run may change
    check: Optional[Callable[[Path], bool]] = None  # after a successful run: is the result right?
    signal_at: Optional[tuple] = None  # (seconds after start, signal)


@dataclass
class Outcome:
    verdict: str
    first: str
    rss: int  # bytes
    seconds: float
    input_bytes: int


# ------------------------------------------------------------------ running one case
def tool_path(tool: str) -> str:
    """The console script beside this Python (what a user runs)."""
    return str(Path(sys.executable).parent / f"ilif-{tool}")


def inventory(folder: Path) -> dict:
    """Every entry under ``folder``: its kind, and for a regular file its size and digest."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                out[p] = ("file", hashlib.sha1(p.read_bytes()).hexdigest())
            else:
                out[p] = (stat.S_IFMT(st.st_mode), None)
    return out


#: a small process between us and the tool: Linux keeps a process's peak RSS across exec, so a tool forked
#: straight from this (torch-loaded) census would start from our RSS; forked from this launcher (a few MB) its
#: peak is its own.  It sends the tool's pid through the pipe argv[1] and writes "exit-code peak-KB" to argv[2].
LAUNCHER = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a shell starts a program: a signal before exec takes its default
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[3], sys.argv[3:])
os.write(int(sys.argv[1]), b"%d\n" % pid)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[2], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_child(case: Case, cwd: Path):
    """(exit code or None when killed for time, stdout, stderr, peak RSS in bytes, seconds from the fork)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rc") as rc_file:
        r, w = os.pipe()
        p = subprocess.Popen([sys.executable, "-S", "-E", "-c", LAUNCHER, str(w), rc_file.name, tool_path(case.tool),
                              *case.argv], cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True, pass_fds=(w,))
        os.close(w)
        with os.fdopen(r) as pipe:
            tool = int(pipe.readline())
        t0 = time.monotonic()
        sent, hung = False, False
        while p.poll() is None:
            elapsed = time.monotonic() - t0
            if case.signal_at and not sent and elapsed >= case.signal_at[0]:
                os.kill(tool, case.signal_at[1])
                sent = True
            if elapsed > TIME_LIMIT_S:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                hung = True
                break
            time.sleep(0.002)
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        text = rc_file.read().split()
        rc, rss = (int(text[0]), int(text[1]) * 1024) if len(text) == 2 else (None, 0)
        return (None if hung else rc, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                rss, seconds)


def _size(path: Path) -> int:
    """A regular file's size; 0 for anything else (a device, a FIFO, a name too long to exist)."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _lines(err: str) -> List[str]:
    """stderr's lines, warnings and progress bars left out."""
    return [line for line in err.replace("\r", "\n").splitlines()
            if line.strip() and not line.startswith("warning:") and "%|" not in line]


def _raw_control(err: str) -> bool:
    """A control character other than the line breaks and the progress bar's carriage return reached stderr."""
    return any(not c.isprintable() and c not in "\n\r\t" for c in err.replace("\x1b[A", ""))


def judge(case: Case, cwd: Path) -> Outcome:
    before = inventory(cwd)
    inputs = sum(_size(cwd / a) for a in case.argv if not a.startswith("-"))
    rc, out, err, rss, seconds = run_child(case, cwd)
    after = inventory(cwd)
    lines = _lines(err)
    first = lines[0] if lines else (out.strip().splitlines() or [""])[-1]
    allowed = {cwd / w for w in case.writes} if rc == 0 else set()
    lost = [p for p, v in before.items() if p not in allowed and after.get(p) != v]
    temp_left = [p for p in after if p.name.startswith(".ilif-deploy-tmp-") and p not in before]
    if lost:
        v = "file lost"
        first = f"{lost[0].name} changed or removed; " + first
    elif rc is None:
        v = "hang"
    elif "Traceback (most recent call last)" in err:
        v = "traceback"
        first = (err.strip().splitlines() or [""])[-1]
    elif rc < 0:
        v = "crash"
        first = f"killed by signal {-rc}"
    elif temp_left:
        v = "temp file left"
    elif _raw_control(err):
        v = "raw text printed"
    elif rc == 2:
        if len(lines) != 1:
            v = "multi-line error"
        else:
            v = "clear error" if all(n in lines[0] for n in case.names) else "vague one-liner"
            if case.expect == "accept":
                v = "refused good input"
    elif rc == 0:
        if case.expect == "refuse":
            v = "accepted bad input"
        else:
            v = "valid run" if case.check is None or case.check(cwd) else "silent wrong result"
    else:
        v = "traceback"  # an exit code we never give
    if v in ("clear error", "valid run") and rss > RSS_LIMIT and inputs < SMALL_INPUT:
        v, first = "memory", f"{rss / 2**30:.1f} GB from {inputs:,} bytes of input; " + first
    return Outcome(v, first, rss, seconds, inputs)


def judge_signal(case: Case, cwd: Path, old: bytes, target: Path, valid: Callable[[Path], bool]) -> Outcome:
    """A signal at a moment of a run that writes ``target`` (which held ``old``): the run ends with one line
    (exit 130 or 143), or by the signal's default action before our code ran or after it finished, or it
    finished (exit 0) within the moment the final write holds signals -- and the target is always either
    ``old`` or a complete valid file, with no temp folder left."""
    rc, out, err, rss, seconds = run_child(case, cwd)
    lines = _lines(err)
    at = case.signal_at[0]
    content_ok = target.read_bytes() == old or valid(target)
    temp_left = [p for p in cwd.iterdir() if p.name.startswith(".ilif-deploy-tmp-")]
    # frames of ours that run code, not the imports of the interpreter's start-up (module bodies)
    ours = [line for line in err.splitlines() if 'File "' in line and "ilif_deploy" in line
            and "__editable__" not in line and not line.rstrip().endswith("in <module>")]
    if not content_ok:
        v = "file lost"
    elif rc is None:
        v = "hang"
    elif ("Traceback (most recent call last)" in err or "Fatal Python error" in err) and not ours:
        v = "Python start-up"  # the interpreter's own start (site, imports) before the first line of ours
    elif "Traceback (most recent call last)" in err:
        v = "traceback"
    elif temp_left:
        v = "temp file left"
    elif rc in (130, 143):
        v = "clear error" if lines == [{130: "interrupted", 143: "terminated"}[rc]] else "multi-line error"
    elif rc < 0:
        v = "ended by the signal"  # before the entry point or after the tool finished: nothing half-done
    elif rc == 0:
        v = "finished" if seconds - at < 1.5 else "signal lost"  # a held signal waits at most ~1 s
    else:
        v = "traceback"
    return Outcome(v, lines[0] if lines else "", rss, seconds, 0)


# ------------------------------------------------------------------ building hostile files
def _zip_with_bomb(src: Path, dst: Path, member: str, npy_shape: tuple, chunk: int = 1 << 24) -> None:
    """``src``'s zip members stored as they were, plus ``member``: a deflated .npy of zeros of ``npy_shape``
    (float32) streamed in, so a few-MB file that inflates to gigabytes is written without holding it."""
    header = {"descr": "<f4", "fortran_order": False, "shape": npy_shape}
    with zipfile.ZipFile(src) as s, zipfile.ZipFile(dst, "w") as z:
        for info in s.infolist():
            z.writestr(info, s.read(info))
        info = zipfile.ZipInfo(member)
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            buf = bytearray()
            np.lib.format.write_array_header_1_0(_Sink(buf), {**header})
            f.write(bytes(buf))
            left = int(np.prod(npy_shape)) * 4
            zeros = b"\0" * chunk
            while left > 0:
                f.write(zeros[:min(chunk, left)])
                left -= chunk


class _Sink:
    def __init__(self, buf):
        self.buf = buf

    def write(self, b):
        self.buf.extend(b)


def _npy_lying(path: Path, shape: tuple) -> None:
    """An uncompressed .npy whose header declares ``shape`` and which holds 64 bytes of data."""
    buf = bytearray()
    np.lib.format.write_array_header_1_0(_Sink(buf), {"descr": "<f4", "fortran_order": False, "shape": shape})
    path.write_bytes(bytes(buf) + b"\0" * 64)


def _h5_declared(src: Path, dst: Path, name: str, shape: tuple, replace: bool, gzip_fill: bool = False) -> None:
    """A copy of the HDF5 file ``src`` whose dataset ``name`` declares ``shape`` (float32): never written, or
    (``gzip_fill``) written with zeros and gzip-compressed, so that the file stays small."""
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as h:
        if replace and name in h:
            del h[name]
        chunks = (min(shape[0], 1 << 20),) + tuple(shape[1:])
        ds = h.create_dataset(name, shape=shape, dtype="f4", chunks=chunks,
                              compression="gzip" if gzip_fill else None, compression_opts=9 if gzip_fill else None)
        if gzip_fill:
            block = np.zeros(chunks, np.float32)
            for i in range(0, shape[0], chunks[0]):
                ds[i:i + chunks[0]] = block[:min(chunks[0], shape[0] - i)]


def _ir_edit(src: Path, dst: Path, edit: Callable[[dict, dict], None]) -> None:
    """A copy of the graph file ``src`` with its header and arrays changed by ``edit(header, arrays)``, as a
    hand edit or another program would (nothing validates it on the way)."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays.pop("__header__")).decode())
    edit(header, arrays)
    np.savez(dst, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)


def _node(header: dict, name: str) -> dict:
    return next(n for n in header["nodes"] if n["name"] == name)


def _first_release_graph(g, dst: Path) -> None:
    """The graph in the first release's layout (version 1: ``attrs.weight = {"array": key}``, neuron parameters
    as ``{"ilif": {...}}`` and a ``kind``)."""
    header = {"format": "ilif-deploy-graph", "version": 1, "metadata": g.metadata,
              "edges": [list(e) for e in g.edges], "nodes": []}
    arrays = {}
    for name, n in g.nodes.items():
        entry, node_arrays = n.to_dict()
        attrs = {k: ({"ilif": {k2: v2 for k2, v2 in v.items() if k2 in ("lam", "v_th", "lam_u", "lam_i",
                                                                         "ciu_source")}} if k == "params" else v)
                 for k, v in entry["attrs"].items() if k != "family"}
        if n.op == "neuron":
            attrs["kind"] = "ilif"
        for k, a in node_arrays.items():
            attrs[k] = {"array": str(len(arrays))}
            arrays[str(len(arrays))] = a
        if n.op in ("conv2d", "linear") and "bias" not in node_arrays:
            attrs["bias"] = None
        header["nodes"].append({"op": n.op, "name": name, "shape": list(n.shape), "attrs": attrs})
    np.savez(dst, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)


def _device(path: Path, minor: int) -> bool:
    """A character device node with the numbers of /dev/null (3) or /dev/zero (5), made in a temp folder; False
    where that needs root and we are not."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        return True
    except PermissionError:
        return False


def _readable(reader: Callable[[Path], object]):
    def check(path: Path) -> bool:
        try:
            reader(path)
            return True
        except Exception:  # noqa: BLE001 - any failure to read back is the verdict
            return False
    return check


# ------------------------------------------------------------------ the cases
def boundary_cases(root: Path) -> List[tuple]:
    """[(folder, Case)]: each case's files are made in a folder of its own under ``root``."""
    seeds_dir = root / "seeds"
    seeds_dir.mkdir()
    graph = open_graph("example:digits_ilif")
    seeds = seed_files(seeds_dir, graph)
    cases: List[tuple] = []
    counter = iter(range(10 ** 6))

    def folder(*files, linked=()) -> Path:
        """A case's own folder holding copies of ``files`` (and hard links to the large ``linked`` ones)."""
        d = root / f"c{next(counter):03d}"
        d.mkdir()
        for f in files:
            (d / Path(f).name).write_bytes(Path(f).read_bytes())
        for f in linked:
            os.link(f, d / Path(f).name)
        return d

    def add(d, *args, **kw):
        cases.append((d, Case(*args, **kw)))

    model = seeds["model"]
    ex = ["--target", "ir", "-o", "o.ir.npz"]
    from ilif_deploy.architectures import build

    torch.manual_seed(0)  # an authors' checkpoint ({'net': state_dict}, as train.py saves it), 37 MB
    authors = seeds_dir / "vgg.pth"
    torch.save({"net": build("spiking_vgg11_bn", num_classes=10, in_channels=2).state_dict()}, authors)
    vgg = ["vgg.pth", "--arch", "spiking_vgg11_bn", "--num-classes", "10", "--in-channels", "2"]

    # ---- outputs: the destination is a regular file or a new one, never an input nor another output
    for minor, dev in ((3, "null"), (5, "zero")):
        d = folder(model)
        if _device(d / dev, minor):
            add(d, "outputs", f"-o onto a character device ({dev}'s numbers)", "export",
                ["seed.pt", "--target", "onnx", "-o", dev], "refuse", [dev, "character device"])
    d = folder(model)
    os.mkfifo(d / "out.fifo")
    add(d, "outputs", "-o onto a FIFO", "export", ["seed.pt", "--target", "nir", "-o", "out.fifo"], "refuse",
        ["out.fifo", "FIFO"])
    d = folder(model)
    os.mkfifo(d / "report.json")
    add(d, "outputs", "--json onto a FIFO (energy)", "energy", ["seed.pt", "--data", "none", "--rate", "0.1",
                                                                 "--json", "report.json"], "refuse", ["report.json"])
    d = folder(model)
    os.mkfifo(d / "sim.json")
    add(d, "outputs", "--json onto a FIFO (simulate)", "simulate", ["seed.pt", "--engine", "torch", "--json",
                                                                     "sim.json"], "refuse", ["sim.json"])
    d = folder(model)
    (d / "out.onnx").mkdir()
    add(d, "outputs", "-o naming a folder", "export", ["seed.pt", "--target", "onnx", "-o", "out.onnx"], "refuse",
        ["out.onnx", "folder"])
    d = folder(model)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "out.sock"))
    sock.close()
    add(d, "outputs", "-o onto a unix socket", "export", ["seed.pt", "-o", "out.sock", "--target", "ir"], "refuse",
        ["out.sock", "socket"])
    d = folder(model)
    add(d, "outputs", "-o equal to the model", "export", ["seed.pt", "--target", "onnx", "-o", "seed.pt"], "refuse",
        ["seed.pt"])
    d = folder(model, seeds["npz"])
    add(d, "outputs", "--json equal to --data", "energy", ["seed.pt", "--data", "seed.npz", "--json", "seed.npz"],
        "refuse", ["seed.npz"])
    d = folder(model)
    add(d, "outputs", "--csv equal to the model", "energy", ["seed.pt", "--data", "digits", "--samples", "4",
                                                              "--csv", "seed.pt"], "refuse", ["seed.pt"])
    d = folder(model, seeds["ir"])
    add(d, "outputs", "--json equal to the --compare model", "energy",
        ["seed.pt", "--compare", "seed.ir.npz", "--data", "digits", "--samples", "4", "--json", "seed.ir.npz"],
        "refuse", ["seed.ir.npz"])
    d = folder(model)
    add(d, "outputs", "-o and --json naming one file", "export", ["seed.pt", "--target", "nir", "-o", "o.nir",
                                                                   "--json", "o.nir"], "refuse", ["o.nir"])
    d = folder(model)
    add(d, "outputs", "--html and --markdown naming one file", "energy",
        ["seed.pt", "--data", "none", "--rate", "0.1", "--html", "r.txt", "--markdown", "./r.txt"], "refuse",
        ["r.txt"])
    d = folder(model)
    os.link(d / "seed.pt", d / "hard.json")
    add(d, "outputs", "--json a hard link to the model", "energy", ["seed.pt", "--data", "none", "--rate", "0.1",
                                                                     "--json", "hard.json"], "refuse",
        ["hard.json"])
    d = folder(model)
    os.symlink("seed.pt", d / "link.onnx")
    add(d, "outputs", "-o a symlink to the model", "export", ["seed.pt", "--target", "onnx", "-o", "link.onnx"],
        "refuse", ["link.onnx"])
    d = folder(seeds["nir"])
    add(d, "outputs", "NIR read and written as NIR without -o", "export", ["seed.nir", "--target", "nir"], "refuse",
        ["seed.nir"])
    d = folder(seeds["ir"])
    add(d, "outputs", "graph file re-exported as a graph without -o", "export", ["seed.ir.npz", "--target", "ir"],
        "refuse", ["seed.ir.npz"])
    d = folder(model)
    (d / ".ilif-deploy-tmp-notes").mkdir()
    (d / ".ilif-deploy-tmp-notes" / "mine.txt").write_text("a user's folder named like our temp folders")
    (d / ".o.ir.npz.x1y2.tmp").write_text("a user's file named like the first release's temp files")
    add(d, "outputs", "user files named like temp files beside the output (kept)", "export", ["seed.pt", *ex],
        "accept", writes=["o.ir.npz"], check=_readable(lambda p: open_graph(p / "o.ir.npz")))
    d = folder(model)
    add(d, "outputs", "-o in a folder that does not exist", "export", ["seed.pt", "--target", "ir", "-o",
                                                                        "nowhere/o.ir.npz"], "refuse", ["nowhere"])
    d = folder(model)
    add(d, "outputs", "-o with a 300-character file name", "export", ["seed.pt", "--target", "ir", "-o",
                                                                       "n" * 293 + ".ir.npz"], "refuse",
        ["300 characters"])
    d = folder(model)
    (d / "o.ir.npz").write_text("the user's previous result")
    add(d, "outputs", "--check-samples -1 (refused before the output is touched)", "export",
        ["seed.pt", *ex, "--check-samples", "-1"], "refuse", ["--check-samples"])

    # ---- reading: nothing is allocated beyond what the input is worth
    nir_weight = next(k for k in _h5_names(seeds["nir"]) if k.endswith("/weight"))
    d = folder()
    _h5_declared(seeds["nir"], d / "unknown.nir", "node/nodes/neuron1/extra", (1 << 30,), replace=False)
    add(d, "reading", "NIR with an unknown dataset declaring 4 GB, storing nothing", "export", ["unknown.nir", *ex],
        "refuse", ["unknown.nir", "declare"])
    d = folder()
    _h5_declared(seeds["nir"], d / "weight.nir", nir_weight, (1 << 15, 1 << 15), replace=True)
    add(d, "reading", "NIR weight declaring 4 GB, storing nothing", "export", ["weight.nir", *ex], "refuse",
        ["weight.nir", "declare"])
    d = folder()
    _h5_declared(seeds["nir"], d / "gzip.nir", "node/nodes/neuron1/extra", (1 << 27,), replace=False,
                 gzip_fill=True)
    add(d, "reading", "NIR with a gzip dataset inflating to 512 MB", "export", ["gzip.nir", *ex], "refuse",
        ["gzip.nir", "declare"])
    lava_mantissa = "layer/1/synapse/0/mantissa"
    d = folder()
    _h5_declared(seeds["lava"], d / "big.lava.h5", lava_mantissa, (1 << 15, 1 << 15), replace=True)
    add(d, "reading", ".lava.h5 synapse declaring 4 GB", "export", ["big.lava.h5", *ex], "refuse",
        ["big.lava.h5", "declare"])
    netx_weight = next(k for k in _h5_names(seeds["netx"]) if k.endswith("weight"))
    d = folder()
    _h5_declared(seeds["netx"], d / "big.net", netx_weight, (1 << 15, 1 << 15), replace=True)
    add(d, "reading", "netx weight declaring 4 GB", "export", ["big.net", *ex], "refuse", ["big.net", "declare"])
    d = folder()
    _h5_declared(seeds["netx"], d / "huge.net", "layer/0/extra", (1 << 40,), replace=False)
    add(d, "reading", "netx dataset declaring 4 TB", "export", ["huge.net", *ex], "refuse", ["huge.net", "declare"])
    d = folder()
    _zip_with_bomb(model, d / "bomb.pt", "seed/data/999", (1 << 28,))
    add(d, "reading", ".pt with a deflated member inflating to 1 GB", "export", ["bomb.pt", *ex], "refuse",
        ["bomb.pt", "declare"])
    d = folder()
    _zip_with_bomb(seeds["ir"], d / "bomb.ir.npz", "99.npy", (1 << 28,))
    add(d, "reading", ".ir.npz with a deflated array inflating to 1 GB", "export", ["bomb.ir.npz", *ex], "refuse",
        ["bomb.ir.npz", "declare"])
    d = folder(model)
    _zip_with_bomb(seeds["npz"], d / "bomb.npz", "x2.npy", (1 << 22, 1, 8, 8))
    add(d, "reading", "data .npz with a deflated array inflating to 1 GB", "energy", ["seed.pt", "--data", "bomb.npz",
                                                                                       "--x-key", "x2"], "refuse",
        ["bomb.npz", "declare"])
    d = folder(model)
    _npy_lying(d / "lie.npy", (10 ** 7, 1, 8, 8))
    add(d, "reading", ".npy whose header declares 2.5 GB and holds 64 bytes", "energy", ["seed.pt", "--data",
                                                                                          "lie.npy"], "refuse",
        ["lie.npy"])
    d = folder(model)
    np.savez(d / "ev.npz", x=np.array([1, 2]), y=np.array([1, 2]), t=np.array([0, 1]), p=np.array([0, 1]),
             sample=np.array([0, 10 ** 9]))
    add(d, "reading", "events naming recording 10^9 with 2 events", "energy", ["seed.pt", "--data", "ev.npz"],
        "refuse", ["ev.npz", "1,000,000,000"])
    d = folder(model)
    np.savez(d / "ev.npz", x=np.array([1, 10 ** 7]), y=np.array([1, 10 ** 7]), t=np.array([0, 1]),
             p=np.array([0, 1]))
    add(d, "reading", "events from a 10^7 x 10^7 sensor", "energy", ["seed.pt", "--data", "ev.npz"], "refuse",
        ["ev.npz"])
    d = folder(model)
    from PIL import Image

    (d / "imgs" / "cat").mkdir(parents=True)
    Image.new("L", (6000, 6000)).save(d / "imgs" / "cat" / "bomb.png")
    add(d, "reading", "a 36-Mpixel PNG of 40 KB in an image folder", "energy", ["seed.pt", "--data", "imgs"],
        "refuse", ["bomb.png", "6000x6000"])
    for what, flag, name in (("the model", None, "zero.pt"), ("--data", "--data", "zero.npy"),
                             ("--energy-model", "--energy-model", "zero.json")):
        d = folder(model)
        if _device(d / name, 5):
            argv = [name, *ex] if flag is None else ["seed.pt", flag, name, *(["--data", "none", "--rate", "0.1"]
                                                                            if flag == "--energy-model" else [])]
            add(d, "reading", f"a /dev/zero-like device as {what}", "export" if flag is None else "energy", argv,
                "refuse", [name])
    d = folder(linked=[authors])
    if _device(d / "zero.txt", 5):
        add(d, "reading", "a /dev/zero-like device as --args", "export", [*vgg, "--args", "zero.txt", *ex], "refuse",
            ["zero.txt"])
    for flag, value in (("--threads", "1000000"), ("--check-samples", "1000000"), ("--samples", str(10 ** 12)),
                        ("--input-shape", "1,100000,100000"), ("-T", str(10 ** 9)), ("--max-memory", "inf"),
                        ("--max-memory", "-1"), ("--dt", "nan"), ("--tau", "1e400")):
        d = folder(model)
        add(d, "reading", f"{flag} {value}", "export", ["seed.pt", *ex, flag, value], "refuse", [flag])
    d = folder(model)
    add(d, "reading", "--batch-size 10^9 (energy)", "energy", ["seed.pt", "--data", "digits", "--batch-size",
                                                                str(10 ** 9)], "refuse", ["--batch-size"])
    d = folder(model)
    add(d, "reading", "--samples 10^12 (simulate)", "simulate", ["seed.pt", "--engine", "torch", "--samples",
                                                                  str(10 ** 12)], "refuse", ["--samples"])
    d = folder(linked=[authors])
    add(d, "reading", "VGG-11 traced at 2x256x256 within --max-memory 1 (GB): shapes, not activations", "export",
        [*vgg, "--input-shape", "2,256,256", "--max-memory", "1", *ex], "accept", writes=["o.ir.npz"],
        check=_readable(lambda p: open_graph(p / "o.ir.npz")))
    d = folder(linked=[authors])
    add(d, "reading", "VGG-11 at 2x2048x2048 with --max-memory 1 (GB)", "energy",
        [*vgg, "--input-shape", "2,2048,2048", "--max-memory", "1", "--data", "none", "--rate", "0.1"], "refuse",
        ["--max-memory"])
    d = folder(model)
    (d / "seed.pt").write_bytes(model.read_bytes())
    m = torch.load(model, weights_only=True)
    m["arch_kwargs"]["channels"] = [30000, 30000]
    torch.save(m, d / "wide.pt")
    add(d, "reading", "a 45 KB model declaring 30,000-channel layers", "energy", ["wide.pt", "--data", "none",
                                                                                   "--rate", "0.1"], "refuse",
        ["wide.pt"])

    # ---- time: nothing waits forever or loops beyond what the input is worth
    d = folder()
    os.mkfifo(d / "model.pt")
    add(d, "time", "a FIFO as the model", "export", ["model.pt", *ex], "refuse", ["model.pt", "FIFO"])
    d = folder(model)
    os.mkfifo(d / "x.npy")
    add(d, "time", "a FIFO as --data x.npy", "energy", ["seed.pt", "--data", "x.npy"], "refuse", ["x.npy", "FIFO"])
    d = folder(model)
    os.mkfifo(d / "prices.json")
    add(d, "time", "a FIFO as --energy-model", "energy", ["seed.pt", "--energy-model", "prices.json", "--data", "none",
                                                           "--rate", "0.1"], "refuse", ["prices.json", "FIFO"])
    d = folder(linked=[authors])
    os.mkfifo(d / "args.txt")
    add(d, "time", "a FIFO as --args", "export", [*vgg, "--args", "args.txt", *ex], "refuse", ["args.txt", "FIFO"])
    d = folder()
    os.mkfifo(d / "seed.nir")
    add(d, "time", "a FIFO as a NIR model (simulate)", "simulate", ["seed.nir", "--engine", "torch"], "refuse",
        ["seed.nir", "FIFO"])
    d = folder()
    g = chain_graph((4,), [N.ReLU(f"r{i}", (4,)) for i in range(30000)], T=2)
    g.save(d / "long.ir.npz")
    add(d, "time", "a chain of 30,000 nodes (validated in O(edges))", "energy", ["long.ir.npz", "--data", "none",
                                                                                  "--rate", "0.1"], "accept")
    d = folder()
    nodes, edges, prev = {"input": nir.Input(np.array([4]))}, [], "input"
    for i in range(5000):
        nodes[f"a{i}"] = nir.Affine(np.eye(4, dtype=np.float32), np.zeros(4, np.float32))
        edges.append((prev, f"a{i}"))
        prev = f"a{i}"
    nodes["output"] = nir.Output(np.array([4]))
    nir.write(str(d / "long.nir"), nir.NIRGraph(nodes, edges + [(prev, "output")], type_check=False))
    add(d, "time", "a NIR chain of 5,000 nodes (read in O(edges))", "export", ["long.nir", *ex], "accept",
        writes=["o.ir.npz"], check=_readable(lambda p: open_graph(p / "o.ir.npz")))
    d = folder()
    _ir_edit(seeds["ir"], d / "pool.ir.npz",
             lambda h, a: _node(h, "pool")["attrs"].update(kernel=[10 ** 9, 10 ** 9], stride=[10 ** 9, 10 ** 9]))
    add(d, "time", "an average pool of kernel 10^9 x 10^9", "energy", ["pool.ir.npz", "--data", "none", "--rate",
                                                                        "0.1"], "refuse", ["pool.ir.npz", "pool"])

    # ---- values: parameters outside their domain are refused from every source
    d = folder()
    _ir_edit(seeds["ir"], d / "bn0.ir.npz", lambda h, a: (a[_node(h, "bn1")["arrays"]["bn_stats"]].__setitem__(
        (1, Ellipsis), 0.0), _node(h, "bn1")["attrs"].update(eps=0.0)))
    add(d, "values", "BatchNorm variance 0 with eps 0", "energy", ["bn0.ir.npz", "--data", "digits", "--samples", "8"],
        "refuse", ["bn0.ir.npz", "bn1"])
    d = folder()
    li = chain_graph((4,), [N.Linear("fc", (4,), weight=np.eye(4, dtype=np.float32)),
                            N.LeakyIntegrator("li", (4,), lam=0.5)], T=4)
    li.save(d / "li.ir.npz")
    _ir_edit(d / "li.ir.npz", d / "li.ir.npz", lambda h, a: _node(h, "li")["attrs"].update(lam=50.0))
    add(d, "values", "a leaky integrator with decay 50 per step", "energy", ["li.ir.npz", "--data", "none", "--rate",
                                                                             "0.5"], "refuse", ["li.ir.npz", "lam"])
    for key, value, names in (("lam", 1.7, ["lam"]), ("v_th", -1.0, ["v_th"]), ("lam_i", float("nan"), ["lam_i"]),
                              ("v_th", 0.0, ["v_th"])):
        d = folder()
        _ir_edit(seeds["ir"], d / "n.ir.npz",
                 lambda h, a, key=key, value=value: _node(h, "neuron1")["attrs"]["params"].update({key: value}))
        add(d, "values", f"neuron {key} = {value} in a graph file", "export", ["n.ir.npz", *ex], "refuse",
            ["n.ir.npz", *names])
    for key, value in (("timesteps", 2.7), ("timesteps", "4"), ("timesteps", 0)):
        d = folder()
        m = torch.load(model, weights_only=True)
        m["settings"][key] = value
        torch.save(m, d / "s.pt")
        add(d, "values", f"settings.{key} = {value!r} in a .pt", "export", ["s.pt", *ex], "refuse", ["s.pt", key])
    for key, value in (("tau", 0.5), ("v_th", -2.0), ("lam_i", 3.0), ("tau", float("nan"))):
        d = folder()
        m = torch.load(model, weights_only=True)
        m["arch_kwargs"]["neuron_kwargs"] = {key: value}
        torch.save(m, d / "p.pt")
        add(d, "values", f"neuron {key} = {value!r} in a .pt's arch_kwargs", "export", ["p.pt", *ex], "refuse",
            ["p.pt", key])
    for flag, value in (("--tau", "0.5"), ("--v-th", "0"), ("--lam-i", "1.5"), ("--v-th", "nan")):
        d = folder(model)
        add(d, "values", f"{flag} {value}", "export", ["seed.pt", *ex, flag, value], "refuse", [flag])
    d = folder()
    m = torch.load(model, weights_only=True)
    next(v for k, v in m["state_dict"].items() if k.endswith("weight"))[0] = float("inf")
    torch.save(m, d / "inf.pt")
    add(d, "values", "an infinite weight", "energy", ["inf.pt", "--data", "digits", "--samples", "8"], "refuse",
        ["non-finite"])
    d = folder()
    _ir_edit(seeds["ir"], d / "big.ir.npz", lambda h, a: a[_node(h, "conv1")["arrays"]["weight"]].__setitem__(
        Ellipsis, 3e38))
    add(d, "values", "finite weights whose sums overflow float32", "energy", ["big.ir.npz", "--data", "digits",
                                                                              "--samples", "8"], "refuse",
        ["conv1", "non-finite"])
    d = folder()
    _ir_edit(seeds["ir"], d / "nanb.ir.npz", lambda h, a: a[_node(h, "fc")["arrays"]["bias"]].__setitem__(0, np.nan))
    add(d, "values", "a NaN bias in the readout", "simulate", ["nanb.ir.npz", "--engine", "torch", "--samples", "4"],
        "refuse", ["nanb.ir.npz"])
    for name, prices in (("inf", {"name": "inf", "e_ac_pj": "Infinity", "e_mac_pj": 4.6}),
                         ("neg", {"name": "neg", "e_ac_pj": -0.9, "e_mac_pj": 4.6}),
                         ("nan", {"name": "nan", "e_ac_pj": 0.9, "e_mac_pj": "NaN"})):
        d = folder(model)
        (d / f"{name}.json").write_text(json.dumps(prices).replace('"Infinity"', "Infinity").replace('"NaN"', "NaN"))
        add(d, "values", f"an energy price of {name}", "energy", ["seed.pt", "--energy-model", f"{name}.json",
                                                                   "--data", "none", "--rate", "0.1"], "refuse",
            [f"{name}.json"])
    d = folder(model)
    add(d, "values", "--rate 1.5 (a firing probability)", "energy", ["seed.pt", "--data", "none", "--rate", "1.5"],
        "refuse", ["--rate"])
    d = folder()
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(d / "twice.pt", "w") as out:
        infos = src.infolist()
        for info in infos:
            out.writestr(info, src.read(info))
        victim = next(i for i in infos if "/data/" in i.filename)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile says "Duplicate name": that is the point
            out.writestr(victim, b"\0" * victim.file_size)
    add(d, "values", "a .pt holding one record twice", "export", ["twice.pt", *ex], "refuse", ["twice.pt", "twice"])

    # ---- messages: text from files is escaped; spreadsheet cells are not formulas
    d = folder()
    m = torch.load(model, weights_only=True)
    m["state_dict"]["layer\nerror: all is well\x1b[2J\x00"] = torch.zeros(1)
    torch.save(m, d / "key.pt")
    add(d, "messages", "a state_dict key with a newline, ESC and NUL", "export", ["key.pt", *ex], "refuse",
        ["key.pt", "\\n", "\\x1b"])
    d = folder()
    nodes = {"input": nir.Input(np.array([4])),
             "evil\nerror: forged\x1b[31m": nir.Affine(np.ones((5, 3), np.float32), np.zeros(5, np.float32)),
             "output": nir.Output(np.array([7]))}
    nir.write(str(d / "names.nir"), nir.NIRGraph(nodes, [("input", "evil\nerror: forged\x1b[31m"),
                                                        ("evil\nerror: forged\x1b[31m", "output")], type_check=False))
    add(d, "messages", "a NIR node name with a newline and ESC", "export", ["names.nir", *ex], "refuse",
        ["names.nir", "\\x1b"])
    d = folder()
    g = open_graph(seeds["ir"])
    formula = '=HYPERLINK("http://x","y")'
    g.nodes[formula] = g.nodes.pop("fc")
    g.nodes[formula].name = formula
    g.edges = [tuple(formula if v == "fc" else v for v in e) for e in g.edges]
    g.save(d / "f.ir.npz")
    add(d, "messages", "a node named as a spreadsheet formula, to --csv", "energy",
        ["f.ir.npz", "--data", "digits", "--samples", "4", "--csv", "r.csv"], "accept", writes=["r.csv"],
        check=lambda p: "'=HYPERLINK" in (p / "r.csv").read_text() and "\n=" not in (p / "r.csv").read_text()
        and ",=" not in (p / "r.csv").read_text())
    d = folder(model)
    (d / "bad\nerror: x\x1b[0m.npz").write_bytes(b"not a zip")
    add(d, "messages", "a data file name with a newline and ESC", "energy", ["seed.pt", "--data",
                                                                             "bad\nerror: x\x1b[0m.npz"], "refuse",
        ["bad\\nerror"])
    d = folder(seeds["lava"], seeds["nir"])
    add(d, "messages", "a .lava.h5 given as --energy-model", "energy", ["seed.nir", "--energy-model", "seed.lava.h5",
                                                                         "--data", "none", "--rate", "0.1"], "refuse",
        ["seed.lava.h5"])
    d = folder(seeds["lava"], model)
    add(d, "messages", "a .lava.h5 given as --data", "energy", ["seed.pt", "--data", "seed.lava.h5"], "refuse",
        ["seed.lava.h5"])
    d = folder(seeds["nir"])
    add(d, "messages", "a NIR file given as --args", "export", ["seed.nir", "--args", "seed.nir", *ex], "refuse",
        ["seed.nir"])

    # ---- compatibility: other versions of our formats
    d = folder()
    _first_release_graph(graph, d / "v1.ir.npz")
    add(d, "compatibility", "a graph file in the first release's layout", "simulate",
        ["v1.ir.npz", "--engine", "torch", "--samples", "16", "--json", "s.json"], "accept", writes=["s.json"],
        check=lambda p: json.loads((p / "s.json").read_text()).get("agreement", 0) >= 0)
    d = folder()
    _ir_edit(seeds["ir"], d / "v99.ir.npz", lambda h, a: h.update(version=99))
    add(d, "compatibility", "a graph file of a newer version", "export", ["v99.ir.npz", *ex], "refuse",
        ["v99.ir.npz", "99"])
    d = folder()
    _ir_edit(seeds["ir"], d / "fmt.ir.npz", lambda h, a: h.update(format="someone-elses-graph"))
    add(d, "compatibility", "an .npz graph of another format", "export", ["fmt.ir.npz", *ex], "refuse",
        ["fmt.ir.npz"])
    d = folder()
    with h5py.File(d / "v99.lava.h5", "w") as h, h5py.File(seeds["lava"], "r") as s:
        for k in s:
            s.copy(k, h)
        for k, v in s.attrs.items():
            h.attrs[k] = v
        h.attrs["version"] = 99
    add(d, "compatibility", "a .lava.h5 of a newer version", "export", ["v99.lava.h5", *ex], "refuse",
        ["v99.lava.h5"])
    return cases


def _h5_names(path: Path) -> List[str]:
    names: List[str] = []
    with h5py.File(path, "r") as h:
        h.visititems(lambda k, v: names.append(k) if isinstance(v, h5py.Dataset) else None)
    return names


# ------------------------------------------------------------------ signals
def signal_cases(root: Path):
    """A NIR export of the authors' ResNet-18 (about 4 s) onto a file that holds an earlier result, with SIGINT,
    SIGTERM or SIGHUP at moments from the interpreter's start-up to the final write: [(folder, Case, old, target)]."""
    out = []
    from ilif_deploy.architectures import build

    torch.manual_seed(0)
    ckpt = root / "r18.pth"
    torch.save({"net": build("spiking_resnet18", num_classes=10, in_channels=3).state_dict()}, ckpt)
    moments = (0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 2.5, 3.5, 4.5)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        for at in moments:
            d = root / f"sig{int(sig)}_{at}"
            d.mkdir()
            os.link(ckpt, d / "r18.pth")
            old = b"an earlier result"
            (d / "r.nir").write_bytes(old)
            out.append((d, Case("signals", f"{signal.Signals(sig).name} at {at:.3f} s", "export",
                                ["r18.pth", "--arch", "spiking_resnet18", "--target", "nir", "-o", "r.nir",
                                 "--check-samples", "0"], "accept", signal_at=(at, sig)), old, d / "r.nir"))
    return out


def nir_valid(path: Path) -> bool:
    return _readable(lambda p: nir.read(str(p)))(path)
