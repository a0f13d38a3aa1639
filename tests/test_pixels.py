"""Decode -> redact -> encode -> write -> read -> decode over one bundled file per transfer syntax and photometric."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid as U
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from support import installed_test_files

from deid_pipeline import pixels, redact
from deid_pipeline.errors import FileError
from deid_pipeline.types import Region

LOSSLESS_SYNTAXES = {
    U.ImplicitVRLittleEndian,
    U.ExplicitVRLittleEndian,
    U.DeflatedExplicitVRLittleEndian,
    U.RLELossless,
    U.JPEGLSLossless,
    U.JPEG2000Lossless,
}

# (pydicom / pydicom-data test file, transfer syntax encode_frames must write)
ROUND_TRIP = [
    ("CT_small.dcm", U.ExplicitVRLittleEndian),  # MONOCHROME2 signed 16
    ("MR_small_implicit.dcm", U.ImplicitVRLittleEndian),
    ("MR_small_bigendian.dcm", U.ExplicitVRLittleEndian),
    ("image_dfl.dcm", U.DeflatedExplicitVRLittleEndian),
    ("SC_rgb_expb_16bit_2frame.dcm", U.ExplicitVRLittleEndian),  # big endian RGB 16-bit, 2 frames
    ("liver.dcm", U.ExplicitVRLittleEndian),  # 1-bit, 3 frames
    ("liver_expb.dcm", U.ExplicitVRLittleEndian),
    ("SC_ybr_full_uncompressed.dcm", U.ExplicitVRLittleEndian),
    ("SC_ybr_full_422_uncompressed.dcm", U.ExplicitVRLittleEndian),
    ("rtdose.dcm", U.ImplicitVRLittleEndian),  # 32-bit, 15 frames
    ("SC_rgb_32bit_2frame.dcm", U.ExplicitVRLittleEndian),
    ("examples_palette.dcm", U.ExplicitVRLittleEndian),
    ("MR_small_RLE.dcm", U.RLELossless),
    ("emri_small_RLE.dcm", U.RLELossless),  # 10 frames
    ("SC_rgb_rle_16bit_2frame.dcm", U.RLELossless),
    ("rtdose_rle.dcm", U.ExplicitVRLittleEndian),  # pydicom's RLE encoder refuses 32-bit: falls back
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", U.ExplicitVRLittleEndian),  # JPEG baseline YBR_FULL_422
    ("SC_rgb_dcmtk_+eb+cy+n1.dcm", U.ExplicitVRLittleEndian),  # JPEG baseline YBR_FULL
    ("SC_rgb_dcmtk_+eb+cr.dcm", U.ExplicitVRLittleEndian),  # JPEG baseline RGB
    ("examples_ybr_color.dcm", U.ExplicitVRLittleEndian),  # JPEG baseline YBR_FULL_422, 30 frames
    ("JPGExtended.dcm", U.ExplicitVRLittleEndian),  # JPEG extended 12-bit
    ("JPEG-LL.dcm", U.ExplicitVRLittleEndian),  # JPEG lossless SV1, signed
    ("SC_rgb_jpeg_gdcm.dcm", U.ExplicitVRLittleEndian),  # JPEG lossless RGB
    ("MR_small_jpeg_ls_lossless.dcm", U.JPEGLSLossless),
    ("emri_small_jpeg_ls_lossless.dcm", U.JPEGLSLossless),
    ("JPEGLSNearLossless_16.dcm", U.JPEGLSLossless),
    ("SC_rgb_jls_lossy_line.dcm", U.JPEGLSLossless),
    ("MR_small_jp2klossless.dcm", U.JPEG2000Lossless),
    ("emri_small_jpeg_2k_lossless.dcm", U.JPEG2000Lossless),
    ("GDCMJ2K_TextGBR.dcm", U.JPEG2000Lossless),  # JP2 header, YBR_RCT
    ("693_J2KI.dcm", U.JPEG2000Lossless),  # lossy J2K, signed
    ("SC_rgb_gdcm_KY.dcm", U.JPEG2000Lossless),  # J2K RGB without MCT
    ("J2K_pixelrep_mismatch.dcm", U.JPEG2000Lossless),
    # pydicom-data
    ("gdcm-US-ALOKA-16.dcm", U.ImplicitVRLittleEndian),  # PALETTE COLOR, segmented 16-bit LUT
    ("gdcm-US-ALOKA-16_big.dcm", U.ExplicitVRLittleEndian),
    ("OBXXXX1A_rle.dcm", U.RLELossless),  # PALETTE COLOR RLE
    ("US1_J2KR.dcm", U.JPEG2000Lossless),
    ("US1_J2KI.dcm", U.JPEG2000Lossless),  # lossy YBR_ICT -> lossless YBR_RCT
    ("RG3_J2KR.dcm", U.JPEG2000Lossless),  # MONOCHROME1 10-bit
]


def load(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return pydicom.dcmread(path)


def write_and_read(ds: pydicom.Dataset) -> pydicom.Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def centre_box(frames: np.ndarray) -> Region:
    rows, cols = frames.shape[1:3]
    return Region(cols // 4, rows // 4, max(cols // 4, 1), max(rows // 4, 1))


@pytest.mark.parametrize(("name", "expected_ts"), ROUND_TRIP, ids=[n for n, _ in ROUND_TRIP])
def test_round_trip(name: str, expected_ts: str) -> None:
    ds = load(name)
    original_ts = pixels.transfer_syntax(ds)
    codec = pixels.codec_for(ds)
    was_lossy = pixels._is_lossy(ds, codec)
    header = {kw: ds.get(kw) for kw in ("BitsAllocated", "BitsStored", "PixelRepresentation", "NumberOfFrames", "Rows", "Columns", "SOPInstanceUID")}
    frames = pixels.decode_frames(ds)
    assert frames.ndim in (3, 4) and frames.shape[0] == pixels.frame_count(ds)
    assert frames.dtype.byteorder in ("=", "|")
    before = frames.copy()

    box = centre_box(frames)
    margin = 2
    red = redact.redact_frames(ds, frames, [[box]] * len(frames), margin=margin)
    np.testing.assert_array_equal(frames, before)  # pure
    assert red.dtype == frames.dtype and red.shape == frames.shape
    inside = np.zeros(frames.shape[1:3], dtype=bool)
    inside[box.y - margin : box.y + box.h + margin, box.x - margin : box.x + box.w + margin] = True
    np.testing.assert_array_equal(red[:, ~inside], frames[:, ~inside])
    for i in range(len(frames)):
        fill = redact.fill_value(ds, frames[i])
        assert (red[i][inside] == (fill if frames.ndim == 4 else fill[0])).all()
    lo_hi = redact.stored_range(ds)
    if lo_hi is not None:
        assert lo_hi[0] <= red[:, inside].min() and red[:, inside].max() <= lo_hi[1]

    decoded_pi = pixels.decoded_photometric(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = pixels.encode_frames(ds, red)
        assert written == expected_ts
        assert written in LOSSLESS_SYNTAXES
        ds2 = write_and_read(ds)
        back = pixels.decode_frames(ds2)
        ds2.pixel_array  # pydicom's own path reads the file too
    np.testing.assert_array_equal(back, red)  # exact, even for lossy originals: no new lossy step
    assert ds2.file_meta.TransferSyntaxUID == expected_ts
    assert pixels.decoded_photometric(ds2) == decoded_pi
    for kw, value in header.items():
        assert ds2.get(kw) == value, kw
    if int(ds2.SamplesPerPixel) > 1:
        assert ds2.PlanarConfiguration == 0
    if was_lossy:
        assert ds2.LossyImageCompression == "01"
        assert "LossyImageCompressionMethod" in ds2
    elif original_ts in LOSSLESS_SYNTAXES or original_ts == U.ExplicitVRBigEndian:
        assert ds2.get("LossyImageCompression", "00") == ds.get("LossyImageCompression", "00")


def test_multiframe_slices_match_full_decode() -> None:
    ds = load("emri_small_RLE.dcm")
    full = pixels.decode_frames(ds)
    np.testing.assert_array_equal(pixels.decode_frames(ds, 3, 5), full[3:5])
    np.testing.assert_array_equal(pixels.decode_frames(ds, start=8), full[8:])
    with pytest.raises(ValueError):
        pixels.decode_frames(ds, 5, 5)


def test_ybr_422_jpeg_decodes_to_full_ycbcr() -> None:
    ds = load("SC_rgb_dcmtk_+eb+cy+s2.dcm")
    frames = pixels.decode_frames(ds)
    assert pixels.decoded_photometric(ds) == "YBR_FULL"
    rgb = pixels.display_rgb(ds, frames)
    reference = ds.pixel_array  # pydicom's default conversion to RGB
    assert np.abs(rgb[0].astype(int) - reference.astype(int)).max() <= 2


def test_j2k_ybr_rct_decodes_to_rgb_and_keeps_rct() -> None:
    ds = load("GDCMJ2K_TextGBR.dcm")
    assert pixels.decoded_photometric(ds) == "RGB"
    frames = pixels.decode_frames(ds)
    pixels.encode_frames(ds, frames)
    assert ds.PhotometricInterpretation == "YBR_RCT"


def test_lossy_history_added_when_missing() -> None:
    ds = load("SC_rgb_dcmtk_+eb+cy+s2.dcm")
    for kw in ("LossyImageCompression", "LossyImageCompressionMethod", "LossyImageCompressionRatio"):
        if kw in ds:
            del ds[kw]
    pixels.encode_frames(ds, pixels.decode_frames(ds))
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(ds.LossyImageCompressionRatio) > 1


def test_lossy_history_kept() -> None:
    ds = load("SC_rgb_dcmtk_+eb+cy+s2.dcm")
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = ["ISO_10918_1"]
    ds.LossyImageCompressionRatio = ["7.5"]
    pixels.encode_frames(ds, pixels.decode_frames(ds))
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(ds.LossyImageCompressionRatio) == 7.5


def test_big_endian_palette_lut_is_swapped() -> None:
    little, big = load("gdcm-US-ALOKA-16.dcm"), load("gdcm-US-ALOKA-16_big.dcm")
    frames = pixels.decode_frames(big)
    np.testing.assert_array_equal(frames, pixels.decode_frames(little))
    pixels.encode_frames(big, frames)
    big2 = write_and_read(big)
    np.testing.assert_array_equal(pixels.palette_lut(big2)[1], pixels.palette_lut(little)[1])


def test_truncated_native_pixel_data() -> None:
    ds = load("CT_small.dcm")
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    with pytest.raises(FileError) as info:
        pixels.decode_frames(ds)
    assert info.value.code == "pixel-decode-failed"


def test_truncated_file_bundled() -> None:
    ds = load("MR_truncated.dcm")
    with pytest.raises(FileError) as info:
        pixels.decode_frames(ds)
    assert info.value.code == "pixel-decode-failed"


def test_corrupt_encapsulated_pixel_data() -> None:
    ds = load("MR_small_RLE.dcm")
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    with pytest.raises(FileError) as info:
        pixels.decode_frames(ds)
    assert info.value.code == "pixel-decode-failed"


def test_unsupported_transfer_syntax() -> None:
    ds = load("CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = U.MPEG2MPML
    with pytest.raises(FileError) as info:
        pixels.decode_frames(ds)
    assert info.value.code == "unsupported-transfer-syntax"


def test_missing_decoder_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = load("MR_small_jp2klossless.dcm")
    monkeypatch.setattr(pixels.Codec, "is_available", lambda self: False)
    with pytest.raises(FileError) as info:
        pixels.decode_frames(ds)
    assert info.value.code == "unsupported-transfer-syntax"
    assert "openjpeg" in info.value.message


def test_missing_encoder_falls_back_to_explicit_le(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = load("MR_small_jpeg_ls_lossless.dcm")
    frames = pixels.decode_frames(ds)

    class Unavailable:
        is_available = False

    monkeypatch.setattr(pixels, "get_encoder", lambda uid: Unavailable())
    assert pixels.encode_frames(ds, frames) == U.ExplicitVRLittleEndian
    np.testing.assert_array_equal(pixels.decode_frames(write_and_read(ds)), frames)


def test_missing_file_meta_transfer_syntax() -> None:
    ds = load("CT_small.dcm")
    del ds.file_meta.TransferSyntaxUID
    frames = pixels.decode_frames(ds)
    assert "TransferSyntaxUID" not in ds.file_meta  # decode lends it and takes it back
    assert frames.shape == (1, 128, 128)


def test_codec_registry() -> None:
    report = {row["uid"]: row for row in pixels.codec_report()}
    for ts in (U.RLELossless, U.JPEGBaseline8Bit, U.JPEGLSLossless, U.JPEG2000, U.ExplicitVRBigEndian):
        assert report[ts]["decoder_available"], ts.name
    assert report[U.JPEG2000]["writes"] == U.JPEG2000Lossless.name


def test_has_pixels_and_frame_count() -> None:
    ds = Dataset()
    assert not pixels.has_pixels(ds) and pixels.frame_count(ds) == 0
    assert pixels.frame_count(load("emri_small_RLE.dcm")) == 10
    assert pixels.frame_count(load("CT_small.dcm")) == 1
    with pytest.raises(FileError):
        pixels.decode_frames(ds)


def test_frame_digest() -> None:
    frames = pixels.decode_frames(load("emri_small.dcm"))
    assert pixels.frame_digest(frames[0]) == pixels.frame_digest(frames[0].copy())
    assert pixels.frame_digest(frames[0]) != pixels.frame_digest(frames[1])
    assert len(pixels.frame_digest(frames[0])) == 16


def test_embedded_overlay_detection() -> None:
    ds = load("MR-SIEMENS-DICOM-WithOverlays.dcm")
    assert pixels.embedded_overlay_groups(ds) == []  # its overlay lives in (6000,3000)
    del ds[0x60003000]
    ds.add_new(0x60000102, "US", 12)
    assert pixels.embedded_overlay_groups(ds) == [0x6000]


def test_encode_rejects_wrong_shape() -> None:
    ds = load("CT_small.dcm")
    with pytest.raises(ValueError):
        pixels.encode_frames(ds, np.zeros((2, 128, 128), dtype=np.int16))


def test_float_pixel_data_round_trip() -> None:
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = U.ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.30"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated, ds.NumberOfFrames = 4, 5, 1, 32, 2
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.FloatPixelData = (np.arange(40, dtype="<f4").reshape(2, 4, 5) - 3.5).tobytes()
    frames = pixels.decode_frames(ds)
    red = redact.redact_frames(ds, frames, [[Region(0, 0, 2, 2)], []], margin=0)
    assert (red[0, :2, :2] == -3.5).all()
    assert pixels.encode_frames(ds, red) == U.ExplicitVRLittleEndian
    ds2 = write_and_read(ds)
    assert ds2["FloatPixelData"].VR == "OF"
    np.testing.assert_array_equal(pixels.decode_frames(ds2), red)


@pytest.mark.parametrize("name", ["SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_lossy_gdcm.dcm"])
def test_jpeg_baseline_ybr_decodes_redacts_and_encodes_as_ybr_full(name: str) -> None:
    ds = load(name)
    frames = pixels.decode_frames(ds)
    assert frames.shape == (1, 100, 100, 3) and pixels.decoded_photometric(ds) == "YBR_FULL"
    red = redact.redact_frames(ds, frames, [[Region(10, 10, 20, 20)]], margin=0)
    assert (red[0, 10:30, 10:30] == [0, 128, 128]).all()
    assert (pixels.display_rgb(ds, red)[0, 10:30, 10:30] <= 1).all()
    assert pixels.encode_frames(ds, red) == U.ExplicitVRLittleEndian
    ds2 = write_and_read(ds)
    assert ds2.PhotometricInterpretation == "YBR_FULL"
    np.testing.assert_array_equal(pixels.decode_frames(ds2), red)


def test_gdcm_is_registered_as_fallback() -> None:
    names = {f.package for f in pixels.fallbacks_for(U.JPEGExtended12Bit)}
    assert "python-gdcm" in names
    row = next(r for r in pixels.codec_report() if r["uid"] == U.JPEGExtended12Bit)
    assert row["fallbacks"]["gdcm-imagereader"]["package"] == "python-gdcm"


def test_12bit_jpeg_extended_libjpeg_rejects_decodes_with_gdcm() -> None:
    pytest.importorskip("gdcm")
    ds = load("JPEG-lossy.dcm")  # SOS parameters libjpeg refuses; pydicom's GDCM plugin refuses 12-bit
    frames = pixels.decode_frames(ds)
    reference = pixels.decode_frames(load("JPGExtended.dcm"))  # the same image, well-formed
    assert frames.shape == (1, 1024, 256) and frames.dtype == np.uint16
    assert np.abs(frames.astype(int) - reference.astype(int)).max() <= 1  # IDCT rounding only
    red = redact.redact_frames(ds, frames, [[Region(0, 0, 8, 8)]])
    assert pixels.encode_frames(ds, red) == U.ExplicitVRLittleEndian
    np.testing.assert_array_equal(pixels.decode_frames(write_and_read(ds)), red)


def test_gdcm_fallback_prints_nothing_on_stderr() -> None:
    """GDCM's JPEG codecs print on file descriptor 2 as the fallback decodes a 12-bit JPEG ("Unsupported
    JPEG data precision 12", "Invalid SOS parameters"): lines under ``deid run --quiet``, from a worker.
    Withheld now (a subprocess, so that the descriptor itself is read); Python's stderr works after."""
    import subprocess
    import sys

    pytest.importorskip("gdcm")
    code = ("import warnings; warnings.simplefilter('ignore'); import pydicom; "
            "from pydicom.data import get_testdata_file; from deid_pipeline import pixels; "
            "f = pixels.decode_frames(pydicom.dcmread(get_testdata_file('JPEG-lossy.dcm'))); "
            "import sys; print(f.shape, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "(1, 1024, 256)\n"
    # a process whose stderr was closed since (a daemon's): descriptor 2 is then the next file opened,
    # GDCM's own input here, and is left alone (taking it over made GDCM read the wrong file)
    closed = code.replace("f = pixels", "import os; os.close(2); f = pixels").replace("file=sys.stderr", "file=sys.stdout")
    proc = subprocess.run([sys.executable, "-c", closed], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (0, "(1, 1024, 256)\n")


#: A JPEG Baseline frame of 32 bytes: SOI, then a comment whose length runs far past the frame's end (a probe's
#: frame: GDCM's ImageReader aborted the process on it, its temporary copy of the pixel data left behind)
_COMMENT_PAST_THE_END = (b"\xff\xd8\xff\xfeZQXJPEGCOMMENT884213" + bytes(32))[:32]


def _jpeg_dataset(*fragments: bytes) -> Dataset:
    """CT_small's header over 64x64 8-bit JPEG Baseline Pixel Data: one frame in ``fragments``."""
    from pydicom.encaps import itemize_fragment

    ds = load("CT_small.dcm")
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.file_meta.TransferSyntaxUID = U.JPEGBaseline8Bit
    ds.PixelData = itemize_fragment(b"") + b"".join(itemize_fragment(f + b"\x00" * (len(f) % 2)) for f in fragments)
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    return ds


def test_the_gdcm_fallback_writes_no_copy_of_the_pixel_data(tmp_path: Path) -> None:
    """GDCM aborts its process on some malformed frames; it read a copy of the pixel data written to the
    temporary folder, which then stayed there (the original image, a comment naming the patient). It
    decodes from memory now: whatever GDCM does with the frame, the temporary folder stays empty."""
    import os
    import pickle
    import subprocess
    import sys

    pytest.importorskip("gdcm")
    code = ("import pickle, sys, warnings; warnings.simplefilter('ignore'); from deid_pipeline import pixels; "
            "ds = pickle.loads(sys.stdin.buffer.read()); pixels._gdcm_decode(ds, ds.file_meta.TransferSyntaxUID)")
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(_jpeg_dataset(_COMMENT_PAST_THE_END)),
                          capture_output=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode != 0  # GDCM cannot decode it (it raised, or aborted the process)
    assert list(tmp_path.iterdir()) == []
    frames = pixels._gdcm_decode(load("JPEG-lossy.dcm"), U.JPEGExtended12Bit)  # what it decoded, it decodes
    assert frames.shape == (1, 1024, 256) and frames.dtype == np.uint16


def test_a_jpeg_frame_without_a_frame_header_is_caught_before_decoding() -> None:
    """A JPEG frame whose segments run out before any frame header (SOF) passed the size check (it read
    no size) and reached the decoders, GDCM's among them: ``pixel-decode-failed`` before any decoder
    runs now. A frame whose SOF lies past its first fragment is checked on the whole frame."""
    ds = _jpeg_dataset(_COMMENT_PAST_THE_END)
    with pytest.raises(FileError) as err:
        pixels.check_codestream_size(ds, U.JPEGBaseline8Bit)
    assert err.value.code == "pixel-decode-failed" and "ZQX" not in err.value.message
    with pytest.raises(FileError) as again:
        pixels.decode_frames(ds)
    assert again.value.message == err.value.message
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(buf, "JPEG", quality=90)
    frame = buf.getvalue()
    split = _jpeg_dataset(frame[:8], frame[8:])
    pixels.check_codestream_size(split, U.JPEGBaseline8Bit)
    assert pixels.decode_frames(split).shape == (1, 64, 64)
    split.Rows = 65
    with pytest.raises(FileError, match="the header says 64 x 65"):
        pixels.check_codestream_size(split, U.JPEGBaseline8Bit)


def test_jpeg2000_with_bogus_codestream_stays_quarantined() -> None:
    ds = load("JPEG2000-embedded-sequence-delimiter.dcm")  # 266 bytes: a parser test, not an image
    with pytest.raises(FileError) as info:
        pixels.decode_frames(ds)
    assert info.value.code == "pixel-decode-failed"


def test_installing_gdcm_does_not_change_which_plugin_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = load("SC_rgb_jpeg_lossy_gdcm.dcm")
    used: list[str] = []
    decoder = pixels.get_decoder(U.JPEGBaseline8Bit)
    real = type(decoder).as_array

    def spy(self, *args, **kwargs):
        used.append(kwargs.get("decoding_plugin", ""))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(decoder), "as_array", spy)
    pixels.decode_frames(ds)
    assert used[0] == "pylibjpeg"


@pytest.mark.parametrize(("name", "rows", "cols"), [
    ("SC_rgb_jpeg_dcmtk.dcm", 30000, 30000),  # JPEG baseline
    ("MR_small_jpeg_ls_lossless.dcm", 40000, 40000),  # JPEG-LS: GDCM's decoder aborted the process on it
    ("JPEG2000.dcm", 65535, 65535),
    ("MR_small_RLE.dcm", 8192, 8192),  # RLE: its decoder allocated the header's size first (8 GiB at 65535)
    ("SC_rgb_jpeg_dcmtk.dcm", 100, 99),  # one row off is a difference too
])
def test_a_header_size_its_compressed_frames_do_not_have_is_caught_before_decoding(name: str, rows: int, cols: int) -> None:
    """Rows x Columns edited in the header, the compressed frames as they were: ``pixel-decode-failed``
    naming both sizes, from the frames' own headers (SOF, SOF55, SIZ) or, for RLE, from how far its data
    can expand (64x), before any decoder runs."""
    ds = load(name)
    ds.Rows, ds.Columns = rows, cols
    with pytest.raises(FileError) as err:
        pixels.check_codestream_size(ds, ds.file_meta.TransferSyntaxUID)
    assert err.value.code == "pixel-decode-failed"
    assert f"the header says {cols} x {rows}" in err.value.message or f"the header's {cols} x {rows}" in err.value.message
    if "MR_small_jpeg_ls" not in name:  # decode_frames gives the same reason (GDCM is never reached)
        with pytest.raises(FileError) as again:
            pixels.decode_frames(ds)
        assert again.value.message == err.value.message


def test_every_compressed_test_file_that_decodes_passes_the_size_check() -> None:
    """The check reads sizes the way the decoders do: none of pydicom's or pydicom-data's JPEG, JPEG-LS,
    JPEG 2000 or RLE files that decode is refused by it (each file it refuses is decoded, and fails)."""
    names = installed_test_files("*.dcm")
    passed = refused = 0
    for path in names:
        try:
            ds = pydicom.dcmread(path)
            ts = ds.file_meta.TransferSyntaxUID
        except Exception:
            continue
        if "PixelData" not in ds or not ts.is_compressed:
            continue
        try:
            pixels.check_codestream_size(ds, ts)
        except FileError:
            refused += 1
            with warnings.catch_warnings(), pytest.raises(FileError):
                warnings.simplefilter("ignore")
                pixels.decode_frames(ds, 0, 1)
            continue
        passed += 1
    assert passed >= 40 and refused >= 1, len(names)


@pytest.mark.parametrize("mode", ["none", "all"])
def test_native_ybr_full_422_is_written_and_a_short_one_is_truncated(tmp_path, mode: str) -> None:
    """Native YBR_FULL_422 stores two chroma samples per two pixels (PS3.3 C.7.6.3.1.2): 2/3 of
    Rows x Columns x 3 bytes. The truncation check counted 3 samples a pixel and quarantined pydicom's
    valid file as 'truncated'; it is written now (the header-only fast path and a scanned run), and the
    same file cut short is still 'truncated'."""
    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.pipeline import process_batch
    from deid_pipeline.profile import load_profile

    root = tmp_path / "in"
    root.mkdir()
    ds = load("SC_ybr_full_422_uncompressed.dcm")
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
    ds.save_as(root / "whole.dcm")
    ds.PixelData = ds.PixelData[: -ds.Columns * 2]  # one row short
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(root / "short.dcm")
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"y" * 32, output_dir=tmp_path / "out", pixels=mode,
                     device="cpu", detector="deid-textseg")
    whole, short = process_batch(root, [Candidate("whole.dcm"), Candidate("short.dcm")], ctx)
    assert (whole.status, whole.reason_code) == ("written", "")
    assert (short.status, short.reason_code) == ("quarantined", "truncated")
    out = pydicom.dcmread(tmp_path / "out" / whole.output_path)
    expected = pixels.decode_frames(load("SC_ybr_full_422_uncompressed.dcm"))
    got = pixels.decode_frames(out)
    if mode == "none":  # the pixel data as it came
        assert out.PhotometricInterpretation == "YBR_FULL_422" and out.PixelData == load("SC_ybr_full_422_uncompressed.dcm").PixelData
    boxes = whole.pixel.get("boxes_per_frame") or [[]]
    keep = np.ones(got.shape[1:3], dtype=bool)
    for x, y, w, h in boxes[0]:
        keep[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2] = False
    np.testing.assert_array_equal(got[0][keep], expected[0][keep])  # outside any redaction, the values as they came


