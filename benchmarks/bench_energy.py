"""Benchmark: energy profiling time vs plain inference, and vs SpikingJelly's SynOpCounter.

    python benchmarks/bench_energy.py                # in .venv: profiling overhead only
    /tmp/bench-venv/bin/python benchmarks/bench_energy.py   # with spikingjelly: also SynOpCounter

(The SpikingJelly venv: ``python -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install
torch==2.13.0 spikingjelly==2.0.0 numpy pandas plotly tqdm scikit-learn nir h5py && /tmp/bench-venv/bin/pip
install --no-deps -e .``; see docs/energy.md.)

Models: the digits ILIF net (450 test digits) and spiking_resnet18 (authors' format, random
weights calibrated to ~30 % firing, random 32x32 frames), T = 4, batch >= 8.  Times are the best of
``--repeats`` runs after one warm-up.  Ratios:

- profile / plain: ``energy.profile`` (recording + counting) over plain ``ilif_deploy.run`` on the
  same batches (goal <= 1.10x);
- SynOpCounter / profile: SpikingJelly 2.0's ``SynOpCounter`` under ``DispatchCounterMode`` on the
  torch model, same batches (goal >= 4x), with equal AC totals.  SynOpCounter counts conv/linear
  ops whose input is binary, so our side uses ``pooling=separate`` and sums ACs of weight layers
  whose input is spikes.  Measured in eager mode and with ``compile_neurons=True`` (neuron layers
  fused by torch.compile; compilation happens in the warm-up and is reported separately).
- forward GFLOP/s: conv/linear FLOPs (2 per MAC, every tap) of plain inference over its time, as a share
  of the best rate torch's kernel reaches alone on one of the model's own conv/linear shapes (goal >= 80 %),
  and the same FLOPs over the time of the network's conv/linear kernels alone on their recorded inputs: the
  ceiling of that share for any forward computing them with torch's float32 NCHW kernels (other layouts,
  e.g. channels_last, round differently and change spikes);
- ceiling: SynOpCounter time over the time of the network's synaptic layers alone (the same
  conv/linear/BN kernels on the recorded inputs).  Any counter that must produce the spikes with
  torch's own float32 kernels (to get the same spikes, hence the same ACs) spends at least that
  time, so no such counter can be more than "ceiling" times faster than SynOpCounter.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ilif_deploy as I  # noqa: E402
from ilif_deploy import energy  # noqa: E402
from ilif_deploy.energy import Conventions  # noqa: E402

CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCK["cpu"]


def best_times(fns: dict, repeats: int) -> dict:
    """Best of ``repeats`` runs of each function after one warm-up, on the chosen clock (process CPU
    time by default: on a shared machine wall time measures the neighbours).  The functions run
    interleaved, so a slow phase of the machine hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up (allocator, lazy init)
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            best[k] = min(best[k], clock() - t0)
    return best


def plain(graph, x, batch, compile_neurons=False):
    for i in range(0, len(x), batch):
        I.run(graph, x[i:i + batch], compile_neurons=compile_neurons)


def synaptic_only(graph, x, batch, kinds=None):
    """Time (on ``clock``) of the graph's conv/linear/affine nodes (or ``kinds``) alone, each run on its
    recorded input, batch by batch: the part of inference no exact counter can skip."""
    from ilif_deploy import ir as N
    from ilif_deploy.runtime import apply_node

    kinds = kinds or (N.Conv2d, N.Linear, N.Affine)
    synaptic = [n for n in graph.topological_order() if isinstance(graph.nodes[n], kinds)]
    total = 0.0
    for i in range(0, len(x), batch):
        _, rec = I.run(graph, x[i:i + batch], record=True)
        ins = {n: [rec[p] for p in graph.inputs_of(n)] for n in synaptic}
        t0 = clock()
        for n in synaptic:
            apply_node(graph.nodes[n], ins[n])
        total += clock() - t0
    return total


def forward_flops(graph, samples: int, T: int = 4) -> float:
    """Floating-point operations of the conv/linear layers of one pass over ``samples`` inputs, T steps
    (2 per multiply-accumulate, every tap: what the dense kernels execute)."""
    return 2.0 * sum(energy.ann_baseline(graph).values()) * T * samples


