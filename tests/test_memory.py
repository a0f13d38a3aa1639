"""Big multi-frame images are scanned in chunks: decoded pixels held at once stay bounded."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from deid_pipeline import pixels
from deid_pipeline.config import RunContext
from deid_pipeline.discover import Candidate
from deid_pipeline.pipeline import process_batch
from deid_pipeline.profile import load_profile
from deid_pipeline.types import Heartbeat

FRAMES, ROWS, COLS = 16, 192, 192


def _cine(path: Path, text_frames: tuple[int, ...] = (), syntax: str = ExplicitVRLittleEndian, moving: bool = True) -> None:
    """A ramp, moving or still; ``text_frames`` carry a burned-in name and ID."""
    import cv2

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
    frames = np.stack([np.roll(frame, 3 * (i // 2) * moving, axis=1) for i in range(FRAMES)])  # a moving ramp
    for i in text_frames:
        cv2.putText(frames[i], "DOE^JOHN 123456", (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_AA)
    ds.PixelData = frames.tobytes()
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax, frames, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One whole run in this process first, so that loading the detector and first imports are outside
    every measurement."""
    base = tmp_path_factory.mktemp("warm")
    root, out = base / "in", base / "out"
    root.mkdir()
    out.mkdir()
    _cine(root / "cine.dcm")
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out)
    process_batch(root, [Candidate("cine.dcm")], ctx)


def _run(root: Path, out: Path, limit: int) -> tuple[int, str, dict]:
    out.mkdir()
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, max_decoded_bytes=limit)
    real = pixels.decode_frames
    widest = [0]

    def spy(ds: pydicom.Dataset, start: int = 0, stop: int | None = None, heartbeat: Heartbeat | None = None) -> np.ndarray:
        frames = real(ds, start, stop, heartbeat)
        widest[0] = max(widest[0], frames.shape[0])
        return frames

    pixels.decode_frames = spy
    tracemalloc.start()
    try:
        result = process_batch(root, [Candidate("cine.dcm")], ctx)[0]
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        pixels.decode_frames = real
    result.pixel["widest_decode"] = widest[0]
    return peak, result.output_sha256, result.pixel


def test_big_cine_is_scanned_in_chunks_with_the_same_result(tmp_path: Path, warm: None) -> None:
    root = tmp_path / "in"
    root.mkdir()
    _cine(root / "cine.dcm")
    decoded = FRAMES * ROWS * COLS
    whole_peak, whole_sha, whole_pixel = _run(root, tmp_path / "whole", 1 << 40)
    chunk_peak, chunk_sha, chunk_pixel = _run(root, tmp_path / "chunked", decoded // 6)
    assert whole_sha == chunk_sha and whole_pixel["scanned"] and chunk_pixel["scanned"]
    assert chunk_pixel["frames"] == FRAMES and chunk_pixel["boxes_per_frame"] == whole_pixel["boxes_per_frame"]
    # the file itself (PixelData) is held either way; decoded frames and their detector views are not
    assert whole_pixel["widest_decode"] == FRAMES and chunk_pixel["widest_decode"] == 1  # 1/6 of 16 frames, /4
    assert chunk_peak < whole_peak, (chunk_peak, whole_peak, decoded)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless])
