"""Train ``models/deid_textseg.pt``, deid's own text detector, from generated data alone.

Data (all generated here, deterministic from ``--seed``):

* ``deid_pipeline.synth`` cases of every kind (text and no-text), turned into the views the pipeline
  itself prepares (``prepare.prepare_views``: min-max, window and extreme views of greyscale frames, LUT
  and colour-converted views of colour frames). The target of a view is its ground-truth line boxes;
  a box whose text does not show in that view (Otsu contrast inside the box below ``MIN_VISIBLE``) is
  left out of the loss, and so is a 1-pixel ring round every box.
* TrueType text (the DejaVu and Liberation faces of the build machine, anti-aliased or not, 6 to 34 px)
  pasted over half of those views in random grey levels and colours, sometimes on a bar: fonts that
  the synth generator's Hershey faces do not cover.
* Small TrueType text (7-14 px, sometimes with a dark outline) drawn inside the views' textured fields
  (speckle, anatomy, noise) on 35 % of the views: labels a device writes over the image, not only in
  its margins (``_paste_ttf_on_texture``), with ``--texture``: the shipped weights' data has none.
* ``--overlay-negatives N``: N no-text crops under colour-map hot spots (a PET/CT fusion, a perfusion
  map): round blobs and rings a network trained on text over texture would box as lone letters.

* ``--ruler-negatives N``: N no-text crops with scales drawn on them (ultrasound depth scales, rulers:
  columns of ticks), and ``--turn SHARE``: that share of the training crops turned a quarter with their
  targets (vertical text as text). Both measured on 2026-12-08 and not shipped (``models/MODEL_CARD.md``).

The synth seeds used here (``seed * 1_000_003 + i`` with ``--seed`` 424242) are far from the
evaluation seeds (7 and 11) of ``benchmarks/eval_text.py``. No shared or real patient image is used.

Training: random 256x256 crops (most centred on a box), flips are not used (text has a direction);
Adam, cosine learning rate, loss = BCE over the pixels in the loss + soft Dice. CPU is enough.

    python scripts/train_textseg.py --cases 2400 --steps 4000 --out /tmp/textseg
    python scripts/train_textseg.py --install /tmp/textseg/deid_textseg.pt   # copy to models/, pin sha256

The shipped weights were trained without the text over texture and the overlay negatives (the defaults);
a fine-tune with both (``--texture --overlay-negatives 1200 --init``) was measured on 2026-12-08 and not
shipped (``benchmarks/README.md``, thirty-fourth session).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deid_pipeline import synth  # noqa: E402
from deid_pipeline.detect.glyphs import grey_u8  # noqa: E402
from deid_pipeline.detect.textseg import WEIGHTS_FILE, build_net, to_input  # noqa: E402
from deid_pipeline.pixels import decode_frames  # noqa: E402
from deid_pipeline.prepare import prepare_views  # noqa: E402
from deid_pipeline.scan import otsu_contrast  # noqa: E402

CROP = 256
IGNORE = 255
MIN_VISIBLE = 25.0  # Otsu contrast (0..255) of a box in a view below which its text does not show there
FONT_GLOBS = ("/usr/share/fonts/truetype/dejavu/*.ttf", "/usr/share/fonts/truetype/liberation/*.ttf")
_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_PUNCT = " :/.-,#()^'+%"


def _fonts() -> list[str]:
    paths = sorted(p for g in FONT_GLOBS for p in glob.glob(g) if "MathTeX" not in p)
    if not paths:
        raise SystemExit("no TrueType fonts found under /usr/share/fonts (apt-get install fonts-dejavu fonts-liberation)")
    return paths


def _mark(mask: np.ndarray, gray: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Target 1 inside the box when its text shows in this view, else out of the loss; a 1-px ring out."""
    h, w = mask.shape
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    ring = mask[max(0, y0 - 1): y1 + 1, max(0, x0 - 1): x1 + 1]
    ring[ring == 0] = IGNORE
    visible = otsu_contrast(gray[y0:y1, x0:x1])[0] >= MIN_VISIBLE
    mask[y0:y1, x0:x1] = 1 if visible else IGNORE


