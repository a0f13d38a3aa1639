"""Score burned-in-text redaction against box ground truth.

Sets: ``--synthetic N`` cases from ``deid_pipeline.synth`` (all kinds, text and no-text, or ``--kinds``;
each kind's own frame sizes, or all at ``--shape ROWSxCOLS``: small frames; ``--text-scale X``: text X times
the generator's heights, small text on big frames), ``--real DIR``
(``*.dcm`` with ``<name>.groundtruth.json`` beside them) and ``--controls DIR`` (no-text files).

Metrics, per image (frame), then per class (synthetic kind or real file) and per set:

* PHI-box recall / all-text-box recall: a ground-truth box counts as covered when at least 95 % of its
  area lies inside the redacted regions, each grown by the redaction margin (2 px, as
  ``redact.redact_frames`` does). 95 % and not 100 % because the hand-made boxes of the real set are
  "tight to the glyph pixels" give or take a pixel of anti-aliasing.
* non-text pixels changed: pixels that differ after ``redact.redact_frames`` among the pixels farther
  than 3 px from every ground-truth box, as a share of those pixels (on a no-text control: of all
  pixels). ``boxed`` is the same share for the area inside regions, changed or not (an upper bound
  that does not depend on the fill colour).
* timings: wall time of ``scan_frames`` (prepare + detect + post-process), images/s over all frames.

Writes ``benchmarks/results/eval_text_<tag>.json`` and ``.md``. Usage::

    python benchmarks/eval_text.py --synthetic 60 --real ../shared/data/burned_in_text \
        --controls ../shared/data/no_text_controls --tag cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COVER = 0.95
MARGIN = 2
NONTEXT_GAP = 3


def decode(ds: Any) -> np.ndarray:
    from deid_pipeline.errors import FileError
    from deid_pipeline.pixels import decode_frames

    try:
        return decode_frames(ds)
    except FileError:
        from pydicom.pixels import pixel_array

        arr = pixel_array(ds, raw=True)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        return arr[None] if arr.ndim == (2 if samples == 1 else 3) else arr


def redact(ds: Any, frames: np.ndarray, regions: list[list[Any]]) -> np.ndarray | None:
    try:
        from deid_pipeline.redact import redact_frames

        return redact_frames(ds, frames, regions, margin=MARGIN)
    except Exception:
        return None


def score_case(ds: Any, truth: dict[str, Any], detector: Any, mode: str) -> dict[str, Any]:
    from deid_pipeline.scan import scan_frames

    frames = decode(ds)
    n, rows, cols = frames.shape[:3]
    t0 = time.perf_counter()
    regions = scan_frames(ds, frames, detector, mode=mode)
    dt = time.perf_counter() - t0
    redacted = redact(ds, frames, regions)
    anns = truth.get("annotations", [])
    out = {"frames": n, "seconds": dt, "phi_total": 0, "phi_cov": 0, "text_total": 0, "text_cov": 0,
           "nontext_px": 0, "nontext_changed": 0, "nontext_boxed": 0, "missed": [], "regions": 0}
    for f in range(n):
        cover = np.zeros((rows, cols), bool)
        for r in regions[f]:
            cover[max(0, r.y - MARGIN) : r.y + r.h + MARGIN, max(0, r.x - MARGIN) : r.x + r.w + MARGIN] = True
        out["regions"] += len(regions[f])
        near_text = np.zeros((rows, cols), bool)
        for a in anns:
            if "frame" in a and int(a["frame"]) != f:
                continue
            x, y, w, h = a["x"], a["y"], a["w"], a["h"]
            frac = float(cover[y : y + h, x : x + w].mean()) if w > 0 and h > 0 else 1.0
            ok = frac >= COVER
            out["text_total"] += 1
            out["text_cov"] += ok
            if a.get("phi"):
                out["phi_total"] += 1
                out["phi_cov"] += ok
            if not ok:
                out["missed"].append({"frame": f, "box": [x, y, w, h], "phi": bool(a.get("phi")),
                                      "category": a.get("category", ""), "covered": round(frac, 3)})
            near_text[max(0, y - NONTEXT_GAP) : y + h + NONTEXT_GAP, max(0, x - NONTEXT_GAP) : x + w + NONTEXT_GAP] = True
        nontext = ~near_text
        out["nontext_px"] += int(nontext.sum())
        out["nontext_boxed"] += int((cover & nontext).sum())
        if redacted is not None:
            diff = redacted[f] != frames[f]
            if diff.ndim == 3:
                diff = diff.any(axis=2)
            out["nontext_changed"] += int((diff & nontext).sum())
        else:
            out["nontext_changed"] += int((cover & nontext).sum())
    out["missed"] = out["missed"][:20]
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    s: dict[str, Any] = defaultdict(float)
    for r in rows:
        for k in ("frames", "seconds", "phi_total", "phi_cov", "text_total", "text_cov", "nontext_px",
                  "nontext_changed", "nontext_boxed", "regions"):
            s[k] += r[k]
    return {
        "cases": len(rows),
        "images": int(s["frames"]),
        "phi_boxes": int(s["phi_total"]),
        "phi_recall": (s["phi_cov"] / s["phi_total"]) if s["phi_total"] else None,
        "text_boxes": int(s["text_total"]),
        "text_recall": (s["text_cov"] / s["text_total"]) if s["text_total"] else None,
        "nontext_changed_share": s["nontext_changed"] / max(s["nontext_px"], 1),
        "nontext_boxed_share": s["nontext_boxed"] / max(s["nontext_px"], 1),
        "max_case_nontext_changed_share": max((r["nontext_changed"] / max(r["nontext_px"], 1) for r in rows), default=0.0),
        "regions": int(s["regions"]),
        "seconds": round(s["seconds"], 3),
        "images_per_s": round(s["frames"] / s["seconds"], 3) if s["seconds"] else None,
        "ms_per_image": round(1000 * s["seconds"] / max(s["frames"], 1), 1),
    }


def run_set(cases: list[tuple[str, Any, dict[str, Any]]], detector: Any, mode: str) -> dict[str, Any]:
    per_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_case = []
    for cls, ds, truth in cases:
        r = score_case(ds, truth, detector, mode)
        per_class[cls].append(r)
        per_case.append({"case": truth.get("file", cls), "class": cls, **{k: v for k, v in r.items()}})
        print(f"  {truth.get('file', cls):40s} phi {r['phi_cov']}/{r['phi_total']} text {r['text_cov']}/{r['text_total']} "
              f"nontext {r['nontext_changed'] / max(r['nontext_px'], 1):.4%} {1000 * r['seconds'] / r['frames']:.0f} ms/img",
              flush=True)
    all_rows = [r for rs in per_class.values() for r in rs]
    return {"overall": summarise(all_rows), "per_class": {k: summarise(v) for k, v in sorted(per_class.items())},
            "cases": per_case}


def load_dir(path: Path) -> list[tuple[str, Any, dict[str, Any]]]:
    import pydicom

    out = []
    for p in sorted(path.glob("*.dcm")):
        gt_path = p.with_suffix(".groundtruth.json")
        truth = json.loads(gt_path.read_text()) if gt_path.is_file() else {"file": p.name, "annotations": []}
        truth.setdefault("file", p.name)
        out.append((p.stem, pydicom.dcmread(p), truth))
    return out


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:.2%}" if pct else f"{v}"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Text redaction benchmark ({result['tag']})", "",
             f"detector `{result['detector']}` sha256 `{result['weights_sha256'][:16]}…` on `{result['device']}`, "
             f"mode `{result['mode']}`, torch {result['torch']}, {result['cpu_threads']} CPU threads, {result['date']}", "",
             f"Covered = ≥{COVER:.0%} of a ground-truth box inside regions grown by {MARGIN} px; non-text = pixels "
             f"> {NONTEXT_GAP} px from every ground-truth box.", ""]
    for name, s in result["sets"].items():
        lines += [f"## {name}", "",
                  "| class | cases | images | PHI recall | text recall | non-text changed | non-text boxed | ms/image |",
                  "|---|---|---|---|---|---|---|---|"]
        for cls, c in list(s["per_class"].items()) + [("**all**", s["overall"])]:
            lines.append(f"| {cls} | {c['cases']} | {c['images']} | {fmt(c['phi_recall'], True)} ({c['phi_boxes']}) | "
                         f"{fmt(c['text_recall'], True)} ({c['text_boxes']}) | {c['nontext_changed_share']:.3%} | "
                         f"{c['nontext_boxed_share']:.3%} | {c['ms_per_image']} |")
        missed = [(c["case"], m) for c in s["cases"] for m in c["missed"]]
        if missed:
            lines += ["", "Missed boxes (first 30): " + "; ".join(
                f"{case} f{m['frame']} {m['category']}{' PHI' if m['phi'] else ''} {m['covered']:.0%}" for case, m in missed[:30])]
        lines.append("")
    return "\n".join(lines)


def ready_detector(name: str, device: str) -> Any:
    """The registry's detector ``name`` on ``device``, run once on a blank image (the warm-up is not timed)."""
    from deid_pipeline.detect import get_detector

    detector = get_detector(name, device)
    detector.detect([np.zeros((64, 64, 3), np.uint8)])
    return detector


