"""De-identify files: the one place that turns a per-file failure into a recorded outcome.

``process_batch`` is what Dask maps over batches of inputs. It loads every file of the batch, runs
the pixel stage over the frames of all of them together (so a GPU sees full batches), then finishes
each file: pixel redaction, header de-identification, one atomic write. A file is written only after
every stage succeeded; anything else becomes a ``skipped``/``quarantined``/``failed`` record.

When no pixels are scanned, a file the byte-level pass handles (:mod:`fastpath`) is de-identified
without a pydicom data set of all its elements; its output is byte for byte the pydicom path's.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import secrets
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import pydicom
import yaml
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.charset import default_encoding
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_partial
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID
from pydicom.tag import tag_in_exception
from pydicom.valuerep import AMBIGUOUS_VR, EXPLICIT_VR_LENGTH_32

from . import __version__, fastpath
from .config import RunContext
from .discover import UNREAD, Candidate
from .errors import STORAGE_CODE, FileError, SkipFile, storage_error, withhold_warning_messages
from .resources import configs_dir
from .tags import MAX_SEQUENCE_DEPTH, holds_audio, inert_vr
from .types import PIXEL_DATA_TAGS, Current, FileResult, Hashed, Heartbeat, PixelReport, Region

log = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
TMP_PREFIX = ".deid-tmp-"
_SAFE_COMPONENT = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.\-_]{0,63}$")
_UNDEFINED = 0xFFFFFFFF
_SPECIFIC_CHARACTER_SET = 0x00080005


@dataclass
class Loaded:
    """A file read and checked, waiting for the pixel scan and the finish."""

    result: FileResult
    ds: Dataset
    phi_terms: frozenset[str]
    patient_folder: str
    frames: np.ndarray | None = None
    chunked: bool = False  # too big to hold decoded: scanned chunk by chunk, decoded whole only to redact
    originals: dict[str, str] | None = None  # linkage row (originals + pseudonyms), only with --linkage
    report: PixelReport = field(default_factory=PixelReport)
    fast: fastpath.Scanned | None = None  # header only, de-identified by the byte-level pass (ds: its stub)


# --------------------------------------------------------------------------- reading


def sniff(data: bytes) -> str:
    """``"part10"`` (preamble + DICM), ``"raw"`` (a preamble-less data set) or ``"not-dicom"``."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "part10"
    if len(data) >= 8:
        group = int.from_bytes(data[0:2], "little")
        elem = int.from_bytes(data[2:4], "little")
        vr = data[4:6]
        plausible_vr = vr.isalpha() and vr.isupper()
        if group in (0x0002, 0x0008) and (elem < 0x0200) and (plausible_vr or int.from_bytes(data[4:8], "little") < 0x10000):
            return "raw"
    return "not-dicom"


#: Leading bytes of archive and compressed-file formats (tar: "ustar" at byte 257), and their names.
_ARCHIVES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "ZIP"), (0, b"PK\x05\x06", "ZIP"), (0, b"PK\x07\x08", "ZIP"), (0, b"\x1f\x8b", "gzip"),
    (0, b"BZh", "bzip2"), (0, b"\xfd7zXZ\x00", "xz"), (0, b"(\xb5/\xfd", "zstd"), (0, b"7z\xbc\xaf\x27\x1c", "7-Zip"),
    (0, b"Rar!\x1a\x07", "RAR"), (257, b"ustar", "tar"),
)


def _not_dicom(head: bytes) -> SkipFile:
    """The skip of an input that is not DICOM: ``archive`` (naming the format) when ``head``, its first
    bytes, starts an archive or a compressed file, whose DICOM files deid does not open; else ``not-dicom``."""
    for offset, magic, name in _ARCHIVES:
        if head[offset : offset + len(magic)] == magic:
            return SkipFile("archive", f"a {name} archive or compressed file: deid does not open archives; "
                                       "unpack it and run deid on its files")
    return SkipFile("not-dicom", "not a DICOM file (no preamble and no data set at the start)")


def _transfer_syntax(ds: Dataset) -> UID | None:
    """The file's transfer syntax, None without file meta; ``unsupported-transfer-syntax`` when unknown."""
    meta = getattr(ds, "file_meta", None)
    value = str(meta.get("TransferSyntaxUID", "") or "").strip("\x00 ") if meta is not None else ""
    if not value:
        return None
    uid = UID(value)
    try:
        uid.is_compressed  # noqa: B018 - raises for a syntax pydicom does not know
    except (ValueError, AttributeError):
        raise FileError("unsupported-transfer-syntax", "the transfer syntax in the file meta is not a known one") from None
    return uid


def _check_truncation(ds: Dataset) -> None:
    """Raise ``truncated`` when a top-level value is shorter than its declared length."""
    from . import pixels

    for tag in list(ds._dict.keys()):
        raw = ds._dict[tag]
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if length is None or length == _UNDEFINED or not isinstance(value, (bytes, bytearray)):
            continue
        if len(value) < length:
            raise FileError("truncated", "the file ends inside an element: transfer incomplete")
    ts = _transfer_syntax(ds)
    if "PixelData" in ds and "Rows" in ds and "Columns" in ds:
        elem = ds["PixelData"]
        if ts is not None and ts.is_compressed and not elem.is_undefined_length:
            raise FileError("transfer-syntax-mismatch", "the meta names a compressed syntax but the pixel data is not encapsulated")
        if not elem.is_undefined_length and not (ts is not None and ts.is_compressed):
            expected = pixels.native_pixel_length(ds)
            if expected is not None and 0 < len(elem.value or b"") < expected:  # empty: no image to cut short
                raise FileError("truncated", "the pixel data is shorter than the image size: transfer incomplete")


class _NestedTooDeep(Exception):
    """A sequence item deeper than :data:`tags.MAX_SEQUENCE_DEPTH`."""


def _too_deep() -> FileError:
    """The reason of a file nested past :data:`tags.MAX_SEQUENCE_DEPTH`, however it was found."""
    return FileError("parse-error", f"its sequences are nested more than {MAX_SEQUENCE_DEPTH} items deep")


