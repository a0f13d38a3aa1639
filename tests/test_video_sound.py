"""A video's stream may carry sound beside the pictures (PS3.5 8.2.5-8.2.8): a surgeon's dictation over
an endoscopy, a name said aloud. No stage listens to it, so under ``audio: quarantine`` (every shipped
profile) a video holding sound is quarantined with reason ``audio``, as an audio object is; a silent
video is not. The streams are real ones, encoded here by FFmpeg (PyAV): MPEG-2 program stream,
MPEG-2 transport stream with H.264 or HEVC, MP4."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid
from support import deid, write_key

from deid_pipeline.tags import holds_audio, video_holds_sound

_VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
#: (container, video codec, sound codec or None, transfer syntax)
_STREAMS = {
    "ps-mpeg2-mp2": ("mpeg", "mpeg2video", "mp2", "1.2.840.10008.1.2.4.100"),
    "ts-h264-mp2": ("mpegts", "h264", "mp2", "1.2.840.10008.1.2.4.102"),
    "ts-hevc-ac3": ("mpegts", "hevc", "ac3", "1.2.840.10008.1.2.4.107"),
    "mp4-h264-aac": ("mp4", "h264", "aac", "1.2.840.10008.1.2.4.102"),
    "ts-hevc-silent": ("mpegts", "hevc", None, "1.2.840.10008.1.2.4.107"),
    "mp4-h264-silent": ("mp4", "h264", None, "1.2.840.10008.1.2.4.102"),
    "ps-mpeg2-silent": ("mpeg", "mpeg2video", None, "1.2.840.10008.1.2.4.100"),
    "es-h264": ("h264", "h264", None, "1.2.840.10008.1.2.4.102"),
}
_AUDIO_FORMATS = {"mp2": ("s16", 1152), "ac3": ("fltp", 1536), "aac": ("fltp", 1024)}


def _stream(container: str, video: str, sound: str | None, frames: int = 12) -> bytes:
    """A 64x48 video of ``frames`` noise frames, with a 440 Hz tone beside it when ``sound`` is given."""
    buf = io.BytesIO()
    out = av.open(buf, "w", format=container)
    vs = out.add_stream(video, rate=25)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    if video == "hevc":
        vs.options = {"x265-params": "log-level=none"}
    aus = out.add_stream(sound, rate=48000) if sound else None
    rng = np.random.default_rng(7)
    packets = []
    for i in range(frames):
        img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        packets += vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24"))
    packets += vs.encode()
    if aus is not None:
        fmt, size = _AUDIO_FORMATS[sound]
        t = np.arange(size * 10) / 48000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(10):
            part = tone[k * size : (k + 1) * size]
            samples = (part * 32767).astype(np.int16)[None].repeat(2, 0).T.reshape(1, -1) if fmt == "s16" else part[None].repeat(2, 0)
            frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="stereo")
            frame.sample_rate, frame.pts = 48000, k * size
            packets += aus.encode(frame)
        packets += aus.encode()
    for packet in packets:
        out.mux(packet)
    out.close()
    return buf.getvalue()


def _video_file(path: Path, name: str, fragments: int = 1) -> None:
    """A Video Endoscopic Image of stream ``name`` (:data:`_STREAMS`) in ``fragments`` fragments, its
    patient's name planted."""
    container, video, sound, ts = _STREAMS[name]
    data = _stream(container, video, sound)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = ts
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = _VIDEO_ENDOSCOPIC
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.RecognizableVisualFeatures, ds.PatientName = "ES", "NO", "Quillfeather^Odalys"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 48, 64, 3, "YBR_PARTIAL_420"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation, ds.PlanarConfiguration, ds.NumberOfFrames = 7, 0, 0, 12
    ds.PixelData = encapsulate([data], fragments_per_frame=fragments, has_bot=False)
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("name", sorted(_STREAMS))
def test_sound_is_found_in_each_container(tmp_path: Path, name: str) -> None:
    """An audio PES packet in a program or transport stream, a sound track in an MP4; nothing in
    silent ones, an MP4's length-prefixed NAL units and an elementary stream included."""
    _video_file(tmp_path / "v.dcm", name)
    ds = pydicom.dcmread(tmp_path / "v.dcm")
    assert holds_audio(ds) is (_STREAMS[name][2] is not None)


def test_a_start_code_split_by_an_item_header_is_found() -> None:
    """The four bytes that start an audio packet, split by the item header between two fragments."""
    head = b"\x00\x00\x01\xe0" + bytes(range(0x10, 0x70))
    split = encapsulate([head + b"\x00\x00", b"\x01\xc0" + bytes(64)], has_bot=False)
    assert video_holds_sound(split)
    assert not video_holds_sound(encapsulate([head + b"\x00\x00", b"\x02\xc0" + bytes(64)], has_bot=False))


