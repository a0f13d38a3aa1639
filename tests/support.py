"""Helpers shared by the tests that drive ``deid`` through its command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def deid(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``python -m deid_pipeline.cli ARGS``, output captured, ``env`` added to ours."""
    return subprocess.run(
        [sys.executable, "-m", "deid_pipeline.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def installed_test_files(pattern: str = "*") -> list[Path]:
    """pydicom's and pydicom-data's installed test files matching ``pattern``, sorted
    (``pydicom.data.get_testdata_files`` also tries to download more: 15 s of timeouts offline)."""
    from pydicom.data.data_manager import DATA_ROOT, external_data_sources

    folders = [Path(DATA_ROOT, "test_files")] + [Path(s.data_path) for s in external_data_sources().values()
                                                 if hasattr(s, "data_path")]
    return sorted(p for folder in folders for p in folder.glob(pattern) if p.is_file())


def read_manifest(out: Path) -> list[dict]:
    """The records of ``OUTPUT/manifest.jsonl``."""
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line]


def write_key(path: Path, data: bytes) -> Path:
    """A key file deid accepts: ``data``, mode 600."""
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def remove_orphan_semaphores(since: float) -> int:
    """Unlink the POSIX semaphores multiprocessing made (``/dev/shm/sem.mp-*``) since ``since`` that no
    living process maps: a SIGKILL of a whole ``deid run`` kills its resource tracker too, which would
    have unlinked them. Returns how many were removed."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return 0
    fresh = {p for p in shm.glob("sem.mp-*") if p.stat().st_mtime >= since - 1}
    if not fresh:
        return 0
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # the process ended, or is not ours to read
            continue
        fresh = {p for p in fresh if str(p) not in text}
    for p in fresh:
        p.unlink(missing_ok=True)
    return len(fresh)
