"""Frame preparation for text detection: views in which burned-in text is visible, whatever the storage.

Stored values are not display values. Text is often burned in at the largest stored value (invisible in a
CT window), at the smallest in MONOCHROME1 (displayed white), or as palette indices that only become bright
through the LUT. So each frame gives one or two 8-bit RGB views, computed with torch on the
detection device:

* ``full``: min-max of the frame (inverted for MONOCHROME1, so displayed-white text is bright);
* ``window``: a robust 0.5-95 % window of the values below the maximum, when the full range squeezes
  them (16-bit CT with text at 32767 and other text at the window top); the file's own display window
  (``voi_windows``) in its place when that is narrower still, and as a view of its own when it is narrow
  against the frame's range (``VOI_NARROW``): text a reader sees white in a head CT's 40/80 window, at
  80-120 HU over the brain, is a few grey levels above the brain in ``full`` and in the robust window.
  Each frame is shown through its own windows (an Enhanced CT or MR's Per-Frame Functional Groups may give
  each its own: ``prepare_views``'s ``frame_numbers``), and each further preset of a multi-valued Window
  Center and Width that passes the same test makes a ``window`` view too (``_window_spans``);
* ``upper``: the range up to the highest value below the extreme, when values above the window
  exist besides the extreme (a second text value, such as 3071 in a CT whose other text is at 32767);
* ``extreme``: pixels at the top of the range (the bottom for MONOCHROME1) in white over the dimmed
  frame; only when such pixels are a small share of the frame, as overlay text is;
* ``rgb``: colour frames (YBR_FULL[_422] converted, PALETTE COLOR through its LUT, segmented LUTs included);
* ``achromatic``: a colour frame's least channel value per pixel (the grey part of its colour), when the
  frame holds a colour patch (colour flow): a flow map drawn over the grey image shows that image, one
  drawn in place of it goes dark, and white or grey text over the patch stands out as it does over the
  rest of the image, where in ``rgb`` the flow's colours break it up. (The middle channel showed a
  red-to-yellow power Doppler map as bright streaks, taken for a line of text; a view of the band of rows
  round the patch alone found less: ``benchmarks/README.md``, seventeenth session.)

Intensity scaling, resizing and padding are MONAI transforms (``ScaleIntensityRange``, ``Resize``,
``BorderPad``, ``DivisiblePad``) applied to torch tensors on the detection device, all views of one frame
(or a chunk of colour frames) at once as channels.

Each view is resized keeping aspect (long side within [min_long, max_long]; the ``fine`` views of a big
frame downscaled ``MAX_DOWNSCALE`` at most) and padded at the end to a multiple of 32 after a black
border. ``View.to_stored`` maps view pixels back to stored pixels.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

logger = logging.getLogger(__name__)

MIN_LONG = 640  # small frames are upscaled: the network misses text under ~8 px high ...
NATIVE_LONG = 512  # ... but frames this large run at native size (their text is large enough; 1.6x faster)
MAX_LONG = 1280  # large frames are downscaled (area interpolation keeps thin strokes)
#: ... and small ones upscaled 4x at most: the networks' views held text up to ~32 px tall (synthetic
#: frames of 240 rows and more, text up to 5 % of them, at most 2.7x up); a 128-pixel frame's 7-pixel
#: text at 5x (35 px) had its line ends cut, and PHI lines left under 95 % covered
MAX_UPSCALE = 4.0
#: The views of a frame more than twice ``MAX_LONG`` are made again as ``fine`` views, downscaled this much
#: at most, for a detector that reads them (``reads_fine_views``: deid-textseg, so the default union): a
#: name and an accession number 7-8 stored pixels high on a 3328x2560 CR were 3 px in the 1,280 views and
#: missed; deid-textseg finds them in 1,664 views. It lost big text in views that size (PHI 98 -> 83 of 98),
#: so the 1,280 views stay (benchmarks/README.md, twenty-seventh session).
MAX_DOWNSCALE = 2.0
FINE = "fine"
BORDER = 16  # black margin round every view: text touching the frame edge needs context to be found
EXTREME_MIN_SHARE = 1e-5  # share of pixels at the extreme value for the ``extreme`` view
EXTREME_MAX_SHARE = 0.15
#: the file's display window stands in for the robust ``window`` when at least this share of the frame
#: lies in it (a window far from the stored values, as a CT window on data stored without its rescale, shows nothing)
VOI_MIN_SHARE = 0.02
#: ... and, in a frame that needs no robust window (no extreme value squeezes the rest), makes a
#: ``window`` view of its own only when it is this narrow against the frame's range. Text white in the
#: window over tissue at its centre is ``0.5 * 255 * share`` grey levels over it in ``full``: the networks
#: found 0-6 of 9 such lines at shares of 0.11-0.13 (14-17 levels) and all from 0.14 (an MR-like frame
#: with bright fat, textured tissue; a head CT's 40/80 in 4,096 values: ~4 levels); 0.16 gives it 20. A
#: view costs as much detection as the frame's others, and wider windows are common (a body CT's 40/400
#: in a slice without a robust window; text-free CT: 1.4 -> 2.3 views a frame at 0.3), so text light
#: grey in a window a sixth to a quarter of the range is left to ``full``
VOI_NARROW = 0.16
#: ... and each of the file's other presets (a multi-valued Window Center and Width) that is narrow too,
#: and not inside one shown (``_window_spans``), makes one more, this many windows a frame at most. Every
#: preset is read (the header costs nothing); each view made costs a detection: a 512x512 CT slice with
#: two narrow presets went 2 -> 3 views, 70 -> 119 ms a frame with deid-textseg on the CPU, where a body
#: CT's 40/400 and 600/2800 (both wide) and a 20-frame Enhanced CT with one window for every frame keep
#: their views (and their time, within noise). Of 210 local files (shared data, samples, pydicom's),
#: three carry more than one preset, two distinct at most: three a frame is one more than any seen and bounds
#: an odd file with many (each ~50 ms a frame more)
MAX_VOI_VIEWS = 3
#: the items of a VOI LUT Sequence read as windows (each one applied over 4,097 values, ~0.2 ms): a
#: reader may pick any of them (several tables are alternative views: pydicom's ``apply_voi_lut(index=)``);
#: one-table files are the rule, and a file with more than this is odd
MAX_VOI_LUTS = 16
PATCH_CHROMA = 48  # a colour-flow pixel's channels differ by this much at least (0..255) ...
PATCH_PX = 8  # ... over a square this many stored pixels wide (text strokes are thinner; a share of the
# frame's short side missed the fine flow of large frames: benchmarks/README.md, seventeenth session)


@dataclass(frozen=True)
class View:
    """One prepared image of one frame."""

    frame: int  # index into the frames given to ``prepare_views``
    kind: str  # "full" | "window" | "upper" | "extreme" | "rgb" | "achromatic" | "fine"
    image: np.ndarray  # uint8 (H, W, 3), H and W multiples of 32
    height: int  # resized size before padding
    width: int
    sy: float  # stored rows per view row
    sx: float
    oy: int = BORDER  # the resized frame starts at (oy, ox) in ``image``
    ox: int = BORDER
    #: a grey view's one plane, uint8 (H, W): ``image`` is it three times over (None for colour views)
    grey: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: quarter turns counter-clockwise of ``image`` (and ``grey``) from the view ``prepare_views`` made:
    #: a turned view shows vertical text as horizontal lines (``turned``)
    turns: int = 0

    @property
    def plane(self) -> np.ndarray:
        """What a grey reading of the view starts from: a grey view's own plane, else ``image``
        (``detect.glyphs.grey_u8`` makes the same grey of either, the plane at no cost)."""
        return self.image if self.grey is None else self.grey

    def turned(self) -> "View":
        """This view turned a quarter counter-clockwise (text that ran bottom to top now reads left to
        right; text that ran top to bottom reads upside down)."""
        from dataclasses import replace

        grey = None if self.grey is None else np.ascontiguousarray(np.rot90(self.grey))
        image = np.ascontiguousarray(np.rot90(self.image)) if grey is None else np.repeat(grey[..., None], 3, axis=2)
        return replace(self, image=image, grey=grey, turns=self.turns + 1)

    @property
    def frame_box(self) -> tuple[int, int, int, int]:
        """The frame's (x, y, w, h) in ``image`` as it is (turned too): inside it, the view's border and
        padding are not the frame's."""
        x, y, w, h = self.ox, self.oy, self.width, self.height
        ww = self.image.shape[0] if self.turns % 2 else self.image.shape[1]  # the unturned image's width
        hh = self.image.shape[1] if self.turns % 2 else self.image.shape[0]
        for _ in range(self.turns % 4):  # a quarter counter-clockwise: pixel (x, y) goes to (y, ww-1-x)
            x, y, w, h = y, ww - (x + w), h, w
            hh, ww = ww, hh
        return x, y, w, h

    def to_stored(self, x: int, y: int, w: int, h: int, rows: int, cols: int) -> tuple[int, int, int, int] | None:
        """A view box as a stored-frame box (rounded outward, clipped), or None when outside the frame."""
        import math

        hh, ww = self.image.shape[:2]
        for _ in range(self.turns % 4):  # back to the unturned image: pixel (x, y) of a turn was (hh-1-y, x)
            x, y, w, h = hh - (y + h), x, h, w
            hh, ww = ww, hh

        x0 = max(0, math.floor((x - self.ox) * self.sx))
        y0 = max(0, math.floor((y - self.oy) * self.sy))
        x1 = min(cols, math.ceil((x + w - self.ox) * self.sx))
        y1 = min(rows, math.ceil((y + h - self.oy) * self.sy))
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1 - x0, y1 - y0


