"""Never lose a user's file, never allocate beyond what an input is worth: the output gate, the bounded reader,
the parameter and flag ranges, the non-finite stop, escaped names and the graph file's versions -- each rule
through the command-line tools (device nodes and FIFOs are made in a temp folder, never a real /dev path)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile

import h5py
import numpy as np
import pytest
import torch

from ilif_deploy.cli import energy, export
from ilif_deploy.examples import model_path


def _cli(main, argv, capsys):
    """Exit code and stderr's lines, progress bars left out."""
    rc = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if line.strip() and "%|" not in line]
    return rc, err


@pytest.fixture
def work(tmp_path):
    shutil.copy(model_path("digits_ilif"), tmp_path / "m.pt")
    return tmp_path


def _device(path):
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers, in a temp folder
    return path


# ------------------------------------------------------------------ the output gate
def test_outputs_onto_devices_fifos_and_folders_are_refused_and_leave_them_as_they_were(work, capsys):
    if os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root (CI runs as root)")
    dev, fifo = _device(work / "null"), work / "pipe"
    os.mkfifo(fifo)
    (work / "dir.onnx").mkdir()
    for target in (dev, fifo, work / "dir.onnx"):
        rc, err = _cli(export.main, [work / "m.pt", "--target", "onnx", "-o", target], capsys)
        assert rc == 2 and len(err) == 1 and str(target) in err[0], err
    assert stat.S_ISCHR(os.stat(dev).st_mode) and stat.S_ISFIFO(os.stat(fifo).st_mode)
    rc, err = _cli(energy.main, [work / "m.pt", "--json", fifo], capsys)
    assert rc == 2 and "is a FIFO" in err[0] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_an_output_is_never_an_input_nor_another_output(work, capsys):
    before = (work / "m.pt").read_bytes()
    for argv, needle in [([work / "m.pt", "--target", "onnx", "-o", work / "m.pt"],
                          "(the -o output of this command) is the same file as the model file"),
                         ([work / "m.pt", "--target", "onnx", "-o", work / "a.onnx", "--json", work / "a.onnx"],
                          "named by -o and by --json")]:
        rc, err = _cli(export.main, argv, capsys)
        assert rc == 2 and len(err) == 1 and needle in err[0], err
    os.link(work / "m.pt", work / "hardlink.json")  # the same file under another name
    rc, err = _cli(energy.main, [work / "m.pt", "--json", work / "hardlink.json"], capsys)
    assert rc == 2 and "hardlink.json" in err[0]
    np.savez(work / "data.npz", x=np.zeros((2, 1, 8, 8), np.float32))
    rc, err = _cli(energy.main, [work / "m.pt", "--data", work / "data.npz", "--json", work / "data.npz"], capsys)
    assert rc == 2 and "data.npz" in err[0]
    assert (work / "m.pt").read_bytes() == before and (work / "data.npz").is_file()
    # without -o the default name of a NIR file read as NIR is the input itself: refused, not overwritten
    assert _cli(export.main, [work / "m.pt", "--target", "nir", "-o", work / "g.nir"], capsys)[0] == 0
    nir_bytes = (work / "g.nir").read_bytes()
    cwd = os.getcwd()
    try:
        os.chdir(work)
        rc, err = _cli(export.main, ["g.nir", "--target", "nir"], capsys)
    finally:
        os.chdir(cwd)
    assert rc == 2 and "model file of this command" in err[0] and (work / "g.nir").read_bytes() == nir_bytes


def test_temp_files_are_known_by_their_marker_not_their_name(work, capsys):
    from ilif_deploy.atomic import TEMP_MARKER, TEMP_PREFIX, atomic_path

    lookalike = work / f"{TEMP_PREFIX}mine"  # a user's folder named like ours, without our marker
    lookalike.mkdir()
    (lookalike / "notes.txt").write_text("keep me")
    stale = work / f"{TEMP_PREFIX}dead"  # a killed write's folder: marker with a PID that is gone
    stale.mkdir()
    (stale / TEMP_MARKER).write_text("999999999")
    with atomic_path(work / "out.txt") as tmp:
        tmp.write_text("done")
    assert (work / "out.txt").read_text() == "done" and (lookalike / "notes.txt").read_text() == "keep me"
    assert not stale.exists() and [p.name for p in work.glob(f"{TEMP_PREFIX}*")] == [lookalike.name]


