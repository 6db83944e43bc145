"""NIR both ways between SpikingJelly 2.0 and ilif-deploy, measured spike by spike.

Needs SpikingJelly, which is not an ilif-deploy dependency (it pins torchvision/torchaudio); run it
in the benchmark environment of docs/energy.md with nir and nirtorch added::

    /tmp/bench-venv/bin/pip install nir==1.0.8 nirtorch==2.6
    /tmp/bench-venv/bin/python examples/interop_spikingjelly.py [--json out/sj_interop.json]

1. SpikingJelly -> ilif-deploy: a conv/LIF net built in SpikingJelly (hard reset, as its
   exporter requires), written with ``export_to_nir``, read with ``ilif_deploy`` and run by our
   runtime; spikes of every LIF layer compared with SpikingJelly's own multi-step run.
2. ilif-deploy -> SpikingJelly: our digits LIF and ILIF models written with ``ilif-export --target
   nir``, read with SpikingJelly's ``import_from_nir`` (where it can) and compared with our runtime.
Inputs are the 450 test digits, T = 8 (part 1) / 4 (part 2, the models' own T).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ilif_deploy as I  # noqa: E402
from ilif_deploy import ir as N  # noqa: E402
from ilif_deploy.converters.nir import export_graph, read_graph  # noqa: E402
from ilif_deploy.data import digits  # noqa: E402


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).float().mean())


def sj_to_ours(x: np.ndarray, T: int, tau: float, tmp: Path) -> dict:
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange.to_nir import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(OrderedDict(
        conv=layer.Conv2d(1, 16, 3, padding=1), lif1=neuron.LIFNode(tau=tau, v_reset=0.0),
        flat=layer.Flatten(), fc=layer.Linear(16 * 8 * 8, 10), lif2=neuron.LIFNode(tau=tau, v_reset=0.0)))
    with torch.no_grad():  # enough drive that both layers fire at 10-30 %
        net.conv.weight.mul_(6.0)
        net.fc.weight.mul_(6.0)
        net.fc.bias.add_(0.5)
    functional.set_step_mode(net, "m")
    xs = torch.as_tensor(x).unsqueeze(0).repeat(T, 1, 1, 1, 1)  # [T, B, 1, 8, 8]
    seen = {}
    hooks = [getattr(net, k).register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o.detach()))
             for k in ("lif1", "lif2")]
    with torch.no_grad():
        functional.reset_net(net)
        net(xs)
    for h in hooks:
        h.remove()
    path = tmp / f"sj_net_tau{tau}.nir"
    functional.reset_net(net)
    export_to_nir(net, xs[:, :2], save_path=path)
    graph = read_graph(path)
    _, rec = I.run(graph, xs, record=True)
    out = {"model": f"SpikingJelly conv-LIF(tau={tau}, hard reset)-linear-LIF, random weights",
           "timesteps": T, "samples": int(len(x)), "ilif_deploy_nodes": list(graph.nodes)}
    for k in ("lif1", "lif2"):
        ours = rec[k]
        out[k] = {"spike_agreement": agreement(ours, seen[k]), "firing_rate_sj": float(seen[k].mean()),
                  "firing_rate_ours": float(ours.mean()), "identical": bool(torch.equal(ours, seen[k]))}
    return out


def ours_to_sj(x: np.ndarray, tmp: Path) -> dict:
    from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir

    y = digits("test")[1]
    results = {}
    for name in ("digits_lif", "digits_ilif"):
        graph = I.trace(I.load_model(ROOT / "examples" / "models" / f"{name}.pt"), (1, 8, 8), 4)
        path = tmp / f"{name}.nir"
        export_graph(graph, path)
        r = {"file": f"{name}.nir"}
        try:
            sj = import_from_nir(str(path))
        except Exception as e:  # noqa: BLE001 -- the point is to report what SpikingJelly says
            r["import"] = f"refused: {type(e).__name__}: {e}"
            results[name] = r
            continue
        r["import"] = "ok"
        # SpikingJelly's import is a stateful nirtorch GraphModule, one step per call:
        # forward(x[t], state) -> (output, state)
        neurons = [n for n, node in graph.nodes.items() if isinstance(node, N.Neuron)]
        seen = {k: [] for k in neurons}
        hooks = [sj.get_submodule(k).register_forward_hook(lambda m, i, o, k=k: seen[k].append(o[0].detach()))
                 for k in neurons]
        xs = torch.as_tensor(x).unsqueeze(0).repeat(4, 1, 1, 1, 1)
        state, outs = None, []
        with torch.no_grad():
            for t in range(xs.shape[0]):
                o, state = sj(xs[t], state)
                outs.append(o)
        for h in hooks:
            h.remove()
        out_sj = torch.stack(outs)
        out_ours, rec = I.run(graph, xs, record=neurons)
        for k in neurons:
            r[k] = {"spike_agreement": agreement(torch.stack(seen[k]), rec[k]),
                    "firing_rate_sj": float(torch.stack(seen[k]).mean()), "firing_rate_ours": float(rec[k].mean())}
        pred_sj, pred_ours = out_sj.sum(0).argmax(1), out_ours.sum(0).argmax(1)
        r["accuracy_ours"] = float((pred_ours.numpy() == y).mean())
        r["accuracy_sj"] = float((pred_sj.numpy() == y).mean())
        r["same_prediction"] = float((pred_sj == pred_ours).float().mean())
        results[name] = r
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="also write the results as JSON")
    args = p.parse_args(argv)
    from importlib.metadata import version

    x, _ = digits("test")
    with tempfile.TemporaryDirectory() as d:
        res = {"spikingjelly": version("spikingjelly"), "nir": version("nir"),
               "sj_to_ilif_deploy": [sj_to_ours(x, 8, tau, Path(d)) for tau in (2.0, 3.0)],
               "ilif_deploy_to_sj": ours_to_sj(x, Path(d))}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
