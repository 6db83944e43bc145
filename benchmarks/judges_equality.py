"""SpikingJelly 2.0's energy estimators and ``ilif-energy --conventions spikingjelly`` on the same modules and data.

Runs SpikingJelly's own ``SimpleEnergyProfiler`` (``estimate_simple_energy``, fp32 preset) and
``estimate_lemaire_energy`` (strict off: BatchNorm, pools and flatten are outside Lemaire's formulas there, as they
are in ours) batch by batch on SpikingJelly-native networks, and :func:`ilif_deploy.energy.judges.spikingjelly_simple`
/ ``spikingjelly_lemaire`` on the graph traced from the same module, and prints both side by side.  Exit status 1
if a quantity whose definition both sides share differs by more than 1e-6 relative (totals over the data set).

What is not compared, and why: SpikingJelly's simple estimator counts an AC for every ``aten.add``/``sub`` its
dispatch mode sees, so the arithmetic inside its ``LIFNode``/``IFNode`` forward (how that code happens to be
written: 3-5 tensor ops per step) and the reductions its own memory counter issues inside the counting mode
(``aten.sum`` outside every layer; absent when its ``ACCounter`` runs alone) are part of its AC total.  They are not
a definition that another implementation can share; they are printed as "SpikingJelly only", and its total is shown
to equal ours plus 0.9 pJ for each of them.

Models: digits (the bundled LIF net's conv/BN/linear weights in SpikingJelly ``layer.*`` modules with a ``LIFNode``
and an ``IFNode``) on the 450 test digits, and a ResNet-18 (CIFAR stem, basic blocks, ``LIFNode``; random weights,
BN calibrated so that every layer fires) on random 32x32 frames; T = 4, direct encoding.

SpikingJelly lives in this script's own environment (installed ``--no-deps``, so it cannot replace the CPU torch;
loguru is its one import beyond torch and numpy)::

    python3 -m venv /tmp/judge-venv
    /tmp/judge-venv/bin/pip install -r requirements.txt
    /tmp/judge-venv/bin/pip install --no-deps spikingjelly==2.0.0 loguru==0.7.3
    /tmp/judge-venv/bin/pip install --no-deps -e .
    /tmp/judge-venv/bin/python benchmarks/judges_equality.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ilif_deploy as I  # noqa: E402
from ilif_deploy import energy  # noqa: E402
from ilif_deploy.energy import judges  # noqa: E402

import foreign_nets  # noqa: E402  (benchmarks/, beside this script)
from foreign_nets import with_digits_weights  # noqa: E402

T = 4


def sj():
    from spikingjelly.activation_based import functional, layer, neuron
    return functional, layer, neuron


def digits_net() -> nn.Module:
    functional, layer, neuron = sj()
    net = nn.Sequential(layer.Conv2d(1, 16, 3, 1, 1, bias=False), layer.BatchNorm2d(16),
                        neuron.LIFNode(tau=2.0, decay_input=False),
                        layer.Conv2d(16, 32, 3, 1, 1, bias=False), layer.BatchNorm2d(32), neuron.IFNode(),
                        layer.AvgPool2d(2), layer.Flatten(), layer.Linear(32 * 16, 10))
    functional.set_step_mode(net, "m")
    return with_digits_weights(net, {0: "conv1", 1: "bn1", 3: "conv2", 4: "bn2", 8: "fc"})


def resnet18(calibration: torch.Tensor) -> nn.Module:
    functional, layer, neuron = sj()

    def calibrate(net):
        functional.set_step_mode(net, "m")
        net(calibration.unsqueeze(0).repeat(T, 1, 1, 1, 1))
        functional.reset_net(net)

    return foreign_nets.resnet18(layer, neuron.LIFNode, calibrate)


def sj_side(net: nn.Module, x: torch.Tensor, batch: int) -> dict:
    """SpikingJelly's two estimators, batch by batch, summed over the data set."""
    from spikingjelly.activation_based.neuron.base_node import BaseNode
    from spikingjelly.activation_based.op_counter import (LemaireEnergyConfig, SimpleEnergyProfiler,
                                                          estimate_lemaire_energy)
    functional, _, _ = sj()
    neurons = {name for name, m in net.named_modules() if isinstance(m, BaseNode)}
    leaves = {name for name, m in net.named_modules() if not any(m.children())}
    simple, lemaire = {}, {}
    inside = counter_sums = 0  # ACs SpikingJelly found inside neuron modules / in its own counter's reductions
    for i in range(0, len(x), batch):
        xs = x[i:i + batch].unsqueeze(0).repeat(T, *([1] * x.dim()))
        functional.reset_net(net)
        prof = SimpleEnergyProfiler()
        prof.bind_model(net)
        with prof, torch.no_grad():
            net(xs)
        rep = prof.get_report()
        for k, v in rep.counts.items():
            simple[k] = simple.get(k, 0) + v
        simple["total_pj"] = simple.get("total_pj", 0.0) + rep.energy_total_pj
        scopes = prof.ac_counter.get_counts()
        for scope, ops in scopes.items():
            path = scope.split(".", 1)[-1] if "." in scope else None
            if path in neurons:
                inside += sum(ops.values())
            elif path in leaves:
                counter_sums -= sum(v for op, v in ops.items() if str(op) == "aten.sum.default")
        # aten.sum outside every layer: SimpleEnergyProfiler's memory counter reduces the network input inside
        # the dispatch mode, which counts it (absent under DispatchCounterMode([ACCounter()]) alone)
        counter_sums += sum(v for op, v in scopes["Global"].items() if str(op) == "aten.sum.default")
        functional.reset_net(net)
        lr = estimate_lemaire_energy(net, xs, config=LemaireEnergyConfig(strict=False))
        for k, v in lr.counts.items():
            lemaire[k] = lemaire.get(k, 0) + v
        lemaire["total_pj"] = lemaire.get("total_pj", 0.0) + lr.total_pj
    simple["ac_in_neurons"], simple["ac_counter_sums"] = inside, counter_sums
    return {"simple": simple, "lemaire": lemaire}


