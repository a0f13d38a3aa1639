"""The error hierarchy.

``ConfigError`` stops a run before any file is touched (exit status 2).
``FileError`` ends one file with a stable reason code; the batch goes on.
Messages never carry header values, OCR text or input paths.
"""

from __future__ import annotations


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
