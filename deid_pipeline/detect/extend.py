"""Line completion: a network text box grown along its lines over more glyphs of the same ink.

A text-line network's box can stop a glyph or two short of a line's end where the text stands out
weakly from its field: dark blue on a dark bar is nearly invisible in grey and only its colour tells it
apart, and the network boxes the clearer middle of the line. The box's glyphs are measured in the view
the box was found in (colour views in colour): its field is the box's commonest colour, its glyphs the
components of pixels far from that field that are shaped like glyphs (a bar or a second field is not),
grouped into lines. Beyond each line's outermost glyph, on the line's rows, components of pixels nearer
that glyph's ink than the field, glyph-sized for the line, extend it one after another while the gap
stays under ``gap`` glyph heights and the field between them stays flat; a rule (wider than a glyph),
speckle (lower than a glyph) or a textured field (anatomy) stops it.

``scan`` applies it to colour views only: on grey views it found nothing more on the measured sets and
cost 4-6 % of the CPU CT rate (``benchmarks/README.md``, fourteenth session).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..types import Region
from .glyphs import _as_u8

__all__ = ["LineParams", "extend_along_line"]


@dataclass(frozen=True)
class LineParams:
    gap: float = 0.8  # widest gap crossed, in glyph heights (a word space is about half a glyph's height)
    reach: float = 16.0  # glyph heights searched beyond a line's end, at most
    min_height: int = 4  # view pixels: a smaller component is a dot or noise
    glyph_aspect: float = 1.6  # a glyph is at most this many heights wide (wider: a rule, a bar, a field)
    same_height: float = 0.5  # a glyph beyond the line is within this share of the line's height ...
    pad: float = 0.25  # ... and rows this share of it above and below the line are searched too
    min_ink: float = 24.0  # ink differs from the field by at least this (largest channel difference, 0..255)
    max_textured: float = 0.25  # share of a column's rows neither field nor ink: the field is not flat there


def _distance(a: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Largest channel difference of each pixel of ``a`` (h, w, c int16) from ``colour`` (c,), int16:
    channel by channel (a maximum over a last axis of three is several times slower)."""
    c = np.rint(colour).astype(np.int16)
    out = np.abs(a[..., 0] - c[0])
    for k in range(1, a.shape[-1]):
        np.maximum(out, np.abs(a[..., k] - c[k]), out=out)
    return out


def _field(box: np.ndarray) -> np.ndarray:
    """The commonest colour of ``box`` (h, w, c int16): the mean of the fullest bin of 32 levels a channel."""
    flat = box.reshape(-1, box.shape[-1])
    bins = (flat >> 3) @ (32 ** np.arange(flat.shape[1]))
    fullest = np.argmax(np.bincount(bins.ravel()))
    return flat[bins == fullest].mean(axis=0)


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, stats) of the 8-connected components of a bool mask."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(_as_u8(mask), 8, cv2.CV_32S)
    return labels, stats


def _grow(strip: np.ndarray, field: np.ndarray, ink: np.ndarray, height: int, p: LineParams) -> int:
    """How many columns of ``strip`` (a line's rows beyond its outermost glyph, column 0 next to it)
    further glyphs of ``ink`` cover."""
    d_field = _distance(strip, field)
    tol = max(p.min_ink, 0.5 * float(np.abs(ink - field).max()))
    on = (d_field >= tol) & (_distance(strip, ink) < d_field)
    near = cv2.dilate(on.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    textured = ((d_field >= tol / 2) & ~near).mean(axis=0) > p.max_textured
    stop = int(np.argmax(textured)) if textured.any() else strip.shape[1]
    if stop == 0:
        return 0
    _, stats = _components(on[:, :stop])
    reached = 0
    for s in sorted(stats[1:].tolist()):  # by left edge
        x0, w, h = s[cv2.CC_STAT_LEFT], s[cv2.CC_STAT_WIDTH], s[cv2.CC_STAT_HEIGHT]
        if x0 - reached > p.gap * height:
            break
        if abs(h - height) <= p.same_height * height and w <= p.glyph_aspect * height:
            reached = max(reached, x0 + w)
    return reached


def _lines(part: np.ndarray, p: LineParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[int]]]:
    """(field, labels, stats, lines) of a part of a box (h, w, c int16): its commonest colour, its
    glyph-shaped components of pixels far from it, and those grouped into lines (rows overlapping by half
    the lower glyph; a line has two glyphs at least)."""
    field = _field(part)
    d = _distance(part, field)
    labels, stats = _components(d >= max(p.min_ink, 0.5 * float(d.max())))
    glyphs = [k for k in range(1, len(stats)) if stats[k, cv2.CC_STAT_HEIGHT] >= p.min_height
              and stats[k, cv2.CC_STAT_WIDTH] <= p.glyph_aspect * stats[k, cv2.CC_STAT_HEIGHT]]
    lines: list[tuple[int, int, list[int]]] = []  # (top, bottom, glyphs)
    for k in sorted(glyphs, key=lambda k: stats[k, cv2.CC_STAT_TOP]):
        top, h = int(stats[k, cv2.CC_STAT_TOP]), int(stats[k, cv2.CC_STAT_HEIGHT])
        for n, (lt, lb, line) in enumerate(lines):
            if min(lb, top + h) - max(lt, top) >= 0.5 * min(h, lb - lt):
                line.append(k)
                lines[n] = (min(lt, top), max(lb, top + h), line)
                break
        else:
            lines.append((top, top + h, [k]))
    return field, labels, stats, [line for _, _, line in lines if len(line) >= 2]


