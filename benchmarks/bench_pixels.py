"""Pixel-path speed: images/s and frames/s of ``deid run`` end to end, disk to disk, and where the time goes.

The corpora are generated here (``deid_pipeline.synth``, no downloads), each in its own input folder:

* ``ct``: 512x512 16-bit CT slices (kind ``ct``), burned-in text at 32767 or a high HU value;
* ``us``: 1024x768 RGB ultrasound frames (kind ``us_rgb``, single-frame);
* ``cine``: multi-frame RGB ultrasound cines, 60 frames of 640x480 each (kind ``us_cine``);
* ``cr``: 2048x2560 CR (kind ``cr``: 16 bits allocated, 12 stored, MONOCHROME1).

Sizes are width x height (``shape`` in synth is (rows, cols)). Every corpus is run with
``deid run IN OUT --profile safe-harbor --workers W --key-file K --quiet --device D`` for each ``W``,
``--repeats`` times; reported: the median with min-max of images/s (DICOM image files per second of
``run.json`` ``elapsed_s``) and frames/s, the wall time including process start, the start-up overhead
(wall - elapsed), per-stage seconds summed over ``manifest.jsonl`` ``timings_ms`` with their share, boxes
redacted, and the peak RSS of the largest worker process (``rss_monitor.run_sampled``); the last run of
each configuration is scored against the corpus's ground truth (PHI boxes and all text boxes filled,
``score_truth``), outside the timing.

What the pipeline's stage timings cover (``deid_pipeline/pipeline.py``):

* ``read``: read the file, sha256 of the input, parse, convert every element, checks;
* ``decode``: PHI terms, pseudonymised patient folder, pixel plan, and decoding every frame
  (for a file scanned in chunks: decoding its chunks for the scan);
* ``prepare``, ``detect``, ``decide`` (``deid_pipeline.scan.SCAN_STAGES``), each the batch's time divided
  equally between its files: the views made visible (MONAI), the networks with their DB post-process,
  and the decision on their boxes (text checks, glyph finder, cine carry, merging, fixed regions); the
  detector's loading is in none of them (nor MONAI's import, which comes with it), nor is the frame
  digest behind ``frames_scanned``;
* ``redact``: box fills; ``encode``: the redacted frames back into Pixel Data (for a file scanned in
  chunks, decoding its chunks again too);
* ``header``: the header profile;
* ``write``: the Part 10 write (temporary file, sha256, link).

Time outside the stages (Dask cluster start, detector loading, scheduling, the manifest) shows as
``outside stages`` = elapsed x workers - sum of stages (an estimate: an idle worker counts there too).

``--detector-only`` times the detector alone on prepared views of 512x512 CT slices (544x544 after
the 16-pixel border and padding to 32), in batches of 1, 8 and 32: views/s of the network plus the DB
post-process, median of ``--repeats``; on CUDA also the GPU name and ``torch.cuda.max_memory_allocated``.

``--baseline DIR`` runs another checkout of deid (``git worktree add /tmp/base <rev>``) alternately with
this one, repeat by repeat, on the same corpus: the machine's speed moves by a quarter within an hour, so
a change is judged by the ratio of the two medians taken in one run (``vs_baseline``), each side's last
outputs scored against the truth too.

Results: ``benchmarks/results/pixels-<date>.json`` and ``.md`` (the markdown is printed as well).

    python benchmarks/bench_pixels.py --corpora ct us cine cr --workers 1 2 --repeats 3
    python benchmarks/bench_pixels.py --corpora ct --ct 8 --workers 1 --repeats 1
    python benchmarks/bench_pixels.py --corpora ct --ct 320 --workers 2 --repeats 3 --baseline /tmp/base
    python benchmarks/bench_pixels.py --detector-only --batch-sizes 1 8 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # rss_monitor, result_names, when run as a script
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from result_names import free_stem  # noqa: E402
from rss_monitor import MiB, run_sampled  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("read", "decode", "prepare", "detect", "decide", "redact", "encode", "header", "write")


@dataclass(frozen=True)
class CorpusSpec:
    kind: str  # synth kind
    shape: tuple[int, int]  # (rows, cols)
    frames: int | None  # frames per file (None: the kind's single frame)
    default_n: int
    description: str


CORPORA: dict[str, CorpusSpec] = {
    "ct": CorpusSpec("ct", (512, 512), None, 64, "512x512 16-bit CT slices, burned-in text"),
    "us": CorpusSpec("us_rgb", (768, 1024), None, 32, "1024x768 RGB ultrasound frames"),
    "cine": CorpusSpec("us_cine", (480, 640), 60, 2, "RGB ultrasound cines, 60 frames of 640x480"),
    "cr": CorpusSpec("cr", (2560, 2048), None, 4, "2048x2560 CR (16 bits allocated, 12 stored, MONOCHROME1)"),
}
SEED_BASE = {"ct": 11, "us": 12, "cine": 13, "cr": 14}


# --------------------------------------------------------------------------- corpora


def make_corpus(root: Path, name: str, n: int, *, shape: tuple[int, int] | None = None,
                frames: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Write ``n`` files of corpus ``name`` into ``root`` (the deid input folder); returns its index.

    Ground truth is summarised in the index (kept outside ``root``: a JSON file in the input folder
    would be a skipped non-DICOM input). A folder already holding the same corpus is reused.
    """
    from deid_pipeline import synth

    spec = CORPORA[name]
    shape = tuple(shape or spec.shape)  # type: ignore[assignment]
    frames = frames if frames is not None else spec.frames
    seed = SEED_BASE[name] if seed is None else seed
    want = {"corpus": name, "kind": spec.kind, "files": n, "rows": shape[0], "columns": shape[1],
            "frames_per_file": frames, "seed": seed}
    index_path = root.parent / f"{root.name}.corpus.json"
    truth_path = truth_file(root)
    if index_path.is_file() and truth_path.is_file() and root.is_dir():
        old = json.loads(index_path.read_text())
        if {k: old.get(k) for k in want} == want and len(list(root.rglob("*.dcm"))) == n:
            return old
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    total_frames = boxes = size = 0
    truth: dict[str, dict[str, Any]] = {}
    for i in range(n):
        case = synth.render_case(spec.kind, seed * 100_003 + i, shape=shape, frames=frames)
        path = root / f"{name}_{i:05d}.dcm"
        digest = synth.write_case(case.dataset, case.truth, path)
        truth[digest] = {"file": path.name, "annotations": [
            {k: a[k] for k in ("x", "y", "w", "h", "phi", "category", "frame") if k in a} for a in case.truth["annotations"]]}
        total_frames += int(case.truth["number_of_frames"])
        boxes += len(case.truth["annotations"])
        size += path.stat().st_size
        del case
    index = {**want, "description": spec.description, "total_frames": total_frames,
             "truth_boxes_per_frame_set": boxes, "bytes": size,
             "generate_s": round(time.perf_counter() - t0, 2)}
    truth_path.write_text(json.dumps(truth) + "\n")
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    return index


