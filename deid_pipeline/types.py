"""Values passed between stages. None of them may hold PHI (no header values, no OCR text, no paths)."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

#: Float Pixel Data, Double Float Pixel Data and Pixel Data, in tag order (where a read that stops
#: before the pixels stops).
PIXEL_DATA_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
#: The Photometric Interpretations (PS3.3 C.7.6.3.1.2, retired ones included) and the Samples per Pixel
#: each has: the pixel stage checks a header against it, the header stage keeps no other value.
PHOTOMETRIC_SAMPLES = {"MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1, "RGB": 3, "HSV": 3, "YBR_FULL": 3,
                       "YBR_FULL_422": 3, "YBR_PARTIAL_422": 3, "YBR_PARTIAL_420": 3, "YBR_ICT": 3, "YBR_RCT": 3,
                       "XYB": 3, "ARGB": 4, "CMYK": 4}


@dataclass(frozen=True)
class Region:
    """An axis-aligned box in stored-frame pixel coordinates (x = column, y = row, origin top-left)."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    source: str = "model"  # "model" (PP-OCRv4) | "textseg" | "glyph" | "static" | "fixed" (configs/fixed_regions)

    def clipped(self, rows: int, cols: int) -> "Region | None":
        """The part of this box inside a rows x cols frame, or None when nothing is left."""
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(cols, self.x + self.w), min(rows, self.y + self.h)
        if x1 <= x0 or y1 <= y0:
            return None
        return Region(x0, y0, x1 - x0, y1 - y0, self.score, self.source)

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


_JOIN_CELL = 5  # log2 of the side of ``join_boxes``' grid cells (32 pixels)
_JOIN_PLAIN_MAX = 64  # up to this many boxes ``join_boxes`` tries all pairs even with a ``reach``


def join_boxes(boxes: list[list[Any]], joinable: Callable[[list[Any], list[Any]], bool],
               reach: Callable[[list[Any]], float] | None = None) -> list[list[Any]]:
    """Union ``[x0, y0, x1, y1, score, ...]`` boxes pairwise wherever ``joinable`` says two belong together,
    until no two do (a joined box keeps the larger score when index 4 holds one). Each pass goes through
    the boxes in order and joins a box into the first earlier box of the pass (in the order they were
    started) it is joinable with.

    ``reach`` (integer coordinates only) promises that ``joinable(b, o)`` holds only where ``o`` shares a
    row with ``b`` and lies at most ``reach(b)`` columns to its side. The boxes tried for ``b`` are then
    only those registered in the 32-pixel grid cells of that band, which gives the same answer as trying
    every earlier box (speckle leaves ~1,000 glyph boxes in an ultrasound view: 0.34 s a call all
    pairs, 19 ms with the grid). A box is registered in the cells it covers when it starts, and in those
    it newly covers when it grows (boxes only grow: older registrations stay true). Up to 64 boxes, or
    with a box without height or width (it covers no cell), every pair is tried."""

    def grow(o: list[Any], b: list[Any]) -> None:
        o[0], o[1] = min(o[0], b[0]), min(o[1], b[1])
        o[2], o[3] = max(o[2], b[2]), max(o[3], b[3])
        if len(o) > 4:
            o[4] = max(o[4], b[4])

    changed = True
    if reach is None or len(boxes) <= _JOIN_PLAIN_MAX or any(b[3] <= b[1] or b[2] <= b[0] for b in boxes):
        while changed:
            changed = False
            out: list[list[Any]] = []
            for b in boxes:
                for o in out:
                    if joinable(b, o):
                        grow(o, b)
                        changed = True
                        break
                else:
                    out.append(list(b))
            boxes = out
        return boxes
    c = _JOIN_CELL
    while changed:
        changed = False
        out = []
        cells: list[tuple[int, int, int, int]] = []  # per box of ``out``: the cell range it is registered in
        grid: dict[tuple[int, int], list[int]] = {}
        for b in boxes:
            m = int(reach(b)) + 2  # the +2: rounding, and a box ending just left of the band
            tried: set[int] = set()
            for cy in range(b[1] >> c, ((b[3] - 1) >> c) + 1):
                for cx in range((b[0] - m) >> c, ((b[2] + m) >> c) + 1):
                    cell = grid.get((cx, cy))
                    if cell:
                        tried.update(cell)
            target = -1
            for i in sorted(tried):
                if joinable(b, out[i]):
                    target = i
                    break
            if target < 0:
                target, old = len(out), (0, 0, -1, -1)
                out.append(list(b))
            else:
                grow(out[target], b)
                old = cells[target]
                changed = True
            o = out[target]
            new = (o[0] >> c, o[1] >> c, (o[2] - 1) >> c, (o[3] - 1) >> c)
            if new != old:
                for cy in range(new[1], new[3] + 1):
                    for cx in range(new[0], new[2] + 1):
                        if not (old[0] <= cx <= old[2] and old[1] <= cy <= old[3]):
                            grid.setdefault((cx, cy), []).append(target)
                if target == len(cells):
                    cells.append(new)
                else:
                    cells[target] = new
        boxes = out
    return boxes


