"""Compressed frames written as they came lose what their codestreams carry beside the image: JPEG and
JPEG-LS COM and APPn segments (EXIF with dates, camera serials and places; XMP; comments; thumbnails),
JPEG 2000 comments, bytes after the end marker. The image bytes stay as they were."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from support import deid, read_manifest, write_key

from deid_pipeline import pixels

NAME = b"QUARTERMAINE^ZEBULON"
SOURCES = ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_app14_dcmd.dcm", "JPEG-LL.dcm", "MR_small_jpeg_ls_lossless.dcm",
           "JPEG2000.dcm", "emri_small_jpeg_2k_lossless.dcm"]


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(body) + 2).to_bytes(2, "big") + body


def _planted(frame: bytes) -> bytes:
    """``frame`` with the name in its metadata, where each codestream carries metadata."""
    if frame.startswith(b"\xff\x4f"):  # JPEG 2000: a COM after SIZ, junk after EOC
        siz_end = 4 + int.from_bytes(frame[4:6], "big") + 2 - 2
        com = _segment(0x64, b"\x00\x01Creator " + NAME)
        return frame[:siz_end] + com + frame[siz_end:] + b"after EOC " + NAME
    exif = _segment(0xE1, b"Exif\x00\x00II*\x00 SN-778812 GPS 51.5N " + NAME)
    thumb = _segment(0xE0, b"JFXX\x00\x10" + NAME)  # a JFIF extension: a thumbnail
    comment = _segment(0xFE, b"Patient " + NAME)
    eoi = frame.rfind(b"\xff\xd9")
    # metadata after SOI, a comment before EOI (after the last scan), bytes after EOI
    return frame[:2] + exif + thumb + frame[2:eoi] + comment + frame[eoi:] + b"\x00tail " + NAME


def _frames(ds: pydicom.Dataset) -> list[bytes]:
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))


def _write_planted(root: Path) -> list[str]:
    names = []
    for name in SOURCES:
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.PixelData = encapsulate([_planted(f) for f in _frames(ds)], has_bot=True)
        ds.save_as(root / name, enforce_file_format=True)
        names.append(name)
    return names


@pytest.mark.parametrize("name", SOURCES)
def test_scrub_takes_the_metadata_and_keeps_the_image(name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name))
    before = np.asarray(pixels.decode_frames(ds))
    ts = ds.file_meta.TransferSyntaxUID
    as_is = [pixels.scrub_codestream(f, ts) for f in _frames(ds)]
    if ts.startswith("1.2.840.10008.1.2.4.9"):  # pydicom's JPEG 2000 files name their encoder in a COM
        assert all(f is not None and b"Kakadu" not in f and b"OpenJPEG" not in f for f in as_is)
    else:
        assert as_is == [None] * len(as_is)  # nothing to take
    ds.PixelData = encapsulate([_planted(f) for f in _frames(ds)], has_bot=True)
    assert pixels.codestream_metadata_in(ds.PixelData, ts, int(ds.get("NumberOfFrames") or 1))
    assert pixels.scrub_encapsulated_metadata(ds) == int(ds.get("NumberOfFrames") or 1)
    assert NAME not in ds.PixelData and NAME.lower() not in ds.PixelData
    assert (np.asarray(pixels.decode_frames(ds)) == before).all()
    assert pixels.scrub_encapsulated_metadata(ds) == 0  # nothing left to take


def test_an_extended_offset_table_is_rebuilt() -> None:
    """Frames indexed by an Extended Offset Table: scrubbed, the table rebuilt to the new frames."""
    from pydicom.encaps import encapsulate_extended

    ds = pydicom.dcmread(get_testdata_file("emri_small_jpeg_2k_lossless.dcm"))
    before = np.asarray(pixels.decode_frames(ds))
    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
        [_planted(f) for f in _frames(ds)])
    assert pixels.scrub_encapsulated_metadata(ds) == 10
    assert NAME not in ds.PixelData
    frames = list(generate_frames(ds.PixelData, number_of_frames=10,
                                  extended_offsets=(ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)))
    assert [len(f) for f in frames] == list(np.frombuffer(ds.ExtendedOffsetTableLengths, "<u8"))
    assert (np.asarray(pixels.decode_frames(ds)) == before).all()


def test_what_a_decoder_reads_stays() -> None:
    """Adobe APP14 and HP's APP8 mrfx (colour transforms) and a JFIF APP0 stay, the last without its
    thumbnail."""
    jfif = b"JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x02\x02" + b"\x7f" * 12  # a 2x2 RGB thumbnail
    adobe = b"Adobe\x00\x64\x00\x00\x00\x00\x01"
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    frame = _frames(ds)[0]
    start = 4 + int.from_bytes(frame[4:6], "big")  # after the file's own APP0
    mrfx = b"mrfx\x01"
    planted = frame[:2] + _segment(0xE0, jfif) + _segment(0xEE, adobe) + _segment(0xE8, mrfx) + frame[start:]
    scrubbed = pixels.scrub_codestream(planted, ds.file_meta.TransferSyntaxUID)
    assert scrubbed is not None
    kept = _segment(0xE0, jfif[:12] + b"\x00\x00") + _segment(0xEE, adobe) + _segment(0xE8, mrfx)
    assert kept in scrubbed and b"\x7f" * 12 not in scrubbed


@pytest.mark.parametrize("profile,pixel_rule", [("basic", "none"), ("safe-harbor", "all")])
def test_a_run_writes_no_codestream_metadata(tmp_path: Path, profile: str, pixel_rule: str) -> None:
    """Frames written as they came (header-only runs, images where no text was found) carried the name
    in their codestreams' metadata; now none does, and verify finds nothing to report."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    names = _write_planted(root)
    key = write_key(tmp_path / "k", b"codestream-test-key-0123456789ab")
    proc = deid("run", str(root), str(out), "--profile", profile, "--pixels", pixel_rule, "--workers", "0",
                "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_manifest(out)
    assert len(records) == len(names) and all(r["status"] == "written" for r in records)
    for path in out.rglob("*.dcm"):
        data = path.read_bytes()
        assert NAME not in data and b"SN-778812" not in data, path.name
    assert sum("codestream_metadata_removed" in r["pixel"] for r in records) >= 1
    deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0", "--no-rescan")
    kinds = [f["kind"] for f in json.loads((out / "verify.json").read_text())["findings"]]
    assert "codestream-metadata-kept" not in kinds, kinds  # re-encoded frames too: deid's encoder names itself


def test_verify_reports_codestream_metadata(tmp_path: Path) -> None:
    """An output whose frames carry such metadata (an older deid's, or changed after the run)."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    ds.save_as(root / "a.dcm", enforce_file_format=True)
    key = write_key(tmp_path / "k", b"codestream-test-key-0123456789ab")
    proc = deid("run", str(root), str(out), "--pixels", "none", "--workers", "0", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    target = out / read_manifest(out)[0]["output_path"]
    written = pydicom.dcmread(target)
    written.PixelData = encapsulate([_planted(f) for f in _frames(written)])
    written.save_as(target)
    check = deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0", "--no-rescan")
    kinds = [f["kind"] for f in json.loads((out / "verify.json").read_text())["findings"]]
    assert check.returncode == 1 and "codestream-metadata-kept" in kinds, kinds
