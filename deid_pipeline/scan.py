"""Find burned-in text in decoded frames: prepare views, detect, filter, map back, add fixed regions.

``scan_frames`` is the pixel stage's one entry point per file; ``scan_batch`` does the same for several
files with one detector pass, so a GPU sees full batches. Identical frames (a still cine, repeated
frames) are prepared and detected once. Boxes come back in stored-frame coordinates, rounded outward,
merged when they overlap. What is returned carries no OCR text.

False positives: a pretrained DBNet answers on line drawings and textured anatomy. Every model box must
also look like text in the view it came from (``FilterParams``): not taller than a share of the frame,
enough contrast, near-square boxes (a circle, a blob) only with a confident score or when glyph-sized, sharp and
sparse (a lone L/R or F/M letter), and "ink" (the minority Otsu class inside the box) that is neither a hairline nor a
filled blob. The thresholds are general properties of rendered glyphs, set on synthetic data.

Misses: the network answers weakly on a lone letter and on text a few pixels high. Glyphs on a flat field
(``detect.glyphs``) are added from every view; in a cine, also from a view with the moving pixels blacked
out (still text over moving anatomy), and a box found in one frame is carried to the frames where its ink
is unchanged (``propagate_static``). A cine's frames are also shown as one more frame, their temporal
median (``temporal_median``: speckle that moves averages away, small text over it stands on a smooth
field), whose boxes go to the frames where their ink holds (``carry_from_median``). In a colour view the network can box a line only in part where its
text differs from the field in colour more than in grey (dark blue on a dark bar): a kept network box is
grown over the further glyphs of its ink that continue its line (``detect.extend``).

Vertical text: the networks read horizontal lines, and answer a line turned a quarter only in pieces:
boxes standing on end, or a glyph or two at a time in a column; the glyph finder sees its glyphs one by
one, in a column. A frame with such boxes (``ON_END_ASPECT``, ``COLUMN_BOXES``, ``GLYPH_COLUMN``) is
detected again with every view turned a quarter (``View.turned``), and the turned views' boxes join the
rest. The glyph finder reads the upright views only, before that choice.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydicom.dataset import Dataset

from .detect.extend import LineParams, extend_along_line
from .detect.glyphs import GlyphParams, find_glyph_text, grey_u8
from .errors import ConfigError
from .pixels import decoded_photometric, frame_digest, palette_lut
from .prepare import FINE, View, prepare_views
from .resources import configs_dir
from .types import Heartbeat, Region, join_boxes

logger = logging.getLogger(__name__)

MODES = ("all-text", "phi-text", "none")
NETWORK_SOURCES = ("model", "textseg")  # boxes from a network (PP-OCRv4, deid-textseg), checked by ``looks_like_text``


@dataclass(frozen=True)
class FilterParams:
    """Recogniser-free checks on a model box, measured in the view it was found in."""

    max_rel_height: float = 0.25  # box short side / frame short side: burned-in text is small ...
    #: ... the short side counted as this many stored pixels at least (a box up to 40 stored pixels is
    #: never too tall to be text): in a strip of 40 or 64 rows (a banner, a label) a line of text fills
    #: the height, and was dropped as if it were anatomy
    min_rel_base: int = 160
    min_contrast: float = 8.0  # difference of the two Otsu class means (0..255)
    min_ink: float = 0.025  # minority-class share inside the box: hairline drawings are below
    max_ink: float = 0.60
    min_score: float = 0.6  # mean probability inside a line box (the detector returns boxes from 0.5) ...
    strong_contrast: float = 100.0  # ... or from 0.5 when the line stands out this much
    square_aspect: float = 1.5  # boxes narrower than this (w / h) are one or two glyphs, or a blob ...
    square_min_score: float = 0.7  # ... and need a more confident network to count as text, unless ...
    glyph_min_score: float = 0.5  # ... they are glyph-sized, sharp and sparse: a lone letter (L/R, F/M)
    glyph_max_rel_height: float = 0.07  # box short side / frame short side of a lone glyph
    glyph_min_contrast: float = 60.0
    glyph_max_ink: float = 0.45
    # a view whose ``ViewRule`` takes lines only (a colour frame's ``achromatic`` view) adds lines no taller
    # than this share of the frame's short side: labels crossing colour flow; taller boxes there were flow
    # taken for text
    lines_only_max_rel_height: float = 0.07
    # glyphs on a flat field found without the network (``detect.glyphs``); None turns the finder off
    flat_field: GlyphParams | None = field(default_factory=GlyphParams)
    # in colour views, a kept network box grown along its line over more glyphs of its ink (``detect.extend``);
    # None turns it off
    line: LineParams | None = field(default_factory=LineParams)


@dataclass(frozen=True)
class ViewRule:
    """How the scan reads the boxes of one kind of view (``prepare.View.kind``)."""

    glyphs: bool = True  # the glyph finder reads it
    #: only lines count there: boxes no taller than ``FilterParams.lines_only_max_rel_height``, none near-square
    lines_only: bool = False
    #: its boxes count only where they overlap or continue a box of the frame's other views
    completes_lines: bool = False


#: Rules by view kind; kinds not listed are read by every rule (``ViewRule()``). A colour frame's
#: ``achromatic`` view is there for grey lines crossing its colour flow: on its own it took the holes of
#: a power-Doppler map and a PET-CT's bone for text; a flat field shows as flat in the ``rgb`` view,
#: where the glyph finder reads it (``benchmarks/README.md``, seventeenth session).
#: A big frame's ``fine`` view is there for the network's small text; the glyph finder reads the frame's
#: other views.
VIEW_RULES: dict[str, ViewRule] = {"achromatic": ViewRule(glyphs=False, lines_only=True, completes_lines=True),
                                   FINE: ViewRule(glyphs=False)}
_EVERY_RULE = ViewRule()


def view_rule(kind: str) -> ViewRule:
    """The ``ViewRule`` of a view kind."""
    return VIEW_RULES.get(kind, _EVERY_RULE)


def otsu_contrast(gray: np.ndarray) -> tuple[float, float]:
    """(difference of the two Otsu class means, share of the upper class) of a uint8 patch; (0, 0) for a
    flat or tiny one."""
    if gray.size < 4 or int(gray.max()) == int(gray.min()):
        return 0.0, 0.0
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = binary.astype(bool)
    hi_share = float(fg.mean())
    if not 0.0 < hi_share < 1.0:
        return 0.0, hi_share
    return float(gray[fg].mean()) - float(gray[~fg].mean()), hi_share


def box_evidence(view: View, r: Region, min_base: int = 1) -> dict[str, float]:
    """Features of one model box in its view (grey levels 0..255); ``rel_height`` against the view's
    short side or ``min_base`` stored pixels in the view, whichever is larger."""
    gray = grey_u8(view.plane[r.y : r.y + r.h, r.x : r.x + r.w])
    short = max(min(view.height, view.width), min_base / max(min(view.sy, view.sx), 1e-9))
    contrast, hi_share = otsu_contrast(gray)
    return {"rel_height": min(r.w, r.h) / max(short, 1), "contrast": contrast, "ink": min(hi_share, 1.0 - hi_share)}


def looks_like_text(view: View, r: Region, fp: FilterParams) -> bool:
    if r.score < min(fp.min_score, fp.glyph_min_score):
        return False
    e = box_evidence(view, r, fp.min_rel_base)
    if not (e["rel_height"] <= fp.max_rel_height and e["contrast"] >= fp.min_contrast
            and fp.min_ink <= e["ink"] <= fp.max_ink):
        return False
    if view_rule(view.kind).lines_only and (e["rel_height"] > fp.lines_only_max_rel_height or r.w < fp.square_aspect * r.h):
        # neither a taller box nor a near-square one is taken there, whatever its score (under a PET colour
        # map the CT's bright spots were, as glyphs, in a colour frame's ``achromatic`` view)
        return False
    if r.w >= fp.square_aspect * r.h:
        return r.score >= fp.min_score or e["contrast"] >= fp.strong_contrast
    if r.score >= fp.square_min_score:
        return True
    # a lone glyph: small, high contrast, thin strokes (a blob or a filled circle has more ink)
    return (r.score >= fp.glyph_min_score and e["rel_height"] <= fp.glyph_max_rel_height
            and e["contrast"] >= fp.glyph_min_contrast and e["ink"] <= fp.glyph_max_ink)


def merge_regions(regions: list[Region], min_overlap: float = 0.5) -> list[Region]:
    """Union boxes that overlap by at least ``min_overlap`` of the smaller one (views agree on a line)."""

    def joinable(b: list[Any], o: list[Any]) -> bool:
        iw = min(b[2], o[2]) - max(b[0], o[0])
        ih = min(b[3], o[3]) - max(b[1], o[1])
        if iw <= 0 or ih <= 0 or b[5] != o[5]:
            return False
        return iw * ih >= min_overlap * min((b[2] - b[0]) * (b[3] - b[1]), (o[2] - o[0]) * (o[3] - o[1]))

    boxes = join_boxes([[r.x, r.y, r.x + r.w, r.y + r.h, r.score, r.source] for r in regions], joinable)
    merged = [Region(int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1]), float(b[4]), str(b[5])) for b in boxes]
    merged.sort(key=lambda r: (r.y, r.x, r.h, r.w))
    return merged


# --- fixed regions ---------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _load_fixed(path: str) -> tuple[dict[str, Any], ...]:
    import yaml

    p = Path(path)
    if not p.is_file():
        return ()
    with p.open() as fh:
        doc = yaml.safe_load(fh) or {}
    entries = doc.get("regions", [])
    if not isinstance(entries, list):
        raise ConfigError("configs/fixed_regions.yaml: 'regions' must be a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("boxes"), list):
            raise ConfigError(f"configs/fixed_regions.yaml: entry {i} needs a 'boxes' list")
        for b in e["boxes"]:
            if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) and v >= 0 for v in b)):
                raise ConfigError(f"configs/fixed_regions.yaml: entry {i} has a box that is not [x, y, w, h]")
    return tuple(entries)


def _matches(pattern: Any, value: Any) -> bool:
    if pattern is None:
        return True
    if isinstance(pattern, int):
        return str(pattern) == str(value)
    return fnmatch.fnmatchcase(str(value).strip().upper(), str(pattern).strip().upper())


def fixed_regions(ds: Dataset, path: Path | None = None) -> list[Region]:
    """Boxes configured for this device and matrix (CTP-style ``manufacturer/model/rows/columns``)."""
    entries = _load_fixed(str(path or configs_dir() / "fixed_regions.yaml"))
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    found: list[Region] = []
    for e in entries:
        if (_matches(e.get("manufacturer"), ds.get("Manufacturer", ""))
                and _matches(e.get("model"), ds.get("ManufacturerModelName", ""))
                and _matches(e.get("modality"), ds.get("Modality", ""))
                and _matches(e.get("rows"), rows) and _matches(e.get("columns"), cols)):
            for x, y, w, h in e["boxes"]:
                r = Region(x, y, w, h, 1.0, "fixed").clipped(rows, cols)
                if r is not None:
                    found.append(r)
    return found


# --- scanning --------------------------------------------------------------------------------------


def _distinct(frames: np.ndarray) -> tuple[list[int], list[int]]:
    """Indices of the first occurrence of each distinct frame, and each frame's slot in that list."""
    first: dict[bytes, int] = {}
    reps: list[int] = []
    slot: list[int] = []
    for i in range(frames.shape[0]):
        k = frame_digest(frames[i])
        if k not in first:
            first[k] = len(reps)
            reps.append(i)
        slot.append(first[k])
    return reps, slot


