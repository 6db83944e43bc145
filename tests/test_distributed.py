"""Data-parallel profiling: ``torchrun --nproc-per-node 2`` (gloo, CPU) gives the report of one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from ilif_deploy.data import digits
from ilif_deploy import parallel
from ilif_deploy.energy.record import Activity


def _energy(tmp_path, out, launcher):
    argv = ["example:digits_ilif", "--data", "digits", "--samples", "101", "--no-progress",
            "--compare", "example:digits_lif", "--conventions", "neurobench", "--json", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "-m", "ilif_deploy.cli.energy", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_torchrun_two_processes_equal_one(tmp_path):
    one = _energy(tmp_path, tmp_path / "one.json", [sys.executable])
    two = _energy(tmp_path, tmp_path / "two.json",
                  [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"])
    assert one.returncode == 0, one.stderr[-8000:]
    assert two.returncode == 0, two.stderr[-8000:]
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("one", "two"))
    for key in ("totals", "layers", "ann", "accuracy", "samples", "metrics", "static"):
        assert a[key] == b[key], key  # exact: the counts are integers summed in float64
        assert a["compare"][key] == b["compare"][key], key
    assert a["samples"] == 101 and 0 < a["totals"]["acs"]
    assert two.stdout.count("wrote ") == 1 and two.stdout.count("digits_ilif: 101 samples") == 1  # rank 0 only


def test_shards_cover_the_data_once_in_order():
    x, y = digits("test")
    from ilif_deploy.data import as_dataset

    data = as_dataset(x[:7], (1, 8, 8), 4, y[:7])
    blocks = [data.shard(r, 3) for r in range(3)]
    assert [len(b) for b in blocks] == [2, 2, 3]
    got = np.concatenate([b.raw(0, len(b)) for b in blocks])
    assert np.array_equal(got, x[:7]) and np.array_equal(np.concatenate([b.labels for b in blocks]), y[:7])


def test_reduce_activity_sums_counts_and_ands_binary(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    try:
        act = Activity(timesteps=2, samples=5, counts={"a": np.arange(6.0).reshape(2, 3)}, binary={"a": True},
                       continuous={"a": 3.0}, correct=4)
        out = act.reduce()
        assert parallel.world() == (0, 1)
        assert np.array_equal(out.counts["a"], act.counts["a"]) and out.counts["a"].shape == (2, 3)
        assert (out.samples, out.correct, out.continuous, out.binary) == (5, 4, {"a": 3.0}, {"a": True})
    finally:
        dist.destroy_process_group()


def test_torchrun_torch_engine_simulation_equals_one_process(tmp_path):
    argv = ["-m", "ilif_deploy.cli.simulate", "example:digits_ilif", "--data", "digits", "--samples", "51",
            "--engine", "torch", "--mode", "fixed", "--no-progress", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {"one": [sys.executable],
            "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]}
    for name, launcher in runs.items():
        r = subprocess.run([*launcher, *argv, str(tmp_path / f"{name}.json")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-8000:]
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in runs)
    timing = {"seconds", "ms_per_sample_step", "processes", "samples_per_second"}
    assert b["processes"] == 2 and a["samples"] == b["samples"] == 51
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert 0 < a["overall_spike_agreement"] <= 1
