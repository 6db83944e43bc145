"""Writing lava-dl netx networks: lava-dl's own loader (``lava.lib.dl.netx.hdf5.Network``) builds and runs what we
write, with the spikes of our runtime; what netx has no neuron for is refused by name."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ilif_deploy import ir as N
from ilif_deploy.cli import export
from ilif_deploy.converters.netx import export_graph, read_netx
from ilif_deploy.families import FeatureError
from ilif_deploy.ir import Graph
from ilif_deploy.neuron_step import ILIFParams
from ilif_deploy.runtime import run
from zoo import chain_graph, recurrent_lif_net

T = 16


def _lif(lam: float, v_th: float = 3.0) -> ILIFParams:
    return ILIFParams(lam=lam, v_th=v_th, lam_u=0.0, lam_i=0.0, reset="zero", v_reset=0.0, compare=">")


def _lif_net(seed: int = 0) -> Graph:
    """Spikes (8) -> Linear -> IF (lam 1) -> Linear + bias -> LIF (lam 1/2): integer weights, so Loihi's
    integers hold the float network exactly."""
    rng = np.random.default_rng(seed)
    return chain_graph((8,), [N.Linear("fc1", weight=rng.integers(-1, 4, (6, 8)).astype(np.float32), bias=None),
                              N.Neuron("n1", params=_lif(1.0)),
                              N.Linear("fc2", weight=rng.integers(-1, 4, (4, 6)).astype(np.float32),
                                       bias=np.array([0.5, 0.0, 1.0, 0.25], np.float32)),
                              N.Neuron("n2", params=_lif(0.5, 2.0))], T=T)


def _spikes(seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, 1, 8)) < 0.4).astype(np.float32)


def _run_in_netx(netx, path, x: np.ndarray, lag: int) -> np.ndarray:
    """Spikes of the last layer ``[T, *shape]`` (IR layout) of lava-dl's netx loading ``path``, run in Lava's
    fixed_pt models on spikes ``x`` ``[T, *input_shape]``; each netx block delays by one step (``lag`` blocks)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from ilif_deploy.converters.lava.network import from_lava, to_lava

    steps = x.shape[0] + lag
    net = netx.hdf5.Network(net_config=str(path))
    frames = to_lava(np.concatenate([x, np.zeros((lag,) + x.shape[1:], x.dtype)]), x.shape[1:])
    src = Source(data=np.moveaxis(frames, 0, -1))
    sink = Sink(shape=net.out.shape, buffer=steps)
    src.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        got = np.moveaxis(sink.data.get(), -1, 0)
    finally:
        net.stop()
    assert not got[:lag].any()
    out_shape = got.shape[1:][::-1] if got.ndim == 4 else got.shape[1:]
    return from_lava(got[lag:], out_shape)


def test_our_netx_file_loads_in_lava_dl_and_spikes_as_our_runtime(netx, tmp_path):
    g, x = _lif_net(), _spikes()
    _, rec = run(g, torch.as_tensor(x), record=["n1", "n2"])
    want = rec["n2"][:, 0].numpy()
    assert 5 <= want.sum() < want.size  # the test has spikes to compare
    info = export_graph(g, tmp_path / "lif.net")
    assert info["layers"] == 2 and info["rounding"] == 0.0
    # Loihi's fixed-point CUBA = our float runtime, exactly
    np.testing.assert_array_equal(_run_in_netx(netx, tmp_path / "lif.net", x[:, 0], lag=2), want)


def _conv_net() -> Graph:
    """Spikes (2, 6, 6) -> Conv2d 3x3 (stride 2) -> IF -> flatten -> Linear -> LIF (lam 1/2), integer weights."""
    rng = np.random.default_rng(7)
    return chain_graph((2, 6, 6), [N.Conv2d("conv", weight=rng.integers(-1, 3, (3, 2, 3, 3)).astype(np.float32),
                                            bias=np.array([0.0, 1.0, 0.5], np.float32), stride=(2, 2),
                                            padding=(1, 1)),
                                   N.Neuron("n1", params=_lif(1.0)), N.Flatten("flat"),
                                   N.Linear("fc", weight=rng.integers(-1, 3, (4, 27)).astype(np.float32)),
                                   N.Neuron("n2", params=_lif(0.5, 2.0))], T=T)