def _convert_all(ds: Dataset, depth: int = 0) -> None:
    """Convert every raw element that could fail to convert, nested ones included: the same outcome as
    iterating ``ds.iterall()``.

    An inert element (``tags.inert_vr``: its conversion cannot fail and touches nothing else) stays
    raw; the header stage converts it only if it reads or changes its value. A plain element (not pixel
    data nor the character set, read in full, not a sequence, VR unambiguous) is converted exactly as
    ``ds[tag]`` would (private creator included) and stored directly; anything else goes through
    ``ds[tag]`` and pydicom's own bookkeeping (pixel representation, ambiguous VR correction, deferred
    reads). Raises whatever the conversion raises, and :class:`_NestedTooDeep` for items within items
    past :data:`tags.MAX_SEQUENCE_DEPTH` (``depth``: the items ``ds`` is within).
    """
    elements = ds._dict
    charset: Any = None
    for tag in sorted(elements.keys()):
        elem = elements[tag]
        if isinstance(elem, RawDataElement):
            if inert_vr(ds, elem) is not None:
                continue
            if tag != _SPECIFIC_CHARACTER_SET and tag not in PIXEL_DATA_TAGS and (elem.value is not None or elem.length == 0):
                if charset is None:  # as Dataset.__getitem__ computes it
                    charset = ds.original_character_set or ds._character_set
                converted = convert_raw_data_element(elem, encoding=charset, ds=ds)
                if converted.VR != "SQ" and converted.VR not in AMBIGUOUS_VR:
                    if (tag >> 16) & 1:  # as Dataset.__setitem__ does
                        creator_tag = (tag & 0xFFFF0000) | ((tag & 0xFFFF) >> 8)
                        if creator_tag != tag and creator_tag in elements:
                            converted.private_creator = ds[creator_tag].value
                    elements[tag] = converted
                    continue
            elem = ds[tag]
        if elem.VR == "SQ":
            if elem.value and depth >= MAX_SEQUENCE_DEPTH:
                raise _NestedTooDeep
            for item in elem.value:
                _convert_all(item, depth + 1)


#: Inputs above this size are hashed in a first pass and parsed from the open file (not from a copy).
STREAM_ABOVE_BYTES = 64 * 2**20


def _unreadable(exc: OSError) -> FileError:
    """``unreadable`` for an input the system would not read (permission, I/O error, gone since the
    walk), with the system's reason only: the exception's own text names the path."""
    why = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return FileError("unreadable", f"the input could not be read: {why}", status="failed")


@contextmanager
def _reading_input() -> Iterator[None]:
    """An ``OSError`` inside the block (the input's stat, open or read) becomes :func:`_unreadable`. Only
    around reads: pydicom and Pillow raise ``OSError`` for corrupt data too, which is not ``unreadable``."""
    try:
        yield
    except OSError as exc:
        raise _unreadable(exc) from None


