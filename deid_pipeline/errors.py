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
#: SQLite's primary result codes of the same (the private folder's index, rebuilt at every open), each with its
#: message (all that Python before 3.11 gives) and the errno to name: SQLITE_FULL, and SQLITE_IOERR, as SQLite
#: reports a sync or an allocation the file system refused (ENOSPC included: only a plain write's is SQLITE_FULL).
SQLITE_STORAGE = {13: ("database or disk is full", errno.ENOSPC), 10: ("disk I/O error", errno.EIO)}


def storage_error(exc: BaseException) -> StorageError | None:
    """A :class:`StorageError` for an ``OSError`` of :data:`STORAGE_ERRNOS` or an SQLite error of
    :data:`SQLITE_STORAGE`, else None."""
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return StorageError(os.strerror(exc.errno))
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+: extended, its low byte the primary code
        for primary, (message, number) in SQLITE_STORAGE.items():
            if (code is not None and code & 0xFF == primary) or (code is None and str(exc).startswith(message)):
                return StorageError(os.strerror(number))
    return None


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
