"""What the glyph finder adds to the text scores, by the view kinds it runs on (an ablation).

The scan runs the glyph finder (``deid_pipeline.detect.glyphs``) on every prepared view. Here it runs
on a subset only -- ``all`` (as deid does), ``first`` (the first view of each frame), ``off`` (none but
the cine's static views), ``no-KIND[+KIND]`` or ``only-KIND[+KIND]`` (kinds: full, window, upper,
extreme, rgb) -- and each variant is scored with ``eval_text.py``'s rules on the same cases: PHI and
all-text box recall, non-text pixels changed, the boxes missed, and the glyph finder's calls and
seconds. Besides the synthetic and real sets, ``--unseen-font N`` makes the glyph finder's own case:
lone letters and short labels in fonts deid-textseg never saw (:func:`unseen_font_cases`). Results: ``benchmarks/results/glyph-ablation-<date>[-<tag>].{json,md}``.

    python benchmarks/ablate_glyphs.py --variants all first off --detector deid-textseg --synthetic 150 \\
        --seeds 7 11 --real ../shared/data/burned_in_text --controls ../shared/data/no_text_controls

deid's behaviour is untouched: the subset is chosen by wrapping ``scan.find_glyph_text`` in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # eval_text, result_names, when run as a script
import eval_text  # noqa: E402
from result_names import free_stem  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def runs_on(variant: str, kind: str, first: bool) -> bool:
    """Whether the glyph finder runs on a view of ``kind`` (``first``: the first view of its frame)."""
    if variant == "all":
        return True
    if variant == "first":
        return first
    if variant == "off":
        return False
    if variant.startswith("no-"):
        return kind not in variant[3:].split("+")
    if variant.startswith("only-"):
        return kind in variant[5:].split("+")
    raise ValueError(f"unknown variant {variant!r}")


@contextlib.contextmanager
def glyph_subset(variant: str) -> Any:
    """Within the block the scan runs the glyph finder per ``variant``; yields its call counts."""
    from deid_pipeline import scan

    views: dict[int, tuple[str, bool]] = {}  # id(view.plane), as the scan passes it -> (kind, first view of its frame)
    counts = {"run": 0, "skipped": 0, "seconds": 0.0}
    prepare, find = scan.prepare_views, scan.find_glyph_text

    def prepare_views(*a: Any, **k: Any) -> Any:
        out = prepare(*a, **k)
        seen: set[int] = set()
        for v in out:
            views[id(v.plane)] = (v.kind, v.frame not in seen)
            seen.add(v.frame)
        return out

    def find_glyph_text(image: np.ndarray, *a: Any, **k: Any) -> Any:
        meta = views.get(id(image))  # None: a cine's static view, always checked
        if meta is not None and not runs_on(variant, *meta):
            counts["skipped"] += 1
            return []
        counts["run"] += 1
        t = time.perf_counter()
        try:
            return find(image, *a, **k)
        finally:
            counts["seconds"] += time.perf_counter() - t

    scan.prepare_views, scan.find_glyph_text = prepare_views, find_glyph_text
    try:
        yield counts
    finally:
        scan.prepare_views, scan.find_glyph_text = prepare, find


#: Text for the unseen-font set: lone letters (laterality, sex, orientation marks) and short labels.
LONE = tuple("LRFMHAPSKTEOU")
TINY = ("F 34Y", "M 71Y", "12:04", "3.5MHz", "ID 88", "GAIN 50", "CH1", "D 12cm", "AP", "PA 2")


def _glyph_image(text: str, font: Any, hard: bool) -> np.ndarray:
    """``text`` drawn white on black in ``font``, cropped to its ink (uint8)."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(text)
    im = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    draw = ImageDraw.Draw(im)
    if hard:
        draw.fontmode = "1"
    draw.text((1 - left, 1 - top), text, fill=255, font=font)
    a = np.asarray(im)
    ys, xs = np.nonzero(a > 127)
    return a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _edge(rng: np.random.Generator, size: int, extent: int, share: int) -> int:
    """A start within the first or the last ``1/share`` of ``size`` (4 px from the border) for ``extent``."""
    band = max(size // share, extent + 9)
    if rng.random() < 0.5:
        return int(rng.integers(4, max(5, band - extent - 4)))
    return int(rng.integers(min(size - band, size - extent - 5), size - extent - 4))


def unseen_font_cases(n: int, seed: int) -> list[tuple[str, Any, dict[str, Any]]]:
    """``n`` of the generator's no-text CT and ultrasound frames with 2-4 lone letters (even
    cases) or short labels (odd cases) in their corners, drawn in Pillow's bundled fonts (its bitmap
    font; Aileron at 8-14 px, hard-edged or smooth), which deid-textseg was never trained on; CT text
    at the frame's maximum, at 3071 or at 32767. Every box annotated as PHI; class ``unseen-lone`` or
    ``unseen-tiny``."""
    from PIL import ImageFont

    from deid_pipeline.synth import make_case

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = "notext_ct" if (i + i // 2) % 2 == 0 else "notext_us"  # both classes on both kinds
        ds, _ = make_case(kind, seed * 100_000 + i)
        frame = eval_text.decode(ds)[0].copy()
        rows, cols = frame.shape[:2]
        lone = i % 2 == 0
        if frame.dtype == np.int16:
            value = int(rng.choice([int(frame.max()), 3071, 32767]))
        else:
            value = int(rng.choice([255, 200]))
        taken: list[tuple[int, int, int, int]] = []
        anns = []
        for _ in range(int(rng.integers(2, 5))):
            text = str(rng.choice(LONE if lone else TINY))
            if rng.random() < 0.5:
                font, hard = ImageFont.load_default_imagefont(), True
            else:
                font, hard = ImageFont.load_default(size=int(rng.integers(8, 15))), bool(rng.random() < 0.5)
            ink = _glyph_image(text, font, hard) > (127 if hard else 60)
            h, w = ink.shape
            for _try in range(50):  # a corner band, clear of the other labels
                y = _edge(rng, rows, h, 6)
                x = _edge(rng, cols, w, 5)
                if all(x + w + 6 < a or a + c + 6 < x or y + h + 6 < b or b + d + 6 < y for a, b, c, d in taken):
                    break
            else:
                continue
            taken.append((x, y, w, h))
            frame[y : y + h, x : x + w][ink] = value
            anns.append({"x": x, "y": y, "w": w, "h": h, "phi": True, "category": "lone" if lone else "tiny"})
        ds.PixelData = np.ascontiguousarray(frame).tobytes()
        out.append(("unseen-lone" if lone else "unseen-tiny", ds, {"file": f"unseen-{seed}-{i}-{kind}", "annotations": anns}))
    return out


def score(variant: str, sets: dict[str, list[tuple[str, Any, dict[str, Any]]]], detector: Any,
          run_set: Callable[..., dict[str, Any]] = eval_text.run_set) -> dict[str, Any]:
    """Every set scored with the glyph finder on ``variant``'s views."""
    out: dict[str, Any] = {"variant": variant, "sets": {}}
    with glyph_subset(variant) as counts:
        for name, cases in sets.items():
            with contextlib.redirect_stdout(io.StringIO()):
                r = run_set(cases, detector, "all-text")
            o = r["overall"]
            out["sets"][name] = {
                "phi_recall": o["phi_recall"], "text_recall": o["text_recall"], "phi_boxes": o["phi_boxes"],
                "text_boxes": o["text_boxes"], "nontext_changed_share": o["nontext_changed_share"],
                "ms_per_image": o["ms_per_image"],
                "text_recall_by_class": {k: v["text_recall"] for k, v in r["per_class"].items()},
                "missed": [[c["case"], m["frame"], m["box"], m["phi"], m["covered"]] for c in r["cases"] for m in c["missed"]],
            }
    out["glyph_calls"] = {"run": counts["run"], "skipped": counts["skipped"], "seconds": round(counts["seconds"], 3)}
    return out


def to_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Glyph finder ablation ({result['detector']}, {result['date']})", "",
             "Covered and non-text as in `eval_text.py`; missed = boxes under 95 % covered (at most 20 a case); glyph "
             "calls and seconds: the variant's total over all its sets (one thread unless torch says otherwise).", "",
             "| variant | set | PHI recall | text recall | non-text changed | missed | glyph calls | glyph s |",
             "|---|---|---|---|---|---|---|---|"]
    for v in result["variants"]:
        for name, s in v["sets"].items():
            pr = "–" if s["phi_recall"] is None else f"{s['phi_recall']:.2%} ({s['phi_boxes']})"
            tr = "–" if s["text_recall"] is None else f"{s['text_recall']:.2%} ({s['text_boxes']})"
            if name.startswith("unseen"):
                tr += " (" + ", ".join(f"{k[7:]} {x:.1%}" for k, x in s["text_recall_by_class"].items() if x is not None) + ")"
            lines.append(f"| {v['variant']} | {name} | {pr} | {tr} | {s['nontext_changed_share']:.3%} | {len(s['missed'])} "
                         f"| {v['glyph_calls']['run']} | {v['glyph_calls']['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["all", "first", "off"])
    ap.add_argument("--detector", default="deid-textseg")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--synthetic", type=int, default=60, help="synthetic cases per seed (0: none)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[7])
    ap.add_argument("--real", type=Path, help="folder of *.dcm + *.groundtruth.json")
    ap.add_argument("--controls", type=Path, help="folder of no-text *.dcm")
    ap.add_argument("--unseen-font", type=int, default=0, metavar="N",
                    help="N cases per seed of lone letters and short labels in fonts deid-textseg never saw")
    ap.add_argument("--tag", default="")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    for v in args.variants:
        runs_on(v, "full", True)  # refuse an unknown variant before any work

    from deid_pipeline.synth import iter_cases

    detector = eval_text.ready_detector(args.detector, args.device)
    sets: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {}
    if args.synthetic:
        for seed in args.seeds:
            sets[f"synthetic-{seed}"] = [(t["source"]["kind"], ds, t) for ds, t in iter_cases(args.synthetic, seed)]
    if args.unseen_font:
        for seed in args.seeds:
            sets[f"unseen-font-{seed}"] = unseen_font_cases(args.unseen_font, seed)
    if args.real:
        sets["real"] = eval_text.load_dir(args.real)
    if args.controls:
        sets["controls"] = eval_text.load_dir(args.controls)
    result: dict[str, Any] = {"detector": detector.name, "device": detector.device, "date": time.strftime("%Y-%m-%d"),
                              "synthetic_per_seed": args.synthetic, "seeds": args.seeds, "variants": []}
    for v in args.variants:
        result["variants"].append(score(v, sets, detector))
        print(f"{v}: " + json.dumps({k: (s["phi_recall"], s["text_recall"], len(s["missed"]))
                                     for k, s in result["variants"][-1]["sets"].items()}), flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = free_stem(args.results, f"glyph-ablation-{result['date']}" + (f"-{args.tag}" if args.tag else ""))
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    (args.results / f"{stem}.md").write_text(to_markdown(result))
    print(f"wrote {args.results / stem}.json and .md")
    return args.results / f"{stem}.json"


if __name__ == "__main__":
    main()
