"""The one family of errors a user causes: a bad file, flag, parameter or data set.

The command-line tools print a :class:`UserError` as one line and exit with code 2; any other
exception is a bug of ours and keeps its traceback.  ``UserError`` is a ``ValueError`` so code that
caught ``ValueError`` before keeps working.
"""
from __future__ import annotations


class UserError(ValueError):
    """Input the tools cannot use; the message names the file, flag or node and what to do."""


class ModelFileError(UserError):
    """A model file that cannot be loaded; the message says why and what to do."""


class GraphError(UserError):
    """An invalid graph; the message names the node at fault."""


class TraceError(UserError):
    """The model uses something the IR cannot express; the message names it."""


class DataError(UserError):
    """Data that does not fit the network (shape, layout, labels)."""
