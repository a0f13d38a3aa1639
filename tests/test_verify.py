"""``deid verify`` and ``deid audit verify``: a clean run passes; every planted leak is caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from support import deid, read_manifest, write_key

REPO = Path(__file__).resolve().parent.parent
FILES = ["DOE^JOHN/20240101/IM0001", "NGUYEN^WEI/US/IM0001", "DOE^JOHN/20240101/IM0002"]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("verify")
    inp = base / "in"
    for rel in FILES:
        dest = inp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "sample_data" / rel, dest)
    key = base / "k"
    write_key(key, b"verify-test-key-0123456789abcdef")
    out = base / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return inp, out, key


def _copy_run(out: Path, dest: Path) -> Path:
    shutil.copytree(out, dest)
    shutil.copytree(out.parent / f"{out.name}.private", dest.parent / f"{dest.name}.private")
    return dest


def _copy_with_first_output(out: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the run to tamper with, and the path of its first written output."""
    bad = _copy_run(out, tmp_path / "bad")
    rec = next(r for r in read_manifest(bad) if r["status"] == "written")
    return bad, bad / rec["output_path"]


def _verify(out: Path, inp: Path, key: Path, *extra: str) -> tuple[int, dict]:
    proc = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", *extra)
    return proc.returncode, json.loads((out / "verify.json").read_text())


def test_clean_run_verifies(clean_run) -> None:
    inp, out, key = clean_run
    code, report = _verify(out, inp, key)
    assert code == 0, report["findings"]
    assert report["checked_outputs"] == len(FILES)
    proc = deid("audit", "verify", str(out), "--key-file", str(key))
    assert proc.returncode == 0 and "intact" in proc.stdout


def test_planted_header_leak_and_private_tag_are_caught(clean_run, tmp_path: Path) -> None:
    inp, out, key = clean_run
    bad, target = _copy_with_first_output(out, tmp_path)
    src = pydicom.dcmread(inp / FILES[0])
    ds = pydicom.dcmread(target)
    ds.ImageComments = str(src.PatientName).replace("^", " ")  # "John Doe" style
    ds.private_block(0x0029, "LEAK TEST", create=True).add_new(0x10, "LO", "x")
    ds.save_as(target)
    code, report = _verify(bad, inp, key, "--no-rescan")
    kinds = report["counts"]
    assert code == 1
    assert kinds.get("identifying-value-in-header", 0) >= 1
    assert kinds.get("private-element-kept", 0) >= 1
    assert kinds.get("output-sha256-mismatch", 0) == 1
    assert str(src.PatientName) not in json.dumps(report)  # the report names no values


def test_burned_in_text_put_back_is_caught(clean_run, tmp_path: Path) -> None:
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    recs = [r for r in read_manifest(bad) if r["status"] == "written" and r["pixel"].get("regions_redacted")]
    assert recs, "the sample CT has burned-in text"
    rec = recs[0]
    target = bad / rec["output_path"]
    ds = pydicom.dcmread(target)
    originals = {str(pydicom.dcmread(inp / f).file_meta.MediaStorageSOPInstanceUID): inp / f for f in FILES}
    # find the input whose pixels match this output's geometry and copy its (unredacted) pixels back
    for path in originals.values():
        src = pydicom.dcmread(path)
        if src.Rows == ds.Rows and src.Columns == ds.Columns and src.get("PhotometricInterpretation") == ds.PhotometricInterpretation and "PALETTE" not in str(ds.PhotometricInterpretation):
            src.decompress() if src.file_meta.TransferSyntaxUID.is_compressed else None
            ds.PixelData = src.PixelData
            ds.file_meta.TransferSyntaxUID = src.file_meta.TransferSyntaxUID
            break
    ds.save_as(target)
    code, report = _verify(bad, inp, key)
    assert code == 1
    assert report["counts"].get("redaction-not-filled", 0) + report["counts"].get("text-remaining", 0) >= 1
    assert report["counts"].get("redaction-not-filled", 0) >= 1


def test_deleted_record_is_caught(clean_run, tmp_path: Path) -> None:
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    lines = (bad / "manifest.jsonl").read_text().splitlines(keepends=True)
    (bad / "manifest.jsonl").write_text("".join(lines[:1] + lines[2:]))
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1
    assert report["counts"].get("chain-broken", 0) >= 1
    proc = deid("audit", "verify", str(bad), "--key-file", str(key))
    assert proc.returncode == 1 and "line 2" in proc.stdout


def test_text_left_unredacted_is_caught() -> None:
    from deid_pipeline.verify import _rescan

    src = pydicom.dcmread(REPO / "sample_data" / FILES[0])
    out = pydicom.dcmread(REPO / "sample_data" / FILES[0])  # as if the run had redacted nothing
    found = _rescan(src, out, 7, {"boxes_per_frame": [[]]}, "cpu")
    assert found and all(f.kind == "text-remaining" and f.line == 7 for f in found)
    blank = pydicom.dcmread(REPO / "sample_data" / FILES[2])  # the no-text CT: nothing to find
    assert _rescan(blank, blank, 1, {"boxes_per_frame": [[]]}, "cpu") == []


def test_removed_attribute_and_value_in_path_are_caught(clean_run, tmp_path: Path) -> None:
    inp, out, key = clean_run
    bad, target = _copy_with_first_output(out, tmp_path)
    src = pydicom.dcmread(inp / FILES[0])
    ds = pydicom.dcmread(target)
    ds.OtherPatientIDs = "ZQOTHERID77"  # basic removes Other Patient IDs (X)
    ds.save_as(target)
    # a copy of the output under a folder named with the patient's ID: a leak by path
    leak_dir = target.parent / str(src.PatientID)
    leak_dir.mkdir()
    (leak_dir / "copy.dcm").write_bytes(target.read_bytes())
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1
    assert report["counts"].get("removed-attribute-present", 0) >= 1
    assert report["counts"].get("output-without-record", 0) >= 1
    assert "ZQOTHERID77" not in json.dumps(report) and str(src.PatientID) not in json.dumps(report)


def test_verify_writes_no_phi_to_its_streams(clean_run) -> None:
    inp, out, key = clean_run
    proc = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--no-rescan")
    values = set()
    for rel in FILES:
        ds = pydicom.dcmread(inp / rel)
        values |= {str(ds.PatientName), str(ds.PatientID), str(ds.get("InstitutionName", "")), str(inp)}
    for v in filter(None, values):
        assert v not in proc.stdout and v not in proc.stderr
