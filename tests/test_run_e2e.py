"""End to end: ``deid run`` through the CLI on a messy export tree, Dask local cluster of 2 workers."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from support import deid, read_manifest, remove_orphan_semaphores, write_key

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"

# One pydicom test file per transfer syntax / photometric family, small enough for the default suite.
PYDICOM_FILES = [
    "CT_small.dcm",  # explicit VR LE, signed 16-bit
    "MR_small_bigendian.dcm",  # explicit VR BE
    "MR_small_implicit.dcm",  # implicit VR LE
    "JPEG2000.dcm",  # JPEG 2000 lossy
    "SC_rgb_rle.dcm",  # RLE, RGB
    "JPEG-LL.dcm",  # JPEG lossless
    "JPGExtended.dcm",  # JPEG extended
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
    "emri_small_jpeg_2k_lossless.dcm",  # multi-frame JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless
    "image_dfl.dcm",  # deflated explicit VR LE
    "rtplan.dcm",  # no pixels
    "nested_priv_SQ.dcm",  # private sequences
    "rtstruct.dcm",  # written below without preamble and file meta
]

CANARIES = {
    "PatientName": "Zqcanaryname^Wolfgang",
    "PatientID": "ZQCANARYID4711",
    "InstitutionName": "Zqcanary Memorial Hospital",
    "ReferringPhysicianName": "Zqcanaryref^Doctor",
    "AccessionNumber": "ZQACC99871",
}
NESTED_CANARY = "Zqcanarynested^Person"
CYRILLIC_CANARY = "Зквасова^Людмила"
JAPANESE_CANARY = "ヤマダ^タロウ=山田^太郎"
PRIVATE_CANARY = "ZQCANARYPRIVATE"
INVALID_UID_CANARY = b"1.2.826.0.ZQCANARYUID7"


def _plant(ds: pydicom.Dataset) -> None:
    for kw, value in CANARIES.items():
        setattr(ds, kw, value)
    item = pydicom.Dataset()
    item.PerformingPhysicianName = NESTED_CANARY
    ds.RequestAttributesSequence = [item]
    block = ds.private_block(0x0041, "ZQ TEST CREATOR", create=True)
    block.add_new(0x01, "LO", PRIVATE_CANARY)


def build_tree(root: Path, outside: Path) -> dict[str, str]:
    """A PACS-like export: patient-named folders, no extensions, junk. Returns rel path -> kind."""
    kinds: dict[str, str] = {}
    for i, name in enumerate(PYDICOM_FILES):
        src = get_testdata_file(name)
        assert src, name
        folder = root / "Zqcanaryname^Wolfgang" / f"study{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / (f"IM{i:04d}" if i % 2 else name)
        ds = pydicom.dcmread(src, force=True)
        _plant(ds)
        if name == "CT_small.dcm":  # a UID pydicom rejects when it reads it: its warning quotes the value
            tag = pydicom.tag.Tag(0x00200052)
            ds._dict[tag] = pydicom.dataelem.RawDataElement(tag, "UI", 22, INVALID_UID_CANARY, 0, False, True)
        if name == "rtstruct.dcm":
            del ds.file_meta
            ds.preamble = None
            ds.save_as(dest, implicit_vr=True, little_endian=True, enforce_file_format=False)
        else:
            ds.save_as(dest, enforce_file_format=False)
        kinds[dest.relative_to(root).as_posix()] = "dicom"
    if SAMPLE.exists():
        for p in sorted(SAMPLE.rglob("*")):
            if p.is_file() and p.name != "README.md":
                dest = root / "sample" / p.relative_to(SAMPLE)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, dest)
                kinds[dest.relative_to(root).as_posix()] = "sample"
    # non-ASCII canaries: Cyrillic (ISO_IR 144) and Japanese (ISO 2022 IR 87)
    for fname, value in (("chrRuss.dcm", CYRILLIC_CANARY), ("chrH31.dcm", JAPANESE_CANARY)):
        ds = pydicom.dcmread(get_charset_files(fname)[0])
        ds.PatientName = value
        ds.InstitutionName = value.replace("^", " ")
        dest = root / "Intl" / fname
        dest.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dest, enforce_file_format=False)
        kinds[dest.relative_to(root).as_posix()] = "dicom"
    # a study of two files, the second referencing the first
    first = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    _plant(first)
    first.StudyInstanceUID = "1.2.826.0.1.3680043.10.999.1"
    first.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.1.1"
    first.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    second = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    _plant(second)
    second.StudyInstanceUID = first.StudyInstanceUID
    second.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.1.2"
    second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = [ref]
    for name, ds in (("first", first), ("second", second)):
        dest = root / "Zqcanaryname^Wolfgang" / "pair" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dest, enforce_file_format=False)
        kinds[dest.relative_to(root).as_posix()] = "pair"
    dicomdir = root / "DICOMDIR"
    shutil.copy(get_testdata_file("DICOMDIR"), dicomdir)
    kinds["DICOMDIR"] = "dicomdir"
    (root / "notes.txt").write_text("Patient Zqcanaryname^Wolfgang called about results\n")
    kinds["notes.txt"] = "junk"
    (root / "empty.dcm").write_bytes(b"")
    kinds["empty.dcm"] = "empty"
    full = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (root / "partial.dcm").write_bytes(full[: int(len(full) * 0.6)])
    kinds["partial.dcm"] = "truncated"
    (outside / "secret.dcm").write_bytes(full)
    os.symlink(outside / "secret.dcm", root / "link_out.dcm")
    kinds["link_out.dcm"] = "outside-link"
    return kinds


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_VERSION_SUFFIX = re.compile(r"\.[0-9a-f]{12}(?=\.dcm$)")


def claim(rel_output: str | None) -> str | None:
    """An output path without the hash suffix that a second version of one SOP instance gets. The tree
    holds three different files of one SOP Instance UID (MR_small big-endian, implicit and JPEG-LS):
    the first one written keeps the plain name, and which is first depends on the workers' pace."""
    return None if rel_output is None else _VERSION_SUFFIX.sub("", rel_output)


