"""Burned-in text on files the detector has not seen: the real ground-truth files, re-encoded and re-drawn.

The held-out files deid is judged on come from other devices and in other encodings. This script
makes such files from the real ones (``--real DIR``, ``*.dcm`` + ``<name>.groundtruth.json``): the
same pixels and boxes in another transfer syntax, photometric interpretation, bit depth, scale or
position, or with noise, then scores each variant as ``eval_text.py`` scores a file (PHI-box recall,
all-text recall, non-text pixels changed). A variant whose recall falls below the file as it is points
at a step (decode, frame preparation, the detector) that depends on how the file was encoded.

Variants (each applies only where it makes sense; the boxes move with scaling and padding):

* encodings: ``rle``, ``jpeg-ls``, ``j2k-lossy`` (about 20:1), ``jpeg-baseline`` and ``jpeg-q30``
  (8-bit; colour as YBR_FULL_422, quality 75 and 30), ``big-endian``;
* photometric: ``monochrome1`` / ``monochrome2`` (grey inverted, the photometric swapped), ``rgb`` (grey or palette as RGB),
  ``grey`` (colour as luminance), ``ybr-full``, ``palette`` (colour quantised to an 8-bit palette);
* values: ``16-bit`` (8-bit grey as 12-bit in 16, with a window), ``rescale`` (16-bit values halved
  with slope 2 and intercept -1024), ``darker`` (all values at 60 %), ``low-contrast`` (the range
  halved towards the top), ``dark-on-light`` (values mirrored, photometric kept), ``noise-4%`` and
  ``noise-10%`` (Gaussian, share of the range);
* text colour: ``text-red``, ``-green``, ``-blue``, ``-yellow``, ``-dark-blue`` (each file as 8-bit RGB,
  the text pixels of every box recoloured);
* geometry: ``scale-0.5`` to ``scale-2.0``, ``pad`` (37 px above, 53 px to the left), ``rotate-90`` and
  ``rotate-270`` (the frame turned a quarter, so the text runs vertically), ``mirror`` (left-right).

Multi-frame files keep their first three frames. Usage::

    python benchmarks/eval_variants.py --real ../shared/data/burned_in_text --tag cpu
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import eval_text  # noqa: E402

MAX_FRAMES = 3
_PIXEL_MODULE = (
    "PhotometricInterpretation", "SamplesPerPixel", "PlanarConfiguration", "BitsAllocated", "BitsStored",
    "HighBit", "PixelRepresentation", "NumberOfFrames", "Rows", "Columns", "RescaleSlope", "RescaleIntercept",
    "WindowCenter", "WindowWidth", "VOILUTSequence", "ModalityLUTSequence", "PixelData",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData", "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData", "SegmentedBluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID", "LossyImageCompression", "LossyImageCompressionRatio",
    "LossyImageCompressionMethod", "FrameIncrementPointer", "FrameTime",
)


class Source:
    """A real file as the variants see it: stored frames (palette applied when colour), and its truth."""

    def __init__(self, ds: Any, truth: dict[str, Any]) -> None:
        from pydicom.pixels import apply_color_lut

        frames = eval_text.decode(ds)[:MAX_FRAMES]
        self.photometric = str(ds.PhotometricInterpretation)
        if self.photometric == "PALETTE COLOR":
            rgb = apply_color_lut(frames, ds)
            frames = (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)
            self.photometric = "RGB"
        elif frames.ndim == 4:
            from deid_pipeline.pixels import decoded_photometric

            if decoded_photometric(ds) == "YBR_FULL":
                from pydicom.pixels import convert_color_space

                frames = convert_color_space(frames, "YBR_FULL", "RGB")
            self.photometric = "RGB"  # JPEG 2000 decoders undo YBR_RCT / YBR_ICT
        self.frames = frames  # (n, rows, cols) or (n, rows, cols, 3)
        self.ds, self.truth = ds, truth
        self.colour = frames.ndim == 4
        bits = frames.dtype.itemsize * 8
        self.bits_stored = min(int(ds.get("BitsStored", bits) or bits), bits)
        self.signed = frames.dtype.kind == "i"


def _dataset(src: Source, frames: np.ndarray, photometric: str, *, bits_stored: int | None = None) -> Any:
    """A copy of the source's header with new uncompressed pixels (Explicit VR Little Endian)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = copy.deepcopy(src.ds)
    for keyword in _PIXEL_MODULE:
        if keyword in ds:
            delattr(ds, keyword)
    ds.file_meta = copy.deepcopy(src.ds.file_meta) if hasattr(src.ds, "file_meta") else FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    n = frames.shape[0]
    colour = frames.ndim == 4
    if n > 1:
        ds.NumberOfFrames = n
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = frames.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if frames.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    return ds


