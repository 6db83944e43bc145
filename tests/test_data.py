"""Data as researchers have it: each reader on small files in the real on-disk format, compared with a
straightforward reading written here; the safe CIFAR unpickler; warnings; one layout for every tool."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

import ilif_deploy as D
from ilif_deploy import ir as N
from ilif_deploy.data import DataWarning, Dataset, open_data
from ilif_deploy.data.npy import NpyRows
from ilif_deploy.data.presets import NORMALIZATIONS
from ilif_deploy.errors import DataError
from zoo import chain_graph


def _all(ds: Dataset, T=None) -> np.ndarray:
    """Every sample of ``ds`` sample-major, through its time-major batches."""
    return np.concatenate([b.x.transpose(0, 1).numpy() if ds.timesteps else b.x[0].numpy()
                           for b in ds.batches(7, T or ds.timesteps or 1)])


def _cifar10_folder(root, n=20, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data, labels = rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)]
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))
    return folder, data, np.asarray(labels)


def test_cifar10_python_folder_as_torchvision_reads_it(tmp_path):
    folder, data, labels = _cifar10_folder(tmp_path)
    ds = open_data(str(tmp_path), dataset="cifar10")  # the folder holding cifar-10-batches-py, or itself
    mean, std = (np.asarray(v, np.float32).reshape(3, 1, 1) for v in NORMALIZATIONS["cifar10"])
    ref = (data.reshape(-1, 3, 32, 32).astype(np.float32) * np.float32(1 / 255) - mean) / std  # ToTensor, Normalize
    assert len(ds) == 20 and ds.encoding == "direct" and np.array_equal(ds.labels, labels)
    np.testing.assert_allclose(_all(ds, 4), ref, rtol=0, atol=1e-6)
    assert np.array_equal(_all(open_data(str(folder), normalize="none"), 4),
                          data.reshape(-1, 3, 32, 32).astype(np.float32) * np.float32(1 / 255))
    assert "normalize mean [0.4914" in ds.describe()


def test_cifar100_python_folder_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(5 * 3072, dtype=np.int64).astype(np.uint8).reshape(5, 3072)
    (folder / "test").write_bytes(pickle.dumps({b"data": data, b"fine_labels": [3, 99, 0, 7, 42],
                                                b"coarse_labels": [1, 2, 3, 4, 5]}, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": []}, protocol=2))
    ds = open_data(str(folder), normalize="none")
    assert ds.labels.tolist() == [3, 99, 0, 7, 42]
    assert np.array_equal(_all(ds, 2), data.reshape(-1, 3, 32, 32) * np.float32(1 / 255))


class _Evil:
    def __reduce__(self):
        import os

        return os.system, ("touch EVIL_RAN",)


def test_a_pickle_that_carries_code_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder, _, _ = _cifar10_folder(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [1]}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch: refused, not a plain CIFAR batch .*posix.system"):
        open_data(str(folder))
    assert not (tmp_path / "EVIL_RAN").exists()


def test_image_folder_with_pillow(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    ref, labels = [], []
    for c, name in enumerate(["cat", "dog"]):  # classes in sorted order, as torchvision's ImageFolder
        (tmp_path / name).mkdir()
        for i in range(3):
            img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
            ref.append(img.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255))
            labels.append(c)
    ds = open_data(str(tmp_path), input_shape=(3, 8, 8))
    assert ds.labels.tolist() == labels and np.array_equal(_all(ds, 2), np.stack(ref))
    gray = open_data(str(tmp_path), input_shape=(1, 8, 8))
    assert gray.frame_shape == (1, 8, 8)


def _frames(events, T, w, h):
    """The authors' split_by='number', by hand: T slices of N // T events, the last with the rest."""
    out, per = np.zeros((T, 2, h, w), np.float32), len(events) // T
    for t in range(T):
        part = events[t * per:len(events) if t == T - 1 else (t + 1) * per]
        np.add.at(out[t], (part[:, 3], part[:, 1], part[:, 0]), 1)  # [p, y, x] += 1
    return out


def _random_events(rng, n, w, h):
    """[n, 4] (x, y, t, p) sorted by t."""
    ev = np.stack([rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, 60_000, n)),
                   rng.integers(0, 2, n)], 1)
    return ev[np.argsort(ev[:, 2], kind="stable")]


