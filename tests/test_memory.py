"""Big multi-frame images are scanned in chunks: decoded pixels held at once stay bounded."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from deid_pipeline.config import RunContext
from deid_pipeline.discover import Candidate
from deid_pipeline.pipeline import process_batch
from deid_pipeline.profile import load_profile

FRAMES, ROWS, COLS = 16, 192, 192


def _cine(path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    frame = (((xx + yy) % 256) // 2 + 40).astype(np.uint8)  # a smooth ramp: no text
    ds.Modality = "US"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLS, FRAMES
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    for kw in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if kw in ds:
            delattr(ds, kw)
    ds.PixelData = np.stack([np.roll(frame, 3 * i, axis=1) for i in range(FRAMES)]).tobytes()  # a moving ramp
    ds.save_as(path, enforce_file_format=True)


def _run(root: Path, out: Path, limit: int) -> tuple[int, str, dict]:
    out.mkdir()
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, max_decoded_bytes=limit)
    process_batch(root, [Candidate("cine.dcm")], ctx)  # warm the detector outside the measurement
    for p in out.rglob("*.dcm"):
        p.unlink()
    tracemalloc.start()
    result = process_batch(root, [Candidate("cine.dcm")], ctx)[0]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, result.output_sha256, result.pixel


def test_big_cine_is_scanned_in_chunks_with_the_same_result(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    _cine(root / "cine.dcm")
    decoded = FRAMES * ROWS * COLS
    whole_peak, whole_sha, whole_pixel = _run(root, tmp_path / "whole", 1 << 40)
    chunk_peak, chunk_sha, chunk_pixel = _run(root, tmp_path / "chunked", decoded // 6)
    assert whole_sha == chunk_sha and whole_pixel["scanned"] and chunk_pixel["scanned"]
    assert chunk_pixel["frames"] == FRAMES and chunk_pixel["boxes_per_frame"] == whole_pixel["boxes_per_frame"]
    # the file itself (PixelData) is held either way; decoded frames and their detector views are not
    assert chunk_peak < 0.6 * whole_peak, (chunk_peak, whole_peak, decoded)
