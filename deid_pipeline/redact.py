"""Fill regions of decoded frames so that burned-in text is gone. Pure: frames in, new frames out.

Fill value per photometric interpretation of the *decoded* frames
(``pixels.decoded_photometric``), always inside the Bits Stored range:

* MONOCHROME2: the frame's own minimum. It is black under any window whose
  lower edge is at or above the darkest pixel (every clinical window), it
  never makes a new extreme that would shift auto-windowing or min/max
  statistics, and text burned at the top of the range (a CT's 32767) is
  replaced, not kept. Per frame, so the result does not depend on how a
  caller chunks a multi-frame file.
* MONOCHROME1: the frame's own maximum (black in MONOCHROME1), same reasons.
* RGB: 0, 0, 0.  YBR_FULL: Y = 0, Cb = Cr = 2**(BitsStored - 1).
* PALETTE COLOR: the index whose LUT colour has the lowest luminance.
* anything else: the per-sample minimum of the frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from deid_pipeline import pixels
from deid_pipeline.types import Region

logger = logging.getLogger(__name__)


def stored_range(ds: Dataset) -> tuple[int, int] | None:
    """Smallest and largest value Bits Stored allows; None for float pixel data."""
    if "PixelData" not in ds:
        return None
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def darkest_palette_index(ds: Dataset) -> int:
    """The stored index whose palette colour is darkest (Rec. 601 luma); lowest index on ties."""
    first, lut = pixels.palette_lut(ds)
    luma = lut.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lo_hi = stored_range(ds)
    candidates = np.arange(first, first + len(lut))
    if lo_hi is not None:
        keep = (candidates >= lo_hi[0]) & (candidates <= lo_hi[1])
        candidates, luma = candidates[keep], luma[keep]
    return int(candidates[int(np.argmin(luma))])


def _finite_extreme(frame: np.ndarray, pick: Callable[[np.ndarray], Any]) -> Any:
    """``pick`` (np.min or np.max) of ``frame``'s values; of its finite ones for a float frame (a NaN
    fill hides nothing a reader can see; 0 when none is finite)."""
    if not np.issubdtype(frame.dtype, np.floating):
        return pick(frame)
    finite = frame[np.isfinite(frame)]
    return pick(finite) if finite.size else 0


def fill_value(ds: Dataset, frame: np.ndarray) -> np.ndarray:
    """Value (one per sample) that hides text in ``frame``, a decoded frame of ``ds``."""
    pi = pixels.decoded_photometric(ds)
    lo_hi = stored_range(ds)
    if pi == "MONOCHROME2":
        value = np.array([_finite_extreme(frame, np.min)])
    elif pi == "MONOCHROME1":
        value = np.array([_finite_extreme(frame, np.max)])
    elif pi == "RGB":
        value = np.zeros(frame.shape[-1], dtype=np.int64)
    elif pi == "YBR_FULL":
        mid = 1 << (int(ds.get("BitsStored", 8)) - 1)
        value = np.array([0, mid, mid])
    elif pi == "PALETTE COLOR":
        value = np.array([darkest_palette_index(ds)])
    else:
        value = frame.reshape(-1, frame.shape[-1]).min(axis=0) if frame.ndim == 3 else np.array([frame.min()])
    if lo_hi is not None:
        value = np.clip(value, *lo_hi)
    value = value.astype(frame.dtype)
    return value if frame.ndim == 3 else value[:1]


def redact_frames(
    ds: Dataset,
    frames: np.ndarray,
    regions: Sequence[Sequence[Region]],
    margin: int = 2,
) -> np.ndarray:
    """A copy of ``frames`` with every region, grown by ``margin`` and clipped, filled.

    ``regions[i]`` are the boxes of frame ``i`` in stored-frame coordinates;
    dtype, shape, bit depth and signedness are kept.
    """
    if len(regions) != frames.shape[0]:
        raise ValueError(f"{len(regions)} region lists for {frames.shape[0]} frames")
    out = frames.copy()
    rows, cols = frames.shape[1], frames.shape[2]
    per_frame = pixels.decoded_photometric(ds) not in ("RGB", "YBR_FULL", "PALETTE COLOR")
    constant: np.ndarray | None = None
    for i, boxes in enumerate(regions):
        if not boxes:
            continue
        if per_frame or constant is None:
            constant = value = fill_value(ds, frames[i])
        else:
            value = constant
        for box in boxes:
            grown = Region(box.x - margin, box.y - margin, box.w + 2 * margin, box.h + 2 * margin, box.score, box.source)
            clipped = grown.clipped(rows, cols)
            if clipped is None:
                continue
            target = out[i, clipped.y : clipped.y + clipped.h, clipped.x : clipped.x + clipped.w]
            target[...] = value if frames.ndim == 4 else value[0]
    return out
