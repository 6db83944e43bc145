"""The graph zoo: small networks with every op kind, built by hand (the traced models are fixtures)."""
from __future__ import annotations

import json
import shutil

import h5py
import nir
import numpy as np

from ilif_deploy import ir as N
from ilif_deploy.ir.graph import Graph, infer_shape
from ilif_deploy.neuron_step import ILIFParams


def chain_graph(in_shape, layers, T=3, encoding="sequence") -> Graph:
    """Input -> layers... -> Output, shapes inferred."""
    g = Graph(metadata={"timesteps": T})
    g.add(N.Input("input", tuple(in_shape), encoding=encoding))
    prev, shape = "input", tuple(in_shape)
    for node in layers:
        node.shape = infer_shape(node, [shape])
        g.add(node, [prev])
        prev, shape = node.name, node.shape
    g.add(N.Output("output", shape), [prev])
    return g.validate()


def toy_resnet(seed: int = 0, T: int = 3, C: int = 4, H: int = 6) -> Graph:
    """A small residual network with every op kind the Lava builder handles: stride-2 and 1x1 convs,
    an identity and a conv shortcut, BN after an add, a LIF layer, pooling + flatten + linear readout."""
    rng = np.random.default_rng(seed)
    p = ILIFParams.from_tau(1.1)

    def w(*shape, scale=0.5):
        return rng.normal(0, scale, shape).astype(np.float32)

    g = Graph(metadata={"timesteps": T, "source": "toy"})
    h = H // 2
    g.add(N.Input("input", (2, H, H)))
    g.add(N.Conv2d("conv0", (C, H, H), weight=w(C, 2, 3, 3, scale=1.0), bias=w(C, scale=0.3) + 0.5, padding=(1, 1)),
          ["input"])
    g.add(N.Neuron("a", (C, H, H), params=p), ["conv0"])
    g.add(N.Conv2d("conv1", (C, H, H), weight=w(C, C, 3, 3), bias=w(C) + 0.5, padding=(1, 1)), ["a"])
    g.add(N.Neuron("b", (C, H, H), params=p), ["conv1"])
    g.add(N.Conv2d("conv2", (C, H, H), weight=w(C, C, 3, 3), padding=(1, 1)), ["b"])
    g.add(N.Add("add", (C, H, H)), ["conv2", "a"])
    g.add(N.Affine("bn", (C, H, H), scale=rng.uniform(0.8, 1.5, C).astype(np.float32),
                   shift=w(C, scale=0.3) + 0.4), ["add"])
    g.add(N.Neuron("c", (C, H, H), params=p), ["bn"])
    g.add(N.Conv2d("down", (2 * C, h, h), weight=w(2 * C, C, 1, 1), stride=(2, 2)), ["c"])
    g.add(N.Conv2d("conv3", (2 * C, h, h), weight=w(2 * C, C, 3, 3), bias=w(2 * C) + 0.5, stride=(2, 2),
                   padding=(1, 1)), ["c"])
    g.add(N.Neuron("d", (2 * C, h, h), params=ILIFParams(lam=0.5, lam_u=0.0, lam_i=0.0)), ["conv3"])
    g.add(N.Conv2d("conv4", (2 * C, h, h), weight=w(2 * C, 2 * C, 3, 3), padding=(1, 1)), ["d"])
    g.add(N.Add("add2", (2 * C, h, h)), ["conv4", "down"])
    g.add(N.Neuron("e", (2 * C, h, h), params=p), ["add2"])
    g.add(N.AvgPool2d("pool", (2 * C, 1, 1), kernel=(h, h), stride=(h, h)), ["e"])
    g.add(N.Flatten("flat", (2 * C,)), ["pool"])
    g.add(N.Linear("fc", (5,), weight=w(5, 2 * C), bias=w(5)), ["flat"])
    g.add(N.Output("output", (5,)), ["fc"])
    return g.validate()


