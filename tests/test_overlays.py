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
    assert fastpath.scan((tmp_path / "in" / "ov.dcm").read_bytes(), load_profile(PROFILE)) is None  # data set path


def test_a_header_only_run_removes_the_overlay_planes_it_cannot_scan(tmp_path: Path) -> None:
    written, pixel, _, _ = _run(tmp_path, "none")
    assert not [t for t in written.keys() if 0x6000 <= t >> 16 <= 0x60FF]
    assert pixel["overlays_removed"] == 2 and "overlay_boxes" not in pixel


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
