"""Compressed frames written as they came lose what their codestreams carry beside the image: JPEG and
JPEG-LS COM and APPn segments (EXIF with dates, camera serials and places; XMP; comments; thumbnails),
JPEG 2000 comments, bytes after the end marker. The image bytes stay as they were."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from support import deid, read_manifest, write_key

from deid_pipeline import pixels
from deid_pipeline.errors import FileError

NAME = b"QUARTERMAINE^ZEBULON"
SOURCES = ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_app14_dcmd.dcm", "JPEG-LL.dcm", "MR_small_jpeg_ls_lossless.dcm",
           "JPEG2000.dcm", "emri_small_jpeg_2k_lossless.dcm", "MR_small_RLE.dcm", "emri_small_RLE.dcm", "SC_rgb_rle.dcm"]


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(body) + 2).to_bytes(2, "big") + body


def _planted(frame: bytes) -> bytes:
    """``frame`` with the name in its metadata, where each codestream carries metadata."""
    if not frame.startswith((b"\xff\x4f", b"\xff\xd8")):  # RLE: after the last segment, in an unused offset
        count = int.from_bytes(frame[:4], "little")
        header = bytearray(frame[:64])
        header[4 + 4 * count : 8 + 4 * count] = NAME[:4]
        return bytes(header) + frame[64:] + b"\x00tail " + NAME
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
    plane = pixels.frame_plane(ds)  # each RLE segment's bytes
    as_is = [pixels.scrub_codestream(f, ts, plane) for f in _frames(ds)]
    if ts.startswith("1.2.840.10008.1.2.4.9"):  # pydicom's JPEG 2000 files name their encoder in a COM
        assert all(f is not None and b"Kakadu" not in f and b"OpenJPEG" not in f for f in as_is)
    else:
        assert as_is == [None] * len(as_is)  # nothing to take
    ds.PixelData = encapsulate([_planted(f) for f in _frames(ds)], has_bot=True)
    assert pixels.codestream_metadata_in(ds.PixelData, ts, int(ds.get("NumberOfFrames") or 1), plane=plane)
    scrubbed = pixels.scrub_encapsulated_metadata(ds)
    assert scrubbed is not None and (scrubbed.scrubbed, scrubbed.dropped) == (int(ds.get("NumberOfFrames") or 1), 0)
    assert NAME not in ds.PixelData and NAME.lower() not in ds.PixelData
    assert (np.asarray(pixels.decode_frames(ds)) == before).all()
    assert pixels.scrub_encapsulated_metadata(ds) is None  # nothing left to take


def test_an_extended_offset_table_is_rebuilt() -> None:
    """Frames indexed by an Extended Offset Table: scrubbed, the table rebuilt to the new frames."""
    from pydicom.encaps import encapsulate_extended

    ds = pydicom.dcmread(get_testdata_file("emri_small_jpeg_2k_lossless.dcm"))
    before = np.asarray(pixels.decode_frames(ds))
    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
        [_planted(f) for f in _frames(ds)])
    assert getattr(pixels.scrub_encapsulated_metadata(ds), "scrubbed", 0) == 10
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


def _without_eoi(frame: bytes) -> bytes:
    """``frame`` (a JPEG stream) cut where its EOI stood: a transfer that did not finish."""
    return frame[: frame.rfind(b"\xff\xd9")]


@pytest.mark.parametrize("source,cut", [("SC_rgb_jpeg_dcmtk.dcm", False), ("MR_small_RLE.dcm", False),
                                        ("SC_rgb_jpeg_dcmtk.dcm", True)])
def test_verify_reports_codestream_metadata(tmp_path: Path, source: str, cut: bool) -> None:
    """An output whose frames carry such metadata (an older deid's, or changed after the run); a JPEG
    frame without EOI too (verify took such a frame for one without metadata)."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    ds = pydicom.dcmread(get_testdata_file(source))
    ds.save_as(root / "a.dcm", enforce_file_format=True)
    key = write_key(tmp_path / "k", b"codestream-test-key-0123456789ab")
    proc = deid("run", str(root), str(out), "--pixels", "none", "--workers", "0", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    target = out / read_manifest(out)[0]["output_path"]
    written = pydicom.dcmread(target)
    written.PixelData = encapsulate([_without_eoi(_planted(f)) if cut else _planted(f) for f in _frames(written)])
    written.save_as(target)
    check = deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0", "--no-rescan")
    kinds = [f["kind"] for f in json.loads((out / "verify.json").read_text())["findings"]]
    assert check.returncode == 1 and "codestream-metadata-kept" in kinds, kinds


_RAMP = ((np.arange(128 * 256, dtype=np.uint32).reshape(128, 256) * 37) % 4096).astype(np.uint16)


def _ffmpeg_j2k(container: str) -> bytes:
    """``_RAMP`` encoded losslessly by FFmpeg's JPEG 2000 encoder in 64x64 tiles (eight tile-parts), as
    a bare codestream (``j2k``) or a JP2 file (``jp2``)."""
    import av

    ctx = av.CodecContext.create("jpeg2000", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 128, "gray16le", 1
    ctx.options = {"tile_width": "64", "tile_height": "64", "pred": "dwt53", "format": container}
    packets = ctx.encode(av.VideoFrame.from_ndarray(_RAMP, format="gray16le")) + ctx.encode()
    return bytes(packets[0])


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level boxes of a JP2 file: (type, content)."""
    boxes, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big") or len(data) - pos
        boxes.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + size]))
        pos += size
    return boxes


def _box(kind: bytes, content: bytes) -> bytes:
    return (len(content) + 8).to_bytes(4, "big") + kind + content


def _tile_comments(codestream: bytes) -> bytes:
    """``codestream`` with a COM naming the patient in each tile-part header, each Psot grown to match."""
    com = _segment(0x64, b"\x00\x01Operator " + NAME)
    pos = codestream.find(b"\xff\x90")
    out = bytearray(codestream[:pos])
    while codestream[pos : pos + 2] == b"\xff\x90":
        psot = int.from_bytes(codestream[pos + 6 : pos + 10], "big")
        end = len(codestream) if psot == 0 else pos + psot
        head = bytearray(codestream[pos : pos + 12])
        if psot:
            head[6:10] = (psot + len(com)).to_bytes(4, "big")
        out += head + com + codestream[pos + 12 : end]
        pos = end
    return bytes(out + codestream[pos:])


def _psot_grown(codestream: bytes, index: int, by: int) -> bytes:
    """``codestream`` with the Psot of its ``index``-th tile-part ``by`` bytes longer."""
    pos = codestream.find(b"\xff\x90")
    for _ in range(index):
        pos += int.from_bytes(codestream[pos + 6 : pos + 10], "big")
    psot = int.from_bytes(codestream[pos + 6 : pos + 10], "big")
    return codestream[: pos + 6] + (psot + by).to_bytes(4, "big") + codestream[pos + 10 :]


def _ramp_file(frame: bytes) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows, ds.Columns, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 128, 256, 16, 15, 0
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    ds.PixelData = encapsulate([frame], has_bot=False)
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    return ds


@pytest.mark.parametrize("source", ["ffmpeg-tiles", "ffmpeg-jp2", "openjpeg-tlm"])
def test_tile_part_comments_and_jp2_metadata_boxes_go(source: str) -> None:
    """A COM may stand in each tile-part header too, not only in the main header (the code before kept
    those); a frame written as a JP2 file carries XML and UUID (EXIF, XMP) boxes. They go, each Psot
    and the codestream box's length fixed, TLM (an index of the old tile-part lengths) dropped; the
    image decodes the same. Real codestreams: FFmpeg's encoder in 64x64 tiles (8 tile-parts), as a
    codestream and as a JP2 file; OpenJPEG's with a TLM segment."""
    import openjpeg

    if source == "openjpeg-tlm":
        planted = _tile_comments(openjpeg.encode(_RAMP, bits_stored=16, add_tlm=True))
        assert b"\xff\x55" in planted
    elif source == "ffmpeg-tiles":
        planted = _tile_comments(_ffmpeg_j2k("j2k"))
        assert planted.count(NAME) == 8
    else:
        boxes = _boxes(_ffmpeg_j2k("jp2"))
        assert [k for k, _ in boxes] == [b"jP  ", b"ftyp", b"jp2h", b"jp2c"]
        extra = _box(b"xml ", b"<patient>" + NAME + b"</patient>") + _box(b"uuid", bytes(16) + b"Exif " + NAME)
        planted = b"".join(_box(k, _tile_comments(c) if k == b"jp2c" else c) for k, c in boxes[:3])
        planted += extra + _box(b"jp2c", _tile_comments(boxes[3][1]))
    ds = _ramp_file(planted)
    assert (np.asarray(pixels.decode_frames(ds))[0] == _RAMP).all()  # a valid stream, as planted
    ts = ds.file_meta.TransferSyntaxUID
    assert getattr(pixels.scrub_encapsulated_metadata(ds), "scrubbed", 0) == 1
    assert NAME not in ds.PixelData and b"\xff\x55" not in ds.PixelData
    assert (np.asarray(pixels.decode_frames(ds))[0] == _RAMP).all()
    assert pixels.scrub_codestream(_frames(ds)[0], ts) is None  # nothing left to take


def test_an_rle_segment_is_cut_to_what_a_decoder_reads() -> None:
    """Random run sequences cut at a random plane: the cut segment decodes to the first ``plane`` bytes
    of the whole one, a last run past the plane shortened (a literal run's surplus bytes gone)."""
    import random

    def decoded(seg: bytes) -> bytes:
        out, pos = bytearray(), 0
        while pos < len(seg):
            head = seg[pos]
            if head < 128:
                out += seg[pos + 1 : pos + 2 + head]
                pos += head + 2
            elif head > 128:
                out += seg[pos + 1 : pos + 2] * (257 - head)
                pos += 2
            else:
                pos += 1
        return bytes(out)

    rng = random.Random(7)
    for _ in range(2000):
        seg = bytearray()
        for _ in range(rng.randint(1, 12)):
            n = rng.randint(1, 128)
            seg += bytes([n - 1, *rng.randbytes(n)]) if rng.random() < 0.5 else bytes([257 - max(n, 2), rng.randrange(256)])
            seg += b"\x80" * (rng.random() < 0.1)
        whole = decoded(bytes(seg))
        plane = rng.randint(1, len(whole))
        cut = pixels._rle_trimmed(bytes(seg), plane)
        assert cut is not None and decoded(cut) == whole[:plane] and len(cut) <= len(seg)
        if plane < len(whole):
            assert len(cut) < len(seg) or decoded(cut) != whole
    assert pixels._rle_trimmed(b"\x05abc", 6) is None  # runs out first: left to the decoder


@pytest.mark.parametrize("source", ["SC_rgb_jpeg_dcmtk.dcm", "JPEG-LL.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_a_jpeg_frame_without_eoi_loses_its_metadata(source: str) -> None:
    """A JPEG or JPEG-LS frame whose EOI is missing (a cut transfer; decoders show its image) kept its
    comments and EXIF: the scrub gave up without EOI. Now they go as for any frame, the image the same."""
    ds = pydicom.dcmread(get_testdata_file(source))
    before = np.asarray(pixels.decode_frames(ds))
    ts = ds.file_meta.TransferSyntaxUID
    planted = _without_eoi(_planted(_frames(ds)[0]))
    assert NAME in planted and b"\xff\xd9" not in planted[-2:]
    assert pixels.codestream_metadata_in(encapsulate([planted]), ts, 1)
    scrubbed = pixels.scrub_codestream(planted, ts)
    assert scrubbed is not None and NAME not in scrubbed and b"SN-778812" not in scrubbed
    ds.PixelData = encapsulate([scrubbed])
    assert (np.asarray(pixels.decode_frames(ds)) == before).all()
    assert pixels.scrub_codestream(scrubbed, ts) is None


@pytest.mark.parametrize("source,index,by", [("openjpeg", 0, 100), ("ffmpeg-tiles", 7, 100), ("ffmpeg-tiles", 0, 1 << 20),
                                             ("ffmpeg-tiles", 0, 100)])
def test_a_tile_part_longer_than_its_frame_loses_its_comments(source: str, index: int, by: int) -> None:
    """A tile-part whose Psot claims more bytes than the frame holds (a cut transfer): the scrub left
    every tile-part as it was, comments included. Now such a tile-part runs to the next tile-part or
    EOC, and each tile-part's comment goes as in the intact stream (the grown Psot kept as it came). A
    Psot that ends inside the next tile-part (the frame holds that many bytes) is ``codestream-malformed``."""
    import openjpeg

    codestream = openjpeg.encode(_RAMP, bits_stored=16) if source == "openjpeg" else _ffmpeg_j2k("j2k")
    planted = _tile_comments(codestream)
    clean = pixels.scrub_codestream(planted, "1.2.840.10008.1.2.4.90")
    assert clean is not None and NAME not in clean
    grown = _psot_grown(planted, index, by)
    if index == 0 and by == 100 and source != "openjpeg":
        with pytest.raises(FileError) as err:
            pixels.scrub_codestream(grown, "1.2.840.10008.1.2.4.90")
        assert err.value.code == "codestream-malformed"
        return
    assert pixels.scrub_codestream(grown, "1.2.840.10008.1.2.4.90") == _psot_grown(clean, index, by)


def _com_past_the_end(frame: bytes) -> bytes:
    """``frame`` cut at its EOI, a comment whose length runs past the frame's end in its place."""
    return _without_eoi(frame) + b"\xff\xfe\x7f\xff Patient " + NAME


_MALFORMED = {
    "jpeg-comment-past-the-end": ("SC_rgb_jpeg_dcmtk.dcm", _com_past_the_end),
    "jpeg-no-soi": ("SC_rgb_jpeg_dcmtk.dcm", lambda f: b"\x00\x00" + _planted(f)[2:]),
    "jpeg-ls-junk-between-segments": ("MR_small_jpeg_ls_lossless.dcm", lambda f: f[:2] + b"junk " + NAME + f[2:]),
    "j2k-main-header-cut": ("JPEG2000.dcm", lambda f: _planted(f)[:60]),
    "j2k-tile-part-header-cut": ("JPEG2000.dcm", lambda f: _tile_comments(f)[: f.find(b"\xff\x90") + 18]),
    "j2k-junk-after-the-tile-parts": ("JPEG2000.dcm", lambda f: f[: f.rfind(b"\xff\xd9")] + b"junk " + NAME),
}


@pytest.mark.parametrize("case", sorted(_MALFORMED))
def test_a_codestream_that_does_not_parse_is_refused(case: str) -> None:
    """A frame whose segments or tile-parts do not parse was written as it came, what it carries beside
    the image included: ``codestream-malformed`` now, and verify counts it as metadata kept."""
    source, spoil = _MALFORMED[case]
    ds = pydicom.dcmread(get_testdata_file(source))
    ts = ds.file_meta.TransferSyntaxUID
    frame = spoil(_frames(ds)[0])
    with pytest.raises(FileError) as err:
        pixels.scrub_codestream(frame, ts)
    assert err.value.code == "codestream-malformed" and NAME.decode() not in err.value.message
    ds.PixelData = encapsulate([frame])
    assert pixels.codestream_metadata_in(ds.PixelData, ts, 1)
    with pytest.raises(FileError):
        pixels.scrub_encapsulated_metadata(ds)


def _flat_jpeg_file(frame_of: Callable[[bytes], bytes]) -> pydicom.Dataset:
    """A 64x64 grey JPEG Baseline image (no text for a scan to find), its frame ``frame_of`` Pillow's."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(buf, "JPEG", quality=90)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.PixelData = encapsulate([frame_of(buf.getvalue())], has_bot=False)
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    return ds


@pytest.mark.parametrize("pixel_rule", ["none", "all"])
def test_a_run_quarantines_what_it_cannot_scrub(tmp_path: Path, pixel_rule: str) -> None:
    """A frame without EOI and a tile-part longer than its frame are written without their metadata; a
    frame that decodes but whose comment runs past its end is ``codestream-malformed`` (both were
    written as they came, metadata included, when no text was found in them)."""
    import openjpeg

    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    _flat_jpeg_file(lambda f: _without_eoi(_planted(f))).save_as(root / "noeoi.dcm", enforce_file_format=True)
    _flat_jpeg_file(_com_past_the_end).save_as(root / "malformed.dcm", enforce_file_format=True)
    grown = _ramp_file(_psot_grown(_tile_comments(openjpeg.encode(_RAMP, bits_stored=16)), 0, 100))
    grown.save_as(root / "psot.dcm", enforce_file_format=True)
    key = write_key(tmp_path / "k", b"codestream-test-key-0123456789ab")
    deid("run", str(root), str(out), "--profile", "basic", "--pixels", pixel_rule, "--workers", "0",
         "--key-file", str(key), "--quiet")
    journal = [json.loads(line) for line in (tmp_path / "out.private" / "journal.jsonl").read_text().splitlines()]
    outcome = {Path(j["input"]).stem: (j["status"], j["reason"]) for j in journal}
    assert outcome["noeoi"] == ("written", "")
    assert outcome["malformed"] == ("quarantined", "codestream-malformed")
    if pixel_rule == "none":  # a scan finds the stream cut short: pixel-decode-failed
        assert outcome["psot"] == ("written", "")
    for path in out.rglob("*.dcm"):
        assert NAME not in path.read_bytes(), path.name