def _truth(src: Source, name: str, move: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    truth = copy.deepcopy(src.truth)
    truth["file"] = f"{src.truth.get('file', '?')}:{name}"
    if move is not None:
        truth["annotations"] = [move(a) for a in truth.get("annotations", [])]
    return truth


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114 + 0.5, 0, 255).astype(np.uint8)


def _encapsulate_jpeg(src: Source, frames: np.ndarray, quality: int = 75) -> Any:
    """8-bit frames as JPEG Baseline (Pillow); colour as YBR_FULL_422."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    colour = frames.ndim == 4
    ds = _dataset(src, frames, "YBR_FULL_422" if colour else "MONOCHROME2")
    parts = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f, "RGB" if colour else "L").save(buf, "JPEG", quality=quality, subsampling=1 if colour else 0)
        parts.append(buf.getvalue())
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate(parts)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"
    return ds


def _compressed(ds: Any, syntax: Any, **kwargs: Any) -> Any:
    from deid_pipeline.pixels import encoder_plugin

    ds.compress(syntax, generate_instance_uid=False, **encoder_plugin(syntax), **kwargs)
    return ds


def _scale(a: dict[str, Any], s: float) -> dict[str, Any]:
    a = dict(a)
    x0, y0 = int(np.floor(a["x"] * s)), int(np.floor(a["y"] * s))
    x1, y1 = int(np.ceil((a["x"] + a["w"]) * s)), int(np.ceil((a["y"] + a["h"]) * s))
    a.update(x=x0, y=y0, w=x1 - x0, h=y1 - y0)
    return a


def _turned(a: dict[str, Any], rows: int, cols: int, quarter_turns: int) -> dict[str, Any]:
    """A box after ``np.rot90(frame, quarter_turns)`` (counter-clockwise) of a rows x cols frame."""
    x, y, w, h = a["x"], a["y"], a["w"], a["h"]
    if quarter_turns == 1:
        return {**a, "x": y, "y": cols - x - w, "w": h, "h": w}
    return {**a, "x": rows - y - h, "y": x, "w": h, "h": w}


def _resize(frames: np.ndarray, s: float) -> np.ndarray:
    import cv2

    rows, cols = frames.shape[1:3]
    size = (int(round(cols * s)), int(round(rows * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    out = [cv2.resize(f, size, interpolation=interp) for f in frames]
    return np.stack(out).astype(frames.dtype)


def variants(src: Source) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(variant, dataset, truth) for every variant that applies to ``src``."""
    from pydicom.uid import JPEG2000, JPEGLSLossless, RLELossless

    f, colour = src.frames, src.colour
    base = "RGB" if colour else src.photometric
    lo, hi = int(f.min()), int(f.max())
    yield "as-is", _dataset(src, f, base, bits_stored=src.bits_stored), _truth(src, "as-is")
    yield "rle", _compressed(_dataset(src, f, base, bits_stored=src.bits_stored), RLELossless), _truth(src, "rle")
    if f.dtype.itemsize <= 2 and not (colour and f.dtype.itemsize > 1):
        yield "jpeg-ls", _compressed(_dataset(src, f, base, bits_stored=src.bits_stored), JPEGLSLossless), _truth(src, "jpeg-ls")
    if not src.signed:
        yield "j2k-lossy", _compressed(_dataset(src, f, base, bits_stored=src.bits_stored), JPEG2000,
                                       j2k_cr=[20], use_mct=False), _truth(src, "j2k-lossy")
    yield "big-endian", _big_endian(_dataset(src, f, base, bits_stored=src.bits_stored)), _truth(src, "big-endian")
    if colour:
        yield "jpeg-baseline", _encapsulate_jpeg(src, f), _truth(src, "jpeg-baseline")
        yield "jpeg-q30", _encapsulate_jpeg(src, f, 30), _truth(src, "jpeg-q30")
        grey = _luminance(f)
        yield "grey", _dataset(src, grey, "MONOCHROME2"), _truth(src, "grey")
        from pydicom.pixels import convert_color_space

        yield "ybr-full", _dataset(src, convert_color_space(f, "RGB", "YBR_FULL"), "YBR_FULL"), _truth(src, "ybr-full")
        yield "palette", _palette(src, f), _truth(src, "palette")
    else:
        if f.dtype == np.uint8:
            yield "jpeg-baseline", _encapsulate_jpeg(src, f), _truth(src, "jpeg-baseline")
            yield "jpeg-q30", _encapsulate_jpeg(src, f, 30), _truth(src, "jpeg-q30")
            up = (f.astype(np.uint16) << 4) | (f.astype(np.uint16) >> 4)
            ds = _dataset(src, up, base, bits_stored=12)
            ds.WindowCenter, ds.WindowWidth = 2048, 4096
            yield "16-bit", ds, _truth(src, "16-bit")
            yield "rgb", _dataset(src, np.repeat(f[..., None], 3, axis=3), "RGB"), _truth(src, "rgb")
        if base in ("MONOCHROME1", "MONOCHROME2"):
            other = "MONOCHROME1" if base == "MONOCHROME2" else "MONOCHROME2"
            top = (1 << src.bits_stored) - 1 if not src.signed else hi
            inv = (top - f.astype(np.int64) + (lo if src.signed else 0)).astype(f.dtype)
            yield other.lower(), _dataset(src, inv, other, bits_stored=src.bits_stored), _truth(src, other.lower())
        if f.dtype.itemsize == 2:
            half = (f.astype(np.int64) // 2 + 512).astype(f.dtype)
            ds = _dataset(src, half, base, bits_stored=src.bits_stored)
            ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
            yield "rescale", ds, _truth(src, "rescale")
    if not src.signed:
        darker = (f.astype(np.float64) * 0.6).astype(f.dtype)
        yield "darker", _dataset(src, darker, base, bits_stored=src.bits_stored), _truth(src, "darker")
        flat = (f.astype(np.float64) * 0.5 + hi * 0.5).astype(f.dtype)
        yield "low-contrast", _dataset(src, flat, base, bits_stored=src.bits_stored), _truth(src, "low-contrast")
        if base != "MONOCHROME1":
            inverse = (hi + lo - f.astype(np.float64)).astype(f.dtype)
            yield "dark-on-light", _dataset(src, inverse, base, bits_stored=src.bits_stored), _truth(src, "dark-on-light")
    rng = np.random.default_rng(0)
    span = hi - lo or 1.0
    info = np.iinfo(f.dtype)
    for sigma in (0.04, 0.10):
        noisy = np.clip(f + rng.normal(0, sigma * span, f.shape), info.min, info.max).astype(f.dtype)
        yield f"noise-{sigma:.0%}", _dataset(src, noisy, base, bits_stored=src.bits_stored), _truth(src, f"noise-{sigma:.0%}")
    for s in (0.5, 0.75, 1.5, 2.0):
        yield (f"scale-{s}", _dataset(src, _resize(f, s), base, bits_stored=src.bits_stored),
               _truth(src, f"scale-{s}", lambda a, s=s: _scale(a, s)))
    for name, ink in TEXT_COLOURS.items():
        yield f"text-{name}", _dataset(src, _recoloured(src, ink), "RGB"), _truth(src, f"text-{name}")
    rows, cols = f.shape[1:3]
    for name, turned, move in (("rotate-90", np.rot90(f, 1, axes=(1, 2)), lambda a: _turned(a, rows, cols, 1)),
                               ("rotate-270", np.rot90(f, 3, axes=(1, 2)), lambda a: _turned(a, rows, cols, 3)),
                               ("mirror", f[:, :, ::-1], lambda a: {**a, "x": cols - a["x"] - a["w"]})):
        yield (name, _dataset(src, np.ascontiguousarray(turned), base, bits_stored=src.bits_stored),
               _truth(src, name, move))
    pad_width = [(0, 0), (37, 0), (53, 0)] + ([(0, 0)] if colour else [])
    padded = np.pad(f, pad_width, mode="edge")
    yield ("pad", _dataset(src, padded, base, bits_stored=src.bits_stored),
           _truth(src, "pad", lambda a: {**a, "x": a["x"] + 53, "y": a["y"] + 37}))


#: Text colours of ``text-*`` variants (RGB). Dark blue on black is the hardest: its grey is 53.
TEXT_COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
                "dark-blue": (0, 0, 160)}


