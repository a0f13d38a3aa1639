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


def read_manifest(out: Path) -> list[dict]:
    """The records of ``OUTPUT/manifest.jsonl``."""
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line]


def write_key(path: Path, data: bytes) -> Path:
    """A key file deid accepts: ``data``, mode 600."""
    path.write_bytes(data)
    path.chmod(0o600)
    return path
