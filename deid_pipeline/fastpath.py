"""Header-only fast path: de-identify a Part 10 file in one pass over its bytes, copying what is kept.

When no pixels are scanned, :func:`scan` reads the file meta with pydicom and walks the data set's
element headers (items included) into records, without building pydicom objects for them. The header
stage then runs on the records with the same rules, actions and counts as :mod:`tags`
(:class:`tags.Deidentifier`): an element removed or kept without reading its value never becomes a
pydicom object -- a kept one is copied with the header pydicom writes for a raw element -- and every
other element is converted by pydicom, changed by the same action and encoded by pydicom's
``write_data_element``. The output is byte for byte what the pydicom path writes.

Only what is provably the same takes this path; :func:`scan` returns None for anything else and the
caller reads the file with pydicom: a structure pydicom reads leniently or differently (a VR switch,
unsorted or repeated tags, trailing bytes, an undefined length other than a sequence or encapsulated
pixel data, an explicit UN that pydicom would re-type), any element whose conversion could fail (it
is converted here first), ambiguous VRs outside the top-level Image Pixel group, private elements a
profile keeps, mark elements already present, non-ASCII text that is kept (the character set would
change), encapsulated documents, DICOMDIRs, big files and non-standard pydicom settings.

The checks of the load stage (truncation, visual features, pixel plan, patient identity) run on
:attr:`Scanned.stub`, a pydicom data set holding the top-level elements they read, exactly as pydicom
reads them.
"""

from __future__ import annotations

import functools
import logging
import struct
from typing import TYPE_CHECKING, Any

from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import private_dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import ENCODED_VR, read_dataset, read_preamble
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.multival import MultiValue
from pydicom.valuerep import AMBIGUOUS_VR, EXPLICIT_VR_LENGTH_32

from . import actions, tags
from .profile import Profile
from .pseudonym import Pseudonymizer
from .types import HeaderResult

if TYPE_CHECKING:
    from .pixels import ScrubbedFrames

log = logging.getLogger(__name__)


class Ineligible(Exception):
    """The file takes the pydicom path."""


_EXPLICIT = struct.Struct("<HH2sH").unpack_from
_IMPLICIT = struct.Struct("<HHL").unpack_from
_UL = struct.Struct("<L")
_US = struct.Struct("<H")
_TAG = struct.Struct("<HH")
_VRS = {vr: vr.decode() for vr in ENCODED_VR}
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_AMBIGUOUS = frozenset(str(vr) for vr in AMBIGUOUS_VR)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_CHARSET = 0x00080005
_SOP_INSTANCE_UID = 0x00080018
_ENCAPSULATED_DOCUMENT = 0x00420011
_EXTENDED_OFFSET_TABLE = 0x7FE00001
#: Elements ``_mark`` writes: the fast path requires that none survives from the input.
_MARK_TAGS = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})
#: Top-level elements the load stage reads (truncation check, DICOMDIR and visual-feature checks,
#: pixel plan and frame count, patient identity, linkage row, triage rule, the file's own UIDs that a
#: class UID is compared with) besides groups 0028/7FE0.
_STUB_TAGS = frozenset({
    _CHARSET, 0x00080008, 0x00080016, 0x00080060, 0x00100010, 0x00100020, 0x00100021, 0x0020000D,
    _SOP_INSTANCE_UID, 0x0020000E, 0x00200052,  # the file's own UIDs (tags.own_uids)
})
_STUB_GROUPS = frozenset({0x0028, 0x7FE0})
#: Final values the finish stage reads from the stub (output name, the de-identified mark, file meta;
#: the Frame of Reference UID, read for tags.own_uids, so that no original value stays in the stub).
_FINAL_TAGS = (0x00080016, _SOP_INSTANCE_UID, 0x0020000D, 0x0020000E, 0x00200052, 0x00120062)
_STRING_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())


def _reading_defaults() -> bool:
    """pydicom reads and converts as the scanner assumes (its defaults)."""
    return (
        tags._pydicom_defaults()
        and pydicom_config.replace_un_with_known_vr
        and not pydicom_config.datetime_conversion
    )


class _Rec:
    """One element: where its value lies, its VR as pydicom resolves it, and what became of it."""

    __slots__ = ("tag", "vr", "hdr", "start", "stop", "end", "undefined", "items", "elem", "ref")

    def __init__(self, tag: int, vr: str, hdr: int, start: int, stop: int, undefined: bool, items: list[_Item] | None) -> None:
        self.tag, self.vr, self.hdr, self.start, self.stop, self.end = tag, vr, hdr, start, stop, stop
        self.undefined, self.items = undefined, items
        self.elem: DataElement | None = None  # the converted element, once converted
        self.ref: tags.ElementRef | None = None


