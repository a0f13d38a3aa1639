"""Burned-in text through ``deid run`` on files re-encoded and re-drawn (``benchmarks/eval_variants.py``):
other transfer syntaxes, photometric interpretations, bit depths, scales and contrasts than the files
the detector was checked on. Every PHI box of every frame of every output must be filled."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest

from deid_pipeline.detect import is_available
from deid_pipeline.pixels import decode_frames

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
SHARED = REPO.parent / "shared" / "data" / "burned_in_text"
sys.path.insert(0, str(REPO / "benchmarks"))

import eval_variants  # noqa: E402

pytestmark = pytest.mark.skipif(not is_available(), reason="text detector weights or torch missing")

#: The default suite's share: a syntax, a byte order, each photometric change, a bit depth, a scale, colours.
DEFAULT = {"big-endian", "jpeg-baseline", "monochrome1", "monochrome2", "ybr-full", "palette", "grey", "rgb",
           "16-bit", "rescale", "scale-0.5", "dark-on-light", "text-yellow", "text-blue"}


def _sample_sources() -> list[eval_variants.Source]:
    """The sample files with PHI in their pixels, with their ground truth."""
    out = []
    for gt in sorted((SAMPLE / "groundtruth").rglob("*.groundtruth.json")):
        truth = json.loads(gt.read_text())
        if any(a["phi"] for a in truth["annotations"]):
            out.append(eval_variants.Source(pydicom.dcmread(SAMPLE / truth["file"]), truth))
    return out


def _run(cases: list[eval_variants.Case], tmp_path: Path) -> dict[str, Any]:
    proc, result = eval_variants.run_and_check(cases, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert result["records"] == len(cases)
    return result


def test_check_finds_unredacted_text() -> None:
    """The check can fail: no PHI box of an input is filled before deid runs."""
    for name, ds, truth in eval_variants.make_cases(_sample_sources(), {"as-is", "palette", "scale-0.5"}.__contains__):
        frames = decode_frames(ds)
        for a in truth["annotations"]:
            if a["phi"] and a.get("frame", 0) < len(frames):
                box = frames[a.get("frame", 0), a["y"] : a["y"] + a["h"], a["x"] : a["x"] + a["w"]]
                assert not eval_variants.filled(box), (truth["file"], name, a["category"])


def test_every_variant_kind_is_made() -> None:
    names = {name for name, _, _ in eval_variants.make_cases(_sample_sources())}
    assert DEFAULT <= names
    assert {"rle", "jpeg-ls", "j2k-lossy", "jpeg-q30", "noise-10%", "scale-2.0", "pad", "low-contrast", "mirror",
            "text-dark-blue", "rotate-90", "rotate-270"} <= names


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
def test_sample_variants_every_phi_box_filled(tmp_path: Path) -> None:
    cases = eval_variants.make_cases(_sample_sources(), DEFAULT.__contains__)
    assert len(cases) >= 50
    result = _run(cases, tmp_path)
    assert result["not_written"] == []
    assert result["phi_boxes"] >= 250
    assert result["leaks"] == []


@pytest.mark.slow
def test_real_file_variants_every_phi_box_filled(tmp_path: Path) -> None:
    """Every variant of every real file, the quarter-turned ones and dark blue text on a dark bar included
    (the known misses of earlier sessions, found since by the turned pass and by line completion)."""
    if not SHARED.is_dir():
        pytest.skip("shared data not present")
    cases = eval_variants.make_cases(eval_variants.sources(SHARED))
    assert {c[0] for c in cases} >= {"rotate-90", "rotate-270", "text-dark-blue"}
    result = _run(cases, tmp_path)
    assert result["not_written"] == []
    assert result["phi_boxes"] >= 1250
    assert result["leaks"] == []
