"""Burned-in text in styles the synthetic set does not draw: TrueType faces (Pillow), sizes, a dark or
light outline round the letters, white or grey text; on CT air, over CT tissue and over ultrasound speckle.
Scored as ``eval_text.py`` scores (a box is found when >= 95 % of it lies in the regions), per condition.

    python benchmarks/probe_text_styles.py --detector auto --sizes 8 10 12 16 22 --outlines 0 1 2 \\
        --fonts "/usr/share/fonts/truetype/dejavu/DejaVuSans*.ttf" --tag session32
    python benchmarks/probe_text_styles.py --detector auto --sizes 8 10 12 --outlines 0 --styles us-grey us-white \
        --cine 12 --tag session33-cine   # small text over speckle that moves from frame to frame

Every frame is generated here from fixed seeds (no downloads); the text is invented.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import eval_text  # noqa: E402
from result_names import free_stem  # noqa: E402

LINES = ("DOE^JOHN 884213", "DOB 19371112", "ACC 55512 12-Mar-2024", "St Mary Hospital")
#: (background, text value, outline value): CT in stored values (HU + 1024), ultrasound 8-bit
STYLES = {
    "ct-air-white": ("ct-air", 3071, 0), "ct-tissue-light": ("ct-tissue", 2024, 0),
    "ct-tissue-dark": ("ct-tissue", 0, 2024), "us-white": ("us", 255, 0), "us-grey": ("us", 200, 30),
}


def background(kind: str, seed: int) -> np.ndarray:
    """A 512x512 CT slice (air round a noisy body) or a 480x640 ultrasound sector of speckle."""
    rng = np.random.default_rng(seed)
    if kind.startswith("ct"):
        yy, xx = np.mgrid[:512, :512]
        img = np.full((512, 512), 24.0)
        body = ((yy - 300) / 190) ** 2 + ((xx - 256) / 230) ** 2 < 1
        img[body] = 1064 + rng.normal(0, 20, int(body.sum()))
        return img
    yy, xx = np.mgrid[:480, :640]
    img = np.zeros((480, 640))
    sector = (np.hypot(yy + 50, xx - 320) < 520) & (np.abs(np.arctan2(xx - 320, yy + 50)) < 0.6)
    img[sector] = np.clip(rng.gamma(1.5, 40, int(sector.sum())), 0, 255)
    return img


def draw(bg: np.ndarray, font_path: str, px: int, value: float, outline: int, outline_value: float,
         x0: int, y0: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The lines drawn (anti-aliased) over ``bg``, an ``outline`` pixels wide ring of ``outline_value``
    round the letters, and their boxes (the outline included) as ground truth."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path, px)
    out, anns, y = bg.astype(np.float64), [], y0
    for text in LINES:
        ring, ink = Image.new("L", bg.shape[::-1]), Image.new("L", bg.shape[::-1])
        ImageDraw.Draw(ring).text((x0, y), text, fill=255, font=font, stroke_width=outline, stroke_fill=255)
        ImageDraw.Draw(ink).text((x0, y), text, fill=255, font=font)
        r, a = np.asarray(ring, np.float64) / 255.0, np.asarray(ink, np.float64) / 255.0
        ys, xs = np.nonzero(r > 0.3)
        anns.append({"x": int(xs.min()), "y": int(ys.min()), "w": int(np.ptp(xs) + 1), "h": int(np.ptp(ys) + 1),
                     "text": text, "category": "probe", "phi": True})
        if outline:
            out = out * (1 - r) + outline_value * r
        out = out * (1 - a) + value * a
        y = int(ys.max()) + max(4, px // 3)
    return out, anns


def dataset(img: np.ndarray, ct: bool) -> Any:
    """A minimal secondary-capture dataset of monochrome frames (12-bit CT, 8-bit ultrasound): one frame
    (rows, cols) or a cine (frames, rows, cols)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    arr = np.clip(np.round(img), 0, 4095 if ct else 255).astype(np.uint16 if ct else np.uint8)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, generate_uid(), "CT" if ct else "US"
    ds.Rows, ds.Columns = arr.shape[-2:]
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored = arr.itemsize * 8, 12 if ct else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelData = arr.tobytes()
    return ds


def cases(fonts: list[str], sizes: list[int], outlines: list[int], styles: list[str],
          cine: int = 1) -> list[tuple[str, Any, dict[str, Any]]]:
    """One case per font, size, outline and style; its class names the style, size and outline. ``cine``
    > 1: ultrasound cases are cines of that many frames, fresh speckle in each under the same text."""
    out = []
    for font, px, outline, style in itertools.product(fonts, sizes, outlines, styles):
        kind, value, ring = STYLES[style]
        ct = kind.startswith("ct")
        x0, y0 = (60, 20) if kind == "ct-air" else (120, 240) if ct else (200, 150)
        n = 1 if ct else cine
        drawn = [draw(background(kind, px + 1000 * k), font, px, value, outline, ring, x0, y0) for k in range(n)]
        img, anns = drawn[0][0] if n == 1 else np.stack([d[0] for d in drawn]), drawn[0][1]  # one text, its boxes
        truth = {"file": f"{Path(font).stem}-{px}px-o{outline}-{style}", "annotations": anns}
        out.append((f"{style} {px}px outline {outline}", dataset(img, ct), truth))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fonts", default="/usr/share/fonts/truetype/dejavu/DejaVuSans*.ttf", help="glob patterns, comma-separated")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 10, 12, 16, 22])
    ap.add_argument("--outlines", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--styles", nargs="+", default=sorted(STYLES), choices=sorted(STYLES))
    ap.add_argument("--cine", type=int, default=1, metavar="FRAMES",
                    help="ultrasound cases as cines of this many frames, the speckle fresh in each (default 1: one frame)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    fonts = list(eval_text.font_files(args.fonts))
    detector = eval_text.ready_detector(args.detector, args.device)
    result = {**eval_text.result_header(detector, "all-text", args.tag or "probe"), "fonts": [Path(f).name for f in fonts],
              "sizes": args.sizes, "outlines": args.outlines, "styles": {k: STYLES[k] for k in args.styles},
              "cine_frames": args.cine,
              "set": eval_text.run_set(cases(fonts, args.sizes, args.outlines, args.styles, args.cine), detector, "all-text")}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "probe_text_styles_" + (args.tag or "probe")
    path = args.out / f"{free_stem(args.out, stem, ('.json',))}.json"
    eval_text.write_atomic(path, json.dumps(result, indent=1, default=str))
    for cls, s in result["set"]["per_class"].items():
        print(f"{cls:40s} text {s['text_recall']:.3f} of {s['text_boxes']}")
    print(json.dumps(result["set"]["overall"]))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
