"""The error hierarchy.

``ConfigError`` stops a run before any file is touched (exit status 2).
``FileError`` ends one file with a stable reason code; the batch goes on.
``StorageError`` stops a run whose output file system takes no more writes (exit status 4; resumable).
Messages never carry header values, OCR text or input paths; nor do warnings
(:func:`withhold_warning_messages`).
"""

from __future__ import annotations

import errno
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


#: ``1``: an internal error of the command line ends with its traceback, which may name input paths or quote
#: header values (for a developer inside the clinical network); otherwise only its type and where it was raised.
TRACEBACK_ENV = "DEID_TRACEBACK"


class DeidError(Exception):
    """Base of every error deid raises on purpose."""


class ConfigError(DeidError):
    """Invalid configuration: unknown profile, bad key, bad paths. Stops the run."""


class ProfileError(ConfigError):
    """A profile that does not load or validate; the message names the profile and row."""


class StorageError(DeidError):
    """OUTPUT's or the private folder's file system refused a write (full, over quota, read-only): the run
    stops, what it recorded stays, and the same command resumes it once there is room (exit status 4).
    The message is the system's reason only."""


#: errno values of a file system that takes no more writes: every later file would fail the same way.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: Reason code of a file whose output could not be written for one of them; never recorded (resume redoes it).
STORAGE_CODE = "output-storage"


def storage_error(exc: BaseException) -> StorageError | None:
    """A :class:`StorageError` for an ``OSError`` of :data:`STORAGE_ERRNOS` (SQLite's "disk is full"
    included), else None."""
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return StorageError(os.strerror(exc.errno))
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return StorageError(os.strerror(errno.ENOSPC))
    return None


@contextmanager
def storage_stops() -> Iterator[None]:
    """Raise what :func:`storage_error` makes of an error inside the block; any other error as it is."""
    try:
        yield
    except Exception as exc:
        full = storage_error(exc)
        if full is None:
            raise
        raise full from None


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
