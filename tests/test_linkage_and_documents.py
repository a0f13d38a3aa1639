"""--linkage writes an encrypted table outside OUTPUT; encapsulated documents are quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from support import deid, write_key

from deid_pipeline.pseudonym import read_linkage


@pytest.fixture(scope="module")
def linked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    base = tmp_path_factory.mktemp("link")
    inp = base / "in"
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
    ds.PatientID = "ZQLINK0001"
    ds.save_as(inp / "plan.dcm")
    pdf = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
    pdf.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
    pdf.SOPInstanceUID = generate_uid()
    pdf.file_meta.MediaStorageSOPClassUID = pdf.SOPClassUID
    pdf.file_meta.MediaStorageSOPInstanceUID = pdf.SOPInstanceUID
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.EncapsulatedDocument = b"%PDF-1.4 Patient ZQLINK0001 report\n%%EOF\n"
    pdf.save_as(inp / "report.dcm")
    key = base / "k"
    write_key(key, b"linkage-test-key-0123456789abcdef")
    out = base / "out"
    linkage = base / "broker" / "linkage.bin"
    linkage.parent.mkdir()
    proc = deid("run", str(inp), str(out), "--workers", "0", "--key-file", str(key), "--linkage", str(linkage), "--quiet")
    assert proc.returncode == 3, proc.stderr[-2000:]  # the PDF is quarantined
    return out, linkage, key, inp


def test_linkage_is_encrypted_and_readable_with_the_key(linked_run) -> None:
    out, linkage, key, _ = linked_run
    data = linkage.read_bytes()
    assert b"ZQLINK0001" not in data
    rows = read_linkage(linkage, key.read_bytes().strip())
    assert any("ZQLINK0001" in json.dumps(r) for r in rows)
    written = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if '"written"' in x]
    pseudonym_folder = written[0]["output_path"].split("/")[0]
    assert any(pseudonym_folder in json.dumps(r) for r in rows)
    for p in out.rglob("*"):
        if p.is_file():
            assert b"ZQLINK0001" not in p.read_bytes()


def test_linkage_inside_output_is_refused(linked_run, tmp_path: Path) -> None:
    _, _, key, inp = linked_run
    out = tmp_path / "o"
    proc = deid("run", str(inp), str(out), "--key-file", str(key), "--linkage", str(out / "l.bin"))
    assert proc.returncode == 2 and not out.exists()


def test_encapsulated_document_is_quarantined(linked_run) -> None:
    out, _, _, _ = linked_run
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    codes = {r["reason"]["code"] for r in recs if r["reason"]}
    assert "encapsulated-document" in codes
    assert sum(r["status"] == "written" for r in recs) == 1


def test_recognizable_visual_features_quarantined_by_safe_harbor(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.RecognizableVisualFeatures = "YES"
    ds.save_as(inp / "face.dcm")
    key = tmp_path / "k"
    write_key(key, b"face-test-key-0123456789abcdef")
    proc = deid("run", str(inp), str(tmp_path / "o"), "--workers", "0", "--key-file", str(key), "--quiet", "--pixels", "none")
    assert proc.returncode == 3
    rec = json.loads((tmp_path / "o" / "manifest.jsonl").read_text())
    assert rec["status"] == "quarantined" and rec["reason"]["code"] == "recognizable-visual-features"
    proc = deid("run", str(inp), str(tmp_path / "o2"), "--profile", "basic", "--workers", "0", "--key-file", str(key), "--quiet", "--pixels", "none")
    assert proc.returncode == 0