def same_outcome(out: Path, ref: Path) -> None:
    """Every input ended as in ``ref``, with the same output content under the same name (up to which
    version of a shared SOP instance kept the plain one), and no other file was written."""
    key_of = lambda r: (r["input_sha256"], r["status"], claim(r["output_path"]), r["output_sha256"])  # noqa: E731
    assert sorted(map(key_of, read_manifest(out)), key=str) == sorted(map(key_of, read_manifest(ref)), key=str)
    files = lambda o: sorted((claim(p.relative_to(o).as_posix()), sha(p)) for p in o.rglob("*.dcm"))  # noqa: E731
    assert files(out) == files(ref)  # no partial or duplicate outputs


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    base = tmp_path_factory.mktemp("e2e")
    inp = base / "export"
    inp.mkdir()
    outside = base / "elsewhere"
    outside.mkdir()
    kinds = build_tree(inp, outside)
    key = base / "site.key"
    write_key(key, b"e2e-test-key-0123456789abcdef0123456789")
    return inp, kinds, key


@pytest.fixture(scope="module")
def run2(tree: tuple[Path, dict[str, str], Path]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    inp, _kinds, key = tree
    out = inp.parent / "out2"
    log_file = inp.parent / "logs" / "run.log"  # a log the user asked for, outside OUTPUT
    log_file.parent.mkdir()
    proc = deid("run", str(inp), str(out), "--profile", "safe-harbor", "--workers", "2", "--key-file", str(key),
                "--verbose", "--log-file", str(log_file))
    return out, proc


def test_exit_status_and_one_record_per_input(tree, run2) -> None:
    inp, kinds, _ = tree
    out, proc = run2
    assert proc.returncode == 3, proc.stderr[-2000:]  # the truncated file is quarantined
    records = read_manifest(out)
    inputs = [p for p in inp.rglob("*") if p.is_file() or p.is_symlink()]
    assert len(records) == len(inputs) == len(kinds)
    expected = sorted(sha(p) for p in inputs if not p.is_symlink())
    got = sorted(r["input_sha256"] for r in records if r["reason"] is None or r["reason"]["code"] != "link-outside-input")
    assert got == expected
    for r in records:
        assert r["schema_version"] and r["tool_version"] and r["profile"]["sha256"]
        assert r["status"] in ("written", "skipped", "quarantined", "failed")
        assert r["status"] != "failed", r
        if r["status"] == "written":
            assert sha(out / r["output_path"]) == r["output_sha256"]


def test_reasons_for_junk(tree, run2) -> None:
    out, _ = run2
    codes = {}
    for r in read_manifest(out):
        if r["reason"]:
            codes.setdefault(r["reason"]["code"], []).append(r["status"])
    assert set(codes["dicomdir"]) == {"skipped"}
    assert "skipped" in codes["not-dicom"]
    assert set(codes["empty-file"]) == {"skipped"}
    assert "quarantined" in codes["truncated"]
    assert codes["link-outside-input"] == ["skipped"]


def test_outputs_are_deidentified_and_paths_carry_nothing(tree, run2) -> None:
    inp, kinds, _ = tree
    out, proc = run2
    components = set()
    for rel in kinds:
        for part in Path(rel).parts:
            components.add(part)
            components.add(Path(part).stem)
    written = [r for r in read_manifest(out) if r["status"] == "written"]
    assert len(written) >= len(PYDICOM_FILES) - 1
    for r in written:
        parts = Path(r["output_path"]).parts
        assert len(parts) == 4 and parts[-1].endswith(".dcm")
        for part in parts:
            for comp in components:
                if len(comp) >= 4:
                    assert comp not in part
        ds = pydicom.dcmread(out / r["output_path"])
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert parts[-1].startswith(f"{ds.SOPInstanceUID}.")  # <sop>.dcm, or <sop>.<hash>.dcm for a second version
        assert parts[1] == ds.get("StudyInstanceUID", "unknown-study")
        assert parts[2] == ds.get("SeriesInstanceUID", "unknown-series")


def _needles() -> list[bytes]:
    """Every planted value, in the encodings it could be written in."""
    needles = [v.encode() for v in CANARIES.values()] + [NESTED_CANARY.encode(), PRIVATE_CANARY.encode()]
    needles += [b"Zqcanary", b"ZQCANARY", b"ZQACC", INVALID_UID_CANARY]
    for text in (CYRILLIC_CANARY, JAPANESE_CANARY):
        for part in text.replace("=", "^").split("^"):
            for enc in ("utf-8", "iso8859-5", "iso2022_jp", "shift_jis", "euc_jp"):
                try:
                    encoded = part.encode(enc)
                except UnicodeEncodeError:
                    continue
                if len(encoded) >= 4:
                    needles.append(encoded.replace(b"\x1b(B", b""))
    return needles


def test_no_canary_anywhere(tree, run2) -> None:
    inp, _, key = tree
    out, proc = run2
    needles = _needles()
    key_bytes = key.read_bytes().strip()
    for p in out.rglob("*"):
        rel = str(p.relative_to(out)).encode().lower()
        assert not any(n.lower() in rel for n in needles)
        if p.is_file():
            data = p.read_bytes()
            for n in needles + [key_bytes]:
                assert n not in data, f"{n!r} leaked into {p.name}"
    for stream in (proc.stdout, proc.stderr):
        for n in needles:
            assert n.decode("utf-8", "replace") not in stream
        assert "export" not in stream  # the input folder name (could be a patient name)


def test_verify_report_audit_and_logs_hold_no_canary(tree, run2) -> None:
    """``deid verify``, ``deid report`` and ``deid audit verify`` after the run, all logging verbosely to a file:
    no planted value, input path or key in any stream, log, manifest, run.json, verify.json or the report."""
    inp, _, key = tree
    out, run_proc = run2
    log_file = inp.parent / "logs" / "run.log"
    streams = [run_proc.stdout, run_proc.stderr]
    for args in (("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "1"),  # on a Dask worker
                 ("report", str(out)),
                 ("audit", "verify", str(out), "--key-file", str(key))):
        extra = ("--verbose", "--log-file", str(log_file)) if args[0] != "audit" else ()
        proc = deid(*args, *extra)
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        streams += [proc.stdout, proc.stderr]
    verify = json.loads((out / "verify.json").read_text())
    assert verify["checked_outputs"] > 10
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    logged = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert any(r["message"].startswith("run finished") for r in logged)
    assert sum(r["message"].startswith("record ") for r in logged) == len(read_manifest(out))
    files = [log_file, out / "manifest.jsonl", out / "run.json", out / "verify.json", out / "report.html"]
    key_bytes = key.read_bytes().strip()
    for needle in _needles() + [key_bytes, str(inp).encode(), b"export/", b"Wolfgang"]:
        for f in files:
            assert needle not in f.read_bytes(), f"{needle!r} in {f.name}"
        for stream in streams:
            assert needle.decode("utf-8", "replace") not in stream


def test_private_journal_and_permissions(tree, run2) -> None:
    out, _ = run2
    private = out.parent / "out2.private"
    journal = private / "journal.jsonl"
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert len(lines) == len(read_manifest(out))
    assert any("Zqcanaryname" in line["input"] for line in lines)  # the journal is where paths live
    for p in out.rglob("*"):
        assert not (p.stat().st_mode & 0o007), p.name  # no world access


def test_run_json_sums_up(run2) -> None:
    out, _ = run2
    info = json.loads((out / "run.json").read_text())
    records = read_manifest(out)
    assert sum(info["counts"].values()) == len(records) == info["records"]
    assert info["workers"] == 2 and info["state"] == "finished"
    assert info["files_per_s"] > 0 and info["started"] <= info["finished"]
    assert "files_per_s_steady" in info  # None here: too few records to tell a pace
    assert info["chain"]["records"] == len(records)
    prev = "0" * 64
    for line in (out / "manifest.jsonl").read_bytes().splitlines():
        assert json.loads(line)["prev_record_sha256"] == prev
        prev = hashlib.sha256(line).hexdigest()
    assert info["chain"]["head_sha256"] == prev


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
def test_same_key_same_bytes_with_one_worker(tree, run2) -> None:
    inp, _, key = tree
    out2, _ = run2
    out1 = inp.parent / "out1"
    proc = deid("run", str(inp), str(out1), "--workers", "1", "--key-file", str(key), "--quiet")
    assert proc.returncode == 3
    assert proc.stdout == ""
    a = {(r["input_sha256"], r["status"], r["output_path"], r["output_sha256"]) for r in read_manifest(out1)}
    b = {(r["input_sha256"], r["status"], r["output_path"], r["output_sha256"]) for r in read_manifest(out2)}
    assert a == b


@pytest.mark.parametrize(
    "args, what",
    [
        (["--profile", "no-such-profile"], "profile"),
        (["--key-file", "/nonexistent/key"], "key"),
        (["--detector", "tesseract"], "text detector"),
    ],
)
def test_config_errors_exit_2_before_anything(tree, tmp_path: Path, args: list[str], what: str) -> None:
    inp, _, _ = tree
    out = tmp_path / "o"
    proc = deid("run", str(inp), str(out), *args)
    assert proc.returncode == 2
    assert "configuration error" in proc.stderr and what in proc.stderr.lower()
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "o.private").exists()


def test_output_inside_input_exits_2(tree) -> None:
    inp, kinds, _ = tree
    before = sorted(p.as_posix() for p in inp.rglob("*"))
    proc = deid("run", str(inp), str(inp / "out"))
    assert proc.returncode == 2 and "inside INPUT" in proc.stderr
    assert sorted(p.as_posix() for p in inp.rglob("*")) == before


def test_world_readable_key_refused(tree, tmp_path: Path) -> None:
    inp, _, _ = tree
    key = tmp_path / "k"
    key.write_bytes(b"x" * 40)
    key.chmod(0o644)
    proc = deid("run", str(inp), str(tmp_path / "o"), "--key-file", str(key))
    assert proc.returncode == 2 and "chmod 600" in proc.stderr


@pytest.mark.slow  # ~12 s: a run killed mid-way and resumed
def test_kill_9_then_resume(tree, run2) -> None:
    inp, _, key = tree
    out2, _ = run2
    out = inp.parent / "out_killed"
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--workers", "2",
           "--key-file", str(key), "--quiet", "--batch-size", "2"]
    started = time.time()
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    manifest = out / "manifest.jsonl"
    while time.time() < deadline:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 3:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    remove_orphan_semaphores(started)  # the killed run's resource tracker died with it
    partial = manifest.read_bytes().count(b"\n") if manifest.exists() else 0
    done = deid("run", str(inp), str(out), "--workers", "2", "--key-file", str(key), "--quiet")
    assert done.returncode == 3, done.stderr[-2000:]
    final = read_manifest(out)
    ref = read_manifest(out2)
    assert len(final) == len(ref)
    same_outcome(out, out2)
    assert not list(out.rglob(".deid-tmp-*"))
    assert partial <= len(final)


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
def test_sigterm_ends_like_ctrl_c_then_resume(tree, run2) -> None:
    """SIGTERM (a job scheduler's stop) to the driver alone: exit 143 with the interrupted line, its
    workers gone, every record it kept whole; the same command then finishes like an uninterrupted run."""
    inp, _, key = tree
    out2, _ = run2
    out = inp.parent / "out_terminated"
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--workers", "2",
           "--key-file", str(key), "--quiet", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    manifest = out / "manifest.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.stat().st_size > 0:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 143:  # (a run that ended first is not a SIGTERM test, but must have ended well)
        assert "interrupted; run the same command again to resume" in err and "Traceback" not in err
        left = time.time() + 20  # no worker left (the forkserver and tracker go once reaped)
        while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).stdout and time.time() < left:
            time.sleep(0.2)
        assert subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).stdout == b""
        kept = manifest.read_bytes()
        assert kept.endswith(b"\n") and all(json.loads(line) for line in kept.splitlines())
    else:
        assert proc.returncode == 3, err[-2000:]
    done = deid("run", str(inp), str(out), "--workers", "2", "--key-file", str(key), "--quiet")
    assert done.returncode == 3, done.stderr[-2000:]
    assert len(read_manifest(out)) == len(read_manifest(out2))
    same_outcome(out, out2)


