"""Smoke tests for the benchmark scripts: the parts that need no network and no peer venvs."""

from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_header  # noqa: E402
import bench_peers  # noqa: E402


def test_bench_header_default_corpus_unchanged(tmp_path: Path) -> None:
    """``extra_phi`` is opt-in: the default corpus carries only name, ID and UIDs."""
    from pydicom.data import get_testdata_file

    bench_header.make_corpus(tmp_path, 2, bench_header.SOURCES)
    for i in range(2):
        ds = pydicom.dcmread(tmp_path / "BENCH^PATIENT000000" / f"IM{i:06d}")
        template = pydicom.dcmread(get_testdata_file(bench_header.SOURCES[i]))
        assert str(ds.PatientName) == f"BENCH^PATIENT{i:06d}" and ds.PatientID == f"BP{i:08d}"
        assert [e.tag for e in ds] == [e.tag for e in template]
        changed = {e.keyword for e in ds if e.value != template[e.tag].value}
        assert changed <= {"PatientName", "PatientID", "SOPInstanceUID", "StudyInstanceUID"}


def test_bench_peers_smoke(tmp_path: Path) -> None:
    # Header corpus: the leak counter finds every planted value in every input ...
    index = bench_peers.make_header_corpus(tmp_path / "h", 5)
    inp = Path(index["input"])
    identity = {f["path"]: f["path"] for f in index["files"]}
    leaks = bench_peers.count_leaks(index, inp, identity)
    assert leaks["output_files"] == 5 and leaks["files_with_leaks"] == 5 and leaks["unmapped_outputs"] == 0
    assert leaks["leaks_per_field"] == {f: 5 for f in bench_peers.header_forms(0)}
    locs = leaks["leak_locations"]
    for where in ("patient_name: PatientName", "patient_name: ImageComments", "patient_name: StudyDescription",
                  "patient_id: PatientID", "patient_id: RequestAttributesSequence>RequestedProcedureID",
                  "birth_date: PatientBirthDate", "institution: InstitutionName",
                  "referring_physician: ReferringPhysicianName", "accession: AccessionNumber"):
        assert locs.get(where) == 5, where
    assert sum(v for k, v in locs.items() if k.startswith("patient_name: private")) == 5
    # ... also another file's identity (planted tokens), and a value in the output path
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.dcm").write_bytes(b"\0\0 bench^patient000003 \0")
    (other / "BP00000004").write_bytes(b"\0")
    found = bench_peers.count_leaks(index, other, {})
    assert found["files_with_leaks"] == 2 and found["leaks_per_field"]["patient_name"] == 1
    assert found["leaks_per_field"]["patient_id"] == 1
    # a token or a birth date inside a hex digest of a sidecar is not a leak
    digest = b'{"sha256": "9bbacc20749445' + bench_header.planted(1)["birth_date"].encode() + b'ab"}'
    assert bench_peers.find_leaks(digest, "", {"birth_date": [bench_header.planted(1)["birth_date"]]},
                                  bench_peers.HEADER_TOKENS, bounded=True) == set()

    # ... and none in deid's output (mapped to inputs through the manifest).
    key = tmp_path / "k"
    key.write_bytes(b"bench-smoke-key-0123456789abcdef0123")
    key.chmod(0o600)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--profile",
                           "safe-harbor", "--pixels", "none", "--workers", "0", "--key-file", str(key), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    clean = bench_peers.count_leaks(index, out)
    assert clean["output_files"] == 5 and clean["unmapped_outputs"] == 0
    assert clean["files_with_leaks"] == 0, clean["leak_locations"]
    assert not clean["sidecars_with_leaks"]

    # Pixel corpus: untouched text scores 0, a box fill (any colour, the text's own included) scores 1.
    pindex = bench_peers.make_pixel_corpus(tmp_path / "p", 1)
    entry = pindex["files"][0]
    src = Path(entry["path"])
    ds = pydicom.dcmread(src)
    assert (ds.Rows, ds.Columns, ds.BitsAllocated) == (512, 512, 16)
    pinp = Path(pindex["input"])
    same = bench_peers.score_text(pindex, pinp, {entry["path"]: entry["path"]})
    assert same["boxes"] > 0 and same["text_recall"] == 0 and same["nontext_changed_share"] == 0
    assert bench_peers.count_leaks(pindex, pinp, {entry["path"]: entry["path"]})["files_with_leaks"] == 1
    boxes = json.loads(Path(entry["truth"]).read_text())["annotations"]
    text_value = int(ds.pixel_array.max())
    for fill in (-1000, text_value):
        arr = ds.pixel_array.copy()
        for b in boxes:
            arr[b["y"]:b["y"] + b["h"], b["x"]:b["x"] + b["w"]] = fill
        red = tmp_path / f"red{fill}"
        red.mkdir()
        ds2 = pydicom.dcmread(src)
        ds2.PixelData = np.ascontiguousarray(arr).tobytes()
        ds2.save_as(red / "x.dcm")
        scored = bench_peers.score_text(pindex, red, {entry["path"]: str(red / "x.dcm")})
        assert scored["text_recall"] == 1.0 and scored["phi_recall"] == 1.0, (fill, scored)
        assert scored["nontext_changed_share"] < 0.01