def maxpool_net(seed: int = 0) -> Graph:
    """neuron -> max-pool -> (conv + identity) -> neuron -> flatten -> linear."""
    rng = np.random.default_rng(seed)
    g = Graph(metadata={"timesteps": 4})
    g.add(N.Input("input", (2, 8, 8)))
    g.add(N.Conv2d("conv0", (4, 8, 8), weight=rng.normal(0, 1, (4, 2, 3, 3)).astype(np.float32),
                   bias=np.full(4, 0.3, np.float32), padding=(1, 1)), ["input"])
    g.add(N.Neuron("a", (4, 8, 8)), ["conv0"])
    g.add(N.MaxPool2d("mp", (4, 4, 4)), ["a"])
    g.add(N.Conv2d("conv1", (4, 4, 4), weight=rng.normal(0, 0.6, (4, 4, 3, 3)).astype(np.float32),
                   bias=np.full(4, 0.4, np.float32), padding=(1, 1)), ["mp"])
    g.add(N.Add("add", (4, 4, 4)), ["conv1", "mp"])
    g.add(N.Neuron("b", (4, 4, 4)), ["add"])
    g.add(N.Flatten("flat", (64,)), ["b"])
    g.add(N.Linear("fc", (3,), weight=rng.normal(0, 1, (3, 64)).astype(np.float32)), ["flat"])
    g.add(N.Output("output", (3,)), ["fc"])
    return g.validate()


def recurrent_net(seed: int = 0, T: int = 8) -> Graph:
    """linear -> recurrent hard-reset LIF with a synaptic current (the braille RNN's layer kind) -> linear ->
    synaptic current (LeakyIntegrator) -> ILIF -> linear; input gains of powers of two."""
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.6):
        return rng.normal(0, scale, shape).astype(np.float32)

    rec = ILIFParams(lam=0.8, v_th=1.0, lam_u=0.0, lam_i=0.0, reset="zero", compare=">")
    return chain_graph((8,), [
        N.Linear("fc1", weight=w(12, 8, scale=1.0), bias=w(12, scale=0.2)),
        N.RecurrentNeuron("rec", params=rec, weight=w(12, 12), bias=w(12, scale=0.1), syn_lam=0.5, in_scale=0.5),
        N.Linear("fc2", weight=w(6, 12, scale=1.0), bias=w(6, scale=0.2)), N.LeakyIntegrator("syn", lam=0.625),
        N.Neuron("ilif", params=ILIFParams.from_tau(2.0)), N.Linear("read", weight=w(3, 6, scale=1.0))],
        T=T, encoding="direct")


def recurrent_lif_net(syn_lam: float = 0.5, T: int = 16) -> Graph:
    """Spikes (8) -> Linear -> recurrent IF (integer recurrent weights) -> Linear -> [current] -> LIF: what netx
    writes as dense_rec + dense blocks, and Loihi's integers hold exactly."""
    rng = np.random.default_rng(9)
    lif = dict(lam_u=0.0, lam_i=0.0, reset="zero", v_reset=0.0, compare=">")
    return chain_graph((8,), [
        N.Linear("fc1", weight=rng.integers(-1, 4, (6, 8)).astype(np.float32)),
        N.RecurrentNeuron("rec", params=ILIFParams(lam=1.0, v_th=3.0, **lif),
                          weight=rng.integers(-2, 3, (6, 6)).astype(np.float32), syn_lam=syn_lam),
        N.Linear("fc2", weight=rng.integers(-1, 4, (4, 6)).astype(np.float32)), N.LeakyIntegrator("cur", lam=syn_lam),
        N.Neuron("n2", params=ILIFParams(lam=0.5, v_th=2.0, **lif))], T=T)


def golden_net(golden, case: str):
    """(graph, x [T, n]) for a golden case: sequence input -> identity synapse -> one ILIF layer of the case's
    tau -> sum readout."""
    x = golden[f"{case}/x"]
    T, n = x.shape
    return chain_graph((n,), [N.Linear("syn", weight=np.eye(n, dtype=np.float32)),
                              N.Neuron("ilif", params=ILIFParams.from_tau(float(golden[f"{case}/tau"]))),
                              N.Linear("read", weight=np.ones((1, n), np.float32))], T=T), x


