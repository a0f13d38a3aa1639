"""Glyphs on a flat field (``detect.glyphs``), static text across cine frames, and the strong-contrast rule."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deid_pipeline.detect import get_detector, is_available
from deid_pipeline.detect.glyphs import find_glyph_text
from deid_pipeline.prepare import View
from deid_pipeline.scan import FilterParams, looks_like_text, propagate_static, scan_batch, scan_frames
from deid_pipeline.types import Region
from tests.test_detect import _anatomy, _covered, _ds

FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX)


def _letter(img: np.ndarray, text: str, org: tuple[int, int], value: float, font: int, scale: float,
            thick: int = 1) -> tuple[int, int, int, int]:
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.putText(mask, text, org, font, scale, 255, thick, cv2.LINE_8)
    img[mask >= 64] = value
    ys, xs = np.nonzero(mask >= 64)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _hits(found: list[Region], box: tuple[int, int, int, int]) -> bool:
    return _covered(box, found, 0.9)


@pytest.mark.parametrize("font", FONTS)
@pytest.mark.parametrize("cap", [9, 12, 16])
def test_lone_letters_on_a_flat_field(font: int, cap: int) -> None:
    """L/R, F/M/O from 9 px capitals up on a 320x240 frame, in the 2x view the pipeline makes of it
    (a glyph 5 px high with 2 px strokes is a blob: not claimed)."""
    scale = cap / cv2.getTextSize("H", font, 1.0, 1)[0][1]
    rng = np.random.default_rng(cap + font)
    img = np.clip(rng.normal(12, 2, (240, 320)), 0, 255).astype(np.uint8)  # dark, slightly noisy field
    boxes = [_letter(img, c, (20 + 60 * i, 40 + 40 * i), 230, font, scale) for i, c in enumerate("LRFMO")]
    view = cv2.resize(img, (640, 480), interpolation=cv2.INTER_LINEAR)
    found = find_glyph_text(view, 0.5, 0.5, 240)
    assert found and all(r.source == "glyph" for r in found)
    stored = [Region(r.x // 2, r.y // 2, (r.w + 1) // 2 + 1, (r.h + 1) // 2 + 1) for r in found]
    for box in boxes:
        assert _hits(stored, box), box


def test_dark_text_on_a_light_report_and_rules_do_not_join_it() -> None:
    img = np.full((300, 400), 235, np.uint8)
    for y in (60, 120, 180):
        img[y, 10:390] = 128  # table rules
    box = _letter(img, "CTDIvol 12.3 mGy", (20, 116), 0, cv2.FONT_HERSHEY_SIMPLEX, 0.35)
    found = find_glyph_text(img)
    assert _hits(found, box)
    assert all(r.w < 200 for r in found)  # no box runs along a rule


@pytest.mark.parametrize("ink, field", [((0, 0, 140), (0, 0, 0)), ((150, 0, 0), (0, 0, 0)), ((0, 90, 0), (0, 0, 0)),
                                        ((160, 0, 0), (65, 45, 40)), ((0, 0, 255), (255, 255, 255)),
                                        ((90, 0, 120), (235, 235, 235))])
def test_coloured_text_is_read_in_the_channel_that_carries_it(ink: tuple[int, int, int],
                                                             field: tuple[int, int, int]) -> None:
    """Dark blue, dark red or green text on black or on a dark bar is 30-53 in the channels' mean, under
    the contrast a glyph needs: each ink is read in its brightest channel (bright ink) or its darkest
    (dark ink on a light field). A line and a lone letter of an RGB view are found."""
    mask = np.zeros((480, 640), np.uint8)
    line = _letter(mask, "ZQX PATIENT 4242", (40, 60), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.6)
    letter = _letter(mask, "F", (600, 440), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.5)
    img = np.empty((480, 640, 3), np.uint8)
    img[:] = field
    img[mask == 255] = ink
    found = find_glyph_text(img, 1.0, 1.0, 480)
    assert _hits(found, line) and _hits(found, letter)


@pytest.mark.skipif(not is_available("deid-textseg"), reason="text detector weights or torch missing")
def test_a_dark_blue_letter_on_black_is_redacted_end_to_end() -> None:
    """An RGB frame (anatomy between black bars) with a line and a lone sex letter in dark blue (0, 0, 140):
    the networks find the line, and only the glyph finder's brightest-channel plane finds the letter."""
    from tests.test_detect import _anatomy

    rows, cols = 600, 800
    grey = np.clip(_anatomy(rows, cols, 0, 200, seed=3), 0, 255).astype(np.uint8)
    img = np.repeat(grey[..., None], 3, axis=2)
    img[:80] = 0
    mask = np.zeros((rows, cols), np.uint8)
    line = _letter(mask, "ZQXSURNAME^ZQXGIVEN", (20, 30), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.6)
    letter = _letter(mask, "F", (770, 30), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.6)
    img[mask == 255] = (0, 0, 140)
    regions = scan_frames(_ds(img, "RGB"), img, get_detector("deid-textseg", "cpu"))[0]
    assert _covered(line, regions, 0.9) and _covered(letter, regions, 0.9)


