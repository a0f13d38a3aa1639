"""Frozen run settings shared by the driver and every worker.

A ``RunContext`` is built once by the CLI, validated (``ConfigError`` on any problem, before a file
is touched) and shipped to Dask workers. It holds the secret key: it is never logged or written to
OUTPUT.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError

KEY_MIN_BYTES = 16
#: Files per Dask task when ``--batch-size`` is not given: a run that scans pixels spends ~0.1-1 s a
#: file, a header-only run ~4 ms, next to ~9 ms of driver CPU per task (``benchmarks/README.md``).
BATCH_SIZE_SCAN = 16
BATCH_SIZE_HEADER_ONLY = 64
PIXEL_CHOICES = ("profile", "all", "triage", "none")
#: The file-creation mask of a run (its driver and workers): nothing written is readable by others.
RUN_UMASK = 0o027
DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RunContext:
    """Everything a worker needs to process one file; picklable, no open handles."""

    profile: Any  # deid_pipeline.profile.Profile
    key: bytes = field(repr=False)
    output_dir: Path
    pixels: str = "profile"  # "profile" follows the profile's rule; else overrides it
    device: str = "auto"
    detector: str = "auto"
    batch_size: int = 16
    tool_version: str = __version__
    debug: bool = False
    max_decoded_bytes: int = 256 * 2**20  # larger multi-frame images are scanned in chunks of frames
    max_batch_bytes: int = 256 * 2**20  # input bytes per batch (a bigger file goes alone)
    max_file_bytes: int | None = None  # set from the worker memory limit: bigger inputs fail with a reason
    linkage: bool = False  # return original-to-pseudonym rows to the driver (--linkage)
    opencv_threads: int | None = None  # OpenCV threads per worker (deid's local clusters); None: OMP_NUM_THREADS
    quiet: bool = False  # --quiet: workers log errors only (what they log reaches the driver's stderr)

    @property
    def pixel_rule(self) -> str:
        """Which images are scanned: the command line wins over the profile."""
        return self.profile.settings.pixels if self.pixels == "profile" else self.pixels

    @property
    def scans_pixels(self) -> bool:
        """Whether any image may be scanned (else the run is header-only and needs no detector)."""
        return self.pixel_rule != "none" and self.profile.settings.pixel_mode != "none"


def read_key_file(path: Path) -> bytes:
    """Read a secret key file; refuse one that others can read or that is too short."""
    try:
        st = path.stat()
    except OSError:
        raise ConfigError("key file: cannot be read (missing or no permission)") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("key file: not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError("key file: readable by group or others; run chmod 600 on it")
    try:
        data = path.read_bytes()
    except OSError:
        raise ConfigError("key file: cannot be read (no permission)") from None
    key = data.strip()
    if len(key) < KEY_MIN_BYTES:
        raise ConfigError(f"key file: shorter than {KEY_MIN_BYTES} bytes")
    return key


def write_new_key(path: Path) -> bytes:
    """Create a random 32-byte key (hex) at ``path`` with mode 0600 and return it."""
    key = secrets.token_hex(32).encode()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


def check_paths(input_dir: Path, output_dir: Path, private_dir: Path) -> None:
    """Refuse overlapping INPUT/OUTPUT/private folders and a missing INPUT."""
    if not input_dir.exists():
        raise ConfigError("INPUT does not exist")
    if not input_dir.is_dir():
        raise ConfigError("INPUT is not a folder")
    inp = input_dir.resolve()
    out = output_dir.resolve()
    priv = private_dir.resolve()
    if out == inp or inp in out.parents:
        raise ConfigError("OUTPUT is inside INPUT; choose an OUTPUT outside the input tree")
    if out in inp.parents:
        raise ConfigError("INPUT is inside OUTPUT; choose separate folders")
    if priv == out or out in priv.parents:
        raise ConfigError("the private journal must be outside OUTPUT")
    if priv == inp or inp in priv.parents:
        raise ConfigError("the private journal must be outside INPUT")
    if out.exists() and not out.is_dir():
        raise ConfigError("OUTPUT exists and is not a folder")


def check_outside(path: Path | None, what: str, **folders: Path | None) -> None:
    """Refuse ``path``, a file a command writes, at or under any of ``folders`` (name: folder; links
    followed): INPUT is never modified and OUTPUT is what is shared. The message names ``what`` and the
    folder, never a path."""
    if path is None:
        return
    target = path.resolve()
    for name, folder in folders.items():
        if folder is not None and (target == folder.resolve() or folder.resolve() in target.parents):
            raise ConfigError(f"{what} must be outside {name}")