class _Item:
    __slots__ = ("recs", "undefined")

    def __init__(self, recs: list[_Rec], undefined: bool) -> None:
        self.recs, self.undefined = recs, undefined


class Scanned:
    """A file the fast path handles: its records, and :attr:`stub` for the load-stage checks."""

    def __init__(self, data: bytes, ts: UID, stub: Dataset, recs: list[_Rec], charset: Any, write_charset: Any) -> None:
        self.data = data
        self.ts = ts
        self.implicit = ts.is_implicit_VR
        self.stub = stub
        self.recs = recs
        self.charset = charset  # python encodings values are decoded with (Dataset.original_character_set)
        self.write_charset = write_charset  # what the writer encodes the top level with
        self.body: bytes | None = None  # the encoded data set, once de-identified
        # encapsulated Pixel Data without its codestreams' metadata, and how many frames changed
        self.scrubbed_pixels: tuple[bytes, ScrubbedFrames] | None = None

    # ------------------------------------------------------------------ load stage

    def phi_terms(self, profile: Profile) -> frozenset[str]:
        """:func:`tags.collect_phi_terms` of the file."""
        terms: set[str] = set()
        self._terms(self.recs, profile, terms)
        return tags.usable_terms(terms)

    def _terms(self, recs: list[_Rec], profile: Profile, terms: set[str]) -> None:
        for rec in recs:
            ref = rec.ref
            assert ref is not None
            if ref.private_creator is not None:
                continue
            if rec.items is not None:
                for item in rec.items:
                    self._terms(item.recs, profile, terms)
                continue
            parse = tags.term_parser(profile, ref)
            if parse is not None:
                for v in tags._str_values(self._converted(rec)):
                    terms.update(parse(v))

    def _converted(self, rec: _Rec) -> DataElement:
        if rec.elem is None:
            rec.elem = _convert(self.data, rec, self.charset, self.implicit)
        return rec.elem

    # ------------------------------------------------------------------ finish stage

    def deidentify(self, profile: Profile, pseudo: Pseudonymizer, phi_terms: frozenset[str]) -> HeaderResult:
        """:func:`tags.deidentify_header` on the records: counts, and :attr:`body` encoded; the stub
        gets the final values of the elements the finish stage reads. Raises :class:`Ineligible` when
        the pydicom path is needed after all."""
        if tags._pydicom_defaults() is False:
            raise Ineligible("pydicom settings changed")
        ctx = tags.action_context(self.stub, profile, pseudo, phi_terms)
        visitor = tags.Deidentifier(profile, ctx)
        encodings = tags._dataset_encodings(self.stub)
        final: dict[int, DataElement | _Rec | None] = {}
        chunks = self._dataset(self.recs, profile, visitor, 0, encodings, self.write_charset, final)
        if visitor.non_ascii:
            raise Ineligible("the character set would change")
        temporal = tags._temporal_state(ctx.dates, profile.settings.dates)
        chunks.extend(_mark_elements(profile, temporal, self.implicit, _hashable(self.write_charset)))
        chunks.sort(key=lambda c: c[0])
        self.body = b"".join(c[1] for c in chunks)
        stub = self.stub
        for tag in _FINAL_TAGS:
            value = final.get(tag)
            if isinstance(value, _Rec):
                value = self._converted(value)
            if value is None:
                stub._dict.pop(BaseTag(tag), None)
            else:
                stub._dict[BaseTag(tag)] = value
        stub._dict[BaseTag(0x00120062)] = DataElement(0x00120062, "CS", "YES")
        return HeaderResult(action_counts=dict(sorted(visitor.counts.items())), phi_terms=phi_terms)

    def _dataset(
        self,
        recs: list[_Rec],
        profile: Profile,
        visitor: tags.Deidentifier,
        scope: int,
        encodings: tuple[str, ...],
        write_charset: Any,
        final: dict[int, Any] | None,
    ) -> list[tuple[int, bytes | memoryview]]:
        """The encoded elements of one data set, (tag, bytes), after the header stage."""
        data, view = self.data, memoryview(self.data)
        out: list[tuple[int, bytes | memoryview]] = []
        creators = 0
        for rec in recs:
            tag, ref = rec.tag, rec.ref
            assert ref is not None
            if tags.is_private_creator(tag):
                creators += 1  # dropped in leave(): no private element survives (checked in scan)
                continue
            code, applied = tags._decision(profile, ref, scope)
            if tag == _PIXEL_DATA and final is not None and self.scrubbed_pixels is not None:
                visitor.counts[applied] += 1  # kept (protected), without its codestreams' metadata
                head = _TAG.pack(tag >> 16, tag & 0xFFFF) + rec.vr.encode() + b"\x00\x00\xff\xff\xff\xff"
                out.append((tag, head + self.scrubbed_pixels[0] + _SEQUENCE_DELIMITER))
                continue
            elem = rec.elem
            if elem is None and rec.items is None:  # inert and unread
                value = view[rec.start : rec.stop] if rec.vr in tags._BYTES_VRS else data[rec.start : rec.stop]
                unread = visitor.unread(applied, ref, value)  # type: ignore[arg-type]
                if unread is actions.REMOVE:
                    continue
                if unread is actions.KEEP and tags.raw_write_is_exact(value, rec.vr, tag, encodings):  # type: ignore[arg-type]
                    visitor.counts[applied] += 1
                    out.append((tag, self._raw(view, rec)))
                    if final is not None and tag in _FINAL_TAG_SET:
                        final[tag] = rec
                    continue
                elem = self._converted(rec)
            if rec.items is not None:  # a sequence: its items are records
                elem = DataElement(tag, "SQ", [], is_undefined_length=rec.undefined)
                outcome = visitor.apply(code, elem, ref, scope)
                if outcome is actions.REMOVE:
                    continue
                if outcome is None:  # emptied
                    out.append((tag, _encode(elem, self.implicit, write_charset)))
                    continue
                item_charset = convert_encodings(write_charset)
                child = tags.child_scope(scope, applied, outcome, ref.keyword)
                items = [
                    (self._dataset(item.recs, profile, visitor, child, encodings, item_charset, None), item.undefined)
                    for item in rec.items
                ]
                out.append((tag, self._sequence(tag, rec.undefined, items)))
                continue
            value = elem.value
            outcome = visitor.apply(code, elem, ref, scope)
            if outcome is actions.REMOVE:
                continue
            if applied in _KEPT and elem.value is value and self._kept_exact(rec, elem.VR, encodings):
                out.append((tag, self._raw(view, rec)))  # kept as read: the same bytes as encoding it
            else:
                out.append((tag, _encode(elem, self.implicit, write_charset)))
            if final is not None and tag in _FINAL_TAG_SET:
                final[tag] = elem
        if creators:
            visitor.counts["X"] += creators
        return out

    def _kept_exact(self, rec: _Rec, vr: str, encodings: tuple[str, ...]) -> bool:
        """Whether a converted element kept unchanged encodes to its bytes as read (inert VRs only)."""
        if vr in tags._BYTES_VRS:
            return not (rec.stop - rec.start) % 2
        if rec.undefined:
            return False
        value = self.data[rec.start : rec.stop]
        return tags.inert_value(vr, value) and tags.raw_write_is_exact(value, vr, rec.tag, encodings)

    def _raw(self, view: memoryview, rec: _Rec) -> bytes | memoryview:
        """The element as pydicom writes it: tag, VR, length (undefined: and the delimiter), value as read."""
        if self.implicit or rec.vr not in _LONG_VRS or self.data[rec.hdr + 6 : rec.hdr + 8] == b"\x00\x00":
            return view[rec.hdr : rec.end]  # the header (and delimiter) as read are the ones pydicom writes
        length = b"\xff\xff\xff\xff" if rec.undefined else _UL.pack(rec.stop - rec.start)
        return _TAG.pack(rec.tag >> 16, rec.tag & 0xFFFF) + rec.vr.encode() + b"\x00\x00" + length + view[rec.start : rec.end]

    def _sequence(self, tag: int, undefined: bool, items: list[tuple[list[tuple[int, Any]], bool]]) -> bytes:
        """A sequence as pydicom's ``write_sequence`` writes it (item lengths recomputed)."""
        parts: list[Any] = []
        for chunks, item_undefined in items:
            body = b"".join(c[1] for c in chunks)
            if item_undefined:
                parts += [_ITEM_HEADER_UNDEFINED, body, _ITEM_DELIMITER]
            else:
                parts += [_ITEM_TAG, _UL.pack(len(body)), body]
        value = b"".join(parts)
        head = _TAG.pack(tag >> 16, tag & 0xFFFF) + (b"" if self.implicit else b"SQ\x00\x00")
        if undefined:
            return head + b"\xff\xff\xff\xff" + value + _SEQUENCE_DELIMITER
        return head + _UL.pack(len(value)) + value


