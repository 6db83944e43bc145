"""NeuroBench 2.3.0 and ``ilif-energy --conventions neurobench`` on the same torch models and data.

Runs NeuroBench's own ``Benchmark`` (``SynapticOperations``, ``ActivationSparsity``, ``Footprint``,
``ConnectionSparsity``, ``ParameterCount``, and for snntorch nets ``NeuronOperations``) on the torch module, and
:func:`ilif_deploy.energy.profile` on the graph traced from the same module, and prints both side by side.
NeuroBench is run twice: as shipped, and with each layer's count summed in float64 instead of float32
(:func:`float64_layer_counts`; as shipped, a count above 2^24 per layer and batch is rounded, which a pruned
ResNet-18 shows).  Exit status 1 if ours differs from the exact run: operation counts as exact integer totals over
the data set, ActivationSparsity to 1e-12 (a float ratio on both sides), ConnectionSparsity to NeuroBench's 4
decimals, the rest exactly.

Models: the bundled digits ILIF net on the 450 test digits, and spiking_resnet18 (authors' checkpoint
format, random weights calibrated to ~30 % firing) on random 32x32 frames, T = 4 (direct encoding); and, since
NeuronOperations reads snntorch's membranes and prices snntorch's neuron types only (an ILIF net has neither), a
single-step snntorch ``Leaky`` digits net (the LIF net's conv/linear weights, no BN, so that membranes fed only
blank pixels stay unchanged and effective neuron operations fall below the dense ones) and an snntorch ResNet-18;
each also with 30 % of its conv/linear weights pruned to zero (``--prune``), so that connection
sparsity and NeuroBench's zero-weight rule are exercised.

NeuroBench lives in this script's own environment (it depends on torchaudio, whose wheels are built for
other torch releases; installed ``--no-deps``, it imports, and only its native extension -- used by
NeuroBench's speech preprocessors, not here -- would fail to load)::

    python3 -m venv /tmp/nb-venv
    /tmp/nb-venv/bin/pip install -r requirements.txt
    /tmp/nb-venv/bin/pip install --no-deps neurobench==2.3.0 torchaudio==2.11.1
    /tmp/nb-venv/bin/pip install --no-deps -e .
    /tmp/nb-venv/bin/python benchmarks/neurobench_equality.py
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ilif_deploy as I  # noqa: E402
from ilif_deploy import energy  # noqa: E402
from ilif_deploy.energy import Conventions  # noqa: E402
from ilif_deploy.neurons import ILIF  # noqa: E402

import foreign_nets  # noqa: E402  (benchmarks/, beside this script)
from foreign_nets import with_digits_weights  # noqa: E402


class DirectEncoding(nn.Module):
    """What NeuroBench runs: ``[B, C, H, W]`` frames repeated for T steps into the multi-step net
    (``[T, B, ...]``), logits averaged over time.  The net is a child module, so NeuroBench's hooks
    find its layers."""

    def __init__(self, net: nn.Module, timesteps: int):
        super().__init__()
        self.net, self.timesteps = net, timesteps

    def forward(self, x):
        return self.net(x.unsqueeze(0).expand(self.timesteps, *x.shape).contiguous()).mean(0)


@contextlib.contextmanager
def float64_layer_counts():
    """NeuroBench counts a layer's operations by running a 0/1 copy of it on 0/1 inputs in the layer's own
    dtype and summing in float32, which is exact only up to 2^24 per layer and batch (a ResNet-18 layer
    reaches 10^8).  Inside this block the same copy runs in float64 (0/1 values and the spiking test are
    unchanged by the cast; only the sum becomes exact).  The results are printed with and without it."""
    from neurobench.metrics.workload import synaptic_operations as so

    original = so.single_layer_MACs

    def exact(inputs, layer, total=False):
        if isinstance(inputs, torch.Tensor) and inputs.is_floating_point():
            return original(inputs.double(), copy.deepcopy(layer).double(), total)
        return original(inputs, layer, total)

    so.single_layer_MACs = exact
    try:
        yield
    finally:
        so.single_layer_MACs = original


class SingleStepDirect(nn.Module):
    """The same for a single-step snntorch net (``init_hidden=True`` neurons): its state reset, the frame fed T
    times, the outputs averaged.  NeuroBench's neuron hooks then see one call per step, as NeuronOperations needs."""

    def __init__(self, net: nn.Module, timesteps: int):
        super().__init__()
        self.net, self.timesteps = net, timesteps

    def forward(self, x):
        from snntorch import utils
        utils.reset(self.net)
        return torch.stack([self.net(x) for _ in range(self.timesteps)]).mean(0)


