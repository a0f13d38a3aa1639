"""Malformed inputs never escape ``process_batch``: one record each, and nothing unsafe is written.

Mutations of real pydicom test files (with a canary PatientName planted first): truncation, flipped
bytes, wrong VRs, bogus huge lengths, deeply nested undefined-length sequences, broken encapsulated
fragments, a transfer syntax in the meta that does not match the data set.
"""

from __future__ import annotations

import io
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from deid_pipeline.config import RunContext
from deid_pipeline.discover import Candidate
from deid_pipeline.pipeline import process_batch
from deid_pipeline.profile import load_profile

FILES = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm", "rtplan.dcm"]
ENCAPSULATED = ["SC_rgb_rle.dcm", "JPEG2000.dcm"]
CANARY = "Zqfuzzcanary^Gertrude"
NEEDLES = [b"Zqfuzzcanary", b"Gertrude"]
KEY = b"fuzz-test-key-0123456789abcdef0123456789"
STATUSES = {"written", "skipped", "quarantined", "failed"}
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.3.4.5.6.7", "",
]
VRS = [b"SQ", b"OB", b"UN", b"US", b"FD", b"AT", b"UT", b"DA", b"ZZ", b"\x00\x00", b"PN"]
SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_BASE: dict[str, bytes] = {}
_PROFILE = None


def base(name: str) -> bytes:
    """The pydicom test file with the canary planted, as Part 10 bytes."""
    if name not in _BASE:
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.PatientName = CANARY
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        _BASE[name] = buf.getvalue()
    return _BASE[name]


def meta_end(data: bytes) -> int:
    """Offset of the first byte after the file meta group."""
    (group_len,) = struct.unpack_from("<I", data, 132 + 8)
    return 132 + 12 + group_len


def element_offsets(data: bytes) -> list[int]:
    """Offsets of plausible explicit-VR element headers after the meta (VR bytes look like a VR)."""
    out = []
    start = meta_end(data)
    for i in range(start, len(data) - 8, 2):
        vr = data[i + 4:i + 6]
        if vr.isalpha() and vr.isupper() and data[i + 1] < 0x80:
            out.append(i)
    return out or [start]


# --------------------------------------------------------------------------- mutations (bytes -> bytes)


def truncate(data: bytes, draw: Callable) -> tuple[str, bytes]:
    at = draw(st.integers(0, len(data) - 1))
    return f"truncate@{at}", data[:at]


def flip(data: bytes, draw: Callable) -> tuple[str, bytes]:
    flips = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), min_size=1, max_size=8))
    buf = bytearray(data)
    for off, x in flips:
        buf[off] ^= x
    return f"flip{flips}", bytes(buf)


def wrong_vr(data: bytes, draw: Callable) -> tuple[str, bytes]:
    offs = element_offsets(data)
    off = draw(st.sampled_from(offs))
    vr = draw(st.sampled_from(VRS))
    buf = bytearray(data)
    buf[off + 4:off + 6] = vr
    return f"vr@{off}={vr!r}", bytes(buf)


def huge_length(data: bytes, draw: Callable) -> tuple[str, bytes]:
    off = draw(st.sampled_from(element_offsets(data)))
    buf = bytearray(data)
    vr = bytes(buf[off + 4:off + 6])
    if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
        n = draw(st.sampled_from([0xFFFFFFFE, 0x7FFFFFFF, 0x80000000, len(data) * 4, 0xFFFFFFFF]))
        struct.pack_into("<I", buf, off + 8, n)
    else:
        n = draw(st.sampled_from([0xFFFF, 0xFFFE, 0x8001]))
        struct.pack_into("<H", buf, off + 6, n)
    return f"len@{off}={n:#x}", bytes(buf)


