"""Glyphs on a flat background: a recogniser-free complement to the network for lone and tiny text.

A text-line network answers weakly on a lone letter (patient sex F/M/O, laterality L/R) and on text a
few pixels high, even where a reader sees it at once: high-contrast strokes on a flat field (the black
outside an ultrasound sector, the corners of a film, a report screen). This finder looks for exactly
that and nothing else:

* ink: pixels that stand out from the local background by ``min_contrast`` grey levels (a morphological
  top-hat for bright ink, a black-hat for dark ink, with a kernel larger than a glyph) and by half
  their local peak (the blurred rim of an upscaled glyph would fill its holes), less straight rules
  longer than three kernels (table lines, bars) that would join a line of text to the page;
* glyphs: connected ink components glyph-sized in the stored frame, with thin strokes (distance
  transform) and neither a filled blob nor a hairline;
* lines: glyphs of similar height side by side are joined into one box;
* a flat field: the ring round each box, ink and rules excluded, varies by under ``max_ring_std`` and
  ``contrast / ring_std`` is at least ``min_ratio``. Text over anatomy or speckle fails this and is left
  to the network.

Boxes come back in view pixels with ``source="glyph"``; the thresholds are properties of rendered
text, not of any one device.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..prepare import PATCH_PX
from ..types import Region, join_boxes

__all__ = ["GlyphParams", "find_glyph_text", "grey_u8", "ink_planes"]


@dataclass(frozen=True)
class GlyphParams:
    min_height: float = 4.0  # stored pixels: a glyph under this is a dot, a tick or noise
    max_rel_height: float = 0.07  # glyph height / short side of the frame
    max_aspect: float = 8.0  # width / height of one connected component (touching glyphs of a word)
    min_contrast: float = 60.0  # ink minus background, grey levels of the view
    max_ring_std: float = 12.0  # the field round a box is flat ...
    min_ratio: float = 8.0  # ... compared with the ink's contrast
    min_fill: float = 0.10  # ink share of a component's box: lower is a diagonal hairline ...
    min_fill_wide: float = 0.20  # ... or, for a component wider than twice its height, a curve
    max_fill: float = 0.85  # higher is a bar or a block (a lone I or l is found inside a word only)
    max_stroke: float = 0.34  # largest stroke half-width / component height: a filled disc or square is 0.5
    join_gap: float = 1.2  # glyphs closer than this many heights on one line are one box
    ring: float = 0.6  # ring width round a box, in box heights (at least 3 px)


def grey_u8(image: np.ndarray) -> np.ndarray:
    """An (H, W[, 3]) view as uint8 grey: the channels' mean truncated, exactly as
    ``image.mean(axis=2).astype(np.uint8)`` (the float64 mean of three integers never reaches the
    integer above it, so it is the integer sum // 3), at a fraction of its cost."""
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return ((image[..., 0].astype(np.uint16) + image[..., 1] + image[..., 2]) // 3).astype(np.uint8)
    return np.ascontiguousarray(image if image.ndim == 2 else image.mean(axis=2), dtype=np.uint8)


def _as_u8(mask: np.ndarray) -> np.ndarray:
    """A bool mask as 0/1 uint8 for OpenCV: the same bytes, no copy when contiguous."""
    return mask.view(np.uint8) if mask.dtype == np.bool_ and mask.flags.c_contiguous else mask.astype(np.uint8)


def _line_rules(marked: np.ndarray, rule_h: np.ndarray, rule_v: np.ndarray) -> np.ndarray:
    """``open(marked, rule_h) | open(marked, rule_v)`` as bool, each opening run only on the rows (columns)
    that can hold a survivor. A line opening is row- (column-) wise, and keeps a pixel only inside a run of
    at least half the line plus one marked pixels (a run at the border: OpenCV's erosion takes the outside
    as set), or a whole row (column) shorter than that: a row with fewer marked pixels opens to nothing.
    Columns are opened as the rows of their transpose with ``rule_v`` laid flat: the same pixels, at
    half the time of OpenCV's column filter on a narrow image."""
    rules = np.zeros(marked.shape, bool)
    for axis, kernel in ((1, rule_h), (0, rule_v)):
        need = min(max(kernel.shape) // 2 + 1, marked.shape[axis])
        counts = cv2.reduce(marked, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()  # marked per row (column)
        lines = np.flatnonzero(counts >= need)
        if not len(lines):
            continue
        if axis == 1:  # those rows
            rules[lines] |= cv2.morphologyEx(np.ascontiguousarray(marked[lines]), cv2.MORPH_OPEN, kernel).view(bool)
        else:  # those columns, as rows
            flat = cv2.morphologyEx(np.ascontiguousarray(marked[:, lines].T), cv2.MORPH_OPEN, kernel.reshape(1, -1))
            rules[:, lines] |= flat.view(bool).T
    return rules


def _components(ink: np.ndarray, sy: float, sx: float, short: int, p: GlyphParams) -> list[tuple[int, int, int, int]]:
    ink8 = _as_u8(ink)
    # BBDT: the same components and statistics as OpenCV's default for 8-connectivity (Spaghetti), at
    # ~40 % of its time with statistics (measured on CT views' ink: 0.9 against 2.5 ms)
    n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(ink8, 8, cv2.CV_32S, cv2.CCL_BBDT)
    max_h = max(p.min_height + 1, p.max_rel_height * short)
    # the size and fill checks over all components at once (a view holds hundreds of specks); the
    # stroke check below only for those that pass
    w_all, h_all, area_all = (stats[1:, k].astype(np.float64) for k in (cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA))
    hs_all = h_all * sy
    fill_all = area_all / (w_all * h_all)
    fill_min = np.where(w_all > 2 * h_all, p.min_fill_wide, p.min_fill)
    keep = ((hs_all >= p.min_height) & (hs_all <= max_h) & (w_all <= p.max_aspect * h_all)
            & (w_all * sx <= 1.5 * max_h * p.max_aspect) & (fill_all >= fill_min) & (fill_all <= p.max_fill))
    survivors = np.flatnonzero(keep) + 1
    if not len(survivors):
        return []
    # one distance transform for all components (8-connected ones never touch, and the frame's edge
    # counts as background); a component's widest stroke is the largest distance over its own pixels,
    # taken for all components in one pass over the ink (speckle leaves ~1,000 survivors in an
    # ultrasound view: one at a time, 13 ms a call there)
    dist = cv2.distanceTransform(cv2.copyMakeBorder(ink8, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0), cv2.DIST_L2, 3)[1:-1, 1:-1]
    on = ink8.astype(bool)
    widest = np.zeros(n, np.float32)
    np.maximum.at(widest, labels[on], dist[on])
    boxes = stats[survivors, :4]
    thin = widest[survivors].astype(np.float64) <= p.max_stroke * boxes[:, 3] + 0.5
    return [tuple(b) for b in boxes[thin].tolist()]


def _mostly_in(boxes: list[tuple[int, int, int, int]], ink: np.ndarray,
               where: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The (x, y, w, h) ``boxes`` at least half of whose ink lies in ``where`` (box sums of integral
    images: a Doppler frame's view holds ~1,000 speckle boxes)."""
    if not boxes:
        return boxes
    b = np.asarray(boxes, np.int64)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]

    def sums(mask: np.ndarray) -> np.ndarray:
        s = cv2.integral(_as_u8(mask))
        return s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]

    keep = 2 * sums(ink & where) >= sums(ink)
    return [box for box, k in zip(boxes, keep.tolist()) if k]


def _joinable(g: list[int], o: list[int], join_gap: float) -> bool:
    """Boxes of similar height that overlap vertically and sit close side by side (comparisons only)."""
    gx0, gy0, gx1, gy1 = g[0], g[1], g[2], g[3]
    ox0, oy0, ox1, oy1 = o[0], o[1], o[2], o[3]
    hg, ho = gy1 - gy0, oy1 - oy0
    lo, hi = (hg, ho) if hg <= ho else (ho, hg)
    vo = (gy1 if gy1 <= oy1 else oy1) - (gy0 if gy0 >= oy0 else oy0)  # vertical overlap
    if vo < 0.5 * lo or hi > 2.5 * lo:
        return False
    gap = (gx0 if gx0 >= ox0 else ox0) - (gx1 if gx1 <= ox1 else ox1)
    return gap <= join_gap * hi


def _lines(boxes: list[tuple[int, int, int, int]], p: GlyphParams) -> list[list[int]]:
    """Join glyph boxes of similar height that overlap vertically and sit close side by side. Two boxes
    are joinable only where their rows overlap (by half the lower one) and the horizontal gap is at most
    ``join_gap`` times the taller, itself at most 2.5 times the box's own height: the ``reach`` that lets
    ``join_boxes`` search a grid instead of every pair."""
    join_gap = p.join_gap
    reach = 2.5 * max(join_gap, 0.0)
    return join_boxes([[x, y, x + w, y + h] for x, y, w, h in sorted(boxes)], lambda g, o: _joinable(g, o, join_gap),
                      reach=lambda b: reach * (b[3] - b[1]))


#: A colour view whose brightest channel stands this many grey levels above the channels' mean somewhere
#: (coloured text, graphics or flow) is also read in its brightest channel (:func:`ink_planes`); grey
#: frames stored as RGB, lossy ones included, stay under it.
COLOUR_MIN = 16
#: ... where its channels' mean is under this (twice the glyph contrast): brighter coloured ink (yellow,
#: cyan, light green) stands out of a dark field in the mean already, and a frame with no other colour
#: pays for no third plane
COLOUR_DIM = 120


def ink_planes(image: np.ndarray, patch: int = PATCH_PX) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
    """The (morphological operation, uint8 plane, where ink may be) triples ink is read in: bright ink
    (top-hat) and dark ink (black-hat) in the channels' mean (:func:`grey_u8`), anywhere; in an 8-bit
    colour view with coloured pixels, bright ink in each pixel's brightest channel too, on those pixels
    only. Coloured text stands out in the channel that carries it: dark blue (0, 0, 140) on black is 46
    in the mean, under the contrast a glyph needs, and 140 in its brightest channel. The mean stays read:
    next to a colour bar, bright in every hue, a yellow label is flatter in the mean. Coloured pixels are
    those whose brightest channel stands ``COLOUR_MIN`` above a mean under ``COLOUR_DIM``, outside colour
    flow (coloured pixels filling half a square of three ``patch`` view pixels a side, and such a square
    round it); a glyph of that plane counts where half its ink is on them: grey speckle, the same in both
    planes, is read once (on a 1024x768 Doppler frame, read again in the brightest channel, it cost the
    glyph finder 10 -> 290 ms)."""
    gray = grey_u8(image)
    planes: list[tuple[int, np.ndarray, np.ndarray | None]] = [(cv2.MORPH_TOPHAT, gray, None),
                                                               (cv2.MORPH_BLACKHAT, gray, None)]
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        r, g, b = cv2.split(image)
        brightest = cv2.max(cv2.max(r, g), b)
        coloured = cv2.subtract(brightest, gray) >= COLOUR_MIN
        dim = coloured & (gray < COLOUR_DIM)
        if dim.any():  # colour flow: coloured pixels filling half a square of three patches, and round it
            share = cv2.blur(coloured.view(np.uint8) * np.uint8(255), (3 * patch, 3 * patch))
            flow = share >= 128
            if flow.any():
                dim &= ~cv2.dilate(flow.view(np.uint8), np.ones((3 * patch, 3 * patch), np.uint8)).view(bool)
            if dim.any():
                planes.append((cv2.MORPH_TOPHAT, brightest, dim))
    return planes


def _edge_filled(gray: np.ndarray, inner: tuple[int, int, int, int] | None) -> np.ndarray:
    """``gray`` with everything outside ``inner`` (the view's border and padding) at the median level of
    the frame's edge."""
    if inner is None:
        return gray
    x, y, w, h = inner
    edge = np.concatenate([gray[y, x : x + w], gray[y + h - 1, x : x + w], gray[y : y + h, x],
                           gray[y : y + h, x + w - 1]])
    return cv2.copyMakeBorder(gray[y : y + h, x : x + w], y, gray.shape[0] - y - h, x, gray.shape[1] - x - w,
                              cv2.BORDER_CONSTANT, value=int(np.median(edge)))


def find_glyph_text(image: np.ndarray, sy: float = 1.0, sx: float = 1.0, short: int | None = None,
                    params: GlyphParams | None = None, inner: tuple[int, int, int, int] | None = None) -> list[Region]:
    """Text boxes (view pixels) of glyphs on a flat field in an 8-bit (H, W[, 3]) view.

    ``sy``/``sx`` are stored pixels per view pixel and ``short`` the stored frame's short side: sizes
    are judged in the stored frame, whatever the view's scale. ``inner``: the frame's (x, y, w, h) in the
    view; outside it (the view's black border and padding) is read at the median level of the frame's
    edge, so that a light field meeting the border is not taken for ink, nor text at the frame's edge lost.
    """
    p = params or GlyphParams()
    planes = ink_planes(image, max(3, int(round(PATCH_PX / max(sy, sx, 1e-6)))))
    short = short or int(min(image.shape[:2]) * min(sy, sx))
    k = int(round(2.5 * p.max_rel_height * short / max(sy, 1e-6))) | 1
    k = max(7, min(k, 63))
    found: list[Region] = []
    filled: dict[int, np.ndarray] = {}
    for op, plane, where in planes:
        if id(plane) not in filled:
            filled[id(plane)] = _edge_filled(plane, inner)
        gray = filled[id(plane)]
        for x, y, crop, in_crop in _regions_to_read(gray, where, 3 * k // 2 + 1):
            for r in _plane_lines(crop, op, in_crop, k, sy, sx, short, p):
                box = Region(r.x + x, r.y + y, r.w, r.h, r.score, r.source)
                if all((b.x, b.y, b.w, b.h) != (box.x, box.y, box.w, box.h) for b in found):  # the brightest
                    found.append(box)  # channel finds again what the mean found
    return found


def _regions_to_read(gray: np.ndarray, where: np.ndarray | None, margin: int, cell: int = 8
                     ) -> list[tuple[int, int, np.ndarray, np.ndarray | None]]:
    """(x, y, crop, where in it) of ``gray`` to read: all of it where ink may be anywhere; else the boxes
    round the clusters of ``where`` grown by ``margin`` (inside that, the top-hat and the field round a
    glyph are those of the whole plane), found on a grid of ``cell``-pixel cells; all of it when those
    cover half the plane."""
    if where is None:
        return [(0, 0, gray, None)]
    rows, cols = gray.shape
    cells = cv2.resize(where.view(np.uint8) * np.uint8(255), (-(-cols // cell), -(-rows // cell)),
                       interpolation=cv2.INTER_AREA)  # a cell's share of ``where``, > 0 for one pixel of 64
    reach = 2 * (-(-margin // cell)) + 1
    near = cv2.dilate((cells > 0).view(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (reach, reach)))
    _, _, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=8)
    boxes = [(x * cell, y * cell, min(cols, (x + w) * cell), min(rows, (y + h) * cell))
             for x, y, w, h in stats[1:, :4].tolist()]
    if 2 * sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes) >= gray.size:
        return [(0, 0, gray, where)]
    return [(x0, y0, gray[y0:y1, x0:x1], where[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes]


def _plane_lines(gray: np.ndarray, op: int, where: np.ndarray | None, k: int, sy: float, sx: float, short: int,
                 p: GlyphParams) -> list[Region]:
    """The glyph lines on a flat field of one plane (``op``: top-hat for bright ink, black-hat for dark)
    with a ``k``-pixel kernel; with ``where``, of the glyphs with half their ink on it."""
    hat = cv2.morphologyEx(gray, op, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    marked = (hat >= p.min_contrast).view(np.uint8)
    if not marked.any():
        return []
    # table rules and frame edges touching a line of text would join it into one long component
    rules = _line_rules(marked, cv2.getStructuringElement(cv2.MORPH_RECT, (3 * k, 1)),
                        cv2.getStructuringElement(cv2.MORPH_RECT, (1, 3 * k)))
    graphics = marked.view(bool) | rules  # left out of the field round a box: flat is what remains
    # ink is also at least half its local peak: the blurred rim of an upscaled glyph would fill its holes
    near = cv2.dilate(hat, cv2.getStructuringElement(cv2.MORPH_RECT, (k // 4 * 2 + 1,) * 2))
    ink = graphics & ~rules & (hat >= cv2.subtract(near, hat))  # 2 * hat >= near, in uint8 (near >= hat)
    glyphs = _components(ink, sy, sx, short, p)
    if where is not None:
        glyphs = _mostly_in(glyphs, ink, where)
    field, ink8 = _as_u8(~graphics), _as_u8(ink)
    out: list[Region] = []
    for x0, y0, x1, y1 in _lines(glyphs, p):
        h = y1 - y0
        r = max(3, int(round(p.ring * h)))
        X0, Y0 = max(0, x0 - r), max(0, y0 - r)
        X1, Y1 = min(gray.shape[1], x1 + r), min(gray.shape[0], y1 + r)
        ring = field[Y0:Y1, X0:X1].copy()
        ring[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0] = 0
        if cv2.countNonZero(ring) < 8:
            continue
        # the field's mean and spread and the ink's mean, each in one OpenCV call (in double precision:
        # the float32 numpy forms these replace differ by ~1e-5 grey levels, at a quarter of the time)
        bg_mean, bg_std = cv2.meanStdDev(gray[Y0:Y1, X0:X1], mask=ring)
        contrast = abs(cv2.mean(gray[y0:y1, x0:x1], mask=ink8[y0:y1, x0:x1])[0] - float(bg_mean[0, 0]))
        if contrast < p.min_contrast:
            continue
        std = float(bg_std[0, 0])
        if std > p.max_ring_std or contrast < p.min_ratio * max(std, 1.0):
            continue
        out.append(Region(x0, y0, x1 - x0, y1 - y0, round(min(1.0, contrast / 255.0), 3), "glyph"))
    return out