def test_grey_views_are_read_in_their_grey_alone() -> None:
    """A grey view (2-D, or RGB with equal channels, or a lossy grey frame's small chroma) is read in its
    grey only, both inks: the boxes of the channels' mean, no colour plane."""
    from deid_pipeline.detect.glyphs import COLOUR_MIN, ink_planes

    rng = np.random.default_rng(5)
    grey = np.clip(rng.normal(20, 3, (240, 320)), 0, 255).astype(np.uint8)
    _letter(grey, "ZQX 77", (30, 50), 220, cv2.FONT_HERSHEY_PLAIN, 1.2)
    _letter(grey, "R", (280, 200), 210, cv2.FONT_HERSHEY_SIMPLEX, 0.5)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    tinted = rgb.copy()
    tinted[..., 2] = np.clip(tinted[..., 2].astype(int) + rng.integers(0, COLOUR_MIN, grey.shape), 0, 255)
    for image in (grey, rgb):
        assert [(op, plane.tobytes(), where) for op, plane, where in ink_planes(image)] == [
            (cv2.MORPH_TOPHAT, grey.tobytes(), None), (cv2.MORPH_BLACKHAT, grey.tobytes(), None)]
    assert len(ink_planes(tinted)) == 2
    tinted[100, 100] = (0, 0, 200)  # one dim coloured pixel: a third plane, on that pixel only
    planes = ink_planes(tinted)
    assert len(planes) == 3 and np.flatnonzero(planes[2][2]).tolist() == [100 * 320 + 100]
    assert find_glyph_text(rgb, 1.0, 1.0, 240) == find_glyph_text(grey, 1.0, 1.0, 240) != []


def test_colour_flow_is_not_read_in_its_brightest_channel() -> None:
    """A patch of colour flow (speckled red and blue) stays out of the brightest-channel plane, while a dim
    coloured label beside it is in it; bright coloured text (yellow) is read in the mean alone."""
    from deid_pipeline.detect.glyphs import ink_planes

    rng = np.random.default_rng(9)
    img = np.zeros((300, 400, 3), np.uint8)
    flow = rng.random((120, 120)) < 0.6
    img[100:220, 100:220][flow] = (200, 30, 30)
    img[100:220, 100:220][~flow] = (30, 30, 200)
    mask = np.zeros((300, 400), np.uint8)
    _letter(mask, "ZQX 42", (250, 40), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.6)
    img[mask == 255] = (0, 0, 140)
    planes = ink_planes(img)
    assert len(planes) == 3
    where = planes[2][2]
    assert not where[100:220, 100:220].any() and where[mask == 255].mean() > 0.9
    yellow = np.zeros_like(img)
    yellow[mask == 255] = (255, 255, 0)
    assert len(ink_planes(yellow)) == 2