@pytest.mark.slow  # ~6 s: the other bench smokes stay in the default suite
def test_bench_pixels_smoke(tmp_path: Path) -> None:
    """A tiny CT corpus through a real ``deid run --workers 0``; the stage sums, counts and report."""
    import bench_pixels

    inp = tmp_path / "in-ct"
    index = bench_pixels.make_corpus(inp, "ct", 2, shape=(128, 128))
    assert index["files"] == 2 and index["total_frames"] == 2 and (index["rows"], index["columns"]) == (128, 128)
    assert sorted(p.name for p in inp.iterdir()) == ["ct_00000.dcm", "ct_00001.dcm"]  # nothing else in INPUT
    assert bench_pixels.make_corpus(inp, "ct", 2, shape=(128, 128)) == index  # reused, not rewritten
    key = tmp_path / "k"
    key.write_bytes(b"bench-smoke-key-0123456789abcdef0123")
    key.chmod(0o600)

    res = bench_pixels.run_deid(inp, tmp_path / "out", 0, key, "cpu")
    assert res["exit"] == 0 and res["written"] == 2, res["statuses"]
    assert set(res["stage_s"]) == set(bench_pixels.STAGES)  # read decode prepare detect decide redact encode header write
    assert res["stage_files"] == {s: 2 for s in bench_pixels.STAGES}
    assert abs(sum(res["stage_share"].values()) - 1) < 1e-9
    assert res["images"] == 2 and res["frames"] == 2 and res["frames_scanned"] == 2
    assert res["run_json"]["images_this_session"] == res["frames"]  # run.json's "images" are frames
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert res["boxes_redacted"] == sum(len(b) for r in manifest for b in r["pixel"]["boxes_per_frame"])
    assert res["wall_s"] >= res["elapsed_s"] > 0 and res["startup_s"] == res["wall_s"] - res["elapsed_s"]

    from deid_pipeline.batch import WORKER_MALLOC_ENV

    worker_env = bench_pixels.machine_info("cpu")["worker_env"]  # what --worker-env runs under, as recorded
    assert worker_env["OMP_NUM_THREADS"] == "1" and WORKER_MALLOC_ENV.items() <= worker_env.items()

    truth = json.loads(bench_pixels.truth_file(inp).read_text())
    assert sorted(t["file"] for t in truth.values()) == ["ct_00000.dcm", "ct_00001.dcm"]
    scored = bench_pixels.score_truth(tmp_path / "out", inp)
    n_text = sum(len(t["annotations"]) for t in truth.values())
    n_phi = sum(a["phi"] for t in truth.values() for a in t["annotations"])
    assert (scored["records"], scored["text_boxes"], scored["phi_boxes"]) == (2, n_text, n_phi) and n_phi > 0
    assert scored["phi_filled"] == n_phi - len(scored["phi_missed"])
    assert scored["text_filled"] == n_text - len(scored["text_missed"])
    out_files = sorted((tmp_path / "out").rglob("*.dcm"))
    for f in out_files:  # an output with its redactions undone: its boxes count as missed
        shutil.copy(inp / "ct_00000.dcm", f)
    assert bench_pixels.score_truth(tmp_path / "out", inp)["text_filled"] < scored["text_filled"]

    agg = bench_pixels.aggregate([res])
    agg["truth"] = scored
    assert agg["images_per_s"]["median"] == res["images_per_s"] and agg["frames"] == 2
    results = {"date": "2000-01-01T00:00:00+00:00", "command": "smoke", "machine": bench_pixels.machine_info("cpu"),
               "corpora": {"ct": index}, "runs": {"ct": {"0": agg}}}
    js, md, text = bench_pixels.write_results(results, tmp_path / "results")
    assert js.name == "pixels-2000-01-01.json" and json.loads(js.read_text())["runs"]["ct"]["0"]["images"] == 2
    row = next(line for line in text.splitlines() if line.startswith("| ct | 0 | 2 | 2 (2) |"))
    assert row.count("|") == 15 and agg["steady_files_per_s"] is None  # 2 files: too short to tell
    assert row.endswith(f"| {scored['phi_filled']}/{n_phi} | {scored['text_filled']}/{n_text} |")
    steady = {**res, "run_json": {**res["run_json"], "files_per_s_steady": 5.0}}
    assert bench_pixels.aggregate([steady, res, steady])["steady_files_per_s"] == {"median": 5.0, "min": 5.0, "max": 5.0}
    assert all(s in text for s in bench_pixels.STAGES) and md.read_text() == text
    js2, _, text2 = bench_pixels.write_results({**results, "detector": "deid-textseg"}, tmp_path / "results")
    assert js2.name == "pixels-2000-01-01-deid-textseg.json" and "Text detector: `deid-textseg`" in text2

    # a baseline beside it: its own columns and the ratio of the medians (here the run against itself)
    with_base = {**results, "baseline": {"code": "/base", "runs": {"ct": {"0": agg}}},
                 "vs_baseline": {"ct": {"0": bench_pixels.vs_baseline(agg, agg)}}}
    text_b = bench_pixels.to_markdown(with_base)
    assert "Against the baseline `/base`" in text_b and "Against the baseline" not in text
    row_b = next(line for line in text_b.splitlines() if line.startswith("| ct | 0 |") and "1.00x" in line)
    assert row_b.count("|") == 13 and row_b.endswith(f"| {scored['text_filled']}/{n_text} | {scored['text_filled']}/{n_text} |")

    # --detector-only: one prepared 512x512 view, batch 1, one timed call (CPU; the CUDA branch is guarded)
    det = bench_pixels.detector_only("cpu", [1], repeats=1, n_views=1, warmup=1)
    assert det["prepare"]["view_shape"] == [544, 544, 3] and det["batches"]["1"]["views_per_s"]["median"] > 0
    assert "max_memory_allocated_mib" not in det["batches"]["1"] and "gpu" not in det
    assert "Detector alone" in bench_pixels.to_markdown({**results, "runs": {}, "detector_only": det})