def test_big_cine_with_text_is_redacted_in_chunks(tmp_path: Path, syntax: str, warm: None) -> None:
    """Text in some frames of an image above the limit: scanned, redacted and re-encoded a chunk at a
    time; the same boxes and the same pixels as decoding it whole, with less memory."""
    root = tmp_path / "in"
    root.mkdir()
    _cine(root / "cine.dcm", text_frames=(1, 2, 9, 15), syntax=syntax, moving=False)  # two distinct frames
    decoded = FRAMES * ROWS * COLS
    whole_peak, whole_sha, whole_pixel = _run(root, tmp_path / "whole", 1 << 40)
    chunk_peak, chunk_sha, chunk_pixel = _run(root, tmp_path / "chunked", decoded // 6)
    boxes = chunk_pixel["boxes_per_frame"]
    assert boxes == whole_pixel["boxes_per_frame"]
    assert [i for i, b in enumerate(boxes) if b] == [1, 2, 9, 15]
    assert chunk_pixel["frames_scanned"] == 2  # a frame seen in an earlier chunk is not detected again
    assert chunk_pixel["reencoded_transfer_syntax"] == whole_pixel["reencoded_transfer_syntax"] == syntax
    outs = [pydicom.dcmread(next((tmp_path / d).rglob("*.dcm"))) for d in ("whole", "chunked")]
    assert np.array_equal(outs[0].pixel_array, outs[1].pixel_array)
    src = pydicom.dcmread(root / "cine.dcm").pixel_array
    changed = [i for i in range(FRAMES) if not np.array_equal(outs[1].pixel_array[i], src[i])]
    assert changed == [1, 2, 9, 15]
    if syntax == ExplicitVRLittleEndian:
        assert whole_sha == chunk_sha
    assert chunk_pixel["widest_decode"] == 1 and whole_pixel["widest_decode"] == FRAMES  # scan, redact, encode


def test_inputs_too_big_for_the_worker_fail_with_a_reason_and_their_hash(tmp_path: Path) -> None:
    import hashlib

    from deid_pipeline.batch import fit_to_memory

    root = tmp_path / "in"
    root.mkdir()
    _cine(root / "cine.dcm")
    small = root / "small.dcm"
    small.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    size = (root / "cine.dcm").stat().st_size
    base = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, pixels="none")
    ctx = fit_to_memory(base, int(size / 0.3) - 1000)  # the cine is just above the worker's share
    assert ctx.max_file_bytes is not None and small.stat().st_size < ctx.max_file_bytes < size
    big, ok = process_batch(root, [Candidate("cine.dcm"), Candidate("small.dcm")], ctx)
    assert (big.status, big.reason_code) == ("failed", "too-large-for-worker-memory")
    assert big.input_sha256 == hashlib.sha256((root / "cine.dcm").read_bytes()).hexdigest()
    assert "memory-limit" in big.reason and len(list(out.rglob("*.dcm"))) == 1  # only the small one
    assert ok.status == "written"
    assert fit_to_memory(base, None) is base


def test_batches_hold_a_bounded_number_of_input_bytes() -> None:
    from deid_pipeline.batch import file_batches

    ctx = RunContext(profile=load_profile("basic"), key=b"m" * 32, output_dir=Path("."), batch_size=4, max_batch_bytes=100)
    sizes = [10, 10, 90, 10, 500, 10, 10, 10, 10, 10, 10]
    batches = list(file_batches((Candidate(f"f{i}", size=s) for i, s in enumerate(sizes)), ctx))
    assert [[int(c.rel[1:]) for c in b] for b in batches] == [[0, 1], [2, 3], [4], [5, 6, 7, 8], [9, 10]]
    assert sum(len(b) for b in batches) == len(sizes)


