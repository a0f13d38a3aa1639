"""Fill values per photometric interpretation, margins, clipping, purity."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from deid_pipeline import pixels, redact
from deid_pipeline.types import Region


def load(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return pydicom.dcmread(path)


def mono(pi: str, bits_stored: int = 12, signed: bool = False) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = pi
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = 8, 10
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = b"\0" * 160
    return ds


def test_signed_ct_text_at_top_of_range_is_replaced_by_frame_minimum() -> None:
    ds = load("CT_small.dcm")
    frames = pixels.decode_frames(ds)
    assert ds.PixelRepresentation == 1
    frames[0, 10:20, 10:40] = 32767  # text burned with the maximum, as in TCIA CT exports
    frames[0, 100:110, 100:110] = -1024  # air
    red = redact.redact_frames(ds, frames, [[Region(10, 10, 30, 10)]])
    assert red.dtype == np.int16
    box = red[0, 8:22, 8:42]
    assert (box == -1024).all()
    assert red.max() < 32767


def test_monochrome1_fill_is_the_maximum() -> None:
    ds = load("RG3_J2KR.dcm")
    frames = pixels.decode_frames(ds)
    red = redact.redact_frames(ds, frames, [[Region(1100, 1350, 100, 80)]], margin=0)
    assert (red[0, 1350:1430, 1100:1200] == frames[0].max()).all()
    assert frames[0].max() <= (1 << int(ds.BitsStored)) - 1


def test_fill_never_leaves_bits_stored() -> None:
    ds = mono("MONOCHROME1", bits_stored=12)
    frames = np.full((1, 8, 10), 100, dtype=np.uint16)
    frames[0, 0, 0] = 5000  # out of range garbage (e.g. overlay bits)
    red = redact.redact_frames(ds, frames, [[Region(2, 2, 3, 3)]], margin=0)
    assert red[0, 3, 3] == 4095

    ds = mono("MONOCHROME2", bits_stored=12, signed=True)
    frames = np.full((1, 8, 10), 7, dtype=np.int16)
    frames[0, 0, 0] = -3000
    red = redact.redact_frames(ds, frames, [[Region(2, 2, 3, 3)]], margin=0)
    assert red[0, 3, 3] == -2048


def test_rgb_fill_is_black() -> None:
    ds = load("SC_rgb_rle.dcm")
    frames = pixels.decode_frames(ds)
    red = redact.redact_frames(ds, frames, [[Region(0, 0, 5, 5)]], margin=0)
    assert (red[0, :5, :5] == 0).all()


def test_ybr_full_fill_is_black() -> None:
    ds = load("SC_ybr_full_uncompressed.dcm")
    frames = pixels.decode_frames(ds)
    red = redact.redact_frames(ds, frames, [[Region(0, 0, 5, 5)]], margin=0)
    assert (red[0, :5, :5] == [0, 128, 128]).all()
    assert (pixels.display_rgb(ds, red)[0, :5, :5] <= 1).all()


@pytest.mark.parametrize("name", ["gdcm-US-ALOKA-16.dcm", "examples_palette.dcm", "OBXXXX1A.dcm"])
def test_palette_fill_is_dark_after_lut(name: str) -> None:
    ds = load(name)
    frames = pixels.decode_frames(ds)
    red = redact.redact_frames(ds, frames, [[Region(10, 10, 40, 20)]], margin=0)
    rgb = pixels.apply_palette(ds, red)[0, 10:30, 10:50].astype(float)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    _, lut = pixels.palette_lut(ds)
    darkest = (lut.astype(float) @ np.array([0.299, 0.587, 0.114])).min()
    assert np.allclose(luma, darkest)
    assert darkest < 40


def test_margin_and_clipping_at_the_edges() -> None:
    ds = mono("MONOCHROME2")
    frames = np.arange(80, dtype=np.uint16).reshape(1, 8, 10) + 10
    red = redact.redact_frames(ds, frames, [[Region(8, 6, 5, 5), Region(50, 50, 3, 3)]], margin=1)
    expected = frames.copy()
    expected[0, 5:, 7:] = 10
    np.testing.assert_array_equal(red, expected)


def test_pure_and_per_frame() -> None:
    ds = load("emri_small.dcm")
    frames = pixels.decode_frames(ds)
    before = frames.copy()
    regions = [[] for _ in frames]
    regions[3] = [Region(5, 5, 10, 10)]
    red = redact.redact_frames(ds, frames, regions)
    np.testing.assert_array_equal(frames, before)
    changed = [i for i in range(len(frames)) if not np.array_equal(red[i], frames[i])]
    assert changed == [3]
    assert (red[3, 3:17, 3:17] == frames[3].min()).all()


def test_region_count_must_match_frames() -> None:
    ds = load("emri_small.dcm")
    frames = pixels.decode_frames(ds)
    with pytest.raises(ValueError):
        redact.redact_frames(ds, frames, [[Region(0, 0, 1, 1)]])


def test_one_bit_frames() -> None:
    ds = load("liver.dcm")
    frames = pixels.decode_frames(ds)
    red = redact.redact_frames(ds, frames, [[Region(200, 200, 50, 50)]] * 3)
    assert red.dtype == np.uint8 and set(np.unique(red)) <= {0, 1}
    assert (red[:, 198:252, 198:252] == 0).all()