_FINAL_TAG_SET = frozenset(_FINAL_TAGS)
_KEPT = frozenset({"K", "T"})  # applied codes whose unchanged value may be written as read
_ITEM_TAG = _TAG.pack(0xFFFE, 0xE000)
_ITEM_HEADER_UNDEFINED = _ITEM_TAG + b"\xff\xff\xff\xff"
_ITEM_DELIMITER = _TAG.pack(0xFFFE, 0xE00D) + b"\x00\x00\x00\x00"
_SEQUENCE_DELIMITER = _TAG.pack(0xFFFE, 0xE0DD) + b"\x00\x00\x00\x00"


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str) else tuple(value)


#: VRs pydicom writes with ``write_string`` (a ``str`` value, or a list of them): ASCII, padded.
_WRITE_STRING_VRS = frozenset("AE AS CS DA DT TM UI UR".split())
#: VRs pydicom writes with ``write_text``: each value encoded with the data set's character set.
_WRITE_TEXT_VRS = frozenset("LO LT SH ST UC UT".split())
#: Python codecs that encode ASCII text as itself, with no escape sequence before or after it.
_PLAIN_CODECS = frozenset(["iso8859", "latin_1", "ascii", "utf_8", "tis_620"] + [f"iso8859_{i}" for i in range(2, 17)])


