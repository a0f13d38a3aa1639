"""Header-path speed: files/s per core and the 1 -> N worker speed-up, on generated copies.

The corpus is made here (no downloads): copies of pydicom's small test files (CT_small, MR_small,
a mix of transfer syntaxes) each with a planted, unique identity. deid runs with ``--pixels none``
so the header path alone is timed. Results: ``benchmarks/results/header-<date>.json`` and a
markdown line for ``benchmarks/README.md``. Median of ``--repeats`` runs, with min and max.

    python benchmarks/bench_header.py --files 2000 --workers 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

SOURCES = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm"]
RESULTS = Path(__file__).resolve().parent / "results"


def planted(i: int) -> dict[str, str]:
    """The identity planted in file ``i`` (name and ID always; the rest with ``extra_phi``).

    Every value carries ``i``, so a value found in an output names the file it came from.
    """
    birth = date(1925, 1, 1) + timedelta(days=(i * 37) % 20000)  # distinct for i < 20000
    return {
        "patient_name": f"BENCH^PATIENT{i:06d}",
        "patient_id": f"BP{i:08d}",
        "birth_date": birth.strftime("%Y%m%d"),
        "institution": f"BENCHHOSP{i:06d} INFIRMARY",
        "referring_physician": f"BENCHDOC^REFER{i:06d}",
        "accession": f"BACC{i:08d}",
    }


def plant_extra_phi(ds: pydicom.Dataset, i: int) -> None:
    """Birth date, institution, referring physician, accession, free text naming the patient,
    the patient ID inside a sequence item and the patient name in a private element."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    v = planted(i)
    ds.PatientBirthDate = v["birth_date"]
    ds.InstitutionName = v["institution"]
    ds.ReferringPhysicianName = v["referring_physician"]
    ds.AccessionNumber = v["accession"]
    ds.StudyDescription = f"FOLLOW-UP CT FOR PATIENT{i:06d}"
    ds.ImageComments = f"Patient {v['patient_name']} moved during the scan"
    item = Dataset()
    item.RequestedProcedureID = v["patient_id"]
    item.ScheduledProcedureStepID = f"SPS{i:06d}"
    item.RequestedProcedureDescription = "BENCH PROTOCOL"
    ds.RequestAttributesSequence = Sequence([item])
    block = ds.private_block(0x0011, "BENCH PRIVATE 1.0", create=True)
    block.add_new(0x01, "LO", v["patient_name"])


def make_corpus(root: Path, n: int, sources: list[str], *, extra_phi: bool = False) -> None:
    """``n`` files under patient-named folders, each with its own identity and UIDs.

    ``extra_phi`` also plants the fields of :func:`plant_extra_phi` (the default corpus is unchanged).
    """
    templates = [pydicom.dcmread(get_testdata_file(s)) for s in sources]
    for i in range(n):
        ds = templates[i % len(templates)].copy()
        ds.PatientName = f"BENCH^PATIENT{i:06d}"
        ds.PatientID = f"BP{i:08d}"
        if extra_phi:
            plant_extra_phi(ds, i)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1000.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1001.{i // 50}"
        folder = root / f"BENCH^PATIENT{i // 50:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"IM{i:06d}", enforce_file_format=False)


def run_deid(inp: Path, out: Path, workers: int, key: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    shutil.rmtree(out.parent / f"{out.name}.private", ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--profile", "safe-harbor",
         "--pixels", "none", "--workers", str(workers), "--key-file", str(key), "--quiet", "--batch-size", "64"],
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"deid failed: {proc.stderr[-500:]}")
    info = json.loads((out / "run.json").read_text())
    return {"wall_s": wall, "files_per_s_inner": info["files_per_s"], "files_per_s_steady": info.get("files_per_s_steady"),
            "counts": info["counts"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="deid-bench-"))
    inp = work / "input"
    if not inp.exists():
        make_corpus(inp, args.files, SOURCES)
    key = work / "bench.key"
    if not key.exists():
        key.write_bytes(os.urandom(32).hex().encode())
        key.chmod(0o600)
    results: dict = {"files": args.files, "sources": SOURCES, "runs": {}}
    for w in args.workers:
        runs = [run_deid(inp, work / f"out{w}", w, key) for _ in range(args.repeats)]
        inner = [r["files_per_s_inner"] for r in runs]
        wall = [args.files / r["wall_s"] for r in runs]
        results["runs"][str(w)] = {
            "files_per_s_median": statistics.median(inner),
            "files_per_s_min": min(inner),
            "files_per_s_max": max(inner),
            "files_per_s_wall_median": statistics.median(wall),
            "per_core_median": statistics.median(inner) / w,
            "steady_files_per_s_median": statistics.median(r["files_per_s_steady"] or 0.0 for r in runs),
        }
    ws = sorted(results["runs"], key=int)
    if len(ws) > 1:
        results["speedup"] = results["runs"][ws[-1]]["files_per_s_median"] / results["runs"][ws[0]]["files_per_s_median"]
        first = results["runs"][ws[0]]["steady_files_per_s_median"]
        results["speedup_steady"] = results["runs"][ws[-1]]["steady_files_per_s_median"] / first if first else None
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    results["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["versions"] = {"pydicom": pydicom.__version__}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"header-{results['date'][:10]}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