def _rendered(src: Source) -> tuple[np.ndarray, np.ndarray]:
    """The frames as 8-bit RGB (grey min-max scaled, MONOCHROME1 inverted) and their grey level."""
    f = src.frames
    if src.colour:
        rgb = f.astype(np.uint8, copy=True)
    else:
        g = f.astype(np.float64)
        g = (g - g.min()) / max(float(g.max() - g.min()), 1.0) * 255
        if src.photometric == "MONOCHROME1":
            g = 255 - g
        rgb = np.repeat(g.astype(np.uint8)[..., None], 3, axis=3)
    return rgb, rgb.mean(axis=3).astype(np.uint8)


def _recoloured(src: Source, ink: tuple[int, int, int]) -> np.ndarray:
    """The frames as 8-bit RGB (grey min-max scaled, MONOCHROME1 inverted) with the text of every
    ground-truth box in ``ink``. Text pixels are the strokes brighter than their local field by more
    than 40 grey levels (a morphological top-hat with a kernel twice the box's height, so a field that
    changes across the box, text half over anatomy, is not taken for text). Device text is bright once
    displayed; dark text in a box stays as it is."""
    rgb, level = _rendered(src)
    for i, ys, xs, text in _text_pixels(src, level):
        rgb[i, ys, xs][text] = ink
    return rgb


