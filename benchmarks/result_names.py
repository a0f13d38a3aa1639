"""Result file names that never overwrite an earlier run's (two sessions on one date used to)."""

from __future__ import annotations

from pathlib import Path


def free_stem(folder: Path, stem: str, suffixes: tuple[str, ...] = (".json", ".md")) -> Path:
    """``folder/stem``, or ``folder/stem-2``, ``-3``, ... : the first whose files (one per suffix) are all new."""
    n = 1
    while True:
        candidate = folder / (stem if n == 1 else f"{stem}-{n}")
        if not any(candidate.with_name(candidate.name + s).exists() for s in suffixes):
            return candidate
        n += 1