def truth_file(root: Path) -> Path:
    """Where :func:`make_corpus` keeps the ground truth of the corpus in ``root`` (beside it: a JSON file
    inside would be an input), by input sha256."""
    return root.parent / f"{root.name}.truth.json"


def score_truth(out: Path, root: Path) -> dict[str, Any]:
    """The ground-truth boxes of the corpus in ``root`` filled in the outputs of the run in ``out``
    (``eval_variants.check_run``: one value over 95 % of a box): PHI boxes and all text boxes."""
    from eval_variants import check_run

    checked = check_run(out, json.loads(truth_file(root).read_text()))
    return {k: checked[k] for k in ("inputs", "records", "phi_boxes", "phi_filled", "text_boxes", "text_filled")} | {
        "not_written": len(checked["not_written"]), "phi_missed": checked["leaks"][:20], "text_missed": checked["text_missed"][:20]}


# --------------------------------------------------------------------------- one run


def summarize_output(out: Path) -> dict[str, Any]:
    """What one finished ``deid run`` says about itself: run.json rates and per-stage sums of the manifest."""
    info = json.loads((out / "run.json").read_text())
    stage_ms: dict[str, float] = {}
    stage_files: dict[str, int] = {}
    files = written = images = frames = frames_scanned = boxes = frames_with_boxes = scanned = 0
    statuses: dict[str, int] = {}
    reasons: dict[str, int] = {}
    with open(out / "manifest.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            files += 1
            statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
            if rec.get("reason"):
                code = rec["reason"]["code"]
                reasons[code] = reasons.get(code, 0) + 1
            written += rec["status"] == "written"
            for k, v in (rec.get("timings_ms") or {}).items():
                stage_ms[k] = stage_ms.get(k, 0.0) + float(v)
                stage_files[k] = stage_files.get(k, 0) + 1
            pixel = rec.get("pixel") or {}
            if pixel.get("scanned"):
                scanned += 1
                images += 1
                frames += int(pixel.get("frames") or 0)
                frames_scanned += int(pixel.get("frames_scanned") or 0)
                per_frame = pixel.get("boxes_per_frame") or []
                boxes += sum(len(b) for b in per_frame)
                frames_with_boxes += sum(1 for b in per_frame if b)
    elapsed = float(info["elapsed_s"])
    order = [s for s in STAGES if s in stage_ms] + sorted(k for k in stage_ms if k not in STAGES)
    stage_s = {k: stage_ms[k] / 1000 for k in order}
    total = sum(stage_s.values())
    return {
        "elapsed_s": elapsed,
        "run_json": {k: info.get(k) for k in ("elapsed_s", "images_per_s", "files_per_s", "files_per_s_steady",
                                              "images_this_session", "files_this_session", "workers", "cluster",
                                              "device", "counts")},
        "files": files,
        "written": written,
        "statuses": statuses,
        "reasons": reasons,
        "images": images,  # DICOM image files scanned
        "frames": frames,
        "frames_scanned": frames_scanned,
        "boxes_redacted": boxes,
        "frames_with_boxes": frames_with_boxes,
        "images_per_s": images / elapsed if elapsed > 0 else None,
        "frames_per_s": frames / elapsed if elapsed > 0 else None,
        "stage_s": stage_s,
        "stage_share": {k: (v / total if total > 0 else 0.0) for k, v in stage_s.items()},
        "stage_files": {k: stage_files[k] for k in order},  # records carrying each key
        "stages_total_s": total,
    }


def deid_command(inp: Path, out: Path, workers: int, key: Path, device: str,
                 batch_size: int | None = None, detector: str = "auto") -> list[str]:
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--profile", "safe-harbor",
           "--workers", str(workers), "--key-file", str(key), "--quiet", "--device", device]
    if detector != "auto":
        cmd += ["--detector", detector]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    return cmd