def test_bench_pixels_ratio_to_a_baseline() -> None:
    import bench_pixels

    cur = {"images_per_s": {"median": 21.0}, "steady_files_per_s": {"median": 25.0}}
    base = {"images_per_s": {"median": 20.0}, "steady_files_per_s": None}  # a run too short for a steady rate
    assert bench_pixels.vs_baseline(cur, base) == {"images_per_s": 1.05, "steady_files_per_s": None}
    assert bench_pixels.vs_baseline(base, cur) == {"images_per_s": 20.0 / 21.0, "steady_files_per_s": None}


@pytest.mark.slow  # four deid runs with the detector (~20 s)
def test_bench_pixels_runs_the_baseline_checkout_alternately(tmp_path: Path) -> None:
    """``--baseline DIR`` runs DIR's deid (a copy here, marked so that its runs show), this checkout's on
    the other side, each scored; from a working folder that is neither."""
    import bench_pixels

    base = tmp_path / "base"
    for part in ("deid_pipeline", "configs", "models"):
        shutil.copytree(REPO / part, base / part, ignore=shutil.ignore_patterns("__pycache__"))
    marker = tmp_path / "baseline-ran"
    main_py = base / "deid_pipeline" / "cli" / "__main__.py"
    main_py.write_text(f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n" + main_py.read_text())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        bench_pixels.main(["--corpora", "ct", "--ct", "1", "--workers", "0", "--repeats", "2", "--detector",
                           "deid-textseg", "--work", str(tmp_path / "w"), "--results", str(tmp_path / "r"),
                           "--baseline", str(base)])
    finally:
        os.chdir(cwd)
    assert marker.exists()
    [js] = (tmp_path / "r").glob("*.json")
    res = json.loads(js.read_text())
    cur, old = res["runs"]["ct"]["0"], res["baseline"]["runs"]["ct"]["0"]
    assert res["baseline"]["code"] == str(base) and cur["repeats"] == old["repeats"] == 2
    assert cur["truth"]["phi_filled"] == old["truth"]["phi_filled"] == cur["truth"]["phi_boxes"] > 0
    assert res["vs_baseline"]["ct"]["0"]["images_per_s"] == cur["images_per_s"]["median"] / old["images_per_s"]["median"]
    marker.unlink()
    bench_pixels.main(["--corpora", "ct", "--ct", "1", "--workers", "0", "--repeats", "1", "--detector",
                       "deid-textseg", "--work", str(tmp_path / "w"), "--results", str(tmp_path / "r")])
    assert not marker.exists()  # without a baseline, only this checkout runs


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
def test_bench_header_smoke(tmp_path: Path) -> None:
    """``bench_header.py`` end to end on six files (in process), patients of three files each, under the
    profile it is given."""
    out = bench_header.main(["--files", "6", "--workers", "0", "--repeats", "2", "--files-per-patient", "3",
                             "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results"), "--tag", "smoke",
                             "--baseline", str(REPO), "--profile", "basic+clean-descriptors"])
    assert out.parent == tmp_path / "results" and out.name.endswith("-smoke.json")
    res = json.loads(out.read_text())
    assert res["files"] == 6 and res["files_per_patient"] == 3 and res["profile"] == "basic+clean-descriptors"
    profiles = {json.loads((tmp_path / "work" / "out0" / "run.json").read_text())["profile"]["name"]}
    assert profiles == {"basic+clean-descriptors"}
    run = res["runs"]["0"]
    assert run["files_per_s_median"] > 0 and run["peak_driver_rss_mib"] > 0 and run["peak_worker_rss_mib"] is None
    assert res["baseline"]["code"] == str(REPO) and res["baseline"]["runs"]["0"]["files_per_s_median"] > 0
    assert res["vs_baseline"]["0"]["whole"] > 0
    # the plain read-and-write loop timed after it, on the same six files, and deid over it
    ref = res["reference"]
    assert ref["files"] == 6 and ref["repeats"] == 2 and ref["files_per_s"]["1"]["median"] > 0
    assert res["vs_plain_loop"]["0"]["whole"] == run["files_per_s_median"] / ref["files_per_s"]["1"]["median"]
    folders = sorted(p.name for p in (tmp_path / "work" / "input").iterdir())
    assert folders == ["BENCH^PATIENT000000"]  # the folder groups 50 files; the identities inside are per patient
    ids = {pydicom.dcmread(p).PatientID for p in (tmp_path / "work" / "input").rglob("IM*")}
    assert ids == {"BP00000000", "BP00000001"}