def test_big_inputs_are_streamed_with_the_same_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs above the streaming threshold are hashed, then parsed from the file: same records, same bytes."""
    from deid_pipeline import pipeline

    root = tmp_path / "in"
    root.mkdir()
    for name in ("CT_small.dcm", "SC_rgb_rle.dcm", "MR_small_implicit.dcm"):
        (root / name).write_bytes(Path(get_testdata_file(name)).read_bytes())
    full = (root / "CT_small.dcm").read_bytes()
    (root / "cut.dcm").write_bytes(full[: len(full) // 2])
    (root / "notes.txt").write_text("not DICOM at all, but long enough to sniff\n" * 20)
    names = sorted(p.name for p in root.iterdir())

    def run(out: Path) -> list[tuple]:
        out.mkdir()
        ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, pixels="none")
        res = process_batch(root, [Candidate(n) for n in names], ctx)
        return [(r.status, r.reason_code, r.input_sha256, r.output_sha256) for r in res]

    whole = run(tmp_path / "whole")
    monkeypatch.setattr(pipeline, "STREAM_ABOVE_BYTES", 0)
    streamed = run(tmp_path / "streamed")
    assert streamed == whole
    assert names[3:] == ["cut.dcm", "notes.txt"]
    assert [w[:2] for w in whole] == [("written", "")] * 3 + [("quarantined", "truncated"), ("skipped", "not-dicom")]


# streamed: reads 1-2 hash the file, 3 sniffs it, 4 on are pydicom's parse; too-large: 1-2 hash it
@pytest.mark.parametrize(("route", "nth_read"), [("whole", 1), ("streamed", 1), ("streamed", 2), ("streamed", 3),
                                                 ("streamed", 4), ("streamed", 6), ("too-large", 1), ("too-large", 2)])
def test_an_io_error_reading_an_input_fails_that_file_as_unreadable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str, nth_read: int) -> None:
    """EIO on the Nth read of an input (a bad disk block, a network share dropping) is ``unreadable``
    with the system's reason, never an internal error, on every route a file can be read by: whole,
    streamed (hash pass, then the parse pass) and too-large (hashed only); the next file is written."""
    import errno

    from deid_pipeline import pipeline

    root = tmp_path / "in"
    root.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        (root / name).write_bytes(Path(get_testdata_file(name)).read_bytes())
    bad = root / "CT_small.dcm"
    reads = [0]
    real_open, real_read_bytes = open, Path.read_bytes

    class _Failing:
        def __init__(self, fh) -> None:
            self._fh = fh

        def read(self, *a):
            reads[0] += 1
            if reads[0] == nth_read:
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(bad))  # the real error names the path
            return self._fh.read(*a)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self._fh.close()

        def __iter__(self):
            return iter(self._fh)

    def fake_open(path, *a, **k):
        fh = real_open(path, *a, **k)
        return _Failing(fh) if Path(path) == bad else fh

    def fake_read_bytes(self: Path) -> bytes:
        if self == bad:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(pipeline, "open", fake_open, raising=False)
    monkeypatch.setattr(Path, "read_bytes", fake_read_bytes)
    base = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=tmp_path / "out", pixels="none")
    (tmp_path / "out").mkdir()
    if route == "streamed":
        monkeypatch.setattr(pipeline, "STREAM_ABOVE_BYTES", 0)
    ctx = base
    if route == "too-large":
        from deid_pipeline.batch import fit_to_memory

        ctx = fit_to_memory(base, int(bad.stat().st_size / 0.3) - 100)
    first, second = process_batch(root, [Candidate("CT_small.dcm"), Candidate("MR_small.dcm")], ctx)
    assert (first.status, first.reason_code) == ("failed", "unreadable")
    assert first.reason == "the input could not be read: Input/output error"
    assert "CT_small" not in first.reason and second.status == "written"
    assert reads[0] >= nth_read or route == "whole"


@pytest.mark.parametrize("route", ["whole", "streamed"])
def test_zero_filled_inputs_get_their_reason_without_reading_every_zero(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str) -> None:
    """A file pre-allocated for a transfer that did not finish holds zeros where its data set should go
    on. pydicom read each 8 zero bytes as one more (0000,0000) element: 131,072 for 1 MiB here, and a
    pre-allocated 3 GiB file outlived the file timeout. Zeros after the file meta: ``truncated``; zeros
    after a complete data set: left out (the output is the file's own); zeros with more data after
    them: read through, as pydicom reads them. Zeros to the end inside a sequence item of undefined
    length, where the top-level stop does not reach (~0.25 s a MiB, read to the end): ``truncated`` after
    1,024 zero element headers; an image whose last 96 KiB of pixels are zero is written as before."""
    import pydicom.filereader
    from deid_pipeline import pipeline

    root = tmp_path / "in"
    root.mkdir()
    full = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    start = 132 + 12 + pydicom.dcmread(io.BytesIO(full)).file_meta.FileMetaInformationGroupLength
    assert full[start : start + 2] == b"\x08\x00"  # the first data set element (group 0008) follows the meta
    name_at = full.index(b"\x10\x00\x10\x00PN")
    files = {
        "a_original.dcm": full,
        "b_trailing_zeros.dcm": full + bytes(1 << 20),
        "c_meta_then_zeros.dcm": full[:start] + bytes(1 << 20),
        "d_preamble_then_zeros.dcm": full[:132] + bytes(1 << 20),
        "e_zeros_inside.dcm": full[:name_at] + bytes(256) + full[name_at:],
        # (FFFA,FFFA) SQ of undefined length, one item of undefined length, then zeros to the end
        "f_item_then_zeros.dcm": full + bytes.fromhex("FAFFFAFF") + b"SQ" + bytes(2) + b"\xff" * 4
                                 + bytes.fromhex("FEFF00E0") + b"\xff" * 4 + bytes(1 << 20),
        "g_black_rows.dcm": _black_rows(),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    elements = []
    real = pydicom.filereader.data_element_generator

    def counted(*args, **kwargs):
        for elem in real(*args, **kwargs):
            elements.append(1)
            yield elem

    monkeypatch.setattr(pydicom.filereader, "data_element_generator", counted)
    if route == "streamed":
        monkeypatch.setattr(pipeline, "STREAM_ABOVE_BYTES", 0)
    out = tmp_path / "out"
    out.mkdir()
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, pixels="none")
    res = process_batch(root, [Candidate(n) for n in sorted(files)], ctx)
    got = [(r.status, r.reason_code) for r in res]
    assert got == [("written", ""), ("written", ""), ("quarantined", "truncated"), ("quarantined", "truncated"),
                   ("written", ""), ("quarantined", "truncated"), ("written", "")]
    assert res[1].output_path == res[0].output_path and res[1].output_sha256 == res[0].output_sha256
    assert "pre-allocated" in res[2].reason and "pre-allocated" in res[3].reason
    assert "sequence item" in res[5].reason
    assert pydicom.dcmread(out / res[6].output_path).PixelData == pydicom.dcmread(root / "g_black_rows.dcm").PixelData
    assert len(elements) < 5_000  # the 256 zero bytes inside the fifth: 32 elements; the sixth's stop: 1,024


def _black_rows() -> bytes:
    """CT_small at 256 x 256 whose last 192 rows are black: the file ends in 96 KiB of zero pixels."""
    import numpy as np

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = np.zeros((256, 256), np.int16)
    pixels[:64] = 700
    ds.Rows = ds.Columns = 256
    ds.PixelData = pixels.tobytes()
    del ds[0xFFFCFFFC]  # its data set trailing padding, which follows the pixels
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert buf.getvalue().endswith(bytes(96 << 10))
    return buf.getvalue()


@pytest.mark.parametrize("route", ["whole", "streamed"])
def test_a_deflated_data_set_that_inflates_past_the_worker_share_fails_before_it_is_inflated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str) -> None:
    """Deflated Explicit VR Little Endian: 64 KiB of deflated zeros after a data set inflate to 64 MiB, held
    whole by pydicom's parse (a 3 MiB file of 3 GiB crashed its worker repeatedly under a 2 GiB memory
    limit). Past the worker's share for one input it fails with that reason, uninflated; a deflated file
    within it is written as before."""
    import zlib

    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from deid_pipeline import pipeline

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    start = 132 + 12 + pydicom.dcmread(io.BytesIO(data)).file_meta.FileMetaInformationGroupLength
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = packer.compress(zlib.decompress(data[start:], -zlib.MAX_WBITS)) + packer.compress(bytes(64 << 20)) + packer.flush()
    root = tmp_path / "in"
    root.mkdir()
    (root / "a_bomb.dcm").write_bytes(data[:start] + body)
    (root / "b_deflated.dcm").write_bytes(Path(get_testdata_file("image_dfl.dcm")).read_bytes())
    assert (root / "a_bomb.dcm").stat().st_size < 1 << 20
    inflates = []
    real = zlib.decompress
    monkeypatch.setattr(zlib, "decompress", lambda *a, **k: inflates.append(1) or real(*a, **k))  # pydicom's whole inflate
    if route == "streamed":
        monkeypatch.setattr(pipeline, "STREAM_ABOVE_BYTES", 0)

    def run(limit: int | None, name: str) -> list[tuple]:
        out = tmp_path / name
        out.mkdir()
        ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, pixels="none", max_file_bytes=limit)
        return [(r.status, r.reason_code, r.reason) for r in process_batch(root, [Candidate("a_bomb.dcm"), Candidate("b_deflated.dcm")], ctx)]

    bomb, small = run(32 << 20, "limited")
    assert bomb[:2] == ("failed", "too-large-for-worker-memory") and "inflates to more than 32 MiB" in bomb[2]
    assert small[:2] == ("written", "")
    assert len(inflates) == 1  # the small file's; the bomb was never inflated whole
    assert [r[:2] for r in run(None, "unlimited")] == [("written", ""), ("written", "")]


def test_a_frame_that_alone_decodes_past_the_worker_share_fails_before_it_is_decoded(tmp_path: Path) -> None:
    """A frame cannot be decoded in chunks: one whose decoded size is more than the worker's share for an
    input fails ``too-large-for-worker-memory`` before its decoder allocates it (a header and codestream
    that agree on a huge size pass the size check; here 2048 x 2048 black in 2 KiB of JPEG 2000)."""
    from pydicom.uid import JPEG2000Lossless

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 2048
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(2048 * 2048)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    root = tmp_path / "in"
    root.mkdir()
    ds.save_as(root / "big_frame.dcm", enforce_file_format=True)
    assert (root / "big_frame.dcm").stat().st_size < 64 << 10
    results = {}
    for limit in (2 << 20, None):
        out = tmp_path / f"out-{limit}"
        out.mkdir()
        ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, pixels="all",
                         detector="deid-textseg", device="cpu", max_file_bytes=limit)
        (r,) = process_batch(root, [Candidate("big_frame.dcm")], ctx)
        results[limit] = (r.status, r.reason_code, r.reason)
    status, code, reason = results[2 << 20]
    assert (status, code) == ("failed", "too-large-for-worker-memory") and "one decoded frame is 4 MiB" in reason
    assert results[None][:2] == ("written", "")


def test_sequences_nested_past_the_limit_are_quarantined_with_that_reason(tmp_path: Path) -> None:
    """pydicom reads (and writes) an item within an item by recursion, so how deep a file could be read
    depended on the caller's stack: ~190 levels in a worker, 300 by the header fast path, whose output
    ``deid verify`` then could not read. Now 100 levels (``MAX_SEQUENCE_DEPTH``) of a kept sequence are
    read and de-identified on both paths (the name planted at the bottom is not in the output, which
    pydicom reads back), 101 and 300 are quarantined saying so, 1,000 (past pydicom's recursion) too."""
    from deid_pipeline.tags import MAX_SEQUENCE_DEPTH

    root = tmp_path / "in"
    root.mkdir()
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    at = raw.index(bytes.fromhex("E07F1000"))  # before Pixel Data
    name = b"DEEPNAME^PLANTED"
    depths = (MAX_SEQUENCE_DEPTH, MAX_SEQUENCE_DEPTH + 1, 300, 1000)
    for depth in depths:
        body = bytes.fromhex("10001000") + b"PN" + len(name).to_bytes(2, "little") + name  # (0010,0010)
        for _ in range(depth):  # (0054,0016) SQ, one item, both of undefined length
            item = bytes.fromhex("FEFF00E0") + b"\xff" * 4 + body + bytes.fromhex("FEFF0DE0") + bytes(4)
            body = bytes.fromhex("54001600") + b"SQ" + bytes(2) + b"\xff" * 4 + item + bytes.fromhex("FEFFDDE0") + bytes(4)
        (root / f"deep_{depth}.dcm").write_bytes(raw[:at] + body + raw[at:])
    for pixels in ("none", "all"):  # the header fast path, then pydicom's
        out = tmp_path / f"out-{pixels}"
        out.mkdir()
        ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, pixels=pixels)
        kept, *deep = process_batch(root, [Candidate(f"deep_{d}.dcm") for d in depths], ctx)
        assert kept.status == "written", pixels
        assert [(r.status, r.reason_code) for r in deep] == [("quarantined", "parse-error")] * 3, pixels
        assert all("nested" in r.reason for r in deep)
        written = (out / kept.output_path).read_bytes()
        assert name not in written
        pydicom.dcmread(io.BytesIO(written)).walk(lambda ds, elem: None)