def deep_sequence(data: bytes, draw: Callable) -> tuple[str, bytes]:
    depth = draw(st.integers(1, 400))
    terminated = draw(st.booleans())
    leaf = struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 22) + CANARY.encode() + b" "
    seq_head = struct.pack("<HH2sHI", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    seq_tail = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    blob = seq_head * depth + leaf + (seq_tail * depth if terminated else b"")
    pix = data.find(b"\xe0\x7f\x10\x00", meta_end(data))
    at = pix if pix > 0 else len(data)
    return f"deep-seq depth={depth} terminated={terminated}", data[:at] + blob + data[at:]


def wrong_transfer_syntax(data: bytes, draw: Callable) -> tuple[str, bytes]:
    ts = draw(st.sampled_from(TRANSFER_SYNTAXES))
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    meta.TransferSyntaxUID = UID(ts)
    buf = io.BytesIO()
    write_file_meta_info(buf, meta, enforce_standard=False)
    return f"ts={ts!r}", data[:132] + buf.getvalue() + data[meta_end(data):]


def broken_fragments(data: bytes, draw: Callable) -> tuple[str, bytes]:
    pix = data.find(b"\xe0\x7f\x10\x00", meta_end(data))
    items = []
    i = data.find(b"\xfe\xff\x00\xe0", pix)
    while i != -1:
        items.append(i)
        i = data.find(b"\xfe\xff\x00\xe0", i + 8)
    buf = bytearray(data)
    how = draw(st.sampled_from(["length", "tag", "cut-delimiter", "garble", "empty-offsets-lie"]))
    item = draw(st.sampled_from(items)) if items else pix
    if how == "length":
        struct.pack_into("<I", buf, item + 4, draw(st.sampled_from([0, 1, 3, 0xFFFFFFFF, len(data), 0x7FFFFFF0])))
    elif how == "tag":
        buf[item:item + 4] = draw(st.sampled_from([b"\xfe\xff\xdd\xe0", b"\xfe\xff\x0d\xe0", b"\x00\x00\x00\x00"]))
    elif how == "cut-delimiter":
        buf = buf[:-8] if buf.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00") else buf[:-1]
    elif how == "garble":
        start = item + 8 + draw(st.integers(0, 64))
        for k in range(draw(st.integers(1, 256))):
            if start + k < len(buf):
                buf[start + k] = draw(st.integers(0, 255)) if k < 4 else (buf[start + k] ^ 0x5A)
    else:
        struct.pack_into("<I", buf, items[0] + 4, 4) if items else None
        buf = buf[:items[0] + 8] + b"\xff\xff\xff\x7f" + buf[items[0] + 8:] if items else buf
    return f"fragments:{how}@{item}", bytes(buf)


MUTATIONS = [truncate, flip, wrong_vr, huge_length, deep_sequence, wrong_transfer_syntax]


# --------------------------------------------------------------------------- the check


def check(name: str, data: bytes, pixels: str, what: str) -> None:
    global _PROFILE
    if _PROFILE is None:
        _PROFILE = load_profile("safe-harbor")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        root.mkdir()
        (root / name).write_bytes(data)
        out = Path(tmp) / "out"
        ctx = RunContext(profile=_PROFILE, key=KEY, output_dir=out, pixels=pixels, device="cpu")
        try:
            results = process_batch(root, [Candidate(name)], ctx)
        except BaseException as exc:  # pragma: no cover - the failure we look for
            raise AssertionError(f"{name} {what}: {type(exc).__name__} escaped process_batch") from exc
        assert len(results) == 1, what
        r = results[0]
        assert r.status in STATUSES, (what, r.status)
        if r.status != "written":
            assert r.reason_code, (what, r.status)
            assert r.output_path == "" and not [p for p in out.rglob("*") if p.is_file()], what
            return
        written = out / r.output_path
        raw = written.read_bytes()
        for n in NEEDLES:
            assert n not in raw, f"{name} {what}: canary written"
        ds = pydicom.dcmread(written)
        assert ds.PatientIdentityRemoved == "YES", what
        for _ in ds.iterall():
            pass


@SETTINGS
@given(st.sampled_from(FILES), st.sampled_from(MUTATIONS), st.data())
def test_mutated_headers_never_escape(name: str, mutate: Callable, data: st.DataObject) -> None:
    what, mutated = mutate(base(name), data.draw)
    check(name, mutated, "none", what)


@settings(SETTINGS, max_examples=20)
@given(st.sampled_from(ENCAPSULATED), st.data())
def test_broken_fragments_never_escape(name: str, data: st.DataObject) -> None:
    what, mutated = broken_fragments(base(name), data.draw)
    check(name, mutated, "none", what)


@settings(SETTINGS, max_examples=8)
@given(st.sampled_from(ENCAPSULATED + ["CT_small.dcm"]), st.data())
def test_broken_pixels_with_the_detector(name: str, data: st.DataObject) -> None:
    fn = data.draw(st.sampled_from([broken_fragments, truncate, flip])) if name in ENCAPSULATED else flip
    what, mutated = fn(base(name), data.draw)
    check(name, mutated, "all", what)


def test_unmutated_bases_are_written() -> None:
    for name in FILES:
        check(name, base(name), "none", "none")
