"""Result file names that never overwrite an earlier run's (two sessions on one date used to)."""

from __future__ import annotations

from pathlib import Path


def free_stem(folder: Path, stem: str, suffixes: tuple[str, ...] = (".json", ".md")) -> str:
    """``stem``, or ``stem-2``, ``-3``, ... : the first whose files in ``folder`` (one per suffix) are all new."""
    n = 1
    while True:
        candidate = stem if n == 1 else f"{stem}-{n}"
        if not any((folder / f"{candidate}{s}").exists() for s in suffixes):
            return candidate
        n += 1
