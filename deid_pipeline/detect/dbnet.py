"""PP-OCRv4 text detection (DBNet) in torch, with a deterministic DB post-process.

The weights are a TorchScript trace of PaddleOCR's ``ch_PP-OCRv4_det_infer.onnx`` (Apache-2.0), built by
``scripts/convert_ppocr_det.py``. They load with torch alone, offline, after a sha256 check.

Input: prepared uint8 RGB images (H, W, 3). Images of equal padded shape are batched; on CUDA the network
runs under fp16 autocast, on the CPU in fp32; inputs go in channels_last memory order. The probability map always goes back to the CPU in fp32 and
the same OpenCV post-process turns it into axis-aligned boxes rounded outward, so CPU and GPU agree up to
fp16 noise in the probability map.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..prepare import BORDER, MAX_LONG
from ..types import Region

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "ppocrv4_det.ts"
#: The largest view a frame gets besides a big frame's ``fine`` views (a square frame: MAX_LONG with its
#: border, padded to 32). Larger views go through the network one at a time: 3328x2560 CRs, whose fine
#: views are 1,696 x 1,312, peaked at 2,084 MiB in batches of 3 (this pixel budget), 1,780 one at a time,
#: 1,386-1,596 without fine views (benchmarks/README.md, twenty-seventh session).
BATCH_VIEW_PIXELS = (-(-(MAX_LONG + 2 * BORDER) // 32) * 32) ** 2  # 1,312 x 1,312
WEIGHTS_SHA256 = "0d422762c7403f1b7a5937ae1b790948bdbc961d06fc77aeca3b22c14c7f54cf"

# PaddleOCR / RapidOCR det normalisation: x/255, mean 0.5, std 0.5, BGR channel order (cv2.imread).
_MEAN = 0.5
_STD = 0.5


@dataclass(frozen=True)
class DBParams:
    """DB post-process settings (RapidOCR 1.4.4 defaults, plus false-positive filters)."""

    thresh: float = 0.3  # probability-map binarisation
    box_thresh: float = 0.5  # mean probability inside a box (RapidOCR's default; scan.py asks more of most boxes)
    unclip_ratio: float = 1.6
    min_side: float = 3.0  # shorter side of the min-area rect, in network pixels
    max_candidates: int = 1000
    #: A contour whose rectangle scores under ``box_thresh`` is scored again on its own pixels: a line
    #: joined to a glyph below or beside it (the map's halo bridges them) has a tilted rectangle round
    #: both, mostly empty, which would drop the whole line (the rectangle's score is RapidOCR's "fast" one).
    contour_score: bool = True
    #: ``scan.FilterParams.min_score``: a rectangle scoring between ``box_thresh`` and this (a line joined
    #: to a shorter line under or over its end, an L) is kept by the post-process but would be dropped by
    #: the scan. Such a contour is cut into bands of rows of one extent (``_line_bands``), its lines, each
    #: boxed upright when every band scores ``rescore_min``; fewer than two bands, or one under it, leave it
    #: as it was (a whole contour rescored took grid lines, circles, speckle and power-Doppler streaks for text)
    rescore_below: float = 0.6
    rescore_min: float = 0.85
    source: str = "model"  # ``Region.source`` of the boxes: the scan filters each network's boxes by its own rules


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_weights(path: Path, name: str, expect_sha256: str | None) -> str:
    """The sha256 of the weights at ``path`` (``name`` in models/ for messages), checked against
    ``expect_sha256`` unless that is None; a missing or different file is a configuration error."""
    if not path.is_file():
        raise ConfigError(f"text-detection weights missing: models/{name}")
    digest = file_sha256(path)
    if expect_sha256 is not None and digest != expect_sha256:
        raise ConfigError(f"text-detection weights sha256 mismatch for models/{name}")
    return digest


def _pad32(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = (-h) % 32, (-w) % 32
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
    return img


def _contour_mask(contour: np.ndarray, bounds: tuple[int, int, int, int]) -> np.ndarray:
    """The contour filled, as a 0/1 uint8 mask over ``bounds``, its ``cv2.boundingRect``."""
    x, y, w, h = bounds
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour.reshape(-1, 2) - [x, y]], 1)
    return mask


def _contour_score(prob: np.ndarray, contour: np.ndarray, bounds: tuple[int, int, int, int]) -> float:
    """Mean probability over the contour's own pixels (DBNet's "slow" polygon score); ``bounds`` is its
    ``cv2.boundingRect``."""
    x, y, w, h = bounds
    return float(cv2.mean(prob[y : y + h, x : x + w], _contour_mask(contour, bounds))[0])


def boxes_from_prob(prob: np.ndarray, height: int, width: int, p: DBParams) -> list[Region]:
    """DB post-process on one (H, W) float32 probability map; boxes clipped to ``height`` x ``width``."""
    bitmap = (prob > p.thresh).astype(np.uint8)
    bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out: list[Region] = []
    for contour in contours[: p.max_candidates]:
        rect = cv2.minAreaRect(contour)
        (cx, cy), (rw, rh), angle = rect
        if min(rw, rh) < p.min_side:
            continue
        pts = cv2.boxPoints(rect)
        x0 = int(np.clip(math.floor(pts[:, 0].min()), 0, prob.shape[1] - 1))
        x1 = int(np.clip(math.ceil(pts[:, 0].max()), 0, prob.shape[1] - 1))
        y0 = int(np.clip(math.floor(pts[:, 1].min()), 0, prob.shape[0] - 1))
        y1 = int(np.clip(math.ceil(pts[:, 1].max()), 0, prob.shape[0] - 1))
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
        cv2.fillPoly(mask, [np.round(pts - [x0, y0]).astype(np.int32)], 1)
        score = float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])
        if score < p.box_thresh and p.contour_score:
            x, y, w, h = cv2.boundingRect(contour)
            score = _contour_score(prob, contour, (x, y, w, h))
            # the shapes it joins are boxed upright (a tilted rectangle's bounding box is taller by far)
            (cx, cy), (rw, rh), angle = (x + (w - 1) / 2, y + (h - 1) / 2), (w - 1, h - 1), 0.0
        elif score < p.rescore_below and p.contour_score:
            bands = _line_bands(prob, contour, p)
            if bands:
                for bx, by, bw, bh, band_score in bands:
                    _emit(out, (bx + (bw - 1) / 2, by + (bh - 1) / 2), (bw - 1, bh - 1), 0.0, band_score, p, height, width)
                continue
        if score < p.box_thresh:
            continue
        _emit(out, (cx, cy), (rw, rh), angle, score, p, height, width)
    out.sort(key=lambda r: (r.y, r.x, r.h, r.w))
    return out


def _emit(out: list[Region], centre: tuple[float, float], size: tuple[float, float], angle: float, score: float,
          p: DBParams, height: int, width: int) -> None:
    """Unclip one kept rectangle and append its upright bounding box, clipped to ``height`` x ``width``."""
    (cx, cy), (rw, rh) = centre, size
    # unclip: offsetting a rectangle by d (round joins) has the rectangle grown by d as its bounding box
    d = (rw * rh) * p.unclip_ratio / max(2.0 * (rw + rh), 1e-6)
    grown = cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), angle))
    if min(rw, rh) + 2 * d < p.min_side + 2:
        return
    gx0 = max(0, math.floor(grown[:, 0].min()))
    gy0 = max(0, math.floor(grown[:, 1].min()))
    gx1 = min(width, math.ceil(grown[:, 0].max()) + 1)
    gy1 = min(height, math.ceil(grown[:, 1].max()) + 1)
    if gx1 > gx0 and gy1 > gy0:
        out.append(Region(gx0, gy0, gx1 - gx0, gy1 - gy0, round(score, 4), p.source))


def _line_bands(prob: np.ndarray, contour: np.ndarray, p: DBParams,
                tol: float = 0.2) -> list[tuple[int, int, int, int, float]]:
    """The lines of a contour that joins two or more (x, y, w, h, score): bands of consecutive rows whose
    extent stays within ``tol`` of the band's width, less their fringe rows (mean under ``thresh``), each
    scoring (mean probability over its upright rectangle) ``rescore_min`` or more. Empty unless two bands
    of three rows or more are found and every one scores so: a shape whose rows wander is no set of lines."""
    x, y, w, h = bounds = cv2.boundingRect(contour)
    mask = _contour_mask(contour, bounds)
    bands: list[list[int]] = []  # [first row, last row, lo, hi]
    for r in np.flatnonzero(mask.any(axis=1)):
        xs = np.flatnonzero(mask[r])
        lo, hi = int(xs[0]), int(xs[-1])
        if bands and bands[-1][1] == r - 1:
            b = bands[-1]
            slack = max(2.0, tol * (b[3] - b[2] + 1))
            if abs(lo - b[2]) <= slack and abs(hi - b[3]) <= slack:
                b[1], b[2], b[3] = int(r), min(b[2], lo), max(b[3], hi)
                continue
        bands.append([int(r), int(r), lo, hi])
    lines = []
    for r0, r1, lo, hi in bands:
        rows = prob[y + r0 : y + r1 + 1, x + lo : x + hi + 1].mean(axis=1)
        keep = np.flatnonzero(rows >= p.thresh)  # the band's fringe rows (the bitmap was dilated) are not its line
        if keep.size < max(p.min_side, 3):
            continue  # a row or two where the map narrows from one line to the next
        r0, r1 = r0 + int(keep[0]), r0 + int(keep[-1])
        band_score = float(prob[y + r0 : y + r1 + 1, x + lo : x + hi + 1].mean())
        if band_score < p.rescore_min:
            return []
        lines.append((x + lo, y + r0, hi - lo + 1, r1 - r0 + 1, band_score))
    return lines if len(lines) >= 2 else []


class ProbMapDetector:
    """A network that maps a batch of prepared views to one text-probability map each, plus the DB
    post-process; subclasses load the weights and say how a uint8 RGB batch becomes the network's input."""

    name = ""
    #: Views per forward pass on a GPU, and on the CPU (where a big batch only spills the caches: see the
    #: subclasses); views larger than ``BATCH_VIEW_PIXELS`` (a big frame's ``fine`` views) one at a time.
    #: Batching never changes a map: each view is convolved on its own.
    gpu_batch_size = 8
    cpu_batch_size = 8

    def __init__(self, model: "object", device: str, weights_sha256: str, params: DBParams,
                 batch_size: int | None = None) -> None:
        import torch

        self._torch = torch
        self._model = model
        self.device = device
        self.weights_sha256 = weights_sha256
        self.params = params
        self.batch_size = batch_size or (self.gpu_batch_size if device.startswith("cuda") else self.cpu_batch_size)

    def _input(self, x: "object") -> "object":
        """uint8 RGB (N, H, W, 3) tensor on the device -> the network's float (N, 3, H, W) input."""
        raise NotImplementedError

    def _output(self, y: "object") -> "object":
        """The network's output -> probabilities."""
        return y

    def probability_maps(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The network's (H, W) float32 text probability map per image (padded to multiples of 32)."""
        torch = self._torch
        padded = [_pad32(np.ascontiguousarray(im)) for im in images]
        out: list[np.ndarray | None] = [None] * len(padded)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(padded):
            groups.setdefault(im.shape[:2], []).append(i)
        cuda = self.device.startswith("cuda")
        with torch.inference_mode():
            for (h, w), idx in groups.items():
                n = 1 if h * w > BATCH_VIEW_PIXELS else self.batch_size
                for s in range(0, len(idx), n):
                    chunk = idx[s : s + n]
                    x = torch.from_numpy(np.stack([padded[i] for i in chunk])).to(self.device, non_blocking=True)
                    # channels_last memory order: faster convolutions on the CPU
                    x = self._input(x).contiguous(memory_format=torch.channels_last)  # type: ignore[attr-defined]
                    if cuda:
                        with torch.autocast("cuda", dtype=torch.float16):
                            y = self._output(self._model(x))  # type: ignore[operator]
                    else:
                        y = self._output(self._model(x))  # type: ignore[operator]
                    y = y[:, 0].float().cpu().numpy()  # type: ignore[index]
                    for j, i in enumerate(chunk):
                        out[i] = y[j]
        return [o for o in out if o is not None]

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Region]]:
        """Boxes per image, in that image's pixel coordinates (clipped to the unpadded image)."""
        if len(images) == 0:
            return []
        for im in images:
            if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise ValueError("detect() expects uint8 (H, W, 3) images")
        probs = self.probability_maps(images)
        return [boxes_from_prob(pm, im.shape[0], im.shape[1], self.params) for pm, im in zip(probs, images)]


