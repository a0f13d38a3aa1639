"""Walk an export tree once, in a stable order, without leaving it.

Files are recognised as DICOM later, by content (``pipeline.sniff``); here every regular file is an
input. Symbolic links that resolve outside INPUT are reported, never followed; linked folders are
not descended (they would loop or duplicate).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One input: its path relative to INPUT, whether it is a link that leaves INPUT, its size in bytes."""

    rel: str
    outside_link: bool = False
    size: int = 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # unreadable: load_file records why


def walk_inputs(root: Path) -> Iterator[Candidate]:
    """Yield every file under ``root`` (sorted per folder, depth first)."""
    root_real = root.resolve()
    stack: list[Path] = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            log.warning("a folder could not be listed; its files are not in this run")
            continue
        subdirs: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            if entry.is_symlink():
                target = path.resolve()
                inside = target == root_real or root_real in target.parents
                if target.is_dir():
                    continue  # linked folders are not descended
                if not target.is_file():
                    continue  # dangling link: nothing to read
                yield Candidate(rel, outside_link=not inside, size=0 if not inside else _size(target))
            elif entry.is_dir(follow_symlinks=False):
                subdirs.append(path)
            elif entry.is_file(follow_symlinks=False):
                yield Candidate(rel, size=_size(path))
        stack.extend(reversed(subdirs))
