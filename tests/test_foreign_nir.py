"""Other tools' NIR files all the way: reading conventions per exporter (--nir-from, --dt, --if-convention),
parameters that are not a neuron refused by name with a dt hint, and foreign networks on Lava."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

import ilif_deploy as D
from ilif_deploy import ir as N
from ilif_deploy.converters.nir import read_graph
from ilif_deploy.errors import UserError
from ilif_deploy.neuron_step import ILIFParams


def test_norse_lif_read_with_the_norse_preset_follows_norses_dynamics(interop):
    """lif_norse.nir (NIR paper task 1) against Norse's documented LIFBox update, written here:
    v += dt * tau_mem_inv * ((v_leak - v) + i); z = v > v_th; v = v_reset where z; dt = 1e-3 s."""
    f = interop / "nir" / "lif_norse.nir"
    src = nir.read(str(f))
    g = read_graph(f, nir_from="norse")
    assert g.metadata["nir_from"] == "norse" and g.metadata["nir_dt"] == 1e-3
    T = 200
    x = torch.rand(T, 16, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float32) * 0.3
    out, rec = D.run(g, x, record=["1"])
    lif = src.nodes["1"]
    w, b = src.nodes["0"].weight.astype(np.float64), src.nodes["0"].bias.astype(np.float64)
    dt, inv = 1e-3, 1.0 / float(lif.tau[0])
    v, ref = np.zeros((16, 1)), []
    for t in range(T):
        i = x[t].double().numpy() @ w.T + b
        v = v + dt * inv * ((float(lif.v_leak[0]) - v) + float(lif.r[0]) * i)
        z = v > float(lif.v_threshold[0])
        v = np.where(z, float(lif.v_reset[0]), v)
        ref.append(z)
    ref = np.stack(ref).astype(np.float32)
    assert ref.sum() > 100  # the neuron really fires and resets over the 200 steps
    np.testing.assert_array_equal(rec["1"].numpy(), ref)
    default = D.run(read_graph(f), x, record=["1"])[1]["1"]  # dt = 1e-4: ten times too slow a leak
    assert not torch.equal(default, rec["1"])


def _lif_file(path, tau=1e-5, r=1.0, v_th=0.1):
    """One LIF layer as Norse 1.1.0 writes it (tau = dt / tau_mem_inv = 1e-3 / 100)."""
    nodes = {"input": nir.Input(np.array([3])), "0": nir.Affine(np.eye(3, dtype=np.float32), np.zeros(3, np.float32)),
             "1": nir.LIF(tau=np.full(3, tau, np.float32), r=np.full(3, r, np.float32),
                          v_leak=np.zeros(3, np.float32), v_threshold=np.full(3, v_th, np.float32),
                          v_reset=np.zeros(3, np.float32)),
             "output": nir.Output(np.array([3]))}
    nir.write(str(path), nir.NIRGraph(nodes, [("input", "0"), ("0", "1"), ("1", "output")]))
    return path


def test_what_is_not_a_neuron_is_refused_by_name_with_a_dt_hint(tmp_path, capsys):
    from ilif_deploy.cli import energy

    f = _lif_file(tmp_path / "norse110.nir")
    with pytest.raises(UserError, match=r"NIR node '1': tau = 1e-05 s is shorter than the step dt = 0.001 s "
                                        r"\(a per-step decay of -99.*read it with --dt 1e-05 or smaller"):
        read_graph(f, nir_from="norse")
    assert read_graph(f, dt=1e-6).nodes["1"].params.lam == pytest.approx(0.9)
    assert energy.main([str(f), "--nir-from", "norse", "--data", "none", "--rate", "0.1", "-T", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tau = 1e-05 s is shorter than the step dt" in err[0]
    with pytest.raises(UserError, match="NIR node '1': r = 0 must be > 0"):
        read_graph(_lif_file(tmp_path / "r0.nir", tau=1e-2, r=0.0))
    with pytest.raises(UserError, match="NIR node '1': v_threshold = 0 must be > 0"):
        read_graph(_lif_file(tmp_path / "th0.nir", tau=1e-2, v_th=0.0))
    with pytest.raises(UserError, match="--dt must be a positive number"):
        read_graph(f, dt=-1.0)


def test_reading_flags_apply_to_nir_files_only(tmp_path, digits_ilif_graph, capsys):
    from ilif_deploy.cli import export

    digits_ilif_graph.save(tmp_path / "g.ir.npz")
    assert export.main([str(tmp_path / "g.ir.npz"), "--target", "ir", "--nir-from", "norse",
                        "-o", str(tmp_path / "o.ir.npz")]) == 2
    assert "--nir-from does not apply to an IR graph file" in capsys.readouterr().err


def _sinabs_frames(path, n=4, T=8):
    x = (np.random.default_rng(0).random((n, T, 2, 34, 34)) < 0.15).astype(np.float32)
    np.savez(path, x=x, y=np.arange(n) % 10)
    return path


def test_sinabs_cnn_fires_only_when_read_as_sinabs_means_it(interop, tmp_path, capsys):
    from ilif_deploy.cli import energy

    f, data = interop / "nir" / "cnn_sinabs.nir", _sinabs_frames(tmp_path / "nmnist.npz")
    assert energy.main([str(f), "--nir-from", "sinabs", "-T", "8", "--data", str(data), "--json",
                        str(tmp_path / "s.json"), "--no-progress"]) == 0
    rep = json.loads((tmp_path / "s.json").read_text())
    rates = {r["name"]: r["firing_rate"] for r in rep["layers"] if r["op"] == "neuron"}
    assert set(rates) == {"1", "3", "6", "10", "12"} and min(rates.values()) > 0, rates
    capsys.readouterr()
    assert energy.main([str(f), "-T", "8", "--data", str(data), "--no-progress"]) == 0  # the default reading
    assert "never fired" in capsys.readouterr().err  # ... is named, not silent


def _sinabs_reference(ng, x: torch.Tensor) -> dict:
    """The NIR file's network as sinabs runs it, written from sinabs' documented IAF equations (sinabs 3.1:
    ``IAF``/``IAFSqueeze``, ``MultiSpike``, ``MembraneSubtract``, ``min_v_mem`` = -v_th as its ``from_nir`` sets)::

        v = v + x;  s = (v > 0) * trunc(v / v_th);  v = v - s * v_th;  v = relu(v - min_v_mem) + min_v_mem

    ``x`` ``[T, B, 2, 34, 34]``; the synaptic layers see all steps at once, each IF steps through time.  Returns
    every IF node's output ``[T, B, ...]`` (spike counts)."""
    import torch.nn.functional as F

    T, B = x.shape[:2]
    order = ["input"]
    while order[-1] != "output":  # the file is a chain
        order.append(next(t for s, t in ng.edges if s == order[-1]))
    h, out = x.reshape(T * B, *x.shape[2:]), {}
    for name in order[1:-1]:
        node = ng.nodes[name]
        if isinstance(node, nir.Conv2d):
            h = F.conv2d(h, torch.as_tensor(node.weight), torch.as_tensor(node.bias), tuple(node.stride),
                         tuple(node.padding), tuple(node.dilation), node.groups)
        elif isinstance(node, nir.SumPool2d):
            c, k = h.shape[1], tuple(node.kernel_size)
            h = F.conv2d(h, torch.ones(c, 1, *k), None, tuple(node.stride), 0, 1, c)
        elif isinstance(node, nir.Flatten):
            h = h.flatten(1)
        elif isinstance(node, nir.Affine):
            h = F.linear(h, torch.as_tensor(node.weight), torch.as_tensor(node.bias))
        else:
            assert isinstance(node, nir.IF)
            th = torch.as_tensor(node.v_threshold)
            floor = -th
            xs, v, spikes = h.reshape(T, B, *h.shape[1:]), torch.zeros_like(h[:B]), []
            for t in range(T):
                v = v + xs[t]
                s = (v > 0) * torch.div(v, th, rounding_mode="trunc")
                v = v - s * th
                v = torch.relu(v - floor) + floor
                spikes.append(s)
            out[name] = torch.stack(spikes)
            h = out[name].reshape(T * B, *h.shape[1:])
    return out