LEAKY = dict(beta=0.5, init_hidden=True, reset_mechanism="subtract")


def snntorch_digits() -> nn.Module:
    """The bundled LIF digits net's conv and linear weights in a single-step snntorch net of ``Leaky`` neurons,
    without its BatchNorms: a neuron whose receptive field holds only blank pixels then keeps its membrane at 0,
    so NeuroBench's effective neuron operations fall below the dense ones."""
    import snntorch as snn
    net = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), snn.Leaky(threshold=0.5, **LEAKY),
                        nn.Conv2d(16, 32, 3, 1, 1, bias=False), snn.Leaky(threshold=0.5, **LEAKY),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 10))
    return with_digits_weights(net, {0: "conv1", 2: "conv2", 6: "fc"})


def snntorch_resnet18(calibration: torch.Tensor) -> nn.Module:
    """ResNet-18 (CIFAR stem) of single-step snntorch ``Leaky`` neurons (benchmarks/foreign_nets.py)."""
    import snntorch as snn
    from snntorch import utils

    def calibrate(net):
        utils.reset(net)
        net(calibration)
        utils.reset(net)

    return foreign_nets.resnet18(nn, lambda: snn.Leaky(threshold=1.0, **LEAKY), calibrate)


def neurobench_side(model: nn.Module, x: torch.Tensor, y: torch.Tensor, T: int, batch: int) -> dict:
    import snntorch as snn
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import ActivationSparsity, NeuronOperations, SynapticOperations
    from neurobench.models import TorchModel

    snntorch_net = any(isinstance(m, snn.SpikingNeuron) for m in model.modules())
    wrapped = TorchModel((SingleStepDirect if snntorch_net else DirectEncoding)(model, T))
    wrapped.add_activation_module(snn.Leaky if snntorch_net else ILIF)  # LIF and IPLIF are ILIF subclasses
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
    # NeuronOperations reads snntorch's membranes and prices snntorch's types only: ILIF nets cannot run it
    workload = [SynapticOperations, ActivationSparsity] + ([NeuronOperations] if snntorch_net else [])
    bench = Benchmark(wrapped, loader, [], [], [[Footprint, ConnectionSparsity, ParameterCount], workload])
    with torch.no_grad():
        res = bench.run(quiet=True)
    ops = res["SynapticOperations"]
    out = {"Effective_ACs": ops["Effective_ACs"], "Effective_MACs": ops["Effective_MACs"], "Dense": ops["Dense"],
           "ActivationSparsity": res["ActivationSparsity"], "Footprint": res["Footprint"],
           "ConnectionSparsity": res["ConnectionSparsity"], "ParameterCount": res["ParameterCount"]}
    if snntorch_net:
        out.update(res["NeuronOperations"])
    return out


def our_side(model: nn.Module, x: torch.Tensor, T: int, batch: int) -> dict:
    # fold_bn=False: the graph then runs torch's own BN kernel and reproduces the module's spikes
    # bit for bit (folding rounds differently by an ulp and can flip a spike; see bench_energy.py)
    graph = I.trace(model, tuple(x.shape[1:]), T, fold_bn=False)
    rep = energy.profile(graph, x.numpy(), conventions=Conventions.preset("neurobench"), batch_size=batch,
                         progress=False, membrane_changes=True)
    out = energy.neurobench_metrics(rep)
    ops = out.pop("NeuronOperations")
    if not ops["unpriced"]:
        out.update({k: v for k, v in ops.items() if k != "unpriced"})
    return out


