"""Pixel Data that runs past the image: native bytes after the last frame (a leftover of a larger image,
anything a writer put there), encapsulated frames past Number of Frames. No reader shows them, so a
reviewer never sees them; a run that writes Pixel Data as it came (``--pixels none``, triage, an image
with no text found) wrote them too. Now they are cut, the image unchanged, and verify names them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid
from support import deid, read_manifest, write_key

from deid_pipeline import pixels

NAME = b"QUARTERMAINE^ZEBULON"


def _native(name: str, extra: bytes) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.PixelData = ds.PixelData + extra
    return ds


def _odd_8bit() -> pydicom.Dataset:
    """A 3x3 8-bit image: 9 bytes of pixels, its pad byte not zero but a letter of the name."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(range(9)) + NAME[:1]
    ds["PixelData"].VR = "OB"
    return ds


def _extra_frame(name: str) -> pydicom.Dataset:
    """``name``'s frames and one more (the first frame again, with the name after it) past Number of
    Frames, indexed by the Basic Offset Table."""
    ds = pydicom.dcmread(get_testdata_file(name))
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))
    ds.PixelData = encapsulate(frames + [frames[0] + NAME], has_bot=True)
    return ds


INPUTS = {
    "ct-native.dcm": lambda: _native("CT_small.dcm", b"leftover " + NAME),
    "mr-big-endian.dcm": lambda: _native("MR_small_bigendian.dcm", NAME),
    "odd-8bit.dcm": _odd_8bit,
    "jpeg-extra-frame.dcm": lambda: _extra_frame("SC_rgb_jpeg_dcmtk.dcm"),
    "rle-extra-frame.dcm": lambda: _extra_frame("MR_small_RLE.dcm"),
}

#: the pydicom file each input was made from, whose image the output must show
BASES = {"ct-native.dcm": "CT_small.dcm", "mr-big-endian.dcm": "MR_small_bigendian.dcm",
         "jpeg-extra-frame.dcm": "SC_rgb_jpeg_dcmtk.dcm", "rle-extra-frame.dcm": "MR_small_RLE.dcm"}


def test_native_bytes_past_the_image_are_cut() -> None:
    for name in ("ct-native.dcm", "mr-big-endian.dcm", "odd-8bit.dcm"):
        ds = INPUTS[name]()
        expected = pixels.native_pixel_length(ds)
        assert expected is not None and pixels.runs_past_image(ds.PixelData, expected)
        before = ds.PixelData[:expected]
        assert pixels.trim_native_excess(ds) > 0
        assert ds.PixelData[:expected] == before and len(ds.PixelData) == expected + expected % 2
        assert NAME[:1] not in ds.PixelData[expected:] and pixels.trim_native_excess(ds) == 0
    for name in ("CT_small.dcm", "MR_small_padded.dcm"):  # fills its Pixel Data; 128 bytes of zeros after it
        plain = pydicom.dcmread(get_testdata_file(name))
        value = plain.PixelData
        assert pixels.trim_native_excess(plain) == 0 and plain.PixelData == value  # nothing there: untouched
    nonzero = pydicom.dcmread(get_testdata_file("badVR.dcm"))  # 15 frames' bytes, Number of Frames "1A"
    assert pixels.trim_native_excess(nonzero) == 5600 and len(nonzero.PixelData) == 400  # a reader shows one