def _env(code: Path = REPO) -> dict[str, str]:
    """The checkout ``code`` first on ``PYTHONPATH`` (by default the code beside this benchmark)."""
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(code) + (os.pathsep + old if old else "")}


def run_deid(inp: Path, out: Path, workers: int, key: Path, device: str = "cpu", batch_size: int | None = None,
             interval: float = 0.2, detector: str = "auto", code: Path = REPO) -> dict[str, Any]:
    """One ``deid run`` from scratch of the checkout ``code`` (first on the path, and the working folder:
    ``python -m`` puts that first), sampled for RSS; its summary plus wall time and memory."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f"{out.name}.private", ignore_errors=True)
    cmd = deid_command(inp, out, workers, key, device, batch_size, detector)
    status, samples, wall = run_sampled(cmd, interval=interval, env=_env(code), cwd=code)
    res = summarize_output(out)
    res["exit"] = status
    res["wall_s"] = wall
    res["startup_s"] = wall - res["elapsed_s"]
    res["outside_stages_s"] = res["elapsed_s"] * max(1, workers) - res["stages_total_s"]
    worker_peaks = [s.worker_rss[0] for s in samples if s.worker_rss]
    res["peak_worker_rss_mib"] = round(max(worker_peaks) / MiB, 1) if worker_peaks else None
    res["workers_seen"] = max((len(s.worker_rss) for s in samples), default=0)
    res["peak_driver_rss_mib"] = round(max((s.driver_rss for s in samples), default=0) / MiB, 1)
    return res


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median (min, max) over repeats of one corpus and worker count."""
    first = runs[0]
    stages = list(first["stage_s"])
    stage_med = {k: statistics.median(r["stage_s"].get(k, 0.0) for r in runs) for k in stages}
    total = sum(stage_med.values())
    rss = [r["peak_worker_rss_mib"] for r in runs if r["peak_worker_rss_mib"] is not None]
    return {
        "repeats": len(runs),
        "files": first["files"],
        "written": first["written"],
        "statuses": first["statuses"],
        "reasons": first["reasons"],
        "images": first["images"],
        "frames": first["frames"],
        "frames_scanned": first["frames_scanned"],
        "boxes_redacted": first["boxes_redacted"],
        "frames_with_boxes": first["frames_with_boxes"],
        "images_per_s": _spread([r["images_per_s"] for r in runs]),
        "frames_per_s": _spread([r["frames_per_s"] for r in runs]),
        "run_json_images_per_s": _spread([r["run_json"]["images_per_s"] or 0.0 for r in runs]),
        "run_json_files_per_s": _spread([r["run_json"]["files_per_s"] or 0.0 for r in runs]),
        # the run's pace once the cluster is up (run.json; None for a run too short to tell)
        "steady_files_per_s": _spread(steady) if (steady := [r["run_json"].get("files_per_s_steady") for r in runs
                                                             if r["run_json"].get("files_per_s_steady")]) else None,
        "elapsed_s": _spread([r["elapsed_s"] for r in runs]),
        "wall_s": _spread([r["wall_s"] for r in runs]),
        "startup_s": _spread([r["startup_s"] for r in runs]),
        "outside_stages_s": _spread([r["outside_stages_s"] for r in runs]),
        "stage_s": stage_med,
        "stage_share": {k: (v / total if total > 0 else 0.0) for k, v in stage_med.items()},
        "stage_files": first["stage_files"],
        "stages_total_s": total,
        "peak_worker_rss_mib": max(rss) if rss else None,
        "peak_driver_rss_mib": max(r["peak_driver_rss_mib"] for r in runs),
        "device": first["run_json"].get("device"),
        "runs": runs,
    }