def target_size(rows: int, cols: int, min_long: int = MIN_LONG, max_long: int = MAX_LONG,
                max_downscale: float | None = None) -> tuple[int, int]:
    """A view's size: small frames up (``MAX_UPSCALE`` at most), large ones down to ``max_long``, or by
    ``max_downscale`` at most when given (a ``fine`` view)."""
    long = max(rows, cols)
    s = 1.0
    if long < min(min_long, NATIVE_LONG):
        s = min(min_long / long, MAX_UPSCALE)
    elif long > max_long:
        s = (max_long if max_downscale is None else max(max_long, long / max_downscale)) / long
    return max(1, round(rows * s)), max(1, round(cols * s))


def to_display_rgb(ds: Dataset, frames: np.ndarray) -> np.ndarray | None:
    """Colour frames (as ``pixels.decode_frames`` returns them) as uint8 RGB; None for greyscale.

    PALETTE COLOR goes through its LUT (segmented LUTs included): min-max of palette indices hides text.
    """
    from .pixels import decoded_photometric, display_rgb

    if decoded_photometric(ds).startswith("MONOCHROME"):
        return None
    return np.asarray(display_rgb(ds, frames), dtype=np.uint8)


def colour_patch(frame: np.ndarray) -> bool:
    """Whether an RGB frame (H, W, 3 uint8) holds a patch of colour (colour flow, a colour map) rather
    than only coloured lines and text: pixels whose channels differ by ``PATCH_CHROMA`` filling a square
    of ``PATCH_PX``."""
    import cv2

    r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
    mask = (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)) >= PATCH_CHROMA
    if int(np.count_nonzero(mask)) < PATCH_PX * PATCH_PX:
        return False
    return bool(cv2.erode(mask.view(np.uint8), np.ones((PATCH_PX, PATCH_PX), np.uint8)).any())


