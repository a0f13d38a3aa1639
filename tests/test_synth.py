"""The synthetic generator: valid DICOM, honest boxes, determinism, and a reproducible sample_data/."""

from __future__ import annotations

import glob

import hashlib
import re
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from deid_pipeline import synth

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"


def _roundtrip(ds: pydicom.Dataset) -> tuple[bytes, pydicom.Dataset]:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    raw = buf.getvalue()
    return raw, pydicom.dcmread(io.BytesIO(raw))


def _stored(ds: pydicom.Dataset) -> np.ndarray:
    """Decoded stored values, frames first (no YBR -> RGB conversion, no LUT)."""
    ds.pixel_array_options(as_rgb=False)
    arr = ds.pixel_array
    return arr if int(ds.get("NumberOfFrames", 1)) > 1 else arr[None]


@pytest.mark.parametrize("kind", synth.KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_case_is_valid_and_boxes_are_honest(kind: str, seed: int) -> None:
    case = synth.render_case(kind, seed)
    _, ds = _roundtrip(case.dataset)
    truth = case.truth
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert ds[kw].value.is_valid
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "InstitutionName",
               "ReferringPhysicianName", "AccessionNumber", "OperatorsName"):
        assert str(ds[kw].value)
    assert ds.RequestAttributesSequence[0].ScheduledPerformingPhysicianName
    assert any(e.tag.is_private for e in ds)
    assert truth["modality"] == ds.Modality
    assert truth["photometric_interpretation"] == ds.PhotometricInterpretation
    assert (truth["rows"], truth["columns"]) == (ds.Rows, ds.Columns)
    assert truth["burned_in_annotation_attribute"] == str(ds.get("BurnedInAnnotation", "(absent)"))

    pixels = _stored(ds)
    assert pixels.shape == case.clean.shape
    assert truth["number_of_frames"] == pixels.shape[0]
    diff = pixels != case.clean
    if diff.ndim == 4:
        diff = diff.any(axis=-1)
    diff = diff.any(axis=0)
    anns = truth["annotations"]
    if kind in synth.NO_TEXT_KINDS:
        assert anns == [] and not diff.any()
        return
    assert anns and any(a["phi"] for a in anns)
    covered = np.zeros_like(diff)
    for a in anns:
        x, y, w, h = a["x"], a["y"], a["w"], a["h"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= ds.Columns and y + h <= ds.Rows
        box = diff[y: y + h, x: x + w]
        # tight: the changed pixels touch all four edges of the box
        assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any(), a
        assert not covered[y: y + h, x: x + w].any(), "boxes overlap"
        covered[y: y + h, x: x + w] = True
        assert a["text"] and a["category"]
    assert not (diff & ~covered).any(), "changed pixels outside every box"


def test_cine_text_is_identical_across_frames_and_anatomy_moves() -> None:
    case = synth.render_case("us_cine", 3, frames=5)
    frames = _stored(case.dataset)
    assert frames.shape[0] == 5
    assert not np.array_equal(case.clean[0], case.clean[1])
    for a in case.truth["annotations"]:
        x, y, w, h = a["x"], a["y"], a["w"], a["h"]
        text = frames[:, y: y + h, x: x + w] != case.clean[:, y: y + h, x: x + w]
        assert text.any(axis=(1, 2, 3)).all()


def test_monochrome1_text_is_minimum_and_palette_text_is_bright_after_lut() -> None:
    cr = synth.render_case("cr", 5)
    px = _stored(cr.dataset)[0]
    a = cr.truth["annotations"][0]
    assert px[a["y"]: a["y"] + a["h"], a["x"]: a["x"] + a["w"]].min() == 0
    assert cr.clean.min() > 0

    pal = synth.render_case("us_palette", 5)
    ds = pal.dataset
    lut = np.frombuffer(ds.RedPaletteColorLookupTableData, np.uint16)
    idx = _stored(ds)[0]
    a = pal.truth["annotations"][0]
    text_idx = idx[a["y"]: a["y"] + a["h"], a["x"]: a["x"] + a["w"]].min()
    assert text_idx < 16 and lut[text_idx] == 65535
    assert lut[16:].max() < 65535
    # hard-edged text: every pixel the text changed holds a text index (7 or 9), none in between
    changed = idx != pal.clean[0]
    assert changed.any() and set(np.unique(idx[changed]).tolist()) <= {7, 9}


@pytest.mark.parametrize("kind,syntax", [("mr", JPEGLSLossless), ("cr", JPEG2000Lossless),
                                         ("us_rgb", RLELossless)])
def test_lossless_compression_keeps_pixels(kind: str, syntax: pydicom.uid.UID) -> None:
    case = synth.render_case(kind, 2)
    before = _stored(case.dataset).copy()
    synth.compress(case.dataset, case.truth, syntax)
    _, ds = _roundtrip(case.dataset)
    assert ds.file_meta.TransferSyntaxUID == syntax == case.truth["transfer_syntax"]["uid"]
    assert np.array_equal(_stored(ds), before)


def test_deterministic_by_seed() -> None:
    a, _ = _roundtrip(synth.make_case("us_ybr", 9)[0])
    b, _ = _roundtrip(synth.make_case("us_ybr", 9)[0])
    c, _ = _roundtrip(synth.make_case("us_ybr", 10)[0])
    assert a == b and a != c
    first = [t for _, t in synth.iter_cases(4, 2)]
    again = [t for _, t in synth.iter_cases(4, 2)]
    assert first == again
    assert [t["source"]["kind"] for t in first] == list(synth.KINDS[:4])


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        synth.make_case("pet", 0)


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_data_is_reproducible(tmp_path: Path) -> None:
    if not (SAMPLE / "README.md").is_file():
        pytest.skip("sample_data/ not generated")
    sys.path.insert(0, str(REPO / "scripts"))
    from make_sample_data import generator_versions

    recorded = re.search(r"Generated with: (.*?)\.\n", (SAMPLE / "README.md").read_text(encoding="utf-8"), re.S)
    assert recorded, "sample_data/README.md does not say which package versions made it"
    if " ".join(recorded.group(1).split()) != generator_versions():
        # OpenCV's glyph rasteriser and the codecs change bytes between releases: same versions, same bytes
        pytest.skip(f"installed versions differ from sample_data's ({recorded.group(1)}); regenerate to compare")
    out = tmp_path / "sample_data"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_sample_data.py"), "--out", str(out)],
                   check=True, capture_output=True)
    assert _hashes(out) == _hashes(SAMPLE)
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 3_000_000