def test_sighup_ends_a_run_like_sigterm_leaving_no_temp_file(work):
    import signal
    import subprocess
    import sys

    # a run held inside its write: SIGHUP must end it with the temp folder removed and the old output intact
    script = (f"import os, sys, time, ilif_deploy.atomic as a\n"
              f"from ilif_deploy.cli.common import run_cli\n"
              f"def go():\n"
              f"    with a.atomic_path({str(work / 'o.txt')!r}) as t:\n"
              f"        t.write_text('new'); print('writing', flush=True); time.sleep(30)\n"
              f"    return 0\n"
              f"sys.exit(run_cli(go))\n")
    (work / "o.txt").write_text("old")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGHUP)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.strip() == "terminated"
    assert (work / "o.txt").read_text() == "old" and not list(work.glob(".ilif-deploy-tmp-*"))


# ------------------------------------------------------------------ the bounded reader
def test_fifos_and_devices_are_refused_as_inputs_before_they_are_opened(work, capsys):
    fifo = work / "model.pt"
    os.mkfifo(fifo)  # opening it would block forever
    rc, err = _cli(export.main, [fifo, "--target", "ir", "-o", work / "g.ir.npz"], capsys)
    assert rc == 2 and "is a FIFO (named pipe)" in err[0]
    rc, err = _cli(energy.main, [model_path("digits_ilif"), "--data", fifo], capsys)
    assert rc == 2 and "is a FIFO" in err[0]
    rc, err = _cli(energy.main, [model_path("digits_ilif"), "--energy-model", fifo.with_suffix(".json")], capsys)
    assert rc == 2  # not there at all: named
    os.mkfifo(work / "prices.json")
    rc, err = _cli(energy.main, [model_path("digits_ilif"), "--energy-model", work / "prices.json", "--data", "none",
                                 "--rate", "0.1"], capsys)
    assert rc == 2 and "is a FIFO" in err[0]


