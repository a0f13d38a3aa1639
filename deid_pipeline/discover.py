"""Walk an export tree once, in a stable order, without leaving it, accounting for every entry.

Files are recognised as DICOM later, by content (``pipeline.sniff``); here every regular file is an
input. Every other entry that could hold or name an input becomes an input too, one that is recorded
without being read (:attr:`Candidate.unread`, a reason code for its manifest record), so that nothing
under INPUT goes unaccounted for: symbolic links that resolve outside INPUT (never followed), links to
folders (not descended: they would loop or repeat files), links to nothing (dangling, or a loop of
links), FIFOs, sockets and devices (opening a FIFO would block the run), and folders that cannot be
listed (their files are not in the run: the record says so, and the run ends with status 3).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Reason code -> (manifest status, message) for the entries recorded without being read.
UNREAD: dict[str, tuple[str, str]] = {
    "link-outside-input": ("skipped", "a symbolic link that leaves INPUT; not followed"),
    "linked-folder": ("skipped", "a symbolic link to a folder; not descended (it could loop or repeat files): "
                                 "give the folder itself as INPUT, or copy it in, to process its files"),
    "dangling-link": ("skipped", "a symbolic link to nothing (its target is missing, or the links loop)"),
    "not-a-regular-file": ("skipped", "a FIFO, socket or device; not read"),
    "folder-unreadable": ("failed", "a folder that could not be listed; the files in it are not in this run"),
}


@dataclass(frozen=True)
class Candidate:
    """One input: its path relative to INPUT, its size in bytes, and, for an entry recorded without
    being read, the reason code (a key of :data:`UNREAD`)."""

    rel: str
    size: int = 0
    unread: str = ""

    @property
    def outside_link(self) -> bool:
        """A symbolic link that resolves outside INPUT."""
        return self.unread == "link-outside-input"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # unreadable: load_file records why


def _link(path: Path, rel: str, root_real: Path) -> Candidate:
    """A symbolic link: an input when it resolves to a regular file inside INPUT, else an unread entry."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target or a loop of links (RuntimeError before Python 3.13)
        return Candidate(rel, unread="dangling-link")
    if target.is_dir():
        return Candidate(rel, unread="linked-folder")
    if not (target == root_real or root_real in target.parents):
        return Candidate(rel, unread="link-outside-input")
    if not target.is_file():
        return Candidate(rel, unread="not-a-regular-file")
    return Candidate(rel, size=_size(target))


def walk_inputs(root: Path) -> Iterator[Candidate]:
    """Yield every entry under ``root`` that is or names an input (sorted per folder, depth first)."""
    root_real = root.resolve()
    stack: list[Path] = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            log.warning("a folder could not be listed; its files are not in this run (see the manifest)")
            yield Candidate(folder.relative_to(root).as_posix(), unread="folder-unreadable")
            continue
        subdirs: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            try:
                if entry.is_symlink():
                    yield _link(path, rel, root_real)
                elif entry.is_dir(follow_symlinks=False):
                    subdirs.append(path)
                elif entry.is_file(follow_symlinks=False):
                    yield Candidate(rel, size=_size(path))
                else:
                    yield Candidate(rel, unread="not-a-regular-file")
            except OSError:  # the entry vanished or cannot be examined: recorded, load_file says why
                yield Candidate(rel)
        stack.extend(reversed(subdirs))