def test_sinabs_cnn_read_as_sinabs_equals_sinabs_equations_spike_for_spike(interop):
    """``--nir-from sinabs``: sinabs' IAF (several spikes a step, subtractive reset, membrane floor at -v_th) on
    event counts with values above 1, over 12 steps: every count of every layer equal.  Read as plain NIR
    (single spikes, reset to v_reset) the layers fire far fewer spikes (per-layer counts in docs/nir.md)."""
    f = interop / "nir" / "cnn_sinabs.nir"
    x = torch.from_numpy(np.random.default_rng(0).poisson(0.6, size=(12, 4, 2, 34, 34)).astype(np.float32))
    assert float(x.max()) >= 3
    ref = _sinabs_reference(nir.read(str(f)), x)
    g = read_graph(f, nir_from="sinabs")
    assert {n.family for n in g.of_type(N.Neuron)} == {"multi-spike if"}
    _, rec = D.run(g, x, record=list(ref))
    for name in ref:
        assert torch.equal(rec[name], ref[name]), name
    counts = {k: int(v.sum()) for k, v in ref.items()}
    assert max(float(v.max()) for v in ref.values()) >= 2 and min(counts.values()) > 0, counts
    with pytest.warns(UserWarning, match="does not record how its neurons reset"):
        plain = read_graph(f, if_convention="per_step")
    _, rec = D.run(plain, x, record=list(ref))
    assert all(int(rec[k].sum()) < counts[k] for k in ref)