def test_graphics_and_texture_are_not_glyphs() -> None:
    rng = np.random.default_rng(3)
    img = np.zeros((300, 400), np.uint8)
    cv2.ellipse(img, (200, 260), (150, 20), 0, 200, 340, 200, 1)  # a table curve
    cv2.line(img, (20, 30), (380, 30), 255, 1)  # a rule
    for x in range(40, 360, 40):
        cv2.line(img, (x, 100), (x, 200), 255, 1)  # a grid
        cv2.line(img, (40, x // 2 + 80), (360, x // 2 + 80), 255, 1)
    cv2.circle(img, (60, 250), 8, 255, -1)  # a filled marker
    cv2.rectangle(img, (320, 230), (380, 290), 255, -1)  # a block
    assert find_glyph_text(img) == []
    speckle = (rng.rayleigh(40, (300, 400))).clip(0, 255).astype(np.uint8)
    assert find_glyph_text(speckle) == []


def test_text_over_speckle_is_left_to_the_network() -> None:
    rng = np.random.default_rng(5)
    img = (rng.rayleigh(50, (240, 320))).clip(0, 255).astype(np.uint8)
    box = _letter(img, "F", (100, 100), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.5)
    assert not _hits(find_glyph_text(img), box)


def test_sizes_are_judged_in_stored_pixels() -> None:
    img = np.zeros((480, 640), np.uint8)
    box = _letter(img, "R", (50, 60), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.9)  # ~20 px high in this view
    assert _hits(find_glyph_text(img, 1.0, 1.0, 480), box)
    # the same view of a frame four times smaller: a glyph of 5 stored pixels is still a glyph ...
    assert _hits(find_glyph_text(img, 0.25, 0.25, 120), box)
    # ... but in a frame where this glyph would be most of the height, it is not text
    assert find_glyph_text(img, 4.0, 4.0, 1000) == []


@pytest.mark.skipif(not is_available(), reason="text detector weights or torch missing")
def test_scan_finds_a_lone_laterality_marker() -> None:
    """A lone L of 8 px on a film corner: PP-OCRv4 alone returns nothing for it; the glyph finder does
    (and so does deid-textseg, trained on such letters: the default runs both networks)."""
    img = _anatomy(320, 256, 300, 3800, seed=2).astype(np.uint16)
    img[:60, :60] = 300
    box = _letter(img, "L", (12, 20), 4000, cv2.FONT_HERSHEY_SIMPLEX, 0.3)
    det = get_detector("ppocrv4-det", "cpu")
    regions = scan_frames(_ds(img, bits=12), img, det)[0]
    assert _covered(box, [r for r in regions if r.source == "glyph"])
    without = scan_batch([(_ds(img, bits=12), img)], det, filters=FilterParams(flat_field=None))[0][0]
    assert not _covered(box, without)
    if is_available("deid-textseg"):
        seg = get_detector("deid-textseg", "cpu")
        assert _covered(box, scan_batch([(_ds(img, bits=12), img)], seg, filters=FilterParams(flat_field=None))[0][0])


def test_static_text_is_carried_to_frames_where_the_network_missed_it() -> None:
    rng = np.random.default_rng(1)
    frames = rng.rayleigh(40, (4, 120, 160)).clip(0, 255).astype(np.uint8)  # speckle moves every frame
    box = None
    for f in range(3):
        box = _letter(frames[f], "DOE JANE", (20, 40), 250, cv2.FONT_HERSHEY_SIMPLEX, 0.5)
    _letter(frames[3], "OTHER TX", (20, 40), 250, cv2.FONT_HERSHEY_SIMPLEX, 0.5)  # different text: not carried
    assert box is not None
    r = Region(box[0] - 1, box[1] - 1, box[2] + 2, box[3] + 2, 0.8, "model")
    out = propagate_static(frames, [0, 1, 2, 3], [[r], [], [], []])
    assert out[0] == [r]
    assert [x.source for x in out[1]] == ["static"] and _covered(box, out[1])
    assert _covered(box, out[2])
    assert out[3] == []
    assert propagate_static(frames, [0], [[r]]) == [[r]]


def test_wide_line_with_strong_contrast_counts_from_the_detector_floor() -> None:
    img = np.full((96, 256, 3), 235, np.uint8)
    cv2.putText(img, "Series Type Scan Range", (20, 52), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    view = View(0, "full", img, 96, 256, 1.0, 1.0, 0, 0)
    weak = Region(16, 38, 200, 20, 0.52, "model")
    assert looks_like_text(view, weak, FilterParams())
    faint = img.copy()
    faint[faint < 235] = 180  # same line at a contrast under the strong threshold
    assert not looks_like_text(View(0, "full", faint, 96, 256, 1.0, 1.0, 0, 0), weak, FilterParams())


def test_still_text_over_moving_speckle_found_through_the_static_mask() -> None:
    """A cine: speckle changes every frame, an 'F' 8 px high sits still on it. Seen alone the F is on a
    busy field (the flat-field finder refuses it); with the moving pixels blacked out it is on a flat one."""
    from deid_pipeline.prepare import prepare_views
    from deid_pipeline.scan import _static_view, static_mask

    rng = np.random.default_rng(9)
    frames = rng.rayleigh(45, (6, 240, 320)).clip(0, 255).astype(np.uint8)
    box = None
    for f in range(6):
        box = _letter(frames[f], "F", (150, 120), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.35)
    assert box is not None
    ds = _ds(frames)
    still = static_mask(frames, list(range(6)))
    assert still is not None and still[box[1] : box[1] + box[3], box[0] : box[0] + box[2]].any()
    view = prepare_views(ds, frames[:1])[0]
    found = [view.to_stored(r.x, r.y, r.w, r.h, 240, 320) for r in find_glyph_text(view.image, view.sy, view.sx, 240)]
    assert not _covered(box, [Region(*b) for b in found if b])
    found = [view.to_stored(r.x, r.y, r.w, r.h, 240, 320)
             for r in find_glyph_text(_static_view(view, still), view.sy, view.sx, 240)]
    assert _covered(box, [Region(*b) for b in found if b])
    assert static_mask(frames[:2], [0, 1]) is None  # two frames cannot tell still from moving
    assert static_mask(np.stack([frames[0]] * 4), [0, 1, 2, 3]) is None  # nothing moves


class _Blind:
    """A detector that finds nothing: what is left is the flat-field and static paths of ``scan``."""

    name, weights_sha256, device = "blind", "", "cpu"

    def detect(self, images):  # noqa: ANN001, ANN201
        return [[] for _ in images]


def test_scan_marks_still_text_in_every_frame_of_a_cine() -> None:
    rng = np.random.default_rng(4)
    frames = rng.rayleigh(45, (5, 240, 320)).clip(0, 255).astype(np.uint8)
    box = None
    for f in range(5):
        box = _letter(frames[f], "R", (60, 60), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.35)
    assert box is not None
    got = scan_frames(_ds(frames), frames, _Blind())
    assert len(got) == 5
    for regions in got:
        assert _covered(box, [r for r in regions if r.source == "static"])
    assert scan_batch([(_ds(frames), frames)], _Blind(), filters=FilterParams(flat_field=None))[0] == [[]] * 5


def _speckle_cine(frames: int, value: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Fresh speckle every frame (ultrasound-like gamma, mean ~60) under one still line of anti-aliased
    text 7 px high at ``value``; the line's box."""
    rng = np.random.default_rng(3)
    speckle = np.clip(rng.gamma(1.5, 40, (frames, 240, 320)), 0, 255)
    mask = np.zeros((240, 320), np.uint8)
    cv2.putText(mask, "DOE^JANE 19370412", (60, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 255, 1, cv2.LINE_AA)
    alpha = mask / 255.0
    ys, xs = np.nonzero(mask >= 64)
    box = int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)
    return np.round(speckle * (1 - alpha) + value * alpha).astype(np.uint8), box


def test_small_text_lost_in_each_frame_s_speckle_is_found_in_the_cine_s_median() -> None:
    """Grey 7-px text over ultrasound speckle: deid-textseg misses it in every frame scanned alone; in the
    cine the speckle moves and the text does not, and the frames' temporal median shows it on a smooth
    field: found there, and its box goes to every frame."""
    from deid_pipeline import scan

    if not is_available("deid-textseg"):
        pytest.skip("deid-textseg weights not installed")
    det = get_detector("deid-textseg", "cpu")
    frames, box = _speckle_cine(8, 200)
    assert not any(_covered(box, scan_frames(_ds(frames[k : k + 1]), frames[k : k + 1], det)[0], 0.9) for k in range(8))
    got = scan_frames(_ds(frames), frames, det)
    assert len(got) == 8 and all(_covered(box, regions, 0.9) for regions in got)
    median = scan.temporal_median(frames, list(range(8)))
    assert median is not None and median.dtype == np.uint8 and median.shape == frames.shape[1:]
    assert scan.temporal_median(frames[:2], [0, 1]) is None  # two frames: no median view
    picked = scan.temporal_median(np.stack([frames[0]] * 3 + [frames[1]] * 20), list(range(23)))
    assert picked is not None and np.array_equal(picked, frames[1])  # 9 frames, evenly spaced, at most


def _palette_cine(frames: int, value: float) -> tuple[object, np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """``_speckle_cine`` stored as PALETTE COLOR through a shuffled grey palette (index i shows grey
    ``perm[i]``: index order is not brightness order): (dataset, indices, perm, the line's box)."""
    grey, box = _speckle_cine(frames, value)
    perm = np.random.default_rng(5).permutation(256).astype(np.uint8)
    indices = np.argsort(perm).astype(np.uint8)[grey]  # grey g is stored as the index showing g
    ds = _ds(indices, "PALETTE COLOR")
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", (perm.astype(np.uint16) * 257).tobytes())
    return ds, indices, perm, box


def test_a_palette_cine_s_median_is_taken_in_brightness_not_in_index_order() -> None:
    """The temporal median of a PALETTE COLOR cine: per pixel, the index whose colour is the median in
    brightness (a median of indices, through a palette not ordered by brightness, is noise again); the
    small text over the speckle is then found in every frame, as in the greyscale cine."""
    from deid_pipeline import scan

    ds, indices, perm, box = _palette_cine(9, 200)
    brightness = scan.palette_brightness(ds)
    assert brightness is not None and scan.palette_brightness(_ds(indices)) is None
    median = scan.temporal_median(indices, list(range(9)), brightness)
    assert median is not None and median.dtype == np.uint8
    assert np.array_equal(perm[median], np.sort(perm[indices], axis=0)[4])  # the median grey, as an index
    shown = perm[median].astype(float)
    assert shown[:100].std() < 0.7 * perm[indices[0]][:100].astype(float).std()  # the speckle smoothed
    if not is_available("deid-textseg"):
        pytest.skip("deid-textseg weights not installed")
    got = scan_frames(ds, indices, get_detector("deid-textseg", "cpu"))
    assert len(got) == 9 and all(_covered(box, regions, 0.9) for regions in got)


def test_grey_u8_is_the_truncated_channel_mean_for_every_pixel_value() -> None:
    """``grey_u8`` stands in for ``image.mean(axis=2).astype(np.uint8)``: equal for all 2**24 RGB triples."""
    from deid_pipeline.detect.glyphs import grey_u8

    v = np.arange(256, dtype=np.uint8)
    rgb = np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1).reshape(4096, 4096, 3)
    assert np.array_equal(grey_u8(rgb), rgb.mean(axis=2).astype(np.uint8))
    assert np.array_equal(grey_u8(rgb[::7, 3::5]), rgb[::7, 3::5].mean(axis=2).astype(np.uint8))  # strided
    assert np.array_equal(grey_u8(rgb[..., 0]), rgb[..., 0])


def _components_scalar(ink: np.ndarray, sy: float, sx: float, short: int, p: "object") -> list[tuple[int, int, int, int]]:
    """The component filter one component at a time (the form ``_components`` had before its checks were
    vectorised): the reference it must match."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    out, max_h, dist = [], max(p.min_height + 1, p.max_rel_height * short), None
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        hs = h * sy
        if hs < p.min_height or hs > max_h or w > p.max_aspect * h or w * sx > 1.5 * max_h * p.max_aspect:
            continue
        fill = area / float(w * h)
        if not (p.min_fill_wide if w > 2 * h else p.min_fill) <= fill <= p.max_fill:
            continue
        if dist is None:
            dist = cv2.distanceTransform(np.pad(ink.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        if float(dist[y : y + h, x : x + w][labels[y : y + h, x : x + w] == i].max()) > p.max_stroke * h + 0.5:
            continue
        out.append((x, y, w, h))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_component_filter_matches_the_one_at_a_time_reference(seed: int) -> None:
    from deid_pipeline.detect import glyphs

    rng = np.random.default_rng(seed)
    ink = np.zeros((300, 400), bool)
    for _ in range(120):  # specks, strokes, bars, blobs and text of every size
        y, x = int(rng.integers(0, 290)), int(rng.integers(0, 390))
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 60))
        if rng.random() < 0.5:
            ink[y : y + h, x : x + w] = rng.random((min(h, 300 - y), min(w, 400 - x))) < rng.uniform(0.1, 1.0)
        else:
            m = np.zeros_like(ink, dtype=np.uint8)
            cv2.putText(m, "AB7", (x, y + h), FONTS[seed % 4], h / 25 + 0.2, 1, int(rng.integers(1, 3)))
            ink |= m.astype(bool)
    for sy, sx, short in ((1.0, 1.0, 300), (0.5, 0.7, 200), (2.0, 2.0, 600)):
        assert glyphs._components(ink, sy, sx, short, glyphs.GlyphParams()) == _components_scalar(ink, sy, sx, short, glyphs.GlyphParams())


@pytest.mark.parametrize("seed", range(6))
def test_line_rules_equal_the_whole_frame_openings(seed: int) -> None:
    """Opening only the rows and columns that can hold a rule gives the openings of the whole frame: runs
    inside and at every border, whole rows and columns shorter than the line, sparse and dense marks."""
    from deid_pipeline.detect import glyphs

    rng = np.random.default_rng(seed)
    shapes = [(300, 400), (64, 50), (21, 300), (400, 9), (1, 200), (200, 1)]
    for rows, cols in shapes:
        for k in (7, 21, 63):
            marked = (rng.random((rows, cols)) < rng.choice([0.02, 0.3, 0.9])).astype(np.uint8)
            for _ in range(int(rng.integers(0, 6))):  # long runs, some at the border, whole rows and columns
                if rng.random() < 0.5:
                    r, a = int(rng.integers(0, rows)), int(rng.integers(0, cols))
                    marked[r, a : a + int(rng.integers(1, 3 * k + 40))] = 1
                    marked[r, : int(rng.integers(0, 3 * k))] = rng.random() < 0.5
                else:
                    c, a = int(rng.integers(0, cols)), int(rng.integers(0, rows))
                    marked[a : a + int(rng.integers(1, 3 * k + 40)), c] = 1
                    marked[rows - int(rng.integers(0, 3 * k)) :, c] = rng.random() < 0.5
            rule_h = cv2.getStructuringElement(cv2.MORPH_RECT, (3 * k, 1))
            rule_v = cv2.getStructuringElement(cv2.MORPH_RECT, (1, 3 * k))
            want = (cv2.morphologyEx(marked, cv2.MORPH_OPEN, rule_h) | cv2.morphologyEx(marked, cv2.MORPH_OPEN, rule_v)).astype(bool)
            got = glyphs._line_rules(marked, rule_h, rule_v)
            assert got.dtype == bool and np.array_equal(got, want), (rows, cols, k)


def test_bbdt_labels_components_as_opencvs_default() -> None:
    """The glyph finder's connected components (BBDT) are OpenCV's default ones: labels and statistics."""
    rng = np.random.default_rng(11)
    masks = [(rng.random((300, 400)) < share).astype(np.uint8) for share in (0.02, 0.1, 0.3, 0.5, 0.7, 0.95)]
    masks += [np.ones((64, 50), np.uint8), np.zeros((10, 10), np.uint8), masks[2][:1].copy(), masks[2][:, :1].copy()]
    for m in masks:
        n1, l1, s1, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        n2, l2, s2, _ = cv2.connectedComponentsWithStatsWithAlgorithm(m, 8, cv2.CV_32S, cv2.CCL_BBDT)
        assert n1 == n2 and np.array_equal(l1, l2) and np.array_equal(s1, s2)


def _lines_all_pairs(boxes: list[tuple[int, int, int, int]], join_gap: float) -> list[list[int]]:
    """Glyph boxes joined into lines by trying every pair (the form ``_lines`` had before its grid): the
    reference it must match box for box, in the same order."""
    from deid_pipeline.detect import glyphs
    from deid_pipeline.types import join_boxes

    return join_boxes([[x, y, x + w, y + h] for x, y, w, h in sorted(boxes)],
                      lambda g, o: glyphs._joinable(g, o, join_gap))


@pytest.mark.parametrize("seed", range(4))
def test_line_joining_matches_the_all_pairs_reference(seed: int) -> None:
    """Speckle-dense and sparse boxes, few (all pairs) and many (the grid), boxes past the frame's edges
    and of every height, lines that grow across cells, and join gaps from none to wide."""
    from dataclasses import replace

    from deid_pipeline.detect import glyphs
    from deid_pipeline.types import _JOIN_PLAIN_MAX

    rng = np.random.default_rng(seed)
    for trial in range(30):
        size = int(rng.choice([64, 300, 1200]))
        n = int(rng.choice([0, 1, 5, _JOIN_PLAIN_MAX, _JOIN_PLAIN_MAX + 1, 150, 400]))
        tall = int(rng.choice([4, 20, 80]))
        h = rng.integers(1, tall + 1, n)
        boxes = [(int(x), int(y), int(rng.integers(1, 4 * hh + 1)), int(hh))
                 for x, y, hh in zip(rng.integers(-5, size, n), rng.integers(-5, size, n), h)]
        for join_gap in (glyphs.GlyphParams().join_gap, 0.0, 3.0, -0.5):
            p = replace(glyphs.GlyphParams(), join_gap=join_gap)
            assert glyphs._lines(boxes, p) == _lines_all_pairs(boxes, join_gap), (trial, n, join_gap)
    for empty in ((0, 10, 5, 0), (0, 40, 0, 6), (0, 40, 5, 0)):  # no height, no width: first of a row of glyphs
        boxes = [empty] + [(2 + 4 * i, 40, 3, 6) for i in range(80)] + [(2 + 4 * i, 10, 3, 4) for i in range(10)]
        assert glyphs._lines(boxes, glyphs.GlyphParams()) == _lines_all_pairs(boxes, glyphs.GlyphParams().join_gap)


def test_speckled_ultrasound_lines_match_the_all_pairs_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated 1024x768 RGB ultrasound frame (speckle leaves hundreds of glyph-sized components): the
    glyph finder's boxes with the grid join are those of the all-pairs join."""
    from deid_pipeline import pixels, synth
    from deid_pipeline.detect import glyphs
    from deid_pipeline.prepare import prepare_views
    from deid_pipeline.types import _JOIN_PLAIN_MAX

    case = synth.render_case("us_rgb", 12 * 100_003, shape=(768, 1024))
    frames = pixels.decode_frames(case.dataset)
    views = prepare_views(case.dataset, frames)
    seen: list[int] = []
    real = glyphs._lines

    def counted(boxes: list[tuple[int, int, int, int]], p: glyphs.GlyphParams) -> list[list[int]]:
        seen.append(len(boxes))
        return real(boxes, p)

    monkeypatch.setattr(glyphs, "_lines", counted)
    found = [find_glyph_text(v.plane, v.sy, v.sx, 768) for v in views]
    assert max(seen) > _JOIN_PLAIN_MAX * 4  # the grid ran, on many boxes
    monkeypatch.setattr(glyphs, "_lines", lambda boxes, p: _lines_all_pairs(boxes, p.join_gap))
    assert [find_glyph_text(v.plane, v.sy, v.sx, 768) for v in views] == found


def _propagate_frame_by_frame(frames: np.ndarray, reps: list[int], found: list[list[Region]]) -> list[list[Region]]:
    """``propagate_static`` as it was written before its checks were made for all frames at once: each box
    against each other frame in turn. The reference it must match, box for box and in order."""
    from deid_pipeline.scan import STATIC_INK_MATCH, _grey, _ink

    if len(reps) < 2 or not any(found):
        return found
    out = [list(rs) for rs in found]
    for k, rs in enumerate(found):
        for r in rs:
            box = (slice(r.y, r.y + r.h), slice(r.x, r.x + r.w))
            ref = _ink(frames[reps[k]][box]) if r.source != "fixed" else None
            if ref is None:
                continue
            values, ink, tol = ref
            for j in range(len(reps)):
                if j == k or any(b.x <= r.x and b.y <= r.y and r.x + r.w <= b.x + b.w and r.y + r.h <= b.y + b.h
                                 for b in out[j]):
                    continue
                if float((np.abs(values[ink] - _grey(frames[reps[j]][box])[ink]) <= tol).mean()) >= STATIC_INK_MATCH:
                    out[j].append(Region(r.x, r.y, r.w, r.h, r.score, "static"))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_static_carry_matches_the_frame_by_frame_reference(seed: int) -> None:
    """Grey and RGB cines with text that stays, moves or changes, repeated frames (``reps`` skipping some),
    random boxes of every size (nested, at the edges, flat, fixed), against the frame-by-frame loop."""
    import dataclasses

    from deid_pipeline import scan

    rng = np.random.default_rng(seed)
    for trial in range(8):
        n, rows, cols = int(rng.integers(2, 14)), int(rng.integers(40, 200)), int(rng.integers(40, 260))
        rgb = bool(rng.random() < 0.5)
        shape = (n, rows, cols, 3) if rgb else (n, rows, cols)
        frames = rng.rayleigh(40, shape).clip(0, 255).astype(np.uint8)
        frames[:, : rows // 3] //= 4  # a darker band: flat patches and mixed ones
        for f in range(n):  # text that stays in most frames, and some that changes
            text = "DOE JANE" if f % 5 else "OTHER 12"
            _letter(frames[f], text, (5, rows // 2), 250, cv2.FONT_HERSHEY_SIMPLEX, 0.4)
        if rng.random() < 0.3:
            frames[1] = frames[0]  # a repeated frame: reps leaves it out
        reps = [0] + [f for f in range(1, n) if not np.array_equal(frames[f], frames[f - 1])]
        found: list[list[Region]] = []
        for _ in reps:
            rs = []
            for _ in range(int(rng.integers(0, 12))):
                w, h = int(rng.integers(1, cols // 2 + 2)), int(rng.integers(1, rows // 3 + 2))
                x, y = int(rng.integers(0, cols - 1)), int(rng.integers(0, rows - 1))
                source = str(rng.choice(["model", "glyph", "fixed"], p=[0.6, 0.3, 0.1]))
                rs.append(Region(x, y, min(w, cols - x), min(h, rows - y), round(float(rng.random()), 3), source))
            if rs and rng.random() < 0.5:  # a box nested in another of its frame
                b = rs[0]
                rs.append(dataclasses.replace(b, x=b.x + b.w // 4, w=max(1, b.w // 2)))
            found.append(rs)
        want = _propagate_frame_by_frame(frames, reps, found)
        assert scan.propagate_static(frames, reps, found) == want, (trial, n, rgb)
    # a box bigger than one gather takes several: the same answer
    monkey = pytest.MonkeyPatch()
    try:
        monkey.setattr(scan, "_GATHER_VALUES", 50)
        assert scan.propagate_static(frames, reps, found) == _propagate_frame_by_frame(frames, reps, found)
    finally:
        monkey.undo()


def test_static_carry_on_a_generated_cine_matches_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The boxes deid-textseg and the glyph finder find in a generated 24-frame ultrasound cine, carried
    across its frames as the frame-by-frame loop carries them (and some are carried)."""
    from deid_pipeline import pixels, scan, synth

    if not is_available("deid-textseg"):
        pytest.skip("deid-textseg weights not installed")
    case = synth.render_case("us_cine", 13 * 100_003, shape=(480, 640), frames=24)
    frames = pixels.decode_frames(case.dataset)
    seen: list[tuple[np.ndarray, list[int], list[list[Region]]]] = []
    real = scan.propagate_static

    def captured(frames: np.ndarray, reps: list[int], found: list[list[Region]], brightness: object = None
                 ) -> list[list[Region]]:
        assert brightness is None  # greyscale values are compared as stored
        seen.append((frames, list(reps), [list(rs) for rs in found]))
        return real(frames, reps, found)

    monkeypatch.setattr(scan, "propagate_static", captured)
    scan.scan_frames(case.dataset, frames, get_detector("deid-textseg", "cpu"))
    (fr, reps, found), = seen
    got = real(fr, reps, found)
    assert got == _propagate_frame_by_frame(fr, reps, found)
    assert sum(map(len, got)) > sum(map(len, found))  # the carry did something here


def test_glyphs_at_the_frame_edge_on_a_light_field_are_found() -> None:
    """White text touching the frame's edge over a light grey field: against the view's black border the
    top-hat takes the whole light edge for ink and no glyph survives; with the frame's edge level
    outside the frame (``inner``) the glyphs are found."""
    img = np.full((200, 300), 170, np.uint8)
    img[120:, 100:] = 120  # the frame is not all one value
    box = _letter(img, "DOE 1943", (0, 12), 255, cv2.FONT_HERSHEY_SIMPLEX, 0.45)
    assert box[0] <= 1 and box[1] <= 3  # the text is at the frame's edge
    border = 16
    view = np.zeros((200 + 2 * border, 320 + border), np.uint8)  # black border, end padding
    view[border : border + 200, border : border + 300] = img
    shifted = lambda regions: [Region(r.x - border, r.y - border, r.w, r.h, r.score, r.source) for r in regions]
    found = shifted(find_glyph_text(view, inner=(border, border, 300, 200)))
    assert _hits(found, box)
    assert not _hits(shifted(find_glyph_text(view)), box)
