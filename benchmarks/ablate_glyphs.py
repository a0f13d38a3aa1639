"""What the glyph finder adds to the text scores, by the view kinds it runs on (an ablation).

The scan runs the glyph finder (``deid_pipeline.detect.glyphs``) on every prepared view. Here it runs
on a subset only -- ``all`` (as deid does), ``first`` (the first view of each frame), ``off`` (none but
the cine's static views), ``no-KIND[+KIND]`` or ``only-KIND[+KIND]`` (kinds: full, window, upper,
extreme, rgb) -- and each variant is scored with ``eval_text.py``'s rules on the same cases: PHI and
all-text box recall, non-text pixels changed, the boxes missed, and the glyph finder's calls and
seconds. Results: ``benchmarks/results/glyph-ablation-<date>[-<tag>].{json,md}``.

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

    views: dict[int, tuple[str, bool]] = {}  # id(view.image) -> (kind, first view of its frame)
    counts = {"run": 0, "skipped": 0, "seconds": 0.0}
    prepare, find = scan.prepare_views, scan.find_glyph_text

    def prepare_views(*a: Any, **k: Any) -> Any:
        out = prepare(*a, **k)
        seen: set[int] = set()
        for v in out:
            views[id(v.image)] = (v.kind, v.frame not in seen)
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
    ap.add_argument("--tag", default="")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    for v in args.variants:
        runs_on(v, "full", True)  # refuse an unknown variant before any work

    from deid_pipeline.detect import get_detector
    from deid_pipeline.synth import iter_cases

    detector = get_detector(args.detector, args.device)
    detector.detect([np.zeros((64, 64, 3), np.uint8)])
    sets: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {}
    if args.synthetic:
        for seed in args.seeds:
            sets[f"synthetic-{seed}"] = [(t["source"]["kind"], ds, t) for ds, t in iter_cases(args.synthetic, seed)]
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
