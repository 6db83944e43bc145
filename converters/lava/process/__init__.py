"""Lava processes of ilif-deploy (kept in a folder of their own: Lava scans it for ProcessModels)."""
from ilif_deploy.converters.lava.compat import require_lava

require_lava()

from ilif_deploy.converters.lava.process.ilif import ILIF, PyILIFModelFixed, PyILIFModelFloat  # noqa: E402
from ilif_deploy.converters.lava.process.recorder import FileRecorder  # noqa: E402

__all__ = ["ILIF", "PyILIFModelFloat", "PyILIFModelFixed", "FileRecorder"]
