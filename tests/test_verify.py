"""``deid verify`` and ``deid audit verify``: a clean run passes; every planted leak is caught."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from support import deid, read_manifest, write_key

from deid_pipeline.manifest import run_digest

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


def test_quiet_verify_in_one_process_still_logs_to_its_file(clean_run, tmp_path: Path) -> None:
    """``--quiet`` quiets stderr, not the ``--log-file`` (INFO there): in one process the checks run in
    the driver, whose loggers keep the levels the command gave them (6abe488 set them to errors only)."""
    inp, out, key = clean_run
    log = tmp_path / "verify.log"
    code, report = _verify(_copy_run(out, tmp_path / "copy"), inp, key, "--quiet", "--log-file", str(log))
    assert code == 0, report["findings"]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r["level"] == "info" and r["message"].startswith(f"verify: {len(FILES)} outputs checked") for r in lines)


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


def test_an_edited_run_summary_is_caught(clean_run, tmp_path: Path) -> None:
    """A field of a real run's run.json that no count checks (its workers, its detector) edited: the
    audit finds it under the key and, re-digested, under the signature too; the untouched run passes."""
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    run = json.loads((bad / "run.json").read_text())
    run["workers"], run["detector"] = run["workers"] + 3, "another"
    (bad / "run.json").write_text(json.dumps(run))
    proc = deid("audit", "verify", str(bad), "--key-file", str(key))
    assert proc.returncode == 1 and "run.json was edited" in proc.stdout, proc.stdout
    pub = tmp_path / "site.pub"
    pub.write_text(deid("audit", "public-key", "--key-file", str(key)).stdout)
    run["chain"]["run_sha256"] = run_digest(run)
    (bad / "run.json").write_text(json.dumps(run))
    proc = deid("audit", "verify", str(bad), "--public-key", str(pub))
    assert proc.returncode == 1 and "signature does not verify" in proc.stdout, proc.stdout
    assert deid("audit", "verify", str(out), "--public-key", str(pub)).returncode == 0


def test_a_line_over_the_limit_in_the_manifest_is_reported_not_read(clean_run, tmp_path: Path) -> None:
    """A 65 MiB line planted in a real run's manifest (over MAX_LINE_BYTES): `deid verify` and `deid audit
    verify` name it by line and size and fail, `deid report` still writes its page."""
    from deid_pipeline.manifest import MAX_LINE_BYTES

    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    lines = (bad / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    size = MAX_LINE_BYTES + (1 << 20)
    with (bad / "manifest.jsonl").open("wb") as fh:
        fh.write(lines[0])
        fh.write(b"{" * size + b"\n")
        fh.writelines(lines[1:])
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1
    assert any(f["kind"] == "chain-broken" and f["line"] == 2 and f"a line of {size} bytes" in f["detail"]
               for f in report["findings"]), report["findings"]
    proc = deid("audit", "verify", str(bad), "--key-file", str(key))
    assert proc.returncode == 1 and f"line 2: a line of {size} bytes: not a deid record" in proc.stdout
    proc = deid("report", str(bad))
    assert proc.returncode == 0 and (bad / "report.html").is_file(), proc.stderr[-2000:]


def test_a_run_json_over_its_bound_is_reported_not_read(clean_run, tmp_path: Path) -> None:
    """run.json padded past MAX_RUN_JSON_BYTES (the same JSON, 16 MiB of spaces after it): verify and the
    audit report it unreadable (exit 1) without reading it, the report still writes its page, and the
    run is not resumed (a configuration error, exit 2)."""
    from deid_pipeline.manifest import MAX_RUN_JSON_BYTES

    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    with (bad / "run.json").open("a") as fh:
        fh.write(" " * MAX_RUN_JSON_BYTES)
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1 and report["counts"].get("run-summary-unreadable") == 1, report["findings"]
    proc = deid("audit", "verify", str(bad), "--key-file", str(key))
    assert proc.returncode == 1 and "run.json does not read as JSON" in proc.stdout
    proc = deid("report", str(bad))
    assert proc.returncode == 0 and (bad / "report.html").is_file(), proc.stderr[-2000:]
    proc = deid("run", str(inp), str(bad), "--workers", "0", "--key-file", str(key), "--quiet")
    assert proc.returncode == 2 and "run.json does not read as a deid run summary" in proc.stderr, proc.stderr[-2000:]
    run = json.loads((out / "run.json").read_text())
    for field, value in (("profile", ["a", "list"]), ("detector", 3)):  # JSON, not deid's shapes
        (bad / "run.json").write_text(json.dumps({**run, field: value}))
        proc = deid("run", str(inp), str(bad), "--workers", "0", "--key-file", str(key), "--quiet")
        assert proc.returncode == 2 and "does not read as a deid run summary" in proc.stderr, (field, proc.stderr[-2000:])


def test_text_left_unredacted_is_caught() -> None:
    from deid_pipeline.verify import _rescan

    src = str(REPO / "sample_data" / FILES[0])
    found = _rescan(src, pydicom.dcmread(src), 7, {"boxes_per_frame": [[]]}, "cpu")  # as if the run had redacted nothing
    assert found and all(f.kind == "text-remaining" and f.line == 7 for f in found)
    assert len({f.detail for f in found}) == len(found)  # one finding per box left, however many input boxes meet it
    blank = str(REPO / "sample_data" / FILES[2])  # the no-text CT: nothing to find
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


# --------------------------------------------------------------------------- dates that look like UID roots

KEY = b"verify-uid-root-key-0123456789abcdef"


@pytest.fixture(scope="module")
def uid_root_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two patients whose birth dates, as ``M.D.YY``, begin UIDs the outputs hold: 1984-02-01
    (``1.2.84``, every standard UID: ``1.2.840.10008...``) and 1933-02-25 (``2.25.33``, the root of a
    generated UID, which this file's SOP Instance UID is chosen to get)."""
    from pydicom.data import get_testdata_file

    from deid_pipeline.pseudonym import Pseudonymizer

    base = tmp_path_factory.mktemp("uidroot")
    inp = base / "in"
    inp.mkdir()
    pseudo = Pseudonymizer(KEY)
    sops = [f"1.2.826.0.1.3680043.8.498.{n}" for n in range(100_000)]
    sop_b = next(u for u in sops if pseudo.uid(u).startswith("2.25.33"))
    sop_a = next(u for u in sops if not pseudo.uid(u).startswith("2.25.3"))  # fixed: no generated root to match
    for name, birth, uid in (("a.dcm", "19840201", sop_a), ("b.dcm", "19330225", sop_b)):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientBirthDate, ds.PatientName, ds.PatientID = birth, f"ZQROOT^{name[0].upper()}", f"ZQR{name[0]}"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.save_as(inp / name)
    key = write_key(base / "k", KEY)
    out = base / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0", "--pixels", "none", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return inp, out, key


def test_dates_that_begin_uids_are_no_finding(uid_root_run) -> None:
    inp, out, key = uid_root_run
    recs = {r["output_path"]: r for r in read_manifest(out)}
    assert len(recs) == 2
    # the premise: each output holds its patient's M.D.YY birth date, with a digit right after it
    heads = [(out / p).read_bytes() for p in recs]
    assert any(b"1.2.840." in h for h in heads)
    assert any("/2.25.33" in p for p in recs) and any(b"2.25.33" in h for h in heads)
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]


def test_a_date_that_begins_a_uid_is_still_caught_as_text(uid_root_run, tmp_path: Path) -> None:
    inp, out, key = uid_root_run
    bad = _copy_run(out, tmp_path / "bad")
    journal = [json.loads(x) for x in (tmp_path / "bad.private" / "journal.jsonl").read_text().splitlines()]
    for rec, entry in zip(read_manifest(bad), journal):
        target = bad / rec["output_path"]
        ds = pydicom.dcmread(target)
        if entry["input"] == "b.dcm":  # born 1933-02-25
            ds.ImageComments = "seen 2.25.33"
        else:  # born 1984-02-01
            ds.StudyDescription = "DOB:1.2.84, follow-up"
        ds.save_as(target)
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1
    assert report["counts"].get("identifying-value-in-header") == 2, report["findings"]
    assert "1.2.84" not in json.dumps(report) and "2.25.33" not in json.dumps(report)
    # each finding names the element that holds the value (changed after the run: not the input's value)
    details = sorted(f["detail"] for f in report["findings"] if f["kind"] == "identifying-value-in-header")
    assert sorted(d.split(" in ", 1)[1] for d in details) == ["ImageComments", "StudyDescription"], details


def test_number_terms_match_where_no_digit_touches_them() -> None:
    from deid_pipeline.verify import _found, _path_has

    assert _found("1234567", b"MRN:ID1234567;") and _found("1234567", "ID 1234567".encode("utf-16-le"))
    assert not _found("1234567", b"x91234567x") and not _found("1234567", "912345678".encode("utf-16-le"))
    assert _found("SMITH", b"SMITHSON", b"smithson")  # letters: any occurrence, as before
    assert _path_has("2.25.33", "/out/2.25.33/x.dcm") and not _path_has("2.25.33", "/out/2.25.335/x.dcm")


def test_a_date_is_found_where_a_time_follows_it_as_in_a_dt() -> None:
    """A compact date kept inside a date-time (a DT "20040119103000.5") is the date; inside a UID
    (".20040119072730.12322") or a longer number it is not."""
    from deid_pipeline.verify import _found

    assert _found("20040119", b"\x0e\x0020040119103000") and _found("20040119", b"\\200401191030\\")
    assert _found("20040119", b"20040119103000.123456+0100 ") and _found("20040119", b"20040119\x00")
    assert not _found("20040119", b"1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322")
    assert not _found("20040119", b"x2004011910300") and not _found("20040119", b"920040119")
    assert not _found("20040119", b"2004011910300012")  # more digits than a time: not a DT


def test_one_pass_prefilter_agrees_with_the_search_of_each_term() -> None:
    """``_any_found`` is False only where ``_found`` is False for every term: letters in any case
    variant and encoding, numbers wherever they occur (``_found`` then applies the digit rule)."""
    from deid_pipeline.verify import _any_found, _found, _needles

    terms = ["DOE^JOHN", "12345678", "GENERAL HOSPITAL"]
    cases = [b"\x00" * 64, b"xx doe^john xx", "GENERAL HOSPITAL".encode("utf-16-le"), b"ID12345678;", b"9123456789",
             b"General Hospital", b"DOE^JOH", bytes(range(256)) * 8]
    for data in cases:
        each = [_found(t, data) for t in terms]
        assert _any_found(terms, data) or not any(each), data
        assert _any_found(terms, data) == any(enc in data for t in terms for enc, _ in _needles(t)[1])
    assert not _any_found([], b"anything")


def test_an_identifying_value_in_pixel_bytes_is_found(clean_run, tmp_path: Path) -> None:
    """The patient's name written into an output's pixel data (past the header) is found by the search of
    the whole output (after the one-pass prefilter)."""
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    journal = [json.loads(line) for line in (tmp_path / "bad.private" / "journal.jsonl").read_text().splitlines()]
    rec = next(r for r, j in zip(read_manifest(bad), journal) if j["input"] == "DOE^JOHN/20240101/IM0001")
    path = bad / rec["output_path"]
    data = bytearray(path.read_bytes())
    name = str(pydicom.dcmread(inp / "DOE^JOHN" / "20240101" / "IM0001").PatientName).encode()
    assert len(name) >= 8 and name not in data
    data[-4000 : -4000 + len(name)] = name  # inside the pixel data, whose values end the file
    path.write_bytes(bytes(data))
    code, report = _verify(bad, inp, key, "--no-rescan")
    kinds = {f["kind"] for f in report["findings"]}
    assert code == 1 and "identifying-value-in-bytes" in kinds and "output-sha256-mismatch" in kinds


def test_a_value_kept_in_a_deflated_output_is_found(tmp_path: Path) -> None:
    """A deflated data set is searched inflated: as stored, its bytes hide every value."""
    from pydicom.data import get_testdata_file

    inp = tmp_path / "in"
    inp.mkdir()
    for name, ts in (("deflated.dcm", None), ("plain.dcm", pydicom.uid.ExplicitVRLittleEndian)):
        ds = pydicom.dcmread(get_testdata_file("image_dfl.dcm"))
        ds.PatientName, ds.PatientID = "ZQDEFL^MARGARET", "ZQ77123"
        ds.StationName = "ZQDEFL imaging"  # the profile keeps the station's name: the name goes through
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        if ts:
            ds.file_meta.TransferSyntaxUID = ts
        ds.save_as(inp / name)
    key = write_key(tmp_path / "k", KEY)
    out = tmp_path / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0", "--pixels", "none", "--key-file", str(key), "--quiet",
                "--profile", "basic+retain-device-identity")
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = read_manifest(out)
    syntaxes = {str(pydicom.dcmread(out / r["output_path"]).file_meta.TransferSyntaxUID) for r in recs}
    assert syntaxes == {pydicom.uid.DeflatedExplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian}
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 1
    flagged = {f["line"] for f in report["findings"] if f["kind"] == "identifying-value-in-header"}
    assert flagged == {1, 2}, report["findings"]
    # the detail says where (the profile keeps the station's name, and the input had the same value), not what
    for f in report["findings"]:
        assert f["detail"].endswith(" in StationName (kept by the profile, as in the input)"), f
        assert "ZQDEFL" not in f["detail"]


@pytest.mark.parametrize("keyword", ["PixelData", "FloatPixelData"])
@pytest.mark.parametrize("syntax", ["ExplicitVRLittleEndian", "ImplicitVRLittleEndian", "ExplicitVRBigEndian", "DeflatedExplicitVRLittleEndian"])
def test_header_searched_is_the_file_up_to_its_pixels(tmp_path: Path, keyword: str, syntax: str) -> None:
    """The header searched for short values is the output's own bytes before its pixel data (Pixel
    Data, Float or Double Float Pixel Data), a deflated data set inflated; the pixels are searched
    only for long values."""
    from pydicom.dataset import FileMetaDataset

    from deid_pipeline.verify import _searchable

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = getattr(pydicom.uid, syntax)
    ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.SecondaryCaptureImageStorage, pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.Manufacturer = "ZQHEAD"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated = 1, "MONOCHROME2", 32
    if keyword == "PixelData":
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 31, 0
    setattr(ds, keyword, b"ZQPIXEL!" * 8)
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    header, whole = _searchable(data, pydicom.dcmread(path), str(path))
    assert b"ZQHEAD" in header and b"ZQPIXEL" not in header and b"ZQPIXEL" in whole
    assert whole.startswith(header)  # cut from the file's bytes, not encoded again
    assert (b"ZQHEAD" in data) == (syntax != "DeflatedExplicitVRLittleEndian")  # stored deflated: hidden


def test_original_values_put_back_are_found_at_their_paths(tmp_path: Path) -> None:
    """An output holding the input's value where the profile replaces it (top level and inside a
    sequence item) is reported at that path; a standard UID that U keeps is not."""
    from pydicom.data import get_testdata_file

    from deid_pipeline.verify import _MISSING, _original

    inp = tmp_path / "in"
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = pydicom.uid.CTImageStorage
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.424242"
    ds.ReferencedImageSequence = [pydicom.Dataset(), item]
    ds.save_as(inp / "ct.dcm")
    key = write_key(tmp_path / "k", KEY)
    out = tmp_path / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0", "--pixels", "none", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    target = out / read_manifest(out)[0]["output_path"]
    written = pydicom.dcmread(target)
    assert written.ReferencedImageSequence[1].ReferencedSOPInstanceUID != item.ReferencedSOPInstanceUID  # U replaced it
    written.ReferencedImageSequence[1].ReferencedSOPInstanceUID = item.ReferencedSOPInstanceUID
    written.StudyInstanceUID = ds.StudyInstanceUID
    written.save_as(target)
    code, report = _verify(out, inp, key, "--no-rescan")
    kept = sorted(f["detail"].split()[0] for f in report["findings"] if f["kind"] == "original-value-kept")
    assert code == 1 and kept == ["(0008,1140)[1].(0008,1155)", "(0020,000D)"], report["findings"]
    # the input's values by path, converted on demand; no value for a sequence, a missing item or tag
    assert _original(ds, "(0008,1140)[1].(0008,1150)") == pydicom.uid.CTImageStorage
    for path in ("(0008,1140)", "(0008,1140)[2].(0008,1150)", "(0008,1140)[0].(0008,1150)", "(0010,9999)", "(0008,1140)[1]", "junk"):
        assert _original(ds, path) is _MISSING, path


def test_missing_output_is_found(clean_run, tmp_path: Path) -> None:
    inp, out, key = clean_run
    bad, target = _copy_with_first_output(out, tmp_path)
    target.unlink()
    code, report = _verify(bad, inp, key, "--no-rescan")
    written = sum(r["status"] == "written" for r in read_manifest(bad))
    assert code == 1 and report["counts"] == {"output-missing": 1}, report["findings"]
    assert report["checked_outputs"] == written - 1


def _one_file_run(tmp_path: Path, ds: pydicom.Dataset, *extra: str) -> tuple[Path, Path, Path, Path]:
    """``ds`` as the one input of a header-only run (``extra``: more ``deid run`` options): (INPUT,
    OUTPUT, key file, the output file)."""
    inp = tmp_path / "in"
    inp.mkdir()
    ds.save_as(inp / "ct.dcm")
    key = write_key(tmp_path / "k", KEY)
    out = tmp_path / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0", "--pixels", "none", "--key-file", str(key), "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return inp, out, key, out / read_manifest(out)[0]["output_path"]


def test_year_mode_excuses_1_january_only_in_dates(tmp_path: Path) -> None:
    """Safe Harbor reduces a date to 1 January of its year, so a date already on 1 January stays as it is:
    verify excuses that date where the output's date elements hold it; the same date in a text element
    the profile keeps, with no date element holding it, is a finding (it once excused itself)."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyDate = "20040101"
    inp, out, key, target = _one_file_run(tmp_path, ds)
    written = pydicom.dcmread(target)
    assert written.StudyDate == "20040101"  # kept, legitimately
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    for elem in list(written):
        if elem.VR in ("DA", "DT"):
            del written[elem.tag]
    written.Manufacturer = "20040101"
    written.save_as(target)
    code, report = _verify(out, inp, key, "--no-rescan")
    details = [f["detail"] for f in report["findings"] if f["kind"] == "identifying-value-in-header"]
    assert code == 1 and details == ["a 8-character identifying value in Manufacturer"], report["findings"]


@pytest.mark.parametrize(("option", "keyword"), [("clean-descriptors", "StudyDescription"),
                                                 ("retain-long-modified-dates", "StudyDate")])
def test_values_an_option_keeps_by_design_are_no_finding(tmp_path: Path, option: str, keyword: str) -> None:
    """Clean (C) keeps a description with nothing identifying in it, and with dates moved by whole days
    keeps the times: an output holding them verifies clean (each was an ``original-value-kept``). A value
    C did change, put back, is still one."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyDescription, ds.SeriesDescription = "CT chest without contrast", f"Follow-up of {ds.PatientName.family_name}"
    ds.StudyDate, ds.StudyTime = "20040119", "072730"
    inp, out, key, target = _one_file_run(tmp_path, ds, "--profile", f"basic+{option}")
    written = pydicom.dcmread(target)
    if option == "clean-descriptors":  # the plain description as it came, the name taken out of the other
        assert written.StudyDescription == ds.StudyDescription and written.SeriesDescription != ds.SeriesDescription
    else:
        assert written.StudyTime == ds.StudyTime and written.StudyDate != ds.StudyDate
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    put_back = "SeriesDescription" if option == "clean-descriptors" else keyword
    setattr(written, put_back, ds.data_element(put_back).value)
    written.save_as(target)
    code, report = _verify(out, inp, key, "--no-rescan")
    kept = [f["detail"] for f in report["findings"] if f["kind"] == "original-value-kept"]
    assert code == 1 and len(kept) == 1 and put_back in kept[0], report["counts"]


def test_a_name_in_deid_s_own_method_statement_is_no_finding(tmp_path: Path) -> None:
    """A patient named "Patient": deid writes "Retain Patient Characteristics Option" into the
    De-identification Method Code Sequence (and the profile's name into De-identification Method); that
    text is deid's own, not the input's. The same name anywhere else is still a finding."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Patient^Seventh"
    inp, out, key, target = _one_file_run(tmp_path, ds, "--profile", "basic+retain-patient-characteristics")
    written = pydicom.dcmread(target)
    assert "Patient" in written.DeidentificationMethodCodeSequence[-1].CodeMeaning
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    written.Manufacturer = "Patient Imaging"
    written.save_as(target)
    code, report = _verify(out, inp, key, "--no-rescan")
    details = [f["detail"] for f in report["findings"] if f["kind"] == "identifying-value-in-header"]
    assert code == 1 and details == ["a 7-character identifying value in Manufacturer"], report["findings"]


def test_a_name_found_only_inside_longer_words_is_said_so(tmp_path: Path) -> None:
    """Verify searches bytes, so a patient named "Text" is found in a kept "Context of examination":
    still a finding, whose detail now says the name stands only inside longer words; the same name as a
    word of a kept value (put back in the output) is reported without that note."""
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Text^Zqanna"
    code_item = Dataset()
    code_item.CodeValue, code_item.CodingSchemeDesignator, code_item.CodeMeaning = "99C1", "99LOCAL", "Context of examination"
    ds.AnatomicRegionSequence = [code_item]
    inp, out, key, target = _one_file_run(tmp_path, ds, "--profile", "basic")
    written = pydicom.dcmread(target)
    assert written.AnatomicRegionSequence[0].CodeMeaning == "Context of examination"  # T: no whole word to remove
    code, report = _verify(out, inp, key, "--no-rescan")
    details = [f["detail"] for f in report["findings"] if f["kind"] == "identifying-value-in-header"]
    assert code == 1 and details == ["a 4-character identifying value in CodeMeaning (kept by the profile, as in the input) "
                                     "(only inside longer words)"], report["findings"]
    written.AnatomicRegionSequence[0].CodeMeaning = "Text of examination"  # a whole word, as if T had not run
    written.save_as(target)
    code, report = _verify(out, inp, key, "--no-rescan")
    details = [f["detail"] for f in report["findings"] if f["kind"] == "identifying-value-in-header"]
    assert code == 1 and details == ["a 4-character identifying value in CodeMeaning"], report["findings"]


@pytest.mark.parametrize("retain_uids", [False, True])
def test_safe_private_elements_are_safe_in_kind_not_in_value(tmp_path: Path, retain_uids: bool) -> None:
    """Table E.3.10-1 lists NQHeader's Analyzed Series UID and Return Message as safe: kept by
    ``retain-safe-private``, the UID (here the series' own) is replaced as the series' UID is, and the
    message loses the patient's name; under ``retain-uids`` the UID stays as it came."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    block = ds.private_block(0x0099, "NQHeader", create=True)
    block.add_new(0x02, "UI", ds.SeriesInstanceUID)
    block.add_new(0x05, "LT", f"analysed for {ds.PatientName.family_name}")
    profile = "basic+retain-safe-private" + ("+retain-uids" if retain_uids else "")
    inp, out, key, target = _one_file_run(tmp_path, ds, "--profile", profile)
    written = pydicom.dcmread(target)
    kept = written.private_block(0x0099, "NQHeader")
    assert kept[0x05].value == "analysed for"
    assert kept[0x02].value == written.SeriesInstanceUID
    assert (written.SeriesInstanceUID == ds.SeriesInstanceUID) is retain_uids
    code, report = _verify(out, inp, key, "--no-rescan")
    assert [f for f in report["findings"] if f["kind"] != "identifying-value-in-header" or "(0099" in f["detail"]] == []
    if not retain_uids:  # the series' own UID put back in the private element: verify names where it sits
        kept[0x02].value = ds.SeriesInstanceUID
        written.save_as(target)
        code, report = _verify(out, inp, key, "--no-rescan")
        assert [(f["kind"], f["detail"]) for f in report["findings"] if f["kind"] == "original-uid-kept"] == [
            ("original-uid-kept", "an original UID in (0099,1002)")], report["findings"]


def test_clean_text_holding_a_standard_uid_is_no_finding(tmp_path: Path) -> None:
    """Clean gives a UID in text to replace_uid, which keeps a standard one: a comment naming the SOP
    class is kept as it came, and verify (clean's check of what C keeps) agrees; a comment naming the
    study, put back as it came, is still a finding."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.ImageComments = f"stored as CT image storage {ds.SOPClassUID}"
    inp, out, key, target = _one_file_run(tmp_path, ds, "--profile", "basic+clean-descriptors")
    written = pydicom.dcmread(target)
    assert written.ImageComments == ds.ImageComments
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    written.ImageComments = f"prior study {ds.StudyInstanceUID}"
    source = pydicom.dcmread(inp / "ct.dcm")
    source.ImageComments = written.ImageComments
    source.save_as(inp / "ct.dcm")  # the input said so too: the output kept it as it came
    written.save_as(target)
    record = json.loads((out / "manifest.jsonl").read_text())  # and its record hashed it (the chain breaks: no matter here)
    record["input_sha256"] = hashlib.sha256((inp / "ct.dcm").read_bytes()).hexdigest()
    (out / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    code, report = _verify(out, inp, key, "--no-rescan")
    assert ("original-value-kept", "(0020,4000) ImageComments action C") in {(f["kind"], f["detail"]) for f in report["findings"]}


def test_verify_judges_by_what_the_run_decided_for_unlisted_elements(tmp_path: Path) -> None:
    """An unlisted UID the run replaces (Retrieve Location UID) and an unlisted date it dates (Study
    Update DateTime), found in an output as the input had them (an older deid's output, or one changed
    after the run), are findings: verify asks the run's decision, not only the table's row (which keeps
    both), so it neither collected that UID nor compared that date before."""
    from pydicom.data import get_testdata_file

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.RetrieveLocationUID = "1.2.826.0.1.3680043.99.7.1"
    ds.StudyUpdateDateTime = f"{ds.StudyDate}103000"
    ds.save_as(inp / "a.dcm")
    key = write_key(tmp_path / "k", KEY)
    proc = deid("run", str(inp), str(out), "--profile", "basic", "--workers", "0", "--pixels", "none",
                "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    target = out / read_manifest(out)[0]["output_path"]
    written = pydicom.dcmread(target)
    written.RetrieveLocationUID, written.StudyUpdateDateTime = ds.RetrieveLocationUID, ds.StudyUpdateDateTime
    written.save_as(target)
    code, report = _verify(out, inp, key, "--no-rescan")
    details = {(f["kind"], f["detail"]) for f in report["findings"]}
    assert ("original-uid-kept", "an original UID in RetrieveLocationUID") in details, details
    assert ("original-value-kept", "(0040,E011) RetrieveLocationUID action U") in details, details
    assert ("original-value-kept", "(0008,041F) StudyUpdateDateTime action C") in details, details
    held = [d for k, d in details if k == "identifying-value-in-header"]
    assert held and all("kept by the profile" not in d for d in held), held  # the run dates it: not kept


def test_verify_judges_by_the_profile_files_the_run_used(tmp_path: Path) -> None:
    """A run keeps its profile's files, as they were, in its private folder; ``deid verify`` without
    ``--profile`` judges by them after the user's files have moved or changed (it once refused a user
    profile without ``--profile FILE``, and a changed file would have judged by other rules). A record
    changed since the run is said, as any other profile is; a run without a record asks for the file."""
    from pydicom.data import get_testdata_file

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mid.yaml").write_text("name: site-mid\nversion: '1'\nextends: basic\nrows:\n  - keyword: StationName\n    action: K\n")
    site = rules / "site.yaml"
    site.write_text("name: site\nversion: '3'\nextends: mid.yaml\nrows:\n  - keyword: InstitutionName\n    action: X\n")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.StationName = "ZQRECORD^IDA", "ZQRECORD station"
    inp, out, key, target = _one_file_run(tmp_path, ds, "--profile", str(site))
    assert pydicom.dcmread(target).StationName == "ZQRECORD station"  # the run's rule: kept
    private = tmp_path / "out.private"
    record = private / "profile.json"
    assert record.stat().st_mode & 0o777 == 0o600 and not (out / "profile.json").exists()
    assert [layer["name"] for layer in json.loads(record.read_text())["layers"]] == ["basic", "site-mid", "site"]

    def verify(*extra: str) -> tuple[int, dict, str]:
        proc = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--no-rescan", *extra)
        return proc.returncode, json.loads((out / "verify.json").read_text()), proc.stderr

    code, given, _ = verify("--profile", str(site))
    kept = [f["detail"] for f in given["findings"]]
    assert code == 1 and kept and all(d.endswith("in StationName (kept by the profile, as in the input)") for d in kept), kept
    (rules / "mid.yaml").unlink()  # the user's files change after the run
    site.write_text("name: site\nversion: '4'\nextends: basic\nrows: []\n")
    code, bare, err = verify()
    assert code == 1 and [f["detail"] for f in bare["findings"]] == kept, bare["findings"]
    assert bare["profile"]["sha256"] == bare["run_profile_sha256"] == given["profile"]["sha256"]
    assert "the run used" not in err and "ZQRECORD" not in err
    code, edited, err = verify("--profile", str(site))  # the file as it is now: other rules, said so
    assert edited["profile"]["sha256"] != edited["run_profile_sha256"] and "the run used site" in err, err[-2000:]
    doc = json.loads(record.read_text())
    doc["layers"][1]["text"] = doc["layers"][1]["text"].replace("action: K", "action: X")
    record.write_text(json.dumps(doc))  # a record changed since the run
    code, changed, err = verify()
    assert changed["profile"]["sha256"] != changed["run_profile_sha256"] and "the run used site" in err, err[-2000:]
    record.unlink()  # a run from before deid kept its profile
    proc = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--no-rescan")
    assert proc.returncode == 2 and "give its file with --profile FILE" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("tamper", ["patient-id-back", "surname-as-name", "removed-sequence-back", "uid-after-pixels",
                                    "name-after-pixels"])
def test_what_verify_missed_is_found(tmp_path: Path, tamper: str) -> None:
    """A probe put back what verify did not look at: the input's short Patient ID in Patient ID (terms
    under 4 characters are not searched, and deid's own elements were skipped), the surname alone as
    Patient's Name, a sequence the profile removes (Other Patient IDs) whole, and the study UID or the
    surname in a Digital Signatures Sequence after the pixel data (the header searched ended there)."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = "Q77", "NGATA^AMY"
    other = pydicom.Dataset()
    other.PatientID = "X99"
    ds.OtherPatientIDsSequence = [other]
    inp, out, key, target = _one_file_run(tmp_path, ds)
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    written = pydicom.dcmread(target)
    signature = pydicom.Dataset()
    if tamper == "patient-id-back":
        written.PatientID = "Q77"
    elif tamper == "surname-as-name":
        written.PatientName = "NGATA"
    elif tamper == "removed-sequence-back":
        written.OtherPatientIDsSequence = ds.OtherPatientIDsSequence
    elif tamper == "uid-after-pixels":
        signature.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    else:
        signature.Manufacturer = "NGATA"
    if len(signature):
        written.DigitalSignaturesSequence = [signature]
    written.save_as(target)
    code, report = _verify(out, inp, key, "--no-rescan")
    kinds = {f["kind"] for f in report["findings"]}
    expected = {"patient-id-back": "original-value-kept", "surname-as-name": "original-value-kept",
                "removed-sequence-back": "removed-attribute-present", "uid-after-pixels": "original-uid-kept",
                "name-after-pixels": "identifying-value-in-header"}[tamper]
    assert code == 1 and expected in kinds, report["findings"]
    assert "Q77" not in json.dumps(report) and "NGATA" not in json.dumps(report)


def _copy_inputs(inp: Path, dest: Path) -> Path:
    shutil.copytree(inp, dest)
    return dest


def test_an_input_changed_after_the_run_is_found(clean_run, tmp_path: Path) -> None:
    """An output is judged only against the input its record hashed: an input changed since (here its
    patient's name, so that the output's leak would pass) is ``input-changed``, naming the record's line."""
    inp, out, key = clean_run
    bad, target = _copy_with_first_output(out, tmp_path)
    inp2 = _copy_inputs(inp, tmp_path / "in")
    journal = [json.loads(x) for x in (bad.parent / "bad.private" / "journal.jsonl").read_text().splitlines()]
    line, entry = next((i, j) for i, (r, j) in enumerate(zip(read_manifest(bad), journal), start=1) if r["status"] == "written")
    ds = pydicom.dcmread(target)
    ds.PatientName = "ZQCHANGED^NAME"  # the output leaks a name the changed input now holds
    ds.save_as(target)
    src = pydicom.dcmread(inp2 / entry["input"])
    src.PatientName = "ZQCHANGED^NAME"
    src.save_as(inp2 / entry["input"])
    code, report = _verify(bad, inp2, key, "--no-rescan")
    assert code == 1
    changed = [f for f in report["findings"] if f["kind"] == "input-changed"]
    assert [f["line"] for f in changed] == [line], report["findings"]
    assert entry["input"] not in json.dumps(report) and "ZQCHANGED" not in json.dumps(report)


def test_input_names_swapped_in_the_journal_are_found(clean_run, tmp_path: Path) -> None:
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    path = tmp_path / "bad.private" / "journal.jsonl"
    journal = [json.loads(x) for x in path.read_text().splitlines()]
    journal[0]["input"], journal[1]["input"] = journal[1]["input"], journal[0]["input"]
    path.write_text("".join(json.dumps(j) + "\n" for j in journal))
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1
    assert sorted(f["line"] for f in report["findings"] if f["kind"] == "input-changed") == [1, 2], report["findings"]


@pytest.mark.parametrize("torn, cut", [("manifest", 40), ("journal", 20)])
def test_a_truncated_line_is_a_finding_not_a_crash(clean_run, tmp_path: Path, torn: str, cut: int) -> None:
    """The last record of the manifest or the journal torn: a finding naming its line, verify.json written."""
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    path = bad / "manifest.jsonl" if torn == "manifest" else tmp_path / "bad.private" / "journal.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - cut])
    (bad / "verify.json").unlink(missing_ok=True)
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1
    assert [f["line"] for f in report["findings"] if f["kind"] == f"{torn}-line-unreadable"] == [len(FILES)]


def test_a_linked_folder_in_output_is_found_and_not_followed(clean_run, tmp_path: Path) -> None:
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    (bad / "inputs_link").symlink_to(inp, target_is_directory=True)
    (bad / "file_link").symlink_to(inp / FILES[0])
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1
    assert report["counts"] == {"link-in-output": 2}, report["findings"]


@pytest.mark.parametrize("edit", ["records", "written", "quarantined", "reason", "profile"])
def test_an_edited_run_summary_is_found(clean_run, tmp_path: Path, edit: str) -> None:
    """What ``run.json`` states that the manifest also holds (records, counts by status and by reason,
    the profile) is checked against it; the chain head's digest of run.json finds the edit too."""
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    run = json.loads((bad / "run.json").read_text())
    if edit == "records":
        run["records"] += 1
    elif edit == "reason":
        run["reasons"]["made-up"] = 1
    elif edit == "profile":
        run["profile"]["name"] = "other"
    else:
        run["counts"][edit] += 1
    (bad / "run.json").write_text(json.dumps(run))
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1
    assert report["counts"] == {"run-summary-mismatch": 1, "chain-broken": 1}, report["findings"]


# --------------------------------------------------------------------------- what the probe found verify passing


def _deid_one(tmp_path: Path, ds: pydicom.Dataset, profile: str = "safe-harbor") -> tuple[Path, Path]:
    """``ds`` as an input de-identified in this process, header only: (the input, its output)."""
    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.pipeline import process_batch
    from deid_pipeline.profile import load_profile

    (tmp_path / "in").mkdir(exist_ok=True)
    ds.save_as(tmp_path / "in" / "f.dcm", enforce_file_format=True)
    ctx = RunContext(profile=load_profile(profile), key=KEY, output_dir=tmp_path / "out", pixels="none", device="cpu")
    [res] = process_batch(tmp_path / "in", [Candidate("f.dcm")], ctx)
    assert res.status == "written", res.reason
    return tmp_path / "in" / "f.dcm", tmp_path / "out" / res.output_path


def _kinds(src: Path, out: Path, profile: str = "safe-harbor") -> list[tuple[str, str]]:
    """``verify.check_pair``'s findings for one output: (kind, detail)."""
    from deid_pipeline import verify
    from deid_pipeline.profile import load_profile

    return [(f.kind, f.detail) for f in verify.check_pair(str(src), str(out), 1, {}, load_profile(profile), False, "cpu")]


def _with_meaning(out: Path, meaning: str | bytes, charset: str | None = "keep", **kept: str) -> Path:
    """The output ``out`` rewritten with ``meaning`` as the Code Meaning of an Anatomic Region Sequence
    item (text safe-harbor keeps, T), ``kept`` in elements it keeps (K) and, unless ``keep``, ``charset``
    as its Specific Character Set (None: none declared)."""
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(out)
    if charset is None:
        ds.pop("SpecificCharacterSet", None)
    elif charset != "keep":
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "99C1", "99LOCAL", meaning
    ds.AnatomicRegionSequence = [item]
    for keyword, value in kept.items():
        setattr(ds, keyword, value)
    ds.save_as(out, enforce_file_format=True)
    return out


CYRILLIC = "ЖЩЫКАНАР^ЖЩЫИВАН"  # a synthetic canary, in Cyrillic


@pytest.mark.parametrize("charset", ["ISO_IR 144", "ISO 2022 IR 6\\ISO 2022 IR 87", "GB18030", "ISO_IR 192", None])
def test_a_name_in_another_character_set_is_found(tmp_path: Path, charset: str | None) -> None:
    """An input whose Cyrillic patient's name (ISO_IR 144) an output keeps in a text element, encoded in
    the character set the output declares (ISO-8859-5, ISO 2022 with escape sequences, GB18030, UTF-8),
    or in the input's one where the output declares none: ``identifying-value-in-header``. The search
    encoded each value in UTF-8, Latin-1 and UTF-16 only. The same output with other Cyrillic text: none."""
    from pydicom.charset import convert_encodings, encode_string
    from pydicom.data import get_charset_files

    ds = pydicom.dcmread(get_charset_files("chrRuss.dcm")[0])
    ds.PatientName = CYRILLIC
    src, out = _deid_one(tmp_path, ds)
    assert _kinds(src, out) == []
    surname = CYRILLIC.split("^")[0]
    if charset is None:  # no character set declared: the bytes as the input writes them
        meaning: str | bytes = b"knee " + encode_string(surname, convert_encodings("ISO_IR 144")) + b" "
    else:
        meaning = f"knee {surname}"
    found = _kinds(src, _with_meaning(out, meaning, charset))
    assert [k for k, _ in found] == ["identifying-value-in-header"], found
    assert surname not in json.dumps(found)
    innocent = "knee ПРАВОЕ КОЛЕНО"
    assert _kinds(src, _with_meaning(out, innocent.encode("iso8859_5") if charset is None else innocent, charset)) == []


@pytest.mark.parametrize("name, found_before", [("QX^ZYW", False), ("ZQXLONG^QX", True), ("ZQXLONG^ZQXGIVEN", True)])
def test_a_name_split_across_two_elements_is_found(tmp_path: Path, name: str, found_before: bool) -> None:
    """The surname in one kept element, the given name in another: a part of 4 characters or more was
    found alone; a name whose parts are all shorter (``QX^ZYW``) passed. Each part standing as a word in
    the output's text is ``identifying-value-in-header``; one part alone, or parts inside longer words, not."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = name
    src, out = _deid_one(tmp_path, ds)
    assert _kinds(src, out) == []
    surname, given = name.split("^")
    found = _kinds(src, _with_meaning(out, f"knee {surname} follow-up", Manufacturer=f"{given} Imaging"))
    assert found and {k for k, _ in found} == {"identifying-value-in-header"}, found
    assert not any(surname in d or given in d for _, d in found)
    alone = _kinds(src, _with_meaning(out, f"knee {surname} follow-up", Manufacturer="Zqx Imaging"))
    assert len(alone) == (len(surname) >= 4), alone  # a short part alone: any word
    if not found_before:  # short parts inside longer words: other words
        assert _kinds(src, _with_meaning(out, f"knee {surname}R follow-up", Manufacturer=f"{given}S Imaging")) == []


@pytest.mark.parametrize("keyword, value, written", [
    ("PatientTelephoneNumbers", "555-123-4567", "(555) 123 4567"),
    ("PatientTelephoneNumbers", "555-123-4567", "555.123.4567"),
    ("PatientTelephoneNumbers", "555-123-4567", "5551234567"),
    ("PatientTelephoneNumbers", "555-123-4567", "+1 555 123 4567"),
    ("PatientTelephoneNumbers", "(555) 123-4567", "tel 555 1234567"),
    ("PatientAddress", "12 Main Street", "12 MAIN ST"),
    ("PatientAddress", "12 Main Street^Springfield", "seen at 12 main st., Springfield"),
    ("PatientAddress", "4 North Oak Avenue", "4 N. OAK AVE"),
])
@pytest.mark.parametrize("profile", ["basic", "safe-harbor"])
def test_a_phone_number_or_address_in_another_format_is_found(tmp_path: Path, keyword: str, value: str, written: str,
                                                              profile: str) -> None:
    """The input's telephone number or address written in another format in a kept element: passed
    (the search looked for the value as written; safe-harbor's patterns found some numbers as any
    number, ``identifier-in-kept-text``, basic none). A number is compared by its digits (7 or more), an
    address line by its words with street words abbreviated; another number or street: no finding."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    setattr(ds, keyword, value)
    src, out = _deid_one(tmp_path, ds, profile)
    assert _kinds(src, out, profile) == []
    found = _kinds(src, _with_meaning(out, f"knee {written} follow-up"), profile)
    assert [k for k, _ in found if k != "identifier-in-kept-text"] == ["identifying-value-in-header"], found
    assert not any(written in d or value in d for _, d in found)
    other = "555 123 4568 or 555-1234" if keyword == "PatientTelephoneNumbers" else "12 Main Station, 21 Main St"
    assert [k for k, _ in _kinds(src, _with_meaning(out, f"knee {other} follow-up"), profile)
            if k != "identifier-in-kept-text"] == []


@pytest.mark.parametrize("value, written", [
    ("+1 555 123 4567", "555-123-4567"),
    ("+1 555 123 4567", "(555) 1234567"),
    ("+1 (555) 123-4567", "5551234567"),
    ("+15551234567", "555.123.4567"),
    ("001 555 123 4567", "555 123 4567"),
    ("1-555-123-4567", "(555) 123-4567"),
    ("555-123-4567", "+15551234567"),
    ("555-123-4567", "0015551234567"),
    ("555-123-4567", "1-555-123-4567"),
    ("555-123-4567", "001 555 123 4567"),
    ("+44 20 7946 0958", "020 7946 0958"),
    ("+442079460958", "(020) 7946-0958"),
    ("020 7946 0958", "+44 20 7946 0958"),
    ("020 7946 0958", "0044 20 7946 0958"),
])
@pytest.mark.parametrize("profile", ["basic", "safe-harbor"])
def test_a_phone_number_with_or_without_its_country_code_is_found(tmp_path: Path, value: str, written: str,
                                                                  profile: str) -> None:
    """The input's telephone number written in a kept element with its country code (``+1``, ``001``,
    ``1-``, ``+44``) where the input had none, or without the input's (a national trunk ``0`` in its
    place): ``identifying-value-in-header``. Compared by all its digits, an input with a country code
    passed written without it, and one without passed written with one when no separator followed
    the code (``+15551234567``). The same written with another last digit, or after another digit
    (``9`` + the number): no finding."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientTelephoneNumbers = value
    src, out = _deid_one(tmp_path, ds, profile)
    assert _kinds(src, out, profile) == []
    found = _kinds(src, _with_meaning(out, f"call {written} re knee"), profile)
    assert [k for k, _ in found if k != "identifier-in-kept-text"] == ["identifying-value-in-header"], found
    assert not any(written in d or value in d for _, d in found)
    for other in (written[:-1] + str((int(written[-1]) + 1) % 10), "9" + "".join(c for c in written if c.isdigit())):
        assert [k for k, _ in _kinds(src, _with_meaning(out, f"call {other} re knee"), profile)
                if k != "identifier-in-kept-text"] == [], other


def _with_bytes(out: Path, where: str, text: str, dest: Path) -> Path:
    """The output ``out`` with ``text`` (between binary bytes) in a non-text element, written to ``dest``:
    the ICC Profile (OB, which safe-harbor keeps), the HPGL Document (OB, in UTF-16-LE), a private
    element without creator in an implicit VR file (read back as UN), or a LO in an item of an item."""
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(out)
    blob = bytes(range(256)) * 4
    if where == "ICCProfile":
        ds.add_new(0x00282000, "OB", blob[:300] + text.encode() + b"\x00" + blob[300:])
    elif where == "HPGLDocument":
        ds.add_new(0x00686300, "OB", b"\x00" + text.encode("utf-16-le") + b"\x00\x00" + blob)
    elif where == "(0009,1010)":
        ds.add_new(0x00091010, "LO", text)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    else:
        inner, item = Dataset(), Dataset()
        inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "99C2", "99LOCAL", text
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "99C1", "99LOCAL", "knee"
        item.AnatomicRegionModifierSequence = [inner]
        ds.AnatomicRegionSequence = [item]
    ds.save_as(dest, enforce_file_format=True)
    if where == "(0009,1010)":
        assert pydicom.dcmread(dest)[0x00091010].VR == "UN"
    return dest


@pytest.mark.parametrize("where", ["ICCProfile", "HPGLDocument", "(0009,1010)", "CodeMeaning"])
@pytest.mark.parametrize("keyword, value, written", [
    ("PatientName", "QX^ZYW", "seen ZYW, QX today"),
    ("PatientAddress", "12 Main Street", "seen at 12 MAIN ST today"),
    ("PatientName", "ZQXLONG^ZQXGIVEN", "seen ZQXLONG^ZQXGIVEN today"),
])
def test_a_name_or_address_in_a_non_text_element_is_found(tmp_path: Path, where: str, keyword: str, value: str,
                                                          written: str) -> None:
    """The input's name or address kept in an element that is no text (OB, UN) of the output:
    ``identifying-value-in-header`` naming that element. A name with short parts or an address line in
    another format there passed (the comparison read text elements only; a LO two sequences down it
    read), and a value as written there was said to lie "between elements". One part alone, another
    street, binary bytes: no finding."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    setattr(ds, keyword, value)
    src, out = _deid_one(tmp_path, ds)
    assert _kinds(src, out) == []
    found = _kinds(src, _with_bytes(out, where, written, tmp_path / "planted.dcm"))
    held = [d for k, d in found if k == "identifying-value-in-header"]
    assert held and {k for k, _ in found} <= {"identifying-value-in-header", "removed-attribute-present",
                                              "private-element-kept"}, found
    assert not any(value in d or written in d or part in d for _, d in found for part in value.split("^"))
    if written.split()[1] == value:  # found as written: the element holding it is named
        assert all(f"in {where}" in d for d in held), held
    other = "seen ZYW today, 12 Main Station" if keyword == "PatientName" else "seen at 21 MAIN ST today"
    assert [k for k, _ in _kinds(src, _with_bytes(out, where, other, tmp_path / "other.dcm"))
            if k == "identifying-value-in-header"] == []


def _with_report(out: Path, dest: Path) -> Path:
    bad = _copy_run(out, dest)
    proc = deid("report", str(bad), "--quiet")
    assert proc.returncode == 0 and (bad / "report.html").exists(), proc.stderr[-2000:]
    return bad


@pytest.mark.parametrize("where", ["report.html", "run.json"])
def test_an_identifying_value_in_deid_s_own_files_is_found(clean_run, tmp_path: Path, where: str) -> None:
    """``report.html`` (which ``deid report`` writes into OUTPUT) and ``run.json`` were verify's own
    files, never searched: an input's name written into either is ``identifying-value-in-bytes``, naming
    the file; the report as deid writes it is no finding."""
    inp, out, key = clean_run
    bad = _with_report(out, tmp_path / "bad")
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    name = str(pydicom.dcmread(inp / FILES[1]).PatientName)
    written = name.replace("^", ", ").title()
    path = bad / where
    if where == "report.html":
        path.write_text(path.read_text().replace("</body>", f"<p>{written} &amp; family</p></body>"))
    else:
        run = json.loads(path.read_text())
        run["notes"].append(f"checked with {written}")
        path.write_text(json.dumps(run))
    code, report = _verify(bad, inp, key, "--no-rescan")
    details = [f["detail"] for f in report["findings"] if f["kind"] == "identifying-value-in-bytes"]
    assert code == 1 and details and all(where in d for d in details), report["findings"]
    # an edited run.json also breaks the digest its chain head signs
    assert set(report["counts"]) == {"identifying-value-in-bytes"} | ({"chain-broken"} if where == "run.json" else set()), report["findings"]
    assert name.split("^")[0] not in json.dumps(report)


@pytest.mark.parametrize("where", ["reason", "field", "torn"])
def test_an_identifying_value_in_the_manifest_is_found(clean_run, tmp_path: Path, where: str) -> None:
    """``manifest.jsonl`` was never searched for the inputs' values: an input's name written into a
    record (a reason's message, a field deid does not write, a line that no longer reads as JSON),
    another input's record included, is ``identifying-value-in-bytes`` naming the manifest and the
    line, never the value. The manifest as deid writes it: no such finding."""
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    name = str(pydicom.dcmread(inp / FILES[1]).PatientName)  # NGUYEN^WEI, planted in the first record
    written = ", ".join(reversed(name.split("^"))).title()
    manifest = bad / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    rec = json.loads(lines[0])
    if where == "reason":  # deid's prose: a name's words together (one word of letters alone is any word there)
        rec["reason"] = {"code": "not-dicom", "message": f"could not read the file of {name.replace('^', ' ').title()}"}
        lines[0] = json.dumps(rec)
    elif where == "field":
        rec["note"] = {"seen": [f"{written} follow-up"]}
        lines[0] = json.dumps(rec)
    else:
        lines[0] = lines[0][:200] + f" {written} "
    manifest.write_text("\n".join(lines) + "\n")
    code, report = _verify(bad, inp, key, "--no-rescan")
    held = [f for f in report["findings"] if f["kind"] == "identifying-value-in-bytes"]
    assert code == 1 and held and all(f["line"] == 1 and "manifest.jsonl" in f["detail"] for f in held), report["findings"]
    assert name.split("^")[0].lower() not in json.dumps(report).lower()


def test_an_unreadable_run_summary_is_a_finding_not_a_crash(clean_run, tmp_path: Path) -> None:
    """A truncated ``run.json`` crashed verify (an internal error, no verify.json): now ``run-summary-unreadable``
    (and ``chain-broken``: no head to check the chain against, as for a missing run.json), every output
    still checked (against the profile the run recorded in its private folder)."""
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    text = (bad / "run.json").read_text()
    (bad / "run.json").write_text(text[: len(text) // 2])
    (bad / "verify.json").unlink(missing_ok=True)
    code, report = _verify(bad, inp, key, "--no-rescan")
    assert code == 1 and report["counts"] == {"chain-broken": 1, "run-summary-unreadable": 1}, report["findings"]
    assert report["checked_outputs"] == len(FILES)


@pytest.mark.parametrize("edit", ["pixels-none", "pixel-mode"])
def test_run_summary_pixel_settings_are_checked_against_the_records(clean_run, tmp_path: Path, edit: str) -> None:
    """``run.json`` stating no image scanned (``pixels: none``) where records were scanned, or another
    pixel mode than the records': ``run-summary-mismatch``."""
    inp, out, key = clean_run
    bad = _copy_run(out, tmp_path / "bad")
    run = json.loads((bad / "run.json").read_text())
    assert any((r.get("pixel") or {}).get("scanned") for r in read_manifest(bad))
    run["pixels" if edit == "pixels-none" else "pixel_mode"] = "none" if edit == "pixels-none" else "phi-text"
    (bad / "run.json").write_text(json.dumps(run))
    code, report = _verify(bad, inp, key, "--no-rescan")
    # the edit also breaks the digest the chain head signs (02bce9c)
    assert code == 1 and report["counts"] == {"run-summary-mismatch": 1, "chain-broken": 1}, report["findings"]


def test_a_header_only_run_stated_as_scanning_every_image_is_found(tmp_path: Path) -> None:
    """A ``--pixels none`` run whose ``run.json`` states ``pixels: all`` (its records: not scanned,
    ``pixels-none``): ``run-summary-mismatch``; as written, no finding."""
    from pydicom.data import get_testdata_file

    inp, out, key, _ = _one_file_run(tmp_path, pydicom.dcmread(get_testdata_file("CT_small.dcm")))
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 0, report["findings"]
    run = json.loads((out / "run.json").read_text())
    run["pixels"] = "all"
    (out / "run.json").write_text(json.dumps(run))
    code, report = _verify(out, inp, key, "--no-rescan")
    assert code == 1 and report["counts"] == {"run-summary-mismatch": 1, "chain-broken": 1}, report["findings"]