def test_a_scan_decodes_the_frames_number_of_frames_counts() -> None:
    """pydicom decodes the frames it finds, extra ones included (with a warning): the decode then did
    not fit the header and the file was quarantined ``pixel-decode-failed``. It gives those the header
    counts now, whole, one by one and in chunks, and they are the source file's."""
    many = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))  # 10 frames, and an 11th
    frames = list(generate_frames(many.PixelData, number_of_frames=10))
    many.PixelData = encapsulate(frames + [frames[0] + NAME], has_bot=True)
    cases = {**{name: (INPUTS[name](), base) for name, base in BASES.items() if "extra-frame" in name},
             "rle-10-frames-and-one": (many, "emri_small_RLE.dcm")}
    for name, (ds, base) in cases.items():
        ref = pixels.decode_frames(pydicom.dcmread(get_testdata_file(base)))
        assert pixels.frames_past_count(ds) == 1, name
        assert np.array_equal(pixels.decode_frames(ds), ref), name
        assert np.array_equal(pixels.decode_frames(ds, heartbeat=lambda: None), ref), name
        assert np.array_equal(np.concatenate([pixels.decode_frames(ds, i, i + 1) for i in range(len(ref))]), ref)
    assert pixels.frames_past_count(pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))) == 0


@pytest.mark.parametrize(("profile", "rule"), [("safe-harbor", "none"), ("basic", "triage")])
def test_a_run_writes_nothing_past_the_image(tmp_path: Path, profile: str, rule: str) -> None:
    """The code before wrote all five with the name in their Pixel Data (the fast path copied the
    native ones); now none holds it, the images are those of the inputs, and verify finds nothing."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    for name, make in INPUTS.items():
        ds = make()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(root / name, enforce_file_format=True)
    key = write_key(tmp_path / "k", b"past-image-test-key-0123456789ab")
    proc = deid("run", str(root), str(out), "--profile", profile, "--pixels", rule, "--workers", "0",
                "--key-file", str(key), "--quiet")
    records = read_manifest(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(records) == len(INPUTS)
    # every one written: a scan decodes the frames Number of Frames counts (the extra ones were
    # quarantined pixel-decode-failed before), and frames re-encoded after a redaction leave them out
    assert [r["status"] for r in records] == ["written"] * len(INPUTS), [r.get("reason") for r in records]
    by_size = {r["input_size"]: r for r in records}
    for name in INPUTS:
        rec = by_size[(root / name).stat().st_size]
        data = (out / rec["output_path"]).read_bytes()
        assert data.count(NAME) == data.count(b"leftover") == 0
        if "extra-frame" in name:
            assert rec["pixel"].get("frames_past_count_removed") == 1, rec["pixel"]
        elif not rec["pixel"].get("scanned"):
            assert rec["pixel"].get("trailing_bytes_removed", 0) > 0, rec["pixel"]
    if rule == "none":
        for name, base in BASES.items():  # the image as the file it came from decodes
            dst = pydicom.dcmread(out / by_size[(root / name).stat().st_size]["output_path"])
            ref = pydicom.dcmread(get_testdata_file(base))
            assert (np.asarray(pixels.decode_frames(dst)) == np.asarray(pixels.decode_frames(ref))).all(), name
    deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0", "--no-rescan")
    kinds = [f["kind"] for f in json.loads((out / "verify.json").read_text())["findings"]]
    assert "pixel-data-past-image" not in kinds, kinds


def test_verify_names_pixel_data_past_the_image(tmp_path: Path) -> None:
    """Outputs given back their extra bytes and extra frame (an older deid's, another tool's):
    ``pixel-data-past-image`` for each."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    for name in ("CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        pydicom.dcmread(get_testdata_file(name)).save_as(root / name, enforce_file_format=True)
    key = write_key(tmp_path / "k", b"past-image-test-key-0123456789ab")
    proc = deid("run", str(root), str(out), "--pixels", "none", "--workers", "0", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for rec in read_manifest(out):
        target = out / rec["output_path"]
        ds = pydicom.dcmread(target)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.PixelData = encapsulate(list(generate_frames(ds.PixelData, number_of_frames=1)) * 2, has_bot=True)
        else:
            ds.PixelData = ds.PixelData + b"\x01\x02"
        ds.save_as(target)
    check = deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0", "--no-rescan")
    kinds = [f["kind"] for f in json.loads((out / "verify.json").read_text())["findings"]]
    assert check.returncode == 1 and kinds.count("pixel-data-past-image") == 2, kinds