def best_conv_rate(graph, batch: int, T: int = 4, repeats: int = 5) -> tuple:
    """GFLOP/s of torch's kernel on each distinct conv/linear shape of ``graph`` run alone on ``T * batch``
    random inputs (the forward merges time and batch): the best of them is what this machine's kernels
    reach at this model's sizes.  Returns ``(best GFLOP/s, its layer)``."""
    import torch.nn.functional as F

    from ilif_deploy import ir as N

    best = (0.0, "")
    for name in graph.topological_order():
        node = graph.nodes[name]
        if not isinstance(node, (N.Conv2d, N.Linear)):
            continue
        src = graph.inputs_of(name)[0]
        xin = torch.rand(T * batch, *graph.nodes[src].shape)
        w = torch.as_tensor(node.weight)
        if isinstance(node, N.Conv2d):
            def kernel(xin=xin, w=w, node=node):
                return F.conv2d(xin, w, None, node.stride, node.padding, node.dilation, node.groups)
        else:
            def kernel(xin=xin, w=w):
                return F.linear(xin.reshape(xin.shape[0], -1), w)
        flops = 2.0 * energy.dense_macs(node, tuple(graph.nodes[src].shape)) * T * batch
        calls = max(1, round(2e8 / flops))  # a tiny kernel (the digits net's) is timed over many calls

        def timed(kernel=kernel, calls=calls):
            for _ in range(calls):
                kernel()
        t = best_times({name: timed}, repeats)[name]
        best = max(best, (flops * calls / t / 1e9, name))
    return best


def sj_counter(model, x, batch):
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    counter = SynOpCounter()
    T = 4
    with torch.no_grad(), DispatchCounterMode([counter]):
        for i in range(0, len(x), batch):
            xb = torch.as_tensor(x[i:i + batch])
            model(xb.unsqueeze(0).expand(T, *xb.shape).contiguous())
    return counter.get_total()


def spiking_weight_acs(rep) -> float:
    """ACs of conv/linear layers whose input is spikes, summed over all samples (SynOpCounter's scope)."""
    return sum(r.acs for r in rep.rows if r.op in ("conv2d", "linear") and r.input_kind == "spikes") * rep.samples


