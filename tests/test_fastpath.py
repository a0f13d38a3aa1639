"""The header-only fast path (``deid_pipeline.fastpath``) writes what the pydicom path writes, byte for
byte, with the same manifest fields; files it does not handle go the pydicom way."""

from __future__ import annotations

import io
import os
import shutil
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from deid_pipeline import fastpath, pipeline, tags
from deid_pipeline.config import RunContext
from deid_pipeline.discover import Candidate
from deid_pipeline.profile import load_profile
from deid_pipeline.pseudonym import Pseudonymizer

KEY = b"fast-path-test-key-0123456789abcdef"
SOURCES = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm", "rtplan.dcm",
    "emri_small.dcm", "SC_rgb.dcm", "ExplVR_LitEndNoMeta.dcm", "MR2_UNCI.dcm", "liver_1frame.dcm",
    "693_J2KI.dcm", "US1_J2KR.dcm", "rtstruct.dcm", "waveform_ecg.dcm",
]
LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}


def _elem(tag: int, vr: str, value: bytes, implicit: bool, reserved: bytes = b"\0\0") -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<L", len(value)) + value
    if vr in LONG:
        return head + vr.encode() + reserved + struct.pack("<L", len(value)) + value
    return head + vr.encode() + struct.pack("<H", len(value)) + value


