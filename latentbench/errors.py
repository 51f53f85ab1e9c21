"""Typed user-facing errors.

Every error a user can cause (bad flag, missing file, corrupt data) is a ``LatentbenchError``: the CLI
prints its one-line message and exits with code 2, no traceback. Each also subclasses the builtin a
Python caller would expect, so ``except FileNotFoundError`` keeps working.
"""

from __future__ import annotations


class LatentbenchError(Exception):
    """Base class: ``str(err)`` is one line naming what and where."""

    exit_code = 2


class UsageError(LatentbenchError, ValueError):
    """A flag or argument has a value we cannot use."""


class TaskNotFoundError(LatentbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(LatentbenchError, FileNotFoundError):
    """Benchmark data is missing (offline, or a wrong --data-dir)."""


class DataFormatError(LatentbenchError, ValueError):
    """A data file exists but cannot be parsed as the task card says."""


class DataModifiedError(LatentbenchError, ValueError):
    """A benchmark data file differs from the sha256 its task card pins (and no override was given)."""


class ModelLoadError(LatentbenchError, OSError):
    """A model spec (embedded name, hub id, local path) cannot be loaded."""


class SchemaError(LatentbenchError, ValueError):
    """A record does not validate against its JSON schema."""


class DatasetIntegrityError(LatentbenchError, ValueError):
    """A saved dataset is corrupt: hash mismatch, truncated file, missing array, bad reference."""