@pytest.mark.slow
def test_sinabs_cnn_runs_on_lava_spike_exact(interop, lava, tmp_path):
    """The multi-spike counts travel as graded messages through Lava's Conv and Dense: float mode equal to the
    runtime count for count; fixed point on Lava equal to the torch engine's."""
    from ilif_deploy.converters.lava import export_graph, simulate

    g = read_graph(interop / "nir" / "cnn_sinabs.nir", nir_from="sinabs")
    g.metadata["timesteps"] = 6
    g.nodes["input"].encoding = "sequence"
    export_graph(g, tmp_path / "sinabs.lava.h5")
    x = np.random.default_rng(1).poisson(0.4, size=(2, 6, 2, 34, 34)).astype(np.float32)
    rep = simulate(tmp_path / "sinabs.lava.h5", x=x, mode="float", progress=False)
    assert rep.overall_spike_agreement == 1.0 and rep.prediction_agreement == 1.0
    assert min(rep.firing_rate.values()) > 0, rep.firing_rate
    fixed = simulate(tmp_path / "sinabs.lava.h5", x=x, mode="fixed", engine="torch", verify=2, progress=False)
    assert fixed.details["verify"]["spike_mismatches"] == 0


# ------------------------------------------------------------------ lava-dl netx files

def test_netx_tiny_reproduces_lava_dls_ground_truth(interop):
    """lava-dl's own tinynet test: the bias fed as input to the input layer, 16 steps; its ground truth is
    netx's fixed-point run, one step later (Lava's pipeline delay).  Read here (float CUBA), the output
    spikes equal it on every one of the 15 compared steps."""
    from ilif_deploy.converters.netx import read_netx

    g = read_netx(interop / "netx" / "tiny.net", timesteps=16)
    assert [n.name for n in g.of_type(N.Neuron)] == ["layer0", "layer1", "layer2"]
    assert g.nodes["layer1"].params == ILIFParams(lam=0.75, v_th=25.0, lam_u=0.0, lam_i=0.0, reset="zero",
                                                  compare=">")
    enc = g.nodes["layer0.encode"]
    enc.scale[:], enc.shift[:] = 1.0, 0.0  # the test drives the input neurons by their bias only
    bias = np.load(interop / "netx" / "tinynet_input_bias.npy")  # (W, H, C)
    x = torch.from_numpy(np.transpose(bias, (2, 1, 0)).astype(np.float32))[None, None].expand(16, 1, 3, 16, 16)
    out = D.run(g.validate(), x.contiguous())[:, 0, :, 0, 0].numpy()  # [T, 36]
    truth = np.load(interop / "netx" / "tinynet_output.npy")[0].transpose([2, 1, 0, 3]).reshape(36, 16).T
    assert truth[1:].sum() > 50
    np.testing.assert_array_equal(out[:15], truth[1:])


def test_netx_networks_get_energy_reports_and_unexpressible_ones_are_named(interop, tmp_path):
    import h5py

    from ilif_deploy.cli import energy

    for name, T in (("oxford_network", 20), ("pilotnet_lif_network", 4)):
        f = interop / "netx" / f"{name}.net"
        assert energy.main([str(f), "-T", str(T), "--data", "none", "--rate", "0.1", "--json",
                            str(tmp_path / f"{name}.json")]) == 0
        rep = json.loads((tmp_path / f"{name}.json").read_text())
        assert rep["totals"]["acs"] > 0 and rep["static"]["totals"]["neurons"] > 0
    from ilif_deploy.converters.netx import read_netx

    ox = read_netx(interop / "netx" / "oxford_network.net", timesteps=20)
    assert ox.input_shape == (200,) and [n.params.lam for n in ox.of_type(N.Neuron)] == [
        pytest.approx(1 - 415 / 4096), pytest.approx(1 - 409 / 4096)]
    sdnn = tmp_path / "sdnn.net"
    import shutil
    shutil.copy(interop / "netx" / "oxford_network.net", sdnn)
    with h5py.File(sdnn, "r+") as h:
        h["layer/1/neuron/gradedSpike"][()] = True
    with pytest.raises(UserError, match="layer 1: graded spikes .* not expressible"):
        read_netx(sdnn)


@pytest.mark.slow
def test_netx_network_runs_on_lava(interop, lava):
    from ilif_deploy.converters.lava import simulate
    from ilif_deploy.converters.netx import read_netx

    g = read_netx(interop / "netx" / "tiny.net", timesteps=16)
    x = (np.random.default_rng(0).random((2, 16, 3, 16, 16)) < 0.3).astype(np.float32)
    rep = simulate(g, x=x, mode="float", progress=False)
    assert rep.overall_spike_agreement == 1.0 and rep.firing_rate["layer2"] > 0
    fixed = simulate(g, x=x, mode="fixed", engine="torch", verify=2, progress=False)
    assert fixed.details["verify"]["spike_mismatches"] == 0