def _text_pixels(src: Source, level: np.ndarray) -> Iterator[tuple[int, slice, slice, np.ndarray]]:
    """(frame, rows, columns, text mask) of every ground-truth box in every frame it is on: the
    pixels of the box whose grey ``level`` tops their field by more than 40 (``_recoloured``'s rule)."""
    import cv2

    for a in src.truth.get("annotations", []):
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * int(a["h"]) + 1,) * 2)
        ys, xs = slice(a["y"], a["y"] + a["h"]), slice(a["x"], a["x"] + a["w"])
        for i in range(len(level)):
            if "frame" in a and int(a["frame"]) != i:
                continue
            yield i, ys, xs, cv2.morphologyEx(level[i], cv2.MORPH_TOPHAT, kernel)[ys, xs] > 40


def _dimmed(src: Source, delta: int) -> np.ndarray:
    """The frames as ``_rendered`` (8-bit RGB), with the text pixels of every ground-truth
    box (the same top-hat rule) set to grey ``field + delta``, ``field`` the median of the box's other
    pixels: text ``delta`` grey levels above whatever it sits on (black, a grey bar, anatomy)."""
    rgb, level = _rendered(src)
    for i, ys, xs, text in _text_pixels(src, level):
        if text.any() and not text.all():
            ink = int(min(255.0, float(np.median(level[i, ys, xs][~text])) + delta))
            rgb[i, ys, xs][text] = (ink, ink, ink)
    return rgb