@pytest.mark.parametrize("make, blocks, layers", [
    (_conv_net, ["input", "conv", "flatten", "dense"], 2),
    (lambda: recurrent_lif_net(0.0, T), ["dense_rec", "dense"], 2),
    (lambda: recurrent_lif_net(0.5, T), ["dense_rec", "dense"], 2)], ids=["conv", "recurrent", "recurrent-current"])
def test_conv_recurrent_and_current_layers_load_in_lava_dl_and_spike_as_our_runtime(netx, tmp_path, make, blocks,
                                                                                     layers):
    import h5py

    g = make()
    x = (np.random.default_rng(2).random((T, 1, *g.input_shape)) < 0.4).astype(np.float32)
    _, rec = run(g, torch.as_tensor(x), record=["n2"])
    want = rec["n2"][:, 0].numpy()
    assert 5 <= want.sum() < want.size
    info = export_graph(g, tmp_path / "n.net")
    assert info["layers"] == layers and info["rounding"] == 0.0
    with h5py.File(tmp_path / "n.net") as f:
        assert [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))] == blocks
    np.testing.assert_array_equal(_run_in_netx(netx, tmp_path / "n.net", x[:, 0], lag=layers), want)
    back = read_netx(tmp_path / "n.net", timesteps=T)  # and our reader gives the same network back
    (last,) = back.inputs_of(back.output_node.name)
    assert torch.equal(run(back, torch.as_tensor(x), record=[last])[1][last], rec["n2"])


def test_a_conv_layer_without_a_neuron_is_refused_as_lava_dl_itself_fails_on_it(netx, tmp_path):
    """A dense layer without a neuron group is netx's readout; a conv layer without one netx cannot build (its
    create_conv reads the group unconditionally): our reader says so by name instead of guessing."""
    import h5py

    from ilif_deploy.converters.netx import NetxError

    export_graph(_conv_net(), tmp_path / "n.net")
    with h5py.File(tmp_path / "n.net", "r+") as f:
        del f["layer/1/neuron"]  # layer 0 is the input layer
        assert f["layer/1/type"][0].decode() == "conv"
    with pytest.raises(NetxError, match=r"layer 1 \(conv\) has no neuron group: lava-dl's netx cannot run that"):
        read_netx(tmp_path / "n.net", timesteps=T)
    with pytest.raises(KeyError):
        netx.hdf5.Network(net_config=str(tmp_path / "n.net"))


def test_netx_round_trip_through_our_reader_keeps_the_spikes(tmp_path):
    g, x = _lif_net(seed=3), _spikes(seed=4)
    export_graph(g, tmp_path / "lif.net")
    back = read_netx(tmp_path / "lif.net", timesteps=T)
    _, a = run(g, torch.as_tensor(x), record=["n1", "n2"])
    _, b = run(back, torch.as_tensor(x), record=["layer0", "layer1"])
    assert torch.equal(a["n1"].float(), b["layer0"].float()) and torch.equal(a["n2"].float(), b["layer1"].float())


def test_what_netx_cannot_express_is_refused_by_name(tmp_path):
    import io
    from contextlib import redirect_stderr, redirect_stdout

    g = _lif_net()
    g.nodes["n1"].params = ILIFParams(lam=0.5)  # the paper's neuron: both inhibitory units on
    with pytest.raises(FeatureError, match="netx: layer 'n1' \\(ilif\\) uses ciu .*netx has no ILIF neuron"):
        export_graph(g, tmp_path / "a.net")
    g = _lif_net()
    g.nodes["n2"].params = ILIFParams(lam=0.5, v_th=2.0, lam_u=0.0, lam_i=0.0)  # soft reset, '>='
    with pytest.raises(FeatureError, match=r"layer 'n2' \(lif\) uses reset:subtract .*netx's neurons are Loihi's"):
        export_graph(g, tmp_path / "b.net")
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = export.main(["example:digits_lif", "--target", "netx", "-o", str(tmp_path / "c.net")])
    assert rc == 2 and "layer 'neuron1' (lif) uses reset:subtract" in err.getvalue()  # the digits LIF: soft reset
    assert not (tmp_path / "c.net").exists()