def _encode(elem: DataElement, implicit: bool, charset: Any) -> bytes:
    """``elem`` as pydicom's ``write_data_element`` writes it.

    An ASCII string value (or list of them) of a string or text VR is encoded here, as pydicom's
    ``write_string`` / ``write_text`` would encode it; anything else goes through pydicom."""
    vr, value = elem.VR, elem.value
    if (vr in _WRITE_STRING_VRS or (vr in _WRITE_TEXT_VRS and _plain_charset(_hashable(charset)))) and not elem.is_undefined_length:
        if value is None:
            text = ""
        elif isinstance(value, str):
            text = value
        elif isinstance(value, (MultiValue, list, tuple)) and all(isinstance(v, str) for v in value):
            text = "\\".join(value)
        else:
            text = None
        if text is not None and text.isascii():
            data = text.encode("ascii")
            if len(data) % 2:
                data += b"\0" if vr == "UI" else b" "
            tag = elem.tag
            head = _TAG.pack(tag >> 16, tag & 0xFFFF)
            if implicit:
                return head + _UL.pack(len(data)) + data
            if vr in _LONG_VRS:
                return head + vr.encode() + b"\0\0" + _UL.pack(len(data)) + data
            if len(data) <= 0xFFFF:
                return head + vr.encode() + _US.pack(len(data)) + data
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_data_element(buf, elem, charset)
    return buf.getvalue()


@functools.lru_cache(maxsize=64)
def _plain_charset(charset: Any) -> bool:
    """Whether every value of a text VR is written in the first codec of ``charset``, and that codec
    writes ASCII as ASCII (pydicom's ``encode_string`` then adds no escape sequences to ASCII text)."""
    codecs = convert_encodings(charset if isinstance(charset, str) else list(charset))
    return bool(codecs) and codecs[0] in _PLAIN_CODECS


@functools.lru_cache(maxsize=64)
def _mark_elements(profile: Profile, temporal: str, implicit: bool, charset: Any) -> tuple[tuple[int, bytes], ...]:
    """The elements ``tags._mark`` adds, encoded (they depend on the profile and the temporal state only)."""
    ds = Dataset()
    tags._mark(ds, profile, temporal)
    charset = charset if isinstance(charset, str) else list(charset)
    return tuple((int(tag), _encode(ds[tag], implicit, charset)) for tag in sorted(ds.keys()))


def _convert(data: bytes, rec: _Rec, charset: Any, implicit: bool) -> DataElement:
    """The element as pydicom converts it (its VR resolved as pydicom's hook does).

    An ASCII value of a string or text VR (no escape sequence, a character set whose first codec
    reads ASCII as ASCII) is converted here, to the value pydicom's converter returns (its checks of
    the value only warn, and deid withholds warnings); anything else is converted by pydicom."""
    length = rec.stop - rec.start
    if length and not rec.undefined and rec.vr in _OWN_CONVERSION_VRS:
        raw = data[rec.start : rec.stop]
        value = _own_value(rec.vr, raw, charset)
        if value is not _PYDICOM:
            return DataElement(BaseTag(rec.tag), rec.vr, value, rec.start, False, already_converted=True)
    value = data[rec.start : rec.stop] if length else empty_value_for_VR(None if implicit else rec.vr, raw=True)
    raw = RawDataElement(BaseTag(rec.tag), rec.vr, _UNDEFINED if rec.undefined else length, value, rec.start, implicit, True)
    return convert_raw_data_element(raw, encoding=charset, ds=None)