def bench(name, model, graph, x, batch, repeats, with_sj):
    """Time plain inference and profiling of ``graph``; with SpikingJelly also SynOpCounter on
    ``model``.  The SynOpCounter side is compared with a graph traced with ``fold_bn=False``:
    folding BN into the conv weights rounds differently by an ulp here and there, which flips a
    few spikes (7e-6 to 4e-5 of the ACs on spiking_resnet18 in our runs), while the unfolded graph runs
    torch's own BN kernel and reproduces the torch model's spikes exactly."""
    model.eval()
    res = {"model": name, "samples": int(len(x)), "batch": batch, "timesteps": 4}
    fns = {"plain_s": lambda: plain(graph, x, batch),
           "plain_compiled_s": lambda: plain(graph, x, batch, compile_neurons=True),
           "profile_s": lambda: energy.profile(graph, x, batch_size=batch, progress=False),
           "profile_compiled_s": lambda: energy.profile(graph, x, batch_size=batch, progress=False,
                                                        compile_neurons=True)}
    t0 = time.perf_counter()
    plain(graph, x, batch, compile_neurons=True)
    res["first_compile_wall_s"] = time.perf_counter() - t0
    if with_sj:
        unfolded = I.trace(model, tuple(graph.input_node.shape), 4, fold_bn=False)
        sep = Conventions(pooling="separate")
        total = {}
        fns["profile_separate_s"] = lambda: energy.profile(unfolded, x, batch_size=batch, progress=False,
                                                           conventions=sep)
        fns["profile_separate_compiled_s"] = lambda: energy.profile(
            unfolded, x, batch_size=batch, progress=False, conventions=sep, compile_neurons=True)
        fns["synopcounter_s"] = lambda: total.update(v=sj_counter(model, x, batch))
    res.update(best_times(fns, repeats))
    flops = forward_flops(graph, len(x))
    res["forward_gflops"] = flops / res["plain_s"] / 1e9
    res["forward_compiled_gflops"] = flops / res["plain_compiled_s"] / 1e9
    res["best_conv_gflops"], res["best_conv_layer"] = best_conv_rate(graph, batch)
    from ilif_deploy import ir as N

    # the network's own conv/linear kernels alone, on their recorded inputs: the rate no forward that computes
    # them with these kernels (the arithmetic the spikes are exact in) can exceed
    res["kernels_only_gflops"] = flops / min(synaptic_only(graph, x, batch, (N.Conv2d, N.Linear))
                                             for _ in range(max(1, repeats // 2))) / 1e9
    res["kernels_only_share_of_best"] = res["kernels_only_gflops"] / res["best_conv_gflops"]
    res["forward_compiled_share_of_kernels"] = res["forward_compiled_gflops"] / res["kernels_only_gflops"]
    res["forward_share_of_best"] = res["forward_gflops"] / res["best_conv_gflops"]
    res["forward_compiled_share_of_best"] = res["forward_compiled_gflops"] / res["best_conv_gflops"]
    res["profile_over_plain"] = res["profile_s"] / res["plain_s"]
    res["profile_over_plain_compiled"] = res["profile_compiled_s"] / res["plain_compiled_s"]
    if with_sj:
        res["synopcounter_acs"] = int(total["v"])
        res["our_acs"] = spiking_weight_acs(energy.profile(unfolded, x, batch_size=batch, progress=False,
                                                           conventions=sep))
        res["acs_equal"] = bool(round(res["our_acs"]) == res["synopcounter_acs"])
        res["synopcounter_over_profile"] = res["synopcounter_s"] / res["profile_separate_s"]
        res["synopcounter_over_profile_compiled"] = res["synopcounter_s"] / res["profile_separate_compiled_s"]
        res["synopcounter_over_plain"] = res["synopcounter_s"] / res["plain_s"]
        res["synaptic_only_s"] = min(synaptic_only(unfolded, x, batch) for _ in range(repeats))
        res["ceiling"] = res["synopcounter_s"] / res["synaptic_only_s"]
        res["share_of_ceiling"] = res["synopcounter_over_profile"] / res["ceiling"]
        res["compiled_share_of_ceiling"] = res["synopcounter_over_profile_compiled"] / res["ceiling"]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resnet-samples", type=int, default=32)
    p.add_argument("--batch", type=int, default=8, help="batch size for spiking_resnet18 (>= 8)")
    p.add_argument("--digits-batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable timings)")
    p.add_argument("--clock", choices=sorted(CLOCK), default="cpu", help="process CPU time (default) or wall time")
    p.add_argument("--json", help="also write the results as JSON")
    args = p.parse_args(argv)
    global clock
    clock = CLOCK[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    with_sj = importlib.util.find_spec("spikingjelly") is not None
    sj_version = None
    if with_sj:
        from importlib.metadata import version
        sj_version = version("spikingjelly")
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.clock} clock, spikingjelly {sj_version or 'not installed (SynOpCounter comparison skipped)'}")

    from ilif_deploy.data import digits
    results = []
    x, _ = digits("test")
    dmodel = I.load_model(ROOT / "examples" / "models" / "digits_ilif.pt")
    results.append(bench("digits_ilif", dmodel, I.trace(dmodel, (1, 8, 8), 4), x, args.digits_batch,
                         args.repeats, with_sj))

    spec = importlib.util.spec_from_file_location("energy_bench_conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    with tempfile.TemporaryDirectory() as tmp:
        path = conftest.make_authors_resnet18(Path(tmp) / "r18.pth", seed=0)
        rmodel = I.load_model(path, arch="spiking_resnet18", num_classes=10)
    xr = torch.rand(args.resnet_samples, 3, 32, 32, generator=torch.Generator().manual_seed(0)).numpy()
    results.append(bench("spiking_resnet18", rmodel, I.trace(rmodel, (3, 32, 32), 4), xr, args.batch,
                         args.repeats, with_sj))

    for r in results:
        pad = " " * 19
        line = (f"{r['model']:>17}: {r['samples']} samples, batch {r['batch']}, T=4 | plain {r['plain_s']:.3f} s, "
                f"profile {r['profile_s']:.3f} s -> {r['profile_over_plain']:.3f}x (goal <= 1.10x)\n"
                f"{pad}compiled neurons: plain {r['plain_compiled_s']:.3f} s, profile {r['profile_compiled_s']:.3f} s "
                f"-> {r['profile_over_plain_compiled']:.3f}x (first compile {r['first_compile_wall_s']:.1f} s wall)\n"
                f"{pad}forward {r['forward_gflops']:.1f} GFLOP/s eager, {r['forward_compiled_gflops']:.1f} compiled = "
                f"{r['forward_share_of_best']:.0%} / {r['forward_compiled_share_of_best']:.0%} of the best conv/linear "
                f"kernel here ({r['best_conv_gflops']:.1f} GFLOP/s on {r['best_conv_layer']}'s shape; goal >= 80 %)\n"
                f"{pad}its conv/linear kernels alone: {r['kernels_only_gflops']:.1f} GFLOP/s = "
                f"{r['kernels_only_share_of_best']:.0%} of the best shape (the ceiling for a forward with these "
                f"kernels); compiled forward = {r['forward_compiled_share_of_kernels']:.0%} of it")
        if with_sj:
            line += (f"\n{pad}SynOpCounter {r['synopcounter_s']:.3f} s (= {r['synopcounter_over_plain']:.2f}x plain); "
                     f"ACs {r['our_acs']:.0f} vs {r['synopcounter_acs']} equal={r['acs_equal']}\n"
                     f"{pad}vs profile(pooling=separate) {r['profile_separate_s']:.3f} s -> "
                     f"{r['synopcounter_over_profile']:.2f}x faster; compiled "
                     f"{r['profile_separate_compiled_s']:.3f} s -> "
                     f"{r['synopcounter_over_profile_compiled']:.2f}x faster (goal >= 4x)\n"
                     f"{pad}synaptic layers alone {r['synaptic_only_s']:.3f} s -> ceiling for any exact counter "
                     f"{r['ceiling']:.2f}x; our speed-up over SynOpCounter is {r['share_of_ceiling']:.0%} of that "
                     f"ceiling eager, {r['compiled_share_of_ceiling']:.0%} compiled")
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"spikingjelly": sj_version, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