def dim_variants(src: Source, deltas: Iterable[int]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """``dim-N``: the text ``N`` grey levels above its field (``_dimmed``), as RGB."""
    for d in deltas:
        yield f"dim-{d}", _dataset(src, _dimmed(src, d), "RGB"), _truth(src, f"dim-{d}")


def _big_endian(ds: Any) -> Any:
    """The same data set in Explicit VR Big Endian (pixels byte-swapped), round-tripped through bytes."""
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian

    arr = np.frombuffer(ds.PixelData, dtype=np.uint16 if ds.BitsAllocated == 16 else np.uint8)
    ds.PixelData = arr.byteswap().tobytes() if ds.BitsAllocated == 16 else arr.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()), force=True)


def _palette(src: Source, rgb: np.ndarray) -> Any:
    """Colour frames as 8-bit PALETTE COLOR: 3-3-2 bit quantisation, 16-bit LUT entries."""
    from pydicom.datadict import tag_for_keyword

    r, g, b = rgb[..., 0] >> 5, rgb[..., 1] >> 5, rgb[..., 2] >> 6
    index = ((r << 5) | (g << 2) | b).astype(np.uint8)
    ds = _dataset(src, index, "PALETTE COLOR")
    i = np.arange(256)
    lut = {
        "Red": ((i >> 5) * 255 // 7), "Green": (((i >> 2) & 7) * 255 // 7), "Blue": ((i & 3) * 255 // 3),
    }
    for name, values in lut.items():
        ds.add_new(tag_for_keyword(f"{name}PaletteColorLookupTableDescriptor"), "US", [256, 0, 16])
        ds.add_new(tag_for_keyword(f"{name}PaletteColorLookupTableData"), "OW",
                   (values.astype(np.uint16) * 257).astype("<u2").tobytes())
    return ds


def write_variants(cases: list[tuple[str, Any, dict[str, Any]]], root: Path) -> dict[str, dict[str, Any]]:
    """Write each variant under ``root`` (one folder per source file); returns its truth by sha256."""
    from deid_pipeline.synth import write_case

    by_sha: dict[str, dict[str, Any]] = {}
    for i, (name, ds, truth) in enumerate(cases):
        source = str(truth["file"]).split(":")[0].rsplit(".", 1)[0]
        label = truth["file"]
        digest = write_case(ds, truth, root / source / f"{i:03d}-{name}.dcm", file_label=label)
        by_sha[digest] = truth
    return by_sha


def filled(box: np.ndarray, share: float = 0.95) -> bool:
    """Whether one value (one colour) covers ``share`` of a box: a redaction's fill."""
    flat = box.reshape(-1, box.shape[-1]) if box.ndim == 3 else box.reshape(-1, 1)
    _, counts = np.unique(flat, axis=0, return_counts=True)
    return bool(counts.max() >= share * flat.shape[0])


def check_run(out: Path, by_sha: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every input written, and every PHI box (and every text box) of every frame filled in its output."""
    import pydicom

    from deid_pipeline.pixels import decode_frames

    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
    result: dict[str, Any] = {"inputs": len(by_sha), "records": len(records), "not_written": [], "phi_boxes": 0,
                              "phi_filled": 0, "leaks": [], "text_boxes": 0, "text_filled": 0, "text_missed": []}
    for rec in records:
        truth = by_sha.get(rec.get("input_sha256", ""))
        if truth is None:
            continue
        if rec.get("status") != "written":
            result["not_written"].append({"file": truth["file"], "status": rec.get("status"), "reason": rec.get("reason")})
            continue
        frames = decode_frames(pydicom.dcmread(out / rec["output_path"]))
        for f in range(frames.shape[0]):
            for a in truth.get("annotations", []):
                if "frame" in a and int(a["frame"]) != f:
                    continue
                is_filled = filled(frames[f, a["y"] : a["y"] + a["h"], a["x"] : a["x"] + a["w"]])
                where = {"file": truth["file"], "frame": f, "category": a.get("category", "")}
                result["text_boxes"] += 1
                result["text_filled"] += is_filled
                if not is_filled:
                    result["text_missed"].append(where)
                if a.get("phi"):
                    result["phi_boxes"] += 1
                    result["phi_filled"] += is_filled
                    if not is_filled:
                        result["leaks"].append(where)
    return result


Case = tuple[str, Any, dict[str, Any]]  # (variant name, data set, ground truth)


def sources(folder: Path) -> list[Source]:
    """The ``*.dcm`` files with their ``.groundtruth.json`` in ``folder`` (``eval_text.load_dir``)."""
    return [Source(ds, truth) for _, ds, truth in eval_text.load_dir(folder)]


def make_cases(srcs: Iterable[Source], keep: Callable[[str], bool] = lambda name: True,
               dims: Iterable[int] = ()) -> list[Case]:
    """Every variant of every source whose name ``keep`` accepts, then its ``dim-N`` variants."""
    srcs, dims = list(srcs), list(dims)
    return ([(name, ds, truth) for src in srcs for name, ds, truth in variants(src) if keep(name)]
            + [case for src in srcs for case in dim_variants(src, dims)])


def run_and_check(cases: list[Case], root: Path, *options: str,
                  timeout: float | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Write ``cases`` under ``root/in``, run ``deid run`` on them into ``root/out`` (2 workers, every
    image scanned, a fresh key; ``options`` added) and :func:`check_run` what it wrote; the result
    also holds the run's exit status and seconds."""
    by_sha = write_variants(cases, root / "in")
    key = root / "key"
    key.write_bytes(os.urandom(32).hex().encode())
    key.chmod(0o600)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deid_pipeline.cli", "run", str(root / "in"), str(root / "out"),
                           "--workers", "2", "--pixels", "all", "--quiet", "--key-file", str(key), *options],
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    checked = check_run(root / "out", by_sha)
    checked.update(exit_status=proc.returncode, seconds=round(seconds, 1))
    return proc, checked


def main() -> None:
    ap = argparse.ArgumentParser(description="Score burned-in text on re-encoded variants of the real files.")
    ap.add_argument("--real", type=Path, required=True, help="folder of *.dcm + *.groundtruth.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--mode", default="all-text", choices=["all-text", "phi-text"])
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all; 'none': only --dim)")
    ap.add_argument("--dim", default="", help="comma-separated grey levels N: add dim-N variants, the text N levels "
                                              "above its field (not in the default set)")
    ap.add_argument("--run", action="store_true",
                    help="also write the variants, run `deid run` on them (2 workers) and check every PHI box "
                         "of every output is filled")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()

    detector = eval_text.ready_detector(args.detector, args.device)
    only = {v for v in args.only.split(",") if v}
    cases = make_cases(sources(args.real), lambda name: not only or name in only,
                       dims=[int(d) for d in args.dim.split(",") if d])
    print(f"{len(cases)} variant files", flush=True)
    tag = args.tag or detector.device.replace(":", "")
    result: dict[str, Any] = {**eval_text.result_header(detector, args.mode, tag), "max_frames": MAX_FRAMES,
                              "sets": {"variants": eval_text.run_set(cases, detector, args.mode)}}
    if args.run:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="deid-variants-") as tmp:
            _, checked = run_and_check(cases, Path(tmp), "--device", args.device, "--detector", args.detector)
        result["deid_run"] = checked
        print(f"deid run: exit {checked['exit_status']}, {checked['records']} records, not written "
              f"{len(checked['not_written'])}, PHI boxes filled {checked['phi_filled']}/{checked['phi_boxes']}, "
              f"{checked['seconds']:.1f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"eval_variants_{tag}"
    eval_text.write_atomic(args.out / f"{stem}.json", json.dumps(result, indent=1, default=float))
    eval_text.write_atomic(args.out / f"{stem}.md", eval_text.markdown(result).replace(
        "# Text redaction benchmark", "# Text redaction on re-encoded variants of the real files", 1))
    print(f"wrote {args.out}/{stem}.json and .md")


if __name__ == "__main__":
    main()
