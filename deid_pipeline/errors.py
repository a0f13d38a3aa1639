"""The error hierarchy.

``ConfigError`` stops a run before any file is touched (exit status 2).
``FileError`` ends one file with a stable reason code; the batch goes on.
Messages never carry header values, OCR text or input paths; nor do warnings
(:func:`withhold_warning_messages`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TextIO


class DeidError(Exception):
    """Base of every error deid raises on purpose."""


class ConfigError(DeidError):
    """Invalid configuration: unknown profile, bad key, bad paths. Stops the run."""


class ProfileError(ConfigError):
    """A profile that does not load or validate; the message names the profile and row."""


class FileError(DeidError):
    """One file cannot be de-identified. ``code`` is a stable reason code for the manifest."""

    def __init__(self, code: str, message: str, status: str = "quarantined") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class SkipFile(FileError):
    """A file deliberately not written (DICOMDIR, not DICOM)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, status="skipped")


_warnings_log = logging.getLogger("deid_pipeline.warnings")


def _withheld(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for deid's processes: the warning's class and where it was raised,
    never its message (pydicom's quote the value they reject, e.g. a UID holding an MRN)."""
    where = "/".join(Path(filename).parts[-2:])
    _warnings_log.debug("%s from %s:%d withheld (its message may quote a value)", category.__name__, where, lineno)


def withhold_warning_messages() -> None:
    """Route every Python warning of this process to :func:`_withheld`: a dependency's warning text
    (pydicom validating a value it reads or writes) never reaches stderr or a log. Idempotent."""
    warnings.showwarning = _withheld
