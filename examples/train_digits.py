"""Train the small ILIF conv SNN (and its LIF twin) on scikit-learn's bundled 8x8 digits.

    python examples/train_digits.py                 # both models -> examples/models/digits_{ilif,lif}.pt
    python examples/train_digits.py --neuron ilif --epochs 5 --out /tmp/m

Direct encoding (the same analog image at each of T = 4 steps), logits summed over T,
cross-entropy, Adam, full BPTT through the ILIF inhibitory units with the sigmoid surrogate.
Deterministic for a given seed on one machine.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import ilif_deploy
from ilif_deploy.architectures import build
from ilif_deploy.data import digits

HERE = Path(__file__).resolve().parent


def evaluate(model, x, y, timesteps):
    model.eval()
    with torch.no_grad():
        xt = torch.as_tensor(x).unsqueeze(0).expand(timesteps, *x.shape)
        pred = model(xt).sum(0).argmax(1).numpy()
    return float((pred == y).mean())


def train(neuron: str, epochs: int, timesteps: int, seed: int, lr: float, batch: int):
    torch.manual_seed(seed)
    np.random.seed(seed)
    xtr, ytr = digits("train")
    xte, yte = digits("test")
    model = build("digits_convnet", neuron=neuron)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    xtr_t, ytr_t = torch.as_tensor(xtr), torch.as_tensor(ytr)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(range(epochs), desc=f"{neuron} training", unit="epoch")
    for _ in bar:
        model.train()
        perm = torch.randperm(len(xtr_t), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            xb = xtr_t[idx].unsqueeze(0).expand(timesteps, *xtr_t[idx].shape)
            loss = F.cross_entropy(model(xb).sum(0), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        bar.set_postfix(loss=f"{total / len(perm):.3f}")
    return model, evaluate(model, xte, yte, timesteps), len(yte)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--neuron", choices=["ilif", "lif", "both"], default="both")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--timesteps", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", default=str(HERE / "models"), help="folder for digits_<neuron>.pt")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for neuron in (["ilif", "lif"] if args.neuron == "both" else [args.neuron]):
        t0 = time.perf_counter()
        model, acc, n = train(neuron, args.epochs, args.timesteps, args.seed, args.lr, args.batch)
        seconds = time.perf_counter() - t0
        path = out / f"digits_{neuron}.pt"
        ilif_deploy.save(model, path, timesteps=args.timesteps, input_shape=[1, 8, 8], encoding="direct",
                         test_accuracy=acc, train_seconds=round(seconds, 1), epochs=args.epochs, seed=args.seed)
        print(f"{neuron}: test accuracy {acc * 100:.2f} % on {n} digits, trained in {seconds:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