_PYDICOM = object()  # "let pydicom convert it"
_SPLIT_STRING_VRS = frozenset("AS CS DA DT TM".split())  # pydicom's convert_string (no datetime conversion)
_SPLIT_TEXT_VRS = frozenset("LO SH UC".split())  # convert_text
_SINGLE_TEXT_VRS = frozenset("LT ST UT".split())  # convert_single_string
_OWN_CONVERSION_VRS = _SPLIT_STRING_VRS | _SPLIT_TEXT_VRS | _SINGLE_TEXT_VRS | {"AE", "UI"}


def _own_value(vr: str, raw: bytes, charset: Any) -> Any:
    """The value pydicom's converter for ``vr`` makes of the non-empty ``raw``, or ``_PYDICOM``."""
    if not raw.isascii() or b"\x1b" in raw:
        return _PYDICOM
    text = raw.decode("ascii")
    if vr in _SPLIT_STRING_VRS:
        if pydicom_config.datetime_conversion:
            return _PYDICOM
        items = text.rstrip(" \x00").split("\\")
        return items[0] if len(items) == 1 else MultiValue(str, items)
    if vr == "UI":
        items = text.rstrip("\x00 ").split("\\")
        return UID(items[0], pydicom_config.IGNORE) if len(items) == 1 else MultiValue(UID, items)
    if vr == "AE":
        items = [v.strip() for v in text.split("\\")]
        return items[0] if len(items) == 1 else MultiValue(str, items)
    first = charset if isinstance(charset, str) else (charset[0] if charset else default_encoding)
    if first not in _PLAIN_CODECS:
        return _PYDICOM
    if vr in _SINGLE_TEXT_VRS:
        return text.rstrip("\x00 ")
    items = [v.rstrip("\x00 ") for v in text.split("\\")]
    return items[0] if len(items) == 1 else MultiValue(str, items)


# --------------------------------------------------------------------------- scanning


def scan(data: bytes, profile: Profile) -> Scanned | None:
    """The records of a Part 10 file, when the fast path can handle it; else None (also on any
    unexpected error: the pydicom path then decides what becomes of the file)."""
    try:
        return _scan_file(data, profile)
    except Ineligible:
        return None
    except Exception as exc:  # noqa: BLE001 - never worse than the pydicom path
        log.debug("fast path not taken: %s", type(exc).__name__)
        return None


def _scan_file(data: bytes, profile: Profile) -> Scanned:
    import io

    if not _reading_defaults():
        raise Ineligible("pydicom settings")
    fp = io.BytesIO(data)
    try:
        preamble = read_preamble(fp, False)
        meta = FileMetaDataset(read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag >> 16 != 2))
        meta.set_original_encoding(False, True, default_encoding)
        for tag, raw in list(meta._dict.items()):  # the pydicom path converts the file meta: what could fail
            if not isinstance(raw, RawDataElement) or tags.inert_vr(meta, raw) is None:
                meta[tag]
    except Exception:
        raise Ineligible("file meta") from None
    if preamble is None or not meta._dict:
        raise Ineligible("no file meta")
    start = fp.tell()
    _check_meta_layout(data, start)
    ts = meta.get("TransferSyntaxUID")
    if not isinstance(ts, UID) or ts.is_private or not ts.is_transfer_syntax or not ts.is_little_endian:
        raise Ineligible("transfer syntax")
    if ts == DeflatedExplicitVRLittleEndian or start + 8 > len(data):
        raise Ineligible("deflated or empty")
    implicit = ts.is_implicit_VR
    if implicit and 0x40 < data[start + 4] < 0x5B and 0x40 < data[start + 5] < 0x5B:
        raise Ineligible("pydicom would switch to explicit VR")  # its check of the first element
    recs, end = _scan_dataset(data, start, len(data), implicit, False, 0)
    if end != len(data):
        raise Ineligible("trailing bytes")
    stub = Dataset({
        BaseTag(r.tag): _raw_element(data, r, implicit)
        for r in recs
        if (r.tag in _STUB_TAGS or r.tag >> 16 in _STUB_GROUPS) and r.items is None  # no check reads a sequence
    })
    stub.file_meta = meta
    stub.preamble = preamble
    stub.set_original_encoding(implicit, True, stub._character_set)
    charset = stub.original_character_set or stub._character_set
    encodings = tags._dataset_encodings(stub)
    if not tags._ascii_round_trips(encodings):
        raise Ineligible("character set")
    write_charset = stub.get("SpecificCharacterSet", default_encoding)
    scanned = Scanned(data, ts, stub, recs, charset, write_charset)
    _classify(scanned, recs, profile, 0, (), True)
    pixel_data = [r for r in recs if r.tag == _PIXEL_DATA]
    if pixel_data and pixel_data[0].undefined != ts.is_compressed:
        raise Ineligible("pixel data encoding does not match the transfer syntax")
    if pixel_data and not ts.is_compressed:
        _check_native_pixels(stub, data, pixel_data[0])
    sop_class = str(stub.get("SOPClassUID", "") or "")
    if sop_class in tags.ENCAPSULATED_SOP_CLASSES or _ENCAPSULATED_DOCUMENT in stub._dict or _ENCAPSULATED_DOCUMENT in {r.tag for r in recs}:
        raise Ineligible("document or DICOMDIR")
    if any(r.tag == tags.WAVEFORM_SEQUENCE for r in recs):
        raise Ineligible("waveforms (the load stage reads them for audio)")
    if tags.is_video(stub):
        raise Ineligible("video (the load stage looks for sound in it)")
    if "SOPClassUID" not in stub:
        raise Ineligible("no SOP Class UID")
    if pixel_data and ts.is_compressed:
        scanned.scrubbed_pixels = _scrubbed_pixels(stub, data, pixel_data[0], ts, recs)
    return scanned