class DBNetDetector(ProbMapDetector):
    """``TextDetector`` backed by the traced PP-OCRv4 DBNet."""

    name = "ppocrv4-det"
    #: One view at a time on the CPU: 544x544 views, one thread, measured 67 ms a view alone, 87 in
    #: batches of 2 or 4, 131 in batches of 8 (41 / 53 / 69 ms with 2 threads).
    cpu_batch_size = 1

    def __init__(self, device: str = "cpu", weights: Path | None = None, params: DBParams | None = None,
                 batch_size: int | None = None) -> None:
        import warnings

        import torch

        from ..resources import models_dir

        path = weights or (models_dir() / WEIGHTS_FILE)
        digest = verified_weights(path, WEIGHTS_FILE, WEIGHTS_SHA256)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: TorchScript still loads torch-only
            model = torch.jit.load(str(path), map_location=device).eval()
        super().__init__(model, device, digest, params or DBParams(), batch_size)
        logger.info("loaded %s on %s (sha256 %s)", self.name, device, digest[:12])

    def _input(self, x: "object") -> "object":
        # RGB -> BGR (PaddleOCR reads with cv2), NCHW, (x/255 - 0.5) / 0.5
        return (x.flip(3).permute(0, 3, 1, 2).float() / 255.0 - _MEAN) / _STD  # type: ignore[attr-defined]