def random_frames(graph: Graph, n: int, seed: int = 1) -> np.ndarray:
    """``n`` uniform [0, 1) frames of the graph's input shape (direct encoding)."""
    return np.random.default_rng(seed).random((n, *graph.input_shape), dtype=np.float32)


# ----------------------------------------------------------------------------- hostile inputs
def wrap_net() -> Graph:
    """Linear(8 -> 1, w = 1) -> LIF fed 16384 on all inputs: a sum of 2**32 in Lava's int32 Dense."""
    return chain_graph((8,), [N.Linear("fc", weight=np.ones((1, 8), np.float32)),
                              N.Neuron("n", params=ILIFParams(lam=0.5, lam_u=0.0, lam_i=0.0)),
                              N.Linear("read", weight=np.ones((1, 1), np.float32))], T=2, encoding="direct")


def conv_wrap_net() -> Graph:
    """Conv2d(1 -> 1, 3x3, w = 1) fed 100.0: 9 x 128 x 25600 passes Lava's 24-bit Conv accumulator."""
    return chain_graph((1, 4, 4), [N.Conv2d("conv", weight=np.ones((1, 1, 3, 3), np.float32), bias=None, padding=1),
                                   N.Neuron("n", params=ILIFParams(lam=0.5, lam_u=0.0, lam_i=0.0)), N.Flatten("f"),
                                   N.Linear("read", weight=np.ones((1, 16), np.float32))], T=2, encoding="direct")


def hard_reset_lif_net() -> Graph:
    """Spikes (16) -> Linear -> LIF (hard reset, '>'): a network netx can express (the netx seed file)."""
    lif = ILIFParams(lam=0.5, v_th=2.0, lam_u=0.0, lam_i=0.0, reset="zero", v_reset=0.0, compare=">")
    return chain_graph((16,), [N.Linear("fc", weight=np.random.default_rng(1).integers(-2, 4, (8, 16)).astype(
        np.float32)), N.Neuron("n", params=lif)], T=4)


#: the file kinds of :func:`seed_files`, each read by a CLI in the corruption suite and the census
SEED_KINDS = ("model", "ir", "nir", "lava", "netx", "npz", "npy", "netx_recurrent", "lava_recurrent")


def seed_files(d, graph) -> dict:
    """One valid file of every kind we read, written into folder ``d`` from the digits ILIF ``graph`` (and the
    recurrent zoo nets for netx dense_rec blocks and a recurrent .lava.h5): {kind: path}."""
    from ilif_deploy.converters.lava import export_graph as lava_export
    from ilif_deploy.converters.netx import export_graph as netx_export
    from ilif_deploy.converters.nir import export_graph as nir_export
    from ilif_deploy.examples import model_path

    files = {"model": d / "seed.pt", "ir": d / "seed.ir.npz", "nir": d / "seed.nir", "lava": d / "seed.lava.h5",
             "netx": d / "seed.net", "npz": d / "seed.npz", "npy": d / "seed.npy",
             "netx_recurrent": d / "seed_rec.net", "lava_recurrent": d / "seed_rec.lava.h5"}
    shutil.copy(model_path("digits_ilif"), files["model"])
    graph.save(files["ir"])
    nir_export(graph, files["nir"])
    lava_export(graph, files["lava"])
    x = np.random.default_rng(0).random((12, 1, 8, 8)).astype(np.float32)
    np.savez(files["npz"], x=x, y=np.arange(12) % 10)
    np.save(files["npy"], x)
    netx_export(hard_reset_lif_net(), files["netx"])
    netx_export(recurrent_lif_net(), files["netx_recurrent"])  # dense_rec blocks and a decaying current
    lava_export(recurrent_lif_net(), files["lava_recurrent"])  # a recurrent synapse and synaptic currents
    return files


