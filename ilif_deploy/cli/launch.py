"""The console scripts' entry points: signals are handled from the first line, before the tool (torch, numpy)
is imported, so that a Ctrl-C or SIGTERM at any moment ends the run with one line and no traceback.

Only the standard library (and ilif_deploy.signals, which uses only it) is imported here: the window in which a
signal meets Python's own defaults is the interpreter's start-up, before any of our code runs."""
from __future__ import annotations

import importlib
import signal
import sys

from ..signals import signals_held


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that ``finally`` blocks (temp-file cleanup) run."""


#: signals that end a run cleanly (temp files removed, one line said)
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def terminate_as_exception() -> dict:
    """Make SIGTERM and SIGHUP exceptions (the default would end the process without cleanup); returns the
    previous handlers (empty where signals cannot be set: not the main thread)."""
    def handler(signum, frame):
        raise Terminated()

    try:
        return {s: signal.signal(s, handler) for s in ENDING_SIGNALS}
    except ValueError:
        return {}


def launch(tool: str) -> int:
    """Import ``ilif_deploy.cli.<tool>`` and run its ``main()`` with signals already handled; returns the exit
    code (130 interrupted, 143 terminated)."""
    terminate_as_exception()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        try:
            with signals_held():  # numpy's import turns an exception raised inside it into an ImportError
                main = importlib.import_module(f"ilif_deploy.cli.{tool}").main
            return main()
        finally:
            # after the tool's own handling: a late signal ends the process by default, never as a traceback
            for s in (*ENDING_SIGNALS, signal.SIGINT):
                signal.signal(s, signal.SIG_DFL)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143


def export() -> int:
    """``ilif-export``."""
    return launch("export")


def finetune() -> int:
    """``ilif-finetune``."""
    return launch("finetune")


def energy() -> int:
    """``ilif-energy``."""
    return launch("energy")


def simulate() -> int:
    """``ilif-simulate``."""
    return launch("simulate")