@pytest.mark.parametrize("bad", ["one-nan", "nan-band", "inf", "none"])
def test_float_pixel_data_with_nan_is_scanned_and_filled_with_a_finite_value(tmp_path, bad: str) -> None:
    """Float Pixel Data holding NaN: one NaN made the frame's range NaN and every view blank, so a name
    burned in was written as it came; and the boxes were filled with NaN (no value a reader sees). The
    frame's finite range is viewed now, the boxes filled with its least finite value."""
    import cv2
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.pipeline import process_batch
    from deid_pipeline.profile import load_profile

    a = np.full((256, 256), 0.3, np.float32)
    a[60:200, 60:200] = 0.7
    mask = np.zeros(a.shape, np.uint8)
    cv2.putText(mask, "KOWALSKI ANNA", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_8)
    a[mask > 0] = 1.0
    if bad == "one-nan":
        a[128, 128] = np.nan
    elif bad == "nan-band":
        a[230:240] = np.nan
    elif bad == "inf":
        a[128, 128] = np.inf
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "KOWALSKI^ANNA", "MRN884213", "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns, ds.BitsAllocated = 1, "MONOCHROME2", 256, 256, 32
    ds.FloatPixelData = a.tobytes()
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "f.dcm", enforce_file_format=True)
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"k" * 32, output_dir=tmp_path / "out", pixels="all",
                     device="cpu", detector="deid-textseg")
    [res] = process_batch(tmp_path / "in", [Candidate("f.dcm")], ctx)
    assert res.status == "written", res.reason
    out = np.frombuffer(pydicom.dcmread(tmp_path / "out" / res.output_path).FloatPixelData, np.float32).reshape(256, 256)
    text = mask > 0
    assert (out[text] == 1.0).mean() < 0.05  # the name is gone
    assert np.isfinite(out[text]).all() and set(np.unique(out[text])) <= {np.float32(0.3)}


