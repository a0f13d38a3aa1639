"""Overlay planes under the Clean Graphics Option: scanned for text and cleared, or removed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import pack_bits
from support import deid, read_manifest, write_key

from deid_pipeline import fastpath
from deid_pipeline.config import RunContext
from deid_pipeline.discover import Candidate
from deid_pipeline.pipeline import process_batch
from deid_pipeline.profile import load_profile

PROFILE = "basic+clean-graphics"
TEXT, SHAPE = 0x6000, 0x6002  # a plane with a name and ID drawn in it, a plane with a circle


def _with_overlays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """CT_small with two overlay planes; returns their bits (0/1)."""
    import cv2

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rows, cols = ds.Rows, ds.Columns
    text = np.zeros((rows, cols), np.uint8)
    cv2.putText(text, "DOE^JOHN 123456", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1, cv2.LINE_AA)
    circle = np.zeros((rows, cols), np.uint8)
    cv2.circle(circle, (64, 64), 30, 255, 1)
    planes = []
    for group, img in ((TEXT, text), (SHAPE, circle)):
        bits = (img > 127).astype(np.uint8)
        ds.add_new((group, 0x0010), "US", rows)
        ds.add_new((group, 0x0011), "US", cols)
        ds.add_new((group, 0x0040), "CS", "G")
        ds.add_new((group, 0x0050), "SS", [1, 1])
        ds.add_new((group, 0x0100), "US", 1)
        ds.add_new((group, 0x0102), "US", 0)
        ds.add_new((group, 0x3000), "OW", pack_bits(bits))
        ds.add_new((group, 0x0022), "LO", f"outline of {ds.PatientName.family_name}")  # Overlay Description
        ds.add_new((group, 0x1500), "LO", f"{ds.PatientID} ROI")  # Overlay Label
        planes.append(bits)
    ds.save_as(path, enforce_file_format=True)
    return planes[0], planes[1]


def _run(tmp_path: Path, pixels: str) -> tuple[pydicom.Dataset, dict, np.ndarray, np.ndarray]:
    root, out = tmp_path / "in", tmp_path / f"out-{pixels}"
    root.mkdir(exist_ok=True)
    out.mkdir()
    text, shape = _with_overlays(root / "ov.dcm")
    ctx = RunContext(profile=load_profile(PROFILE), key=b"o" * 32, output_dir=out, pixels=pixels, device="cpu")
    result = process_batch(root, [Candidate("ov.dcm")], ctx)[0]
    assert result.status == "written", result.reason
    return pydicom.dcmread(out / result.output_path), result.pixel, text, shape


def test_overlay_planes_are_scanned_and_their_text_cleared(tmp_path: Path) -> None:
    written, pixel, text, shape = _run(tmp_path, "all")
    boxes = pixel["overlay_boxes"]
    assert set(boxes) == {"6000", "6002"} and boxes["6002"] == [[]] and boxes["6000"][0]
    cleared = written.overlay_array(TEXT)
    assert text.sum() > 100 and cleared[:30].sum() <= text[:30].sum() * 0.05  # the drawn line, gone
    assert np.array_equal(written.overlay_array(SHAPE), shape)  # a circle is no text: kept bit for bit
    # the planes' free text (Overlay Description, Label: not in the table, so kept before) is removed
    assert not [t for t in written.keys() if t >> 16 in (TEXT, SHAPE) and t & 0xFFFF in (0x0022, 0x1500)]
    assert (TEXT, 0x0040) in written and (SHAPE, 0x0050) in written
    assert fastpath.scan((tmp_path / "in" / "ov.dcm").read_bytes(), load_profile(PROFILE)) is None  # data set path


def test_a_header_only_run_removes_the_overlay_planes_it_cannot_scan(tmp_path: Path) -> None:
    written, pixel, _, _ = _run(tmp_path, "none")
    assert not [t for t in written.keys() if 0x6000 <= t >> 16 <= 0x60FF]
    assert pixel["overlays_removed"] == 2 and "overlay_boxes" not in pixel


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
def test_verify_checks_the_cleared_overlay(tmp_path: Path) -> None:
    """A clean run verifies without findings (the bits C keeps are no longer 'original values'); the
    input's bits put back are found: the cleared boxes hold bits again."""
    inp = tmp_path / "in"
    inp.mkdir()
    text, _ = _with_overlays(inp / "ov.dcm")
    key = write_key(tmp_path / "k", b"overlay-test-key-0123456789abcdef")
    out = tmp_path / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0", "--pixels", "all", "--key-file", str(key), "--quiet",
                "--profile", PROFILE, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]

    def verify() -> tuple[int, dict]:
        done = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--device", "cpu")
        return done.returncode, json.loads((out / "verify.json").read_text())

    code, report = verify()
    assert code == 0, report["findings"]
    target = out / read_manifest(out)[0]["output_path"]
    written = pydicom.dcmread(target)
    written[(TEXT << 16) | 0x3000].value = pack_bits(text)
    written.save_as(target)
    code, report = verify()
    kinds = {(f["kind"], f["detail"].split(" frame")[0]) for f in report["findings"]}
    assert code == 1 and ("redaction-not-filled", "overlay 6000") in kinds, report["counts"]