def prune(model: nn.Module, share: float, seed: int) -> nn.Module:
    """Zero ``share`` of every conv/linear weight tensor (random positions), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight[torch.rand(m.weight.shape, generator=g) < share] = 0.0
    return model


#: per-inference counts: compared as whole-set totals (value x samples, integers on both sides), so that
#: two ways of dividing by the number of samples cannot hide or fake a difference
COUNTS = ("Effective_ACs", "Effective_MACs", "Dense", "Effective Neuron Ops", "Neuron Dense Ops")


def same(key: str, mine, nb, samples: int) -> bool:
    if mine is None:
        return False
    if key in COUNTS:
        return round(mine * samples) == round(nb * samples) and abs(nb * samples - round(nb * samples)) < 1e-6
    if key == "ActivationSparsity":
        return abs(mine - nb) <= 1e-12
    if key == "ConnectionSparsity":
        return round(mine, 4) == nb  # NeuroBench rounds to 4 decimals
    return float(mine) == float(nb)


def compare(name: str, ours: dict, shipped: dict, exact: dict, samples: int) -> bool:
    """Print the three columns; True when ours equals NeuroBench with exact (float64) layer sums."""
    ok = True
    print(f"\n{name}")
    print(f"  {'metric':<20} {'NeuroBench 2.3.0':>18} {'  with f64 sums':>18} {'ilif-deploy':>18}  equal")
    for key, nb in exact.items():
        eq = same(key, ours.get(key), nb, samples)
        ok &= eq
        note = "" if same(key, shipped[key], nb, samples) else "  (NeuroBench's float32 sum is off)"
        print(f"  {key:<20} {shipped[key]!s:>18} {nb!s:>18} {ours.get(key)!s:>18}  {'yes' if eq else 'NO'}{note}")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resnet-samples", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prune", type=float, default=0.3, help="share of weights zeroed in the pruned variants")
    args = p.parse_args(argv)
    from importlib.metadata import version
    print(f"neurobench {version('neurobench')}, torch {torch.__version__}, ilif-deploy {I.__version__}")
    torch.set_num_threads(1)

    from ilif_deploy.data import digits
    xd, yd = digits("test")
    cases = [("digits_ilif", lambda: I.load_model(ROOT / "examples" / "models" / "digits_ilif.pt"),
              torch.as_tensor(xd), torch.as_tensor(yd))]
    spec = importlib.util.spec_from_file_location("nb_conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    tmp = tempfile.TemporaryDirectory()
    path = conftest.make_authors_resnet18(Path(tmp.name) / "r18.pth", seed=0)
    xr = torch.rand(args.resnet_samples, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cases.append(("digits, snntorch Leaky (the LIF net's weights)", snntorch_digits, torch.as_tensor(xd),
                  torch.as_tensor(yd)))
    xs = torch.rand(args.resnet_samples, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cases.append(("ResNet-18, snntorch Leaky (calibrated random weights)", lambda: snntorch_resnet18(xs), xs,
                  torch.zeros(len(xs), dtype=torch.long)))
    cases.append(("spiking_resnet18 (calibrated random weights)",
                  lambda: I.load_model(path, arch="spiking_resnet18", num_classes=10), xr,
                  torch.zeros(len(xr), dtype=torch.long)))
    ok = True
    for name, load, x, y in cases:
        for pruned in (False, True):
            def fresh():
                # a new module for each side: snntorch keeps its state tensors as buffers, which a run resizes to
                # the batch, and Footprint counts buffers
                model = load().eval()
                return prune(model, args.prune, seed=1) if pruned else model

            label = f"{name}{f', {args.prune:.0%} of weights pruned' if pruned else ''}: {len(x)} samples, T=4"
            shipped = neurobench_side(fresh(), x, y, 4, args.batch)
            with float64_layer_counts():
                exact = neurobench_side(fresh(), x, y, 4, args.batch)
            ok &= compare(label, our_side(fresh(), x, 4, args.batch), shipped, exact, len(x))
    print("\nall equal" if ok else "\nDIFFERENCES (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