def _random_text(rng: np.random.Generator) -> str:
    n = int(rng.integers(1, 22))
    if rng.random() < 0.15:
        n = int(rng.integers(1, 3))  # lone letters and digits
    chars = _CHARS + _PUNCT * 2
    s = "".join(chars[int(i)] for i in rng.integers(0, len(chars), n)).strip()
    if rng.random() < 0.5:
        s = s.upper()
    return s or "X"


def _text_alpha(font: "object", text: str, left: int, top: int, tw: int, th: int, hard: bool,
                stroke: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ink, outline) coverage in 0..1, each (th, tw, 1), of ``text`` drawn with its ``font.getbbox``
    corner at (``left``, ``top``); ``hard``: not anti-aliased, like a device's bitmap font; the outline
    (``stroke`` pixels round the letters, always anti-aliased) is zeros without a stroke."""
    from PIL import Image, ImageDraw

    ink, ring = Image.new("L", (tw, th), 0), Image.new("L", (tw, th), 0)
    draw = ImageDraw.Draw(ink)
    if hard:
        draw.fontmode = "1"
    draw.text((-left, -top), text, fill=255, font=font)
    if stroke:
        ImageDraw.Draw(ring).text((-left, -top), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return (np.asarray(ink, np.float32)[..., None] / 255.0, np.asarray(ring, np.float32)[..., None] / 255.0)


def _mark_drawn(mask: np.ndarray, view: np.ndarray, x: int, y: int, cover: np.ndarray) -> None:
    """``_mark`` the box of the pixels ``cover`` (coverage drawn at (x, y)) holds above a quarter."""
    ys, xs = np.nonzero(cover[..., 0] > 0.25)
    _mark(mask, grey_u8(view), x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1)


def _paste_ttf(view: np.ndarray, mask: np.ndarray, rng: np.random.Generator, fonts: list[str]) -> None:
    """Draw 1-4 TrueType strings on the view (in place) and mark their boxes."""
    from PIL import ImageFont

    h, w = view.shape[:2]
    for _ in range(int(rng.integers(1, 5))):
        size = int(rng.integers(7, 36))
        font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], size)
        text = _random_text(rng)
        l, t, r, b = font.getbbox(text)
        tw, th = r - l, b - t
        if tw < 2 or th < 2 or tw >= w - 4 or th >= h - 4:
            continue
        x, y = int(rng.integers(2, w - tw - 2)), int(rng.integers(2, h - th - 2))
        if (mask[max(0, y - 3): y + th + 3, max(0, x - 3): x + tw + 3] != 0).any():
            continue
        a, _ = _text_alpha(font, text, l, t, tw, th, hard=rng.random() < 0.4)
        if a.max() == 0:
            continue
        patch = view[y: y + th, x: x + tw].astype(np.float32)
        if rng.random() < 0.2:  # a bar behind the text
            patch[:] = rng.integers(0, 256) if rng.random() < 0.5 else np.array(rng.integers(0, 256, 3))
        base = float(patch.mean())
        if rng.random() < 0.5:
            colour = np.array([255.0, 255.0, 255.0]) * rng.uniform(0.55, 1.0)
        else:
            colour = rng.integers(0, 256, 3).astype(np.float32)
        if rng.random() < 0.2 or base > 170:
            colour = np.full(3, rng.uniform(0, 60)) if base > 90 else colour
        view[y: y + th, x: x + tw] = np.clip(patch * (1 - a) + colour * a, 0, 255).astype(np.uint8)
        _mark_drawn(mask, view, x, y, a)


#: text pasted over texture (``_paste_ttf_on_texture``): its sizes in view pixels, and the share of views
#: that get it
TEXTURE_SIZES = (7, 15)
TEXTURE_SHARE = 0.35
TEXTURE_MIN_STD = 18.0  # local spread (grey levels, 15-px squares) of a field that counts as texture


def _paste_ttf_on_texture(view: np.ndarray, mask: np.ndarray, rng: np.random.Generator, fonts: list[str]) -> None:
    """Draw 1-3 small TrueType strings (``TEXTURE_SIZES`` px) where the view itself is textured (speckle,
    anatomy, noise: a local spread of ``TEXTURE_MIN_STD`` or more) and mark their boxes. A device writes
    small labels, depths and markers over the image as often as beside it; ``_paste_ttf`` places text
    anywhere, mostly on the flat margins, and few of its strings are small."""
    import cv2
    from PIL import ImageFont

    gray = grey_u8(view).astype(np.float32)
    mean = cv2.blur(gray, (15, 15))
    std = np.sqrt(np.maximum(cv2.blur(gray * gray, (15, 15)) - mean * mean, 0))
    # a box wholly inside a textured field, its centre not on an edge or a rule (a thin band of spread)
    spread = (std >= TEXTURE_MIN_STD).view(np.uint8)
    ys_t, xs_t = np.nonzero(cv2.erode(spread, np.ones((31, 31), np.uint8)))
    if not len(ys_t):
        return
    h, w = view.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        size = int(rng.integers(*TEXTURE_SIZES))
        font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], size)
        text = _random_text(rng)[:12]
        stroke = int(rng.integers(1, 3)) if rng.random() < 0.3 else 0
        l, t, r, b = font.getbbox(text, stroke_width=stroke)
        tw, th = r - l, b - t
        k = int(rng.integers(len(ys_t)))
        x, y = int(xs_t[k]) - tw // 2, int(ys_t[k]) - th // 2
        if tw < 2 or th < 2 or x < 2 or y < 2 or x + tw > w - 2 or y + th > h - 2:
            continue
        if (mask[max(0, y - 3): y + th + 3, max(0, x - 3): x + tw + 3] != 0).any() or not spread[y: y + th, x: x + tw].all():
            continue
        a, o = _text_alpha(font, text, l, t, tw, th, hard=rng.random() < 0.3, stroke=stroke)
        if a.max() == 0:
            continue
        patch = view[y: y + th, x: x + tw].astype(np.float32)
        level = float(mean[int(ys_t[k]), int(xs_t[k])])
        if level > 150 and rng.random() < 0.5:
            colour = np.full(3, rng.uniform(0, 50), np.float32)  # dark on a bright field
        elif rng.random() < 0.6:
            colour = np.full(3, rng.uniform(min(level + 60, 230), 255), np.float32)
        else:
            colour = rng.integers(80, 256, 3).astype(np.float32)
        if stroke:
            patch = patch * (1 - o) + float(rng.uniform(0, 50)) * o
        view[y: y + th, x: x + tw] = np.clip(patch * (1 - a) + colour * a, 0, 255).astype(np.uint8)
        _mark_drawn(mask, view, x, y, np.maximum(a, o))


#: no-text kinds whose views get colour-map overlays (``overlay_negatives``)
OVERLAY_KINDS = ("notext_ct", "notext_us", "notext_circles", "notext_lines", "notext_grid")


def _colour_overlay(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``view`` under a colour map of blurred hot spots (a PET/CT or SPECT fusion, a perfusion or
    elasticity map): round bright blobs and rings of colour that are not text."""
    import cv2

    h, w = view.shape[:2]
    heat = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(3, 6))):  # blobs of one size per pass, peaks 0.3-1.2
        sigma = float(rng.uniform(1.5, 8))
        spots = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(5, 30))):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            if rng.random() < 0.2:  # a ring (a hot rim, a bone in cross-section)
                cv2.circle(spots, (x, y), int(rng.integers(3, 12)), float(rng.uniform(0.4, 1.2)), int(rng.integers(1, 4)))
            else:
                spots[y, x] = 2 * np.pi * sigma * sigma * float(rng.uniform(0.3, 1.2))
        heat += cv2.GaussianBlur(spots, (0, 0), sigma if spots.max() > 1.5 else 1.0)
    cmap = (cv2.COLORMAP_HOT, cv2.COLORMAP_JET, cv2.COLORMAP_INFERNO, cv2.COLORMAP_RAINBOW)[int(rng.integers(4))]
    heat = np.clip(heat, 0, 1)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cmap)[..., ::-1].astype(np.float32)
    alpha = (np.sqrt(heat) * rng.uniform(0.6, 1.0))[..., None]
    return np.clip(view * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)