def _awkward(path: Path, implicit: bool, n: int) -> None:
    """A file whose kept values pydicom re-encodes differently from how they were written: odd and
    NUL padding, trailing spaces inside multi-values, a space-padded UID, an odd-length OB, reserved
    bytes that are not zero; an undefined-length sequence with an undefined-length item; a private
    block; an empty element."""
    uid = f"1.2.826.0.1.3680043.10.77.{n}".encode()
    items = _elem(0x00081150, "UI", b"1.2.840.10008.5.1.4.1.1.2\0", implicit) + _elem(0x00081155, "UI", b"1.2.3.4 ", implicit)
    sequence = (
        struct.pack("<HH", 0x0008, 0x1140)
        + (b"" if implicit else b"SQ\0\0")
        + b"\xff\xff\xff\xff"
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + items + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )
    elements = [
        _elem(0x00080005, "CS", b"ISO_IR 100", implicit),
        _elem(0x00080008, "CS", b"ORIGINAL\\PRIMARY\\AXIAL ", implicit),
        _elem(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.2\0", implicit),
        _elem(0x00080018, "UI", uid + b"\0" * (len(uid) % 2), implicit),
        _elem(0x00080020, "DA", b"20200101", implicit),
        _elem(0x00080060, "CS", b"CT", implicit),
        _elem(0x00080070, "LO", b"ACME \\ MEDICAL ", implicit),
        _elem(0x00081030, "LO", b"HEAD\0", implicit),
        sequence,
        _elem(0x00100010, "PN", b"DOE^JOHN", implicit),
        _elem(0x00100020, "LO", f"PID{n:04d}".encode(), implicit),
        _elem(0x00180015, "CS", b"HEAD", implicit),
        _elem(0x00180050, "DS", b" 1.5", implicit),
        _elem(0x00181030, "LO", b"PROTO ", implicit),
        _elem(0x00189004, "CS", b"", implicit),
        _elem(0x0020000D, "UI", b"1.2.826.0.1.3680043.10.78.1\0", implicit),
        _elem(0x0020000E, "UI", b"1.2.826.0.1.3680043.10.79.1 ", implicit),
        _elem(0x00200013, "IS", b"1.0 ", implicit),
        _elem(0x00204000, "LT", f"scan of PID{n:04d}".encode(), implicit),
        _elem(0x00280002, "US", struct.pack("<H", 1), implicit),
        _elem(0x00280004, "CS", b"MONOCHROME2 ", implicit),
        _elem(0x00280010, "US", struct.pack("<H", 1), implicit),
        _elem(0x00280011, "US", struct.pack("<H", 3), implicit),
        _elem(0x00280100, "US", struct.pack("<H", 8), implicit),
        _elem(0x00280101, "US", struct.pack("<H", 8), implicit),
        _elem(0x00280102, "US", struct.pack("<H", 7), implicit),
        _elem(0x00280103, "US", struct.pack("<H", 0), implicit),
        _elem(0x00281050, "DS", b"40\\400 ", implicit),
        _elem(0x00290010, "LO", b"ACME 1.0", implicit),
        _elem(0x00291001, "UN", b"\x01\x02\x03", implicit),
        _elem(0x7FE00010, "OB", b"\x01\x02\x03", implicit, reserved=b"\x01\x02"),
    ]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = uid.decode()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + buf.getvalue() + b"".join(elements))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fast-in")
    for i, name in enumerate(SOURCES):
        shutil.copy(get_testdata_file(name), root / f"{i:02d}_{name}")
    for i in range(4):
        _awkward(root / f"awkward{i}.dcm", implicit=bool(i % 2), n=i)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "M\u00fcller^Hans"  # kept non-ASCII name: the character set changes
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.save_as(root / "latin1.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "121071", "DCM"  # a coded identity clean would take for a number
    code.CodeMeaning = f"Protocol for {ds.PatientName.family_name}"  # unlisted text in a sequence C cleans
    request = Dataset()
    request.ScheduledProtocolCodeSequence = [code]
    request.RequestedProcedureDescription = "CT chest"
    ds.RequestAttributesSequence = [request]
    ds.save_as(root / "request.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    family = str(ds.PatientName.family_name).encode()
    ds.add_new(0x0016002B, "OB", b"owner " + family + b"\0")  # Maker Note: a camera's bytes
    ds.add_new(0x00340007, "OB", bytes.fromhex("0000659254000000002a"))  # Frame Origin Timestamp (PTP)
    ds.add_new(0x04000310, "OB", b"token 20240101 " + family + b"\0")  # Certified Timestamp
    ds.add_new(0x50000005, "US", 1)  # a curve with a recording and its comments
    ds.add_new(0x50000010, "US", 2)
    ds.add_new(0x5000200C, "OW", b"voice of " + family + b"\0")
    ds.add_new(0x5000200E, "LT", b"dictated for " + family)
    ds.add_new(0x50003000, "OW", b"\1\0\2\0")
    ds.save_as(root / "opaque.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, meaning in (("AnatomicRegionSequence", "Knee of {}"), ("PerformedProtocolCodeSequence", "Protocol for {}, CT")):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "99K1", "99LOCAL"
        code.CodeMeaning = meaning.format(ds.PatientName.family_name)  # kept unlisted (basic), by the keep list (safe-harbor)
        setattr(ds, keyword, [code])
    ds.save_as(root / "meanings.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    staff, operator, concept = Dataset(), Dataset(), Dataset()  # a staff number and a name in D sequences
    staff.CodeValue, staff.CodingSchemeDesignator, staff.CodeMeaning = "EMP778899", "L", "Olga Opson"
    operator.PersonIdentificationCodeSequence = [staff]
    ds.OperatorIdentificationSequence = [operator]
    ds.PersonIdentificationCodeSequence = [staff]
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121071", "DCM", "Finding"
    item = Dataset()
    item.RelationshipType, item.ValueType, item.ConceptNameCodeSequence = "CONTAINS", "TEXT", [concept]
    ds.ContentSequence = [item]  # D too, but its content is listed element by element: its structure stays
    ds.save_as(root / "staffcode.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.ImageComments = f"prior study {ds.StudyInstanceUID}, CT storage {ds.SOPClassUID}, v 2.1.0"
    ds.save_as(root / "uidtext.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    ds.MultiFrameSourceSOPInstanceUID = sop  # unlisted UIDs: the instance's own, its frame of reference's,
    ds.TargetFrameOfReferenceUID = ds.FrameOfReferenceUID  # the site's repository
    ds.RetrieveLocationUID = "1.2.826.0.1.3680043.99.7.1"
    ds.CodingSchemeUID = "2.16.840.1.113883.6.96"  # a kind (SNOMED CT): kept
    ds.RetrieveURL = f"https://pacs.example.org/dicomweb/studies/{study}/series/{series}"
    ds.ContactURI = f"mailto:{str(ds.PatientName.family_name).lower()}@example.org"
    ds.EvaluatorName = "Ngata^Wiremu"  # a person's name the table does not list
    ref = Dataset()
    ref.SeriesInstanceUID, ref.RetrieveURL = series, ds.RetrieveURL
    ds.ReferencedSeriesSequence = [ref]
    ds.save_as(root / "locators.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyUpdateDateTime = f"{ds.StudyDate}103000"  # unlisted dates: the study's own day
    ds.SecondaryReviewDate = ds.StudyDate
    ds.save_as(root / "dates.dcm")
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()  # DIMSE command elements in a file
    meta_end = 144 + struct.unpack("<I", raw[140:144])[0]
    command = b"".join(_elem(0x0000 << 16 | e, vr, value, False) for e, vr, value in (
        (0x0902, "LO", b"sent for ZEBULON"), (0x1000, "UI", b"1.2.826.0.1.3680043.99.12\0")))
    (root / "command.dcm").write_bytes(raw[:meta_end] + command + raw[meta_end:])
    from test_codestream_metadata import _frames, _planted  # frames with a name in their codestreams' metadata

    for name in ("SC_rgb_jpeg_dcmtk.dcm", "MR_small_jpeg_ls_lossless.dcm", "US1_J2KR.dcm"):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.PixelData = encapsulate([_planted(f) for f in _frames(ds)], has_bot=True)
        ds.save_as(root / f"codestream_{name}", enforce_file_format=True)
    return root


def _run(root: Path, out: Path, profile: str, monkeypatch: pytest.MonkeyPatch, fast: bool) -> dict[str, Any]:
    """Outputs and records per input; ``fast=False``: the reference, pydicom converting and encoding every
    element that is written (no fast path, no raw element kept unconverted)."""
    if not fast:
        monkeypatch.setattr(fastpath, "scan", lambda data, profile: None)
        monkeypatch.setattr(tags, "kept_raw_is_exact", lambda ds, raw, vr: False)
    out.mkdir()
    ctx = RunContext(profile=load_profile(profile), key=KEY, output_dir=out, pixels="none", device="cpu")
    cands = [Candidate(p.name) for p in sorted(root.iterdir())]
    results = pipeline.process_batch(root, cands, ctx)
    monkeypatch.undo()
    seen = {}
    for cand, res in zip(cands, results):
        record = {k: v for k, v in asdict(res).items() if k != "timings_ms"}
        record["timing_keys"] = sorted(res.timings_ms)
        data = (out / res.output_path).read_bytes() if res.output_path else None
        seen[cand.rel] = (record, data)
    return seen


@pytest.mark.parametrize("profile", ["safe-harbor", "basic", "basic+retain-uids+retain-long-modified-dates",
                                     "basic+clean-descriptors", "basic+clean-graphics"])
def test_fast_path_writes_the_pydicom_bytes(inputs: Path, tmp_path: Path, profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = _run(inputs, tmp_path / "slow", profile, monkeypatch, fast=False)
    quick = _run(inputs, tmp_path / "fast", profile, monkeypatch, fast=True)
    assert quick.keys() == slow.keys()
    for name in slow:
        assert quick[name][0] == slow[name][0], name
        assert quick[name][1] == slow[name][1], name


@pytest.mark.parametrize("fast", [True, False])
def test_unlisted_text_in_a_cleaned_sequence_is_cleaned(inputs: Path, tmp_path: Path, fast: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """basic keeps public elements its table does not list; inside a sequence the profile cleans (the
    Clean Descriptors Option's Request Attributes Sequence) their text is cleaned too: a Code Meaning
    naming the patient loses the name, on both paths; its code and the rest of the item stay."""
    seen = _run(inputs, tmp_path / "out", "basic+clean-descriptors", monkeypatch, fast=fast)
    record, data = seen["request.dcm"]
    assert record["status"] == "written"
    written = pydicom.dcmread(io.BytesIO(data))
    request = written.RequestAttributesSequence[0]
    code = request.ScheduledProtocolCodeSequence[0]
    family = str(pydicom.dcmread(inputs / "request.dcm").PatientName.family_name)
    assert family.lower() not in code.CodeMeaning.lower() and code.CodeMeaning.startswith("Protocol for")
    assert (code.CodeValue, code.CodingSchemeDesignator, request.RequestedProcedureDescription) == ("121071", "DCM", "CT chest")
    if fast:  # this file is one the fast path takes
        assert fastpath.scan((inputs / "request.dcm").read_bytes(), load_profile("basic+clean-descriptors")) is not None


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "basic+clean-graphics", "basic+retain-long-modified-dates"])
def test_clean_cannot_keep_bytes_it_cannot_read(inputs: Path, tmp_path: Path, profile: str, fast: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """C on bytes (a Maker Note, a PTP Frame Origin Timestamp, a Certified Timestamp) writes D's dummy;
    C on a curve (its recording, its comments, its points: none scanned) removes the curve group."""
    seen = _run(inputs, tmp_path / "out", profile, monkeypatch, fast=fast)
    record, data = seen["opaque.dcm"]
    assert record["status"] == "written" and data is not None
    family = str(pydicom.dcmread(inputs / "opaque.dcm").PatientName.family_name).encode()
    assert family not in data
    written = pydicom.dcmread(io.BytesIO(data))
    for tag in (0x0016002B, 0x00340007, 0x04000310):
        assert tag not in written or written[tag].value == b"\0\0", hex(tag)
    assert 0x00340007 in written  # basic's D for this one: the option keeps the attribute, not its time
    assert not [t for t in written.keys() if t >> 16 == 0x5000]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("profile", ["safe-harbor", "basic"])
def test_kept_text_loses_the_files_own_identifying_values(inputs: Path, tmp_path: Path, profile: str, fast: bool,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Free text a profile keeps only as unlisted or by its keep list (a Code Meaning naming the patient)
    is kept without the file's own identifying values (T); the code and the rest of the meaning stay."""
    seen = _run(inputs, tmp_path / "out", profile, monkeypatch, fast=fast)
    record, data = seen["meanings.dcm"]
    assert record["status"] == "written" and data is not None
    family = str(pydicom.dcmread(inputs / "meanings.dcm").PatientName.family_name)
    assert family.encode() not in data
    written = pydicom.dcmread(io.BytesIO(data))
    assert written.AnatomicRegionSequence[0].CodeMeaning == "Knee of"
    assert written.PerformedProtocolCodeSequence[0].CodeMeaning == "Protocol for CT"
    assert written.AnatomicRegionSequence[0].CodeValue == "99K1" and written.Manufacturer == "GE MEDICAL SYSTEMS"
    if fast:
        assert fastpath.scan((inputs / "meanings.dcm").read_bytes(), load_profile(profile)) is not None


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("profile", ["basic", "safe-harbor", "basic+clean-descriptors"])
def test_a_sequence_replaced_with_a_dummy_keeps_no_code_or_name(inputs: Path, tmp_path: Path, profile: str,
                                                               fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Person Identification Code Sequence is D (a dummy), at the top level and inside the Operator
    Identification Sequence (X/D): the staff number in its Code Value and the name in its Code Meaning
    (which no header element holds) were kept, as text the table does not list; now a dummy. An SR
    Content Sequence (D, its content listed element by element) keeps its Concept Name code."""
    seen = _run(inputs, tmp_path / "out", profile, monkeypatch, fast=fast)
    record, data = seen["staffcode.dcm"]
    assert record["status"] == "written" and data is not None
    assert b"EMP778899" not in data and b"Opson" not in data
    written = pydicom.dcmread(io.BytesIO(data))
    for code in (written.PersonIdentificationCodeSequence[0],
                 written.OperatorIdentificationSequence[0].PersonIdentificationCodeSequence[0]):
        assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("ANONYMOUS",) * 3
    assert written.ContentSequence[0].ConceptNameCodeSequence[0].CodeValue == "121071"


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "basic+clean-descriptors+retain-uids"])
def test_a_uid_in_cleaned_text_is_replaced_as_the_headers_are(inputs: Path, tmp_path: Path, profile: str, fast: bool,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Clean on text naming a study by its UID: the UID is given whole, replaced by the same keyed UID
    as the header's Study Instance UID (kept as it came under retain-uids), where it lost its long parts
    as identifiers before; a standard UID and a version number stay."""
    seen = _run(inputs, tmp_path / "out", profile, monkeypatch, fast=fast)
    written = pydicom.dcmread(io.BytesIO(seen["uidtext.dcm"][1]))
    source = pydicom.dcmread(inputs / "uidtext.dcm")
    assert (written.StudyInstanceUID == source.StudyInstanceUID) is profile.endswith("retain-uids")
    assert written.ImageComments == f"prior study {written.StudyInstanceUID}, CT storage {source.SOPClassUID}, v 2.1.0"


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("profile", ["basic", "basic+retain-uids", "safe-harbor"])
def test_unlisted_uids_and_locators_do_not_keep_the_original(inputs: Path, tmp_path: Path, profile: str, fast: bool,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Public elements the table does not list: a UID of an instance (Multi-frame Source SOP Instance
    UID, Target Frame of Reference UID, a Retrieve Location UID) is replaced with the file's other UIDs,
    the same keyed UID as the element it copies (kept under retain-uids); a coding scheme's UID stays; a
    Retrieve URL (the PACS host, the original study UID) and a Contact URI go, and so does a person's
    name (PN) the table does not list. basic kept them all as they came."""
    seen = _run(inputs, tmp_path / "out", profile, monkeypatch, fast=fast)
    record, data = seen["locators.dcm"]
    assert record["status"] == "written" and data is not None
    source = pydicom.dcmread(inputs / "locators.dcm")
    written = pydicom.dcmread(io.BytesIO(data))
    retain = profile.endswith("retain-uids")
    assert written.MultiFrameSourceSOPInstanceUID == written.SOPInstanceUID
    assert written.TargetFrameOfReferenceUID == written.FrameOfReferenceUID
    assert (written.SOPInstanceUID == source.SOPInstanceUID) is retain
    assert (written.RetrieveLocationUID == source.RetrieveLocationUID) is retain
    assert written.CodingSchemeUID == "2.16.840.1.113883.6.96" or profile == "safe-harbor"  # its UI row: every UID
    for keyword in ("RetrieveURL", "ContactURI", "EvaluatorName"):
        assert keyword not in written, keyword
    assert "RetrieveURL" not in written.ReferencedSeriesSequence[0]
    assert b"example.org" not in data and b"Ngata" not in data
    if fast:
        assert fastpath.scan((inputs / "locators.dcm").read_bytes(), load_profile(profile)) is not None


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("profile", ["basic", "basic+retain-long-modified-dates", "basic+retain-long-full-dates", "safe-harbor"])
def test_unlisted_dates_are_dated_as_the_listed_ones(inputs: Path, tmp_path: Path, profile: str, fast: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A date the table does not list (Study Update DateTime, Secondary Review Date) is the study's day:
    removed where the profile removes the study's dates, moved by the same offset where it shifts them,
    cut to the year where it keeps the year, kept only where it keeps the study's dates. basic kept them,
    the real day beside a shifted Study Date."""
    seen = _run(inputs, tmp_path / "out", profile, monkeypatch, fast=fast)
    record, data = seen["dates.dcm"]
    assert record["status"] == "written" and data is not None
    source = pydicom.dcmread(inputs / "dates.dcm")
    written = pydicom.dcmread(io.BytesIO(data))
    update, review = written.get("StudyUpdateDateTime", ""), written.get("SecondaryReviewDate", "")
    if profile == "basic":
        assert (update, review) == ("", "")
    elif profile.endswith("modified-dates"):
        assert written.StudyDate != source.StudyDate and (update[:8], review) == (written.StudyDate, written.StudyDate)
    elif profile.endswith("full-dates"):
        assert (update, review) == (source.StudyUpdateDateTime, source.SecondaryReviewDate)
    else:
        assert source.StudyDate[:4] == update[:4] and source.StudyDate not in data.decode("latin-1")
    if fast:
        assert fastpath.scan((inputs / "dates.dcm").read_bytes(), load_profile(profile)) is not None


def test_fast_path_takes_codestream_metadata_out_as_the_pydicom_path(inputs: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames carrying a name in their codestreams' metadata are taken by the fast path, which writes
    them without it (the parity test checks its bytes are the pydicom path's)."""
    profile = load_profile("basic")
    seen = _run(inputs, tmp_path / "out", "basic", monkeypatch, fast=True)
    for name in [n for n in seen if n.startswith("codestream_")]:
        assert fastpath.scan((inputs / name).read_bytes(), profile) is not None, name
        record, data = seen[name]
        assert record["pixel"]["codestream_metadata_removed"] >= 1 and b"QUARTERMAINE" not in data, name


@pytest.mark.parametrize("fast", [True, False])
def test_command_elements_in_a_file_are_removed(inputs: Path, tmp_path: Path, fast: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """DIMSE command elements (group 0000: an Error Comment, an Affected SOP Instance UID) stored in a
    file made pydicom's writer refuse it: internal-error, the file not written. They have no place in a
    file (PS3.10): removed, the file written."""
    seen = _run(inputs, tmp_path / "out", "basic", monkeypatch, fast=fast)
    record, data = seen["command.dcm"]
    assert record["status"] == "written", record["reason"]
    assert not [t for t in pydicom.dcmread(io.BytesIO(data)).keys() if t >> 16 == 0] and b"ZEBULON" not in data


def test_a_profile_may_keep_its_kept_text_exact(inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``kept_text_terms: keep`` (a site whose labels must stay exact) writes such text as it came."""
    user = tmp_path / "exact.yaml"
    user.write_text("name: exact\nversion: '1'\nextends: safe-harbor\nsettings:\n  kept_text_terms: keep\nrows: []\n")
    seen = _run(inputs, tmp_path / "out", str(user), monkeypatch, fast=True)
    written = pydicom.dcmread(io.BytesIO(seen["meanings.dcm"][1]))
    family = str(pydicom.dcmread(inputs / "meanings.dcm").PatientName.family_name)
    assert written.AnatomicRegionSequence[0].CodeMeaning == f"Knee of {family}"


def test_fast_path_is_taken_and_declines(inputs: Path) -> None:
    profile = load_profile("safe-harbor")
    taken = {p.name for p in inputs.iterdir() if fastpath.scan(p.read_bytes(), profile) is not None}
    assert {"00_CT_small.dcm", "02_MR_small_implicit.dcm", "awkward0.dcm", "awkward1.dcm"} <= taken
    assert "latin1.dcm" not in taken  # a kept non-ASCII name would change the character set
    assert fastpath.scan(Path(get_testdata_file("DICOMDIR")).read_bytes(), profile) is None
    truncated = Path(get_testdata_file("CT_small.dcm")).read_bytes()[:-100]
    assert fastpath.scan(truncated, profile) is None


@pytest.mark.parametrize("profile", ["safe-harbor", "basic", "basic+clean-descriptors"])
def test_a_file_the_fast_path_takes_it_also_finishes(inputs: Path, profile: str) -> None:
    """The pipeline hands a file back to the pydicom path when the fast de-identification raises, which
    keeps the output right but hides the error and halves the speed (a missing attribute once sent 3 of
    5 benchmark files back): every file the scan takes must finish on the fast path."""
    prof = load_profile(profile)
    for path in sorted(inputs.iterdir()):
        scanned = fastpath.scan(path.read_bytes(), prof)
        if scanned is not None:
            scanned.deidentify(prof, Pseudonymizer(KEY), scanned.phi_terms(prof))
            assert scanned.body, path.name


def test_fast_path_error_falls_back(inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in the fast de-identification hands the file to the pydicom path: same output."""
    slow = _run(inputs, tmp_path / "slow", "safe-harbor", monkeypatch, fast=False)

    def broken(self: fastpath.Scanned, *args: Any) -> Any:
        raise fastpath.Ineligible("test")

    monkeypatch.setattr(fastpath.Scanned, "deidentify", broken)
    out = tmp_path / "fast"
    out.mkdir()
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=out, pixels="none", device="cpu")
    cands = [Candidate(p.name) for p in sorted(inputs.iterdir())]
    for cand, res in zip(cands, pipeline.process_batch(inputs, cands, ctx)):
        assert res.status == slow[cand.rel][0]["status"], cand.rel
        if res.output_path:
            assert (out / res.output_path).read_bytes() == slow[cand.rel][1], cand.rel
    assert os.listdir(out)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192", ["ISO 2022 IR 6", "ISO 2022 IR 87"], "ISO 2022 IR 87", "GB18030"])
def test_own_string_encoder_matches_pydicom(implicit: bool, charset: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fastpath._encode`` writes string and text VRs itself: the bytes are pydicom's, for empty,
    odd and even lengths, multi-values, long VRs, over-long short VRs and non-ASCII values."""
    import random
    import warnings

    from pydicom.dataelem import DataElement
    from pydicom.filewriter import write_data_element

    rng = random.Random(5)
    values: list[Any] = ["", "A", "AB", "1.2.840.10008.5.1.4.1.1.2", "SMITH^JOHN", "X" * 70000, "M\u00fcller", None,
                         ["A", "BC"], ["", ""], [], ("ONE", "TWO", "3"), ["\u00c4\u00d6", "B"]]
    values += ["".join(rng.choice("ABC xyz.^0123") for _ in range(rng.randint(0, 15))) for _ in range(40)]
    by_pydicom = []
    monkeypatch.setattr(fastpath, "write_data_element", lambda *a: (by_pydicom.append(1), write_data_element(*a)))
    checked = 0
    for vr in sorted(fastpath._WRITE_STRING_VRS | fastpath._WRITE_TEXT_VRS | {"PN", "IS", "DS"}):
        for value in values:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    elem = DataElement(0x00091001, vr, value)
                    buf = DicomBytesIO()
                    buf.is_little_endian, buf.is_implicit_VR = True, implicit
                    write_data_element(buf, elem, charset)
                except Exception:  # noqa: BLE001 - a value pydicom refuses: nothing to compare
                    continue
                assert fastpath._encode(elem, implicit, charset) == buf.getvalue(), (vr, value, charset)
            checked += 1
    assert checked > 500
    assert len(by_pydicom) < checked  # the own encoder took part of them


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("charset", [["iso8859"], "iso8859", ["utf_8"], ["iso8859", "iso2022_jp"], ["iso2022_jp"], ["shift_jis"]])
def test_own_string_converter_matches_pydicom(implicit: bool, charset: Any) -> None:
    """``fastpath._convert`` converts string and text VRs itself: the element is the one pydicom's
    ``convert_raw_data_element`` makes (value, value types, VR, position), for padded, multi-valued,
    NUL-terminated, escape-holding and non-ASCII values."""
    import random
    import warnings

    from pydicom.dataelem import convert_raw_data_element
    from pydicom.multival import MultiValue

    rng = random.Random(9)
    values = [b"A", b"AB ", b" A B ", b"1.2.3\x00", b"1.2.3 \x00", b"1.2\\3.4 ", b"A\\B\\", b"\\", b"A\\ B \x00\\C",
              b"20200101", b"DOE^JOHN ", b"\x1b$B", b"M\xfcller", b"line one\r\nline two\\x ", b"  ", b"\x00\x00"]
    values += [bytes(rng.choice(b"AB z.^09\\\x00 -") for _ in range(rng.randint(1, 18))) for _ in range(60)]
    own = 0
    for vr in sorted(fastpath._OWN_CONVERSION_VRS):
        for value in values:
            rec = fastpath._Rec(0x00091001, vr, 0, 10, 10 + len(value), False, None)
            data = b"\0" * 10 + value
            raw = RawDataElement(BaseTag(0x00091001), vr, len(value), value, 10, implicit, True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = convert_raw_data_element(raw, encoding=charset, ds=None)
                ours = fastpath._convert(data, rec, charset, implicit)
            assert (ours.tag, ours.VR, ours.file_tell, ours.is_undefined_length) == (ref.tag, ref.VR, ref.file_tell, ref.is_undefined_length)
            assert ours.value == ref.value and type(ours.value) is type(ref.value), (vr, value)
            if isinstance(ref.value, MultiValue):
                assert [type(v) for v in ours.value] == [type(v) for v in ref.value]
            own += fastpath._own_value(vr, value, charset) is not fastpath._PYDICOM
    assert own > 300