def corruptions(data: bytes, rng):
    """Seeded damage to a file's bytes, as ``(what, bytes)``: empty, three truncations, five bit flips, random
    bytes (``rng``: a ``random.Random``)."""
    n = len(data)
    yield "empty", b""
    for cut in (8, n // 3, n - 1):
        yield f"truncated at {cut}", data[:cut]
    for _ in range(5):
        b = bytearray(data)
        pos = rng.randrange(n)
        b[pos] ^= 1 << rng.randrange(8)
        yield f"bit flip at {pos}", bytes(b)
    yield "random bytes", bytes(rng.randrange(256) for _ in range(min(n, 4096)))


def hdf5_trick(h, trick: str, secret, other) -> None:
    """Make the open HDF5 file ``h`` reach outside itself: ``external`` storage in the file ``secret``, an
    external ``link`` to it, or a ``virtual`` dataset stitched from the file ``other``."""
    if trick == "external":
        h.create_dataset("stolen", shape=(1024,), dtype="u1", external=[(str(secret), 0, 1024)])
    elif trick == "link":
        h["elsewhere"] = h5py.ExternalLink(str(secret), "/x")
    else:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "x", shape=(4,))
        h.create_virtual_dataset("stitched", layout)


def scaled(key: str, factor: float):
    """An edit of a NIR node's HDF5 group: field ``key`` multiplied by ``factor``."""
    def edit(g):
        g[key][...] = g[key][()] * factor
    return edit


def metadata_lam(g) -> None:
    """An edit of our NIR neuron's group: ``lam`` changed in its ilif_deploy metadata only."""
    entry = json.loads(g["metadata/ilif_deploy"][()])
    entry["attrs"]["params"]["lam"] = 0.5
    del g["metadata/ilif_deploy"]
    g["metadata/ilif_deploy"] = json.dumps(entry)


#: the HDF5 group of the first neuron layer in our NIR export of the digits model
NEURON1 = "node/nodes/neuron1"


def edited_copy(src, dst, edit, group: str = "/"):
    """A copy of the HDF5 file ``src`` at ``dst`` with ``edit`` applied to its group ``group``, as another
    tool would (``dst`` returned)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h:
        edit(h[group])
    return dst


def zeroed_conv_nir(path, key: str):
    """A valid NIR Conv2d file (node '0') at ``path``, then its field ``key`` set to 0 by another tool."""
    nodes = {"input": nir.Input(np.array([2, 8, 8])),
             "0": nir.Conv2d(input_shape=(8, 8), weight=np.ones((2, 2, 3, 3), np.float32), stride=1, padding=0,
                             dilation=1, groups=1, bias=np.zeros(2, np.float32)),
             "output": nir.Output(np.array([2, 6, 6]))}
    nir.write(str(path), nir.NIRGraph(nodes, [("input", "0"), ("0", "output")], type_check=False))
    with h5py.File(path, "r+") as h:
        h[f"node/nodes/0/{key}"][...] = 0
    return path


def mismatched_nir(path):
    """A NIR file whose Affine of 4 feeds a LIF with parameters for 7 neurons."""
    lif = nir.LIF(tau=np.full(7, 0.01, np.float32), r=np.ones(7, np.float32), v_leak=np.zeros(7, np.float32),
                  v_threshold=np.ones(7, np.float32), v_reset=np.zeros(7, np.float32))
    nodes = {"input": nir.Input(np.array([4])), "fc": nir.Affine(np.ones((4, 4), np.float32), np.zeros(4, np.float32)),
             "lif": lif, "output": nir.Output(np.array([7]))}
    nir.write(str(path), nir.NIRGraph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False))
    return path


def file_size_limit(limit: int):
    """A preexec_fn: files the child writes stop at ``limit`` bytes (EFBIG), as on a full disk."""
    import resource
    import signal

    def limit_it():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_it