def _check_native_pixels(stub: Dataset, data: bytes, rec: _Rec) -> None:
    """``Ineligible`` for native Pixel Data holding data past the image or bits outside Bits Stored
    (:func:`pixels.native_leftovers`), which the pydicom path cuts and clears."""
    from .pixels import native_leftovers

    with memoryview(data)[rec.start : rec.stop] as value:
        past, outside = native_leftovers(stub, value)
    if past:
        raise Ineligible("pixel data past the image (the pydicom path cuts it)")
    if outside:
        raise Ineligible("pixel bits outside Bits Stored (the pydicom path clears them)")


def _scrubbed_pixels(stub: Dataset, data: bytes, rec: _Rec, ts: UID, recs: list[_Rec]) -> tuple[bytes, ScrubbedFrames] | None:
    """Encapsulated frames without their comments, EXIF and the like and without frames past Number
    of Frames, as the pydicom path writes them (:func:`pixels.scrubbed_encapsulation`); None when there
    is nothing to take."""
    from .pixels import frame_count, frame_plane, scrubbed_encapsulation

    result = scrubbed_encapsulation(data[rec.start : rec.stop], ts, frame_count(stub) or 1, frame_plane(stub))
    if result is not None and any(r.tag == _EXTENDED_OFFSET_TABLE for r in recs):
        raise Ineligible("frames to rewrite beside an Extended Offset Table")
    return result


def _check_meta_layout(data: bytes, end: int) -> None:
    """The file meta is explicit VR little endian with known VRs, as pydicom read it."""
    pos = 132
    while pos < end:
        group, _elem, vr, length = _EXPLICIT(data, pos)
        name = _VRS.get(vr)
        if group != 2 or name is None:
            raise Ineligible("file meta layout")
        if name in _LONG_VRS:
            length = _UL.unpack_from(data, pos + 8)[0]
            pos += 12 + length
        else:
            pos += 8 + length
    if pos != end:
        raise Ineligible("file meta layout")


def _raw_element(data: bytes, rec: _Rec, implicit: bool) -> RawDataElement:
    """The RawDataElement pydicom's reader makes of ``rec``."""
    length = rec.stop - rec.start
    vr = None if implicit else rec.vr
    value = data[rec.start : rec.stop] if length else empty_value_for_VR(vr, raw=True)
    return RawDataElement(BaseTag(rec.tag), vr, _UNDEFINED if rec.undefined else length, value, rec.start, implicit, True)