def _text_image(tmp_path, a: np.ndarray, name: str = "f.dcm"):
    """``a`` (uint8 grey) as a Secondary Capture with a name; the run's record and the output pixels."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.pipeline import process_batch
    from deid_pipeline.profile import load_profile

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "KOWALSKI^ANNA", "MRN884213", "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = a.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = a.tobytes()
    (tmp_path / "in").mkdir(exist_ok=True)
    ds.save_as(tmp_path / "in" / name, enforce_file_format=True)
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"k" * 32, output_dir=tmp_path / "out", pixels="all",
                     device="cpu", detector="deid-textseg")
    [res] = process_batch(tmp_path / "in", [Candidate(name)], ctx)
    assert res.status == "written", res.reason
    return res, pydicom.dcmread(tmp_path / "out" / res.output_path).pixel_array


@pytest.mark.parametrize("shape, org, scale", [((40, 900), (6, 28), 0.8), ((64, 256), (4, 40), 0.6),
                                               ((24, 640), (4, 18), 0.5), ((100, 900), (6, 60), 0.8)])
def test_text_filling_a_strip_is_redacted(tmp_path, shape: tuple[int, int], org: tuple[int, int], scale: float) -> None:
    """A short, wide image (a banner, a label: tens of rows) whose line of text fills its height: the
    networks found the line, and the check that burned-in text is small next to the frame dropped it
    as anatomy, so the name was written as it came; a box up to 40 stored pixels is text's size now."""
    import cv2

    a = np.full(shape, 20, np.uint8)
    mask = np.zeros(shape, np.uint8)
    cv2.putText(mask, "KOWALSKI ANNA MRN884213", org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 2, cv2.LINE_8)
    a[mask > 0] = 255
    res, out = _text_image(tmp_path, a)
    assert res.pixel["regions_redacted"] >= 1
    assert (out[mask > 0] == 255).mean() < 0.05


