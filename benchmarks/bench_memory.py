"""Bounded memory on a big multi-frame file: peak RSS of the Dask worker against the file's size.

Writes a ~1 GB uncompressed 16-bit multi-frame image (512x512 frames; a few distinct frames cycle, as
in a still cine, so the CPU detector's time stays small; burned-in text in some frames), then runs
``deid run`` on it with one worker under ``--memory-limit``: once with ``--pixels none`` (the file
is read, de-identified and written: what the file itself costs) and once scanning every frame and
redacting the text; then ``deid verify`` of the scanned run with one worker (the detector run again on
the output and, where it still sees text, on the input). Peak RSS of the worker, sampled every 0.2 s,
goes to ``benchmarks/results/memory-<date>.json``.

    python benchmarks/bench_memory.py --frames 2000 --memory-limit 4GiB
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, str(Path(__file__).resolve().parent))
from result_names import free_stem  # noqa: E402
from rss_monitor import MiB, run_sampled  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make_big(path: Path, frames: int, rows: int = 512, cols: int = 512, distinct: int = 8) -> list[int]:
    """Write the file; returns the frames that carry text."""
    import cv2

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:rows, 0:cols]
    body = ((yy - rows / 2) ** 2 / (rows * 0.42) ** 2 + (xx - cols / 2) ** 2 / (cols * 0.36) ** 2) < 1
    patterns = []
    for d in range(distinct):
        img = np.where(body, 900 + 120 * np.sin((xx + 7 * d) / 23.0) + rng.normal(0, 25, (rows, cols)), 0)
        img = np.clip(img, 0, 4095).astype(np.uint16)
        if d in (1, 5):  # these patterns carry a burned-in name, ID and date
            mask = np.zeros((rows, cols), np.uint8)  # OpenCV draws text on 8-bit images only
            cv2.putText(mask, "ZZTEST^PATIENT  ID 99887766", (12, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 1, cv2.LINE_AA)
            cv2.putText(mask, "2031-02-03 10:11", (12, rows - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_AA)
            img[mask > 0] = (mask[mask > 0].astype(np.uint32) * 4095 // 255).astype(np.uint16)
        patterns.append(img)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for kw in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if kw in ds:
            delattr(ds, kw)
    ds.Modality = "US"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # multi-frame ultrasound
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PatientName, ds.PatientID = "ZZTEST^PATIENT", "99887766"
    buf = bytearray(frames * rows * cols * 2)
    view = np.frombuffer(buf, dtype=np.uint16).reshape(frames, rows, cols)
    for i in range(frames):
        view[i] = patterns[i % distinct]
    ds.PixelData = bytes(buf)
    del buf, view
    ds.save_as(path, enforce_file_format=True)
    return [i for i in range(frames) if i % distinct in (1, 5)]


def run(inp: Path, out: Path, key: Path, limit: str, pixels: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f"{out.name}.private", ignore_errors=True)
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--workers", "1", "--memory-limit", limit,
           "--pixels", pixels, "--key-file", str(key), "--quiet", "--device", "cpu"]
    code, samples, wall = run_sampled(cmd)
    rec = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    pixel = rec.get("pixel") or {}
    return {
        "pixels": pixels,
        "exit": code,
        "status": rec["status"],
        "reason": rec.get("reason"),
        "wall_s": round(wall, 1),
        "peak_worker_rss_mib": round(max((s.worker_rss[0] for s in samples if s.worker_rss), default=0) / MiB),
        "peak_driver_rss_mib": round(max(s.driver_rss for s in samples) / MiB),
        "frames": pixel.get("frames"),
        "frames_scanned": pixel.get("frames_scanned"),
        "frames_with_boxes": sum(1 for b in pixel.get("boxes_per_frame") or [] if b),
        "timings_ms": rec.get("timings_ms"),
    }


def verify(inp: Path, out: Path, key: Path) -> dict:
    """``deid verify`` of a run's output with one worker (rescan included): wall time and peak RSS."""
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "verify", str(out), "--against", str(inp), "--workers", "1",
           "--key-file", str(key), "--quiet", "--device", "cpu"]
    code, samples, wall = run_sampled(cmd)
    report = json.loads((out / "verify.json").read_text())
    return {
        "exit": code,
        "checked_outputs": report["checked_outputs"],
        "findings": report["counts"],
        "rescan": report["rescan"],
        "wall_s": round(wall, 1),
        "peak_worker_rss_mib": round(max((s.worker_rss[0] for s in samples if s.worker_rss), default=0) / MiB),
        "peak_driver_rss_mib": round(max(s.driver_rss for s in samples) / MiB),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="512x512 16-bit frames (2000: 1.05 GB)")
    ap.add_argument("--memory-limit", default="4GiB")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="deid-mem-"))
    inp = work / "in"
    inp.mkdir(parents=True, exist_ok=True)
    big = inp / "ZZTEST^PATIENT" / "cine.dcm"
    big.parent.mkdir(exist_ok=True)
    text_frames = make_big(big, args.frames)
    key = work / "k"
    key.write_bytes(os.urandom(32).hex().encode())
    key.chmod(0o600)
    size = big.stat().st_size
    results = {
        "file_mib": round(size / MiB),
        "frames": args.frames,
        "frame_mib": round(512 * 512 * 2 / MiB, 3),
        "frames_with_text": len(text_frames),
        "memory_limit": args.memory_limit,
        "runs": [run(inp, work / f"out-{p}", key, args.memory_limit, p) for p in ("none", "all")],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    none, scan = results["runs"]
    results["scan_minus_none_mib"] = scan["peak_worker_rss_mib"] - none["peak_worker_rss_mib"]
    results["verify"] = verify(inp, work / "out-all", key)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = free_stem(args.results, f"memory-{results['date'][:10]}", (".json",))
    (args.results / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