def test_bench_peers_ratios_and_table() -> None:
    """deid's rate and CPU time against a peer's: files/s, steady and per-CPU-second ratios, one table row each."""
    def run(fps: float, cpu_s: float, files: int = 100, steady: float | None = None, rss: tuple = (50.0, None, None)) -> dict:
        return {"files": files, "ok": files, "errors": 0, "files_per_s": fps, "files_per_s_wall": fps / 2,
                "cpu_s": cpu_s, **({"files_per_s_steady": steady} if steady else {}),
                "peak_rss_mib": rss[0], "peak_driver_rss_mib": rss[1], "peak_worker_rss_mib": rss[2]}

    ours1 = bench_peers.summarise_runs([run(200.0, 1.0, steady=300.0, rss=(130.0, 120.0, 130.0)),
                                        run(220.0, 1.2, steady=320.0, rss=(140.0, 125.0, 140.0))], 1)
    assert (ours1["peak_rss_mib"], ours1["peak_driver_rss_mib"], ours1["peak_worker_rss_mib"]) == (140.0, 125.0, 140.0)
    ours2 = bench_peers.summarise_runs([run(380.0, 1.3), run(400.0, 1.1)], 2)
    peer = bench_peers.summarise_runs([run(100.0, 2.2)], 1)
    rows = [{"tool": "deid", "key": bench_peers.OURS, "corpus": "header", "workers": 1, "speed": ours1},
            {"tool": "deid", "key": bench_peers.OURS, "corpus": "header", "workers": 2, "speed": ours2},
            {"tool": "peer", "key": "dicognito", "corpus": "header", "workers": 1, "speed": peer}]
    bench_peers.add_ratios(rows)
    assert rows[1]["speedup"] == 390.0 / 210.0 and "ratio" not in rows[1]
    assert rows[2]["ratio"] == 210.0 / 100.0 and rows[2]["ratio_steady"] == 310.0 / 100.0
    assert abs(rows[2]["ratio_cpu"] - 0.022 / 0.011) < 1e-12  # the peer spends twice deid's CPU per file
    result = {"date": "2000-01-01", "repeats": 2, "deid_batch_size": None, "rows": rows,
              "machine": {"cpus": 2, "python": "3", "platform": "x", "loadavg_before": [0], "loadavg_after": [0]},
              "corpora": {"header": {"n": 100, "sources": ["CT_small.dcm"]}, "pixel": {"n": 0}}}
    table = [line for line in bench_peers.markdown(result).splitlines() if line.startswith("| deid |") or line.startswith("| peer |")]
    assert len(table) == 3 and all(line.count("|") == 16 for line in table)
    assert "per CPU-s: 2.00x" in table[2] and "| 11.00 | 140 (worker 140, driver 125) |" in table[0]
    assert "| 22.00 | 50 |" in table[2]  # a peer: its one process
    # the plain loop is a yardstick: a ratio like a peer's, no leak columns
    rows.append({"tool": "plain", "key": "plain", "corpus": "header", "workers": 1, "yardstick": True,
                 "speed": bench_peers.summarise_runs([run(300.0, 0.5)], 1)})
    bench_peers.add_ratios(rows)
    line = next(x for x in bench_peers.markdown(result).splitlines() if x.startswith("| plain |"))
    assert line.count("|") == 16 and "| 0.70x (" in line and "| – | not a de-identifier |" in line
    # deid in one process (--in-process): the peers' rows get its ratio too; its own row, its ratio to 1 worker
    alone = bench_peers.summarise_runs([run(450.0, 0.25), run(430.0, 0.27)], 0)
    assert alone["cores"] == 1 and alone["files_per_s_per_core"] == 440.0
    rows.append({"tool": "deid", "key": bench_peers.OURS, "corpus": "header", "workers": 0, "speed": alone})
    bench_peers.add_ratios(rows)
    assert rows[2]["in_process"] == 440.0 / 100.0 and abs(rows[2]["in_process_cpu"] - 0.022 / 0.0026) < 1e-9
    assert rows[-1]["vs_one_worker"] == 440.0 / 210.0 and "ratio" not in rows[-1] and "speedup" not in rows[-1]
    lines = bench_peers.markdown(result).splitlines()
    assert "deid in-process: 4.40x (4.40x), per CPU-s 8.46x" in next(x for x in lines if x.startswith("| peer |"))
    assert "in-process / 1 worker 2.10x" in next(x for x in lines if x.startswith("| deid | – | header | 0 |"))


