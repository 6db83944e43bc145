"""Bring your own network, snntorch style: train a small snntorch net on scikit-learn's digits the way snntorch's
tutorials write it (``snn.Leaky(init_hidden=True)`` in an ``nn.Sequential``, ``spk, mem = net(x)`` once per step),
trace it into the graph and save it; then every tool takes the ``.ir.npz``.

    .venv/bin/python examples/byon_snntorch.py [--out out/byon] [--epochs 15]

Prints the module's own test accuracy, the graph's (the same: the graph is the module), and what reading the
same network through snntorch's NIR export gives (its default subtract reset is not in the file: read as a reset to
zero, the accuracy changes).  Then run the tools on ``out/byon/snn.ir.npz``::

    ilif-export out/byon/snn.ir.npz --target lava -o out/byon/snn.lava.h5
    ilif-simulate out/byon/snn.lava.h5 --data digits --samples 100 --mode float     # agreement 1.0
    ilif-energy out/byon/snn.ir.npz --data digits
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
from torch import nn

import ilif_deploy
from ilif_deploy.data import digits

T = 8


def build() -> nn.Module:
    import snntorch as snn

    # per-neuron beta and threshold: snntorch's NIR exporter writes scalars otherwise, which NIR's type checks refuse
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64),
                         snn.Leaky(beta=torch.full((64,), 0.8), threshold=torch.ones(64), init_hidden=True),
                         nn.Linear(64, 10),
                         snn.Leaky(beta=torch.full((10,), 0.8), threshold=torch.ones(10), init_hidden=True,
                                   output=True))


def predict(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Spike counts over T steps, stepping the module once per step (the snntorch way)."""
    from snntorch import utils

    utils.reset(net)
    counts = sum(net(x)[0] for _ in range(T))
    utils.reset(net)
    return counts


def train(epochs: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = build()
    x, y = (torch.as_tensor(a) for a in digits("train"))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(predict(net, x[idx]), torch.as_tensor(y[idx]).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/byon")
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    net = train(args.epochs)
    x, y = digits("test")
    with torch.no_grad():
        acc_module = float((predict(net, torch.as_tensor(x)).argmax(1).numpy() == y).mean())
    graph = ilif_deploy.trace(net, (1, 8, 8), T)  # single-step: the tracer steps the module itself
    graph.save(out / "snn.ir.npz")
    acc_graph = float((ilif_deploy.run(graph, x).sum(0).argmax(1).numpy() == y).mean())
    # the NIR route: snntorch's own exporter, read as NIR says (its subtract reset is not in the file)
    import nir
    from snntorch.export_nir import export_to_nir

    from ilif_deploy.converters.nir import read_graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nir.write(str(out / "snn.nir"), export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0]))
        via_nir = read_graph(out / "snn.nir", nir_from="snntorch")
    via_nir.metadata["timesteps"] = T
    acc_nir = float((ilif_deploy.run(via_nir, x).sum(0).argmax(1).numpy() == y).mean())
    result = {"module": acc_module, "graph": acc_graph, "nir_without_reset": acc_nir,
              "graph_file": str(out / "snn.ir.npz")}
    (out / "accuracy.json").write_text(json.dumps(result, indent=1))
    print(f"test accuracy: snntorch module {acc_module:.2%}, traced graph {acc_graph:.2%}, "
          f"through snntorch's NIR export read as NIR says {acc_nir:.2%}")
    print(f"wrote {out / 'snn.ir.npz'}: every tool takes it (ilif-export / ilif-simulate / ilif-energy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