def test_an_mp4_is_judged_by_its_tracks_not_by_its_sample_bytes() -> None:
    """In an MP4 a NAL unit of 448 bytes is prefixed 00 00 01 C0, an audio start code elsewhere: no
    sound without a sound track; with one (its handler box), sound."""
    ftyp = (20).to_bytes(4, "big") + b"ftypisom" + bytes(4) + b"isom"
    nal = (448).to_bytes(4, "big") + b"\x65" + bytes(447)
    mdat = (8 + len(nal)).to_bytes(4, "big") + b"mdat" + nal
    hdlr = (33).to_bytes(4, "big") + b"hdlr" + bytes(8) + b"soun" + bytes(12) + b"\0"
    assert b"\x00\x00\x01\xc0" in mdat
    assert not video_holds_sound(encapsulate([ftyp + mdat], has_bot=False))
    assert video_holds_sound(encapsulate([ftyp + hdlr + mdat], has_bot=False))


def _run(tmp_path: Path, profile: str, pixels: str) -> tuple[Path, Path, Path, int]:
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("ps-mpeg2-mp2", "ts-h264-mp2", "mp4-h264-aac", "ts-hevc-silent", "mp4-h264-silent"):
        _video_file(inp / f"{name}.dcm", name, fragments=3 if name.startswith("ts") else 1)
    key = tmp_path / "k"
    write_key(key, b"video-sound-test-key-0123456789ab")
    out = tmp_path / "o"
    proc = deid("run", str(inp), str(out), "--profile", profile, "--workers", "0", "--key-file", str(key),
                "--quiet", "--pixels", pixels)
    return inp, out, key, proc.returncode


@pytest.mark.parametrize(("profile", "pixels"), [("safe-harbor", "none"), ("basic", "none"), ("basic", "triage")])
def test_videos_with_sound_are_quarantined(tmp_path: Path, profile: str, pixels: str) -> None:
    """Under ``--pixels none`` the code before wrote all five, sound and all (and the fast path wrote
    them without reading Pixel Data); now the three with sound are quarantined, reason ``audio``."""
    _inp, out, _key, code = _run(tmp_path, profile, pixels)
    assert code == 3
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    sound = sorted(r["status"] + ":" + ((r["reason"] or {}).get("code") or "") for r in recs)
    if pixels == "none":
        assert sound == ["quarantined:audio"] * 3 + ["written:"] * 2, sound
    else:  # no decoder scans a video: the silent ones are quarantined for that, after the sound check
        assert sound == ["quarantined:audio"] * 3 + ["quarantined:unsupported-transfer-syntax"] * 2, sound


def test_verify_names_a_video_kept_with_its_sound(tmp_path: Path) -> None:
    """``audio: keep`` writes them; ``deid verify`` reports each video that holds sound."""
    user = tmp_path / "voices.yaml"
    user.write_text("name: voices\nversion: '1'\nextends: basic\nsettings:\n  audio: keep\nrows: []\n")
    inp, out, key, code = _run(tmp_path, str(user), "none")
    assert code == 0 and len(list(out.rglob("*.dcm"))) == 5
    proc = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--no-rescan",
                "--profile", str(user))
    kinds = [f["kind"] for f in json.loads((out / "verify.json").read_text())["findings"]]
    assert kinds.count("audio-kept") == 3 and proc.returncode == 1, kinds


def test_verify_searches_a_big_video_where_it_lies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify parses a big output (over 1 MiB) with its Pixel Data left in the file, and took that
    Pixel Data out before the sound check: a video over 1 MiB written with its sound (``audio: keep``)
    gave no ``audio-kept``. The check now runs first and reads the video in the file, a fragment at a
    time, not into memory whole."""
    from deid_pipeline import tags, verify
    from deid_pipeline.profile import load_profile

    path = tmp_path / "v.dcm"
    _video_file(path, "ts-h264-mp2", fragments=3)
    given: list[str] = []
    real = tags.video_holds_sound
    monkeypatch.setattr(tags, "video_holds_sound", lambda data: given.append(type(data).__name__) or real(data))
    monkeypatch.setattr(verify, "_BIG_OUTPUT", 0)
    monkeypatch.setattr(verify, "_DEFER_SIZE", 1024)
    found = verify.check_pair(str(path), str(path), 1, {}, load_profile("basic"), False, "cpu")
    assert "audio-kept" in {f.kind for f in found} and given == ["BufferedReader"]