def _monai() -> tuple[object, object]:
    """MONAI transforms return plain tensors here: no metadata tracking on the hot path."""
    from monai.data import set_track_meta
    from monai.transforms import BorderPad, Compose, DivisiblePad

    set_track_meta(False)
    pad = Compose([BorderPad(spatial_border=BORDER), DivisiblePad(k=32, method="end")])
    return pad, None


_PAD: object | None = None


def load_transforms() -> None:
    """Import MONAI's transforms now, once per process: ``import monai`` loads every MONAI submodule
    (~0.5 s here), which would otherwise land in the first frame's ``prepare`` time."""
    global _PAD
    if _PAD is None:
        _PAD = _monai()[0]
        from monai.transforms import Resize, ScaleIntensityRange  # noqa: F401  (the rest of what views use)


def _finish(t: "object", rows: int, cols: int, min_long: int, max_long: int,
            max_downscale: float | None = None) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """(V, C, rows, cols) float tensor in 0..255 -> V resized, bordered, end-padded uint8 (H, W, 3) numpy
    images, with their grey planes (V, H, W) when C is 1 (else None), and the resized size."""
    import torch
    from monai.transforms import Resize

    load_transforms()
    th, tw = target_size(rows, cols, min_long, max_long, max_downscale)
    v, c = int(t.shape[0]), int(t.shape[1])
    x = t.reshape(v * c, rows, cols)  # views x channels as MONAI channels: one call for all
    if (th, tw) != (rows, cols):
        mode = "area" if th < rows else "bilinear"
        x = Resize(spatial_size=(th, tw), mode=mode, **({} if mode == "area" else {"align_corners": False}))(x)
    # to uint8 before the padding (zeros either way): a quarter of the bytes to pad
    x = _PAD(torch.as_tensor(x).clamp_(0, 255).round_().to(torch.uint8))  # type: ignore[operator]
    x = torch.as_tensor(x).reshape(v, c, x.shape[-2], x.shape[-1])
    if x.shape[1] == 1:
        if x.device.type == "cpu":  # grey into three channels by numpy: a third of the time of a strided copy
            grey = x[:, 0].numpy()
            rgb = np.empty(grey.shape + (3,), np.uint8)
            rgb[..., 0] = rgb[..., 1] = rgb[..., 2] = grey
            return rgb, grey, th, tw
        rgb = x.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return rgb, np.ascontiguousarray(rgb[..., 0]), th, tw
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy(), None, th, tw