@pytest.mark.parametrize("pi, spp, ok", [("MONOCHROME2", 3, False), ("RGB", 1, False), ("PALETTE COLOR", 3, False),
                                         ("RGB", 3, True), ("MONOCHROME2", 1, True)])
def test_samples_per_pixel_must_fit_the_photometric_interpretation(pi: str, spp: int, ok: bool) -> None:
    """RGB data labelled MONOCHROME2 reached the detector and failed there (quarantined
    ``pixel-scan-failed``, a RuntimeError); the header's contradiction is the reason now."""
    ds = Dataset()
    ds.PhotometricInterpretation, ds.SamplesPerPixel = pi, spp
    if ok:
        pixels.check_samples(ds)
        return
    with pytest.raises(FileError) as err:
        pixels.check_samples(ds)
    assert err.value.code == "invalid-image-attributes" and f"the header says {spp}" in str(err.value)


def test_rgb_data_labelled_monochrome_is_quarantined_with_its_reason(tmp_path) -> None:
    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.pipeline import process_batch
    from deid_pipeline.profile import load_profile

    ds = pydicom.dcmread(get_testdata_file("SC_rgb.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME2"
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "f.dcm")
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"k" * 32, output_dir=tmp_path / "out", pixels="all",
                     device="cpu", detector="deid-textseg")
    [res] = process_batch(tmp_path / "in", [Candidate("f.dcm")], ctx)
    assert (res.status, res.reason_code) == ("quarantined", "invalid-image-attributes"), res.reason


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "liver_expb.dcm",
                                  "SC_rgb_expb_16bit_2frame.dcm", "OBXXXX1A.dcm"])
def test_image_attributes_read_in_place_equal_pydicom_s_and_stay_raw(name: str) -> None:
    """The fast path's image attributes (Rows, Bits Allocated, ...) read from a raw element's two bytes,
    little or big endian, explicit or implicit VR, are pydicom's values, and the element stays raw (the
    writer copies it; pydicom's conversion is skipped)."""
    from pydicom.dataelem import RawDataElement

    raw = pydicom.dcmread(get_testdata_file(name))
    ref = pydicom.dcmread(get_testdata_file(name))
    read = 0
    for tag in sorted(pixels._US_ONE):
        if tag not in raw._dict:
            continue
        assert isinstance(raw._dict[tag], RawDataElement)
        assert pixels._top(raw, tag) == ref[tag].value, (name, hex(tag))
        assert isinstance(raw._dict[tag], RawDataElement), (name, hex(tag))  # not converted in place
        read += 1
    assert read >= 5
    assert pixels.native_pixel_length(raw) == pixels.native_pixel_length(ref)