def _no_text_crops(n: int, rng: np.random.Generator, seed0: int,
                   paint: Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` crops, targets all 0, of the no-text views of ``OVERLAY_KINDS`` cases (seeds ``seed0 + i``),
    each painted by ``paint(view, mask, rng)``, which gives the painted view and where crops centre."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    i = 0
    while len(xs) < n:
        for img, mask in _views_of_case(OVERLAY_KINDS[i % len(OVERLAY_KINDS)], seed0 + i, rng):
            painted, centres = paint(img, mask, rng)
            for c, m in _crops(painted, centres, rng, 2):
                xs.append(c)
                ys.append(np.zeros_like(m))
        i += 1
    return np.stack(xs[:n]), np.stack(ys[:n])


def overlay_negatives(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` crops of no-text views under colour-map overlays (:func:`_colour_overlay`), targets all 0: hot
    spots a network trained on text over texture boxes as lone letters."""
    return _no_text_crops(n, np.random.default_rng(seed + 7), seed * 1_000_003 + 500_000,
                          lambda img, mask, rng: (_colour_overlay(img, rng), mask))


def _ruler(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``view`` with one to three scales drawn on it (an ultrasound depth scale, a ruler, a time axis):
    ticks at a regular step along a line, some longer, sometimes with triangle markers beside them, in
    a device colour; not text, but a column of marks that a network shown turned text boxes as a line."""
    import cv2

    out = view.copy()
    h, w = out.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        colour = [(0, 255, 0), (255, 255, 255), (255, 255, 0), (0, 200, 255), (160, 160, 160)][int(rng.integers(5))]
        colour = tuple(int(c * rng.uniform(0.6, 1.0)) for c in colour)
        step, thick = int(rng.integers(6, 32)), int(rng.integers(1, 3))
        tick, long_every = int(rng.integers(2, 9)), int(rng.integers(2, 6))
        vertical = rng.random() < 0.7
        at = int(rng.integers(4, (w if vertical else h) - 12))
        start = int(rng.integers(0, max(1, (h if vertical else w) // 3)))
        stop = int(rng.integers(start + 4 * step, start + 4 * step + (h if vertical else w)))
        for n, pos in enumerate(range(start, stop, step)):
            length = tick * 2 if n % long_every == 0 else tick
            p0, p1 = ((at, pos), (at + length, pos)) if vertical else ((pos, at), (pos, at + length))
            cv2.line(out, p0, p1, colour, thick)
            if rng.random() < 0.08:  # a focus marker: a small filled triangle beside the tick
                s = int(rng.integers(4, 9))
                x, y = (at + length + 1, pos) if vertical else (pos, at + length + 1)
                tri = [(x, y - s // 2), (x + s, y), (x, y + s // 2)] if vertical else [(x - s // 2, y), (x, y + s), (x + s // 2, y)]
                cv2.fillPoly(out, [np.array(tri, np.int32)], colour)
        if rng.random() < 0.3:  # the scale's axis line
            cv2.line(out, (at, start) if vertical else (start, at), (at, stop) if vertical else (stop, at), colour, 1)
    return out


def ruler_negatives(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` crops of no-text views with scales drawn on them (:func:`_ruler`), targets all 0, most of
    them centred on a scale's marks."""
    def paint(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ruled = _ruler(img, rng)
        return ruled, (np.abs(ruled.astype(np.int16) - img).max(axis=2) > 0).astype(np.uint8)

    return _no_text_crops(n, np.random.default_rng(seed + 11), seed * 1_000_003 + 700_000, paint)


def _views_of_case(kind: str, seed: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    case = synth.render_case(kind, seed)
    ds = case.dataset
    frames = decode_frames(ds)
    if frames.shape[0] > 1:
        frames = frames[[0, int(rng.integers(1, frames.shape[0]))]]
    out = []
    for v in prepare_views(ds, frames):
        img = np.ascontiguousarray(v.image[: v.oy + v.height + 16, : v.ox + v.width + 16])
        gray = grey_u8(img)
        mask = np.zeros(img.shape[:2], np.uint8)
        for a in case.truth["annotations"]:
            x0 = math.floor(a["x"] / v.sx + v.ox)
            y0 = math.floor(a["y"] / v.sy + v.oy)
            x1 = math.ceil((a["x"] + a["w"]) / v.sx + v.ox)
            y1 = math.ceil((a["y"] + a["h"]) / v.sy + v.oy)
            _mark(mask, gray, x0, y0, x1, y1)
        out.append((img, mask))
    return out


def _crops(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    h, w = mask.shape
    if h < CROP or w < CROP:
        ph, pw = max(0, CROP - h), max(0, CROP - w)
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)))
        h, w = mask.shape
    pos = np.argwhere(mask == 1)
    out = []
    for _ in range(k):
        if pos.size and rng.random() < 0.7:
            cy, cx = pos[int(rng.integers(len(pos)))]
            y = int(np.clip(cy - rng.integers(16, CROP - 16), 0, h - CROP))
            x = int(np.clip(cx - rng.integers(16, CROP - 16), 0, w - CROP))
        else:
            y, x = int(rng.integers(0, h - CROP + 1)), int(rng.integers(0, w - CROP + 1))
        out.append((img[y: y + CROP, x: x + CROP].copy(), mask[y: y + CROP, x: x + CROP].copy()))
    return out


def make_dataset(n_cases: int, seed: int, texture: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(N, CROP, CROP, 3) uint8 views and (N, CROP, CROP) uint8 targets (0, 1, 255 = out of the loss);
    ``texture``: small text over the views' textured parts too (``_paste_ttf_on_texture``)."""
    rng = np.random.default_rng(seed)
    fonts = _fonts()
    kinds = list(synth.TEXT_KINDS) * 3 + list(synth.NO_TEXT_KINDS)
    xs, ys = [], []
    t0 = time.time()
    for i in range(n_cases):
        kind = kinds[i % len(kinds)]
        for img, mask in _views_of_case(kind, seed * 1_000_003 + i, rng):
            if rng.random() < 0.5:
                _paste_ttf(img, mask, rng, fonts)
            if texture and rng.random() < TEXTURE_SHARE:
                _paste_ttf_on_texture(img, mask, rng, fonts)
            for c, m in _crops(img, mask, rng, 2):
                xs.append(c)
                ys.append(m)
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{n_cases} cases, {len(xs)} crops, {time.time() - t0:.0f} s", flush=True)
    return np.stack(xs), np.stack(ys)


def train(x: np.ndarray, y: np.ndarray, steps: int, batch: int, lr: float, seed: int, log_every: int = 100,
          init: Path | None = None, turn: float = 0.0) -> "object":
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    net = build_net()
    if init is not None:  # fine-tune: start from these weights
        net.load_state_dict(torch.load(init, map_location="cpu", weights_only=True))  # type: ignore[attr-defined]
    net = net.to(memory_format=torch.channels_last)  # type: ignore[attr-defined]
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)  # type: ignore[attr-defined]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    net.train()  # type: ignore[attr-defined]
    t0, run = time.time(), []
    for step in range(steps):
        idx = rng.integers(0, len(x), batch)
        xs, ys = x[idx], y[idx]
        if turn:  # a share of the crops turned a quarter either way, targets with them: vertical text is text
            xs, ys = _turn_some(xs, ys, rng, turn)
        xb = torch.from_numpy(xs)
        yb = torch.from_numpy(ys).float()
        if rng.random() < 0.3:  # sensor noise
            xb = (xb.float() + torch.randn(xb.shape) * float(rng.uniform(2, 12))).clamp(0, 255).to(torch.uint8)
        inp = to_input(xb).contiguous(memory_format=torch.channels_last)  # type: ignore[attr-defined]
        logits = net(inp)[:, 0]  # type: ignore[operator]
        valid = (yb != IGNORE).float()
        target = (yb == 1).float()
        bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid).sum() / valid.sum().clamp(min=1)
        p = torch.sigmoid(logits) * valid
        dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        loss = bce + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run.append(float(loss.detach()))
        if (step + 1) % log_every == 0:
            print(f"  step {step + 1}/{steps} loss {np.mean(run[-log_every:]):.4f} {time.time() - t0:.0f} s", flush=True)
    return net.eval()  # type: ignore[attr-defined]


def _turn_some(xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator, share: float) -> tuple[np.ndarray, np.ndarray]:
    """``xs`` (B, H, W, 3) and ``ys`` (B, H, W) with each crop turned a quarter (either way, the same for
    its target) with probability ``share``; square crops keep their shape."""
    xs, ys = xs.copy(), ys.copy()
    for i in np.flatnonzero(rng.random(len(xs)) < share):
        k = 1 if rng.random() < 0.5 else 3
        xs[i] = np.rot90(xs[i], k, axes=(0, 1))
        ys[i] = np.rot90(ys[i], k, axes=(0, 1))
    return xs, ys


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install(weights: Path) -> None:
    """Copy trained weights to models/ and pin their sha256 in textseg.py and models/SHA256SUMS."""
    dest = REPO / "models" / WEIGHTS_FILE
    shutil.copyfile(weights, dest)
    digest = _sha256(dest)
    src = REPO / "deid_pipeline" / "detect" / "textseg.py"
    text = re.sub(r'WEIGHTS_SHA256 = "[0-9a-f]*"', f'WEIGHTS_SHA256 = "{digest}"', src.read_text(), count=1)
    src.write_text(text)
    sums = REPO / "models" / "SHA256SUMS"
    lines = [ln for ln in sums.read_text().splitlines() if not ln.endswith(WEIGHTS_FILE)] if sums.exists() else []
    sums.write_text("\n".join(lines + [f"{digest}  {WEIGHTS_FILE}"]) + "\n")
    print(f"installed models/{WEIGHTS_FILE} sha256 {digest}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2400)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=424242)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=Path("textseg-train"))
    ap.add_argument("--texture", action="store_true",
                    help="also draw small text inside textured fields (not in the shipped weights' data)")
    ap.add_argument("--data", type=Path, help="reuse a dataset .npz written by an earlier run")
    ap.add_argument("--overlay-negatives", type=int, default=0, metavar="N",
                    help="add N no-text crops under colour-map overlays (hot spots that are not text)")
    ap.add_argument("--ruler-negatives", type=int, default=0, metavar="N",
                    help="add N no-text crops with scales drawn on them (depth scales, rulers: columns of marks)")
    ap.add_argument("--init", type=Path, help="start from these weights (fine-tuning) instead of a fresh network")
    ap.add_argument("--turn", type=float, default=0.0, metavar="SHARE",
                    help="turn this share of the training crops a quarter (vertical text; 0: none, as shipped)")
    ap.add_argument("--install", type=Path, help="copy these weights to models/ and pin the sha256; nothing else")
    args = ap.parse_args(argv)
    if args.install:
        install(args.install)
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.data:
        d = np.load(args.data)
        x, y = d["x"], d["y"]
    else:
        print(f"generating {args.cases} cases (seed {args.seed})", flush=True)
        x, y = make_dataset(args.cases, args.seed, texture=args.texture)
        np.savez(args.out / "data.npz", x=x, y=y)
    if args.overlay_negatives:
        nx, ny = overlay_negatives(args.overlay_negatives, args.seed)
        x, y = np.concatenate([x, nx]), np.concatenate([y, ny])
    if args.ruler_negatives:
        nx, ny = ruler_negatives(args.ruler_negatives, args.seed)
        x, y = np.concatenate([x, nx]), np.concatenate([y, ny])
    t_data = time.time() - t0
    print(f"{len(x)} crops, positive share {float((y == 1).mean()):.3f}, {t_data:.0f} s", flush=True)
    net = train(x, y, args.steps, args.batch, args.lr, args.seed, init=args.init, turn=args.turn)
    path = args.out / WEIGHTS_FILE
    torch.save(net.state_dict(), path)  # type: ignore[attr-defined]
    meta = {"cases": None if args.data else args.cases, "data": str(args.data) if args.data else None,
            "texture": args.texture, "overlay_negatives": args.overlay_negatives,
            "ruler_negatives": args.ruler_negatives,
            "init_sha256": _sha256(args.init) if args.init else None, "turn": args.turn,
            "steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
            "crops": int(len(x)), "fonts": [Path(f).name for f in _fonts()], "torch": torch.__version__,
            "data_s": round(t_data), "train_s": round(time.time() - t0 - t_data), "sha256": _sha256(path)}
    (args.out / "train.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
