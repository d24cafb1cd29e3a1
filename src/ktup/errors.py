"""Errors that the CLI reports as one clear line (no traceback)."""

from __future__ import annotations

import os
from typing import Optional


class KtupError(Exception):
    """Base class: any error a user can fix. The CLI prints ``str(err)`` on one line and exits 2."""


class DataError(KtupError):
    """Bad dataset input. Formats as ``FILE:LINE: message`` (line is 1-based, as an editor shows it)."""

    def __init__(self, message: str, path: Optional[os.PathLike | str] = None, line: Optional[int] = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "")
            where += ": "
        super().__init__(where + message)


class ConfigError(KtupError):
    """Bad configuration: unknown key, wrong type, value out of range. Names the key."""


class RunError(KtupError):
    """A run directory is missing, incomplete or corrupt."""
