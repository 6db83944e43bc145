"""Sigma-delta (SDNN) networks from lava-dl: the delta encoder as a neuron family, netx's SDNN layers read as lava-dl
runs them (checked against its own netx on Lava fixed_pt), written back so that lava-dl runs the copy identically,
refused by name where a backend has no delta encoder, and counted by energy as graded events."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from ilif_deploy import families
from ilif_deploy.converters.netx import NetxError, export_graph, read_netx
from ilif_deploy.errors import UserError
from ilif_deploy.neuron_step import NUMPY_OPS, ILIFParams, run_sequence
from ilif_deploy.runtime import run
from netx_reference import netx_sdnn_outputs

T = 6


def test_the_delta_encoder_sends_changes_beyond_its_threshold_and_keeps_the_rest():
    p = ILIFParams(lam=1.0, v_th=0.5, lam_u=0.0, lam_i=0.0, delta="relu")
    x = np.array([0.25, 0.75, 0.75, 1.0, 1.5, -2.0, 0.0], np.float32)[:, None]
    # by hand: 0.25 < 0.5 kept; 0.75 sent whole; +0.25 kept; 1.5 - 0.75 sent; relu(-2) = 0: -1.5 sent; nothing left
    assert run_sequence(x, p, NUMPY_OPS).ravel().tolist() == [0.0, 0.75, 0.0, 0.0, 0.75, -1.5, 0.0]
    unit = ILIFParams(lam=1.0, v_th=0.5, lam_u=0.0, lam_i=0.0, delta="unit")
    assert run_sequence(x, unit, NUMPY_OPS).ravel().tolist() == [0.0, 0.75, 0.0, 0.0, 0.75, -3.5, 2.0]
    assert families.features(_node(p)) == {"spike:delta"} and families.family(_node(p)) == "delta-relu"
    assert families.update_cost(_node(p)) == (0.0, 1.0, 0.0, 1.0)


def _node(p):
    from ilif_deploy import ir as N

    return N.Neuron("d", params=p)


@pytest.mark.parametrize("bad", [dict(lam=0.5), dict(reset="zero"), dict(lam_u=0.5), dict(delta="tanh")])
def test_a_delta_encoder_with_a_decay_reset_or_unknown_activation_is_refused(bad):
    with pytest.raises(UserError, match="delta"):
        ILIFParams(**{**dict(lam=1.0, v_th=1.0, lam_u=0.0, lam_i=0.0, delta="relu"), **bad})


@pytest.fixture(scope="module")
def plain_sdnn_file(tmp_path_factory, netx):
    """A conv SDNN written by lava-dl's own slayer blocks (Input delta, Conv, Flatten, Dense, Output with
    sigma_output) and export_hdf5 (no bias: slayer writes one only with a norm)."""
    from lava.lib.dl import slayer

    torch.manual_seed(0)
    sd = {"threshold": 0.1, "activation": torch.nn.functional.relu, "requires_grad": False}
    blocks = [slayer.block.sigma_delta.Input(sd),
              slayer.block.sigma_delta.Conv(sd, 2, 4, 3, stride=2, weight_scale=2),
              slayer.block.sigma_delta.Flatten(),
              slayer.block.sigma_delta.Dense(sd, 4 * 3 * 3, 16, weight_scale=2),
              slayer.block.sigma_delta.Output(sd, 16, 3)]
    x = torch.rand(1, 2, 7, 7, T)
    for b in blocks:
        x = b(x)
    path = tmp_path_factory.mktemp("sdnn") / "sdnn.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(str(i)))
    return path


@pytest.fixture(scope="module")
def sdnn_file(plain_sdnn_file):
    """The same with a bias on the dense layer (netx hands it to lava's SigmaDelta)."""
    path = plain_sdnn_file.parent / "sdnn_bias.net"
    path.write_bytes(plain_sdnn_file.read_bytes())
    with h5py.File(path, "r+") as f:
        f["layer/3/bias"] = BIAS
    return path


BIAS = np.arange(-8, 8, dtype=np.float64)

def _frames(seed=0):
    """Integer frames [T, 2, 7, 7] that change for 3 steps, then hold (the deltas stop)."""
    f = np.random.default_rng(seed).integers(0, 40, size=(T, 2, 7, 7))
    f[3:] = f[2]
    return f


def test_an_sdnn_file_reads_as_lava_dl_runs_it(plain_sdnn_file, lava):
    g = read_netx(plain_sdnn_file, T)
    assert [families.family(g.nodes[k]) for k in ("layer0", "layer1", "layer3")] == ["delta", "delta-relu",
                                                                                      "delta-relu"]
    assert g.metadata["message_bits"] == {"layer0": 16, "layer1": 16, "layer3": 16}
    frames = _frames()
    ref = netx_sdnn_outputs(plain_sdnn_file, frames)
    out, rec = run(g, torch.from_numpy(frames[:, None].astype(np.float64)), record=["layer0", "layer1", "layer3"])
    # a graded message is payload / 2**6 in the file's units; the sigma_output's sum 2**12 finer still
    assert np.array_equal(ref[0] / 64, rec["layer0"][:, 0].numpy())
    assert np.array_equal(ref[1] / 64, rec["layer1"][:, 0].numpy())  # integer weights x 6-bit payloads: exact
    # deeper, Loihi truncates each payload to 6 fractional bits (the float reading keeps them): the same messages,
    # each within 2**-6 of ours, and the readout within what those truncations can add up to through its weights
    theirs, ours = ref[2] / 64, rec["layer3"][:, 0].numpy()
    assert np.array_equal(theirs != 0, ours != 0) and np.abs(theirs - ours).max() < 2.0 ** -6
    w = np.abs(g.nodes["layer4.synapse"].weight).sum(1).max()
    assert np.abs(ref[3] / 4096 - out[:, 0].numpy()).max() <= w * T * 2.0 ** -6
    assert (rec["layer3"] != 0).sum() > 0 and (ref[3] != 0).sum() > 0  # the test exercises every layer


def test_an_sdnn_file_round_trips_and_lava_dl_runs_the_copy_identically(sdnn_file, lava, tmp_path):
    g = read_netx(sdnn_file, T)
    info = export_graph(g, tmp_path / "back.net")
    assert info["rounding"] == 0.0 and info["layers"] == 3
    with h5py.File(sdnn_file) as a, h5py.File(tmp_path / "back.net") as b:
        for i in ("1", "3", "4"):
            assert np.array_equal(a["layer"][i]["weight"][()], b["layer"][i]["weight"][()])
        assert np.array_equal(a["layer/3/bias"][()], b["layer/3/bias"][()])
        assert b["layer/4/neuron/sigma_output"][()] and b["layer/0/type"][0] == b"input"
    frames = _frames(1)
    for theirs, ours in zip(netx_sdnn_outputs(sdnn_file, frames), netx_sdnn_outputs(tmp_path / "back.net", frames)):
        assert np.array_equal(theirs, ours)
    back = read_netx(tmp_path / "back.net", T)
    x = torch.from_numpy(frames[:, None].astype(np.float64))
    assert torch.equal(run(g, x)[0], run(back, x)[0])


def _engine_fixed(path, frames):
    from ilif_deploy.converters.lava.engine import TorchEngine
    from ilif_deploy.converters.lava.netspec import build_netspec

    g = read_netx(path, T)
    return TorchEngine(build_netspec(g), mode="fixed").run(torch.from_numpy(frames[:, None].astype(np.float32)))


def test_in_fixed_point_the_engine_and_our_lava_build_equal_lava_dl_message_for_message(plain_sdnn_file, sdnn_file,
                                                                                         lava):
    """At the file's own integers (6 fractional bits, 6 more in a delta encoder's states, as lava.proc.sdn): every
    layer's messages and the sigma_output equal lava-dl's netx on Lava fixed_pt step for step, nothing saturates."""
    from ilif_deploy.converters.lava import simulate

    for seed in (0, 1, 2):
        frames = _frames(seed)
        ref = netx_sdnn_outputs(plain_sdnn_file, frames)
        r = _engine_fixed(plain_sdnn_file, frames)
        for k, name in enumerate(("layer0", "layer1", "layer3")):
            assert np.array_equal(r.spikes[name][:, 0].numpy() * 64, ref[k]), name  # messages in float units
        assert np.array_equal(r.output[:, 0].numpy() * 4096, ref[3])
        assert sum(r.overflows.values()) == 0 and sum(r.synapse_wraps.values()) == 0
    g = read_netx(sdnn_file, T)
    x = np.stack([_frames(0), _frames(1)]).astype(np.float32)
    for mode in ("fixed", "float"):  # our Lava build (lava.proc.sdn's semantics in our process) = the engine
        a = simulate(g, x=x, mode=mode, engine="torch", verify=2, progress=False)
        assert a.details["verify"]["overall_spike_agreement"] == 1.0
        assert a.details["verify"]["max_abs_logit_diff"] == 0.0
        if mode == "fixed":
            assert a.details["fixed_point"]["frac_bits"] == 6 and a.details["fixed_point"]["delta_state_exp"] == 6
            assert not any(a.details["overflows"].values())


def test_a_lava_h5_of_an_sdnn_keeps_its_integers(sdnn_file, tmp_path):
    """The .lava.h5 stores the delta encoders' format (delta_state_exp) and which synapses carry their messages: the
    engine run from the file equals the run from the netx graph, message for message."""
    from ilif_deploy.converters.lava import export_graph as to_lava
    from ilif_deploy.converters.lava.engine import TorchEngine
    from ilif_deploy.converters.lava.h5 import read as read_h5

    to_lava(read_netx(sdnn_file, T), tmp_path / "sdnn.lava.h5")
    spec, _ = read_h5(tmp_path / "sdnn.lava.h5")
    assert spec.quantized.fp.delta_state_exp == 6 and [s.delta for s in spec.synapses] == [False, True, True, True]
    frames = _frames(2)
    ours = _engine_fixed(sdnn_file, frames)
    x = torch.from_numpy(frames[:, None].astype(np.float32))
    back = TorchEngine(spec, mode="fixed", quantized=spec.quantized).run(x)
    assert torch.equal(ours.output, back.output)
    assert all(torch.equal(ours.spikes[k], back.spikes[k]) for k in ours.spikes)


def test_a_bias_is_sent_before_the_data_as_on_lava_dl(plain_sdnn_file, sdnn_file):
    """netx runs every layer from Lava's first step and never resets a sigma-delta, so a layer whose ReLU(bias)
    reaches its threshold sends it before the sample reaches the layer (so would Loihi).  The engine runs that
    pre-fill (NetSpec.prefill) and equals lava-dl message for message; without it (the float runtime, slayer's own
    semantics) exactly those neurons' messages differ, so the pre-fill is what makes the difference here."""
    from ilif_deploy.converters.lava.netspec import build_netspec

    assert build_netspec(read_netx(sdnn_file, T)).prefill == 2 and build_netspec(read_netx(plain_sdnn_file, T)).prefill
    prefill = np.maximum(BIAS, 0) >= 6  # vThMant
    differs = 0
    for seed in (0, 1, 2):
        frames = _frames(seed)
        ref, r = netx_sdnn_outputs(sdnn_file, frames), _engine_fixed(sdnn_file, frames)
        for k, name in enumerate(("layer0", "layer1", "layer3")):
            assert np.array_equal(r.spikes[name][:, 0].numpy() * 64, ref[k]), name
        assert np.array_equal(r.output[:, 0].numpy() * 4096, ref[3])
        _, rec = run(read_netx(sdnn_file, T), torch.from_numpy(frames[:, None].astype(np.float64)), record=["layer3"])
        bad = (rec["layer3"][:, 0].numpy() != 0) != (ref[2] != 0)  # a message where lava-dl sends none, or none
        assert not bad[:, ~prefill].any()
        differs += int(bad.sum())
    assert differs > 0  # the pre-fill changes messages on this file: the comparison is not vacuous


def test_onnx_writes_the_delta_encoder_and_nir_refuses_it_by_name(sdnn_file, tmp_path):
    from ilif_deploy.converters.nir import export_graph as to_nir
    from ilif_deploy.converters.onnx import compare_with_runtime, export_graph as to_onnx

    g = read_netx(sdnn_file, T)
    with pytest.raises(families.FeatureError, match="nir: layer 'layer0'.*spike:delta.*NIR has no graded"):
        to_nir(g, tmp_path / "g.nir")
    assert not (tmp_path / "g.nir").exists()
    to_onnx(g, tmp_path / "g.onnx")
    agreement = compare_with_runtime(g, tmp_path / "g.onnx", np.stack([_frames(0), _frames(1)]).astype(np.float32))
    assert agreement.total_flips == 0 and agreement.max_abs_logit_diff < 1e-3


def test_energy_counts_graded_messages_as_events_each_a_multiply_per_synapse(sdnn_file):
    from ilif_deploy import energy

    g = read_netx(sdnn_file, T)
    frames = _frames()[None].astype(np.float32)
    _, rec = run(g, torch.from_numpy(frames).transpose(0, 1), record=["layer1", "layer3"])
    rows = {r.name: r for r in energy.profile(g, frames, progress=False).rows}
    events1, events3 = float((rec["layer1"] != 0).sum()), float((rec["layer3"] != 0).sum())
    assert rows["layer1"].spikes == events1 and rows["layer3"].spikes == events3
    assert "16-bit payload" in rows["layer3"].note
    # by hand: every message of layer1 reaches all 16 dense outputs, of layer3 all 3 readout outputs
    assert rows["layer3.synapse"].input_kind == "graded" and rows["layer3.synapse"].macs == events1 * 16
    assert rows["layer4.synapse"].macs == events3 * 3 and rows["layer4.synapse"].acs == 0


def test_netx_refuses_sdnn_files_it_cannot_express_by_layer(sdnn_file, tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_bytes(sdnn_file.read_bytes())
    with h5py.File(bad, "r+") as f:
        del f["layer/3/neuron/activation"]
        f["layer/3/neuron/activation"] = b"sigmoid"
    with pytest.raises(NetxError, match="layer 3: SDNN activation 'sigmoid'"):
        read_netx(bad, T)


def test_a_delta_network_with_a_shortcut_runs_on_the_engine_and_is_refused_by_our_lava_build(lava):
    """A shortcut from the encoder past a layer needs a Lava delay relay, which would carry one sample's messages into
    the next one's pre-fill: our Lava build refuses it by name; the torch engine (no relays) runs it, exact against
    the runtime on integer inputs and dyadic weights."""
    from ilif_deploy import ir as N
    from ilif_deploy.converters.lava import simulate
    from ilif_deploy.ir.graph import Graph

    rng = np.random.default_rng(0)
    p = ILIFParams(lam=1.0, v_th=1.0, lam_u=0.0, lam_i=0.0, delta="relu")
    g = Graph(metadata={"timesteps": T})
    g.add(N.Input("input", (4,), encoding="sequence"))
    g.add(N.Neuron("enc", (4,), params=ILIFParams(lam=1.0, v_th=1.0, lam_u=0.0, lam_i=0.0, delta="unit")), ["input"])
    for name, src, n in (("fc1", "enc", 6), ("fc2", "n1", 3), ("skip", "enc", 3)):
        w = (rng.integers(-4, 5, size=(n, 6 if src == "n1" else 4)) / 4).astype(np.float32)
        g.add(N.Linear(name, (n,), weight=w), [src])
        if name == "fc1":
            g.add(N.LeakyIntegrator("s1", (6,), lam=1.0), ["fc1"])
            g.add(N.Neuron("n1", (6,), params=p), ["s1"])
    g.add(N.Add("sum", (3,)), ["fc2", "skip"])
    g.add(N.LeakyIntegrator("s2", (3,), lam=1.0), ["sum"])
    g.add(N.Neuron("n2", (3,), params=p), ["s2"])
    g.add(N.Output("output", (3,)), ["n2"])
    g.validate()
    x = rng.integers(0, 4, size=(3, T, 4)).astype(np.float32)
    a = simulate(g, x=x, mode="fixed", engine="torch", progress=False)
    assert set(a.spike_agreement.values()) == {1.0} and a.prediction_agreement == 1.0
    assert min(a.firing_rate.values()) > 0.05  # every layer sends: the agreement means something
    with pytest.raises(UserError, match="delta encoders and a shortcut"):
        simulate(g, x=x, mode="fixed", engine="lava", progress=False)
