"""Signals held over code that must not be interrupted by an exception: the one mechanism for every place where
a signal handler's exception would be lost or fatal (standard library only: the console scripts' entry point uses
it before anything else is imported)."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then deliver them to the handlers in force before.

    For code that calls back into Python from C or C++ where an exception raised by a signal handler is lost
    or fatal.  h5py keeps its objects in a weak-value registry, and a KeyboardInterrupt raised inside that
    registry's callback is printed as "Exception ignored" and lost: 28 of 30 Ctrl-Cs sent during a 2 s
    h5py write ended in exit 0 (0 of 30 with this hold).  torch's fake-tensor dispatch calls Python from C++:
    a KeyboardInterrupt raised there aborts the process (``terminate called after throwing an instance of
    'pybind11::error_already_set'``, SIGABRT) or is turned into an error and swallowed (exit 0); 2 and 1 of
    150 Ctrl-Cs during a ResNet-18 export.  An import that runs C code (numpy's) turns the exception into an
    ImportError: the console scripts import the tool with signals held.  Writing an HDF5 file takes about
    0.3 s per 10 MB (1.0 s for a 32 MB NIR file), so a signal waits that long at most."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    before = {s: signal.signal(s, lambda signum, frame: got.append(signum))
              for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(got):
            signal.raise_signal(s)