def extend_along_line(image: np.ndarray, r: Region, inner: tuple[int, int, int, int],
                      params: LineParams | None = None) -> list[Region]:
    """Pieces beyond the ends of ``r``'s lines (view pixels) over which further glyphs of the same ink
    continue them in ``image`` (H, W[, 3] uint8), within ``inner``, the frame's (x, y, w, h) in the view;
    none when the lines end inside ``r``."""
    p = params or LineParams()
    fx, fy, fw, fh = inner
    y0, y1 = max(r.y, fy), min(r.y + r.h, fy + fh)
    x0, x1 = max(r.x, fx), min(r.x + r.w, fx + fw)
    if y1 - y0 < p.min_height or x1 - x0 < 2:
        return []
    frame = image if image.ndim == 3 else image[..., None]
    near = int(p.gap * (y1 - y0)) + 1  # the first glyph beyond a line's end starts this close to the box
    pieces = []
    for side in (-1, 1):
        # a side whose next columns each equal the one before holds nothing (most boxes: text on black)
        beside = frame[y0:y1, max(fx, x0 - near) : x0 + 1] if side < 0 else frame[y0:y1, x1 - 1 : min(fx + fw, x1 + near)]
        if int(np.abs(np.diff(beside.astype(np.int16), axis=1)).max(initial=0)) < p.min_ink:
            continue
        # the box's end, up to three of its heights: its last glyphs and their field
        c0, c1 = (x0, min(x1, x0 + 3 * (y1 - y0))) if side < 0 else (max(x0, x1 - 3 * (y1 - y0)), x1)
        part = frame[y0:y1, c0:c1].astype(np.int16)
        field, labels, stats, lines = _lines(part, p)
        for line in lines:
            s = stats[line]
            height = int(np.median(s[:, cv2.CC_STAT_HEIGHT]))
            pad = int(round(p.pad * height))
            top = max(fy, y0 + int(s[:, cv2.CC_STAT_TOP].min()) - pad)
            bottom = min(fy + fh, y0 + int((s[:, cv2.CC_STAT_TOP] + s[:, cv2.CC_STAT_HEIGHT]).max()) + pad)
            reach = int(p.reach * height)
            if side < 0:
                end = line[int(np.argmin(s[:, cv2.CC_STAT_LEFT]))]
                edge = c0 + int(stats[end, cv2.CC_STAT_LEFT])
                strip = frame[top:bottom, max(fx, edge - reach) : edge][:, ::-1]
            else:
                end = line[int(np.argmax(s[:, cv2.CC_STAT_LEFT] + s[:, cv2.CC_STAT_WIDTH]))]
                edge = c0 + int(stats[end, cv2.CC_STAT_LEFT] + stats[end, cv2.CC_STAT_WIDTH])
                strip = frame[top:bottom, edge : min(fx + fw, edge + reach)]
            if not strip.shape[1]:
                continue
            grown = _grow(strip.astype(np.int16), field, np.median(part[labels == end], axis=0), height, p)
            if side > 0 and edge + grown > r.x + r.w:
                pieces.append(replace(r, x=r.x + r.w, y=top, w=edge + grown - (r.x + r.w), h=bottom - top))
            elif side < 0 and edge - grown < r.x:
                pieces.append(replace(r, x=edge - grown, y=top, w=r.x - (edge - grown), h=bottom - top))
    return pieces
