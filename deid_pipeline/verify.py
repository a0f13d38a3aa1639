"""``deid verify``: evidence that a run left nothing behind.

For every written output, against its input (found through the private journal):
1. header: no element that the profile removes, replaces or cleans still holds its original value,
   nothing the profile removes (action X) is present, no private element outside the retained set; an
   input UID the profile replaces, found anywhere in the output's header, is ``original-uid-kept``; a
   sound recording (a voice) in the output is ``audio-kept``; under a profile that caps ages
   (``max_age_years``), an age above it however written, or a value that reads as no age, is
   ``age-over-limit``; a number or a code kept that is no value of its VR (text in Slice Thickness) is
   ``invalid-value-kept``; under one that takes what the Clean action's patterns find out of the text it
   keeps (``kept_text_patterns: remove``), such text that holds a phone number, an e-mail address, a
   URL, an IP address, a date or an ID is ``identifier-in-kept-text``; native Pixel Data holding anything in
   the bits outside Bits Stored (an embedded overlay) is ``pixel-bits-outside-stored``; compressed
   frames carrying comments, EXIF or thumbnails, or not parsing far enough to tell (a run quarantines
   those ``codestream-malformed``), are ``codestream-metadata-kept``; data past the image
   (native bytes other than zeros after its last frame, encapsulated frames past Number of Frames,
   which no reader shows) is ``pixel-data-past-image``;
2. bytes: none of the input's identifying values, in the formats they take, appears in the output
   file's bytes (header always, a deflated data set inflated; pixel bytes for long terms) or in the
   path deid gave it under OUTPUT (a date or number only where no digit touches it: ``1.2.84``, a
   birth date, is not found in ``1.2.840.10008...``; a compact date also where a DT's time follows it;
   in the header, a number of 6 digits or more also with its digits split or regrouped: ``9988 7766``, and a
   date in a short form: ``1 2 2019``, ``2019_1_2``), each value
   also encoded in the character sets the output and the input declare (ISO-8859-5, GB18030, ISO 2022);
   in the header also a person's name with its short parts in separate words or elements, a telephone
   number by its digits (with or without a country code, either way), an address line by its words
   (:func:`_reformatted`); and in the files deid writes into OUTPUT beside the outputs (``report.html``,
   ``run.json``: :func:`_in_own_files`), and in every record of ``manifest.jsonl``, for every input's
   values (those without an output too), by words, streamed (:func:`_in_manifest`);
3. pixels: where ``all-text`` applied, the detector run again on the redacted frames finds no text
   outside the redacted boxes;
4. accounting: every input has exactly one record, each written output's input still has its record's
   sha256 (``input-changed``: that output is not judged against it), each output's sha256 matches its
   record, no output lacks a record, no link is in OUTPUT (``link-in-output``: never followed), every line
   of the manifest and the journal reads (``manifest-line-unreadable``, ``journal-line-unreadable``), the
   manifest's hash chain holds, and ``run.json``'s records, counts by status and by reason and profile
   are the manifest's, and what it states of the images scanned their records' (``run-summary-mismatch``);
   a ``run.json`` that does not read is ``run-summary-unreadable``.
Findings name tags, record lines and categories, never values.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import mmap
import os
import re
import stat
import struct
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from .actions import DUMMY_TEXT, TEXT_VRS, is_well_known_uid
from .config import RunContext
from .discover import walk_inputs
from .errors import ProfileError, withhold_warning_messages
from .manifest import (JOURNAL_NAME, MANIFEST_NAME, MAX_RUN_JSON_BYTES, PROFILE_RECORD_NAME, RUN_NAME, LongLine,
                       atomic_write_json, read_lines, read_records, read_run_json, verify_chain)
from .types import PIXEL_DATA_TAGS, Region

log = logging.getLogger(__name__)

# Elements deid itself writes or must keep for the image to decode; checked elsewhere.
_WRITTEN_BY_DEID = {
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified", "BurnedInAnnotation", "PatientID", "PatientName",
    "CodeValue", "CodingSchemeDesignator", "CodeMeaning", "SpecificCharacterSet",
}
_PATIENT_KEYS = frozenset({"PatientName", "PatientID"})  # at the top level: deid's pseudonym, never the input's
_DEID_METHOD_CODES = 0x00120064  # De-identification Method Code Sequence: deid's own Code Meanings
_HEADER_MIN_TERM = 4
_PIXEL_MIN_TERM = 8
#: Outputs from this size are searched through :func:`_any_found` first (below, compiling its pattern
#: cost more than it saved: +4 % on 2,000 outputs of 40-160 KiB)
_PREFILTER_ABOVE = 1 << 20
#: Outputs from this size are not read into memory: hashed in blocks, parsed with their big values left
#: in the file, searched through a read-only map, their pixels decoded in chunks (:func:`_rescan`)
_BIG_OUTPUT = 1 << 20
#: Elements from this size are read from the file only when used (pixel data: only by the rescan)
_DEFER_SIZE = 1 << 20
_WINDOW = 64 << 20  # a multiple of every page size: windows of a map searched, then let go
_OWN_FILES = {MANIFEST_NAME, RUN_NAME, "verify.json", "report.html"}


@dataclass(frozen=True)
class Finding:
    """One problem: the manifest line it concerns, a stable kind, and a value-free detail."""

    line: int
    kind: str
    detail: str


def _header_bytes(path: str) -> bytes:
    """The output's header as pydicom writes it again, up to its pixel data (when :func:`_searchable`
    cannot cut the file's own bytes)."""
    head = pydicom.dcmread(path, stop_before_pixels=True)
    buf = io.BytesIO()
    if head.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        head.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # the values, not their deflated bytes
    head.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def _searchable(data: bytes | mmap.mmap, ds: Dataset, path: str) -> tuple[bytes, bytes | mmap.mmap]:
    """What the byte searches of an output read: (its bytes up to its top-level pixel data, all of
    them), a deflated data set inflated (as stored, it hides every value). ``ds``: ``data`` read by
    pydicom, its pixel data not yet converted."""
    ts = ds.file_meta.get("TransferSyntaxUID")
    base = 0
    if ts == DeflatedExplicitVRLittleEndian:
        fp = io.BytesIO(data)
        read_preamble(fp, True)
        read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag >> 16 != 2)
        base = fp.tell()
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        data = data[:base] + inflater.decompress(data[base:]) + inflater.flush()
    tag = next((t for t in PIXEL_DATA_TAGS if t in ds._dict), None)  # where stop_before_pixels stops
    if tag is None:
        return data, data
    implicit, little = ds.original_encoding
    cut = base + getattr(ds.get_item(tag, keep_deferred=True), "value_tell", -1) - (8 if implicit else 12)
    encoded = struct.pack("<HH" if little else ">HH", tag >> 16, tag & 0xFFFF)
    tail = _after_pixels(ds, tag)
    if cut < 0 or data[cut : cut + 4] != encoded:  # not where pydicom read it: encode the header again
        return _header_bytes(path) + tail, data
    return data[:cut] + tail, data


def _after_pixels(ds: Dataset, pixel_tag: int) -> bytes:
    """The elements after the top-level pixel data (a Digital Signatures Sequence, data set padding),
    encoded again as the file encodes them: searched as the header is (b"" when there are none)."""
    later = [t for t in ds._dict if t > pixel_tag]
    if not later:
        return b""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    tail = Dataset()
    for t in later:
        tail._dict[t] = ds._dict[t]
    buf = DicomBytesIO()
    implicit, little = ds.original_encoding
    buf.is_implicit_VR, buf.is_little_endian = bool(implicit), little is not False
    try:
        write_dataset(buf, tail)
    except Exception:  # an element pydicom cannot write again: its value as text, still searched
        return b"".join(str(ds._dict[t].value).encode("utf-8", "replace") for t in later)
    return buf.getvalue()


def _deferred_pixels(ds: Dataset) -> list[int]:
    """The top-level pixel data elements that a read with ``defer_size`` left in the file. The header
    checks never read them (:func:`check_pair` skips pixel data), and walking the data set would read
    them whole."""
    return [tag for tag in PIXEL_DATA_TAGS if isinstance(elem := ds._dict.get(tag), RawDataElement)
            and elem.value is None and elem.length]


#: An ISO 2022 escape sequence (ESC, intermediate bytes, a final byte): where a term encoded in a
#: character set with code extensions begins or ends, which the same text inside a longer value lacks
_ESCAPE_AT_START = re.compile(rb"^\x1b[\x20-\x2f]+[\x40-\x7e]")
_ESCAPE_AT_END = re.compile(rb"\x1b[\x20-\x2f]+[\x40-\x7e]$")
#: The encodings every term is searched in (:func:`_encodings`); others come from the files' Specific Character Sets
_BASE_ENCODINGS = (("utf-8", 1), ("latin-1", 1), ("utf-16-le", 2))
_BASE_CODECS = frozenset({"utf-8", "iso8859-1", "utf-16-le", "ascii"})


def _encodings(term: str, codecs: tuple[str, ...] = ()) -> set[tuple[bytes, int]]:
    """``term`` as bytes, as typed and in upper and lower case, in UTF-8, Latin-1 and UTF-16-LE, and in
    each of ``codecs`` (the Python codecs of the files' Specific Character Sets: ISO-8859-5, GB18030,
    ISO 2022 JIS...; :func:`_file_codecs`), each with the width of an ASCII character in that encoding.
    A term encoded with ISO 2022 escape sequences is searched without the escape it starts or ends
    with: inside a longer value written in that set, the escape stands before the value's first
    character, not the term's."""
    out = set()
    for variant in {term, term.upper(), term.lower()}:
        for enc, width in _BASE_ENCODINGS + tuple((c, 1) for c in codecs):
            try:
                data = variant.encode(enc)
            except (UnicodeEncodeError, LookupError):
                continue
            if b"\x1b" in data:
                data = _ESCAPE_AT_END.sub(b"", _ESCAPE_AT_START.sub(b"", data))
            if data:
                out.add((data, width))
    return out


