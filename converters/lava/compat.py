"""Make lava-nc 0.10.0 work on Python 3.11 / numpy 2 -- the one place of workarounds for Lava.

Two source fixes, applied in memory when (and only when) their module is imported:

1. ``lava/magma/compiler/var_model.py`` declares dataclass fields with an instance as default
(``x: ByteEncoder = ByteEncoder()``).  Python 3.11 rejects unhashable instance defaults
("mutable default ... use default_factory"), so ``import lava.magma...`` fails.  Upstream Lava is
archived, so no fix will come.  Instead of editing site-packages, :func:`install` puts a
meta-path finder in front of the import system that, when (and only when) that one module is
loaded, compiles its source with those fields rewritten to
``field(default_factory=ByteEncoder)``.  Nothing on disk changes; any other module loads as usual.

2. ``lava/proc/conv/utils.py`` (the CPU ``Conv`` model): ``groups`` arrives as an ``int8`` numpy
   value and ``input_.shape[-1] % groups`` raises ``OverflowError`` under numpy 2's promotion rules
   as soon as a layer has 128 or more channels.  The fix converts ``groups`` to a Python int first.

:func:`require_lava` installs the fix and imports Lava, or raises :class:`LavaUnavailable` with
the command that installs it.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import re
import sys

from ilif_deploy.errors import UserError

PATCHED_MODULE = "lava.magma.compiler.var_model"
CONV_UTILS_MODULE = "lava.proc.conv.utils"
INSTALL_HINT = ("Lava is not installed in this environment. Install it with scripts/setup.sh, or by hand: "
                "pip install -r requirements-lava.txt && "
                "pip install --no-deps --ignore-requires-python lava-nc==0.10.0")

# `name: Cls = Cls()` -> `name: Cls = field(default_factory=Cls)` (same class on both sides only).
_INSTANCE_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*)(\w+)(\s*=\s*)\2\(\)\s*$", re.M)


class LavaUnavailable(UserError, ImportError):
    """Lava (lava-nc) cannot be imported here; the message says how to install it."""


def patch_source(source: str) -> str:
    """Rewrite dataclass fields whose default is an instance of their own type to a default_factory."""
    return _INSTANCE_DEFAULT.sub(r"\1\2\3__import__('dataclasses').field(default_factory=\2)", source)


_CONV_GROUPS_LINE = "    if input_.shape[-1] % groups != 0:\n"


def patch_conv_utils(source: str) -> str:
    """Make ``conv_scipy`` use a Python int for ``groups`` (numpy 2 refuses ``256 % np.int8(1)``)."""
    return source.replace(_CONV_GROUPS_LINE, "    groups = int(groups)\n" + _CONV_GROUPS_LINE, 1)


PATCHES = {PATCHED_MODULE: patch_source, CONV_UTILS_MODULE: patch_conv_utils}


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):
        # Compile from the patched source; never use (or write) the unpatched cached bytecode.
        source = self.get_data(self.path).decode("utf-8")
        return compile(PATCHES[fullname](source), self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return spec
        spec.loader = _PatchedLoader(fullname, spec.origin)
        return spec


def install() -> None:
    """Install the import fix (idempotent).  Must run before anything imports ``lava.magma``."""
    if not any(isinstance(f, _VarModelFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _VarModelFinder())


def _allow_lava_fork() -> None:
    """Lava's runtime calls ``multiprocessing.set_start_method('fork')`` (unforced) at import, which
    raises if anything already fixed the start method -- even to 'fork' (torch.fx tracing does, by
    asking for it).  When the method already is 'fork', forget that choice so Lava can make it again;
    any other method is a real conflict and is reported."""
    import multiprocessing as mp

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    ctx = mp.context._default_context
    current = mp.get_start_method(allow_none=True)
    if current == "fork":
        ctx._actual_context = None
    elif current is not None:
        raise LavaUnavailable(f"the multiprocessing start method is already {current!r}; Lava's CPU backend needs "
                              f"'fork' (do not set another start method before using Lava)")


def require_lava() -> None:
    """Install the fix and check that Lava imports; raises :class:`LavaUnavailable` otherwise."""
    install()
    try:
        import lava  # noqa: F401
        _allow_lava_fork()
        import lava.magma.core.process.process  # noqa: F401  (starts Lava's runtime machinery)
        import lava.magma.core.run_configs  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "lava":
            raise LavaUnavailable(INSTALL_HINT) from None
        raise LavaUnavailable(f"Lava is installed but one of its dependencies is missing ({e}). "
                              + INSTALL_HINT.replace("Lava is not installed in this environment. ", "")) from None


NETX_INSTALL_HINT = ("lava-dl's netx is not installed in this environment. Install it with scripts/setup.sh, or by "
                     "hand: pip install matplotlib 'opencv-python-headless<5' && "
                     "pip install --no-deps --ignore-requires-python lava-dl==0.6.0")


def require_netx():
    """Import and return ``lava.lib.dl.netx`` (lava-dl 0.6.0); raises :class:`LavaUnavailable` otherwise.

    Fix 3: netx imports ``lava.lib.dl.slayer``, whose ``__init__`` imports its object-detection code, which
    imports ``torchvision`` at module level.  netx never calls it, and torchvision cannot be imported against
    the CPU torch here (``operator torchvision::nms does not exist``).  A stand-in ``torchvision`` (with empty
    ``ops`` and ``transforms``) sits in ``sys.modules`` during that one import and is taken out afterwards."""
    import types

    require_lava()
    names = ("torchvision", "torchvision.ops", "torchvision.transforms")
    stand_ins = []
    if "torchvision" not in sys.modules:
        stand_ins = [types.ModuleType(n) for n in names]
        stand_ins[0].ops, stand_ins[0].transforms = stand_ins[1], stand_ins[2]
        sys.modules.update(zip(names, stand_ins))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # slayer prints a notice about an optional toolbox
            import lava.lib.dl.netx as netx
    except ModuleNotFoundError as e:
        raise LavaUnavailable(f"{NETX_INSTALL_HINT} (missing: {e.name})") from None
    finally:
        for n, m in zip(names, stand_ins):
            if sys.modules.get(n) is m:
                del sys.modules[n]
    return netx


install()