def _read_big(path: Path, result: FileResult, limit: int | None = None, hashed: Hashed | None = None) -> Dataset:
    """Hash, sniff and parse a big input holding it once; ``input-changed`` if it changes meanwhile.
    ``limit``: the most bytes its deflated data set may inflate to (:func:`_check_inflated`);
    ``hashed``: told the hash before the parse."""
    with _reading_input():
        fh = open(path, "rb")
        before = os.fstat(fh.fileno())
    with fh:
        h = hashlib.sha256()
        with _reading_input():
            for block in iter(lambda: fh.read(1 << 23), b""):
                h.update(block)
        result.input_sha256, result.input_size = h.hexdigest(), before.st_size
        if hashed is not None:
            hashed(result.input_sha256, result.input_size)
        with _reading_input():  # a read error in the second pass (the first one passed)
            fh.seek(0)
            head = fh.read(512)
            kind = sniff(head)
            if kind == "not-dicom":
                raise _not_dicom(head)
            fh.seek(0)
            if kind == "part10":
                _check_inflated(fh, limit)
            ds = _read_dataset(fh, kind)
            after = os.fstat(fh.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise FileError("input-changed", "the file changed while it was read; run again once the export is complete", status="failed")
    return ds


_HEAD_BYTES = 1 << 16
_META_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"})


def _data_set_start(head: bytes) -> int:
    """Where the data set of a Part 10 file starts: past its preamble and its file meta elements (group
    0002, always explicit VR little endian), walked in ``head`` (its first bytes)."""
    pos = 132
    while pos + 8 <= len(head) and head[pos : pos + 2] == b"\x02\x00":
        if head[pos + 4 : pos + 6] in _META_LONG_VRS:
            if pos + 12 > len(head):
                break
            pos += 12 + int.from_bytes(head[pos + 8 : pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(head[pos + 6 : pos + 8], "little")
    return pos


def _zeros_from(fp: BinaryIO, start: int, block: int = 1 << 23) -> bool:
    """Whether every byte of ``fp`` from ``start`` on is zero (its position left at the end)."""
    fp.seek(start)
    for chunk in iter(lambda: fp.read(block), b""):
        if np.frombuffer(chunk, np.uint8).any():
            return False
    return True


#: Zero bytes at the end of an input that make :func:`_read_dataset` watch pydicom's reads (a file
#: pre-allocated for a transfer that did not finish ends in zeros).
ZERO_TAIL_BYTES = 1 << 16
_ZERO_TAIL = bytes(ZERO_TAIL_BYTES)
_ZERO_HEADER = bytes(8)
#: Element headers in a row that are all zero bytes after which a parse stops: no data set holds one.
ZERO_ELEMENTS_STOP = 1024


class _ZeroElements(Exception):
    """pydicom read :data:`ZERO_ELEMENTS_STOP` element headers of zero bytes in a row."""


class _ZeroElementGuard:
    """A file object for pydicom that stops a parse walking a block of zeros as elements.

    Eight zero bytes read as an element header are (0000,0000) with no value; inside an item of undefined
    length pydicom reads on to the item's end, one such element per 8 bytes (~0.25 s a MiB: the top-level
    stop of :func:`_read_dataset` does not reach into items), so a pre-allocated file cut inside a
    sequence could outlast the file timeout. ``tripped`` is set where the guard raises, as pydicom turns
    some exceptions into others."""

    def __init__(self, fp: BinaryIO) -> None:
        self._fp, self._zeros, self.tripped = fp, 0, False

    def read(self, size: int = -1) -> bytes:
        chunk = self._fp.read(size)
        if size == 8 and chunk == _ZERO_HEADER:
            self._zeros += 1
            if self._zeros >= ZERO_ELEMENTS_STOP:
                self.tripped = True
                raise _ZeroElements
        else:
            self._zeros = 0
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()


def _ends_in_zeros(fp: BinaryIO) -> bool:
    """Whether the last :data:`ZERO_TAIL_BYTES` of ``fp`` are zero (its position left at the start)."""
    try:
        size = fp.seek(0, os.SEEK_END)
        if size < ZERO_TAIL_BYTES:
            return False
        fp.seek(size - ZERO_TAIL_BYTES)
        return fp.read(ZERO_TAIL_BYTES) == _ZERO_TAIL
    finally:
        fp.seek(0)


_DEFLATED_UID = str(pydicom.uid.DeflatedExplicitVRLittleEndian).encode()


def _input_share(limit: int | None) -> tuple[int, str]:
    """The bytes one input may take in a worker and how a reason names that bound: the worker's share
    (``limit``, from its memory limit), else half this machine's memory."""
    if limit is not None:
        return limit, "a worker with this memory limit accepts"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2, "half this machine's memory"


def _check_inflated(data: bytes | BinaryIO, limit: int | None) -> None:
    """A Part 10 input in the deflated transfer syntax whose data set inflates past ``limit`` bytes (the
    worker's share for one input; None: half the machine's memory) fails ``too-large-for-worker-memory``
    before pydicom inflates it whole: a few MiB of deflated zeros are gigabytes in memory. Inflated here
    in pieces, each dropped once counted."""
    if isinstance(data, bytes):
        head, fp = data, None
    else:
        head, fp = data.read(_HEAD_BYTES), data
        fp.seek(0)
    start = _data_set_start(head)
    if _DEFLATED_UID not in head[132:start]:
        return
    fp = fp or io.BytesIO(data)  # type: ignore[arg-type]
    cap, bound = _input_share(limit)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    fp.seek(start)
    total = 0
    try:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            while chunk and not inflater.eof:
                total += len(inflater.decompress(chunk, 1 << 24))
                chunk = inflater.unconsumed_tail
                if total > cap:
                    raise FileError("too-large-for-worker-memory",
                                    f"its deflated data set inflates to more than {cap / 2**20:.0f} MiB, more than {bound}", status="failed")
            if inflater.eof:
                break
    except zlib.error:
        return  # not a deflate stream: pydicom's parse gives the reason
    finally:
        fp.seek(0)


def _read_dataset(data: bytes | BinaryIO, kind: str) -> Dataset:
    """Parse an input with pydicom (``truncated`` or ``parse-error`` when it does not parse).

    Eight zero bytes where an element should start read as (0000,0000) with no value, and pydicom reads
    every 8 zero bytes of a block as one more (~0.4 s a MiB: a pre-allocated 3 GiB file whose transfer
    did not finish outlived the file timeout). Zeros from there to the end of the file are not data: the
    data set ends where they start, and a file with nothing but zeros after its file meta is
    ``truncated``. A block of zeros with more bytes after it is read through by pydicom, as before,
    unless the input ends in zeros and pydicom reads :data:`ZERO_ELEMENTS_STOP` zero element headers in
    a row (in an item, where the stop does not reach): ``truncated`` (:class:`_ZeroElementGuard`)."""
    fp: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
    force = kind == "raw"
    tail = data.endswith(_ZERO_TAIL) if isinstance(data, bytes) else _ends_in_zeros(fp)
    guard = _ZeroElementGuard(fp) if tail else None
    if kind == "part10":  # pydicom reads a command set (group 0000) after the file meta, before any stop
        head = data if isinstance(data, bytes) else fp.read(_HEAD_BYTES)
        start = _data_set_start(head)
        if head[start : start + 8] == _ZERO_HEADER and _zeros_from(fp, start):
            raise FileError("truncated", "zero bytes where the data set should be: a pre-allocated file whose transfer did not finish")
        fp.seek(0)
    zeros_at: list[int] = []

    def at_zeros(tag: int, vr: str | None, length: int) -> bool:
        if length == 0 and tag == 0:  # the length first: a BaseTag compares in Python
            zeros_at.append(fp.tell())
            return True
        return False

    src: Any = guard or fp
    try:
        ds = read_partial(src, at_zeros, force=force)
        if zeros_at and not _zeros_from(fp, zeros_at[0]):  # zeros, then more: read through them
            fp.seek(0)
            ds = pydicom.dcmread(src, force=force)
    except Exception as exc:
        if guard is not None and guard.tripped:
            raise FileError("truncated", "zero bytes where a sequence item's elements should be: a pre-allocated "
                            "file whose transfer did not finish") from None
        if isinstance(exc, (InvalidDicomError, EOFError)):
            raise FileError("truncated" if isinstance(exc, EOFError) else "parse-error", "the file does not parse as DICOM") from None
        if isinstance(exc, OSError) and exc.errno is not None and not isinstance(data, bytes):
            raise _unreadable(exc) from None  # the disk failed, not the file: failed unreadable, not quarantined
        if isinstance(exc, RecursionError):  # pydicom reads an item within an item by recursion (~190 levels in a worker)
            raise _too_deep() from None
        raise FileError("parse-error", "the file does not parse as DICOM") from None  # pydicom raises many types
    try:
        for _ in getattr(ds, "file_meta", Dataset()).iterall():
            pass
    except Exception:
        raise FileError("parse-error", "the file meta group does not parse") from None
    _check_truncation(ds)
    try:
        _convert_all(ds)  # converts every element, nested ones included
    except _NestedTooDeep:
        raise _too_deep() from None
    except Exception:
        raise FileError("parse-error", "an element or sequence does not parse") from None
    if kind == "raw" and "SOPClassUID" not in ds and "PixelData" not in ds:
        raise SkipFile("not-dicom", "no DICOM preamble and no SOP class or pixel data")
    return ds


VL_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.77.1."  # VL Endoscopic/Microscopic/Photographic ... images


def _check_visual_features(ds: Dataset, ctx: RunContext) -> None:
    """Quarantine images whose recognisable features (a face) text redaction cannot remove."""
    if ctx.profile.settings.recognizable_visual_features != "quarantine":
        return
    flag = str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper()
    photo = str(ds.get("SOPClassUID", "")).startswith(VL_SOP_PREFIX)
    if flag == "YES" or (photo and flag != "NO"):
        raise FileError("recognizable-visual-features", "the image may show a face or other recognisable features; the profile quarantines it")


def _check_audio(ds: Dataset, ctx: RunContext) -> None:
    """Quarantine a sound recording (a voice), which no stage can de-identify."""
    if ctx.profile.settings.audio == "quarantine" and holds_audio(ds):
        raise FileError("audio", "sound (a voice: an audio object, an audio waveform or a video's sound track) that the profile quarantines")


# --------------------------------------------------------------------------- pixels


@functools.lru_cache(maxsize=4)
def _triage_rules(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["scan_if"]


def triage_wants_scan(ds: Dataset) -> bool:
    """The data-driven triage rule (``configs/pixel_triage.yaml``)."""
    rules = _triage_rules(str(configs_dir() / "pixel_triage.yaml"))
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() in rules.get("burned_in_annotation", []):
        return True
    if str(ds.get("Modality", "")).strip().upper() in rules.get("modalities", []):
        return True
    sop = str(ds.get("SOPClassUID", ""))
    if any(sop.startswith(p) for p in rules.get("sop_class_prefixes", [])):
        return True
    image_type = ds.get("ImageType", [])
    values = [str(v).upper() for v in (image_type if isinstance(image_type, (list, MultiValue)) else [image_type])]
    return any(v in rules.get("image_type_values", []) for v in values)


def decoded_size(ds: Dataset) -> int:
    """Bytes that decoding every frame would take (stored values, before any view)."""
    from . import pixels

    bits = int(ds.get("BitsAllocated", 8) or 8)
    per = max(1, bits // 8) if bits > 1 else 1
    return int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * int(ds.get("SamplesPerPixel", 1) or 1) * per * pixels.frame_count(ds)


def _check_frame_fits(ds: Dataset, frames: int, limit: int | None) -> None:
    """``too-large-for-worker-memory`` before decoding when one decoded frame alone is more than a worker's
    share for one input (``limit``; None: half the machine's memory): a decoder allocates the frame whole,
    and its worker dies for it (frames of a bigger image are decoded in chunks; one cannot be split)."""
    per_frame = decoded_size(ds) // max(1, frames)
    cap, bound = _input_share(limit)
    if per_frame > cap:
        amount = f" ({cap / 2**20:.0f} MiB)" if limit is not None else ""
        raise FileError("too-large-for-worker-memory", f"one decoded frame is {per_frame / 2**20:.0f} MiB, more than {bound}{amount}",
                        status="failed")


def chunk_frames(ds: Dataset, max_decoded_bytes: int) -> int:
    """Frames per chunk for an image scanned in chunks: a quarter of ``max_decoded_bytes`` decoded (the
    detector's views of a chunk take about as much again)."""
    from . import pixels

    per_frame = max(1, decoded_size(ds) // max(1, pixels.frame_count(ds)))
    return max(1, max_decoded_bytes // (4 * per_frame))


def scan_step(ds: Dataset, max_decoded_bytes: int) -> int:
    """Frames a run scans at once: all of them when they decode within ``max_decoded_bytes``, else
    :func:`chunk_frames` (fewer than all when there are two or more)."""
    from . import pixels

    n = pixels.frame_count(ds)
    return max(1, n) if decoded_size(ds) <= max_decoded_bytes else chunk_frames(ds, max_decoded_bytes)


def scan_chunked(ds: Dataset, detector: Any, mode: str, step: int, wanted: Sequence[int] | None = None,
                 phi_terms: frozenset[str] = frozenset(), timings: dict[str, float] | None = None,
                 heartbeat: Heartbeat | None = None,
                 visit: Callable[[int, np.ndarray], None] | None = None) -> tuple[list[list[Region]], int]:
    """Regions per frame of a multi-frame image and the distinct frames scanned, holding one chunk of
    ``step`` decoded frames at a time: every chunk, or those holding a frame of ``wanted`` (the other
    frames get no regions). A frame identical to one already scanned gets its regions. ``visit(first,
    chunk)`` sees each chunk decoded; ``timings`` gain ``decode`` and the scan's steps; ``heartbeat``:
    see :func:`scan_loaded`."""
    from . import pixels, scan

    times: dict[str, float] = {} if timings is None else timings
    n = pixels.frame_count(ds)
    starts = range(0, n, step) if wanted is None else sorted({i - i % step for i in wanted if 0 <= i < n})
    regions: list[list[Region]] = [[] for _ in range(n)]
    seen: dict[bytes, list[Region]] = {}
    for start in starts:
        t0 = time.perf_counter()
        chunk = pixels.decode_frames(ds, start, min(n, start + step))
        times["decode"] = times.get("decode", 0.0) + time.perf_counter() - t0
        if heartbeat is not None:
            heartbeat()
        if visit is not None:
            visit(start, chunk)
        digests = [pixels.frame_digest(f) for f in chunk]
        first = {d: i for i, d in reversed(list(enumerate(digests))) if d not in seen}
        if first:
            order = sorted(first.values())
            found = scan.scan_frames(ds, chunk[order], detector, mode=mode, phi_terms=phi_terms, timings=times,
                                     heartbeat=heartbeat, frame_numbers=[start + i for i in order])
            seen.update({digests[i]: rs for i, rs in zip(order, found)})
        regions[start : start + len(chunk)] = [seen[d] for d in digests]
        del chunk
    return regions, len(seen)


def _scan_chunked(it: "Loaded", detector: Any, mode: str, ctx: RunContext, heartbeat: Heartbeat | None = None) -> list[list[Region]]:
    """Regions per frame of a big multi-frame file (:func:`scan_chunked`); the file's ``timings_ms``
    gain ``decode`` and the scan's steps."""
    timings: dict[str, float] = {}
    regions, it.report.frames_scanned = scan_chunked(it.ds, detector, mode, chunk_frames(it.ds, ctx.max_decoded_bytes),
                                                     phi_terms=it.phi_terms, timings=timings, heartbeat=heartbeat)
    it.result.timings_ms.update({k: v * 1000 for k, v in timings.items()})
    return regions


def _header_only(ctx: RunContext) -> bool:
    """No file of this run has its pixels scanned (``_plan_pixels`` says no before reading a value)."""
    return ctx.pixel_rule == "none" or ctx.profile.settings.pixel_mode == "none"


def _plan_pixels(ds: Dataset, ctx: RunContext) -> tuple[bool, str]:
    from . import pixels

    if not pixels.has_pixels(ds):
        return False, "no-pixel-data"
    rule = ctx.pixel_rule
    if rule == "none":
        return False, "pixels-none"
    if ctx.profile.settings.pixel_mode == "none":
        return False, "pixel-mode-none"
    if rule == "triage" and not triage_wants_scan(ds):
        return False, "triage-skip"
    return True, ""


# --------------------------------------------------------------------------- loading


def load_file(root: Path, cand: Candidate, ctx: RunContext, hashed: Hashed | None = None,
              heartbeat: Heartbeat | None = None) -> Loaded | FileResult:
    """Read, recognise and check one input; decode its frames when they will be scanned. ``hashed`` is
    told the input's sha256 and size once they are known, before the parse (which may hang);
    ``heartbeat`` is called after each compressed frame decoded."""
    from . import pixels
    from .pseudonym import Pseudonymizer, linkage_row, patient_identity
    from .tags import collect_phi_terms

    t0 = time.perf_counter()
    result = FileResult(rel_input=cand.rel, input_sha256="", input_size=0, status="failed")
    try:
        if cand.unread:  # recorded without being read: a link not followed, a FIFO, a folder not listed
            status, message = UNREAD[cand.unread]
            raise SkipFile(cand.unread, message) if status == "skipped" else FileError(cand.unread, message, status)
        path = root / cand.rel
        with _reading_input():
            size = path.stat().st_size
        if ctx.max_file_bytes is not None and size > ctx.max_file_bytes:
            result.input_size = size
            with _reading_input():
                result.input_sha256 = _sha256_file(path)
            raise FileError(
                "too-large-for-worker-memory",
                f"{result.input_size / 2**20:.0f} MiB is more than a worker with this memory limit accepts "
                f"({ctx.max_file_bytes / 2**20:.0f} MiB); a run with a larger --memory-limit per worker can process it",
                status="failed",
            )
        fast = None
        if size > STREAM_ABOVE_BYTES:
            ds = _read_big(path, result, ctx.max_file_bytes, hashed)  # hashed, then parsed from the file: one copy in memory, not two
        else:
            with _reading_input():
                data = path.read_bytes()
            result.input_sha256 = hashlib.sha256(data).hexdigest()
            result.input_size = len(data)
            if hashed is not None:
                hashed(result.input_sha256, result.input_size)
            if not data:
                raise SkipFile("empty-file", "zero-byte file")
            kind = sniff(data)
            if kind == "not-dicom":
                raise _not_dicom(data[:512])
            if kind == "part10":
                _check_inflated(data, ctx.max_file_bytes)
            fast = fastpath.scan(data, ctx.profile) if kind == "part10" and _header_only(ctx) else None
            if fast is not None:
                ds = fast.stub  # the top-level elements the checks below read, as pydicom reads them
                _check_truncation(ds)
            else:
                ds = _read_dataset(data, kind)
            del data
        sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
        if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            raise SkipFile("dicomdir", "a DICOMDIR index; never copied (it indexes PHI)")
        _check_visual_features(ds, ctx)
        _check_audio(ds, ctx)
        result.timings_ms["read"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        phi_terms = fast.phi_terms(ctx.profile) if fast is not None else collect_phi_terms(ds, ctx.profile)
        folder = Pseudonymizer(ctx.key).patient_id(patient_identity(ds))
        loaded = Loaded(result=result, ds=ds, phi_terms=phi_terms, patient_folder=folder, fast=fast)
        if ctx.linkage:
            loaded.originals = linkage_row(ds, Pseudonymizer(ctx.key))
        scan, why = _plan_pixels(ds, ctx)
        loaded.report.reason = why
        if pixels.has_pixels(ds):
            loaded.report.frames = pixels.frame_count(ds)
        if scan:  # a header its compressed frames disagree with first: quarantined, not a memory failure
            pixels.check_codestream_size(ds, pixels.transfer_syntax(ds))
            _check_frame_fits(ds, loaded.report.frames, ctx.max_file_bytes)
        if scan and scan_step(ds, ctx.max_decoded_bytes) < loaded.report.frames:
            loaded.chunked = True  # scan_loaded walks it in chunks of frames
        elif scan:
            loaded.frames = pixels.decode_frames(ds, heartbeat=heartbeat)
            loaded.report.frames = int(loaded.frames.shape[0])
            result.timings_ms["decode"] = (time.perf_counter() - t1) * 1000
        result.images = loaded.report.frames
        return loaded
    except FileError as exc:
        return _fail(result, exc)
    except Exception as exc:  # a bug or an unforeseen malformation: record, never pass the file through
        if ctx.debug:
            raise
        return _internal(result, exc, "load")


def _report_scrub(report: PixelReport, scrubbed: Any) -> None:
    """What :func:`pixels.scrub_encapsulated_metadata` (or the fast path's copy of it) changed."""
    report.codestream_metadata_removed = scrubbed.scrubbed
    report.frames_past_count_removed = scrubbed.dropped


def _fail(result: FileResult, exc: FileError) -> FileResult:
    result.status = exc.status
    result.reason_code = exc.code
    result.reason = exc.message
    return result


def _internal(result: FileResult, exc: BaseException, stage: str) -> FileResult:
    log.error("internal error in stage %s: %s", stage, type(exc).__name__)
    result.status = "failed"
    result.reason_code = "internal-error"
    result.reason = f"unexpected {type(exc).__name__} in stage {stage}; the file was not written"
    return result


# --------------------------------------------------------------------------- finishing


def _folder_component(value: str, fallback: str) -> str:
    return value if _SAFE_COMPONENT.match(value) else fallback


def _file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    """A fresh file meta group: nothing from the input's meta survives except what is required."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"DEID_{__version__}"[:16]
    return meta


def _prepare_for_writing(ds: Dataset) -> None:
    """An empty preamble and a rebuilt file meta group."""
    ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "") if hasattr(ds, "file_meta") else ""
    if not ts:
        ts = pydicom.uid.ImplicitVRLittleEndian if getattr(ds, "is_implicit_VR", True) else pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = _file_meta(ds, ts)
    ds.preamble = b"\x00" * 128  # a preamble may hold a TIFF header or anything else


def _buffer_big_pixel_data(ds: Dataset) -> None:
    """Hand a big Pixel Data value to the writer as a stream (see ``pixels.ValueReader``)."""
    from . import pixels

    raw = ds.get_item(0x7FE00010)
    if raw is None:
        return
    value = raw.value
    if isinstance(value, pixels.ValueReader) or not isinstance(value, bytes) or len(value) <= STREAM_ABOVE_BYTES:
        return
    vr = raw.VR if raw.VR in ("OB", "OW") else ("OW" if int(ds.get("BitsAllocated", 8) or 8) > 8 else "OB")
    undefined = raw.length == 0xFFFFFFFF if raw.is_raw else raw.is_undefined_length
    ds[0x7FE00010] = DataElement(0x7FE00010, vr, pixels.ValueReader(value), is_undefined_length=undefined)


def _fast_part10(ds: Dataset, body: bytes) -> bytes | None:
    """The file :func:`encode_part10` writes for the fast path's ``body`` (preamble, the file meta of
    :func:`_file_meta`, the data set), built without pydicom objects; None when a value is not a plain
    ASCII string (pydicom's writer then does it)."""
    values = (ds.get("SOPClassUID"), ds.get("SOPInstanceUID"), ds.file_meta.get("TransferSyntaxUID"))
    if not all(isinstance(v, str) and v and v.isascii() and "\\" not in v for v in values):
        return None
    meta = _META_VERSION + b"".join(
        _meta_string(tag, "UI", v) for tag, v in zip((0x00020002, 0x00020003, 0x00020010), values)
    ) + _META_IMPLEMENTATION
    return _PREAMBLE + _meta_string(0x00020000, "UL", len(meta)) + meta + body


def _meta_string(tag: int, vr: str, value: str | int) -> bytes:
    """One explicit VR little endian file meta element: a UI / SH string (padded as pydicom pads it)
    or the UL group length."""
    if vr == "UL":
        data = _UL.pack(value)
    else:
        data = str(value).encode("ascii")
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
    return _TAG.pack(tag >> 16, tag & 0xFFFF) + vr.encode() + _US.pack(len(data)) + data


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 23), b""):
            h.update(block)
    return h.hexdigest()


def encode_part10(ds: Dataset, body: bytes | None = None) -> bytes:
    """``ds`` encoded as ``ds.save_as(f, enforce_file_format=True)`` writes it, in memory.

    For a little-endian public transfer syntax that the data set was read in, with its character set
    unchanged (pydicom then writes raw elements as they are), the top-level raw elements -- those the
    header stage kept without reading -- are copied with the tag/VR/length header pydicom writes for a
    raw element; every other element goes through pydicom's ``write_data_element``, the file meta
    through ``write_file_meta_info``. Any other data set is written by ``dcmwrite`` itself. ``body``:
    the data set already encoded by the fast path (always such a data set).
    """
    buf = DicomBytesIO()
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if not _plain_encoding(ds, meta, ts):
        if body is not None:
            raise RuntimeError("the fast path's data set needs pydicom's writer")
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    implicit = ts.is_implicit_VR
    buf.is_implicit_VR, buf.is_little_endian = implicit, True
    file_meta = FileMetaDataset(dict(meta._dict))  # as dcmwrite's copy: ds.file_meta stays as it is
    validate_file_meta(file_meta, enforce_standard=True)
    if "PixelData" in ds:
        ds["PixelData"].is_undefined_length = ts.is_compressed
    buf.write(ds.preamble)
    buf.write(b"DICM")
    buf.write(_encode_file_meta(file_meta))
    if body is not None:
        buf.write(body)
        return buf.getvalue()
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    elements = ds._dict
    pack_tag, pack_ul, pack_us = _TAG.pack, _UL.pack, _US.pack
    for tag in sorted(elements.keys()):
        if tag.element == 0 and tag.group > 6:  # retired group lengths are not written
            continue
        elem = elements[tag]
        if elem.is_raw and elem.value is not None and elem.length != _UNDEFINED:
            value, vr = elem.value, elem.VR
            if implicit:
                buf.write(pack_tag(tag >> 16, tag & 0xFFFF) + pack_ul(len(value)) + value)
                continue
            if vr is not None and len(vr) == 2:
                if vr in EXPLICIT_VR_LENGTH_32:
                    buf.write(pack_tag(tag >> 16, tag & 0xFFFF) + vr.encode() + b"\x00\x00" + pack_ul(len(value)) + value)
                    continue
                if len(value) <= 0xFFFF:
                    buf.write(pack_tag(tag >> 16, tag & 0xFFFF) + vr.encode() + pack_us(len(value)) + value)
                    continue
        with tag_in_exception(tag):
            write_data_element(buf, ds.get_item(tag), encodings)
    return buf.getvalue()


def _encode_file_meta(file_meta: FileMetaDataset) -> bytes:
    """``write_file_meta_info(fp, file_meta, enforce_standard=True)``'s bytes for a validated meta: the
    group length, then the elements in tag order, each encoded by pydicom (explicit VR little endian,
    default character set); the encodings of repeated values are reused."""
    if 0x00020000 in file_meta._dict or any(e.is_raw or e.VR == "SQ" for e in file_meta._dict.values()):
        buf = DicomBytesIO()
        write_file_meta_info(buf, file_meta, enforce_standard=True)
        return buf.getvalue()
    body = b"".join(
        _meta_element(elem.tag, elem.VR, elem.value) if int(tag) != 0x00020003 else _encode_meta_element(elem)
        for tag, elem in sorted(file_meta._dict.items())
    )
    return _meta_element(0x00020000, "UL", len(body)) + body


@functools.lru_cache(maxsize=256)
def _meta_element(tag: int, vr: str, value: Any) -> bytes:
    return _encode_meta_element(DataElement(tag, vr, value))


def _encode_meta_element(elem: DataElement) -> bytes:
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = False, True
    write_data_element(buf, elem, default_encoding)
    return buf.getvalue()


_TAG = struct.Struct("<HH")
_UL = struct.Struct("<L")
_US = struct.Struct("<H")
_PREAMBLE = b"\x00" * 128 + b"DICM"
_META_VERSION = b"\x02\x00\x01\x00OB\x00\x00" + _UL.pack(2) + b"\x00\x01"
_META_IMPLEMENTATION = _meta_string(0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID) + _meta_string(
    0x00020013, "SH", f"DEID_{__version__}"[:16])


def _plain_encoding(ds: Dataset, meta: Any, ts: Any) -> bool:
    """Whether ``dcmwrite`` would write ``ds`` as :func:`encode_part10` does: file meta it leaves as it
    is, a little-endian public transfer syntax that is the one ``ds`` was read in, and raw elements
    written as they are (same encoding and character set)."""
    if ts is None or not isinstance(ts, UID) or ts.is_private or not ts.is_transfer_syntax:
        return False
    if not ts.is_little_endian or ts == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return False
    if ds.original_encoding != (ts.is_implicit_VR, True) or ds.original_character_set != ds._character_set:
        return False
    if any(tag >> 16 in (0, 2) for tag in ds._dict) or len(getattr(ds, "preamble", None) or b"") != 128:
        return False
    for meta_kw, ds_kw in (("MediaStorageSOPClassUID", "SOPClassUID"), ("MediaStorageSOPInstanceUID", "SOPInstanceUID")):
        in_meta, in_ds = meta.get(meta_kw, None), ds.get(ds_kw, None)
        if in_meta is None or (in_ds and in_ds != in_meta):  # dcmwrite would update its copy of the meta
            return False
    return True


def write_exclusive(out_root: Path, rel_out: str, ds: Dataset, body: bytes | None = None) -> tuple[str, str]:
    """Write ``ds`` as Part 10 at ``rel_out`` atomically, never replacing a different file; returns
    (the path written, relative to ``out_root``, its sha256). ``body``: the data set already encoded
    (the fast path's; ``ds`` then gives the file meta).

    The file is encoded in memory and hashed there (a data set with big, streamed pixel data is written
    straight to the temporary name and hashed from disk: no second copy of a big image in memory) and
    linked into place. Identical content already there (a resumed run) is accepted; different content
    under the same name (two versions of one SOP instance) goes to a name derived from its hash.
    """
    whole = _fast_part10(ds, body) if body is not None else None
    if whole is None:
        _prepare_for_writing(ds)
        _buffer_big_pixel_data(ds)
    final = out_root / rel_out
    tmp = final.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    except FileNotFoundError:  # the first file of its series: make the folders (a mkdir per file costs more)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as fh:
            pixel_data = ds.get_item(0x7FE00010) if whole is None else None
            if pixel_data is not None and pixel_data.is_buffered:  # big: streamed, then hashed from disk
                ds.save_as(fh, enforce_file_format=True)
                data = None
            else:
                data = whole if whole is not None else encode_part10(ds, body)
                fh.write(data)
        sha = _sha256_file(tmp) if data is None else hashlib.sha256(data).hexdigest()
        del data
        for candidate in (final, final.with_name(f"{final.stem}.{sha[:12]}{final.suffix}")):
            try:
                os.link(tmp, candidate)
                return candidate.relative_to(out_root).as_posix(), sha
            except FileExistsError:
                if _sha256_file(candidate) == sha:
                    return candidate.relative_to(out_root).as_posix(), sha
        raise FileError("output-conflict", "two different outputs claim the same SOP instance name")
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def finish_file(loaded: Loaded, regions: list[list[Region]] | None, ctx: RunContext,
                heartbeat: Heartbeat | None = None) -> FileResult:
    """Redact pixels, de-identify the header, write the file; returns the outcome. ``heartbeat`` is
    called as frames are encoded (a compressed cine of hundreds of frames takes minutes)."""
    from . import pixels
    from .pseudonym import Pseudonymizer
    from .redact import redact_frames
    from .tags import deidentify_header

    result, ds, report = loaded.result, loaded.ds, loaded.report
    try:
        t0 = time.perf_counter()
        if regions is not None and (loaded.frames is not None or loaded.chunked):
            report.scanned = True
            report.mode = ctx.profile.settings.pixel_mode
            report.regions_per_frame = [[r.as_list() for r in fr] for fr in regions]
            redact_s = 0.0
            if any(regions):  # re-encoded from the frames decoded: those past Number of Frames are left out
                report.frames_past_count_removed = pixels.frames_past_count(ds)
            if any(regions) and loaded.frames is None:  # scanned in chunks: redacted and encoded in chunks too

                def redact_chunk(start: int, chunk: np.ndarray) -> np.ndarray:
                    nonlocal redact_s
                    t = time.perf_counter()
                    out = redact_frames(ds, chunk, regions[start : start + len(chunk)])
                    redact_s += time.perf_counter() - t
                    return out

                report.reencoded_transfer_syntax = pixels.encode_frames_chunked(ds, chunk_frames(ds, ctx.max_decoded_bytes), redact_chunk,
                                                                                heartbeat)
                report.pixel_data_unchanged = False
            elif any(regions):
                redacted = redact_frames(ds, loaded.frames, regions)
                redact_s = time.perf_counter() - t0
                report.reencoded_transfer_syntax = str(pixels.encode_frames(ds, redacted, heartbeat))
                report.pixel_data_unchanged = False
            loaded.frames = None
            # encode: the fills' frames back into Pixel Data (decoding the rest of a chunked file included)
            result.timings_ms["redact"] = redact_s * 1000
            result.timings_ms["encode"] = (time.perf_counter() - t0 - redact_s) * 1000
        t1 = time.perf_counter()
        if loaded.fast is not None:
            try:
                header = loaded.fast.deidentify(ctx.profile, Pseudonymizer(ctx.key), loaded.phi_terms)
                if loaded.fast.scrubbed_pixels is not None:  # as the pydicom path's scrub below
                    report.pixel_data_unchanged = False
                    _report_scrub(report, loaded.fast.scrubbed_pixels[1])
            except Exception as exc:  # noqa: BLE001 - the pydicom path after all, from the same bytes
                log.debug("fast path given up: %s", type(exc).__name__)
                ds = loaded.ds = _read_dataset(loaded.fast.data, "part10")
                loaded.fast = None
        if loaded.fast is None:
            header = deidentify_header(ds, ctx.profile, Pseudonymizer(ctx.key), loaded.phi_terms)
            # (the fast path takes no such file): bytes past the image and an overlay hidden in the
            # unused bits go
            if report.pixel_data_unchanged and (trimmed := pixels.trim_native_excess(ds)):
                report.trailing_pixel_bytes_removed = trimmed
            if report.pixel_data_unchanged and pixels.clear_bits_outside_stored(ds):
                report.outside_bits_cleared = True
            if report.trailing_pixel_bytes_removed or report.outside_bits_cleared:
                report.pixel_data_unchanged = False
            # compressed frames written as they came lose what their codestreams carry beside the
            # image, and frames past Number of Frames go
            if report.pixel_data_unchanged and (scrubbed := pixels.scrub_encapsulated_metadata(ds)):
                report.pixel_data_unchanged = False
                _report_scrub(report, scrubbed)
        if ctx.profile.settings.graphics == "clean":
            _clean_overlays(ds, report, ctx)
        if report.scanned:
            ds.BurnedInAnnotation = "NO"
        elif "PixelData" in ds and "BurnedInAnnotation" not in ds:
            pass  # not scanned: say nothing rather than a claim we cannot back
        result.actions = header.action_counts
        result.timings_ms["header"] = (time.perf_counter() - t1) * 1000
        if str(ds.get("PatientIdentityRemoved", "")) != "YES":
            raise FileError("header-incomplete", "the header stage did not mark the file de-identified")
        t2 = time.perf_counter()
        sop = _folder_component(str(ds.get("SOPInstanceUID", "")), "")
        if not sop:
            raise FileError("missing-sop-instance-uid", "no usable SOP Instance UID; cannot name the output")
        study = _folder_component(str(ds.get("StudyInstanceUID", "")), "unknown-study")
        series = _folder_component(str(ds.get("SeriesInstanceUID", "")), "unknown-series")
        rel_out = f"{loaded.patient_folder}/{study}/{series}/{sop}.dcm"
        body = loaded.fast.body if loaded.fast is not None else None
        result.output_path, result.output_sha256 = write_exclusive(ctx.output_dir, rel_out, ds, body)
        result.study_key, result.series_key = study, series
        result.timings_ms["write"] = (time.perf_counter() - t2) * 1000
        result.status = "written"
        if loaded.originals is not None:
            result.linkage = {**loaded.originals, "output_study_folder": study}
    except FileError as exc:
        _fail(result, exc)
    except Exception as exc:
        if ctx.debug:
            raise
        full = storage_error(exc)
        if full is not None:  # the driver stops the run with this reason, not recording the file (resume redoes it)
            _fail(result, FileError(STORAGE_CODE, str(full), status="failed"))
        else:
            _internal(result, exc, "finish")
    result.pixel = report.to_json()
    return result


def overlay_planes(ds: Dataset) -> list[int]:
    """The groups of the overlay planes whose bits are in Overlay Data (60xx,3000)."""
    return [g for g in range(0x6000, 0x6020, 2) if (g << 16) | 0x3000 in ds]


def _clean_overlays(ds: Dataset, report: PixelReport, ctx: RunContext) -> None:
    """Overlay planes that clean graphics keeps: each scanned for text like a frame (the detector on the
    plane drawn 0/255) and its bits cleared in the boxes found, 2 px around; a plane that cannot be
    scanned (a header-only run, bits pydicom cannot read) is removed with its group, and so is a plane
    embedded in Pixel Data's unused bits (retired; never scanned: its bits are cleared). ``report``
    gains ``overlay_boxes`` and ``overlays_removed``."""
    from pydicom.pixels import pack_bits

    from . import pixels
    from .detect import get_detector

    boxes: dict[str, list[list[list[int]]]] = {}
    for group in pixels.embedded_overlay_groups(ds):  # its bits were in Pixel Data, outside Bits Stored:
        for tag in [t for t in ds.keys() if t >> 16 == group]:  # cleared (finish_file), the group goes
            del ds[tag]
        report.overlays_removed += 1
    for group in overlay_planes(ds):
        found: list[list[Region]] | None = None
        if ctx.scans_pixels:  # a header-only run loads no detector: its planes go
            try:
                planes = overlay_frames(ds, group)
                found = scan_overlay(planes, get_detector(ctx.detector, ctx.device))
            except Exception:  # bits pydicom cannot read, a detector that fails: the plane goes
                found = None
        if found is None:  # removed with its group, never kept unscanned
            for tag in [t for t in ds.keys() if t >> 16 == group]:
                del ds[tag]
            report.overlays_removed += 1
            continue
        for plane, regions in zip(planes, found):
            for r in regions:
                plane[max(0, r.y - 2) : r.y + r.h + 2, max(0, r.x - 2) : r.x + r.w + 2] = 0
        if any(found):
            ds[(group << 16) | 0x3000].value = pack_bits(planes)
        boxes[f"{group:04X}"] = [[r.as_list() for r in regions] for regions in found]
    report.overlay_boxes = boxes or None


def overlay_frames(ds: Dataset, group: int) -> np.ndarray:
    """The bits (0/1) of the overlay plane ``group``, shape (frames, rows, columns) however many it has."""
    bits = ds.overlay_array(group)
    return bits.reshape((-1,) + bits.shape[-2:])


def scan_overlay(planes: np.ndarray, detector: Any) -> list[list[Region]]:
    """All-text regions of overlay bit planes (0/1, frames x rows x columns), each drawn white on black."""
    from . import scan

    view = Dataset()
    view.Rows, view.Columns = planes.shape[1], planes.shape[2]
    view.SamplesPerPixel, view.PhotometricInterpretation = 1, "MONOCHROME2"
    view.BitsAllocated, view.BitsStored, view.HighBit, view.PixelRepresentation = 8, 8, 7, 0
    view.Modality = "OT"
    return scan.scan_frames(view, planes.astype(np.uint8) * 255, detector, mode="all-text")


def _pixel_fields(report: PixelReport, detector: Any) -> None:
    report.detector = detector.name
    report.weights_sha256 = detector.weights_sha256
    report.device = detector.device


def scan_loaded(items: list[Loaded], ctx: RunContext, heartbeat: Heartbeat | None = None) -> dict[int, list[list[Region]] | FileError]:
    """Scan the frames of every item in one pass so the detector sees full batches. ``heartbeat`` is
    called as the scan advances (each detector call, each view decided, each chunk decoded), so that a
    file of many frames is timed out by its progress, not by its size."""
    out: dict[int, list[list[Region]] | FileError] = {}
    if not items:  # a header-only batch: the detector's modules (OpenCV, ~0.3 s of a worker's start) stay unloaded
        return out
    from .detect import get_detector
    from . import scan
    from .prepare import load_transforms

    detector = get_detector(ctx.detector, ctx.device)
    load_transforms()  # with the detector's loading: outside the stage clocks, like it
    if heartbeat is not None:  # a worker's first scan loads the models (seconds): a step of its own
        heartbeat()
    mode = ctx.profile.settings.pixel_mode
    fallbacks_before = scan.cpu_fallback_views
    big = {i: it for i, it in enumerate(items) if it.chunked}
    whole = [it for it in items if not it.chunked]
    for i, it in big.items():
        try:
            out[i] = _scan_chunked(it, detector, mode, ctx, heartbeat)
        except FileError as exc:
            out[i] = exc
        except Exception as exc:
            if ctx.debug:
                raise
            out[i] = FileError("pixel-scan-failed", f"the text detector failed ({type(exc).__name__})")
        _pixel_fields(it.report, detector)
    if big:
        small = [i for i in range(len(items)) if i not in big]
        rest = scan_loaded(whole, ctx, heartbeat) if whole else {}
        for j, i in enumerate(small):
            out[i] = rest[j]
        return out
    results: list[Any] | None = None
    timings: dict[str, float] = {}
    if len(items) > 1:
        try:
            results = scan.scan_batch([(it.ds, it.frames, it.phi_terms) for it in items], detector, mode=mode, timings=timings,
                                      heartbeat=heartbeat)
        except Exception:
            if ctx.debug:
                raise
            log.warning("batched scan failed; scanning the files one by one")
            results, timings = None, {}
    if results is None:
        results = []
        for it in items:
            try:
                results.append(scan.scan_frames(it.ds, it.frames, detector, mode=mode, phi_terms=it.phi_terms, timings=timings,
                                                heartbeat=heartbeat))
            except FileError as exc:
                results.append(exc)
            except Exception as exc:
                if ctx.debug:
                    raise
                log.error("pixel scan failed: %s", type(exc).__name__)
                results.append(FileError("pixel-scan-failed", f"the text detector failed ({type(exc).__name__})"))
    # the batch's steps shared equally between its files (one detector pass served them all)
    per_file_ms = {stage: timings.get(stage, 0.0) * 1000 / len(items) for stage in scan.SCAN_STAGES}
    fell_back = scan.cpu_fallback_views > fallbacks_before
    for idx, (it, res) in enumerate(zip(items, results)):
        _pixel_fields(it.report, detector)
        if fell_back:  # some views of this batch ran on the CPU after a GPU error
            it.report.device = f"{detector.device}+cpu-fallback"
        it.report.frames_scanned = _distinct_frames(it.frames)
        it.result.timings_ms.update(per_file_ms)
        out[idx] = res
    return out


def _distinct_frames(frames: np.ndarray | None) -> int:
    from .pixels import frame_digest

    return 0 if frames is None else len({frame_digest(f) for f in frames})


class Progress(Protocol):
    """Told by :func:`process_batch` how much work lies ahead until it calls again: at most ``files``
    files' time limits (``force``: a call the listener must not drop, e.g. before and after the scan,
    which serves several files in one pass). During the scan it is called as the scan advances, each
    call with the scan's file count, so the limit applies to the time between two calls."""

    def __call__(self, files: int, force: bool = False) -> None: ...


def _no_progress(files: int, force: bool = False) -> None:
    """The :class:`Progress` of a batch no one times out (in process, tests)."""


def _no_current(index: int | None) -> None:
    """The :data:`Current` of a batch no one asks about (in process, tests)."""


def process_batch(root: str | Path, cands: list[Candidate], ctx: RunContext, progress: Progress | None = None,
                  hashed: Hashed | None = None, current: Current | None = None) -> list[FileResult]:
    """De-identify a batch of inputs; one result per input, in order. Never raises for a file.

    ``progress`` (the Dask task's, so that the driver can time each file out on its own) is called
    after every file loaded and finished, and around the scan; ``hashed``, with each input's sha256
    and size as soon as it is hashed (see :func:`load_file`); ``current``, with the index of the file
    whose load or finish begins, ``None`` before the scan (so a hung step names its file)."""
    withhold_warning_messages()  # on a Dask worker too: pydicom's warnings quote the values they reject
    root = Path(root)
    note = progress or _no_progress
    at = current or _no_current

    def this_file() -> None:  # a beat while one file is read or finished: its limit again
        note(1)

    staged: list[Loaded | FileResult] = []
    for i, c in enumerate(cands):
        at(i)
        staged.append(load_file(root, c, ctx, hashed, this_file))
        note(1)  # next: one more file's load, or the first finish
    to_scan = [s for s in staged if isinstance(s, Loaded) and (s.frames is not None or s.chunked)]
    if to_scan:
        at(None)
        note(len(to_scan), force=True)  # one detector pass over these files
    try:  # each beat: the scan's files' limits again from now (a long scan of many frames is not a hung one)
        scanned = scan_loaded(to_scan, ctx, lambda: note(len(to_scan)))
    except Exception as exc:  # detector failed to load: nothing in the batch may be written
        if ctx.debug:
            raise
        log.error("pixel stage unavailable: %s", type(exc).__name__)
        err = FileError("detector-unavailable", f"the text detector could not run ({type(exc).__name__})", status="failed")
        scanned = {i: err for i in range(len(to_scan))}
    if to_scan:
        note(1, force=True)
    by_id = {id(item): scanned[i] for i, item in enumerate(to_scan)}
    results: list[FileResult] = []
    for i, s in enumerate(staged):
        if isinstance(s, FileResult):
            results.append(s)
            continue
        res = by_id.get(id(s))
        if isinstance(res, FileError):
            s.result.pixel = s.report.to_json()
            results.append(_fail(s.result, res))
            continue
        at(i)
        results.append(finish_file(s, res, ctx, this_file))
        note(1)
    return results


def deidentify_file(root: str | Path, rel: str, ctx: RunContext) -> FileResult:
    """De-identify one input (a batch of one)."""
    return process_batch(root, [Candidate(rel)], ctx)[0]
