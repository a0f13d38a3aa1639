"""Smoke test of scripts/train_textseg.py: its targets mark the ground truth, and a training step runs.

No timing and no accuracy here (``benchmarks/eval_text.py`` measures the shipped weights); this keeps the
script that reproduces ``models/deid_textseg.pt`` from rotting.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import train_textseg as T  # noqa: E402


def _fonts_or_skip() -> list[str]:
    """The training script's TrueType faces; the test skips without Pillow or fonts."""
    pytest.importorskip("PIL")
    try:
        return T._fonts()
    except SystemExit:
        pytest.skip("no TrueType fonts on this machine")


def test_targets_cover_the_ground_truth_and_skip_what_does_not_show() -> None:
    rng = np.random.default_rng(0)
    views = T._views_of_case("ct", 5, rng)
    assert views, "a CT case gives at least one view"
    for img, mask in views:
        assert img.dtype == np.uint8 and img.shape[:2] == mask.shape and img.shape[2] == 3
        assert set(np.unique(mask)) <= {0, 1, T.IGNORE}
    # every case with text has its boxes in the loss in at least one view (positive pixels)
    assert any((m == 1).any() for _, m in views)
    blank = T._views_of_case("notext_lines", 5, rng)
    assert all(not (m == 1).any() for _, m in blank)  # a no-text case teaches "no text" only


def test_crops_and_two_training_steps() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    img, mask = T._views_of_case("us", 3, rng)[0]
    crops = T._crops(img, mask, rng, 3)
    assert all(c.shape == (T.CROP, T.CROP, 3) and m.shape == (T.CROP, T.CROP) for c, m in crops)
    x = np.stack([c for c, _ in crops])
    y = np.stack([m for _, m in crops])
    net = T.train(x, y, steps=2, batch=2, lr=1e-3, seed=0, log_every=1)
    with torch.no_grad():
        out = net(T.to_input(torch.from_numpy(x[:1])))
    assert tuple(out.shape) == (1, 1, T.CROP, T.CROP) and torch.isfinite(out).all()


def test_truetype_text_is_marked_when_pillow_and_fonts_exist() -> None:
    fonts = _fonts_or_skip()
    rng = np.random.default_rng(2)
    view = np.zeros((256, 256, 3), np.uint8) + 40
    mask = np.zeros((256, 256), np.uint8)
    for _ in range(5):
        T._paste_ttf(view, mask, rng, fonts)
    assert (mask == 1).any() and (view != 40).any()
    ys, xs = np.nonzero(mask == 1)
    assert (view[ys, xs] != 40).any(axis=1).mean() > 0.05  # marked boxes hold drawn pixels


def test_small_text_is_pasted_inside_a_textured_field_and_never_on_a_flat_one() -> None:
    fonts = _fonts_or_skip()
    rng = np.random.default_rng(3)
    # left half flat grey, right half speckle (the only place text may go)
    view = np.full((256, 256, 3), 60, np.uint8)
    view[:, 128:] = np.clip(rng.gamma(1.5, 40, (256, 128, 1)), 0, 255).astype(np.uint8)
    mask = np.zeros((256, 256), np.uint8)
    for _ in range(8):
        T._paste_ttf_on_texture(view, mask, rng, fonts)
    ys, xs = np.nonzero(mask == 1)
    assert len(ys), "text was marked over the speckle"
    assert xs.min() >= 128 - 8, "no text on the flat half (the spread of a 15-px square reaches 7 px over)"
    assert (view[:, :120] == 60).all()
    import cv2

    _, _, stats, _ = cv2.connectedComponentsWithStats((mask == 1).view(np.uint8))
    assert stats[1:, cv2.CC_STAT_HEIGHT].max() < 2 * T.TEXTURE_SIZES[1]  # small text only
    # a view with no texture anywhere gets nothing
    still = np.full((256, 256, 3), 60, np.uint8)
    none = np.zeros((256, 256), np.uint8)
    T._paste_ttf_on_texture(still, none, rng, fonts)
    assert not none.any() and (still == 60).all()


def test_colour_overlay_negatives_are_coloured_and_hold_no_text() -> None:
    x, y = T.overlay_negatives(4, 1)
    assert x.shape == (4, T.CROP, T.CROP, 3) and y.shape == (4, T.CROP, T.CROP)
    assert not (y == 1).any()  # no text anywhere: they teach "hot spots are not text"
    chroma = x.max(axis=3).astype(int) - x.min(axis=3)
    assert (chroma > 60).mean(axis=(1, 2)).max() > 0.002  # coloured spots drawn over the grey views


def test_turned_crops_keep_their_targets_and_ruler_negatives_hold_no_text() -> None:
    """``_turn_some`` turns a crop and its target alike (share 1: every crop; 0: none); ruler negatives
    are scales drawn on no-text views (marks in the crop) with all-zero targets."""
    rng = np.random.default_rng(4)
    xs = rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    ys = np.zeros((3, 16, 16), np.uint8)
    ys[:, 2:4, 5:12] = 1  # a horizontal line of "text"
    tx, ty = T._turn_some(xs, ys, rng, 1.0)
    for i in range(3):
        k = next(k for k in (1, 3) if np.array_equal(ty[i], np.rot90(ys[i], k)))
        assert np.array_equal(tx[i], np.rot90(xs[i], k, axes=(0, 1)))
    same_x, same_y = T._turn_some(xs, ys, rng, 0.0)
    assert np.array_equal(same_x, xs) and np.array_equal(same_y, ys)
    x, y = T.ruler_negatives(4, 5)
    assert x.shape == (4, T.CROP, T.CROP, 3) and y.shape == (4, T.CROP, T.CROP) and not y.any()
    import cv2

    flat = np.full((256, 256, 3), 30, np.uint8)
    for seed in range(5):  # on a flat view: a scale is a run of separate marks (ticks), not one blob
        drawn = (T._ruler(flat, np.random.default_rng(seed)) != 30).any(axis=2).astype(np.uint8)
        assert drawn.any() and (flat == 30).all()
        ticks = cv2.connectedComponents(drawn)[0] - 1
        assert ticks >= 4 or drawn.sum() > 4 * 256 * 0.5, seed  # or ticks joined by the scale's axis line