def result_header(detector: Any, mode: str, tag: str) -> dict[str, Any]:
    """What a result file says of its run: tag, detector and weights, device, mode, versions, date."""
    import torch

    return {
        "tag": tag, "detector": detector.name, "weights_sha256": detector.weights_sha256, "device": detector.device,
        "mode": mode, "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(), "date": time.strftime("%Y-%m-%d"),
    }


def font_files(patterns: str) -> tuple[str, ...]:
    """The font files ``--fonts`` names (glob patterns, comma-separated), sorted (the same set of files gives the same cases); none: the
    Hershey fonts. SystemExit when a pattern matches no file."""
    import glob

    found: list[str] = []
    for pattern in (p for p in patterns.split(",") if p):
        files = sorted(glob.glob(pattern))
        if not files:
            raise SystemExit(f"--fonts: no file matches {pattern}")
        found += files
    return tuple(sorted(set(found)))


def main() -> None:
    ap = argparse.ArgumentParser(description="Score burned-in text redaction against ground truth.")
    ap.add_argument("--synthetic", type=int, default=0, help="number of synthetic cases (0: none)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kinds", default="", help="comma-separated synthetic kinds (default: all of synth.KINDS)")
    ap.add_argument("--shape", default="", help="ROWSxCOLS for every synthetic case (default: each kind's own sizes)")
    ap.add_argument("--text-scale", type=float, default=1.0,
                    help="synthetic text heights times this (small text on big frames: 0.15 with --shape 3328x2560)")
    ap.add_argument("--fonts", default="",
                    help="TrueType files (glob patterns, comma-separated) the synthetic text is drawn in instead of "
                         "the Hershey fonts, the cases otherwise the same (e.g. /usr/share/fonts/truetype/dejavu/*.ttf)")
    ap.add_argument("--real", type=Path, help="folder of *.dcm + *.groundtruth.json")
    ap.add_argument("--controls", type=Path, help="folder of no-text *.dcm")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--detector", default="auto", help="registry name (deid_pipeline.detect): auto (= ppocrv4-det+deid-textseg), ppocrv4-det, deid-textseg")
    ap.add_argument("--mode", default="all-text", choices=["all-text", "phi-text"])
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()

    fonts = font_files(args.fonts)
    detector = ready_detector(args.detector, args.device)
    sets: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {}
    if args.synthetic:
        from deid_pipeline.synth import KINDS, iter_cases

        kinds = tuple(k for k in args.kinds.split(",") if k) or KINDS
        over: dict[str, Any] = {"text_scale": args.text_scale, "text_fonts": fonts}
        if args.shape:
            over["shape"] = tuple(int(v) for v in args.shape.lower().split("x"))
        sets["synthetic"] = [(t["source"]["kind"], ds, t) for ds, t in iter_cases(args.synthetic, args.seed, kinds, **over)]
    if args.real:
        sets["real"] = load_dir(args.real)
    if args.controls:
        sets["controls"] = load_dir(args.controls)
    tag = args.tag or detector.device.replace(":", "")
    result: dict[str, Any] = {**result_header(detector, args.mode, tag),
                              "synthetic_seed": args.seed if args.synthetic else None,
                              "synthetic_kinds": args.kinds or "all", "synthetic_shape": args.shape or "each kind's",
                              "synthetic_text_scale": args.text_scale,
                              "synthetic_fonts": [Path(f).name for f in fonts] or "Hershey", "sets": {}}
    for name, cases in sets.items():
        print(f"[{name}] {len(cases)} cases", flush=True)
        result["sets"][name] = run_set(cases, detector, args.mode)
        print(json.dumps(result["sets"][name]["overall"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / f"eval_text_{tag}.json", json.dumps(result, indent=1, default=float))
    write_atomic(args.out / f"eval_text_{tag}.md", markdown(result))
    print(f"wrote {args.out}/eval_text_{tag}.json and .md")


if __name__ == "__main__":
    main()
