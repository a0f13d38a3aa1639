"""Line completion (``detect.extend``): a network box grown over the glyphs its line continues with."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from deid_pipeline.detect import get_detector, is_available
from deid_pipeline.detect.extend import extend_along_line
from deid_pipeline.types import Region
from tests.test_detect import REPO, _covered, _decode, _real

BAR = (40, 45, 65)  # a dark blue-grey bar ...
INK = (0, 0, 160)  # ... and dark blue text on it: grey 53 against 50, told apart only by colour


def _line(img: np.ndarray, text: str, org: tuple[int, int], ink: tuple[int, ...], scale: float = 0.6) -> list[tuple[int, int, int, int]]:
    """Draw ``text`` (OpenCV's simplex font, 1 px strokes) and return each character's ink box."""
    boxes = []
    x = org[0]
    for ch in text:
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.putText(mask, ch, (x, org[1]), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_8)
        (w, _), _ = cv2.getTextSize(ch, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ys, xs = np.nonzero(mask)
        if len(xs):
            img[mask > 0] = ink
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)))
        x += w
    return boxes


def _bar(height: int = 60, width: int = 480) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = BAR
    return img


def _box_of(glyphs: list[tuple[int, int, int, int]], pad: int = 2) -> Region:
    x0 = min(g[0] for g in glyphs) - pad
    y0 = min(g[1] for g in glyphs) - pad
    x1 = max(g[0] + g[2] for g in glyphs) + pad
    y1 = max(g[1] + g[3] for g in glyphs) + pad
    return Region(x0, y0, x1 - x0, y1 - y0, 0.7, "textseg")


def _whole(img: np.ndarray, r: Region) -> list[Region]:
    return [r] + extend_along_line(img, r, (0, 0, img.shape[1], img.shape[0]))


def test_a_line_boxed_short_is_completed_both_ways() -> None:
    """The network boxed the middle of a dark blue line: the pieces reach its first and last glyph,
    across a word space, and stop there."""
    img = _bar()
    glyphs = _line(img, "WESTWAY MEDICAL", (20, 35), INK)
    box = _box_of(glyphs[3:11])
    assert not all(_covered(g, [box], 0.9) for g in glyphs)
    regions = _whole(img, box)
    assert all(_covered(g, regions, 0.9) for g in glyphs)
    right_end = max(g[0] + g[2] for g in glyphs)
    assert max(r.x + r.w for r in regions) <= right_end + 1  # no further than the last glyph
    assert min(r.x for r in regions) >= min(g[0] for g in glyphs) - 1
    # grey views (one plane) the same
    grey = np.zeros(img.shape[:2], np.uint8)
    glyphs = _line(grey, "WESTWAY MEDICAL", (20, 35), (200,))
    regions = _whole(grey, _box_of(glyphs[3:11]))
    assert all(_covered(g, regions, 0.9) for g in glyphs)


def test_a_whole_line_is_left_as_it_is() -> None:
    img = _bar()
    glyphs = _line(img, "WESTWAY", (20, 35), INK)
    assert extend_along_line(img, _box_of(glyphs), (0, 0, img.shape[1], img.shape[0])) == []


@pytest.mark.parametrize("beside", ["rule", "far word", "other colour", "texture", "speckle", "taller"])
def test_what_does_not_continue_a_line(beside: str) -> None:
    """A rule of the ink's colour, a word beyond a wide gap, text of another colour, the same glyphs
    over a textured field, specks, or glyphs of another size next to the line: the box stays as it is."""
    img = _bar()
    glyphs = _line(img, "WEST", (20, 35), INK)
    box = _box_of(glyphs)
    right = box.x + box.w
    rng = np.random.default_rng(3)
    if beside == "rule":
        img[28:30, right + 2 : right + 200] = INK
    elif beside == "far word":
        _line(img, "MEDICAL", (right + 40, 35), INK)
    elif beside == "other colour":
        _line(img, "MEDICAL", (right + 4, 35), (255, 255, 255))
    elif beside == "texture":
        img[:, right + 2 :] = rng.integers(0, 255, (img.shape[0], img.shape[1] - right - 2, 3), dtype=np.uint8)
        _line(img, "MEDICAL", (right + 4, 35), INK)
    elif beside == "speckle":
        ys, xs = rng.integers(box.y, box.y + box.h, 40), rng.integers(right + 2, right + 120, 40)
        img[ys, xs] = INK
    else:
        _line(img, "MEDICAL", (right + 4, 50), INK, scale=1.6)
    assert extend_along_line(img, box, (0, 0, img.shape[1], img.shape[0])) == []


def test_it_stays_inside_the_frame() -> None:
    """The view's black border and padding are not searched: glyphs of the ink drawn there are not reached."""
    img = _bar(60, 400)
    glyphs = _line(img, "WESTWAY MEDICAL", (20, 35), INK)
    inner = (0, 0, glyphs[10][0] - 2, 60)  # the frame ends before "EDICAL"
    pieces = extend_along_line(img, _box_of(glyphs[2:6]), inner)
    assert pieces and max(r.x + r.w for r in pieces) <= inner[2]


@pytest.mark.skipif(not is_available(), reason="text detector weights or torch missing")
def test_dark_blue_text_on_the_real_ultrasound_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real palette ultrasound with its text recoloured dark blue (``eval_variants``'s
    ``text-dark-blue``): the networks box the institution from its third character; completed, every
    PHI box is covered; without completion the institution is covered only by the glyph finder's
    brightest-channel plane, and with neither it is not."""
    from deid_pipeline.detect import glyphs
    from deid_pipeline import scan

    sys.path.insert(0, str(REPO / "benchmarks"))
    import eval_variants

    ds, truth = _real("gdcm-US-ALOKA-16.dcm")
    [(vds, t)] = [(v_ds, v_t) for v, v_ds, v_t in eval_variants.variants(eval_variants.Source(ds, truth))
                  if v == "text-dark-blue"]
    det = get_detector("auto", "cpu")
    phi = {a["category"]: (a["x"], a["y"], a["w"], a["h"]) for a in t["annotations"] if a["phi"]}
    regions = scan.scan_frames(vds, _decode(vds), det)[0]
    assert all(_covered(b, regions) for b in phi.values())
    monkeypatch.setattr(scan, "extend_along_line", lambda *args, **kwargs: [])
    regions = scan.scan_frames(vds, _decode(vds), det)[0]
    assert _covered(phi["institution"], regions)
    monkeypatch.setattr(glyphs, "COLOUR_DIM", 0)  # no pixel dim enough: no brightest-channel plane
    regions = scan.scan_frames(vds, _decode(vds), det)[0]
    assert not _covered(phi["institution"], regions)