#: Called as long work on a file advances (each frame decoded or encoded, each detector call, each view
#: decided), so that whoever times the work out sees a file of many frames advance.
Heartbeat = Callable[[], None]
#: Told an input's sha256 and size as soon as they are known, before its parse.
Hashed = Callable[[str, int], None]
#: Told the index, in its batch, of the file whose own step (its load, or its finish) begins; ``None``
#: when a step that serves several files begins (the scan).
Current = Callable[[int | None], None]


@dataclass
class PixelReport:
    """What the pixel stage did to one file; goes into the manifest as ``pixel``."""

    scanned: bool = False
    reason: str = ""  # why not scanned: "no-pixel-data", "profile-pixels-none", "triage-skip", ...
    detector: str = ""
    weights_sha256: str = ""
    device: str = ""
    mode: str = ""  # "all-text" | "phi-text" | "none"
    frames: int = 0
    frames_scanned: int = 0  # distinct frames actually run through the detector
    regions_per_frame: list[list[list[int]]] = field(default_factory=list)  # [[x,y,w,h], ...] per frame
    reencoded_transfer_syntax: str = ""  # set when PixelData was rewritten
    pixel_data_unchanged: bool = True
    # overlay planes kept by clean graphics: boxes cleared per frame of each plane ("6000": [[[x,y,w,h]...]...]),
    # or planes removed because they could not be scanned (a header-only run, an unreadable plane)
    overlay_boxes: dict[str, list[list[list[int]]]] | None = None
    overlays_removed: int = 0
    # native Pixel Data held something in the bits outside Bits Stored (an overlay embedded there):
    # set to what a reader takes them for, the image values unchanged
    outside_bits_cleared: bool = False
    # native Pixel Data ran past the image (bytes after its last frame, no reader shows them): how
    # many bytes were cut
    trailing_pixel_bytes_removed: int = 0
    # compressed frames written as they came, without their codestreams' metadata (JPEG COM/APPn:
    # EXIF, comments, thumbnails; JPEG 2000 COM; bytes after the end marker): how many frames changed
    codestream_metadata_removed: int = 0
    # encapsulated frames past Number of Frames (no reader shows them): how many were dropped
    frames_past_count_removed: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scanned": self.scanned}
        if self.overlay_boxes is not None:
            out["overlay_boxes"] = self.overlay_boxes
        if self.overlays_removed:
            out["overlays_removed"] = self.overlays_removed
        if self.outside_bits_cleared:
            out["outside_bits_cleared"] = True
        if self.trailing_pixel_bytes_removed:
            out["trailing_bytes_removed"] = self.trailing_pixel_bytes_removed
        if self.codestream_metadata_removed:
            out["codestream_metadata_removed"] = self.codestream_metadata_removed
        if self.frames_past_count_removed:
            out["frames_past_count_removed"] = self.frames_past_count_removed
        if not self.scanned:
            out["reason"] = self.reason
            return out
        out.update(
            detector=self.detector,
            weights_sha256=self.weights_sha256,
            device=self.device,
            mode=self.mode,
            frames=self.frames,
            frames_scanned=self.frames_scanned,
            regions_redacted=sum(len(r) for r in self.regions_per_frame),
            boxes_per_frame=self.regions_per_frame,
            pixel_data_unchanged=self.pixel_data_unchanged,
        )
        if self.reencoded_transfer_syntax:
            out["reencoded_transfer_syntax"] = self.reencoded_transfer_syntax
        return out


@dataclass
class HeaderResult:
    """Outcome of the header stage: action counts only. ``phi_terms`` stays in memory, never serialised."""

    action_counts: dict[str, int] = field(default_factory=dict)
    phi_terms: frozenset[str] = frozenset()


@dataclass
class FileResult:
    """Outcome of one input file. Serialised (without ``rel_input``) into one manifest record."""

    rel_input: str  # input path relative to INPUT: private, goes only to the journal
    input_sha256: str
    input_size: int
    status: str  # "written" | "skipped" | "quarantined" | "failed"
    reason_code: str = ""
    reason: str = ""
    output_path: str = ""  # relative to OUTPUT
    output_sha256: str = ""
    actions: dict[str, int] = field(default_factory=dict)
    pixel: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    images: int = 0  # frames processed, for images/s
    study_key: str = ""  # pseudonymous study UID (for grouping in reports), never an original value
    series_key: str = ""
    # originals and their pseudonyms (pseudonym.linkage_row): only with --linkage, consumed by the
    # driver into the encrypted linkage file, never written to the manifest.
    linkage: dict[str, str] | None = None