def _scaled(f: "torch.Tensor", lo: float, hi: float) -> "torch.Tensor":
    """Values lo..hi linearly to 0..255, clipped (MONAI ``ScaleIntensityRange``)."""
    from monai.transforms import ScaleIntensityRange

    return ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=255.0, clip=True)(f)


def _quantiles(values: "torch.Tensor", qs: tuple[float, ...]) -> list[float]:
    """``torch.quantile(values, qs)`` (linear interpolation), bit for bit. On the CPU, the two order
    statistics round each rank come from one ``np.partition`` (a selection: ~6x faster than the sort in
    ``torch.quantile``) and the same float32 ``lerp`` joins them; NaN, another device or dtype:
    ``torch.quantile`` itself."""
    import torch

    q = torch.tensor(qs, dtype=values.dtype, device=values.device)
    if values.device.type != "cpu" or values.dtype != torch.float32 or bool(torch.isnan(values).any()):
        return [float(v) for v in torch.quantile(values, q)]
    ranks = q * (values.numel() - 1)  # float32, as torch.quantile computes them
    below, above = ranks.to(torch.long), ranks.ceil().to(torch.long)
    part = np.partition(values.numpy(), sorted(set(below.tolist()) | set(above.tolist())))
    low = torch.from_numpy(part[below.numpy()])
    return [float(v) for v in low.lerp(torch.from_numpy(part[above.numpy()]), ranks - below)]


def _without(values: "torch.Tensor", drop: "torch.Tensor") -> "torch.Tensor":
    """``values[~drop]``; on the CPU by numpy's boolean indexing: the same elements in the same order,
    measured 0.17 against 2.8 ms for a 512x512 frame."""
    import torch

    if values.device.type != "cpu":
        return values[~drop]
    return torch.from_numpy(values.numpy()[~drop.numpy()])