def test_nmnist_folder_read_by_tonic(tmp_path):
    rng = np.random.default_rng(2)
    recordings = {}
    for label in (3, 7):
        folder = tmp_path / "NMNIST" / "Test" / str(label)
        folder.mkdir(parents=True)
        ev = _random_events(rng, 301, 34, 34)
        raw = np.zeros((len(ev), 5), np.uint8)  # N-MNIST's 40-bit events: x, y, p | t[22:16], t[15:8], t[7:0]
        raw[:, 0], raw[:, 1] = ev[:, 0], ev[:, 1]
        raw[:, 2] = (ev[:, 3] << 7) | ((ev[:, 2] >> 16) & 127)
        raw[:, 3], raw[:, 4] = (ev[:, 2] >> 8) & 255, ev[:, 2] & 255
        (folder / "00001.bin").write_bytes(raw.tobytes())
        recordings[label] = ev
    ds = open_data(str(tmp_path), timesteps=5)
    assert len(ds) == 2 and ds.labels.tolist() == [3, 7] and ds.frame_shape == (2, 34, 34) and ds.timesteps == 5
    got = _all(ds)
    for i, label in enumerate((3, 7)):
        assert np.array_equal(got[i], _frames(recordings[label], 5, 34, 34))
    assert got.sum() == 602  # every event in exactly one frame (the remainder goes to the last)


def test_without_tonic_only_event_data_asks_for_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tonic", None)  # what an install without the events extra sees
    monkeypatch.setitem(sys.modules, "tonic.datasets", None)
    monkeypatch.setitem(sys.modules, "tonic.transforms", None)
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 8, 8), np.float32))
    assert len(open_data(str(tmp_path / "x.npy"), timesteps=2)) == 3
    with pytest.raises(DataError, match="no CIFAR batches"):
        open_data(str(tmp_path))
    (tmp_path / "NMNIST").mkdir()
    with pytest.raises(DataError, match=r"event data needs tonic .*pip install 'ilif-deploy\[events\]'"):
        open_data(str(tmp_path))