def _written(tmp_path: Path, **cine: Any) -> tuple[Path, Path, dict]:
    """A cine (:func:`_cine`) and its output from one run in this process (all text redacted)."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    _cine(root / "cine.dcm", **cine)
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"m" * 32, output_dir=out, pixels="all")
    result = process_batch(root, [Candidate("cine.dcm")], ctx)[0]
    assert result.status == "written"
    return root / "cine.dcm", out / result.output_path, result.pixel


def test_verify_rescans_a_big_image_in_chunks_with_the_same_findings(tmp_path: Path, warm: None) -> None:
    """``deid verify`` decodes a big output a chunk of frames at a time, then the input only in the chunks
    where the output still shows text; its findings are those of decoding both whole."""
    from deid_pipeline.verify import _rescan

    src, _, _ = _written(tmp_path, text_frames=(1, 2, 9, 15), moving=False)
    boxes: list[list[list[int]]] = [[] for _ in range(FRAMES)]
    boxes[5] = [[100, 100, 60, 24]]  # a box the run says it filled, over the ramp: not one value
    real = pixels.decode_frames
    decoded: dict[str, list[int]] = {}

    def spy(ds: pydicom.Dataset, start: int = 0, stop: int | None = None, heartbeat: Heartbeat | None = None) -> np.ndarray:
        frames = real(ds, start, stop, heartbeat)
        decoded.setdefault(Path(ds.filename).name, []).append(frames.shape[0])
        return frames

    out = tmp_path / "left.dcm"  # as if the run had left the text where it was
    out.write_bytes(src.read_bytes())
    pixels.decode_frames = spy
    try:
        whole = _rescan(str(src), str(out), 3, {"boxes_per_frame": boxes}, "cpu", 1 << 40)
        whole_decoded, decoded = decoded, {}
        chunked = _rescan(str(src), str(out), 3, {"boxes_per_frame": boxes}, "cpu", FRAMES * ROWS * COLS // 6)
    finally:
        pixels.decode_frames = real
    assert chunked == whole
    assert {f.detail.split(" box")[0] for f in whole if f.kind == "text-remaining"} == {"frame 1", "frame 2", "frame 9", "frame 15"}
    assert [f.detail.split(" box")[0] for f in whole if f.kind == "redaction-not-filled"] == ["frame 5"]
    assert whole_decoded == {"left.dcm": [FRAMES], "cine.dcm": [FRAMES]}
    assert decoded == {"left.dcm": [1] * FRAMES, "cine.dcm": [1] * 4}  # one frame a chunk; the input's 4 with text


def test_verify_reads_a_big_output_without_holding_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ``_BIG_OUTPUT`` an output is hashed in blocks, parsed with its pixel data left in the file and
    searched through a map in windows: the same findings (a name planted across two windows is found),
    with far less than the file's bytes held."""
    from deid_pipeline import verify

    src, out, pixel = _written(tmp_path, text_frames=(1,), moving=False)
    data = bytearray(out.read_bytes())
    name = str(pydicom.dcmread(src).PatientName).encode()
    size, at = len(data), 4 * 65536 - len(name) // 2  # across two windows of 64 KiB, inside the pixel data
    planted_anew = len(name) >= 8 and at > size - FRAMES * ROWS * COLS and name not in data
    assert planted_anew  # (no value in a failure's message)
    data[at : at + len(name)] = name
    out.write_bytes(bytes(data))
    del data, name
    profile = load_profile("safe-harbor")

    def check() -> tuple[list, int]:
        tracemalloc.start()
        try:
            found = verify.check_pair(str(src), str(out), 1, pixel, profile, False, "cpu")
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return found, peak

    held, held_peak = check()
    monkeypatch.setattr(verify, "_BIG_OUTPUT", 0)
    monkeypatch.setattr(verify, "_DEFER_SIZE", 65536)
    monkeypatch.setattr(verify, "_WINDOW", 65536)
    mapped, mapped_peak = check()
    assert mapped == held and {f.kind for f in mapped} == {"identifying-value-in-bytes"}  # the name and its parts
    assert mapped_peak < size // 2 < size < held_peak, (held_peak, mapped_peak, size)  # hashing reads 256 KiB blocks