def _number(value: object) -> float | None:
    """The first number of a DS/IS/US value (multi-valued or not), None when there is none."""
    try:
        v = value[0] if isinstance(value, (list, tuple, MultiValue)) else value
        return float(v) if v is not None and v != "" else None
    except (TypeError, ValueError, IndexError):
        return None


def _values(value: object) -> list[object]:
    """Each value of a multi-valued element's value; a single value alone; none for None."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    return ds[keyword].value[0] if keyword in ds and ds[keyword].VR == "SQ" and len(ds[keyword].value) else None


def _spans(voi: Dataset, signed: bool) -> list[tuple[float, float]]:
    """The values a VOI module's windows (linear, PS3.3 C.11.2.1.2.1: every Window Center and Width pair,
    in the file's order) span, else its first VOI LUT's input range; windows of width <= 1 and values
    that do not parse are left out."""
    centres, widths = voi.get("WindowCenter"), voi.get("WindowWidth")
    spans = []
    for c, w in zip(_values(centres), _values(widths)):
        c, w = _number(c), _number(w)
        if c is not None and w is not None and w > 1:
            spans.append((c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2))
    if spans:
        return spans
    lut = _first_item(voi, "VOILUTSequence")
    desc = None if lut is None else lut.get("LUTDescriptor")
    if desc is None or len(desc) != 3:
        return []
    n, first = int(desc[0]) or 65536, int(desc[1])
    if signed and first > 32767:
        first -= 65536  # the descriptor's first value is signed for signed pixels
    return [(float(first), float(first + n - 1))]


def _one_voi_lut(ds: Dataset, index: int) -> Dataset:
    """``ds`` where ``index`` is 0 and its first VOI LUT has 16-bit entries, else a stand-in holding only
    that table (8-bit entries as 16-bit: pydicom 3.0's ``apply_voi_lut`` indexes such a table with uint8,
    so an entry past 255 wraps round; a 4,096-entry table gave 0 everywhere)."""
    item = ds["VOILUTSequence"].value[index]
    desc = item.get("LUTDescriptor")
    eight = desc is not None and len(desc) == 3 and int(desc[2]) == 8
    if index == 0 and not eight:
        return ds
    one, lut = Dataset(), Dataset()
    lut.LUTDescriptor = [int(desc[0]), int(desc[1]), 16] if eight else desc
    lut["LUTData"] = item["LUTData"]
    one.VOILUTSequence = [lut]
    if hasattr(ds, "file_meta"):
        one.file_meta = ds.file_meta  # the byte order of an OW table
    implicit, little = ds.original_encoding
    if little is not None:
        one.set_original_encoding(implicit, little)
    return one


def _lut_window(ds: Dataset, index: int = 0) -> tuple[float, float] | None:
    """A display through lookup tables (a Modality LUT Sequence, the ``index``-th item of a VOI LUT
    Sequence) as the linear window of its central slope: pydicom's ``apply_modality_lut`` and
    ``apply_voi_lut`` over the stored values (4,097 of them, evenly spaced), the values where the display
    passes a quarter and three quarters of its rise, widened twice round their middle (a linear window
    gives itself back; an S-curve over the whole range gives its steep part)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    bits = int(ds.get("BitsStored", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    stored = np.unique(np.linspace(low, high, 4097).round().astype(np.int64))
    modality = np.asarray(apply_modality_lut(stored, ds))
    if "VOILUTSequence" in ds:  # a VOI LUT's input is a whole value (pydicom warns on floats)
        modality = np.round(modality).astype(np.int64)
    voi = _one_voi_lut(ds, index) if "VOILUTSequence" in ds else ds
    shown = np.asarray(apply_voi_lut(modality, voi), dtype=np.float64)
    if not np.isfinite(shown).all() or shown.max() <= shown.min():
        return None
    rise = (shown - shown.min()) / (shown.max() - shown.min())
    if rise[-1] < rise[0]:
        rise = 1.0 - rise  # a table that falls: its rise read the other way
    quarter, three = stored[np.argmax(rise >= 0.25)], stored[np.argmax(rise >= 0.75)]
    middle, half = (quarter + three) / 2, abs(float(three - quarter))
    return (middle - half, middle + half) if half > 0 else None


def _lut_window_or_none(ds: Dataset, index: int) -> tuple[float, float] | None:
    """:func:`_lut_window`, None where its table does not parse (the file's other tables still count)."""
    try:
        return _lut_window(ds, index)
    except Exception:  # pydicom's errors for a malformed table vary
        return None


def voi_windows(ds: Dataset, frame: int = 0) -> list[tuple[float, float]]:
    """The stored values each of a frame's display windows spans (``frame``: its index in the file, from
    0), in the file's order: Window Center and Width (PS3.3 C.11.2.1.2.1, linear; every preset of a
    multi-valued pair) or a VOI LUT's input range, back through a linear Modality rescale; from the top
    level, else the shared or the frame's own functional groups (Frame VOI LUT, Pixel Value
    Transformation: an Enhanced CT or MR may give each frame its own); under a Modality LUT Sequence or
    a top-level VOI LUT Sequence, :func:`_lut_window` of each of its tables, then the file's Window
    Center and Width beside them where the rescale is linear (a viewer shows a table first; a reader may
    pick any of them). Windows of width <= 1 and values that do not parse are left out."""
    luts: list[tuple[float, float]] = []
    if _lut_display(ds):
        try:
            items = len(ds["VOILUTSequence"].value or ()) if "VOILUTSequence" in ds and ds["VOILUTSequence"].VR == "SQ" else 1
        except Exception:  # a sequence that does not parse
            items = 1
        luts = [lut for lut in map(functools.partial(_lut_window_or_none, ds), range(min(max(items, 1), MAX_VOI_LUTS)))
                if lut is not None]
        if "ModalityLUTSequence" in ds or "WindowWidth" not in ds:  # a window over a table's output: not linear in stored values
            return luts
    try:
        spans: list[tuple[float, float]] = []
        slope, intercept = None, None
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        groups = [ds]
        for k, index in (("SharedFunctionalGroupsSequence", 0), ("PerFrameFunctionalGroupsSequence", frame)):
            if k in ds and ds[k].VR == "SQ" and 0 <= index < len(ds[k].value):
                groups.append(ds[k].value[index])
        for g in groups:
            voi = _first_item(g, "FrameVOILUTSequence") or g
            spans = spans or _spans(voi, signed)
            pv = _first_item(g, "PixelValueTransformationSequence") or g
            slope = slope if slope is not None else _number(pv.get("RescaleSlope"))
            intercept = intercept if intercept is not None else _number(pv.get("RescaleIntercept"))
    except Exception:  # a value or a table that does not parse (pydicom's errors vary): no window, the other views
        return luts
    slope = 1.0 if slope is None else slope
    if not slope:
        return luts
    out = luts
    for span in spans:
        if np.isfinite(span).all():
            a, b = ((v - (intercept or 0.0)) / slope for v in span)
            out.append((min(a, b), max(a, b)))
    return out


def _lut_display(ds: Dataset) -> bool:
    """Whether the file is displayed through a top-level lookup table (the same for every frame)."""
    return "ModalityLUTSequence" in ds or "VOILUTSequence" in ds


def voi_window(ds: Dataset) -> tuple[float, float] | None:
    """The stored values the first frame's first display window spans (:func:`voi_windows`), or None."""
    spans = voi_windows(ds)
    return spans[0] if spans else None


def _window_spans(presets: list[tuple[float, float]], f: "torch.Tensor",
                  narrower_than: float) -> list[tuple[float, float]]:
    """The display windows (stored values, ``presets`` in the file's order) of frame ``f`` that make views:
    those narrower than ``narrower_than`` holding ``VOI_MIN_SHARE`` of the frame, ``MAX_VOI_VIEWS`` at
    most, less one that lies inside a window already taken and is at least ``VOI_NARROW`` as wide as it:
    the same preset twice, or a narrower one whose text the wider view shows with at least the contrast
    a window's text has in ``full`` when the window is not narrow (the rule the first window passes)."""
    taken: list[tuple[float, float]] = []
    for lo, hi in presets:
        if hi - lo >= narrower_than or any(a <= lo and hi <= b and hi - lo >= VOI_NARROW * (b - a) for a, b in taken):
            continue
        if float(((f >= lo) & (f <= hi)).float().mean()) >= VOI_MIN_SHARE:
            taken.append((lo, hi))
            if len(taken) == MAX_VOI_VIEWS:
                break
    return taken


def prepare_views(ds: Dataset, frames: np.ndarray, device: str = "cpu", min_long: int = MIN_LONG,
                  max_long: int = MAX_LONG, extra_views: bool = True, fine: bool = False,
                  frame_numbers: Sequence[int] | None = None) -> list[View]:
    """All views of all ``frames`` (native stored values, shape (n, rows, cols[, samples])); ``fine``:
    each view but ``achromatic`` also as a ``fine`` view, downscaled ``MAX_DOWNSCALE`` at most, when
    that is larger. ``frame_numbers``: each frame's index in the file (from 0), whose display windows
    (:func:`voi_windows`) it is shown through; by default the frames are the file's first ones in order
    (``View.frame`` stays the index into ``frames``)."""
    import torch

    frames = np.asarray(frames)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames.ndim == (2 if samples == 1 else 3):
        frames = frames[None]
    n, rows, cols = frames.shape[:3]
    th, tw = target_size(rows, cols, min_long, max_long)
    sy, sx = rows / th, cols / tw
    fh, fw = target_size(rows, cols, min_long, max_long, MAX_DOWNSCALE)
    fine = fine and (fh, fw) != (th, tw)
    fsy, fsx = rows / fh, cols / fw
    views: list[View] = []
    rgb = to_display_rgb(ds, frames)
    if rgb is not None:
        # one achromatic view per call, of the first frame with a colour patch: text stands still in a cine
        # while its flow moves, and ``scan.propagate_static`` carries its boxes to the frames where its ink
        # is unchanged (a view per frame cost a cine ~40 % more scan time: benchmarks/README.md)
        achromatic = extra_views
        for s in range(0, n, 8):
            t = torch.as_tensor(rgb[s : s + 8], device=device).permute(0, 3, 1, 2).float()
            imgs, _, _, _ = _finish(t, rows, cols, min_long, max_long)
            views.extend(View(s + j, "rgb", im, th, tw, sy, sx) for j, im in enumerate(imgs))
            if fine:
                imgs, _, _, _ = _finish(t, rows, cols, min_long, max_long, MAX_DOWNSCALE)
                views.extend(View(s + j, FINE, im, fh, fw, fsy, fsx) for j, im in enumerate(imgs))
            first = next((j for j in range(t.shape[0]) if colour_patch(rgb[s + j])), None) if achromatic else None
            if first is not None:
                out, greys, _, _ = _finish(t[first : first + 1].amin(dim=1, keepdim=True), rows, cols, min_long, max_long)
                views.append(View(s + first, "achromatic", out[0], th, tw, sy, sx, grey=greys[0]))
                achromatic = False
        return views

    invert = str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"
    numbers = list(range(n)) if frame_numbers is None else [int(k) for k in frame_numbers]
    if len(numbers) != n:
        raise ValueError(f"{len(numbers)} frame numbers for {n} frames")
    presets: dict[int, list[tuple[float, float]]] = {}  # per frame number, in stored values as displayed
    # frames have windows of their own in Per-Frame Functional Groups, not through a top-level table
    per_frame = "PerFrameFunctionalGroupsSequence" in ds and not _lut_display(ds)
    floats = np.issubdtype(frames.dtype, np.floating)  # Float Pixel Data: NaN and infinities possible
    for i in range(n):
        f = torch.as_tensor(frames[i].astype(np.float32), device=device)
        if floats:
            f = _finite(f)  # one NaN made the frame's range NaN and every view blank
            if f is None:
                continue
        if invert:
            f = -f  # MONOCHROME1: the smallest stored value is displayed white
        lo, hi = float(f.min()), float(f.max())
        if hi <= lo:
            continue  # a constant frame holds no text
        kinds = ["full"]
        imgs = [_scaled(f, lo, hi)]
        full = imgs[0]
        at_ext = f == hi
        if extra_views:
            rest = _without(f, at_ext)
            if rest.numel() > 16:
                # bulk of the values squeezed into a few grey levels (a 16-bit CT with text at 32767, or
                # text at the top of a display window): the 0.5-95 % window of the values below the extreme
                sub = rest[:: max(1, rest.numel() // 65_536)]
                w_lo, w_hi = _quantiles(sub, (0.005, 0.95))
                robust = w_hi > w_lo and (w_hi - w_lo) < 0.5 * (hi - lo)
                key = numbers[i] if per_frame else 0
                if key not in presets:
                    presets[key] = [(-b, -a) if invert else (a, b) for a, b in voi_windows(ds, key)]
                windows = _window_spans(presets[key], f, 0.5 * (w_hi - w_lo) if robust else VOI_NARROW * (hi - lo))
                if windows:
                    w_lo, w_hi = windows[0]  # the file's window, narrower, holding part of the image
                if w_hi > w_lo and (w_hi - w_lo) < 0.5 * (hi - lo):
                    kinds.append("window")
                    imgs.append(_scaled(f, w_lo, w_hi))
                    # the file's other presets that make views: text a reader sees only in the second
                    kinds.extend("window" for _ in windows[1:])
                    imgs.extend(_scaled(f, a, b) for a, b in windows[1:])
                    # text at a high value that is not the extreme (3071 in a CT whose other text is at
                    # 32767): dim in ``full``, clipped to the tissue's white in ``window``; the range
                    # up to the highest value below the extreme shows it
                    top = float(rest.max())
                    if top > w_hi and (top - lo) < 0.5 * (hi - lo):
                        kinds[0] = "upper"  # in place of ``full``: the extreme's text stays white in it
                        imgs[0] = _scaled(f, lo, top)
                # text burned in at the extreme value, white over the frame dimmed to 40 %, when other
                # bright pixels (speckle, bone) compete with it in the full view
                share = float(at_ext.float().mean())
                if EXTREME_MIN_SHARE <= share <= EXTREME_MAX_SHARE:
                    bright = (full >= 153.0) & ~at_ext
                    if float(bright.float().mean()) >= 1e-3:
                        kinds.append("extreme")
                        imgs.append(torch.where(at_ext, torch.full_like(full, 255.0), full * 0.4))
        stack = torch.stack(imgs)[:, None]
        out, greys, _, _ = _finish(stack, rows, cols, min_long, max_long)
        views.extend(View(i, k, im, th, tw, sy, sx, grey=g) for k, im, g in zip(kinds, out, greys))
        if fine:  # each of them again at the finer size (both calls resize into new tensors: ``stack`` is intact)
            out, greys, _, _ = _finish(stack, rows, cols, min_long, max_long, MAX_DOWNSCALE)
            views.extend(View(i, FINE, im, fh, fw, fsy, fsx, grey=g) for im, g in zip(out, greys))
    return views


def _finite(f: "torch.Tensor") -> "torch.Tensor | None":
    """A float frame with NaN and -inf at its least finite value, +inf at its greatest (the frame itself
    when all are finite; None: no finite value, nothing to show)."""
    import torch

    ok = torch.isfinite(f)
    if bool(ok.all()):
        return f
    if not bool(ok.any()):
        return None
    lo, hi = float(f[ok].min()), float(f[ok].max())
    return torch.nan_to_num(f, nan=lo, posinf=hi, neginf=lo)


def prepare_frames(ds: Dataset, frames: np.ndarray, device: str = "cpu") -> list[np.ndarray]:
    """Contract form (docs/ARCHITECTURE.md): the prepared uint8 (H, W, 3) views, frame by frame."""
    return [v.image for v in prepare_views(ds, frames, device)]