def _file_codecs(*datasets: Dataset) -> tuple[str, ...]:
    """The Python codecs of the Specific Character Sets that ``datasets`` declare at their top level,
    beyond those every term is searched in (UTF-8, Latin-1): an output that keeps a Cyrillic name in
    ISO-8859-5 (``ISO_IR 144``), or in the input's character set while declaring none."""
    from pydicom.charset import convert_encodings
    import codecs as _codecs

    found: dict[str, None] = {}
    for ds in datasets:
        try:
            declared = ds.get("SpecificCharacterSet")
            names = convert_encodings(declared) if declared else []
        except Exception:  # an unknown or malformed value: pydicom's default, searched already
            continue
        for name in names:
            try:
                canonical = _codecs.lookup(name).name
            except LookupError:
                continue
            if canonical not in _BASE_CODECS:
                found.setdefault(name)
    return tuple(found)


_DIGITS = {w: frozenset(bytes([d]) + b"\x00" * (w - 1) for d in b"0123456789") for w in (1, 2)}


#: What a date-time (DT) adds to its date: hours, minutes, seconds, a fraction, then no digit
_DT_TAIL = re.compile(rb"(?:[0-9]{2}){1,3}(?:\.[0-9]{1,6})?(?![0-9])")


def _digit_free_match(data: bytes | mmap.mmap, needle: bytes, width: int) -> bool:
    """``needle`` in ``data`` where no ASCII digit (``width`` bytes: 1, or 2 for UTF-16-LE) comes right
    before or after it; a compact date (``20040119``) also where a time follows it as a DT's does
    (``20040119103000.5``), not after a dot (a UID's ``.20040119072730.12322`` stays unfound)."""
    digits = _DIGITS[width]
    dated = width == 1 and len(needle) == 8 and needle.isdigit()
    start = data.find(needle)
    while start >= 0:
        end = start + len(needle)
        before = data[max(0, start - width) : start]
        if before not in digits:
            if data[end : end + width] not in digits:
                return True
            if dated and before != b"." and _DT_TAIL.match(data, end):
                return True
        start = data.find(needle, start + 1)
    return False


@functools.lru_cache(maxsize=4096)  # a patient's terms recur in each of their files
def _needles(term: str, codecs: tuple[str, ...] = ()) -> tuple[bool, tuple[tuple[bytes, int], ...], frozenset[bytes]]:
    """What :func:`_found` looks for: whether ``term`` has letters, its :func:`_encodings` (``codecs``
    too), and those lower-cased (two for an ASCII term)."""
    encodings = tuple(_encodings(term, codecs))
    return any(c.isalpha() for c in term), encodings, frozenset(enc.lower() for enc, _ in encodings)


def _found(term: str, data: bytes | mmap.mmap, folded: bytes | None = None, codecs: tuple[str, ...] = ()) -> bool:
    """Whether ``term`` (:func:`_encodings`) appears in ``data``; with ``folded`` (``data.lower()``),
    without regard to ASCII case. A term without letters (a date, a number) counts only where no digit
    touches it, so that a date variant such as ``1.2.84`` is not found inside a standard UID
    (``1.2.840.10008...``) nor ``2.25.33`` at the root of a generated one, while ``DOB 1.2.84`` and
    ``ID1234567`` are. ``codecs``: more encodings (:func:`_file_codecs`)."""
    letters, encodings, lowered = _needles(term, codecs)
    if letters:  # find, not ``in``: an mmap's ``in`` looks for one byte
        if folded is None:
            return any(data.find(enc) >= 0 for enc, _ in encodings)
        return any(folded.find(needle) >= 0 for needle in lowered)
    return any(_digit_free_match(data, enc, width) for enc, width in encodings)


def _any_found(terms: list[str], data: bytes | mmap.mmap, codecs: tuple[str, ...] = ()) -> bool:
    """Whether any encoding of any of ``terms`` (:func:`_encodings`) occurs in ``data``, in one pass: a
    prefilter for :func:`_found` over a whole output. A term without letters counts here wherever it
    occurs (``_found`` then applies its digit rule), so False means ``_found`` is False for each term.
    One pass of a literal alternation instead of one search per encoding: 7.9 s against 115 s for 170
    encodings over a 1 GB output (2,000 frames, ``benchmarks/README.md``, twenty-first session). A map
    of a file is searched in windows (overlapping by the longest needle), its pages let go behind."""
    needles = sorted({enc for term in terms for enc, _ in _needles(term, codecs)[1]}, key=len, reverse=True)
    if not needles:
        return False
    pattern = re.compile(b"|".join(re.escape(n) for n in needles))
    if not isinstance(data, mmap.mmap):
        return pattern.search(data) is not None
    overlap = len(needles[0]) - 1
    for start in range(0, len(data), _WINDOW):
        if pattern.search(data, start, start + _WINDOW + overlap) is not None:
            return True
        if hasattr(data, "madvise"):  # read pages stay counted in this process's memory until let go
            data.madvise(mmap.MADV_DONTNEED, start, _WINDOW)
    return False


def _path_has(term: str, folded_path: str) -> bool:
    """Whether ``term`` is in a path (lower case): :func:`_found` on its bytes."""
    data = folded_path.encode("utf-8", "surrogateescape")
    return _found(term, data, data)


def _well_known_uids(value: Any) -> bool:
    """Every UID of a UI value is a standard one (a SOP class, a transfer syntax...), which U keeps."""
    values = [value] if isinstance(value, str) else list(value)
    return bool(values) and all(is_well_known_uid(str(v)) for v in values)


def _json_lines(path: Path, needs: str) -> Iterator[dict[str, Any] | None]:
    """The records of a JSON-lines file, one at a time (blank lines skipped); None for a line that is
    no JSON object or lacks the field ``needs`` (a torn last line, an edit), which the caller reports."""
    for rec in read_records(path):
        yield rec if rec is not None and needs in rec else None


_PATH_STEP = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)(?:\[(\d+)\]\.)?")
_MISSING = object()


def _original(ds: Dataset, path: str) -> Any:
    """The value at ``path`` (as :func:`tags.walk` names it) of ``ds``, converted now; ``_MISSING`` when
    there is none, it is a sequence, or pydicom cannot convert it. Most elements of an output are kept
    (K) and never need the input's value, so the input is not converted whole."""
    steps = _PATH_STEP.findall(path)
    if "".join(f"({g},{e})" + (f"[{i}]." if i else "") for g, e, i in steps) != path:
        return _MISSING
    container: Any = ds
    try:
        for n, (group, element, index) in enumerate(steps):
            elem = container[int(group + element, 16)]
            if index:
                if elem.VR != "SQ" or n == len(steps) - 1:
                    return _MISSING
                container = elem.value[int(index)]
            elif n == len(steps) - 1:
                return _MISSING if elem.VR == "SQ" else elem.value
            else:
                return _MISSING
    except Exception:  # absent, out of range, or not convertible: walk() would not have named it either
        return _MISSING
    return _MISSING


#: deid's own statement of what it did (``tags._mark``): constants of the profile, never the input's
_MARK_TAGS = (0x00120062, 0x00120063, 0x00120064)  # Patient Identity Removed, De-identification Method (Code Sequence)