def _scan_dataset(data: bytes, pos: int, end: int, implicit: bool, delimited: bool, depth: int) -> tuple[list[_Rec], int]:
    """Records of one data set from ``pos`` to ``end`` (an item with ``delimited``: to its item
    delimiter; ``depth``: items it is within); returns them and the position after the data set. Raises
    :class:`Ineligible` for anything pydicom reads differently or leniently, or nests past
    :data:`tags.MAX_SEQUENCE_DEPTH` (the pydicom path gives the reason)."""
    if depth > tags.MAX_SEQUENCE_DEPTH:
        raise Ineligible("nested too deep")
    recs: list[_Rec] = []
    last = -1
    while pos < end:
        if pos + 8 > end:
            raise Ineligible("truncated header")
        group, elem, length = _IMPLICIT(data, pos)
        if delimited and group == 0xFFFE and elem == 0xE00D:  # the item delimiter
            if length != 0:
                raise Ineligible("item delimiter length")
            return recs, pos + 8
        if implicit:
            vr = ""
            head = 8
        else:
            group, elem, vr_bytes, length = _EXPLICIT(data, pos)
            vr = _VRS.get(vr_bytes, "")
            if not vr:
                raise Ineligible("unknown VR")
            head = 8
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise Ineligible("truncated header")
                length = _UL.unpack_from(data, pos + 8)[0]
                head = 12
        tag = (group << 16) | elem
        if group < 0x0008 or group == 0xFFFE or tag <= last:
            raise Ineligible("tag order or group")
        last = tag
        start = pos + head
        sequence = vr == "SQ" or (implicit and _implicit_sq(tag))
        if length == _UNDEFINED:
            if sequence:
                items, after = _scan_items(data, start, end, implicit, True, depth)
                rec = _Rec(tag, "SQ", pos, start, after, True, items)
            else:
                rec = _encapsulated_pixel_data(data, tag, vr, pos, start, end)
        else:
            stop = start + length
            if stop > end:
                raise Ineligible("value beyond its data set")
            rec = _Rec(tag, vr, pos, start, stop, False, None)
            if sequence:
                rec.vr = "SQ"
                rec.items, _ = _scan_items(data, start, stop, implicit, False, depth)
        recs.append(rec)
        pos = rec.end
    if delimited:
        raise Ineligible("no item delimiter")
    return recs, pos


def _implicit_sq(tag: int) -> bool:
    return not (tag >> 16) & 1 and tags.public_dictionary_vr(tag) == "SQ"


def _encapsulated_pixel_data(data: bytes, tag: int, vr: str, pos: int, start: int, end: int) -> _Rec:
    """Undefined-length Pixel Data (explicit VR): its fragments, walked as pydicom's reader walks them."""
    if tag != _PIXEL_DATA or vr not in ("OB", "OW"):
        raise Ineligible("undefined length")
    p = start
    while True:
        if p + 8 > end:
            raise Ineligible("unterminated pixel data")
        item, length = _ITEM_HEAD(data, p)
        if item == 0xE0DDFFFE:  # (FFFE,E0DD), little endian
            if length != 0 or p == start:
                raise Ineligible("pixel data delimiter")
            rec = _Rec(tag, vr, pos, start, p, True, None)
            rec.end = p + 8
            return rec
        if item != 0xE000FFFE or p + 8 + length > end:
            raise Ineligible("pixel data fragments")
        p += 8 + length


_ITEM_HEAD = struct.Struct("<LL").unpack_from


def _scan_items(data: bytes, pos: int, end: int, implicit: bool, delimited: bool, depth: int) -> tuple[list[_Item], int]:
    """The items of a sequence value, to ``end`` or (``delimited``) to the sequence delimiter; returns
    them and the position after the sequence."""
    items: list[_Item] = []
    while True:
        if not delimited and pos == end:
            return items, pos
        if pos + 8 > end:
            raise Ineligible("truncated sequence")
        group, elem, length = _IMPLICIT(data, pos)
        tag = (group << 16) | elem
        if tag == _SEQUENCE_END and delimited:
            if length != 0:
                raise Ineligible("sequence delimiter length")
            return items, pos + 8
        if tag != _ITEM:
            raise Ineligible("not an item")
        if length == _UNDEFINED:
            recs, pos = _scan_dataset(data, pos + 8, end, implicit, True, depth + 1)
            items.append(_Item(recs, True))
        else:
            stop = pos + 8 + length
            if stop > end:
                raise Ineligible("item beyond its sequence")
            recs, after = _scan_dataset(data, pos + 8, stop, implicit, False, depth + 1)
            if after != stop:
                raise Ineligible("item length")
            items.append(_Item(recs, False))
            pos = stop


# --------------------------------------------------------------------------- classification