def our_side(net: nn.Module, x: torch.Tensor, batch: int) -> dict:
    functional, _, _ = sj()
    functional.reset_net(net)
    # fold_bn=False: BatchNorm stays a node of its own (SpikingJelly counts it), and the graph runs torch's BN
    # kernel, so the spikes are the module's bit for bit
    graph = I.trace(net, tuple(x.shape[1:]), T, fold_bn=False)
    rep = energy.profile(graph, x.numpy(), conventions="spikingjelly", batch_size=batch, progress=False)
    n = len(x)
    s = judges.spikingjelly_simple(rep, batch=batch)
    lem = judges.spikingjelly_lemaire(rep, batch=batch)
    simple = {k: v * n for k, v in s["counts"].items()}
    simple["total_pj"] = s["energy_pj"]["total_pj"] * n
    lemaire = {k: v * n for k, v in lem["counts"].items()}
    lemaire["total_pj"] = lem["energy_pj"]["total_pj"] * n
    return {"simple": simple, "lemaire": lemaire, "firing": rep.totals["firing_rate"],
            "outside": lem["not_in_spikingjelly"]}


def close(a, b) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1.0)


def compare(label: str, theirs: dict, ours: dict) -> bool:
    ok = True
    print(f"\n{label} (firing rate {ours['firing']:.3f})")
    st, so = theirs["simple"], ours["simple"]
    extra = st["ac_in_neurons"] + st["ac_counter_sums"]  # ACs SpikingJelly counts that no definition shares
    rows = [(k, st[k], so[k], True) for k in ("mac", "weight_read_bytes", "bias_read_bytes",
                                              "neuron_state_read_bytes", "neuron_state_write_bytes")]
    rows.append(("ac (shared definitions)", st["ac"] - extra, so["ac"], True))
    rows.append(("  SpikingJelly only: ACs in neuron code", st["ac_in_neurons"], None, False))
    rows.append(("  SpikingJelly only: its counter's sums", st["ac_counter_sums"], None, False))
    rows.append(("total pJ = ours + 0.9 x SJ-only ACs", st["total_pj"], so["total_pj"] + 0.9 * extra, True))
    print(f"  estimate_simple_energy       {'SpikingJelly 2.0':>20} {'ilif-deploy':>20}  equal")
    for k, a, b, check in rows:
        eq = b is None or close(a, b)
        if check:
            ok &= eq
        print(f"  {k:<40} {a:>20,.2f} {'' if b is None else f'{b:,.2f}':>20}  "
              f"{'' if b is None or not check else 'yes' if eq else 'NO'}")
    print(f"  estimate_lemaire_energy      {'SpikingJelly 2.0':>20} {'ilif-deploy':>20}  equal")
    for k, a in theirs["lemaire"].items():
        b = ours["lemaire"].get(k)
        eq = b is not None and close(a, b)
        ok &= eq
        print(f"  {k:<40} {a:>20,.2f} {'' if b is None else f'{b:,.2f}':>20}  {'yes' if eq else 'NO'}")
    if ours["outside"]:
        print(f"  (neuron layers SpikingJelly's Lemaire estimator omits: {', '.join(ours['outside'])})")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resnet-samples", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    from importlib.metadata import version
    print(f"spikingjelly {version('spikingjelly')}, torch {torch.__version__}, ilif-deploy {I.__version__}")
    torch.set_num_threads(1)
    from ilif_deploy.data import digits
    xd, _ = digits("test")
    xd = torch.as_tensor(xd)[: len(xd) // 50 * 50]
    xr = torch.rand(args.resnet_samples, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ok = True
    for label, make, x, batch in (("digits (LIFNode, IFNode)", digits_net, xd, 50),
                                  ("ResNet-18 (LIFNode)", lambda: resnet18(xr), xr, args.batch)):
        net = make()
        ok &= compare(f"{label}: {len(x)} samples, T={T}, batch {batch}", sj_side(net, x, batch),
                      our_side(net, x, batch))
    print("\nall equal" if ok else "\nDIFFERENCES (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