def test_declared_sizes_beyond_what_a_file_is_worth_are_refused_before_reading(work, capsys):
    from ilif_deploy.bounded import worth

    # HDF5: a dataset that declares 4 GB and stores nothing (never written: no chunk allocated)
    export.main([str(model_path("digits_ilif")), "--target", "nir", "-o", str(work / "g.nir")])
    capsys.readouterr()
    with h5py.File(work / "g.nir", "r+") as f:
        f.create_dataset("node/nodes/neuron1/huge", shape=(1 << 30,), dtype="float32", chunks=(1 << 16,))
    assert os.path.getsize(work / "g.nir") < 1 << 20
    rc, err = _cli(export.main, [work / "g.nir", "--target", "ir", "-o", work / "o.ir.npz"], capsys)
    assert rc == 2 and "declare" in err[0] and "/node/nodes/neuron1/huge" in err[0], err
    # zip: a member that declares more than the archive is worth; a record that is in it twice
    big = work / "big.npz"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(np.lib.format.header_data_from_array_1_0(np.zeros(1)).__repr__().encode()[:0])
            for _ in range(worth(model_path("digits_ilif")) // (1 << 24) + 64):
                f.write(b"\0" * (1 << 24))
    assert os.path.getsize(big) < 2 << 20
    rc, err = _cli(energy.main, [model_path("digits_ilif"), "--data", big], capsys)
    assert rc == 2 and "its zip members declare" in err[0], err
    dup = work / "dup.pt"
    with zipfile.ZipFile(model_path("digits_ilif")) as src, zipfile.ZipFile(dup, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile writes it, and says so
            out.writestr(src.infolist()[0], src.read(src.infolist()[0]))
    rc, err = _cli(export.main, [dup, "--target", "ir", "-o", work / "o.ir.npz"], capsys)
    assert rc == 2 and "is in the archive twice" in err[0], err


def test_images_events_and_sensors_are_bounded_before_allocating(work, capsys):
    from PIL import Image

    from ilif_deploy.data import open_data
    from ilif_deploy.errors import DataError

    (work / "imgs" / "cat").mkdir(parents=True)
    Image.new("L", (5000, 5000)).save(work / "imgs" / "cat" / "bomb.png")  # 25 M pixels, a few KB on disk
    with pytest.raises(DataError, match="an image of 5000x5000 pixels"):
        ds = open_data(str(work / "imgs"), input_shape=(1, 8, 8))
        next(ds.batches(1, 1))
    ev = work / "ev.npz"
    np.savez(ev, x=np.array([1, 2]), y=np.array([1, 2]), t=np.array([0, 1]), p=np.array([0, 1]),
             sample=np.array([0, 10 ** 9]))
    with pytest.raises(DataError, match="reaches recording 1,000,000,000 with 2 events"):
        open_data(str(ev), input_shape=(2, 8, 8), timesteps=2)
    np.savez(ev, x=np.array([1, 10 ** 6]), y=np.array([1, 10 ** 6]), t=np.array([0, 1]), p=np.array([0, 1]))
    with pytest.raises(DataError, match="sensor makes frames of more than"):
        open_data(str(ev), input_shape=(2, 8, 8), timesteps=2)


def test_numeric_flags_have_ranges_and_file_settings_whole_numbers(work, capsys):
    for argv, needle in [(["--check-samples", "-1"], "--check-samples: -1 is outside [0, 10000]"),
                         (["--threads", "1000000"], "--threads: 1000000 is outside"),
                         (["-T", "2.7"], "expected an integer, got '2.7'"),
                         (["--tau", "0.5"], "--tau: 0.5 is outside [1,"), (["--max-memory", "nan"], "outside"),
                         (["--input-shape", "3,0,9"], "0 is outside [1,")]:
        rc, err = _cli(export.main, [work / "m.pt", "--target", "ir", "-o", work / "o.ir.npz", *argv], capsys)
        assert rc == 2 and len(err) == 1 and needle in err[0], (argv, err)
        assert not (work / "o.ir.npz").exists()  # refused before anything is written
    m = torch.load(work / "m.pt", weights_only=True)
    m["settings"]["timesteps"] = 2.7
    torch.save(m, work / "frac.pt")
    rc, err = _cli(export.main, [work / "frac.pt", "--target", "ir", "-o", work / "o.ir.npz"], capsys)
    assert rc == 2 and "settings.timesteps must be a whole number of steps" in err[0]


# ------------------------------------------------------------------ values, names, versions
def test_non_finite_activations_stop_the_run_naming_the_node(work, capsys):
    from ilif_deploy.converters import open_graph

    g = open_graph(work / "m.pt")
    g.nodes["conv1"].weight[0] = 3e38  # finite, but the sums overflow float32
    g.save(work / "over.ir.npz")
    rc, err = _cli(energy.main, [work / "over.ir.npz", "--data", "digits", "--samples", "8"], capsys)
    assert rc == 2 and len(err) == 1 and "node 'conv1' (conv2d) computes non-finite values" in err[0], err
    with pytest.raises(Exception, match="variance \\+ eps must be > 0"):
        g2 = open_graph(work / "m.pt")
        g2.nodes["bn1"].bn_stats[1, 0], g2.nodes["bn1"].eps = 0.0, 0.0
        g2.validate()
    prices = work / "p.json"
    prices.write_text(json.dumps({"name": "inf", "e_ac_pj": float("inf"), "e_mac_pj": 1.0}))
    rc, err = _cli(energy.main, [work / "m.pt", "--energy-model", prices, "--data", "none", "--rate", "0.1"], capsys)
    assert rc == 2 and "must be a finite number" in err[0]


def test_names_from_files_are_escaped_and_csv_cells_formula_safe(work, capsys):
    m = torch.load(work / "m.pt", weights_only=True)
    m["state_dict"]["evil\nerror: forged\x1b[31m"] = torch.zeros(1)
    torch.save(m, work / "evil.pt")
    rc, err = _cli(export.main, [work / "evil.pt", "--target", "ir", "-o", work / "o.ir.npz"], capsys)
    assert rc == 2 and len(err) == 1 and "evil\\nerror: forged\\x1b[31m" in err[0] and "\x1b" not in err[0]
    from ilif_deploy.converters import open_graph

    g = open_graph(work / "m.pt")
    g.nodes["=SUM(A1)"] = g.nodes.pop("fc")
    g.nodes["=SUM(A1)"].name = "=SUM(A1)"
    g.edges = [tuple("=SUM(A1)" if v == "fc" else v for v in e) for e in g.edges]
    g.save(work / "f.ir.npz")
    assert _cli(energy.main, [work / "f.ir.npz", "--data", "digits", "--samples", "4", "--csv", work / "r.csv"],
                capsys)[0] == 0
    assert "'=SUM(A1)" in (work / "r.csv").read_text()


def test_graph_files_of_the_first_release_read_and_newer_ones_are_refused(work):
    """The first release wrote arrays as ``attrs.weight = {"array": key}`` and neuron parameters as ``{"ilif":
    {...}}`` under version 1 (layout rebuilt here from that release's writer)."""
    from ilif_deploy import Graph, run
    from ilif_deploy.converters import open_graph
    from ilif_deploy.errors import GraphError

    g = open_graph(work / "m.pt")
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
    np.savez(work / "v1.ir.npz", __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    old = Graph.load(work / "v1.ir.npz")
    x = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    assert torch.equal(run(old, x), run(g, x))
    header["version"] = 99
    np.savez(work / "v99.ir.npz", __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    with pytest.raises(GraphError, match="version 99; this ilif-deploy reads versions 1 to 2"):
        Graph.load(work / "v99.ir.npz")


def test_a_file_of_another_kind_is_named_with_what_reads_it(work):
    import ilif_deploy as D
    from ilif_deploy.errors import ModelFileError

    export.main([str(work / "m.pt"), "--target", "nir", "-o", str(work / "g.nir")])
    with pytest.raises(ModelFileError, match="is an HDF5 file .* read it with ilif_deploy.converters.open_graph"):
        D.load_model(work / "g.nir")
    export.main([str(work / "m.pt"), "--target", "ir", "-o", str(work / "g.ir.npz")])
    with pytest.raises(ModelFileError, match="is an ilif-deploy graph file"):
        D.load_model(work / "g.ir.npz")


# ------------------------------------------------------------------ signals before the tool is imported
@pytest.mark.parametrize("raised, code, line", [(KeyboardInterrupt, 130, "interrupted"),
                                                ("terminated", 143, "terminated")])
def test_a_signal_while_the_tool_imports_ends_in_one_line(monkeypatch, capsys, raised, code, line):
    """The console scripts' entry point handles signals before importing the tool (torch, numpy): a Ctrl-C or
    SIGTERM during that import is one line and its exit code, not a traceback."""
    import importlib

    from ilif_deploy.cli import launch

    def importing(name):
        raise launch.Terminated() if raised == "terminated" else raised()

    import signal

    monkeypatch.setattr(importlib, "import_module", importing)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert launch.launch("export") == code
    finally:  # launch leaves the defaults for the process's last moments; pytest keeps its own
        for s, h in handlers.items():
            signal.signal(s, h)
    assert capsys.readouterr().err.strip() == line


# ------------------------------------------------------------------ graph queries stay O(degree) and right
def test_edge_index_follows_every_change_of_the_edge_list():
    import copy

    from ilif_deploy.converters import open_graph

    g = open_graph("example:digits_ilif")

    def brute(graph):
        return ({n: [s for s, t in graph.edges if t == n] for n in graph.nodes},
                {n: [t for s, t in graph.edges if s == n] for n in graph.nodes})

    def agrees(graph):
        ins, outs = brute(graph)
        return all(graph.inputs_of(n) == ins[n] and graph.consumers_of(n) == outs[n] for n in graph.nodes)

    assert agrees(g)
    g.edges.append(("conv1", "fc"))
    assert "conv1" in g.inputs_of("fc") and agrees(g)
    g.edges[-1] = ("bn1", "fc")
    assert agrees(g)
    del g.edges[-1]
    assert agrees(g)
    g.edges += [("input", "output")]
    assert agrees(g)
    g.edges = [e for e in g.edges if e != ("input", "output")]
    assert agrees(g) and g.inputs_of("output") == ["fc"]
    h = copy.deepcopy(g)
    h.edges.pop()
    assert agrees(h) and agrees(g) and g.inputs_of("output") == ["fc"] and h.inputs_of("output") == []


def test_a_large_nir_graph_skips_nirs_quadratic_check_and_is_still_checked(tmp_path):
    """Above NIR_TYPE_CHECK_MAX_NODES nir's own type check (O(edges x nodes)) is not run: the shapes are still
    checked, by ilif-deploy's inference, naming the node that does not fit."""
    import nir

    from ilif_deploy.converters import open_graph
    from ilif_deploy.converters.nir.upstream import NIR_TYPE_CHECK_MAX_NODES
    from ilif_deploy.errors import UserError

    n = NIR_TYPE_CHECK_MAX_NODES + 10
    nodes, edges, prev = {"input": nir.Input(np.array([4]))}, [], "input"
    for i in range(n):
        nodes[f"a{i}"] = nir.Affine(np.eye(4, dtype=np.float32), np.zeros(4, np.float32))
        edges.append((prev, f"a{i}"))
        prev = f"a{i}"
    nodes["output"] = nir.Output(np.array([4]))
    nir.write(str(tmp_path / "long.nir"), nir.NIRGraph(nodes, edges + [(prev, "output")], type_check=False))
    g = open_graph(tmp_path / "long.nir")
    assert len(g.nodes) == n + 2 and g.inputs_of("a1") == ["a0"]
    nodes[f"a{n - 1}"] = nir.Affine(np.ones((4, 3), np.float32), np.zeros(4, np.float32))  # takes 3, given 4
    nir.write(str(tmp_path / "bad.nir"), nir.NIRGraph(nodes, edges + [(prev, "output")], type_check=False))
    with pytest.raises(UserError, match=f"bad.nir.*a{n - 1}"):
        open_graph(tmp_path / "bad.nir")


def _h5_fill(target):
    """A small HDF5 file the way the writers make one: groups, gzip datasets, attributes."""
    rng = np.random.default_rng(0)
    with h5py.File(target, "w") as f:
        f.attrs["format"] = "test"
        for i in range(6):
            g = f.create_group(str(i))
            g.create_dataset("w", data=rng.random((64, 200)), compression="gzip")
            g["name"] = f"layer {i}"


def test_an_hdf5_file_grows_on_disk_not_in_memory(tmp_path):
    """write_hdf5_atomic writes into the temporary file beside the destination as libhdf5 makes it (a file built
    in memory first cost its own size beside the data: 50 MB for a ResNet-18's Lava file); the destination appears
    only when it is complete."""
    from ilif_deploy.atomic import TEMP_PREFIX, write_hdf5_atomic

    out, seen = tmp_path / "m.h5", []

    def fill(target):
        with h5py.File(target, "w") as f:
            f.create_dataset("w", data=np.ones(250_000))  # 2 MB, not compressed
            f.flush()
            (temp,) = tmp_path.glob(f"{TEMP_PREFIX}*/m.h5")
            seen.append((temp.stat().st_size, out.exists()))

    write_hdf5_atomic(out, fill)
    assert seen[0][0] >= 2_000_000 and not seen[0][1]
    with h5py.File(out) as f:
        assert f["w"].shape == (250_000,)
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]


@pytest.mark.parametrize("fail_at", [0, 3000, 40_000])
def test_a_disk_failing_mid_write_finishes_in_memory_and_leaves_nothing(tmp_path, monkeypatch, fail_at):
    """The disk's first error is kept and the file finished in memory, so libhdf5 never sees a failed write (on a
    full disk it fails inside its own flush, and some h5py builds crash on close); the error is raised, naming the
    destination, once libhdf5 is done, and the temporary file goes.  What was finished in memory is the file's
    whole content: the bytes that reached the disk were read back."""
    import errno
    import io

    from ilif_deploy import atomic

    expected = io.BytesIO()
    _h5_fill(expected)
    real_pwrite, written = os.pwrite, [0]

    def full_disk(fd, data, offset):
        if written[0] + len(data) > fail_at:  # a short write up to the limit, then ENOSPC
            room = fail_at - written[0]
            if room <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = memoryview(data)[:room]
        n = real_pwrite(fd, data, offset)
        written[0] += n
        return n

    monkeypatch.setattr(atomic.os, "pwrite", full_disk)
    sink = atomic.DiskFirst(tmp_path / "direct.h5")
    _h5_fill(sink)
    assert sink.error is not None and sink.error.errno == errno.ENOSPC
    sink.seek(0)
    assert sink.read() == expected.getvalue()
    sink.close()

    written[0] = 0
    out = tmp_path / "sub" / "m.h5"
    out.parent.mkdir()
    with pytest.raises(OSError) as e:
        atomic.write_hdf5_atomic(out, _h5_fill)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(out)
    assert list(out.parent.iterdir()) == []
