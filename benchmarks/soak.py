"""Soak: many small files through ``deid run``; worker RSS and throughput over the whole run.

The corpus is made here: copies of pydicom's ``CT_small.dcm`` and ``MR_small.dcm`` (patient-named
folders, each file its own planted identity and UIDs). The run uses the header path
(``--pixels none``: scanning 100,000 images with the CPU detector would take hours here; the pixel
path's memory is what ``bench_memory.py`` measures). Every ``--interval`` seconds: records written,
RSS of the driver and of each worker. Results: ``benchmarks/results/soak-<date>.json`` with the time
series and, per tenth of the run, throughput and RSS.

    python benchmarks/soak.py --files 100000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rss_monitor import MiB, manifest_lines, run_sampled  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make_corpus(root: Path, n: int) -> None:
    """``n`` files, 200 per patient folder; written from two templates by patching values only."""
    templates = [pydicom.dcmread(get_testdata_file(s)) for s in ("CT_small.dcm", "MR_small.dcm")]
    for i in range(n):
        ds = templates[i % 2]
        ds.PatientName = f"SOAK^PATIENT{i // 200:06d}"
        ds.PatientID = f"SK{i // 200:08d}"
        ds.AccessionNumber = f"SA{i:09d}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.2001.{i // 200}"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.2002.{i // 100}"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.2003.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        folder = root / f"SOAK^PATIENT{i // 200:06d}"
        folder.mkdir(exist_ok=True)
        ds.save_as(folder / f"IM{i:07d}", enforce_file_format=False)


def _tenths(samples: list, total: int) -> list[dict]:
    """Per tenth of the records: throughput and the median worker RSS over that stretch."""
    out = []
    for k in range(10):
        lo, hi = total * k // 10, total * (k + 1) // 10
        stretch = [s for s in samples if lo <= s.extra.get("records", 0) < hi]
        if len(stretch) < 2:
            continue
        dt = stretch[-1].t - stretch[0].t
        dn = stretch[-1].extra["records"] - stretch[0].extra["records"]
        out.append({
            "tenth": k + 1,
            "files_per_s": round(dn / dt, 1) if dt > 0 else None,
            "worker_rss_mib_median": round(statistics.median(max(s.worker_rss or [0]) for s in stretch) / MiB),
            "worker_rss_mib_max": round(max(max(s.worker_rss or [0]) for s in stretch) / MiB),
            "driver_rss_mib_median": round(statistics.median(s.driver_rss for s in stretch) / MiB),
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (kept when given)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="deid-soak-"))
    inp = work / "in"
    t0 = time.perf_counter()
    if not inp.exists():
        inp.mkdir(parents=True)
        make_corpus(inp, args.files)
    made_s = time.perf_counter() - t0
    key = work / "k"
    if not key.exists():
        key.write_bytes(os.urandom(32).hex().encode())
        key.chmod(0o600)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "out.private", ignore_errors=True)
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--workers", str(args.workers),
           "--pixels", "none", "--key-file", str(key), "--quiet", "--batch-size", "64"]
    code, samples, wall = run_sampled(cmd, interval=args.interval, extra=lambda: {"records": manifest_lines(out)})
    info = json.loads((out / "run.json").read_text())
    results = {
        "files": args.files,
        "workers": args.workers,
        "corpus_s": round(made_s, 1),
        "wall_s": round(wall, 1),
        "exit": code,
        "counts": info["counts"],
        "files_per_s": info["files_per_s"],
        "tenths": _tenths(samples, args.files),
        "series": [{"t": round(s.t, 1), "records": s.extra.get("records"), "driver_rss_mib": round(s.driver_rss / MiB),
                    "worker_rss_mib": [round(x / MiB) for x in s.worker_rss]} for s in samples],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"soak-{results['date'][:10]}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "series"}, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