def test_study_and_references_stay_linked(tree, run2) -> None:
    inp, kinds, _ = tree
    out, _ = run2
    pair = sorted(rel for rel, k in kinds.items() if k == "pair")
    journal = [json.loads(x) for x in (out.parent / "out2.private" / "journal.jsonl").read_text().splitlines()]
    path_of = {j["input"]: j["output_path"] for j in journal}
    first = pydicom.dcmread(out / path_of[pair[0]])
    second = pydicom.dcmread(out / path_of[pair[1]])
    assert first.StudyInstanceUID == second.StudyInstanceUID != "1.2.826.0.1.3680043.10.999.1"
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert first.SOPInstanceUID.startswith("2.25.")


def test_unredacted_pixels_keep_their_bytes(tree, run2) -> None:
    inp, _, _ = tree
    out, _ = run2
    journal = [json.loads(x) for x in (out.parent / "out2.private" / "journal.jsonl").read_text().splitlines()]
    checked = 0
    for rec, j in zip(read_manifest(out), journal):
        pixel = rec["pixel"] or {}
        if rec["status"] != "written" or not pixel.get("scanned") or not pixel.get("pixel_data_unchanged"):
            continue
        src = pydicom.dcmread(inp / j["input"], force=True)
        dst = pydicom.dcmread(out / rec["output_path"])
        assert dst.PixelData == src.PixelData
        assert dst.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
        checked += 1
    assert checked >= 3