@pytest.mark.parametrize("profile", ["basic", "safe-harbor"])
def test_profiles_that_remove_graphics_still_remove_overlays(tmp_path: Path, profile: str) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    _with_overlays(root / "ov.dcm")
    ctx = RunContext(profile=load_profile(profile), key=b"o" * 32, output_dir=out, pixels="none")
    result = process_batch(root, [Candidate("ov.dcm")], ctx)[0]
    written = pydicom.dcmread(out / result.output_path)
    assert not [t for t in written.keys() if 0x6000 <= t >> 16 <= 0x60FF] and "overlays_removed" not in result.pixel


# --------------------------------------------------------------------------- overlays in Pixel Data's unused bits


def _with_embedded_overlay(path: Path, signed: bool = False, meta: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """CT_small as 12-bit data whose bit 12 holds a name drawn as an overlay (the retired style: an
    overlay group without Overlay Data, Overlay Bit Position 12), with file meta or (``meta`` False)
    without; returns the image and the bits."""
    import cv2

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    values = ds.pixel_array.astype(np.int32)
    image = ((values - values.min()) * 2047 // max(1, int(values.max() - values.min()))).astype(np.int16)
    if signed:
        image -= 1024  # negative values too: sign-extended above High Bit
    bits = np.zeros(image.shape, np.uint8)
    cv2.putText(bits, "DOE^JOHN", (4, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1, 1)
    raw = image.view(np.uint16) & np.uint16(0x0FFF) if not signed else image.view(np.uint16).copy()
    if signed:
        raw &= np.uint16(0x0FFF)  # zero-filled above High Bit, as some writers leave it
    raw |= bits.astype(np.uint16) << 12
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
    ds.PixelData = raw.astype("<u2").tobytes()
    for elem, vr, value in ((0x0010, "US", ds.Rows), (0x0011, "US", ds.Columns), (0x0040, "CS", "G"),
                            (0x0050, "SS", [1, 1]), (0x0100, "US", 16), (0x0102, "US", 12)):
        ds.add_new((0x6000, elem), vr, value)
    if meta:
        ds.save_as(path, enforce_file_format=True)
    else:  # an ACR-NEMA style file: no preamble, no file meta, implicit VR little endian
        del ds.file_meta
        ds.preamble = None
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return image, bits


@pytest.mark.parametrize("profile,pixels", [("basic", "triage"), ("safe-harbor", "none"), ("basic+clean-graphics", "none"),
                                            ("basic+clean-graphics", "triage")])
def test_an_overlay_in_the_unused_bits_is_not_written(tmp_path: Path, profile: str, pixels: str) -> None:
    """An overlay stored in Pixel Data's unused high bits survived every run that did not re-encode the
    image (basic's triage skipping a CT, a header-only run): its group removed, its bits (a name) still
    there for a bit mask to show; under clean graphics the group was kept too, so a viewer drew the
    name. Now the bits are set to what a reader takes them for and the group goes: the image is the same."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    image, bits = _with_embedded_overlay(root / "emb.dcm")
    assert fastpath.scan((root / "emb.dcm").read_bytes(), load_profile(profile)) is None  # the pydicom path clears
    ctx = RunContext(profile=load_profile(profile), key=b"o" * 32, output_dir=out, pixels=pixels, device="cpu")
    result = process_batch(root, [Candidate("emb.dcm")], ctx)[0]
    assert result.status == "written", result.reason
    written = pydicom.dcmread(out / result.output_path)
    raw = np.frombuffer(written.PixelData, "<u2").reshape(image.shape)
    assert not (raw >> 12).any() and (written.pixel_array == image).all()
    assert not [t for t in written.keys() if t >> 16 == 0x6000]
    assert result.pixel["outside_bits_cleared"] is True and not result.pixel["scanned"]


@pytest.mark.parametrize("profile,pixels", [("safe-harbor", "none"), ("basic", "triage"), ("basic", "all")])
def test_an_overlay_in_the_unused_bits_of_a_file_without_file_meta_is_not_written(tmp_path: Path, profile: str,
                                                                                  pixels: str) -> None:
    """The same bits in a file without file meta (ACR-NEMA style): the bit check took no transfer
    syntax for no native layout, so the name was written (its output, given file meta, failed verify's
    ``pixel-bits-outside-stored``). Such a file is read and written as native little endian, and its
    unused bits are judged so."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    image, bits = _with_embedded_overlay(root / "acr-nema", meta=False)
    assert (root / "acr-nema").read_bytes()[:2] == b"\x08\x00" and bits.any()  # its first element at byte 0
    ctx = RunContext(profile=load_profile(profile), key=b"o" * 32, output_dir=out, pixels=pixels, device="cpu")
    result = process_batch(root, [Candidate("acr-nema")], ctx)[0]
    assert result.status == "written", result.reason
    written = pydicom.dcmread(out / result.output_path)
    raw = np.frombuffer(written.PixelData, "<u2").reshape(image.shape)
    assert not (raw >> 12).any()
    if result.pixel.get("regions_redacted"):  # scanned, text found: re-encoded from the stored values
        return
    assert (written.pixel_array == image).all() and result.pixel.get("outside_bits_cleared") is True


def test_an_embedded_overlay_group_goes_under_clean_graphics_when_its_bits_are_empty(tmp_path: Path) -> None:
    """A group that declares an overlay in Pixel Data's unused bits, those bits all zero: nothing to
    clear, so the fast path could take the file, and clean graphics would count the group removed from
    a data set the fast path does not write. The fast path leaves it to the pydicom path, which removes it."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    _with_embedded_overlay(root / "emb.dcm")
    ds = pydicom.dcmread(root / "emb.dcm")
    ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") & np.uint16(0x0FFF)).tobytes()  # the bits gone, the group left
    ds.save_as(root / "emb.dcm", enforce_file_format=True)
    profile = load_profile(PROFILE)
    assert fastpath.scan((root / "emb.dcm").read_bytes(), profile) is None
    ctx = RunContext(profile=profile, key=b"o" * 32, output_dir=out, pixels="none", device="cpu")
    result = process_batch(root, [Candidate("emb.dcm")], ctx)[0]
    written = pydicom.dcmread(out / result.output_path)
    assert not [t for t in written.keys() if t >> 16 == 0x6000] and result.pixel["overlays_removed"] == 1


def test_unused_bits_are_cleared_as_a_reader_takes_them() -> None:
    """Unsigned: unused bits zero (above High Bit, or below the stored bits); signed: the sign above
    High Bit, zero-filled negatives left as they are unless another sample needs clearing."""
    from deid_pipeline import pixels

    def outside(values: list[int], stored: int, high: int, signed: bool, big: bool = False) -> bool:
        return pixels.bits_outside_stored(np.array(values, ">u2" if big else "<u2").tobytes(), 16, stored, high, signed, big)

    assert not outside([0, 0x0FFF], 12, 11, False) and outside([0x1000], 12, 11, False)
    assert not outside([0xFFF0], 12, 15, False) and outside([0x0001], 12, 15, False)  # low bits unused
    assert not outside([0xFFFF, 0x0FFF, 0x07FF], 12, 11, True) and outside([0x1FFF], 12, 11, True)
    assert outside([0xF001], 12, 11, True)  # a positive value with bits set above: not a sign
    little = np.array([0x1000], "<u2").tobytes()  # read big-endian: 0x0010, nothing outside
    assert pixels.bits_outside_stored(little, 16, 12, 11, False) and not pixels.bits_outside_stored(little, 16, 12, 11, False, True)
    assert outside([0x1000], 12, 11, False, big=True)
    assert not pixels.bits_outside_stored(b"\xff\xff", 16, 16, 15, False)  # no unused bits

    rng = np.random.default_rng(7)  # the fast rule against the definition, sample by sample
    for stored, high in ((12, 11), (10, 9), (8, 7), (12, 13), (15, 14), (12, 15)):
        for value in rng.integers(0, 65536, 1500):
            below, above = (1 << (high + 1 - stored)) - 1, 0xFFFF & ~((1 << (high + 1)) - 1)
            sign, upper = (value >> high) & 1, value & above
            clean = not value & below and (upper == 0 or (upper == above and sign == 1))
            assert outside([int(value)], stored, high, True) is not clean, (stored, high, value)
            assert outside([int(value)], stored, high, False) is bool(value & (below | above)), (stored, high, value)

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
    values = np.zeros(ds.Rows * ds.Columns, "<u2")
    values[:3] = [0x0FFF, 0x1001, 0xFFFE]  # -1 zero-filled, +1 with a stray bit, -2 sign-extended
    ds.PixelData = values.tobytes()
    assert pixels.clear_bits_outside_stored(ds)
    assert list(np.frombuffer(ds.PixelData, "<u2")[:3]) == [0xFFFF, 0x0001, 0xFFFE]
    assert not pixels.clear_bits_outside_stored(ds)


@pytest.mark.parametrize("frames", [1, 12])  # 32 KiB, or 1.5 MiB: an output verify maps, its pixels left in the file
def test_verify_reports_bits_outside_bits_stored(tmp_path: Path, frames: int) -> None:
    """An output whose native Pixel Data holds bits outside Bits Stored (written by an older deid, or
    changed after the run) is ``pixel-bits-outside-stored``, small or mapped; deid's own output is not."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rows = 128 if frames == 1 else 256
    ds.Rows = ds.Columns = rows
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.NumberOfFrames = 12, 11, 0, frames
    ds.PixelData = (np.arange(rows * rows * frames) % 4096).astype("<u2").tobytes()
    ds.save_as(root / "img.dcm", enforce_file_format=True)
    key = write_key(tmp_path / "k", b"bits-test-key-0123456789abcdef!!")
    proc = deid("run", str(root), str(out), "--workers", "0", "--pixels", "none", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0")
    assert check.returncode == 0, check.stdout[-2000:]
    target = out / read_manifest(out)[0]["output_path"]
    data = bytearray(target.read_bytes())
    at = len(data) - 2 * rows * rows * frames + 2 * 5000  # a sample in the first frame
    data[at + 1] |= 0x10  # bit 12: an overlay bit
    target.write_bytes(bytes(data))
    check = deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0")
    report = json.loads((out / "verify.json").read_text())
    kinds = {f["kind"] for f in report["findings"]}
    assert check.returncode == 1 and "pixel-bits-outside-stored" in kinds, kinds