def test_run_measured_reports_the_child_s_peak_memory_and_cpu(tmp_path: Path) -> None:
    """A child that holds ~200 MiB for a while and spins: its peak RSS (sampled) and CPU (wait4) come back,
    its output too; the benchmark's own memory does not count."""
    code = ("import time\nb = b'x' * (200 * 2**20)\nt = time.process_time()\n"
            "while time.process_time() - t < 0.5: pass\nprint('done')")
    res = bench_peers.run_measured([sys.executable, "-c", code], dict(os.environ), tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "done"
    assert 200 <= res.peak_mib < 300 and res.cpu >= 0.5 and res.wall >= 0.5
    assert res.driver_mib is None and res.worker_mib is None  # apart only when asked
    sampled = bench_peers.run_measured([sys.executable, "-c", code], dict(os.environ), tmp_path, sample_workers=True)
    assert sampled.driver_mib is not None and 200 <= sampled.driver_mib < 300
    failed = bench_peers.run_measured([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), tmp_path)
    assert failed.returncode == 3


def test_run_measured_counts_what_the_child_left_running(tmp_path: Path) -> None:
    """A child that starts a process, waits until it is sampled, and exits without waiting for it (as deid's
    driver leaves multiprocessing's fork server, which reaped the workers): that process's CPU counts."""
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"
    code = ("import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', {spin!r}])\n"
            "time.sleep(0.4)\n")
    res = bench_peers.run_measured([sys.executable, "-c", code], dict(os.environ), tmp_path)
    assert res.returncode == 0 and res.cpu >= 0.6, res.cpu


def test_plain_loop_reference_reads_and_writes_every_file(tmp_path: Path) -> None:
    """The yardstick's loops split the files between them and write each one (output removed after)."""
    import reference

    bench_header.make_corpus(tmp_path / "in", 5, bench_header.SOURCES)
    files = sorted((tmp_path / "in").rglob("IM*"))
    one = reference.plain_loop(files, 1, tmp_path)
    two = reference.plain_loop(files, 2, tmp_path)
    assert one["files"] == two["files"] == 5 and one["files_per_s"] > 0 and two["files_per_s"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # the loops' outputs are gone
    res = reference.reference(files, [1, 2], repeats=1, work=tmp_path)
    assert res["speedup_procs"] == [1, 2]
    assert res["speedup"] == res["files_per_s"]["2"]["median"] / res["files_per_s"]["1"]["median"]
    with pytest.raises(Exception):  # an unreadable file fails the loop, it is not skipped
        reference.plain_loop([tmp_path / "missing.dcm"], 1, tmp_path)


def test_peer_driver_runs_the_plain_yardstick(tmp_path: Path) -> None:
    """The peers' driver script with the ``plain`` loop (it needs only pydicom, so it runs here): every file
    read and written unchanged, one BENCH-RESULT line, the output map filled."""
    bench_header.make_corpus(tmp_path / "in", 3, bench_header.SOURCES)
    files = sorted(str(p) for p in (tmp_path / "in").rglob("IM*"))
    driver = tmp_path / "driver.py"
    driver.write_text(bench_peers.DRIVER.lstrip())
    res = bench_peers.run_peer("plain", Path(sys.executable), driver, files, tmp_path / "out", tmp_path, "plain-smoke")
    assert "failed" not in res, res
    assert res["files"] == res["ok"] == 3 and res["errors"] == 0 and res["files_per_s"] > 0
    mapping = json.loads(Path(res["map_file"]).read_text())
    assert sorted(mapping) == files
    for src, dst in mapping.items():
        assert pydicom.dcmread(dst).PatientName == pydicom.dcmread(src).PatientName  # unchanged: a yardstick


def test_results_of_an_earlier_run_are_never_overwritten(tmp_path: Path) -> None:
    from result_names import free_stem

    assert free_stem(tmp_path, "pixels-2000-01-01") == "pixels-2000-01-01"
    (tmp_path / "pixels-2000-01-01.md").write_text("first")  # one file of the pair is enough to move on
    assert free_stem(tmp_path, "pixels-2000-01-01") == "pixels-2000-01-01-2"
    (tmp_path / "pixels-2000-01-01-2.json").write_text("{}")
    assert free_stem(tmp_path, "pixels-2000-01-01") == "pixels-2000-01-01-3"
    assert free_stem(tmp_path, "header-x", (".json",)) == "header-x"


def test_bench_header_speedup_is_between_worker_counts() -> None:
    """The in-process run (0 workers) is not the base of the 1 -> N speed-up."""
    run = lambda whole, steady: {"files_per_s_median": whole, "steady_files_per_s_median": steady}  # noqa: E731
    got = bench_header.speedups({"0": run(300.0, 300.0), "1": run(150.0, 200.0), "2": run(240.0, 370.0)})
    assert got == {"speedup_workers": [1, 2], "speedup": 240.0 / 150.0, "speedup_steady": 370.0 / 200.0}
    assert bench_header.speedups({"0": run(300.0, 300.0), "1": run(150.0, 200.0)}) == {}
    assert bench_header.speedups({"1": run(150.0, 0.0), "4": run(450.0, 0.0)})["speedup_steady"] is None


def test_ablate_glyphs_smoke(tmp_path: Path) -> None:
    """The glyph ablation on a few synthetic and unseen-font cases: every variant scored, the glyph finder
    skipped where the variant says (off: none run but static views), deid's scan restored afterwards;
    the unseen-font cases hold lone letters and labels, every box annotated, inside the frame."""
    import ablate_glyphs

    from deid_pipeline import scan

    find = scan.find_glyph_text
    out = ablate_glyphs.main(["--variants", "all", "first", "off", "--synthetic", "3", "--unseen-font", "2",
                              "--seeds", "5", "--results", str(tmp_path)])
    assert scan.find_glyph_text is find
    result = json.loads(out.read_text())
    by = {v["variant"]: v for v in result["variants"]}
    assert set(by) == {"all", "first", "off"}
    calls = {k: v["glyph_calls"] for k, v in by.items()}
    assert calls["all"]["skipped"] == 0 and calls["all"]["run"] > 0
    assert calls["first"]["run"] + calls["first"]["skipped"] == calls["all"]["run"]
    assert calls["off"]["run"] <= calls["first"]["run"] <= calls["all"]["run"]
    # every view the scan hands the finder is recognised (a grey view's plane included): off skips them all
    # (these cases hold no cine, whose static views it would still run)
    assert calls["off"] == {**calls["off"], "run": 0, "skipped": calls["all"]["run"]}
    assert all(s["text_boxes"] > 0 for s in by["all"]["sets"].values())
    assert set(by["all"]["sets"]["unseen-font-5"]["text_recall_by_class"]) == {"unseen-lone", "unseen-tiny"}
    assert (tmp_path / out.name.replace(".json", ".md")).read_text().count("| all |") == 2
    for cls, ds, truth in ablate_glyphs.unseen_font_cases(4, 9):
        assert cls in ("unseen-lone", "unseen-tiny") and truth["annotations"]
        for a in truth["annotations"]:
            assert 0 <= a["x"] and a["x"] + a["w"] <= ds.Columns and 0 <= a["y"] and a["y"] + a["h"] <= ds.Rows
    assert ablate_glyphs.runs_on("no-window+upper", "upper", False) is False
    assert ablate_glyphs.runs_on("only-rgb", "rgb", False) is True
    with pytest.raises(ValueError):
        ablate_glyphs.runs_on("sometimes", "full", True)


def test_eval_variants_dim_text_sits_delta_above_its_field() -> None:
    """``dim-N`` variants: only text pixels change, each to its box's field + N (a sample file's truth)."""
    import json

    import numpy as np
    import pydicom

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import eval_variants

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    gt = next(p for p in sorted((sample / "groundtruth").rglob("*.groundtruth.json"))
              if json.loads(p.read_text())["annotations"])
    truth = json.loads(gt.read_text())
    src = eval_variants.Source(pydicom.dcmread(sample / truth["file"]), truth)
    rgb, level = eval_variants._rendered(src)
    [(name, ds, vtruth)] = list(eval_variants.dim_variants(src, [25]))
    dimmed = ds.pixel_array.reshape(rgb.shape)
    assert name == "dim-25" and vtruth["annotations"] == truth["annotations"]
    changed = np.any(dimmed != rgb, axis=-1)
    inside = np.zeros(changed.shape, bool)
    for i, ys, xs, text in eval_variants._text_pixels(src, level):
        inside[i, ys, xs] |= text
        field = np.median(level[i, ys, xs][~text])
        if text.any() and not text.all():
            assert np.all(dimmed[i, ys, xs][text] == min(255, int(field + 25)))
    assert changed.any() and not (changed & ~inside).any()


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
def test_bench_memory_smoke(tmp_path: Path) -> None:
    """A small multi-frame file through both runs and ``deid verify`` (one worker each): every step
    measured, the text redacted, the output verified clean."""
    res = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_memory.py"), "--frames", "24", "--memory-limit", "2GiB",
           "--work", str(tmp_path / "work"), "--results", str(res)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    (written,) = res.iterdir()
    assert written.name.startswith("memory-") and written.suffix == ".json"
    out = json.loads(written.read_text())
    assert [(r["pixels"], r["status"]) for r in out["runs"]] == [("none", "written"), ("all", "written")]
    assert out["runs"][1]["frames"] == 24 and out["runs"][1]["frames_with_boxes"] >= out["frames_with_text"] > 0
    v = out["verify"]
    assert (v["exit"], v["checked_outputs"], v["findings"], v["rescan"]) == (0, 1, {}, True)
    assert all(r["peak_worker_rss_mib"] > 0 for r in out["runs"] + [v])


@pytest.mark.skipif(not list(Path("/usr/share/fonts/truetype/dejavu").glob("DejaVuSans.ttf")),
                    reason="no DejaVu TrueType fonts on this machine (Debian: fonts-dejavu-core)")
def test_probe_text_styles_smoke(tmp_path: Path) -> None:
    """The text-style probe on one face, size and outline: each style a class, scored as eval_text
    scores, white text on CT air found, the result written beside an earlier one, never over it."""
    import probe_text_styles

    args = ["--detector", "deid-textseg", "--fonts", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "--sizes", "16",
            "--outlines", "1", "--styles", "ct-air-white", "us-white", "--tag", "t", "--out", str(tmp_path)]
    result = probe_text_styles.main(args)
    classes = result["set"]["per_class"]
    assert set(classes) == {"ct-air-white 16px outline 1", "us-white 16px outline 1"}
    assert classes["ct-air-white 16px outline 1"]["text_recall"] == 1.0
    assert all(c["text_boxes"] == len(probe_text_styles.LINES) for c in classes.values())
    probe_text_styles.main(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe_text_styles_t-2.json", "probe_text_styles_t.json"]
    # --cine: ultrasound cases as cines with fresh speckle in each frame, CT cases single frames
    [(_, ct, _), (_, us, truth)] = probe_text_styles.cases(["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"], [16], [1],
                                                          ["ct-air-white", "us-white"], cine=3)
    frames = us.pixel_array
    assert "NumberOfFrames" not in ct and us.NumberOfFrames == 3 and frames.shape == (3, 480, 640)
    assert not np.array_equal(frames[0], frames[1])
    x, y, w, h = (truth["annotations"][0][k] for k in "xywh")
    assert (frames[:, y : y + h, x : x + w] == 255).all(axis=0).any()  # the text's core is in every frame