def _classify(scanned: Scanned, recs: list[_Rec], profile: Profile, depth: int, parents: tuple[int, ...], top_level: bool) -> None:
    """Resolve each element's VR and ref, convert every element pydicom's load would convert (so that
    one that fails sends the file to the pydicom path), and refuse what the fast path does not do."""
    data, implicit = scanned.data, scanned.implicit
    strings, bytes_vrs, never_inert, decision, ref_for = tags.inert_string_vrs(), tags._BYTES_VRS, tags._NEVER_INERT, tags._decision, tags.ref_for
    creators: dict[int, Any] = {}  # (group << 8 | block) -> the creator element's value
    for rec in recs:
        tag = rec.tag
        group, el = tag >> 16, tag & 0xFFFF
        private = group & 1
        if rec.items is None:
            if implicit:
                rec.vr = _implicit_vr(tag, creators)
            elif rec.vr == "UN" and _un_would_be_retyped(tag, rec, creators):
                raise Ineligible("explicit UN with a known VR")
            if rec.vr == "SQ":
                raise Ineligible("a sequence only its private creator reveals")
        creator: str | None = None
        if private:
            if 0x0010 <= el <= 0x00FF:
                value = _checked_convert(scanned, rec).value
                if not isinstance(value, str):
                    raise Ineligible("private creator value")
                creators[(group << 8) | el] = value
                creator = str(value or "").strip()
            elif el >= 0x1000:
                owner = creators.get((group << 8) | (el >> 8))
                creator = None if owner is None else str(owner or "").strip()
        rec.ref = ref = ref_for(tag, rec.vr, creator, depth, parents)
        if rec.items is not None:
            for item in rec.items:
                _classify(scanned, item.recs, profile, depth + 1, parents + (tag,), False)
            if private and not tags.is_private_creator(tag) and decision(profile, ref, 0)[1] != "X":
                raise Ineligible("private sequence kept")
            continue
        if private and not (0x0010 <= el <= 0x00FF) and decision(profile, ref, 0)[1] != "X":
            raise Ineligible("private element kept")
        if depth == 0 and tag in _MARK_TAGS and decision(profile, ref, 0)[1] != "X":
            raise Ineligible("mark element present")
        if depth == 0 and el in (0x0010, 0x3000) and 0x6000 <= group <= 0x601E and profile.settings.graphics == "clean":
            raise Ineligible("an overlay to scan or remove")  # pipeline._clean_overlays works on the data set
        vr = rec.vr
        if vr in _AMBIGUOUS or tag in never_inert:
            if not top_level or not (group in _STUB_GROUPS or tag == _CHARSET):
                raise Ineligible("ambiguous VR outside the stub")
            try:  # converted in the stub, with pydicom's bookkeeping, exactly as Dataset[tag] does
                rec.elem = scanned.stub[BaseTag(tag)]
            except Exception:
                raise Ineligible("conversion fails") from None
            if rec.elem.VR in _AMBIGUOUS:
                raise Ineligible("ambiguous VR unresolved")
            continue
        if vr in bytes_vrs or rec.stop == rec.start:
            continue  # converts to its bytes / to the empty value: nothing can fail
        value = data[rec.start : rec.stop]
        if vr in _STRING_VRS and (not value.isascii() or b"\x1b" in value) and decision(profile, ref, 0)[1] != "X":
            raise Ineligible("non-ASCII text kept")
        if not tags.inert_value(vr, value, strings):
            _checked_convert(scanned, rec)  # pydicom's load converts it and could fail: convert it here too
        # (an empty value converts to the empty value of its VR: nothing can fail)


def _checked_convert(scanned: Scanned, rec: _Rec) -> DataElement:
    if rec.elem is None:
        try:
            rec.elem = _convert(scanned.data, rec, scanned.charset, scanned.implicit)
        except Exception:
            raise Ineligible("conversion fails") from None
    return rec.elem


def _implicit_vr(tag: int, creators: dict[int, Any]) -> str:
    """The VR pydicom's ``raw_element_vr`` hook gives an implicit VR element."""
    group, el = tag >> 16, tag & 0xFFFF
    if not group & 1:
        vr = tags.public_dictionary_vr(tag)
        if vr is None:
            if el == 0:
                return "UL"
            raise Ineligible("unknown public tag")
        return vr
    if 0x0010 <= el <= 0x00FF:
        return "LO"
    if el & 0xFF00:
        creator = creators.get((group << 8) | (el >> 8))
        if creator is not None:
            try:
                return private_dictionary_VR(tag, creator)
            except KeyError:
                pass
    return "UN"


def _un_would_be_retyped(tag: int, rec: _Rec, creators: dict[int, Any]) -> bool:
    """Whether pydicom's hook gives an explicit UN element another VR on conversion."""
    if (tag >> 16) & 1:
        return _implicit_vr(tag, creators) != "UN"
    return rec.stop - rec.start < 0xFFFF and tags.public_dictionary_vr(tag) is not None