def vs_baseline(cur: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    """This checkout's medians over the baseline's, from two :func:`aggregate` results of one run."""
    def ratio(a: dict[str, float] | None, b: dict[str, float] | None) -> float | None:
        return a["median"] / b["median"] if a and b and b["median"] else None

    return {"images_per_s": ratio(cur["images_per_s"], base["images_per_s"]),
            "steady_files_per_s": ratio(cur.get("steady_files_per_s"), base.get("steady_files_per_s"))}


# --------------------------------------------------------------------------- detector alone


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def prepared_views(n_views: int, device: str, shape: tuple[int, int] = (512, 512), seed: int = 21) -> tuple[list[Any], dict[str, Any]]:
    """``n_views`` prepared views of CT slices of ``shape`` (as the pipeline makes them), and how long
    preparing took per frame."""
    from deid_pipeline import pixels
    from deid_pipeline.prepare import prepare_views
    from deid_pipeline.synth import render_case

    views: list[Any] = []
    frames = 0
    prep_s = 0.0
    i = 0
    warm = render_case("ct", seed * 100_003 + 99_999, shape=shape).dataset
    prepare_views(warm, pixels.decode_frames(warm), device=device)  # first call imports MONAI: not timed
    while len(views) < n_views:
        ds = render_case("ct", seed * 100_003 + i, shape=shape).dataset
        arr = pixels.decode_frames(ds)
        _sync(device)
        t0 = time.perf_counter()
        vs = prepare_views(ds, arr, device=device)
        _sync(device)
        prep_s += time.perf_counter() - t0
        views.extend(v.image for v in vs)
        frames += 1
        i += 1
    views = views[:n_views]
    return views, {"frames": frames, "view_shape": list(views[0].shape), "prepare_s": prep_s,
                   "prepare_frames_per_s": frames / prep_s if prep_s > 0 else None}


def detector_only(device: str, batch_sizes: list[int], repeats: int, n_views: int, warmup: int = 2,
                  detector: str = "auto") -> dict[str, Any]:
    """Views/s of the detector alone per batch size (network, DB post-process, both).

    ``warmup`` untimed calls per batch size first: TorchScript's profiling executor runs the first
    calls at a new input shape slowly.
    """
    import torch

    from deid_pipeline.detect import get_detector

    det = get_detector(detector, device)
    dev = str(det.device)
    views, prep = prepared_views(n_views, dev)
    from deid_pipeline.detect.dbnet import boxes_from_prob as post

    split = hasattr(det, "probability_maps") and hasattr(det, "params")
    cuda = dev.startswith("cuda")
    out: dict[str, Any] = {"detector": det.name, "device": dev, "views": n_views, "warmup_calls": warmup, "prepare": prep,
                           "torch_threads": torch.get_num_threads(), "batches": {}}
    if cuda:
        out["gpu"] = torch.cuda.get_device_name(torch.device(dev))
    original = getattr(det, "batch_size", None)
    try:
        for bs in batch_sizes:
            if original is not None:
                det.batch_size = bs  # the detector splits each call into chunks of this size
            for _ in range(warmup):
                det.detect(views[:bs])  # warm-up at this batch shape
            _sync(dev)
            if cuda:
                torch.cuda.reset_peak_memory_stats(torch.device(dev))
            total, net, pp, boxes = [], [], [], 0
            for _ in range(repeats):
                t_net = t_pp = 0.0
                boxes = 0
                _sync(dev)
                t0 = time.perf_counter()
                for s in range(0, n_views, bs):
                    chunk = views[s : s + bs]
                    if split:
                        a = time.perf_counter()
                        probs = det.probability_maps(chunk)
                        _sync(dev)
                        b = time.perf_counter()
                        found = [post(pm, im.shape[0], im.shape[1], det.params) for pm, im in zip(probs, chunk)]
                        t_net += b - a
                        t_pp += time.perf_counter() - b
                    else:
                        found = det.detect(chunk)
                    boxes += sum(len(f) for f in found)
                _sync(dev)
                total.append(time.perf_counter() - t0)
                net.append(t_net)
                pp.append(t_pp)
            row: dict[str, Any] = {
                "effective_batch": min(bs, n_views),
                "views_per_s": _spread([n_views / t for t in total]),
                "ms_per_view": statistics.median(total) * 1000 / n_views,
                "boxes": boxes,
            }
            if split:
                row["network_ms_per_view"] = statistics.median(net) * 1000 / n_views
                row["postprocess_ms_per_view"] = statistics.median(pp) * 1000 / n_views
            if cuda:
                row["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated(torch.device(dev)) / MiB, 1)
            out["batches"][str(bs)] = row
    finally:
        if original is not None:
            det.batch_size = original
    return out


# --------------------------------------------------------------------------- report


def resolve_device(requested: str) -> str:
    """``auto``: cuda when torch sees a GPU, else cpu."""
    if requested != "auto":
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        return "cpu"


def _worker_env() -> dict[str, str]:
    """What deid's local cluster puts in the environment of a worker that scans pixels
    (``batch.local_worker_environ``: Dask's ``OMP_NUM_THREADS=1``, ..., and deid's malloc settings)."""
    try:
        from deid_pipeline.batch import local_worker_environ

        return local_worker_environ(detector=True)
    except Exception:
        return {}


def machine_info(device: str) -> dict[str, Any]:
    import pydicom

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform(), "device": device, "pydicom": pydicom.__version__}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads_here"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        info["torch"] = None
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        pass
    info["worker_env"] = _worker_env()  # before 2026-12-05's eighth session: "dask_worker_env", Dask's defaults only
    info["bench_env"] = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")
                         if k in os.environ}
    return info