@pytest.mark.slow
def test_ten_kills_in_a_row_then_resume(tree, run2) -> None:
    """The whole run SIGKILLed at pseudo-random points ten times, then finished: equal to an uninterrupted run."""
    import random

    inp, _, key = tree
    out2, _ = run2
    out = inp.parent / "out_ten_kills"
    rng = random.Random(20261123)
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--workers", "2",
           "--key-file", str(key), "--quiet", "--batch-size", "2"]
    for _ in range(10):
        started = time.time()
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 8.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        remove_orphan_semaphores(started)
    done = deid("run", str(inp), str(out), "--workers", "2", "--key-file", str(key), "--quiet")
    assert done.returncode == 3, done.stderr[-2000:]
    same_outcome(out, out2)
    assert not list(out.rglob(".deid-tmp-*"))
    proc = deid("audit", "verify", str(out), "--key-file", str(key))
    assert proc.returncode == 0, proc.stdout


def test_steady_rate_is_the_pace_between_the_10th_and_90th_percentile() -> None:
    from array import array

    from deid_pipeline.runner import _steady_rate

    slow_start = array("d", [0.0, 5.0] + [5.0 + k for k in range(1, 19)])  # 20 samples: a 5 s start
    assert _steady_rate(slow_start, every=16) == 16.0  # 16 records a second once running
    assert _steady_rate(array("d", [0.0, 1.0]), every=16) is None
    assert _steady_rate(array("d", [3.0] * 30), every=16) is None


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
def test_quiet_reaches_the_workers(tmp_path: Path) -> None:
    """``--quiet`` means errors only, the workers' logs included (they reach the driver's stderr): on a
    host without CUDA each scanning worker warned that detection runs on the CPU, but not under --quiet.
    Without it the driver says so once, for its two workers (each of them said it before)."""
    import torch

    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("IM0001", "IM0002"):  # two files: a batch for each worker
        shutil.copy(REPO / "sample_data" / "DOE^JOHN" / "20240101" / name, inp / name)
    key = write_key(tmp_path / "k.key", b"quiet-test-key-0123456789abcdef0123456789")
    runs = {}
    for flag in ("--quiet", "--verbose"):
        out = tmp_path / f"out{flag}"
        runs[flag] = deid("run", str(inp), str(out), "--workers", "2", "--pixels", "all", "--detector", "deid-textseg",
                          "--key-file", str(key), flag)  # one network to load: the warning is the detector's device
        assert runs[flag].returncode == 0, runs[flag].stderr[-2000:]
        assert all(r["pixel"]["scanned"] for r in read_manifest(out))
    assert runs["--quiet"].stderr == ""
    if not torch.cuda.is_available():  # the warning the quiet run withheld is there without --quiet, once
        assert runs["--verbose"].stderr.count("CUDA not available") == 1
    # so with verify's workers, which scan the outputs again (they warned under --quiet too)
    checks = {flag: deid("verify", str(tmp_path / "out--quiet"), "--against", str(inp), "--workers", "2",
                         "--key-file", str(key), flag) for flag in ("--quiet", "--verbose")}
    assert checks["--quiet"].returncode == 0 and checks["--quiet"].stderr == "" and checks["--quiet"].stdout == ""
    assert json.loads((tmp_path / "out--quiet" / "verify.json").read_text())["rescan"]
    if not torch.cuda.is_available():
        assert checks["--verbose"].stderr.count("CUDA not available") == 1


def test_a_run_without_a_key_file_says_how_its_signature_is_checked(tmp_path: Path) -> None:
    """Without --key-file the run says (stderr and run.json's notes) that its audit trail is signed by its
    own random key and how to print its public half; doing what it says checks the chain; the note names
    the folder as OUTPUT, not its path."""
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(SAMPLE / "DOE^JOHN" / "20240101" / "IM0001", inp / "a.dcm")
    out = tmp_path / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = json.loads((out / "run.json").read_text())["notes"]
    [note] = [n for n in notes if n.startswith("no --key-file")]
    assert "signed by this run's own key" in note and "deid audit public-key --key-file OUTPUT.private/run.key" in note
    assert note in proc.stderr and str(tmp_path) not in note
    pem = deid("audit", "public-key", "--key-file", str(tmp_path / "out.private" / "run.key"))
    assert pem.returncode == 0
    (tmp_path / "run.pub").write_text(pem.stdout)
    proc = deid("audit", "verify", str(out), "--public-key", str(tmp_path / "run.pub"))
    assert proc.returncode == 0 and "signed by the trusted key" in proc.stdout, proc.stdout