def _as_stack(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames.ndim == (2 if samples == 1 else 3):
        frames = frames[None]
    return frames


def _no_beat() -> None:
    """The :data:`Heartbeat` of a scan no one times out."""


def scan_batch(items: Sequence[tuple[Any, ...]], detector: Any, mode: str = "all-text",
               batch_size: int = 8, filters: FilterParams | None = None, passes: int = 1,
               timings: dict[str, float] | None = None, heartbeat: Heartbeat | None = None) -> list[list[list[Region]]]:
    """``scan_frames`` for several files at once: ``items`` are ``(ds, frames[, phi_terms[, frame_numbers]])``
    (``frame_numbers``: each frame's index in its file, when ``frames`` are not the file's first ones in
    order).

    ``timings``, when given, gains the seconds of each step (:data:`SCAN_STAGES`) summed over the batch;
    ``heartbeat`` is called as the scan goes on.

    With ``passes`` > 1, frames that had text are redacted and scanned again: a lone letter or a
    fragment next to a redacted line sometimes shows only once its neighbours are gone. Off by
    default: measured on the CPU it found little on the synthetic set and, on a lossy JPEG 2000
    ultrasound, took compression noise around the fills for text (20 % of the non-text pixels).
    """
    beat = heartbeat or _no_beat
    results = _scan_once(items, detector, mode, batch_size, filters, timings, beat)
    for _ in range(passes - 1):
        redo = [i for i, res in enumerate(results) if any(res)]
        if not redo or mode == "none":
            break
        from .redact import redact_frames

        again_items = [(items[i][0], redact_frames(items[i][0], _as_stack(items[i][0], items[i][1]), results[i]), *items[i][2:]) for i in redo]
        again = _scan_once(again_items, detector, mode, batch_size, filters, timings, beat)
        for i, extra in zip(redo, again):
            results[i] = [list(first) + [r for r in more if not _touches_any(r, first)] for first, more in zip(results[i], extra)]
    return results


def _continues_a_line(box: tuple[int, int, int, int], found: Sequence[Region]) -> bool:
    """Whether a box of a colour frame's ``achromatic`` view overlaps or continues a box found in the
    frame's other views: rows shared by half the lower box, at most its height apart. That view is made
    for lines whose middle the ``rgb`` view lost over colour flow; on its own it took the holes of a real
    power Doppler map and a PET-CT's bone for text (``benchmarks/README.md``, seventeenth session)."""
    x, y, w, h = box
    for b in found:
        low = min(h, b.h)
        if min(y + h, b.y + b.h) - max(y, b.y) >= 0.5 * low and max(b.x - (x + w), x - (b.x + b.w)) <= low:
            return True
    return False


def _touches_any(r: Region, boxes: Sequence[Region], pad: int = 4) -> bool:
    """Whether ``r`` meets a box grown by ``pad``: the second pass sees the fill blocks of the first
    as dark shapes; only text apart from them is new."""
    for b in boxes:
        if r.x < b.x + b.w + pad and b.x - pad < r.x + r.w and r.y < b.y + b.h + pad and b.y - pad < r.y + r.h:
            return True
    return False


#: The steps of a scan :func:`scan_batch` times: views made (``prepare``), the network with its DB
#: post-process (``detect``), and the decision on its boxes (``decide``: text checks, glyph finder, cine
#: carry, merging, fixed regions, the PHI choice in ``phi-text`` mode).
SCAN_STAGES = ("prepare", "detect", "decide")


#: A network box at least this many times taller than wide, and this many view pixels tall, stands on
#: end ...
ON_END_ASPECT = 2.5
ON_END_MIN_PX = 12
#: ... or at least this many network boxes of a glyph or two each (not much wider than tall), or
#: ``GLYPH_COLUMN`` boxes of the glyph finder, stand one under the next, aligned and of one width: a
#: vertical line read glyph by glyph. Any of them turns the frame (``_scan_once``). Measured on the 241
#: variants of the real files (``benchmarks/eval_variants.py``): turned on 16 of the 18 turned a quarter
#: (the other two hold no PHI) and 4 of the 223 upright; on no frame of the synthetic evaluation set, the
#: real files as read, the no-text controls or 160 benchmark files (CT, US, cine, CR): upright frames
#: keep the cost of one detection. At an aspect of 2.0 an upright mirrored ultrasound had a box on end;
#: three glyph-finder boxes in a column turned dozens of upright variants (menus of lone glyphs).
COLUMN_BOXES = 3
GLYPH_COLUMN = 6


def _on_end(r: Region) -> bool:
    return r.source in NETWORK_SOURCES and r.h >= ON_END_ASPECT * r.w and r.h >= ON_END_MIN_PX


def _in_a_column(regions: Sequence[Region], sources: tuple[str, ...] = NETWORK_SOURCES, need: int = COLUMN_BOXES,
                 min_h: int = 8) -> bool:
    """Whether ``need`` boxes from ``sources``, each at least 0.7 times as tall as wide and ``min_h`` view
    pixels tall, stand one under the next: overlapping across by 60 % of the narrower, widths within
    1.5x, gaps under two widths."""
    boxes = sorted((r for r in regions if r.source in sources and r.h >= 0.7 * r.w and r.h >= min_h),
                   key=lambda r: r.y)
    for i, first in enumerate(boxes):
        chain = [first]
        for o in boxes[i + 1 :]:
            last = chain[-1]
            across = min(last.x + last.w, o.x + o.w) - max(last.x, o.x)
            narrow, wide = min(last.w, o.w), max(last.w, o.w)
            if across >= 0.6 * narrow and wide <= 1.5 * narrow and 0 <= o.y - (last.y + last.h) <= 2 * wide:
                chain.append(o)
        if len(chain) >= need:
            return True
    return False


def _vertical_text(regions: Sequence[Region]) -> bool:
    """Whether a view's boxes (the networks' and the glyph finder's) show a line of vertical text in
    pieces (its frame is then detected turned)."""
    return (any(_on_end(r) for r in regions) or _in_a_column(regions)
            or _in_a_column(regions, ("glyph",), GLYPH_COLUMN, min_h=4))


def _scan_once(items: Sequence[tuple[Any, ...]], detector: Any, mode: str = "all-text",
               batch_size: int = 8, filters: FilterParams | None = None,
               timings: dict[str, float] | None = None, beat: Heartbeat = _no_beat) -> list[list[list[Region]]]:
    """One detection pass over every frame of every item."""
    if mode not in MODES:
        raise ConfigError(f"unknown pixel mode {mode!r}; use one of {MODES}")
    fp = filters or FilterParams()
    t0 = time.perf_counter()
    plans = []
    all_views: list[View] = []
    owners: list[tuple[int, int]] = []  # (item, distinct-frame slot) per view
    for n_item, item in enumerate(items):
        ds, frames = item[0], _as_stack(item[0], item[1])
        if mode == "none":
            plans.append((ds, frames, [], [], 0, None, None))
            continue
        reps, slot = _distinct(frames)
        numbers = item[3] if len(item) > 3 and item[3] is not None else range(frames.shape[0])
        bright = palette_brightness(ds) if len(reps) >= 2 else None  # palette indices compared as they show
        median = temporal_median(frames, reps, bright)
        # the distinct frames, and their temporal median as one more frame (in the first one's windows)
        shown = np.empty((len(reps) + (median is not None),) + frames.shape[1:], frames.dtype)
        np.take(frames, reps, axis=0, out=shown[: len(reps)])
        if median is not None:
            shown[-1] = median
        views = prepare_views(ds, shown, device=str(getattr(detector, "device", "cpu")),
                              fine=bool(getattr(detector, "reads_fine_views", False)),
                              frame_numbers=[numbers[r] for r in reps] + [numbers[reps[0]]] * (median is not None))
        del shown
        for v in views:
            owners.append((n_item, v.frame))
        all_views.extend(views)
        plans.append((ds, frames, reps, slot, len(reps), median, bright))
    t1 = time.perf_counter()
    found = _detect_chunked(detector, all_views, batch_size, beat)
    # glyphs on a flat field, in the upright views of the kinds whose ``ViewRule`` reads them (their seconds
    # belong to ``decide``)
    tg = time.perf_counter()
    glyph_found: list[list[Region]] = []
    for view, (n_item, _) in zip(all_views, owners):
        beat()
        rows, cols = plans[n_item][1].shape[1:3]
        glyph_found.append([] if fp.flat_field is None or not view_rule(view.kind).glyphs else find_glyph_text(
            view.plane, view.sy, view.sx, min(rows, cols), fp.flat_field, inner=view.frame_box))
    tg = time.perf_counter() - tg
    # boxes standing on end, or glyph boxes in a column, are pieces of a line of vertical text: every view
    # of its frame is turned a quarter and detected again, which reads the line whole (either way up)
    on_end = {owners[i] for i, regions in enumerate(found) if _vertical_text(list(regions) + glyph_found[i])}
    if on_end:
        again = [i for i, owner in enumerate(owners) if owner in on_end]
        turned = [all_views[i].turned() for i in again]
        found = found + _detect_chunked(detector, turned, batch_size, beat)
        all_views = all_views + turned
        owners = owners + [owners[i] for i in again]
    t2 = time.perf_counter()
    stills = [static_mask(p[1], p[2]) if fp.flat_field is not None and p[4] >= STATIC_MIN_FRAMES else None for p in plans]
    # a slot per distinct frame, and one for the temporal median's boxes (carried to the frames after)
    per_item: list[list[list[Region]]] = [[[] for _ in range(p[4] + (p[5] is not None))] for p in plans]
    for i, (view, regions, (n_item, rep_slot)) in enumerate(zip(all_views, found, owners)):
        beat()
        ds, frames = plans[n_item][0], plans[n_item][1]
        rows, cols = frames.shape[1], frames.shape[2]
        if fp.flat_field is not None and not view.turns:  # glyphs are found in the upright view
            regions = list(regions) + glyph_found[i]
            still = stills[n_item]
            if rep_slot == 0 and still is not None:
                for r in find_glyph_text(_static_view(view, still), view.sy, view.sx, min(rows, cols), fp.flat_field):
                    box = view.to_stored(r.x, r.y, r.w, r.h, rows, cols)
                    if box is not None:
                        for k in range(plans[n_item][4]):
                            per_item[n_item][k].append(Region(*box, score=r.score, source="static"))
        kept = [r for r in regions if r.source not in NETWORK_SOURCES or looks_like_text(view, r, fp)]
        if fp.line is not None and view.grey is None:  # colour views: lines the network stopped short of
            kept += [piece for r in kept if r.source in NETWORK_SOURCES for piece in
                     extend_along_line(view.plane, r, view.frame_box, fp.line)]
        # a view that completes lines adds only to what its frame's other views found (``_continues_a_line``)
        anchors = list(per_item[n_item][rep_slot]) if view_rule(view.kind).completes_lines else None
        for r in kept:
            box = view.to_stored(r.x, r.y, r.w, r.h, rows, cols)
            if box is not None and (anchors is None or _continues_a_line(box, anchors)):
                per_item[n_item][rep_slot].append(Region(*box, score=r.score, source=r.source))
    results: list[list[list[Region]]] = []
    for n_item, item in enumerate(items):
        beat()
        ds, frames, reps, slot, _, median, bright = plans[n_item]
        if mode == "none":
            results.append([[] for _ in range(frames.shape[0])])
            continue
        fixed = fixed_regions(ds)
        found = per_item[n_item]
        if median is not None:
            for rs, carried in zip(found, carry_from_median(median, found.pop(), frames, reps, bright)):
                rs.extend(carried)
        distinct = [merge_regions(rs) for rs in propagate_static(frames, reps, found, bright)]
        if mode == "phi-text" and any(distinct):
            from .phi_text import select_phi

            phi_terms = item[2] if len(item) > 2 else frozenset()
            distinct = [select_phi(ds, frames[reps[k]], rs, phi_terms) for k, rs in enumerate(distinct)]
        results.append([list(fixed) + list(distinct[s]) for s in slot])
    if timings is not None:
        for stage, seconds in zip(SCAN_STAGES, (t1 - t0, t2 - t1 - tg, time.perf_counter() - t2 + tg)):
            timings[stage] = timings.get(stage, 0.0) + seconds
    return results


def _grey(a: np.ndarray) -> np.ndarray:
    return a.mean(axis=2) if a.ndim == 3 else a.astype(np.float64)


def _ink(patch: np.ndarray, tol: float = 0.06) -> tuple[np.ndarray, np.ndarray, float] | None:
    """A box's grey values, its ink (the Otsu minority class) and the tolerance (``tol`` of its value
    range) within which the ink counts as unchanged elsewhere; None for a flat or ink-less box."""
    a = _grey(patch)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo or a.size < 4:
        return None
    u8 = np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    _, binary = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary.astype(bool)
    if ink.mean() > 0.5:
        ink = ~ink
    if ink.sum() < 4:
        return None
    return a, ink, tol * (hi - lo)


STATIC_MIN_FRAMES = 3  # distinct frames needed to tell a still overlay from the anatomy moving under it
STATIC_MIN_MOVING = 0.05  # share of pixels that must change across those frames
STATIC_INK_MATCH = 0.9  # share of a box's ink that must hold its values in a frame to carry the box there
_GATHER_VALUES = 2_000_000  # box pixels gathered at once across frames by ``propagate_static``


def static_mask(frames: np.ndarray, reps: Sequence[int], tol: float = 0.02) -> np.ndarray | None:
    """Pixels that hold their value (within ``tol`` of the value range) across the distinct frames of a
    cine whose anatomy moves; None when too few frames differ or too little moves."""
    if len(reps) < STATIC_MIN_FRAMES:
        return None
    lo = frames[reps[0]].copy()
    hi = lo.copy()
    for i in reps[1:]:
        np.minimum(lo, frames[i], out=lo)
        np.maximum(hi, frames[i], out=hi)
    span = hi.astype(np.float64) - lo
    if span.ndim == 3:
        span = span.max(axis=2)
    rng = float(hi.max()) - float(lo.min())
    if rng <= 0:
        return None
    still = span <= tol * rng
    return still if 1.0 - float(still.mean()) >= STATIC_MIN_MOVING else None


#: distinct frames of a cine (evenly spaced) whose median makes its ``temporal_median`` frame
MEDIAN_MAX_FRAMES = 9
#: share of a median box's ink that must hold the median's values in a frame to be carried there
MEDIAN_INK_MATCH = 0.5


def temporal_median(frames: np.ndarray, reps: Sequence[int],
                    brightness: tuple[int, np.ndarray] | None = None) -> np.ndarray | None:
    """The pixel-wise median of up to ``MEDIAN_MAX_FRAMES`` of a cine's distinct frames (``reps``), in
    their dtype; None under ``STATIC_MIN_FRAMES``. Speckle and noise that change from frame to frame
    average away, text that stands still keeps its values: small text over an ultrasound sector, lost
    in each frame's speckle, stands on a smooth field there (:func:`carry_from_median`).

    ``brightness`` (``(first index, brightness per index)``, :func:`palette_brightness`): the frames are
    palette indices, whose order need not be that of their colours; each pixel then takes the index of
    the frame whose colour is the median in brightness (an index of the palette, never a mean of two)."""
    if len(reps) < STATIC_MIN_FRAMES:
        return None
    pick = [reps[int(i)] for i in np.linspace(0, len(reps) - 1, min(len(reps), MEDIAN_MAX_FRAMES)).round()]
    if brightness is not None:
        stack = frames[pick]
        middle = np.argsort(_shown(stack, brightness), axis=0, kind="stable")[len(pick) // 2]
        return np.take_along_axis(stack, middle[None], axis=0)[0]
    median = np.median(frames[pick], axis=0)
    if np.issubdtype(frames.dtype, np.integer):
        median = np.round(median)
    return median.astype(frames.dtype)


def palette_brightness(ds: Dataset) -> tuple[int, np.ndarray] | None:
    """For PALETTE COLOR frames: (first mapped index, each palette entry's brightness, its channels'
    sum); None for any other photometric interpretation (its values are ordered as they show)."""
    if decoded_photometric(ds) != "PALETTE COLOR":
        return None
    first, lut = palette_lut(ds)
    return first, lut.astype(np.int32).sum(axis=1)


def carry_from_median(median: np.ndarray, boxes: Sequence[Region], frames: np.ndarray,
                      reps: Sequence[int], brightness: tuple[int, np.ndarray] | None = None) -> list[list[Region]]:
    """Per distinct frame, the boxes found in the cine's :func:`temporal_median` whose ink holds the
    median's values there (``MEDIAN_INK_MATCH`` of it; ``source="static"``). Anti-aliased letters over
    moving speckle keep their cores, not their rims: less than ``propagate_static``'s 90 % matches; a
    shape the median made of moving edges matches few frames. ``brightness``: palette indices are
    compared as the brightness of their colours (:func:`palette_brightness`)."""
    out: list[list[Region]] = [[] for _ in reps]
    order = np.asarray(reps)
    for r in boxes:
        box = (slice(r.y, r.y + r.h), slice(r.x, r.x + r.w))
        kept = None if r.source == "fixed" else _ink_held(median[box], frames, box, order, brightness)
        if kept is not None:
            for j in np.flatnonzero(kept >= MEDIAN_INK_MATCH).tolist():
                out[j].append(Region(r.x, r.y, r.w, r.h, r.score, "static"))
    return out


def _static_view(view: View, still: np.ndarray) -> np.ndarray:
    """``view`` with every pixel that moves in the cine set to black: still text over moving anatomy
    becomes text on a flat field."""
    m = np.zeros(view.image.shape[:2], bool)
    m[view.oy : view.oy + view.height, view.ox : view.ox + view.width] = cv2.resize(
        still.astype(np.uint8), (view.width, view.height), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = view.image.copy()
    out[~m] = 0
    return out


def propagate_static(frames: np.ndarray, reps: Sequence[int], found: list[list[Region]],
                     brightness: tuple[int, np.ndarray] | None = None) -> list[list[Region]]:
    """Burned-in text of a cine does not move while the anatomy under it does, and the network sometimes
    answers on one frame and not the next. A box found in one distinct frame is added to every other
    distinct frame where its ink pixels hold the same values (``source="static"``), unless a box there
    already holds it.

    Box by box in frame order, as a loop over every other frame would, with each box's checks made for
    all frames at once: which frames hold a box containing it (``out`` as it stands: the box's own
    additions go to one frame each and cannot change another frame's answer), and, for the others only,
    how much of its ink keeps its values in each (one gather of its ink pixels across them). Frame by frame,
    a cine of F distinct frames cost O(F^2) Python steps per box: 8 s of a 240-frame cine's 24 s scan.
    ``brightness``: palette indices are compared as the brightness of their colours (:func:`palette_brightness`)."""
    if len(reps) < 2 or not any(found):
        return found
    out = [list(rs) for rs in found]
    n = len(reps)
    order = np.asarray(reps)
    held_by = _BoxTable(sum(len(rs) for rs in found))  # every box of ``out``, with its frame
    for j, rs in enumerate(found):
        for b in rs:
            held_by.add(b, j)
    for k, rs in enumerate(found):
        for r in rs:
            if r.source == "fixed":
                continue
            held = held_by.frames_containing(r, n)
            held[k] = True
            todo = np.flatnonzero(~held)
            if not len(todo):
                continue
            box = (slice(r.y, r.y + r.h), slice(r.x, r.x + r.w))
            kept = _ink_held(frames[reps[k]][box], frames, box, order[todo], brightness)  # its ink in this frame, there
            if kept is None:
                continue
            for j in todo[kept >= STATIC_INK_MATCH].tolist():
                carried = Region(r.x, r.y, r.w, r.h, r.score, "static")
                out[j].append(carried)
                held_by.add(carried, j)
    return out


def _shown(a: np.ndarray, brightness: tuple[int, np.ndarray] | None) -> np.ndarray:
    """``a`` as it is, or palette indices as the brightness of their colours."""
    if brightness is None:
        return a
    first, level = brightness
    return level[np.clip(a.astype(np.int64) - first, 0, len(level) - 1)]


def _ink_held(patch: np.ndarray, frames: np.ndarray, box: tuple[slice, slice], at: np.ndarray,
              brightness: tuple[int, np.ndarray] | None = None) -> np.ndarray | None:
    """Per frame index of ``at``, the share of ``patch``'s ink (``_ink``) whose pixels in ``box`` of that
    frame hold its values within ``_ink``'s tolerance; None for a patch without ink. Gathered
    ``_GATHER_VALUES`` box pixels at a time: a big box in a long cine stays small. ``brightness``: the
    values are palette indices, compared as the brightness of their colours (``_shown``)."""
    ref = _ink(_shown(patch, brightness))
    if ref is None:
        return None
    values, ink, tol = ref
    step = max(1, _GATHER_VALUES // values.size)
    kept = [(np.abs(values[ink] - _grey(_shown(frames[(slice(None),) + box][at[i : i + step]][:, ink], brightness))) <= tol
             ).mean(axis=1) for i in range(0, len(at), step)]  # (T, ink pixels[, samples]); _grey: pixel by pixel
    return np.concatenate(kept) if kept else np.zeros(0)


class _BoxTable:
    """Boxes (x0, y0, x1, y1) with the frame each belongs to, listed in a grid of 32-pixel cells by the
    cells they cover: a box that contains another covers that one's first pixel, so the boxes listed in
    the cell of that pixel are all that can contain it. Each cell's boxes are kept as columns, rebuilt
    when the cell gains one (rare: a cine's carried boxes)."""

    _CELL = 5  # log2 of the cell side

    def __init__(self, capacity: int) -> None:
        self._a = np.empty((max(16, capacity), 5), np.int64)
        self._n = 0
        self._cells: dict[tuple[int, int], list[int]] = {}
        self._columns: dict[tuple[int, int], np.ndarray] = {}

    def add(self, r: Region, frame: int) -> None:
        if self._n == len(self._a):
            self._a = np.concatenate([self._a, np.empty_like(self._a)])
        i, c = self._n, self._CELL
        self._a[i] = (r.x, r.y, r.x + r.w, r.y + r.h, frame)
        self._n += 1
        for cy in range(r.y >> c, ((r.y + r.h - 1) >> c) + 1):
            for cx in range(r.x >> c, ((r.x + r.w - 1) >> c) + 1):
                self._cells.setdefault((cx, cy), []).append(i)
                self._columns.pop((cx, cy), None)

    def frames_containing(self, r: Region, frames: int) -> np.ndarray:
        """Per frame, whether one of its boxes contains ``r`` (``r`` at least a pixel wide and high)."""
        held = np.zeros(frames, bool)
        cell = (r.x >> self._CELL, r.y >> self._CELL)
        a = self._columns.get(cell)
        if a is None:
            ids = self._cells.get(cell)
            if not ids:
                return held
            a = self._columns[cell] = np.ascontiguousarray(self._a[ids].T)  # 5 rows: x0, y0, x1, y1, frame
        inside = (a[0] <= r.x) & (a[1] <= r.y) & (r.x + r.w <= a[2]) & (r.y + r.h <= a[3])
        held[a[4][inside]] = True
        return held


# Views this process sent to the CPU because the GPU failed on them (read by the pipeline to record it).
cpu_fallback_views = 0


def _detect_safely(detector: Any, images: list[np.ndarray]) -> list[list[Region]]:
    """``detector.detect``; on a CUDA out-of-memory or device error the batch is split in halves, and
    a single view that still fails goes to the CPU detector (same weights, same post-processing)."""
    global cpu_fallback_views
    try:
        return detector.detect(images)
    except RuntimeError as exc:  # torch.OutOfMemoryError and CUDA errors are RuntimeErrors
        if not str(getattr(detector, "device", "cpu")).startswith("cuda"):
            raise
        logger.warning("GPU detection failed on %d view(s) (%s); splitting the batch", len(images), type(exc).__name__)
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:
            pass
    if len(images) > 1:
        half = len(images) // 2
        return _detect_safely(detector, images[:half]) + _detect_safely(detector, images[half:])
    from .detect import get_detector

    cpu_fallback_views += 1
    return get_detector(str(getattr(detector, "name", "auto")), "cpu").detect(images)


def _detect_chunked(detector: Any, views: list[View], batch_size: int, beat: Heartbeat = _no_beat) -> list[list[Region]]:
    members = getattr(detector, "members", None)
    if members:  # a union: each member on the views of the kinds it takes (detect.union)
        joined: list[list[Region]] = [[] for _ in views]
        for member, kinds in zip(members, detector.member_kinds):
            idx = [i for i, v in enumerate(views) if kinds is None or v.kind in kinds]
            for i, regions in zip(idx, _detect_chunked(member, [views[i] for i in idx], batch_size, beat)):
                joined[i].extend(regions)
        return joined
    out: list[list[Region]] = []
    step = max(1, batch_size) * 4  # the detector batches by shape inside each call
    for s in range(0, len(views), step):
        out.extend(_detect_safely(detector, [v.image for v in views[s : s + step]]))
        beat()
    return out


def scan_frames(ds: Dataset, frames: np.ndarray, detector: Any, mode: str = "all-text",
                phi_terms: frozenset[str] = frozenset(), batch_size: int = 8, passes: int = 1,
                timings: dict[str, float] | None = None, heartbeat: Heartbeat | None = None,
                frame_numbers: Sequence[int] | None = None) -> list[list[Region]]:
    """Regions to redact per frame, in stored-frame coordinates (see the module docstring);
    ``frame_numbers``: each frame's index in the file, when ``frames`` are a part of its frames (an
    Enhanced image's frames each have their own display windows)."""
    return scan_batch([(ds, frames, phi_terms, frame_numbers)], detector, mode=mode, batch_size=batch_size,
                      passes=passes, timings=timings, heartbeat=heartbeat)[0]
