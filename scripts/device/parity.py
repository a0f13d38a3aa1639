"""CPU against CUDA: the regions deid redacts, frame by frame, for every registered detector.

Inputs: real files (``*.dcm`` under the folders given) and a synthetic set (``deid_pipeline.synth``).
For each detector and image, both devices run :func:`deid_pipeline.scan.scan_frames` (views, network,
box checks, glyph finder, cine carry, fixed regions); reported: frames whose regions match exactly,
within ``--tolerance`` pixels (same count, every edge), and otherwise the pixel IoU of the two redaction
masks. Writes one JSON file; prints a one-line summary per detector. No header value or text is written.

    python scripts/device/parity.py --real ../shared/data/burned_in_text ../shared/data/no_text_controls \
        --synthetic 40 --out parity.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deid_pipeline import pixels  # noqa: E402
from deid_pipeline.detect import get_detector  # noqa: E402
from deid_pipeline.scan import scan_frames  # noqa: E402
from deid_pipeline.types import Region  # noqa: E402


def _mask(regions: list[Region], shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for r in regions:
        m[max(0, r.y) : r.y + r.h, max(0, r.x) : r.x + r.w] = True
    return m


def compare(a: list[Region], b: list[Region], shape: tuple[int, int], tol: int) -> dict[str, Any]:
    """How far the regions of one frame on two devices are apart."""
    key = lambda r: (r.y, r.x, r.h, r.w)  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    exact = [(r.x, r.y, r.w, r.h) for r in a] == [(r.x, r.y, r.w, r.h) for r in b]
    close = len(a) == len(b) and all(
        max(abs(x.x - y.x), abs(x.y - y.y), abs(x.w - y.w), abs(x.h - y.h)) <= tol for x, y in zip(a, b))
    ma, mb = _mask(a, shape), _mask(b, shape)
    union = int((ma | mb).sum())
    return {"exact": exact, "close": close, "boxes": [len(a), len(b)],
            "mask_iou": 1.0 if union == 0 else float((ma & mb).sum()) / union,
            "px_only_cpu": int((ma & ~mb).sum()), "px_only_cuda": int((mb & ~ma).sum())}


def inputs(real: list[Path], synthetic: int, seed: int) -> list[tuple[str, Any, np.ndarray]]:
    import pydicom

    items: list[tuple[str, Any, np.ndarray]] = []
    for folder in real:
        for path in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(path)
            items.append((f"real/{path.name}", ds, pixels.decode_frames(ds)))
    if synthetic:
        from deid_pipeline import synth

        for i, (ds, _truth) in enumerate(synth.iter_cases(synthetic, seed)):
            items.append((f"synthetic/{seed}/{i}", ds, pixels.decode_frames(ds)))
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, nargs="*", default=[])
    ap.add_argument("--synthetic", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--detectors", nargs="+", default=["auto", "ppocrv4-det", "deid-textseg"])
    ap.add_argument("--against", default="cuda", help="the device compared with the CPU (cpu: a determinism check)")
    ap.add_argument("--tolerance", type=int, default=2, help="pixels an edge may move (fp16 on CUDA)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    items = inputs(args.real, args.synthetic, args.seed)
    report: dict[str, Any] = {"tolerance_px": args.tolerance, "images": len(items), "detectors": {}}
    worst = 0
    for name in args.detectors:
        cpu, cuda = get_detector(name, "cpu"), get_detector(name, args.against)
        frames_total = exact = close = 0
        iou_min, rows, t_cpu, t_cuda = 1.0, [], 0.0, 0.0
        for label, ds, frames in items:
            t0 = time.perf_counter()
            a = scan_frames(ds, frames, cpu)
            t1 = time.perf_counter()
            b = scan_frames(ds, frames, cuda)
            t_cpu, t_cuda = t_cpu + t1 - t0, t_cuda + time.perf_counter() - t1
            shape = (int(ds.Rows), int(ds.Columns))  # regions are in stored-frame pixels
            per = [compare(x, y, shape, args.tolerance) for x, y in zip(a, b)]
            frames_total += len(per)
            exact += sum(p["exact"] for p in per)
            close += sum(p["close"] for p in per)
            iou = min((p["mask_iou"] for p in per), default=1.0)
            iou_min = min(iou_min, iou)
            rows.append({"image": label, "frames": len(per), "exact": sum(p["exact"] for p in per),
                         "close": sum(p["close"] for p in per), "min_mask_iou": iou,
                         "px_only_cpu": sum(p["px_only_cpu"] for p in per), "px_only_cuda": sum(p["px_only_cuda"] for p in per)})
        report["detectors"][name] = {"device_cpu": cpu.device, "device_against": cuda.device, "frames": frames_total,
                                     "exact": exact, "close": close, "min_mask_iou": iou_min,
                                     "cpu_s": round(t_cpu, 2), "against_s": round(t_cuda, 2), "per_image": rows}
        worst = max(worst, frames_total - close)
        print(f"parity {name}: {close}/{frames_total} frames within {args.tolerance} px ({exact} exact), "
              f"min mask IoU {iou_min:.3f}; scan {t_cpu:.1f} s CPU, {t_cuda:.1f} s {cuda.device}", flush=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