def test_sample_data_ground_truth_matches_files() -> None:
    import json

    gt_root = SAMPLE / "groundtruth"
    if not gt_root.is_dir():
        pytest.skip("sample_data/ not generated")
    for gt_path in sorted(gt_root.rglob("*.groundtruth.json")):
        truth = json.loads(gt_path.read_text(encoding="utf-8"))
        dcm = SAMPLE / truth["file"]
        assert hashlib.sha256(dcm.read_bytes()).hexdigest() == truth["sha256"]
        ds = pydicom.dcmread(dcm)
        assert ds.file_meta.TransferSyntaxUID == truth["transfer_syntax"]["uid"]
        assert _stored(ds).shape[0] == truth["number_of_frames"]


_DEJAVU = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/DejaVuSans*.ttf"))


@pytest.mark.skipif(not _DEJAVU, reason="no DejaVu TrueType fonts on this machine (Debian: fonts-dejavu-core)")
def test_text_fonts_draw_the_same_texts_in_truetype_faces_and_none_is_the_default() -> None:
    """``text_fonts``: the case's texts drawn in TrueType faces (fonts the Hershey-trained network never
    saw: eval_text.py --fonts), each box still the stored pixels the text changed; no fonts renders the
    very case the default does."""
    ds, truth = synth.make_case("ct", 23, text_fonts=_DEJAVU)
    hershey, hershey_truth = synth.make_case("ct", 23)
    assert "TrueType" in truth["ground_truth_origin"] and "Hershey" in hershey_truth["ground_truth_origin"]
    assert {a["text"] for a in truth["annotations"]} == {a["text"] for a in hershey_truth["annotations"]}
    assert ds.PixelData != hershey.PixelData
    changed = synth.render_case("ct", 23, text_fonts=_DEJAVU).clean[0] != ds.pixel_array  # frames first
    inside = np.zeros_like(changed)
    for a in truth["annotations"]:
        box = changed[a["y"] : a["y"] + a["h"], a["x"] : a["x"] + a["w"]]
        assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any(), a  # tight on the text
        inside[a["y"] : a["y"] + a["h"], a["x"] : a["x"] + a["w"]] = True
    assert not (changed & ~inside).any()
    default, _ = synth.make_case("us", 7)
    same, _ = synth.make_case("us", 7, text_fonts=())
    assert default.PixelData == same.PixelData


def test_text_scale_draws_smaller_text_and_one_is_the_default() -> None:
    """``text_scale``: the text height ranges times the factor (7 pixels at least), everything else the
    seed's; 1 renders the very case the default does (small text on big frames: eval_text.py
    --text-scale)."""
    heights = {}
    for scale in (1.0, 0.15):
        ds, truth = synth.make_case("cr", 31000093, shape=(3328, 2560), text_scale=scale)
        heights[scale] = sorted(a["h"] for a in truth["annotations"])
        assert truth["annotations"] and all(a["h"] >= 5 for a in truth["annotations"])
    assert max(heights[0.15]) < min(heights[1.0])
    default, _ = synth.make_case("us", 7)
    same, _ = synth.make_case("us", 7, text_scale=1.0)
    assert default.PixelData == same.PixelData