def _holders(terms: list[str], out: Dataset, src: Dataset, profile: Any, codecs: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Where in ``out`` each identifying value found in its header sits, for the findings' details (one
    walk for all of them): the keywords (tags for unnamed elements) of the elements whose values hold it,
    each marked when the profile keeps it (K) with the input's own value there; never the value. None
    for a value held only by deid's own statement of its method (:data:`_MARK_TAGS`: a name "Patient"
    in "Retain Patient Characteristics Option"), which is no finding. ``codecs``: the files' character
    sets (:func:`_file_codecs`); a value pydicom decoded in its default set (the output declares none) is
    also searched as the bytes it came from."""
    from .tags import _decision, _str_values, tag_str, walk

    if not terms:
        return {}
    held: dict[str, set[str]] = {term: set() for term in terms}
    own: set[str] = set()

    def holding(elem: Any) -> list[str]:  # the header search's own test, on each value of the element
        values = [v.encode("utf-8", "surrogateescape") for v in _str_values(elem)]
        if codecs:
            values += [v.encode("latin-1") for v in _str_values(elem) if not v.isascii() and _latin1(v)]
        if isinstance(elem.value, (bytes, bytearray)):  # OB, UN, a private blob: its bytes as they are
            values.append(bytes(elem.value))
        return [term for term in terms if any(_found(term, data, data.lower(), codecs) for data in values)]

    def visit(container: Dataset, elem: Any, ref: Any, path: str) -> bool:
        if elem.VR == "SQ":
            return True
        if ref.depth == 0 and ref.tag in PIXEL_DATA_TAGS:  # the image: not in the header searched
            return False
        found = holding(elem)
        if found and (ref.tag in _MARK_TAGS if ref.depth == 0 else ref.parents[0] in _MARK_TAGS):
            own.update(found)
        elif found:
            name = ref.keyword or tag_str(ref.tag)
            original = _original(src, path)
            kept = (_decision(profile, ref, 0)[0] in ("K", "T") and original is not _MISSING
                    and str(original) == str(elem.value))
            words = _element_text(elem)
            for term in found:
                notes = (["kept by the profile, as in the input"] if kept else []) + (
                    [] if _as_word(term, words) or not _str_values(elem) and not any(
                        term.lower() in w.lower() for w in words) else ["only inside longer words"])
                held[term].add(" ".join([name] + [f"({note})" for note in notes]))
        return False

    walk(out, visit)
    for elem in out.file_meta:
        for term in holding(elem):
            held[term].add(elem.keyword or "file meta")
    return {term: "in " + "; ".join(sorted(h)) if h else None if term in own else "between elements"
            for term, h in held.items()}


def _latin1(value: str) -> bool:
    """Whether ``value`` has a Latin-1 encoding (as pydicom's default character set decodes bytes)."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _as_word(term: str, values: list[str]) -> bool:
    """Whether ``term`` stands as a whole word in one of an element's ``values`` (:func:`_element_text`;
    T would take it out), or a date as the search finds one (a DT's date); False when the search found
    it only inside longer words ("Text" in "Context")."""
    from .clean import MIN_TERM_LENGTH, remove_terms

    terms = frozenset({term})
    if term.isdigit() and term.isascii():
        return any(_digit_free_match(v.encode("ascii", "replace"), term.encode(), 1) for v in values)
    return len(term.strip()) < MIN_TERM_LENGTH or any(remove_terms(v, terms) != v for v in values)


def check_pair(input_path: str, output_path: str, line: int, pixel: dict[str, Any], profile: Any, rescan: bool, device: str,
               rel_output: str | None = None, expected_sha256: str | None = None,
               input_sha256: str | None = None, own_files: tuple[str, ...] = (),
               keys: TermKeys | None = None) -> list[Finding]:
    """All checks of one written output against its input. Pure apart from reading both files (and
    ``own_files``: deid's files in OUTPUT, ``report.html`` and ``run.json``, searched for the input's values).
    ``keys``: gathers the keys of the input's identifying values, for the search of the manifest.
    ``rel_output``: the path deid gave it (under OUTPUT), searched for identifying values; default
    ``output_path``, whose folders above OUTPUT the user chose. ``expected_sha256``: its record's.
    ``input_sha256``: its record's input hash; an input that no longer has it (changed since the run, or
    another input's name in the journal) is ``input-changed``, and the output is not judged against it."""
    try:
        fh = open(output_path, "rb")
    except FileNotFoundError:
        return [Finding(line, "output-missing", "written record without its file")]
    if input_sha256 is not None:
        with open(input_path, "rb") as src_fh:  # read again by pydicom below: from the page cache
            if hashlib.file_digest(src_fh, "sha256").hexdigest() != input_sha256:
                with fh:
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
                return [Finding(line, "input-changed", "the input the journal names is not the one its record hashed: "
                                "the output was not judged against it")] + (
                    [Finding(line, "output-sha256-mismatch", "output differs from its record")]
                    if expected_sha256 is not None and digest != expected_sha256 else [])
    with fh:
        if os.fstat(fh.fileno()).st_size < _BIG_OUTPUT:
            out_bytes: bytes | mmap.mmap = fh.read()
            digest = hashlib.sha256(out_bytes).hexdigest()
            out = pydicom.dcmread(io.BytesIO(out_bytes))
        else:  # never held whole: a map of the file, its pixel data left there
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            out_bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            out = pydicom.dcmread(output_path, defer_size=_DEFER_SIZE)
    src = pydicom.dcmread(input_path, force=True, defer_size=_DEFER_SIZE)
    # the rescan takes a data set read whole as it is; one whose pixel data was left in its file is read
    # again there, one image at a time
    src_image = input_path if _deferred_pixels(src) else src
    out_image = output_path if _deferred_pixels(out) else out
    try:
        findings = _outside_bits(out, out_bytes, line) + _codestream_metadata(out, output_path, line)
        findings += _check_values(src, out, out_bytes, line, profile, output_path, rel_output,
                                  frozenset(pixel.get("overlay_boxes") or ()), own_files, keys)
        if rescan and pixel.get("overlay_boxes"):
            findings += _rescan_overlays(src, out, line, pixel["overlay_boxes"], device)
    finally:
        if isinstance(out_bytes, mmap.mmap):
            out_bytes.close()
    del src, out
    if expected_sha256 is not None and digest != expected_sha256:
        findings.insert(0, Finding(line, "output-sha256-mismatch", "output differs from its record"))
    if rescan and pixel.get("scanned") and pixel.get("mode") == "all-text":
        findings += _rescan(src_image, out_image, line, pixel, device)
    return findings


_PAST_IMAGE = "Pixel Data holds data past the image (bytes after its last frame or frames past Number of Frames, which no reader shows)"


def _outside_bits(out: Dataset, out_bytes: bytes | mmap.mmap, line: int) -> list[Finding]:
    """``pixel-bits-outside-stored``: native Pixel Data holding anything in the bits outside Bits
    Stored, where an overlay (a name) can hide from every reader but a bit mask; ``pixel-data-past-image``:
    native Pixel Data longer than its image (:func:`pixels.native_leftovers`)."""
    from .pixels import native_leftovers

    elem = out._dict.get(0x7FE00010)
    if elem is None:
        return []
    deferred = isinstance(elem, RawDataElement) and elem.value is None  # left in the file: read there
    start, length = (elem.value_tell, elem.length) if deferred else (0, len(out.PixelData or b""))
    with memoryview(out_bytes if deferred else out.PixelData or b"") as whole:
        with whole[start : start + length] as data:  # released before the map closes
            past, outside = native_leftovers(out, data)
    findings = []
    if past:
        findings.append(Finding(line, "pixel-data-past-image", _PAST_IMAGE))
    if outside:
        findings.append(Finding(line, "pixel-bits-outside-stored", "Pixel Data holds bits outside Bits Stored (an overlay may hide there)"))
    return findings


def _codestream_metadata(out: Dataset, output_path: str, line: int) -> list[Finding]:
    """``codestream-metadata-kept``: compressed frames that carry JPEG comments or APPn segments (EXIF,
    XMP, thumbnails), JPEG 2000 comments or metadata boxes, or bytes after their end marker, or that
    do not parse far enough to tell (the run's rule: :func:`pixels.scrub_codestream`);
    ``pixel-data-past-image``: frames past Number of Frames."""
    from .pixels import encapsulated_leftovers, frame_plane

    ts = out.file_meta.get("TransferSyntaxUID") if hasattr(out, "file_meta") else None
    elem = out._dict.get(0x7FE00010)
    if elem is None or ts is None or not UID(ts).is_compressed:
        return []
    frames = int(out.get("NumberOfFrames") or 1)
    extended = (out.ExtendedOffsetTable, out.ExtendedOffsetTableLengths) if "ExtendedOffsetTableLengths" in out else None
    plane = frame_plane(out)
    if isinstance(elem, RawDataElement) and elem.value is None:  # left in the file: read there, frame by frame
        with open(output_path, "rb") as fh:
            fh.seek(elem.value_tell)
            metadata, extra = encapsulated_leftovers(fh, ts, frames, extended, plane)
    else:
        metadata, extra = encapsulated_leftovers(out.PixelData, ts, frames, extended, plane)
    findings = []
    if metadata:
        findings.append(Finding(line, "codestream-metadata-kept", "compressed frames carry comments, EXIF or thumbnails beside the image, or do not parse far enough to tell"))
    if extra:
        findings.append(Finding(line, "pixel-data-past-image", _PAST_IMAGE))
    return findings


def _holds_sound(out: Dataset, output_path: str) -> bool:
    """:func:`tags.holds_audio` for an output; a video's Pixel Data left in its file is searched there,
    a fragment at a time."""
    from .tags import holds_audio, is_video

    elem = out._dict.get(0x7FE00010)
    if isinstance(elem, RawDataElement) and elem.value is None and is_video(out):
        with open(output_path, "rb") as fh:
            fh.seek(elem.value_tell)
            return holds_audio(out, fh)
    return holds_audio(out)


def _check_values(src: Dataset, out: Dataset, out_bytes: bytes | mmap.mmap, line: int, profile: Any,
                  output_path: str, rel_output: str | None, scanned_overlays: frozenset[str] = frozenset(),
                  own_files: tuple[str, ...] = (), keys: TermKeys | None = None) -> list[Finding]:
    """Checks 1 and 2 of the module docstring for one output (``out``: ``out_bytes`` parsed) against
    its input ``src``; top-level pixel data still in a file (:func:`_deferred_pixels`) is taken out.
    ``scanned_overlays``: the overlay groups (``"6000"``) the run scanned for text, whose bits C keeps
    where it found none. ``own_files``: the files deid wrote into OUTPUT beside the outputs, searched
    for the input's values (:func:`_in_own_files`)."""
    from .actions import cap_age
    from .tags import (_CLEANED_IN_SCOPE, _READ_WHEN_KEPT, _decision, _name_terms, _replaces_uids, _value_bytes,
                       collect_phi_terms, convert_inert, date_variants, invalid_for_vr, rule_for, walk)

    def _name_parts(value: Any) -> set[str]:  # a name's parts and whole forms as its terms are collected
        return {t.upper() for t in _name_terms(str(value))}

    findings: list[Finding] = []
    max_age = getattr(profile.settings, "max_age_years", None)
    year_mode = profile.settings.dates == "year"
    shift_mode = profile.settings.dates == "shift"
    header, out_bytes = _searchable(out_bytes, out, output_path)
    sound = _holds_sound(out, output_path)  # before a video left in its file is taken out below
    for ds in (src, out):
        for tag in _deferred_pixels(ds):
            del ds._dict[tag]
    phi_terms = collect_phi_terms(src, profile)  # as the run collected them for its clean (C)
    replaces_uids = _replaces_uids(profile)
    patterns = getattr(profile.settings, "kept_text_patterns", "keep") == "remove"
    january_first: list[str] = []  # year mode: output dates on 1 January (see below)

    def visit(container: Dataset, elem: Any, ref: Any, path: str) -> bool:
        if ref.vr == "SQ":
            if elem.value and _decision(profile, ref, 0)[0] == "X":  # a sequence the profile removes, put back
                findings.append(Finding(line, "removed-attribute-present", f"{path} {ref.keyword}".strip()))
                return False
            return True
        if year_mode and ref.vr in ("DA", "DT"):
            if elem.is_raw:
                elem = convert_inert(container, elem)
            text = str(elem.value)
            if len(text) >= 8 and text[:8].isdigit() and text[4:8] == "0101":
                january_first.append(text[:8])
        if (patterns and ref.vr in _CLEANED_IN_SCOPE and _DEID_METHOD_CODES not in ref.parents
                and _decision(profile, ref, 0)[0] == "T" and _pattern_kept(container, elem)):  # a Code Meaning too
            findings.append(Finding(line, "identifier-in-kept-text", f"{path} {ref.keyword}".strip()))
        if ref.keyword in _PATIENT_KEYS and not ref.depth and rule_for(profile, ref).action != "K":
            # deid writes the patient's pseudonym there: the input's own value back is kept, however short
            if elem.is_raw:
                elem = convert_inert(container, elem)
            original = _original(src, path)
            if original is not _MISSING and str(original).strip() and (
                    str(elem.value).strip() == str(original).strip()
                    or (ref.keyword == "PatientName" and _name_parts(elem.value) & _name_parts(original))):
                findings.append(Finding(line, "original-value-kept", f"{path} {ref.keyword}".strip()))
            return False
        if ref.keyword in _WRITTEN_BY_DEID or (ref.tag in PIXEL_DATA_TAGS and not ref.depth):  # an image in an item: judged
            return False
        if max_age is not None and ref.vr == "AS":  # whatever the action (K too): the cap applies to every age
            if elem.is_raw:
                elem = convert_inert(container, elem)
            if elem.value not in (None, "", b"", []) and cap_age(elem.value, max_age) != elem.value:
                findings.append(Finding(line, "age-over-limit",
                                        f"{path} {ref.keyword}: an age over {max_age} years, or none a reader can tell".strip()))
                return False
        if ref.private_creator is not None and rule_for(profile, ref).action != "K":
            findings.append(Finding(line, "private-element-kept", path))
            return False
        # what the run decided, not the table's row alone: an unlisted UID it replaces (U), an unlisted
        # date it dates (C); T keeps the value less the file's terms, which the byte search looks for
        action = _decision(profile, ref, 0)[0]
        if action == "K" and ref.vr in _READ_WHEN_KEPT:  # a number or a code: read against its VR, as the run does
            why = invalid_for_vr(ref, elem.value if elem.is_raw else _value_bytes(elem))
            if why is not None:
                findings.append(Finding(line, "invalid-value-kept", f"{path} {ref.keyword}: {why}".strip()))
        if action in ("K", "T"):  # kept as it came: its value is never read (a raw element stays raw)
            return False
        if elem.is_raw:
            elem = convert_inert(container, elem)
        if action == "X" and elem.value not in (None, "", b"", []):
            findings.append(Finding(line, "removed-attribute-present", f"{path} {ref.keyword}".strip()))
        elif action == "C" and (elem.VR == "AS" or (elem.VR in ("DA", "DT", "TM") and year_mode)
                                     or (elem.VR == "TM" and shift_mode)
                                     or ((ref.tag & 0xFFFF) == 0x3000 and f"{ref.tag >> 16:04X}" in scanned_overlays)):
            pass  # what C keeps: ages under the cap, year-only dates, times where dates move by whole days,
            # overlay bits the run scanned (rescanned below)
        elif (elem.value not in (None, "", b"", [])
                and elem.VR not in ("US", "SS", "UL", "SL", "FL", "FD", "IS", "DS", "CS")
                and not (elem.VR == "UI" and _well_known_uids(elem.value))):  # U keeps standard UIDs
            original = _original(src, path)
            if (original is not _MISSING and str(elem.value) == str(original)
                    and not (action == "C" and _clean_keeps(elem, phi_terms, replaces_uids))):
                findings.append(Finding(line, "original-value-kept", f"{path} {ref.keyword} action {action}".strip()))
        return False

    walk(out, visit, lazy=True)
    findings += _original_uids(src, out, header, line, profile)
    if sound:  # written under audio: keep, or by a tool that did not look
        findings.append(Finding(line, "audio-kept", "sound (a voice: an audio object, an audio waveform or a video's sound track) no stage de-identifies"))
    terms = {t for t in phi_terms if t.upper() != DUMMY_TEXT}  # a name "Anonymous": deid's own dummy
    for date in january_first:  # year mode: a date on 1 January survives year reduction unchanged, legitimately
        terms -= date_variants(date)
    header_folded = header.lower()
    codecs = _file_codecs(src, out)
    rel_path = (output_path if rel_output is None else rel_output).lower()
    searched = [term for term in sorted(terms) if len(term) >= _HEADER_MIN_TERM]
    holders = _holders([term for term in searched if _found(term, header, header_folded, codecs)], out, src, profile, codecs)
    # a big output (pixel data included) is searched term by term only when one pass finds any of them
    in_bytes = len(out_bytes) < _PREFILTER_ABOVE or _any_found(
        [t for t in searched if t not in holders and len(t) >= _PIXEL_MIN_TERM], out_bytes, codecs)
    for term in searched:
        if term in holders:
            if holders[term] is not None:
                findings.append(Finding(line, "identifying-value-in-header",
                                        f"a {len(term)}-character identifying value {holders[term]}"))
        elif len(term) >= _PIXEL_MIN_TERM and in_bytes and _found(term, out_bytes, codecs=codecs):
            findings.append(Finding(line, "identifying-value-in-bytes", f"a {len(term)}-character identifying value"))
        if _path_has(term, rel_path):
            findings.append(Finding(line, "identifying-value-in-path", f"a {len(term)}-character identifying value"))
    split = _split_numbers(header, terms)
    findings += [Finding(line, "identifying-value-in-header", f"a {len(n)}-digit identifying number with its digits split")
                 for n in sorted(split, key=len)]
    findings += [Finding(line, "identifying-value-in-header", "an identifying date in a short form")
                 for _ in _short_dates(header, terms, split)]
    findings += _reformatted(src, out, header, header_folded, line, codecs, {t for t, h in holders.items() if h}, split,
                             [t for t in searched if t not in holders])
    findings += _in_own_files(searched, own_files, line)
    if keys is not None:
        keys.add(searched)
    return findings


#: Street words and their abbreviations (USPS Publication 28, the common ones): an address line is
#: compared with both written one way
_STREET_WORDS = {
    "STREET": "ST", "AVENUE": "AVE", "AV": "AVE", "ROAD": "RD", "DRIVE": "DR", "BOULEVARD": "BLVD", "LANE": "LN",
    "COURT": "CT", "PLACE": "PL", "SQUARE": "SQ", "TERRACE": "TER", "CIRCLE": "CIR", "HIGHWAY": "HWY",
    "PARKWAY": "PKWY", "APARTMENT": "APT", "SUITE": "STE", "NORTH": "N", "SOUTH": "S", "EAST": "E", "WEST": "W",
    "NUMBER": "NO", "FLOOR": "FL", "BUILDING": "BLDG", "MOUNT": "MT", "SAINT": "ST",
}
_LONG_FORMS: dict[str, tuple[str, ...]] = {}
for _long, _short in _STREET_WORDS.items():
    _LONG_FORMS[_short] = _LONG_FORMS.get(_short, (_short,)) + (_long,)
_ADDRESS_LINES = re.compile(r"[\^,;\r\n]+")
_WORD = re.compile(r"[^\W_]+")
#: A telephone number as written: digits with the punctuation people put between them
_PHONE = re.compile(r"\+?[0-9](?:[\s().\-/]{0,3}[0-9])+")
#: Digits of a telephone number compared (fewer: any number)
_MIN_PHONE_DIGITS = 7
#: The separators a telephone number's digits may have between them in an output (and their count)
_PHONE_GAP = r"[\s().\-/_+]{0,3}"
#: What may stand before a number's own digits (:func:`clean.phone_core`) in an output: a country code
#: after ``+`` or ``00``, then a national trunk ``0`` (``+44 (0)20``, Italy's ``+39 06``); or a trunk
#: ``0`` or North America's ``1`` alone
_PHONE_PREFIX = rf"(?:(?:\+|00){_PHONE_GAP}[0-9]{{1,3}}{_PHONE_GAP}(?:0{_PHONE_GAP})?|[01]{_PHONE_GAP})?"


def _address_words(text: str) -> list[str]:
    """The words of ``text`` in upper case, street words abbreviated (``12 Main Street``: 12 MAIN ST)."""
    return [_STREET_WORDS.get(w, w) for w in _WORD.findall(text.upper())]


def _personal_values(src: Dataset) -> tuple[list[str], list[str], list[str]]:
    """The input's persons' names (PN values), telephone numbers and addresses (public elements at any
    depth), as :func:`_reformatted` compares them; in memory only."""
    from .tags import _str_values, convert_inert, walk

    names: list[str] = []
    phones: list[str] = []
    addresses: list[str] = []

    def visit(container: Dataset, elem: Any, ref: Any, path: str) -> bool:
        if ref.vr == "SQ":
            return True
        keyword = ref.keyword or ""
        wanted = (names if ref.vr == "PN" else phones if "Telephone" in keyword or "Telecom" in keyword
                  else addresses if keyword.endswith("Address") and ref.vr != "UR" else None)
        if wanted is not None and ref.private_creator is None:
            wanted += _str_values(convert_inert(container, elem) if elem.is_raw else elem)
        return False

    walk(src, visit, prefix=None, lazy=True)
    return names, phones, addresses


#: Printable ASCII in a value of bytes, 4 characters or more, in bytes or in UTF-16-LE (as ``strings`` reads)
_BYTE_TEXT = re.compile(rb"[\t\x20-\x7e]{4,}|(?:[\t\x20-\x7e]\x00){4,}")


def _byte_text(value: bytes) -> list[str]:
    """The text a value of bytes (OB, UN, a private blob) holds: its runs of printable ASCII
    (:data:`_BYTE_TEXT`), one a string."""
    return [m.decode("utf-16-le" if m[1:2] == b"\x00" else "ascii") for m in _BYTE_TEXT.findall(value)]


def _element_text(elem: Any) -> list[str]:
    """What a reader sees as text in an element: its string values, or the runs of text its bytes hold
    (:func:`_byte_text`)."""
    from .tags import _str_values

    value = elem.value
    return _byte_text(bytes(value)) if isinstance(value, (bytes, bytearray)) else _str_values(elem)


@functools.lru_cache(maxsize=1)
def _lut_data_tags() -> frozenset[int]:
    """The standard's LUT and palette data elements (LUT Data, Red Palette Color Lookup Table Data...),
    from pydicom's dictionary."""
    from pydicom.datadict import DicomDictionary

    return frozenset(tag for tag, entry in DicomDictionary.items() if entry[4].endswith(("LookupTableData", "LUTData")))


def _samples(tag: int) -> bool:
    """Whether ``tag`` holds samples (pixels, a LUT's or a palette's entries, an overlay's bits, a
    waveform's): no text but by chance (a palette's 87 KB: 867 runs of "text"), searched as bytes only
    (the rescan reads the images)."""
    return (tag in PIXEL_DATA_TAGS or tag in _lut_data_tags() or (tag & 0xFF01FFFF) == 0x60003000
            or tag == 0x54001010)


def _output_text(out: Dataset) -> str:
    """The output's text, one value a line: its text values as pydicom decodes them, and the text
    that its values of bytes (OB, OW, UN: a private blob; not samples, :func:`_samples`) hold
    (:func:`_byte_text`), without deid's own statement of its method (:data:`_MARK_TAGS`)."""
    from .tags import _BYTES_VRS, _str_values, convert_inert, walk

    values: list[str] = []

    def visit(container: Dataset, elem: Any, ref: Any, path: str) -> bool:
        if ref.vr == "SQ":
            return ref.tag not in _MARK_TAGS
        if ref.depth == 0 and ref.tag in _MARK_TAGS:
            return False
        if ref.vr in _TEXT_VRS:
            values.extend(_str_values(convert_inert(container, elem) if elem.is_raw else elem))
        elif ref.vr in _BYTES_VRS and isinstance(elem.value, (bytes, bytearray)) and not _samples(ref.tag):
            values.extend(_byte_text(bytes(elem.value)))
        return False

    walk(out, visit, prefix=None, lazy=True)
    return "\n".join(values)


_TEXT_VRS = TEXT_VRS - {"UR"}  # the text VRs but a URI


def _reformatted(src: Dataset, out: Dataset, header: bytes | mmap.mmap, header_folded: bytes, line: int,
                 codecs: tuple[str, ...], found: set[str], split: set[str] | frozenset[str] = frozenset(),
                 unfound: list[str] | tuple[str, ...] = ()) -> list[Finding]:
    """``identifying-value-in-header`` for the input's values written otherwise in the output's header,
    which the byte search (the values as written, :func:`_found`) does not see; ``found``: the terms
    it found there, ``split``: the numbers :func:`_split_numbers` found (each value is reported once),
    ``unfound``: the terms it looked for and did not find.

    * a person's name split across elements or words: each of its parts (2 characters or more) as a
      whole word of the output's text, where one part is shorter than :data:`_HEADER_MIN_TERM` (longer
      parts are found alone);
    * a telephone number (:data:`_MIN_PHONE_DIGITS` digits or more) with its digits in another format
      (``(555) 123 4567``, ``555.123.4567``, ``+1 555 123 4567`` for ``555-123-4567``), with or without
      a country code or trunk prefix either way (``555-123-4567`` for ``+1 555 123 4567``, ``+44 20 ...``
      for ``020 ...``: :func:`clean.phone_core`, :data:`_PHONE_PREFIX`), no other digit next to it;
    * an address line (between ``^``, commas or line breaks; two words or more) as consecutive words of
      one text value, street words abbreviated alike (``12 MAIN ST`` for ``12 Main Street``);
    * one of ``unfound`` with an apostrophe or a hyphen (``O'BRIEN``, ``SMITH-JONES``) as a whole word of
      the output's text written with typographic punctuation (``O’Brien``: :func:`clean.plain_punctuation`),
      where the header holds a byte that may be one (not ASCII, or a backtick).
    The output's text is decoded only where the header's bytes hold every part or word."""
    from .clean import NAME_PUNCTUATION, phone_core, plain_punctuation, split_digit_terms
    from .tags import _ALNUM_RUNS, _name_terms

    names, phones, addresses = _personal_values(src)
    findings: list[Finding] = []
    text: str | None = None

    def output_text() -> str:
        nonlocal text
        if text is None:
            text = _output_text(out)
        return text

    seen: set[tuple[str, ...]] = set()
    for name in names:
        parts = tuple(sorted({p for p in _WORD.findall(name.upper()) if len(p) >= 2}))
        whole = {t for t in _name_terms(name) if t.upper() not in parts}  # its forms of two parts or more
        if len(parts) < 2 or parts in seen or min(map(len, parts)) >= _HEADER_MIN_TERM or found & whole:
            continue
        seen.add(parts)
        if all(_found(p, header, header_folded, codecs) for p in parts) and all(
                re.search(rf"(?<![^\W_]){re.escape(p)}(?![^\W_])", output_text(), re.IGNORECASE) for p in parts):
            findings.append(Finding(line, "identifying-value-in-header",
                                    f"a person's name's {len(parts)} parts ({', '.join(str(len(p)) for p in parts)} "
                                    "characters) each as a word of the output's text"))
    numbers = {phone_core(m.group()) for v in phones if v.strip() not in found for m in _PHONE.finditer(v)
               if not split.intersection(split_digit_terms(frozenset({m.group()})))}  # one finding a value
    numbers = {n for n in numbers if len(n) >= _MIN_PHONE_DIGITS}
    if numbers:
        head = bytes(header).decode("latin-1")
        squeezed = re.sub(r"\D", "", head)
        for digits in sorted(numbers):
            if digits in squeezed and re.search(rf"(?<![0-9]){_PHONE_PREFIX}{_PHONE_GAP.join(digits)}(?![0-9])", head):
                findings.append(Finding(line, "identifying-value-in-header",
                                        f"a {len(digits)}-digit telephone number in another format"))
    lines = {tuple(_address_words(part)) for v in addresses if v.strip() not in found
             for part in _ADDRESS_LINES.split(v)}
    for words in sorted(w for w in lines if len(w) >= 2):
        if not all(any(_found(f, header, header_folded) for f in _LONG_FORMS.get(w, (w,))) for w in words):
            continue
        wanted = " ".join(words)
        if any(f" {wanted} " in f" {' '.join(_address_words(value))} " for value in output_text().split("\n")):
            findings.append(Finding(line, "identifying-value-in-header",
                                    f"a {len(wanted)}-character address line in another format"))
    punctuated = [t.lower() for t in unfound if NAME_PUNCTUATION.search(t)
                  and all(header_folded.find(run) >= 0 for run in _ALNUM_RUNS(t.lower().encode("utf-8", "replace")))]
    if punctuated and _MAY_BE_TYPOGRAPHIC(header):
        plain = plain_punctuation(output_text()).lower()
        for term in punctuated:
            if term in plain and re.search(rf"(?<![^\W_]){re.escape(term)}(?![^\W_])", plain):
                findings.append(Finding(line, "identifying-value-in-header",
                                        f"a {len(term)}-character identifying value with typographic punctuation"))
    return findings


#: A byte of typographic punctuation in any encoding (:data:`clean.TYPOGRAPHIC`): not ASCII, or a backtick
_MAY_BE_TYPOGRAPHIC = re.compile(rb"[`\x80-\xff]").search


#: What ``run.json`` states in deid's own words (names of its settings, of the profile, of the
#: detector and devices, times, hashes): no input value; the rest (its notes, anything else) is searched
_RUN_OWN_FIELDS = frozenset({"schema_version", "tool_version", "profile", "key_id", "started", "finished", "state",
                             "pixels", "pixel_mode", "device_requested", "detector", "device", "cluster", "chain",
                             "reasons", "failed_retried", "counts"})


@functools.lru_cache(maxsize=8)
def _own_text(path: str, mtime_ns: int, size: int) -> tuple[bytes, bytes]:
    """The text of a file deid wrote into OUTPUT as a reader sees it (UTF-8, lower case), and deid's own
    words in it (terms found there are not searched: a patient named "Patient" and a profile
    "retain-patient-characteristics"). A report: its HTML entities decoded, its images (``data:``
    URIs, base64 PNGs) left out; deid's words: the page :func:`report.render_html` makes of no records,
    with the run's profile. ``run.json``: its values but :data:`_RUN_OWN_FIELDS`' (its notes); deid's
    words: its field names. Read once per process while the file stays the same."""
    import html

    if path.endswith(".json") and size > MAX_RUN_JSON_BYTES:  # never read (verify_run: run-summary-unreadable)
        return b"", b""
    raw = Path(path).read_bytes().decode("utf-8", "replace")
    if path.endswith(".json"):
        try:
            doc = json.loads(raw)
        except ValueError:  # an unreadable run.json (reported by verify_run): searched as it is
            return raw.lower().encode("utf-8"), b""
        if not isinstance(doc, dict):
            return raw.lower().encode("utf-8"), b""
        text = json.dumps({k: v for k, v in doc.items() if k not in _RUN_OWN_FIELDS}, ensure_ascii=False)
        return text.lower().encode("utf-8"), " ".join(doc).lower().encode("utf-8")
    from .report import render_html

    try:
        run = read_run_json(Path(path).parent / RUN_NAME)
    except (OSError, ValueError):
        run = {}
    profile = run.get("profile") if isinstance(run, dict) else None
    own = render_html({"profile": profile} if isinstance(profile, dict) else {}, [], [], False)
    text = html.unescape(re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]*", "", raw))
    return text.lower().encode("utf-8"), html.unescape(own).lower().encode("utf-8")


def _in_own_files(terms: list[str], own_files: tuple[str, ...], line: int) -> list[Finding]:
    """``identifying-value-in-bytes`` for each of the input's ``terms`` found in a file deid wrote into
    OUTPUT beside the outputs (``report.html``, ``run.json``; :func:`_own_text`), naming the file."""
    findings: list[Finding] = []
    for path in own_files:
        try:
            st = os.stat(path)
            text, own = _own_text(path, st.st_mtime_ns, st.st_size)
        except OSError:
            continue
        if len(text) >= _PREFILTER_ABOVE and not _any_found(terms, text):  # as an output's bytes are searched
            continue
        name = os.path.basename(path)
        findings += [Finding(line, "identifying-value-in-bytes", f"a {len(term)}-character identifying value in {name}")
                     for term in terms if _found(term, text, text) and not _found(term, own, own)]
    return findings


def _words_key(words: list[str], salt: bytes) -> int:
    """The key of a value by its words (case folded, in order): 64 bits of a keyed BLAKE2b."""
    digest = hashlib.blake2b("\x1f".join(words).encode("utf-8", "surrogateescape"), digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "little")


class TermKeys:
    """The keys (:func:`_words_key`, under this command's ``salt``) of inputs' identifying values,
    gathered where the inputs are read (a Dask worker): the driver searches the manifest for them
    (:func:`_in_manifest`) without ever holding a value."""

    def __init__(self, salt: bytes) -> None:
        self.salt = salt
        self.keys: set[int] = set()
        self.most_words = 0

    def add(self, terms: list[str] | frozenset[str]) -> None:
        """The keys of ``terms`` (each by its words: ``DOE^JOHN`` is found as ``Doe, John``)."""
        for term in terms:
            words = _WORD.findall(term.casefold())
            if words:
                self.keys.add(_words_key(words, self.salt))
                self.most_words = max(self.most_words, len(words))

    def add_input(self, path: str, profile: Any) -> None:
        """The keys of an input's identifying values (those the header search looks for), read from its
        header: an input that has no output (skipped, quarantined, failed) may still be named in its
        record. An input pydicom cannot read adds none, nor one that is no regular file (opened without
        blocking: the run skips a named pipe, whose read would wait for a writer for ever)."""
        from .tags import collect_phi_terms

        try:
            with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    return
                ds = pydicom.dcmread(fh, force=True, stop_before_pixels=True, defer_size=_DEFER_SIZE)
                terms = collect_phi_terms(ds, profile)
        except Exception:
            return
        self.add([t for t in terms if len(t) >= _HEADER_MIN_TERM and t.upper() != DUMMY_TEXT])

    def array(self) -> np.ndarray:
        """The keys, sorted, as 8 bytes each."""
        return np.unique(np.fromiter(self.keys, dtype=np.uint64, count=len(self.keys)))


class _KeySet:
    """The keys the batches return, kept in sorted arrays of 8 bytes a key (merged as they come)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._pending = 0
        self.most_words = 0

    def add(self, keys: np.ndarray, most_words: int) -> None:
        self._parts.append(keys)
        self._pending += len(keys)
        self.most_words = max(self.most_words, most_words)
        if self._pending > 1 << 20:  # merged: a patient's values recur in each of their files
            self._parts, self._pending = [self.keys()], 0

    def keys(self) -> np.ndarray:
        return np.unique(np.concatenate(self._parts)) if self._parts else np.zeros(0, dtype=np.uint64)


#: What a manifest record states in deid's own words (its statuses, reason codes, hashes, sizes, the
#: profile, actions, timings, the image's scan): never an input's value. The rest (the output's path,
#: a reason's message, any field deid does not write) is searched (:func:`_record_text`)
_RECORD_OWN_FIELDS = frozenset({"schema_version", "input_sha256", "input_size", "status", "output_sha256", "profile",
                                "tool_version", "pixel", "actions", "timings_ms", "prev_record_sha256"})
#: Candidate keys checked at once against the inputs' (:func:`_in_manifest`): memory bounded whatever the manifest's size
_KEY_BLOCK = 1 << 16


def _record_text(line: bytes) -> list[tuple[str, bool]]:
    """The text of one manifest line that may hold an input's value, each with whether it is deid's
    prose (a reason's message): of a record, the values of its fields but :data:`_RECORD_OWN_FIELDS`
    and its reason's code; of a line that is no record (torn, edited), the whole line."""
    try:
        rec = json.loads(line)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        return [(line.decode("utf-8", "replace"), False)]
    texts: list[tuple[str, bool]] = []

    def add(value: Any, prose: bool = False) -> None:
        if isinstance(value, dict):
            for v in value.values():
                add(v, prose)
        elif isinstance(value, list):
            for v in value:
                add(v, prose)
        elif value is not None and not isinstance(value, bool):
            texts.append((str(value), prose))

    for field, value in rec.items():
        if field == "reason" and isinstance(value, dict):
            add(value.get("message"), True)
            add({k: v for k, v in value.items() if k not in ("code", "message")})
        elif field not in _RECORD_OWN_FIELDS:
            add(value)
    return texts


def _in_manifest(manifest: Path, keys: np.ndarray, most_words: int, salt: bytes) -> list[Finding]:
    """``identifying-value-in-bytes`` for each record of ``manifest.jsonl`` (its line) holding an
    input's identifying value (``keys``: :class:`TermKeys`, of every input) as consecutive words of its
    text (:func:`_record_text`): each run of 1 to ``most_words`` words is keyed and looked up. Read a
    line at a time, the keys looked up :data:`_KEY_BLOCK` at a time: memory flat however long the
    manifest. Words, not bytes: a hash or a pseudonym (one word) never holds a name by chance. In a
    reason's message (deid's prose) one word of letters alone is not looked up: a name part "NAME"
    (a pydicom file's) would be found in "cannot name the output"."""
    if not len(keys) or not manifest.is_file():
        return []
    found: set[tuple[int, int]] = set()  # (line, words)
    cand: list[int] = []
    where: list[tuple[int, int]] = []

    def look_up() -> None:
        hits = np.isin(np.fromiter(cand, dtype=np.uint64, count=len(cand)), keys)
        found.update(where[i] for i in np.flatnonzero(hits))
        cand.clear()
        where.clear()

    lines = (ln for ln in read_lines(manifest) if isinstance(ln, LongLine) or ln.strip())
    for number, line in enumerate(lines, start=1):
        if isinstance(line, LongLine):  # reported by the chain check; its text is never read
            continue
        for text, prose in _record_text(line):
            words = _WORD.findall(text.casefold())
            for n in range(1, most_words + 1):
                for start in range(len(words) - n + 1):
                    if n == 1 and prose and words[start].isalpha():
                        continue
                    cand.append(_words_key(words[start : start + n], salt))
                    where.append((number, n))
        if len(cand) >= _KEY_BLOCK:
            look_up()
    if cand:
        look_up()
    return [Finding(number, "identifying-value-in-bytes",
                    f"an identifying value of {n} word{'s' * (n > 1)} in {MANIFEST_NAME}") for number, n in sorted(found)]


#: Numbers searched for split (:func:`_split_numbers`) from this many digits: a header holds many
#: numbers side by side (spacings, positions), which a shorter one's digits would match by chance
_SPLIT_MIN_DIGITS = 6


def _split_numbers(header: bytes | mmap.mmap, terms: set[str]) -> set[str]:
    """The input's numbers (IDs, compact dates, the digits of telephone numbers, SSNs and dates:
    :func:`clean.split_digit_terms`) found in ``header`` with their digits split or regrouped by spaces,
    dashes, dots or underscores ("9988 7766", "12 345 6789" for 123-45-6789), as the run takes them out
    of the text it cleans or keeps; not where written together or as one of ``terms`` is (the byte
    search has those)."""
    from .clean import SPLIT_DIGIT_SEPARATORS, split_digit_terms, split_digits_in

    numbers = tuple(t for t in split_digit_terms(frozenset(terms)) if len(t) >= _SPLIT_MIN_DIGITS)
    if not numbers:
        return set()
    text = bytes(header).decode("latin-1")
    return {re.sub(r"\D", "", m.group()) for m in split_digits_in(text, numbers)
            if any(c in SPLIT_DIGIT_SEPARATORS for c in m.group()) and m.group() not in terms}


def _short_dates(header: bytes | mmap.mmap, terms: set[str], split: set[str]) -> set[tuple[int, int, int]]:
    """The input's dates (:func:`clean.file_dates`) found in ``header`` in a short form the run takes out
    of the text it cleans or keeps (:func:`clean.short_dates_in`: ``1 2 2019``, ``2019_1_2``); not where
    written as one of ``terms`` is (the byte search has those) nor where :func:`_split_numbers` found
    its digits (``split``). A header that is not ASCII is also read as UTF-8 with its typographic
    punctuation as ASCII (``2019–1–2`` with en dashes, which the run takes out: :func:`clean.plain_punctuation`)."""
    from .clean import file_dates, plain_punctuation, short_dates_in

    dates = file_dates(frozenset(terms))
    if not dates:
        return set()
    raw = bytes(header)
    texts = [raw.decode("latin-1")] + ([] if raw.isascii() else [plain_punctuation(raw.decode("utf-8", "replace"))])
    return {date for date in dates if any(m.group() not in terms and re.sub(r"\D", "", m.group()) not in split
                                          for text in texts for m in short_dates_in(text, (date,)))}


def _uid_in(uid: bytes, data: bytes | mmap.mmap) -> bool:
    """Whether ``uid`` stands whole in ``data``: no digit or dot touches it (``1.2.3`` is not in ``1.2.34``)."""
    start = data.find(uid)
    while start >= 0:
        before, after = data[start - 1 : start] if start else b"", data[start + len(uid) : start + len(uid) + 1]
        if not (before.isdigit() or before == b".") and not (after.isdigit() or after == b"."):
            return True
        start = data.find(uid, start + 1)
    return False


def _original_uids(src: Dataset, out: Dataset, header: bytes | mmap.mmap, line: int, profile: Any) -> list[Finding]:
    """Where the profile replaces UIDs: an input UID it replaces (not a standard one) found anywhere in
    the output's header, in any element (a safe private "Analyzed Series UID" holding the series' own
    UID, a UID copied into text) is ``original-uid-kept``, naming the elements that hold it."""
    from .tags import _decision, _replaces_uids, _str_values, convert_inert, tag_str, walk

    if not _replaces_uids(profile):
        return []
    uids: set[str] = set()

    def collect(container: Dataset, elem: Any, ref: Any, path: str) -> bool:
        if ref.vr == "SQ":
            return True
        if ref.vr == "UI" and _decision(profile, ref, 0)[0] != "K":  # the run's decision: unlisted UIDs too
            if elem.is_raw:
                elem = convert_inert(container, elem)
            uids.update(v for v in (str(u).strip("\0 ") for u in _str_values(elem)) if len(v) >= 10 and not is_well_known_uid(v))
        return False

    walk(src, collect, lazy=True)
    found = [uid for uid in sorted(uids) if _uid_in(uid.encode(), header)]
    if not found:
        return []
    holders: dict[str, set[str]] = {uid: set() for uid in found}

    def hold(container: Dataset, elem: Any, ref: Any, path: str) -> bool:
        if ref.vr == "SQ":
            return True
        if elem.is_raw:
            elem = convert_inert(container, elem)
        values = [v.encode("utf-8", "surrogateescape") for v in _str_values(elem)]
        for uid in found:
            if any(_uid_in(uid.encode(), v) for v in values):
                holders[uid].add(ref.keyword or tag_str(ref.tag))
        return False

    walk(out, hold, lazy=True)
    return [Finding(line, "original-uid-kept", "an original UID in " + ("; ".join(sorted(h)) or "the header"))
            for h in holders.values()]


def _pattern_kept(container: Dataset, elem: Any) -> bool:
    """Whether kept text (T) holds what the Clean action's patterns find: :func:`clean.clean_text`
    without the file's terms (the byte search looks for those) would change it. Read only when its
    bytes could match a pattern."""
    from .clean import clean_text, may_match_a_pattern
    from .tags import convert_inert

    if elem.is_raw:
        if not isinstance(elem.value, bytes) or not may_match_a_pattern(elem.value.decode("latin-1")):
            return False
        elem = convert_inert(container, elem)
    values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
    return any(may_match_a_pattern(str(v)) and clean_text(str(v), frozenset(), uid=str) != str(v)
               for v in values if v is not None)


def _clean_keeps(elem: Any, phi_terms: frozenset[str], replaces_uids: bool) -> bool:
    """Whether C keeps a text value as it is: the run's clean (:func:`actions.act_clean`) finds nothing
    identifying in any of its values (a description without names, IDs or dates)."""
    from .clean import clean_text

    if elem.VR not in TEXT_VRS or elem.VR == "PN":  # a name under C is emptied
        return False
    # a UID in the text: the run gives it to replace_uid, which keeps a standard one (and, under
    # retain-uids, every one) and changes any other
    uid = (lambda u: u if is_well_known_uid(u) else "") if replaces_uids else str
    values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
    return all(clean_text(str(v), phi_terms, uid=uid) == str(v) for v in values)


def _rescan_overlays(src: Dataset, out: Dataset, line: int, overlay_boxes: dict[str, Any], device: str) -> list[Finding]:
    """Overlay planes the run scanned and cleared, checked as :func:`_rescan` checks frames: text the
    detector finds in the input's plane, mostly outside the cleared boxes, and finds again in the
    output's is ``text-remaining``; a plane the output cannot give back is ``check-failed``."""
    from .detect import get_detector
    from .pipeline import overlay_frames, scan_overlay

    found: list[Finding] = []
    detector = get_detector("auto", device)
    for group in sorted(overlay_boxes):
        try:
            planes = overlay_frames(out, int(group, 16))
        except Exception as exc:
            found.append(Finding(line, "check-failed", f"overlay {group}: {type(exc).__name__}"))
            continue
        for i, plane in enumerate(planes):  # every box the run cleared holds no bit set
            for x, y, w, h in overlay_boxes[group][i] if i < len(overlay_boxes[group]) else []:
                if plane[max(0, y) : y + h, max(0, x) : x + w].any():
                    found.append(Finding(line, "redaction-not-filled", f"overlay {group} frame {i} box {[x, y, w, h]}"))
        after = scan_overlay(planes, detector)
        if not any(after):
            continue
        before = scan_overlay(overlay_frames(src, int(group, 16)), detector)
        for i, regions in enumerate(after):
            cleared = overlay_boxes[group][i] if i < len(overlay_boxes[group]) else []
            found += [Finding(line, "text-remaining", f"overlay {group} frame {i} box {box}")
                      for box in _text_left(before[i] if i < len(before) else [], regions, cleared, planes.shape[1:])]
    return found


def _text_left(before: list[Region], after: list[Region], boxes: list[list[int]], shape: tuple[int, ...]) -> list[list[int]]:
    """The output boxes (``after``) that meet input text (``before``, at least 30 % of it) lying mostly
    (over 70 %) outside the boxes the run filled (grown 2 px): one per output box, however many input
    boxes meet it. ``shape``: the frame's rows and columns."""
    rows, cols = shape[0], shape[1]
    filled = np.zeros((rows, cols), dtype=bool)
    for x, y, w, h in boxes:
        if min(cols, x + w) > max(0, x) and min(rows, y + h) > max(0, y):
            filled[max(0, y - 2) : min(rows, y + h) + 2, max(0, x - 2) : min(cols, x + w) + 2] = True
    remaining: dict[tuple[int, ...], None] = {}
    for k in before:
        x, y, w, h = k.as_list()
        if w <= 0 or h <= 0 or float(filled[y : y + h, x : x + w].mean()) > 0.7:
            continue  # that input text lies under a fill
        hits = [r for r in after if _overlap(k.as_list(), r.as_list()) >= 0.3]
        if hits:
            remaining[tuple(hits[0].as_list())] = None
    return [list(box) for box in remaining]


def _overlap(a: list[int], b: list[int]) -> float:
    """Share of box ``a`` inside box ``b`` (grown by 2 px, the redaction margin)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b[0] - 2, b[1] - 2, b[2] + 4, b[3] + 4
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / max(1, aw * ah)


def _rescan(src: Dataset | str, out: Dataset | str, line: int, pixel: dict[str, Any], device: str,
            max_decoded_bytes: int = RunContext.max_decoded_bytes) -> list[Finding]:
    """Text the detector still sees where the input had text, or inside a box the run says it filled.

    Every recorded box must be filled with one value (else ``redaction-not-filled``: text put back, a
    fill that failed). Then the input and the output are scanned: text the detector finds in the input,
    mostly outside the filled boxes, and finds again in the output is original text still legible.
    Other detections on the changed image (the fill block next to bright anatomy, the detector's false
    positives) are not findings.

    Each image (a data set, or a path to read it from: then one at a time) is decoded whole or in
    chunks of frames as a run decodes it (:func:`pipeline.scan_step`, ``max_decoded_bytes`` as the
    run's): the output first, then only the input's chunks where the output still shows text.
    """
    from .detect import get_detector
    from .pipeline import scan_chunked, scan_step

    boxes = pixel.get("boxes_per_frame") or []
    found: list[Finding] = []

    def check_fills(start: int, frames: np.ndarray) -> None:
        rows, cols = frames.shape[1], frames.shape[2]
        for i, frame in enumerate(frames, start):
            for x, y, w, h in boxes[i] if i < len(boxes) else []:
                x0, y0, x1, y1 = max(0, x), max(0, y), min(cols, x + w), min(rows, y + h)
                patch = frame[y0:y1, x0:x1]
                if x1 > x0 and y1 > y0 and not (patch == patch.reshape(-1, *patch.shape[2:])[0]).all():
                    found.append(Finding(line, "redaction-not-filled", f"frame {i} box {[x, y, w, h]}"))

    detector = get_detector("auto", device)
    ds = pydicom.dcmread(out) if isinstance(out, str) else out
    rows, cols = int(ds.Rows), int(ds.Columns)
    after, _ = scan_chunked(ds, detector, "all-text", scan_step(ds, max_decoded_bytes), visit=check_fills)
    del ds
    wanted = [i for i, regions in enumerate(after) if regions]
    if not wanted:
        return found
    if isinstance(src, str):
        src = pydicom.dcmread(src, force=True)
    before, _ = scan_chunked(src, detector, "all-text", scan_step(src, max_decoded_bytes), wanted=wanted)
    found += [Finding(line, "text-remaining", f"frame {i} box {box}")
              for i in wanted for box in _text_left(before[i] if i < len(before) else [], after[i],
                                                    boxes[i] if i < len(boxes) else [], (rows, cols))]
    return found


_Pair = tuple[str, str, int, dict[str, Any], str, str, str]  # input, output, record line, pixel record, output path, sha256, input sha256


def _check_batch(items: list[_Pair], packed_profile: tuple[str, bytes], rescan: bool, device: str,
                 quiet: bool | None = None, own_files: tuple[str, ...] = (),
                 salt: bytes = b"") -> tuple[list[Finding], np.ndarray, int]:
    """:func:`check_pair` for each item (an item without output, a record not written: its input's
    identifying values only); the profile as :func:`batch.pack` packed it. ``quiet`` (a Dask task's):
    :func:`batch.task_log_level`, as a run's tasks; None (in the driver's process): deid's log levels
    are left as the command set them. ``own_files``: :func:`check_pair`'s. Returns the findings and
    the keys (``salt``: :class:`TermKeys`) of the inputs' identifying values, and their most words."""
    from .batch import task_log_level, unpack, withhold_task_details

    withhold_warning_messages()  # on a Dask worker too: pydicom's warnings quote the input values they reject
    withhold_task_details()  # and Dask's log of a failed task its arguments: these paths
    if quiet is not None:
        task_log_level(quiet)
    profile = unpack(packed_profile)
    out: list[Finding] = []
    keys = TermKeys(salt)
    for inp, outp, line, pixel, rel, sha, in_sha in items:
        if not outp:
            keys.add_input(inp, profile)
            continue
        try:
            out += check_pair(inp, outp, line, pixel, profile, rescan, device, rel, sha, in_sha, own_files, keys)
        except Exception as exc:
            out.append(Finding(line, "check-failed", type(exc).__name__))
    return out, keys.array(), keys.most_words


def _profile_to_judge_by(spec: str | None, used: dict[str, Any], private_dir: Path) -> Any:
    """``--profile`` when given; else the profile the run recorded in its private folder (its files as
    they were, wherever they are now); else, for a run from before deid recorded it, the built-in
    profile of the run's name."""
    from .profile import load_profile, load_recorded

    if spec:
        return load_profile(spec)
    try:
        doc = json.loads((private_dir / PROFILE_RECORD_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        doc = None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"the run's recorded profile ({PROFILE_RECORD_NAME} in its private folder) is not readable "
                           f"({type(exc).__name__}): give the profile with --profile") from None
    if doc is not None:
        return load_recorded(doc)
    try:
        return load_profile(str(used.get("name")))
    except ProfileError:
        raise ProfileError(f"the run's profile {used.get('name')!r} is not a built-in one and the run recorded none: "
                           "give its file with --profile FILE") from None


_STATUSES = ("written", "skipped", "quarantined", "failed")


def _summary_mismatches(run_info: dict[str, Any], manifest: Path) -> tuple[list[Finding], int]:
    """``run-summary-mismatch``: what a finished run's ``run.json`` states that its manifest also holds
    (the record count, the counts by status and by reason code, the profile), recounted from the
    manifest (the chain's HMAC and signature cover run.json's fields as a digest: this names which count
    differs, and checks a run.json an earlier deid signed by its head alone). Details name the field and counts.
    Also what it states of this session's images (:func:`_pixel_mismatches`). Returns the findings and
    the manifest's lines (records, read or not)."""
    status: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    pixels: list[dict[str, Any]] = []
    profiles_differ = False
    before = run_info.get("records_before_resume")
    before = before if isinstance(before, int) else 0
    n = 0
    for rec in _json_lines(manifest, "status"):
        n += 1
        if rec is None:  # reported with the records
            continue
        status[str(rec["status"])] += 1
        reason = rec.get("reason")
        if isinstance(reason, dict) and reason.get("code"):
            reasons[str(reason["code"])] += 1
        profiles_differ |= rec.get("profile") != run_info.get("profile")
        if n > before and isinstance(rec.get("pixel"), dict):  # the records of the session run.json describes
            pixels.append(rec["pixel"])
    found: list[Finding] = []
    if run_info.get("state") != "finished":
        return found, n
    found += _pixel_mismatches(run_info, pixels)
    if run_info.get("records") != n:
        found.append(Finding(0, "run-summary-mismatch", f"run.json states {run_info.get('records')} records, the manifest holds {n}"))
    stated = run_info.get("counts") if isinstance(run_info.get("counts"), dict) else {}
    for s in _STATUSES if "counts" in run_info else ():  # named: a status edited into a record is no word of deid's
        if stated.get(s, 0) != status.get(s, 0):
            found.append(Finding(0, "run-summary-mismatch", f"run.json counts {stated.get(s, 0)} {s} records, the manifest {status.get(s, 0)}"))
    if set(stated) - set(_STATUSES) or set(status) - set(_STATUSES):
        found.append(Finding(0, "run-summary-mismatch", "a status that deid does not write, in run.json's counts or a record"))
    if "reasons" in run_info and run_info["reasons"] != dict(reasons):
        found.append(Finding(0, "run-summary-mismatch", "run.json's counts by reason differ from the manifest's"))
    if profiles_differ:
        found.append(Finding(0, "run-summary-mismatch", "run.json's profile differs from its records'"))
    return found, n


def _pixel_mismatches(run_info: dict[str, Any], pixels: list[dict[str, Any]]) -> list[Finding]:
    """``run-summary-mismatch``: what ``run.json`` states of the images of its session (which images
    are scanned, ``pixels``; the mode, ``pixel_mode``; the devices) that the session's records
    (``pixels``: their ``pixel`` objects, the records after ``records_before_resume``) contradict: a record
    scanned where run.json states none are, not scanned for a rule run.json does not state
    (``pixels-none`` where it states ``all``), scanned in another mode, on another device. verify trusts
    run.json's ``pixels`` to load the detector on its workers."""
    rule, mode = run_info.get("pixels"), run_info.get("pixel_mode")
    scanned = [p for p in pixels if p.get("scanned")]
    why = Counter(str(p.get("reason")) for p in pixels if not p.get("scanned"))
    found: list[str] = []
    if scanned and ("pixels" in run_info and rule == "none" or "pixel_mode" in run_info and mode == "none"):
        found.append(f"run.json states no image scanned, {len(scanned)} records were")
    for reason, stated, expected in (("pixels-none", rule, "none"), ("pixel-mode-none", mode, "none"),
                                     ("triage-skip", rule, "triage")):
        if why.get(reason) and stated != expected:
            found.append(f"{why[reason]} records not scanned for a rule ({reason}) that run.json does not state")
    if "pixel_mode" in run_info and any(p.get("mode") != mode for p in scanned):
        found.append("records scanned in another pixel mode than run.json states")
    devices = sorted({str(p["device"]) for p in pixels if p.get("device")}) or ["none"]
    if "device" in run_info and run_info["device"] != devices:
        found.append("run.json's devices differ from its session's records'")
    return [Finding(0, "run-summary-mismatch", detail) for detail in found]


def verify_run(
    output_dir: Path,
    input_dir: Path,
    private_dir: Path,
    key: bytes | None,
    profile_spec: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    rescan: bool = True,
    device: str = "auto",
    quiet: bool = False,
) -> dict[str, Any]:
    """Run every check; returns the report (also written to ``OUTPUT/verify.json``). ``quiet``: the
    workers log errors only (``--quiet``)."""
    findings: list[Finding] = [Finding(p.line, "chain-broken", p.problem) for p in verify_chain(output_dir, key)]
    try:
        run_info = read_run_json(output_dir / RUN_NAME)
    except (OSError, ValueError) as exc:  # torn, edited, missing, over the bound: the records are still checked
        run_info = None
        findings.append(Finding(0, "run-summary-unreadable", f"run.json does not read as JSON ({type(exc).__name__})"))
    if run_info is not None and not isinstance(run_info, dict):
        findings.append(Finding(0, "run-summary-unreadable", "run.json holds no JSON object"))
    run_info = run_info if isinstance(run_info, dict) else {}
    used = run_info.get("profile") if isinstance(run_info.get("profile"), dict) else {}
    profile = _profile_to_judge_by(profile_spec, used, private_dir)
    if profile.sha256 != used.get("sha256"):  # findings are judged by this profile's rules, not the run's
        log.warning("verifying against profile %s (sha256 %s...); the run used %s (sha256 %s...)",
                    profile.name, profile.sha256[:12], used.get("name"), str(used.get("sha256"))[:12])
    # deid's own files beside the outputs, searched for each input's values (verify.json: this command's;
    # the manifest, which may be gigabytes: for all inputs' values at once, after them, by _in_manifest)
    own_files = tuple(str(output_dir / name) for name in sorted(_OWN_FILES - {"verify.json", MANIFEST_NAME})
                      if (output_dir / name).is_file() and not (output_dir / name).is_symlink())
    manifest, journal = output_dir / MANIFEST_NAME, private_dir / JOURNAL_NAME
    # streamed, twice: a run of millions of records is never held whole
    per_input: Counter[str] = Counter()
    entries = 0
    for i, j in enumerate(_json_lines(journal, "input"), start=1):
        entries += 1
        if j is None or not isinstance(j["input"], str):
            findings.append(Finding(i, "journal-line-unreadable", "a journal line that is no record"))
        else:
            per_input[j["input"]] += 1
    summary, records = _summary_mismatches(run_info, manifest)
    findings += summary
    if records != entries:
        findings.append(Finding(0, "journal-mismatch", f"{records} manifest records, {entries} journal lines"))
    for cand in walk_inputs(input_dir):
        n = per_input.pop(cand.rel, 0)
        if n != 1:
            findings.append(Finding(0, "input-records", f"an input has {n} records"))
    if per_input:
        findings.append(Finding(0, "records-without-input", f"{len(per_input)} journal entries name no current input"))
    del per_input
    recorded: set[str] = set()
    unreadable: list[Finding] = []

    def pairs() -> Iterator[_Pair]:
        """The written outputs, each once, with their inputs; the output itself is read on the worker."""
        for i, (rec, j) in enumerate(zip(_json_lines(manifest, "status"), _json_lines(journal, "input")), start=1):
            if rec is None or rec["status"] == "written" and not isinstance(rec.get("output_path"), str):
                unreadable.append(Finding(i, "manifest-line-unreadable", "a manifest line that is no record"))
                continue
            if rec["status"] != "written":  # its input's values are searched for in the manifest
                if j is not None and isinstance(j["input"], str):
                    yield str(input_dir / j["input"]), "", i, {}, "", None, None
                continue
            if rec["output_path"] in recorded:
                continue
            recorded.add(rec["output_path"])
            if j is None or not isinstance(j["input"], str):  # reported above: no input to judge it against
                continue
            yield (str(input_dir / j["input"]), str(output_dir / rec["output_path"]), i, rec.get("pixel") or {},
                   rec["output_path"], rec.get("output_sha256"), rec.get("input_sha256"))

    from .batch import chunks, pack

    packed = pack(profile)
    batches = chunks(pairs(), 16)
    salt = os.urandom(16)  # this command's: the keys of the inputs' values mean nothing after it
    gathered = _KeySet()

    def collect(result: tuple[list[Finding], np.ndarray, int]) -> None:
        findings.extend(result[0])
        gathered.add(result[1], result[2])

    if workers == 0:
        for batch in batches:
            collect(_check_batch(batch, packed, rescan, device, None, own_files, salt))
    else:
        from distributed import as_completed

        from .batch import dask_client
        from .prestart import verify_rescans

        with dask_client(workers, scheduler, device, detector=verify_rescans(run_info, rescan)) as client:
            # a few batches per worker in flight, not all of them: the scheduler holds each one until it is done
            window = 4 * max(1, len(client.scheduler_info().get("workers", {})))
            done = as_completed([client.submit(_check_batch, b, packed, rescan, device, quiet, own_files, salt, pure=False)
                                 for b in islice(batches, window)])
            for fut in done:
                collect(fut.result())
                fut.release()
                nxt = next(batches, None)
                if nxt is not None:
                    done.add(client.submit(_check_batch, nxt, packed, rescan, device, quiet, own_files, salt, pure=False))
    findings += unreadable
    findings += _in_manifest(manifest, gathered.keys(), gathered.most_words, salt)
    for top, dirs, files in os.walk(output_dir):  # once every record is read; links never followed
        for name in dirs + files:
            p = Path(top, name)
            rel = p.relative_to(output_dir).as_posix()
            if rel in recorded or rel in _OWN_FILES:
                continue
            if p.is_symlink():
                findings.append(Finding(0, "link-in-output", "a link in OUTPUT that no record names (not followed)"))
            elif name in files:
                findings.append(Finding(0, "output-without-record", "a file in OUTPUT that no record names"))
    findings.sort(key=lambda f: (f.line, f.kind, f.detail))
    checked = len(recorded) - sum(f.kind == "output-missing" for f in findings)
    report = {
        "schema_version": "1.0",
        "checked_outputs": checked,
        "records": records,
        "findings": [asdict(f) for f in findings],
        "counts": dict(Counter(f.kind for f in findings)),
        "ok": not findings,
        "rescan": rescan,
        "profile": {"name": profile.name, "version": profile.version, "sha256": profile.sha256},
        "run_profile_sha256": used.get("sha256"),
    }
    atomic_write_json(output_dir / "verify.json", report)
    log.info("verify: %d outputs checked, %d findings %s", checked, len(findings), report["counts"])
    return report