def _mm(s: dict[str, float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def _filled(a: dict[str, Any], kind: str) -> str:
    t = a.get("truth")
    return "–" if not t else f"{t[f'{kind}_filled']}/{t[f'{kind}_boxes']}"


def to_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Pixel path benchmark, {results['date']}",
        "",
        f"Machine: {m.get('cpus')} CPUs, {m.get('memory_gib', '?')} GiB, Python {m.get('python')}, "
        f"{m.get('platform')}, torch {m.get('torch')}, pydicom {m.get('pydicom')}, device {m.get('device')}"
        + (f" ({m['gpu']})" if m.get("gpu") else "") + ".",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Text detector: `{results.get('detector', 'auto')}`.",
        "",
    ]
    corpora = results.get("corpora") or {}
    if corpora:
        lines += ["Corpora:", ""]
        for name, c in corpora.items():
            lines.append(f"* `{name}`: {c['files']} files, {c['total_frames']} frames, {c['rows']}x{c['columns']} "
                         f"(rows x cols), kind `{c['kind']}`, {c['bytes'] / MiB:.1f} MiB")
        lines.append("")
    runs = results.get("runs") or {}
    if runs:
        lines += [
            "images = DICOM image files scanned; images/s and frames/s over `run.json` `elapsed_s`; "
            "median (min–max) of the repeats. Steady files/s: `run.json` `files_per_s_steady` (between the 10th "
            "and the 90th percentile of the records: without worker start-up and the tail). "
            "Start-up = wall (process start to exit) − elapsed. PHI / text filled: the corpus's ground-truth "
            "boxes (PHI ones, all) that the last run's outputs fill (one value over 95 % of the box), every frame.",
            "",
            "| corpus | workers | images | frames (scanned) | images/s | frames/s | steady files/s | elapsed s | wall s "
            "| start-up s | peak worker RSS MiB | boxes redacted | PHI filled | text filled |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, per_w in runs.items():
            for w, a in per_w.items():
                rss, steady = a["peak_worker_rss_mib"], a.get("steady_files_per_s")
                lines.append(
                    f"| {name} | {w} | {a['images']} | {a['frames']} ({a['frames_scanned']}) | {_mm(a['images_per_s'])} "
                    f"| {_mm(a['frames_per_s'])} | {'–' if steady is None else _mm(steady)} "
                    f"| {_mm(a['elapsed_s'], '{:.1f}')} | {_mm(a['wall_s'], '{:.1f}')} "
                    f"| {a['startup_s']['median']:.1f} | {'–' if rss is None else f'{rss:.0f}'} | {a['boxes_redacted']} "
                    f"| {_filled(a, 'phi')} | {_filled(a, 'text')} |")
        stage_keys: list[str] = []
        for per_w in runs.values():
            for a in per_w.values():
                stage_keys += [k for k in a["stage_s"] if k not in stage_keys]
        lines += [
            "",
            "Seconds per stage summed over the manifest's `timings_ms` (worker time; median of the repeats) and share "
            "of the stages' total; `outside` = elapsed × workers − stages (cluster start, detector load, scheduling, "
            "idle workers).",
            "",
            "| corpus | workers | " + " | ".join(stage_keys) + " | stages total s | outside s |",
            "|---|---|" + "---|" * len(stage_keys) + "---|---|",
        ]
        for name, per_w in runs.items():
            for w, a in per_w.items():
                cells = []
                for k in stage_keys:
                    if k in a["stage_s"]:
                        cells.append(f"{a['stage_s'][k]:.2f} ({100 * a['stage_share'][k]:.0f} %)")
                    else:
                        cells.append("–")
                lines.append(f"| {name} | {w} | " + " | ".join(cells)
                             + f" | {a['stages_total_s']:.2f} | {a['outside_stages_s']['median']:.1f} |")
        base = results.get("baseline")
        if base:
            lines += [
                "",
                f"Against the baseline `{base['code']}`, run alternately with this checkout (ratio: this median "
                "over the baseline's, > 1: this is faster):",
                "",
                "| corpus | workers | images/s | baseline images/s | ratio | steady files/s | baseline steady | ratio "
                "| PHI filled | baseline PHI filled | text filled | baseline text filled |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            def fmt(x: float | None) -> str:
                return "–" if x is None else f"{x:.2f}x"

            def steady(x: dict[str, float] | None) -> str:
                return "–" if x is None else _mm(x)

            for name, per_w in runs.items():
                for w, a in per_w.items():
                    b = base["runs"][name][w]
                    r = results["vs_baseline"][name][w]
                    lines.append(
                        f"| {name} | {w} | {_mm(a['images_per_s'])} | {_mm(b['images_per_s'])} | {fmt(r['images_per_s'])} "
                        f"| {steady(a.get('steady_files_per_s'))} | {steady(b.get('steady_files_per_s'))} "
                        f"| {fmt(r['steady_files_per_s'])} | {_filled(a, 'phi')} | {_filled(b, 'phi')} "
                        f"| {_filled(a, 'text')} | {_filled(b, 'text')} |")
        odd = [(n, w, a) for n, per_w in runs.items() for w, a in per_w.items()
               if a["written"] != a["files"] or a["images"] != a["files"]]
        if odd:
            lines += ["", "Not every file was written and scanned:"]
            for n, w, a in odd:
                lines.append(f"* {n}, {w} workers: {a['statuses']} {a['reasons']}")
    det = results.get("detector_only")
    if det:
        prep = det["prepare"]
        lines += [
            "",
            f"Detector alone ({det['detector']} on {det['device']}" + (f", {det['gpu']}" if det.get("gpu") else "")
            + f", torch threads {det['torch_threads']}"
            + (f", environment {m['bench_env']}" if m.get("bench_env") else "")
            + f"): {det['views']} prepared views of 512x512 CT slices, view "
            f"{prep['view_shape'][0]}x{prep['view_shape'][1]}; preparing the views: "
            f"{prep['prepare_frames_per_s']:.1f} frames/s ({prep['frames']} frames).",
            "",
            "| batch | views/s | ms/view | network ms/view | post-process ms/view | GPU max allocated MiB |",
            "|---|---|---|---|---|---|",
        ]
        for bs, row in det["batches"].items():
            lines.append(f"| {bs} | {_mm(row['views_per_s'])} | {row['ms_per_view']:.1f} "
                         f"| {row.get('network_ms_per_view', float('nan')):.1f} "
                         f"| {row.get('postprocess_ms_per_view', float('nan')):.1f} "
                         f"| {row.get('max_memory_allocated_mib', '–')} |")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], results_dir: Path = RESULTS) -> tuple[Path, Path, str]:
    """``pixels-<date>.{json,md}``; a ``--detector-only`` run writes ``pixels-detector-<date>.*`` (no
    end-to-end table of the same day is overwritten); an existing name gets ``-2``, ``-3``, ..."""
    results_dir.mkdir(parents=True, exist_ok=True)
    what = "pixels-detector" if results.get("detector_only") and not results.get("runs") else "pixels"
    det = str(results.get("detector", "auto"))
    stem = f"{what}-{results['date'][:10]}" + ("" if det == "auto" else f"-{det}")
    stem = free_stem(results_dir, stem)
    js, md = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
    js.write_text(json.dumps(results, indent=2) + "\n")
    text = to_markdown(results)
    md.write_text(text)
    return js, md, text


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    for name, spec in CORPORA.items():
        ap.add_argument(f"--{name}", type=int, default=spec.default_n, metavar="N", help=f"files: {spec.description}")
    ap.add_argument("--cine-frames", type=int, default=CORPORA["cine"].frames, help="frames per cine")
    ap.add_argument("--batch-size", type=int, default=None, help="deid --batch-size (default: deid's own)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: cuda when torch sees a GPU, else cpu")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default a temporary one, removed after)")
    ap.add_argument("--interval", type=float, default=0.2, help="RSS sampling interval, seconds")
    ap.add_argument("--detector", default="auto", help="deid --detector (registry name; auto: ppocrv4-det+deid-textseg)")
    ap.add_argument("--detector-only", action="store_true", help="time the detector alone, no deid runs")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="--detector-only batch sizes")
    ap.add_argument("--views", type=int, default=32, help="--detector-only: prepared views timed per batch size")
    ap.add_argument("--threads", type=int, default=None,
                    help="--detector-only: torch threads (default torch's; a Dask worker of deid runs with 1)")
    ap.add_argument("--worker-env", action="store_true",
                    help="--detector-only: run under the environment a worker of deid's local cluster gets when "
                         "it scans pixels (batch.local_worker_environ: OMP_NUM_THREADS=1, deid's malloc thresholds, "
                         "...), OpenCV's threads sized as such a worker sizes them")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a checkout of another deid version (e.g. `git worktree add /tmp/base <rev>`), run "
                         "alternately with this one on the same corpus; ratios in `vs_baseline`")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.detector_only and args.worker_env and not os.environ.get("_BENCH_PIXELS_WORKER_ENV"):
        # thread pools and malloc read these at start-up: re-run this process under them
        env = {**_env(), **_worker_env(), "_BENCH_PIXELS_WORKER_ENV": "1"}
        argv_all = [sys.executable, str(Path(__file__).resolve())] + (argv if argv is not None else sys.argv[1:])
        os.execve(sys.executable, argv_all, env)

    device = resolve_device(args.device)
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_pixels.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "machine": machine_info(device),
        "detector": args.detector,
    }
    if args.detector_only:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.worker_env:  # OpenCV's pool as a worker of a cluster with one worker per core sizes it
            from deid_pipeline.batch import limit_opencv_threads

            results["machine"]["opencv_threads"] = limit_opencv_threads()
        results["detector_only"] = detector_only(device, args.batch_sizes, args.repeats, args.views, detector=args.detector)
    else:
        work = (args.work or Path(tempfile.mkdtemp(prefix="deid-bench-pixels-"))).resolve()  # runs start elsewhere
        work.mkdir(parents=True, exist_ok=True)
        key = work / "bench.key"
        if not key.exists():
            key.write_bytes(os.urandom(32).hex().encode())
        key.chmod(0o600)
        results["corpora"] = {}
        results["runs"] = {}
        codes = {"current": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
        suffix = {"current": "", "baseline": "-baseline"}
        if args.baseline:
            results["baseline"] = {"code": str(codes["baseline"]), "runs": {}}
            results["vs_baseline"] = {}
        try:
            for name in args.corpora:
                frames = args.cine_frames if name == "cine" else None
                inp = work / f"in-{name}"
                results["corpora"][name] = make_corpus(inp, name, getattr(args, name), frames=frames)
                print(f"[bench_pixels] corpus {name}: {results['corpora'][name]['files']} files, "
                      f"{results['corpora'][name]['total_frames']} frames", file=sys.stderr, flush=True)
                results["runs"][name] = {}
                for w in args.workers:
                    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in codes}
                    for r in range(args.repeats):  # with a baseline: alternated, a drifting machine hits both
                        for side in (list(codes) if r % 2 == 0 else list(codes)[::-1]):
                            res = run_deid(inp, work / f"out-{name}-{w}{suffix[side]}", w, key, device, args.batch_size,
                                           args.interval, args.detector, codes[side])
                            print(f"[bench_pixels] {name} workers={w} run {r + 1}{suffix[side]}: {res['images_per_s']:.2f} "
                                  f"images/s, {res['frames_per_s']:.2f} frames/s, elapsed {res['elapsed_s']:.1f} s, "
                                  f"wall {res['wall_s']:.1f} s", file=sys.stderr, flush=True)
                            runs[side].append(res)
                    for side, rs in runs.items():
                        target = results["runs"] if side == "current" else results["baseline"]["runs"]
                        target.setdefault(name, {})[str(w)] = aggregate(rs)
                        # the last run's outputs (each run starts from an empty folder), scored outside the timing
                        target[name][str(w)]["truth"] = score_truth(work / f"out-{name}-{w}{suffix[side]}", inp)
                    if args.baseline:
                        results["vs_baseline"].setdefault(name, {})[str(w)] = vs_baseline(
                            results["runs"][name][str(w)], results["baseline"]["runs"][name][str(w)])
                results["command_deid"] = " ".join(
                    ["python"] + deid_command(Path("IN"), Path("OUT"), 0, Path("K"), device, args.batch_size, args.detector)[1:]
                ).replace("--workers 0", "--workers W")
        finally:
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
    js, md, text = write_results(results, args.results)
    print(text)
    print(f"[bench_pixels] wrote {js} and {md}", file=sys.stderr)


if __name__ == "__main__":
    main()