def test_dvs_gesture_folder_read_by_tonic_at_the_presets_settings(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led"
    folder.mkdir(parents=True)
    ev = _random_events(rng, 1003, 128, 128)
    ev_ms = ev.copy()
    ev_ms[:, 2] //= 1000  # the preprocessed files keep ms; tonic multiplies back
    np.save(folder / "4.npy", ev_ms[:, [0, 1, 3, 2]])  # columns x, y, p, t
    ds = open_data(str(tmp_path / "DVSGesture"), dataset="dvs-gesture", timesteps=20)
    assert ds.labels.tolist() == [4] and ds.frame_shape == (2, 128, 128)
    assert np.array_equal(_all(ds)[0], _frames(ev, 20, 128, 128))


def test_raw_event_npz_and_the_dvs_cifar10_resize(tmp_path):
    rng = np.random.default_rng(4)
    recs = [_random_events(rng, n, 128, 128) for n in (50, 77, 64)]
    allev = np.concatenate(recs)
    np.savez(tmp_path / "ev.npz", x=allev[:, 0], y=allev[:, 1], t=allev[:, 2], p=allev[:, 3],
             sample=np.repeat(np.arange(3), [len(r) for r in recs]), label=np.array([5, 1, 9]))
    ds = open_data(str(tmp_path / "ev.npz"), timesteps=4, sensor=(128, 128))
    assert ds.labels.tolist() == [5, 1, 9]
    got = _all(ds)
    for i, r in enumerate(recs):
        assert np.array_equal(got[i], _frames(r, 4, 128, 128))
    small = open_data(str(tmp_path / "ev.npz"), timesteps=4, dataset="dvs-cifar10")  # 128x128 -> 48x48
    ref = torch.nn.functional.interpolate(torch.from_numpy(got.reshape(-1, 2, 128, 128)), size=(48, 48),
                                          mode="bilinear", antialias=True).reshape(3, 4, 2, 48, 48).numpy()
    assert small.frame_shape == (2, 48, 48) and np.array_equal(_all(small), ref)


def test_npz_npy_and_what_is_refused_or_warned(tmp_path):
    x = np.random.default_rng(5).random((9, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", inputs=x, targets=np.arange(9) % 10)
    ds = open_data(str(tmp_path / "d.npz"), x_key="inputs", y_key="targets")
    assert np.array_equal(_all(ds, 3), x) and ds.labels.tolist() == list(range(9))
    np.save(tmp_path / "d.npy", x)
    assert np.array_equal(_all(open_data(str(tmp_path / "d.npy")), 3), x)
    assert isinstance(open_data(str(tmp_path / "d.npy")).x, NpyRows)  # read a batch at a time
    whole = (tmp_path / "d.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(whole[:-10])
    with pytest.raises(DataError, match=r"header says \[9, 1, 8, 8\] float32 .* \(truncated\?\)"):
        open_data(str(tmp_path / "cut.npy"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 9, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects"):
        open_data(str(tmp_path / "obj.npy"))
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    with pytest.raises(DataError, match="Fortran-order"):
        open_data(str(tmp_path / "f.npy"))
    np.savez(tmp_path / "long.npz", x=x, y=np.zeros(10, int))
    with pytest.raises(DataError, match="10 labels .* for 9 samples"):
        open_data(str(tmp_path / "long.npz"))
    bad = x.copy()
    bad[4, 0, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match=r"sample 4 holds nan at index \[0, 2, 3\]"):
        _all(open_data(str(tmp_path / "nan.npy")), 2)
    np.save(tmp_path / "u8.npy", (x * 255).astype(np.uint8))
    with pytest.warns(DataWarning, match="uint8 .*scaled by 1/255"):
        u8 = open_data(str(tmp_path / "u8.npy"))
    assert np.allclose(_all(u8, 2), x, atol=1 / 255)
    with pytest.warns(DataWarning, match=r"inputs reach 25\d after preprocessing \(x1\)"):
        _all(open_data(str(tmp_path / "u8.npy"), scale=1.0), 2)
    np.savez(tmp_path / "labels.npz", x=x, y=np.arange(9) + 5)
    with pytest.warns(DataWarning, match=r"labels outside 0..9 \(e.g. 10\)"):
        list(open_data(str(tmp_path / "labels.npz")).batches(9, 2, num_classes=10))


def _sequence_graph(T=4):
    rng = np.random.default_rng(6)
    return chain_graph((2, 4, 4), [N.Conv2d("conv", weight=rng.normal(0, 1, (3, 2, 3, 3)), bias=np.full(3, 0.4),
                                            padding=1), N.Neuron("n1"), N.Flatten("flat"),
                                   N.Linear("fc", weight=rng.normal(0, 0.5, (5, 48))), N.Neuron("n2")], T=T)


class _Spy(D.data.ArrayDataset):
    """Records every batch it hands out."""

    def batches(self, *args, **kw):
        for b in super().batches(*args, **kw):
            self.seen.append(b.x.clone())
            yield b


@pytest.mark.parametrize("n", [4, 6])  # n = 4: as many samples as steps, where an axis swap would still fit
def test_every_tool_sees_the_same_time_major_batches(n, tmp_path, lava):
    from ilif_deploy import energy
    from ilif_deploy.agreement import compare_graphs
    from ilif_deploy.converters.lava import simulate
    from ilif_deploy.converters.nir import export_graph as nir_export
    from ilif_deploy.converters.nir.generic import fidelity
    from ilif_deploy.converters.onnx import compare_with_runtime, export_graph as onnx_export

    g = _sequence_graph()
    x = (np.random.default_rng(7).random((n, 4, 2, 4, 4)) < 0.5).astype(np.float32)  # [N, T, C, H, W]
    want = torch.from_numpy(x).transpose(0, 1)  # what every tool must run: [T, N, ...]
    seen = {}
    onnx_export(g, tmp_path / "g.onnx")
    ng = nir_export(g, tmp_path / "g.nir") and __import__("nir").read(str(tmp_path / "g.nir"))
    tools = {
        "energy": lambda d: energy.profile(g, d, progress=False, batch_size=n),
        "onnx": lambda d: compare_with_runtime(g, tmp_path / "g.onnx", d, batch_size=n),
        "nir": lambda d: fidelity(g, ng, d, batch_size=n),
        "lava": lambda d: simulate(g, d, samples=None, batch=n, progress=False),
        "lowering": lambda d: compare_graphs(g, g, d, batch_size=n),
    }
    for name, tool in tools.items():
        spy = _Spy("spy", x)
        spy.seen = []
        result = tool(spy)
        seen[name] = spy.seen
        assert len(spy.seen) == 1 and torch.equal(spy.seen[0], want), name
        if name == "energy":
            _, rec = D.run(g, want, record=["n1"])
            assert result.rows[1].spikes == pytest.approx(float(rec["n1"].sum()) / n)  # counted on that layout
        elif name in ("onnx", "lava"):
            assert result.overall_spike_agreement == 1.0, name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the same batches from an .npz through open_data
        np.savez(tmp_path / "seq.npz", x=x)
        assert torch.equal(next(open_data(str(tmp_path / "seq.npz")).batches(n, 4)).x, want)


def test_the_tools_read_an_image_folder_and_name_what_does_not_fit(tmp_path, capsys, digits_test):
    from PIL import Image

    from ilif_deploy.cli import energy

    x, y = digits_test
    for c in range(10):  # class folders in sorted order are the class indices
        (tmp_path / "img" / f"{c}").mkdir(parents=True)
    for i in range(30):  # the digits test images as 8-bit PNGs
        Image.fromarray(np.round(x[i, 0] * 255).astype(np.uint8)).save(tmp_path / "img" / f"{y[i]}" / f"{i}.png")
    out = tmp_path / "r.json"
    assert energy.main(["example:digits_ilif", "--data", str(tmp_path / "img"), "--no-progress", "--threads", "1",
                        "--json", str(out)]) == 0
    import json

    rep = json.loads(out.read_text())
    assert rep["samples"] == 30 and rep["accuracy"] >= 0.9 and "image folder" in rep["data"]
    assert rep["graph"]["arch"]["arch"] == "digits_convnet"
    _cifar10_folder(tmp_path / "c")
    assert energy.main(["example:digits_ilif", "--data", str(tmp_path / "c"), "--no-progress"]) == 2
    assert "frames of 3x32x32, the network takes 1x8x8 per step" in capsys.readouterr().err
