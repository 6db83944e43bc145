"""The hostile-input census: every named case of the hostile-input issue plus a seeded corruption corpus of
every file kind we read, each run through a CLI, counted by verdict.

    .venv/bin/python benchmarks/hostile_census.py [--verbose]

Verdicts (the issue's categories): ``clear error`` (exit 2, one line naming the file, flag or field),
``one-liner naming nothing`` (exit 2, one line, none of the names it should carry), ``traceback``,
``crash`` (killed by a signal), ``accepted bad input`` (exit 0 for input that should be refused),
``silent wrong result`` (exit 0 where an overflow should have been counted and was not), ``counted``
(exit 0, the overflow counted and warned of) and, for corruption that left a valid file, ``valid run``.
Cases that need a signal or a full disk run in a child process; the rest run the CLIs in-process.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import h5py
import nir
import numpy as np
import torch

from ilif_deploy.cli import energy, export, simulate
from ilif_deploy.converters import open_graph
from ilif_deploy.converters.onnx import export_graph as onnx_export
from ilif_deploy.examples import model_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo import (NEURON1, SEED_KINDS, conv_wrap_net, corruptions, edited_copy, file_size_limit,  # noqa: E402
                 hdf5_trick, metadata_lam, mismatched_nir, scaled, seed_files, wrap_net,
                 zeroed_conv_nir)  # the tests' own inputs

CLIS = {"export": export.main, "energy": energy.main, "simulate": simulate.main}


def run_in_process(cli: str, argv):
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = CLIS[cli](argv)
    except BaseException as e:  # noqa: BLE001 - a traceback is a verdict here
        return "traceback", f"{type(e).__name__}: {e}"[:200], ""
    lines = [line for line in err.getvalue().strip().splitlines() if line and not line.startswith("warning:")]
    warned = [line for line in err.getvalue().splitlines() if line.startswith("warning:")]
    return rc, lines, "\n".join(warned) + out.getvalue()


def run_child(argv, preexec=None):
    p = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=preexec)
    out, err = p.communicate(timeout=600)
    if "Traceback" in err:
        return "traceback", err.strip().splitlines()[-1:], out
    if p.returncode < 0 or p.returncode == 139:
        return "crash", [f"signal {-p.returncode}"], out
    return p.returncode, [line for line in err.strip().splitlines() if line and not line.startswith("warning:")], out


def verdict(result, expect: str, names, counted=None) -> str:
    rc, lines, out = result
    if rc in ("traceback", "crash"):
        return rc
    if rc == 2:
        if len(lines) == 1 and all(n in lines[0] for n in names):
            return "clear error"
        return "one-liner naming nothing" if len(lines) == 1 else "traceback"
    if rc != 0:
        return "traceback"
    if expect == "count":
        return "counted" if counted and counted(out) else "silent wrong result"
    return "valid run" if expect in ("either", "accept") else "accepted bad input"


def named_cases(d: Path, seeds: dict):
    """(category in the issue, case, how to run it, expected, names the line must carry[, counted check])."""
    base = torch.load(model_path("digits_ilif"), weights_only=True)

    def model_edit(name, edit):
        m = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        edit(m)
        torch.save(m, d / f"{name}.pt")
        return str(d / f"{name}.pt")

    def ir_out():
        return ["--target", "ir", "-o", str(d / "o.ir.npz")]

    def nir_edit(name, edit):  # our NIR file with node neuron1 edited by another tool
        return str(edited_copy(seeds["nir"], d / f"{name}.nir", edit, NEURON1))

    def foreign_nir(name, node):
        nodes = {"input": nir.Input(np.array([2, 8, 8])), "0": node, "output": nir.Output(np.array([2, 6, 6]))}
        nir.write(str(d / f"{name}.nir"), nir.NIRGraph(nodes, [("input", "0"), ("0", "output")], type_check=False))
        return str(d / f"{name}.nir")

    secret = d / "secret.bin"
    secret.write_bytes(b"SECRET!!" * 128)

    def outside(trick):  # our NIR file reaching outside itself
        return str(edited_copy(seeds["nir"], d / f"{trick}.nir",
                               lambda h: hdf5_trick(h, trick, secret, d / "other.h5")))

    def wraps_counted(out):
        return "wrapped synaptic sums 0" not in out and "wrapped synaptic sums" in out

    def saturated_counted(out):
        return "saturated inputs 0" not in out and "saturated inputs" in out

    wrap_ir, conv_ir = d / "wrap.ir.npz", d / "conv.ir.npz"
    wrap_net().save(wrap_ir)
    conv_wrap_net().save(conv_ir)
    np.save(d / "big8.npy", np.full((2, 8), 16384.0, np.float32))
    np.save(d / "big_conv.npy", np.full((2, 1, 4, 4), 100.0, np.float32))
    np.save(d / "beyond.npy", np.full((2, 8), 1e6, np.float32))
    np.save(d / "nan8.npy", np.full((2, 8), np.nan, np.float32))
    x = np.random.default_rng(0).random((12, 1, 8, 8)).astype(np.float32)
    x_nan = x.copy()
    x_nan[3, 0, 1, 2] = np.nan
    np.save(d / "nan.npy", x_nan)
    np.savez(d / "long_y.npz", x=x, y=np.arange(20) % 10)
    np.savez(d / "x0d.npz", x=np.float32(3.0))
    np.savez(d / "xstr.npz", x=np.array(["a", "b"]))
    g = open_graph("example:digits_ilif")
    (d / "g.onnx").write_bytes(b"")
    onnx_export(g, d / "g.onnx")
    (d / "random.pt").write_bytes(bytes(random.Random(1).randrange(256) for _ in range(4096)))
    bad_stride, bad_dilation = (str(zeroed_conv_nir(d / f"{k}0.nir", k)) for k in ("stride", "dilation"))
    zero_tau = foreign_nir("tau0", nir.LIF(tau=np.zeros(1, np.float32), r=np.ones(1, np.float32),
                                           v_leak=np.zeros(1, np.float32), v_threshold=np.ones(1, np.float32),
                                           v_reset=np.zeros(1, np.float32)))
    nested = {"input": nir.Input(np.array([4])), "output": nir.Output(np.array([4]))}
    inner = nir.NIRGraph({"input": nir.Input(np.array([4])), "output": nir.Output(np.array([4]))},
                         [("input", "output")], type_check=False)
    for _ in range(3000):
        inner = nir.NIRGraph({"input": nir.Input(np.array([4])), "g": inner, "output": nir.Output(np.array([4]))},
                             [("input", "g"), ("g", "output")], type_check=False)
    nested["g"] = inner
    deep = d / "deep.nir"
    with contextlib.suppress(RecursionError):  # nir.write itself may not get that deep; then a shallower file
        nir.write(str(deep), nir.NIRGraph(nested, [("input", "g"), ("g", "output")], type_check=False))
    mismatch = mismatched_nir(d / "mismatch.nir")
    huge_nir = d / "huge.nir"
    n = 1000
    nodes = {"input": nir.Input(np.array([n, n, n])),
             "0": nir.LIF(tau=np.full(1, 0.01, np.float32), r=np.ones(1, np.float32), v_leak=np.zeros(1, np.float32),
                          v_threshold=np.ones(1, np.float32), v_reset=np.zeros(1, np.float32)),
             "output": nir.Output(np.array([n, n, n]))}
    nir.write(str(huge_nir), nir.NIRGraph(nodes, [("input", "0"), ("0", "output")], type_check=False))
    nan_th = nir_edit("nan_threshold", lambda g: g["nodes/spike/threshold"].__setitem__(Ellipsis, np.nan)
                      if "nodes/spike/threshold" in g else None)
    ro = d / "readonly"
    ro.mkdir()
    os.chmod(ro, 0o555)
    ex = "example:digits_ilif"
    sim = ["--engine", "torch", "--mode", "fixed", "--no-progress"]
    return [
        ("fixed-point overflow", "Dense int32 wrap (Lava engine)", ("simulate", [str(wrap_ir), "--data",
         str(d / "big8.npy"), "--engine", "lava", "--mode", "fixed", "--no-progress"]), "count", [], wraps_counted),
        ("fixed-point overflow", "Dense int32 wrap (torch engine)", ("simulate", [str(wrap_ir), "--data",
         str(d / "big8.npy"), *sim]), "count", [], wraps_counted),
        ("fixed-point overflow", "Conv 24-bit wrap (Lava engine)", ("simulate", [str(conv_ir), "--data",
         str(d / "big_conv.npy"), "--engine", "lava", "--mode", "fixed", "--no-progress"]), "count", [],
         wraps_counted),
        ("fixed-point overflow", "input beyond the input format", ("simulate", [str(wrap_ir), "--data",
         str(d / "beyond.npy"), *sim]), "count", [], saturated_counted),
        ("fixed-point overflow", "NaN input", ("simulate", [str(wrap_ir), "--data", str(d / "nan8.npy"), *sim]),
         "refuse", ["nan8.npy", "nan"]),
        ("outside files", "HDF5 external storage in a NIR", ("export", [outside("external"), *ir_out()]),
         "refuse", ["external.nir", "refused"]),
        ("outside files", "HDF5 external link in a NIR", ("export", [outside("link"), *ir_out()]),
         "refuse", ["link.nir", "refused"]),
        ("outside files", "HDF5 virtual dataset in a NIR", ("export", [outside("virtual"), *ir_out()]),
         "refuse", ["virtual.nir", "refused"]),
        ("own NIR edited", "v/tau x 10", ("export", [nir_edit("tau10", scaled("nodes/v/tau", 10)), *ir_out()]),
         "refuse", ["tau10.nir", "v/tau"]),
        ("own NIR edited", "mpiu/scale zeroed", ("export", [nir_edit("mpiu0", scaled("nodes/mpiu/scale", 0)),
         *ir_out()]), "refuse", ["mpiu0.nir", "mpiu/scale"]),
        ("own NIR edited", "lam edited in the metadata", ("export", [nir_edit("lam", metadata_lam), *ir_out()]),
         "refuse", ["lam.nir", "neuron1"]),
        ("memory", "channels=[20000, 20000] in a 45 KB model", ("export", [model_edit("huge", lambda m: m[
         "arch_kwargs"].update(channels=[20000, 20000])), *ir_out()]), "refuse", ["huge.pt"]),
        ("memory", "NIR declaring 10^9 neurons, --data none", ("energy", [str(huge_nir), "--data", "none", "--rate",
         "0.1", "-T", "2", "--max-memory", "4"]), "refuse", ["huge.nir", "--max-memory"]),
        ("memory", "-T 1000000", ("export", [ex, "-T", "1000000", "--max-memory", "8", *ir_out()]), "refuse",
         ["T=1000000"]),
        ("traceback", "truncated .ir.npz", ("export", [_write(d / "trunc.ir.npz", seeds["ir"].read_bytes()[:300]),
         *ir_out()]), "refuse", ["trunc.ir.npz"]),
        ("traceback", "zero-byte .ir.npz", ("export", [_write(d / "zero.ir.npz", b""), *ir_out()]), "refuse",
         ["zero.ir.npz"]),
        ("traceback", "CRC-corrupted .ir.npz", ("export", [_write(d / "crc.ir.npz", _flip_in_zip(
         seeds["ir"].read_bytes())), *ir_out()]), "refuse", ["crc.ir.npz"]),
        ("traceback", "bit flip in a .lava.h5 chunk", ("export", [_write(d / "flip.lava.h5", _flip_chunk(
         seeds["lava"])), *ir_out()]), "refuse", ["flip.lava.h5"]),
        ("traceback", "arch_kwargs={'bogus': 1}", ("export", [model_edit("bogus", lambda m: m["arch_kwargs"].update(
         bogus=1)), *ir_out()]), "refuse", ["bogus.pt", "bogus"]),
        ("traceback", "settings=None", ("export", [model_edit("settings", lambda m: m.update(settings=None)),
         *ir_out()]), "refuse", ["settings.pt", "settings"]),
        ("traceback", "version='2'", ("export", [model_edit("version", lambda m: m.update(version="2")), *ir_out()]),
         "refuse", ["version.pt", "version"]),
        ("traceback", "unknown attrs key in .ir.npz", ("export", [_edit_ir(seeds["ir"], d / "attrs.ir.npz"),
         *ir_out()]), "refuse", ["attrs.ir.npz", "bogus_attr"]),
        ("traceback", "stride=0 in a NIR", ("export", [bad_stride, *ir_out()]), "refuse", ["stride0.nir", "stride"]),
        ("traceback", "dilation=0 in a NIR", ("export", [bad_dilation, *ir_out()]), "refuse",
         ["dilation0.nir", "dilation"]),
        ("traceback", "tau=0 in a NIR", ("export", [zero_tau, *ir_out()]), "refuse", ["tau0.nir", "tau"]),
        ("traceback", "3,000-level nested NIR", ("export", [str(deep), *ir_out()]), "refuse", ["deep.nir"]),
        ("traceback", "--num-classes -1", ("export", [ex, "--num-classes", "-1", *ir_out()]), "refuse",
         ["--num-classes"]),
        ("traceback", "wrong --input-shape", ("export", [ex, "--input-shape", "3,9,9", *ir_out()]), "refuse",
         ["3, 9, 9"]),
        ("traceback", "0-d x in an .npz", ("energy", [ex, "--data", str(d / "x0d.npz"), "--no-progress"]), "refuse",
         ["x0d.npz"]),
        ("traceback", "string x in an .npz", ("energy", [ex, "--data", str(d / "xstr.npz"), "--no-progress"]),
         "refuse", ["xstr.npz"]),
        ("traceback", "read-only output folder", ("export", [ex, "--target", "ir", "-o", str(ro / "o.ir.npz")]),
         "refuse", [str(ro)]) if os.geteuid() != 0 else None,
        ("traceback", "-o naming a folder", ("export", [ex, "--target", "ir", "-o", str(d)]), "refuse", [str(d)]),
        ("traceback", "legal 255-character file name (must work)", ("export", [ex, "--target", "ir", "-o",
         str(d / ("n" * 248 + ".ir.npz"))]), "accept", []),
        ("vague one-liner", "random bytes as a model", ("export", [str(d / "random.pt"), *ir_out()]), "refuse",
         ["random.pt"]),
        ("vague one-liner", "an ONNX file as a model", ("export", [str(d / "g.onnx"), *ir_out()]), "refuse",
         ["g.onnx", "ONNX"]),
        ("vague one-liner", "NaN threshold in a NIR", ("export", [nan_th, *ir_out()]), "refuse", ["nan_threshold.nir"]),
        ("accepted silently", "NaN pixel in the data", ("energy", [ex, "--data", str(d / "nan.npy"), "--no-progress"]),
         "refuse", ["nan.npy", "nan"]),
        ("accepted silently", "y longer than x", ("energy", [ex, "--data", str(d / "long_y.npz"), "--no-progress"]),
         "refuse", ["long_y.npz"]),
        ("accepted silently", "-T 0", ("export", [ex, "-T", "0", *ir_out()]), "refuse", ["-T"]),
        ("accepted silently", "--batch 0 (energy)", ("energy", [ex, "--data", "digits", "--batch", "0",
         "--no-progress"]), "refuse", ["--batch"]),
        ("accepted silently", "--batch 0 (simulate)", ("simulate", [ex, "--batch", "0", *sim]), "refuse", ["--batch"]),
        ("accepted silently", "settings.encoding='morse'", ("export", [model_edit("morse", lambda m: m[
         "settings"].update(encoding="morse")), *ir_out()]), "refuse", ["morse.pt", "morse"]),
        ("accepted silently", "NIR Affine of 4 into a LIF of 7", ("export", [str(mismatch), *ir_out()]), "refuse",
         ["mismatch.nir"]),
        ("outputs", "full disk, NIR export", ("child", ["ilif_deploy.cli.export", ex, "--target", "nir", "-o",
         str(d / "full.nir"), "--check-samples", "0"], file_size_limit(20_000)), "refuse", ["full.nir"]),
        ("outputs", "full disk, Lava export", ("child", ["ilif_deploy.cli.export", ex, "--target", "lava", "-o",
         str(d / "full.lava.h5"), "--check-samples", "0"], file_size_limit(20_000)), "refuse", ["full.lava.h5"]),
    ]


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _flip_in_zip(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0x10  # inside a member's data: its CRC no longer matches
    return bytes(b)


def _flip_chunk(path: Path) -> bytes:
    with h5py.File(path, "r") as f:
        ds = f["layer/1/synapse/0/mantissa"]
        offset = ds.id.get_chunk_info(0).byte_offset
    b = bytearray(path.read_bytes())
    b[offset + 5] ^= 0xFF
    return bytes(b)


def _edit_ir(src: Path, dst: Path) -> str:
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    header["nodes"][1].setdefault("attrs", {})["bogus_attr"] = 1
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(dst, **arrays)
    return str(dst)


def boundary_rows(verbose: bool):
    """The boundary families (benchmarks/hostile_boundaries.py), each case a child process: rows, and the
    largest peak RSS of a case whose inputs are under 1 MB."""
    from hostile_boundaries import SMALL_INPUT, boundary_cases, judge, judge_signal, nir_valid, signal_cases

    rows, peak = [], (0, "")
    with tempfile.TemporaryDirectory() as tmp:
        cases = boundary_cases(Path(tmp))
        print(f"{len(cases)} boundary cases, each a child process", file=sys.stderr)
        for d, case in cases:
            o = judge(case, d)
            rows.append((case.family, case.what, o.verdict, o.first))
            if o.input_bytes < SMALL_INPUT and o.rss > peak[0]:
                peak = (o.rss, case.what)
            if verbose:
                print(f"  {o.seconds:5.1f} s {o.rss / 2**20:6.0f} MB  {o.verdict:18s} {case.what}", file=sys.stderr)
        for d, case, old, target in signal_cases(Path(tmp)):
            o = judge_signal(case, d, old, target, nir_valid)
            rows.append((case.family, case.what, o.verdict, o.first))
    return rows, peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verbose", action="store_true", help="print every case and its first line")
    ap.add_argument("--only", choices=("named", "boundaries"), help="run one part of the census")
    args = ap.parse_args()
    by_category, by_verdict, rows = {}, Counter(), []
    peak = (0, "")
    if args.only != "named":
        rows, peak = boundary_rows(args.verbose)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        seeds = seed_files(d, open_graph("example:digits_ilif"))
        for case in (named_cases(d, seeds) if args.only != "boundaries" else []):
            if case is None:
                continue
            category, what, (cli, argv, *extra), expect, names, *counted = case
            result = run_child(argv, preexec=extra[0]) if cli == "child" else run_in_process(cli, argv)
            v = verdict(result, expect, names, counted[0] if counted else None)
            rows.append((category, what, v, result[1]))
        for kind in (SEED_KINDS if args.only != "boundaries" else ()):
            for i, (what, blob) in enumerate(corruptions(seeds[kind].read_bytes(), random.Random(kind))):
                f = d / f"case{i}{seeds[kind].name}"
                f.write_bytes(blob)
                if kind in ("npz", "npy"):
                    result = run_in_process("energy", ["example:digits_ilif", "--data", str(f), "--no-progress"])
                else:
                    result = run_in_process("export", [str(f), "--target", "ir", "-o", str(d / "fz.ir.npz")])
                rows.append((f"corrupted {kind}", what, verdict(result, "either", [f.name]), result[1]))
        left = [p.name for p in d.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
    for category, what, v, first in rows:
        by_verdict[v] += 1
        by_category.setdefault(category, Counter())[v] += 1
        if args.verbose or v not in ("clear error", "counted", "valid run"):
            print(f"{v:26s} {category:22s} {what}: {(first[0] if isinstance(first, list) and first else first)!s:.150}")
    print(f"\n{len(rows)} cases")
    for v, n in by_verdict.most_common():
        print(f"  {v:26s} {n}")
    print("by category:")
    for category, c in by_category.items():
        print(f"  {category:22s} " + ", ".join(f"{v} {n}" for v, n in c.most_common()))
    print(f"temp files left beside destinations: {len(left)}")
    if peak[0]:
        print(f"largest peak RSS of a case with inputs under 1 MB: {peak[0] / 2**20:,.0f} MB ({peak[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
