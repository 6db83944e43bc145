"""A sink that writes what it receives each step into a memory-mapped file.

Why not Lava's own ``RingBuffer`` sink or ``Monitor``: reading a Var back (``Var.get``) moves the
array over Lava's channels one value at a time -- measured here at about 16 us per value (6.4 s
for the 2048 x 200 spikes of one digits layer).  Lava runs each process model in a forked OS
process, so a file mapped by the model and read by the caller after the run is the cheap way out.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

import ilif_deploy.converters.lava.compat  # noqa: F401  (the Python 3.11 import fix, before lava.magma)


class FileRecorder(AbstractProcess):
    """Records ``a_in`` at every step into ``path`` (a ``np.memmap`` of ``dtype`` and shape
    ``(steps, *shape)``; step t goes to row ``(t - 1) % steps``)."""

    def __init__(self, *, shape, steps: int, path: str, dtype: str = "float32", name: str = None):
        super().__init__(shape=tuple(shape), steps=int(steps), path=str(path), dtype=str(dtype), name=name)
        self.a_in = InPort(shape=tuple(shape))


class _RecorderModel(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._mm = None

    def run_spk(self) -> None:
        data = self.a_in.recv()
        if self._mm is None:
            p = self.proc_params
            self._mm = np.memmap(p["path"], dtype=p["dtype"], mode="r+", shape=(p["steps"],) + tuple(p["shape"]))
        self._mm[(self.time_step - 1) % self._mm.shape[0]] = data

    def _stop(self):  # flush before the process goes away
        if self._mm is not None:
            self._mm.flush()
        super()._stop()


@implements(proc=FileRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFileRecorderFloat(_RecorderModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)


@implements(proc=FileRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFileRecorderFixed(_RecorderModel):
    # int64: the sum of several connections arrives exact; the reader wraps it to int32 and counts
    # (LavaNetwork.run), where Lava's int32 port would wrap it silently
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
