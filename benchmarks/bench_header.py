"""Header-path speed: files/s per core and the 1 -> N worker speed-up, on generated copies.

The corpus is made here (no downloads): copies of pydicom's small test files (CT_small, MR_small,
a mix of transfer syntaxes) each with a planted, unique identity. deid runs with ``--pixels none``
so the header path alone is timed, from this checkout (and, with ``--baseline``, from another one,
alternately, in the same run). Right after, ``reference.py`` times a plain pydicom read-and-write loop of
the same files in as many processes as workers (what this machine allows: the issue's yardstick, and the
ceiling of the 1 -> N speed-up). Results: ``benchmarks/results/header-<date>[-<tag>].json``: median of
``--repeats`` runs with min and max, steady rate, peak RSS of the driver and of the largest worker, the
plain loop (``reference``) and deid over it (``vs_plain_loop``).

    python benchmarks/bench_header.py --files 2000 --workers 1 2 --repeats 3
    git worktree add /tmp/base <rev> && python benchmarks/bench_header.py --workers 0 1 2 --baseline /tmp/base
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
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # rss_monitor, result_names, when run as a script
from result_names import free_stem  # noqa: E402
import reference  # noqa: E402


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


def make_corpus(root: Path, n: int, sources: list[str], *, extra_phi: bool = False, per_patient: int = 1) -> None:
    """``n`` files under patient-named folders, each with its own identity and UIDs.

    ``extra_phi`` also plants the fields of :func:`plant_extra_phi` (the default corpus is unchanged).
    ``per_patient`` > 1: that many consecutive files share one patient and one study (a PACS export
    of series; the default gives every file its own patient, as a CR/DX export of one image per
    patient does, so every output needs new patient, study and series folders).
    """
    templates = [pydicom.dcmread(get_testdata_file(s)) for s in sources]
    for i in range(n):
        ds = templates[i % len(templates)].copy()
        who = i // per_patient
        ds.PatientName = f"BENCH^PATIENT{who:06d}"
        ds.PatientID = f"BP{who:08d}"
        if extra_phi:
            plant_extra_phi(ds, who)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1000.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1001.{i // 50 if per_patient == 1 else who}"
        folder = root / f"BENCH^PATIENT{i // 50:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"IM{i:06d}", enforce_file_format=False)


def run_deid(inp: Path, out: Path, workers: int, key: Path, code: Path = REPO, profile: str = "safe-harbor") -> dict:
    """One ``deid run`` from scratch of the checkout ``code`` (first on the path, and the working folder:
    ``python -m`` puts that first), its driver and workers sampled for resident memory."""
    from rss_monitor import MiB, run_sampled

    if out.exists():
        shutil.rmtree(out)
    shutil.rmtree(out.parent / f"{out.name}.private", ignore_errors=True)
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--profile", profile,
           "--pixels", "none", "--workers", str(workers), "--key-file", str(key), "--quiet", "--batch-size", "64"]
    env = {**os.environ, "PYTHONPATH": str(code)}
    _, samples, wall = run_sampled(cmd, interval=0.1, env=env, cwd=code)
    info = json.loads((out / "run.json").read_text())
    peaks = [s.worker_rss[0] for s in samples if s.worker_rss and workers]
    return {"wall_s": wall, "files_per_s_inner": info["files_per_s"], "files_per_s_steady": info.get("files_per_s_steady"),
            "counts": info["counts"], "peak_worker_rss_mib": round(max(peaks) / MiB, 1) if peaks else None,
            "peak_driver_rss_mib": round(max((s.driver_rss for s in samples), default=0) / MiB, 1)}


def summarise(runs: list[dict], files: int, workers: int) -> dict:
    inner = [r["files_per_s_inner"] for r in runs]
    return {
        "files_per_s_median": statistics.median(inner),
        "files_per_s_min": min(inner),
        "files_per_s_max": max(inner),
        "files_per_s_wall_median": statistics.median(files / r["wall_s"] for r in runs),
        "per_core_median": statistics.median(inner) / max(workers, 1),
        "steady_files_per_s_median": statistics.median(r["files_per_s_steady"] or 0.0 for r in runs),
        "peak_worker_rss_mib": max((r["peak_worker_rss_mib"] or 0.0) for r in runs) or None,
        "peak_driver_rss_mib": max(r["peak_driver_rss_mib"] for r in runs),
    }


def speedups(runs: dict[str, dict]) -> dict[str, float | None]:
    """The speed-up from the smallest Dask worker count to the largest (whole run and steady rate); the
    in-process run (``0`` workers) is not a worker count and is left out. Empty with fewer than two."""
    ws = sorted((w for w in runs if int(w) > 0), key=int)
    if len(ws) < 2:
        return {}
    first, last = runs[ws[0]], runs[ws[-1]]
    steady = first["steady_files_per_s_median"]
    return {"speedup_workers": [int(ws[0]), int(ws[-1])],
            "speedup": last["files_per_s_median"] / first["files_per_s_median"],
            "speedup_steady": last["steady_files_per_s_median"] / steady if steady else None}


def vs_plain_loop(runs: dict[str, dict], ref: dict) -> dict[str, dict[str, float | None]]:
    """deid's files/s (whole run and steady) over the plain loop's with as many processes as workers
    (the in-process run against one loop)."""
    out: dict[str, dict[str, float | None]] = {}
    for w, r in runs.items():
        plain = ref["files_per_s"].get(str(max(int(w), 1)), {}).get("median")
        if plain:
            steady = r["steady_files_per_s_median"]
            out[w] = {"whole": r["files_per_s_median"] / plain, "steady": steady / plain if steady else None}
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default a temporary one)")
    ap.add_argument("--files-per-patient", type=int, default=1,
                    help="consecutive files sharing a patient and a study (default 1: every file its own patient)")
    ap.add_argument("--profile", default="safe-harbor", help="the profile deid runs (default safe-harbor)")
    ap.add_argument("--tag", default="", help="suffix for the results file name")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder for the results file")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the plain pydicom read-and-write loop timed after deid (benchmarks/reference.py)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a checkout of another deid version (e.g. `git worktree add /tmp/base <rev>`), run "
                         "alternately with this one on the same corpus; ratios in `vs_baseline`")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="deid-bench-"))
    inp = work / "input"
    if not inp.exists():
        make_corpus(inp, args.files, SOURCES, per_patient=args.files_per_patient)
    key = work / "bench.key"
    if not key.exists():
        key.write_bytes(os.urandom(32).hex().encode())
        key.chmod(0o600)
    results: dict = {"files": args.files, "files_per_patient": args.files_per_patient, "sources": SOURCES,
                     "profile": args.profile, "runs": {}}
    codes = {"current": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    for w in args.workers:
        runs: dict[str, list[dict]] = {name: [] for name in codes}
        for i in range(args.repeats):  # with a baseline: alternated, so that a drifting machine hits both
            for name in (list(codes) if i % 2 == 0 else list(codes)[::-1]):
                runs[name].append(run_deid(inp, work / f"out{w}", w, key, codes[name], args.profile))
        for name, rs in runs.items():
            target = results["runs"] if name == "current" else results.setdefault("baseline", {"code": str(codes[name]), "runs": {}})["runs"]
            target[str(w)] = summarise(rs, args.files, w)
        if args.baseline:
            cur, base = results["runs"][str(w)], results["baseline"]["runs"][str(w)]
            results.setdefault("vs_baseline", {})[str(w)] = {
                "whole": cur["files_per_s_median"] / base["files_per_s_median"],
                "steady": cur["steady_files_per_s_median"] / base["steady_files_per_s_median"]
                if base["steady_files_per_s_median"] else None,
            }
    results.update(speedups(results["runs"]))
    if not args.no_reference:  # what this machine allows, on the same corpus, right after deid's runs
        procs = sorted({w for w in args.workers if w > 0}) or [1]
        results["reference"] = reference.reference(sorted(p for p in inp.rglob("IM*")), procs, args.repeats, work)
        results["vs_plain_loop"] = vs_plain_loop(results["runs"], results["reference"])
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    results["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["versions"] = {"pydicom": pydicom.__version__}
    args.results.mkdir(exist_ok=True)
    stem = free_stem(args.results, f"header-{results['date'][:10]}{'-' + args.tag if args.tag else ''}", (".json",))
    out = args.results / f"{stem}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return out


if __name__ == "__main__":
    main()
