"""Apply a profile to a data set: one visitor walks every element, sequences included.

:func:`walk` is the only recursion over a data set; :func:`collect_phi_terms`,
:func:`deidentify_header` and :func:`inspect_dataset` are visitors over it. For each element the
walk builds an :class:`~deid_pipeline.profile.ElementRef` (tag, VR, keyword, private creator, depth,
parent sequence tags), asks the profile for its :class:`Rule`, and :mod:`actions` does the rest.
The byte-level pass of :mod:`fastpath` applies the same per-element steps (:class:`Deidentifier`,
:func:`term_parser`) to the records it scans instead of a data set.

Protected, whatever the profile says: the Image Pixel module and what a decoder needs
(:data:`PROTECTED_KEYWORDS`), Specific Character Set, SOP Class UID, Referenced SOP Class UID; the
file meta group is rebuilt here (MediaStorageSOPInstanceUID = the new SOPInstanceUID, Implementation
fields ours, application entity titles and private information removed). Always removed: Icon Image
Sequence, group lengths, private creators whose block is left empty.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import re
import struct
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import config as pydicom_config
from pydicom.charset import decode_bytes, encode_string
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.hooks import hooks
from pydicom.hooks import raw_element_value as _pydicom_raw_element_value
from pydicom.hooks import raw_element_vr as _pydicom_raw_element_vr
from pydicom.tag import _LUT_DESCRIPTOR_TAGS, BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID
from pydicom.valuerep import TEXT_VR_DELIMS, PersonName

from . import actions
from .clean import (MIN_INFLECTED_NAME, MIN_SPLIT_DIGITS, NAME_PUNCTUATION, NOT_DIGIT_BYTES, SPLIT_DIGIT_SEPARATORS,
                    may_hold_uid, may_match_a_pattern, name_stems, plain_punctuation, remove_terms, split_digit_terms)
from .errors import FileError
from .profile import (GRAPHICS_CLEAN, KEEP_LIST, SAFE_PRIVATE, UNLISTED_KEEP, ElementRef, Profile, Rule, meaning_vr, public_dictionary_vr,
                      tag_str)
from .pseudonym import Pseudonymizer, patient_identity
from .types import PHOTOMETRIC_SAMPLES, PIXEL_DATA_TAGS, HeaderResult

log = logging.getLogger(__name__)

#: Image Pixel module, multi-frame and modality/VOI essentials: needed to decode and display pixels.
PROTECTED_KEYWORDS = frozenset(
    {
        "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
        "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration", "PixelAspectRatio",
        "SmallestImagePixelValue", "LargestImagePixelValue",
        "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
        "BluePaletteColorLookupTableDescriptor", "AlphaPaletteColorLookupTableDescriptor",
        "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData", "AlphaPaletteColorLookupTableData",
        "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
        "SegmentedBluePaletteColorLookupTableData", "SegmentedAlphaPaletteColorLookupTableData",
        "ICCProfile", "ColorSpace", "PixelData", "FloatPixelData", "DoubleFloatPixelData",
        "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "NumberOfFrames", "FrameIncrementPointer",
        "PixelPaddingValue", "PixelPaddingRangeLimit", "RescaleIntercept", "RescaleSlope",
        "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction", "LossyImageCompression",
        "LossyImageCompressionRatio", "LossyImageCompressionMethod", "BurnedInAnnotation",
        "SpecificCharacterSet", "SOPClassUID", "ReferencedSOPClassUID",
    }
)
#: Protected only at the top level (the same keywords inside an item describe something else).
_TOP_LEVEL_ONLY = PROTECTED_KEYWORDS - {"ReferencedSOPClassUID"}
ICON_IMAGE_SEQUENCE = 0x00880200
#: Items within items a data set may nest (a structured report nests tens at most): deeper, a file is
#: quarantined with that reason, the same on every path and whatever the caller's stack (pydicom reads and
#: writes each level by recursion: at ~190 levels a worker's read failed, at 300 a reader of the output).
MAX_SEQUENCE_DEPTH = 100
ENCAPSULATED_DOCUMENT = 0x00420011
ENCAPSULATED_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
        "1.2.840.10008.5.1.4.1.1.104.2",  # Encapsulated CDA
        "1.2.840.10008.5.1.4.1.1.104.3",  # Encapsulated STL
        "1.2.840.10008.5.1.4.1.1.104.4",  # Encapsulated OBJ
        "1.2.840.10008.5.1.4.1.1.104.5",  # Encapsulated MTL
    }
)
#: Sound recordings: a dictation says the patient's name aloud and a voice is a biometric identifier
#: (HIPAA's voice prints); no stage listens to one. Basic Voice Audio and General Audio Waveform objects,
#: and in any other object a waveform whose samples are mu-law or A-law (audio encodings).
AUDIO_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.9.4.1", "1.2.840.10008.5.1.4.1.1.9.4.2"})
WAVEFORM_SEQUENCE = 0x54000100
_AUDIO_SAMPLES = frozenset({"MB", "AB"})
#: Transfer syntaxes whose Pixel Data is a video stream: MPEG-2, MPEG-4 AVC/H.264, HEVC/H.265, their
#: fragmentable forms (PS3.5 8.2.5-8.2.8 let such a stream carry sound beside the pictures)
VIDEO_TRANSFER_SYNTAX = re.compile(r"1\.2\.840\.10008\.1\.2\.4\.10[0-9](\.1)?\Z")
#: A sound stream in a program or transport stream: the start of a PES packet of an MPEG audio stream
#: (0xC0-0xDF) or of private stream 1 (AC-3, LPCM). No elementary video stream holds these bytes:
#: MPEG-2 video start codes stop at 0xB8, an H.264 / HEVC NAL header byte is below 0x80.
_PES_AUDIO = re.compile(rb"\x00\x00\x01[\xbd\xc0-\xdf]")
#: An MP4 / QuickTime track whose handler is sound (``hdlr`` box: version and flags, pre-defined,
#: handler type); in an MP4 the NAL units are length-prefixed, so the PES pattern means nothing there
_MP4_SOUND = re.compile(rb"hdlr[\s\S]{8}soun")
#: Free-text elements of overlays (60xx): removed even when graphics are cleaned.
_GRAPHICS_TEXT = frozenset({0x0022, 0x1500, 0x4000, 0x2500, 0x0003})
#: Bytes C cannot read to clean (a camera's Maker Note, a PTP Frame Origin Timestamp, a signed
#: Certified Timestamp): the VR's dummy, as D writes it. Overlay Data is scanned by the pixel stage.
_OPAQUE_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_OVERLAY_DATA = 0x3000
_META_REMOVED = (0x00020016, 0x00020017, 0x00020018, 0x00020026, 0x00020027, 0x00020028, 0x00020100, 0x00020102)

#: Keywords whose values identify someone wherever they appear (besides every PN and date).
IDENTIFYING_KEYWORDS = frozenset(
    {
        "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "AccessionNumber", "StudyID",
        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
        "DeviceSerialNumber", "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator",
        "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID", "AdmissionID",
        "PatientInsurancePlanCodeSequence", "MilitaryRank", "BranchOfService", "RegionOfResidence",
        "CountryOfResidence", "PatientBirthDate", "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest", "ServiceEpisodeID", "VisitComments",
        "PersonTelephoneNumbers", "PersonAddress", "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers", "InstitutionDepartmentTypeCodeSequence",
        # a trial's subject and site, e-mail and telephone as telecom text, where the patient stays
        "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialSiteName",
        "PatientTelecomInformation", "PersonTelecomInformation", "CurrentPatientLocation",
        "PatientInstitutionResidence",
        # a device's own ID and UDI, and a health plan's number: (M) and (I) of Safe Harbor, terms like the
        # rest (C on one of them empties it; a user's row that cleans every LO cleans them out of the text)
        "DeviceID", "UniqueDeviceIdentifier", "InsurancePlanIdentification",
    }
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_NAMES = ("JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER", "OCTOBER",
                "NOVEMBER", "DECEMBER")


@dataclass(frozen=True)
class InspectRow:
    """One element of a dry run, for ``deid inspect``. ``value`` only with --show-values."""

    path: str
    tag: str
    keyword: str
    vr: str
    action: str
    origin: str
    value: str | None = None


# --------------------------------------------------------------------------- the walk

Visit = Callable[[Dataset, DataElement, ElementRef, str], bool]
Leave = Callable[[Dataset, int], None]


def _normal_vr(vr: str | None) -> str:
    return (vr or "UN").split(" or ")[0]


#: Kept values of numbers and codes are read against their VR before they are written: a device that
#: writes the patient's name into Slice Thickness (DS), an MRN into Series Number (IS) or Modality (CS),
#: or text into Smallest Image Pixel Value (US) would have it kept by a profile that trusts the VR
_VR_CHARS = {
    "DS": re.compile(rb"[0-9+\-.eE \\]*[\0 ]*\Z").match,
    "IS": re.compile(rb"[0-9+\- \\]*[\0 ]*\Z").match,
    # a code's repertoire is upper case, digits, space and "_"; lower case, "-" and "." are common
    # deviations (a Body Part Examined "Chest") and kept: a name's "^", "," or "'" is not
    "CS": re.compile(rb"[A-Za-z0-9 _\-.\\]*[\0 ]*\Z").match,
}
_READ_WHEN_KEPT = frozenset(_VR_CHARS) | frozenset(actions.BINARY_NUMBER_WIDTH)
_VM_RANGE = re.compile(r"(\d+)(?:-(\d+)?(n)?)?\Z")


@functools.lru_cache(maxsize=4096)
def _value_counts(tag: int) -> tuple[int, int | None, int] | None:
    """(least, most or None for any, step) of the values the dictionary's VM allows ``tag``; None when
    it does not know the tag or its VM ("2-2n": 2, None, 2; "1-3": 1, 3, 1)."""
    from pydicom.datadict import dictionary_VM

    try:
        vm = dictionary_VM(tag)
    except KeyError:
        return None
    m = _VM_RANGE.match(vm.strip())
    if m is None:
        return None
    least = int(m.group(1))
    if m.group(3):
        return least, None, least
    return least, int(m.group(2)) if m.group(2) else least, 1


def _value_bytes(elem: DataElement) -> bytes:
    """A converted element's value as :func:`invalid_for_vr` reads bytes (little endian; text as ASCII,
    anything else as ``?``)."""
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    values = [v for v in (value if isinstance(value, (list, MultiValue)) else [value]) if v is not None]
    if elem.VR in actions.BINARY_NUMBER_WIDTH:
        try:
            if elem.VR == "AT":
                return b"".join(struct.pack("<HH", int(v) >> 16, int(v) & 0xFFFF) for v in values)
            fmt = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}[elem.VR]
            return struct.pack(f"<{len(values)}{fmt}", *values)
        except (struct.error, TypeError, ValueError):  # not numbers of the VR: judged as the text they are
            pass
    return "\\".join(str(v) for v in values).encode("ascii", "replace")


@functools.lru_cache(maxsize=64)
def _known_charset(value: str) -> bool:
    """Whether a Specific Character Set value is one pydicom decodes by (as ``pydicom.charset`` reads
    it: a defined term, one spelled as it corrects, ``ISO IR 100``, or a Python codec's name), or empty."""
    import codecs

    from pydicom.charset import python_encoding

    term = value.strip(" \0")
    if not term or term in python_encoding:
        return True
    if re.match("^ISO[^_]IR", term):
        return "ISO_IR" + term[6:] in python_encoding
    if re.match("^(?=ISO.2022.IR.)(?!ISO 2022 IR )", term):
        return "ISO 2022 IR " + term[12:] in python_encoding
    try:
        codecs.lookup(term)
    except LookupError:
        return False
    return True


def invalid_for_vr(ref: ElementRef, raw: bytes) -> str | None:
    """Why a kept value is not a value of its VR (text where a number or a code belongs, bytes for a
    number count the dictionary does not allow), or None; only DS, IS, CS and binary numbers are read."""
    check = _VR_CHARS.get(ref.vr)
    if check is not None:
        return None if check(bytes(raw)) else f"characters a {ref.vr} never holds"
    width = actions.BINARY_NUMBER_WIDTH.get(ref.vr)
    if width is None or not raw:
        return None
    if len(raw) % width:
        return f"{len(raw)} bytes for {ref.vr} values of {width}"
    if ref.vr == "AT" and ref.private_creator is None:  # each value a tag the dictionary knows, or a private one
        for i in range(0, len(raw) - 3, 4):  # (either byte order: the caller's bytes are as the file wrote them)
            if not any(group & 1 or not elem or keyword_for_tag(group << 16 | elem)
                       for group, elem in (struct.unpack_from("<HH", raw, i), struct.unpack_from(">HH", raw, i))):
                return "a tag no dictionary knows"
    counts = _value_counts(ref.tag) if ref.private_creator is None else None
    n = len(raw) // width
    if counts is not None and (n < counts[0] or (counts[1] is not None and n > counts[1]) or n % counts[2]):
        return f"{n} {ref.vr} values where the dictionary allows {counts[0]}" + ("" if counts[1] == counts[0] else "+")
    return None


def is_private_creator(tag: int) -> bool:
    return bool((tag >> 16) & 1) and 0x0010 <= (tag & 0xFFFF) <= 0x00FF


_REFS: dict[tuple[int, str | None, str | None, int, tuple[int, ...]], ElementRef] = {}
_CACHE_LIMIT = 100_000


@functools.lru_cache(maxsize=_CACHE_LIMIT)
def _keyword(tag: int) -> str:
    return keyword_for_tag(tag) or ""


@functools.lru_cache(maxsize=_CACHE_LIMIT)
def _tag_str_cached(tag: int) -> str:
    return tag_str(tag)


def _element(ds: Dataset, tag: int) -> DataElement | None:
    """``ds.get(tag)``, without pydicom's per-call overhead when the element is already converted."""
    elem = ds._dict.get(tag)  # type: ignore[call-overload]
    if elem is None or isinstance(elem, DataElement):
        return elem
    return ds.get(BaseTag(tag))


# --------------------------------------------------------------------------- raw elements
#
# pydicom reads every element as a RawDataElement (tag, VR, undecoded bytes) and converts it on first
# access. Most elements are removed or kept unchanged, so the walk converts only what a visitor reads or
# changes. An element may stay raw only when converting it later cannot fail and touches nothing but
# the element ("inert", :func:`inert_vr`), so that a file fails to parse exactly as it did when every
# element was converted up front; it is written raw (its bytes copied by pydicom's writer) only when
# pydicom's own conversion and re-encoding would give back the same bytes (:func:`kept_raw_is_exact`).

#: Converted to bytes as they are.
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Converted with struct.unpack: inert when the length is a whole number of values.
_NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}
#: Decoded with the default encoding (every byte decodes), split and stripped; never raise.
_DEFAULT_ENCODING_VRS = frozenset({"AE", "AS", "CS", "UI", "UR"})
#: Decoded with the data set's character set; decoding never raises outside RAISE mode.
_CHARSET_VRS = frozenset({"LO", "SH", "UC", "ST", "LT", "UT"})
_ESC = 0x1B
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: Converted with pydicom's bookkeeping (character set, pixel data, ambiguous VRs), never left raw.
_NEVER_INERT = frozenset({0x00080005, *PIXEL_DATA_TAGS})
_ASCII_SAMPLE = bytes(b for b in range(0x80) if b != _ESC)


@functools.lru_cache(maxsize=8)
def _inert_string_vrs(datetime_conversion: bool, ds_numpy: bool, ds_decimal: bool) -> frozenset[str]:
    """String VRs whose conversion is inert under these pydicom settings."""
    vrs = set(_DEFAULT_ENCODING_VRS)
    if not datetime_conversion:
        vrs |= {"DA", "DT", "TM"}  # plain strings; DA/DT/TM objects may raise
    if not (ds_numpy or ds_decimal):
        vrs.add("DS")  # DSfloat: a bad number falls back to a string, never raises
    return frozenset(vrs)


def _pydicom_defaults() -> bool:
    """Whether pydicom converts raw elements with its own hooks and lenient settings (what
    :func:`inert_vr` reasons about)."""
    return (
        hooks.raw_element_vr is _pydicom_raw_element_vr
        and hooks.raw_element_value is _pydicom_raw_element_value
        and not hooks.raw_element_kwargs
        and pydicom_config.data_element_callback is None
        and pydicom_config.settings.reading_validation_mode != pydicom_config.RAISE
    )


def inert_vr(ds: Dataset, raw: RawDataElement) -> str | None:
    """The VR pydicom gives ``raw`` when converting it cannot fail and changes nothing else; else None.

    Sequences, private creators, pixel data, the character set, ambiguous VRs, PN and AT, numbers of
    a wrong length, IS holding anything but digits, signs and separators, and text holding escape
    sequences are never inert. The VR is the one pydicom's ``raw_element_vr`` hook computes.
    """
    tag = raw.tag
    value = raw.value
    if (
        value is None
        or raw.length == _UNDEFINED_LENGTH
        or tag in _NEVER_INERT
        or ((tag >> 16) & 1 and 0x0010 <= (tag & 0xFFFF) <= 0x00FF)
        or not _pydicom_defaults()
    ):
        return None
    vr = raw.VR
    if vr is None and not (tag >> 16) & 1:  # implicit, public: the dictionary's VR, as the hook does
        vr = public_dictionary_vr(tag)
    if vr is None or vr == "UN":
        data: dict[str, Any] = {}
        hooks.raw_element_vr(raw, data, ds=ds)
        if raw.VR is not None and data["VR"] != raw.VR:  # an explicit UN that conversion makes known
            return None
        vr = data["VR"]
    return vr if inert_value(vr, value) else None


def inert_value(vr: str, value: bytes, strings: frozenset[str] | None = None) -> bool:
    """Whether pydicom's conversion of ``value`` as ``vr`` cannot fail (under :func:`_pydicom_defaults`,
    for an element that is no sequence, private creator, pixel data or character set). ``strings``:
    :func:`inert_string_vrs`, when the caller has it."""
    if vr in _BYTES_VRS or vr in _CHARSET_VRS and _ESC not in value:
        return True
    size = _NUMBER_SIZES.get(vr)
    if size is not None:
        return len(value) % size == 0
    if vr == "IS":
        return not pydicom_config.use_IS_numpy and _IS_CANNOT_RAISE.fullmatch(value) is not None
    return vr in (strings or inert_string_vrs())


def inert_string_vrs() -> frozenset[str]:
    """The string VRs whose conversion cannot fail under pydicom's current settings."""
    return _inert_string_vrs(pydicom_config.datetime_conversion, pydicom_config.use_DS_numpy, pydicom_config.use_DS_decimal)


#: IS values of these bytes convert with int() or fail with ValueError (pydicom then falls back to a
#: string); a float() overflow (``9...9.0``, ``1e999``) would raise instead.
_IS_CANNOT_RAISE = re.compile(rb"[0-9+\- \\\x00]*")


def convert_inert(ds: Dataset, raw: RawDataElement) -> DataElement:
    """Convert an inert raw element of ``ds`` in place, exactly as ``ds[tag]`` would, and return it."""
    tag = raw.tag
    elem = convert_raw_data_element(raw, encoding=ds.original_character_set or ds._character_set, ds=ds)
    if (tag >> 16) & 1:  # as Dataset.__setitem__ does
        creator_tag = (tag & 0xFFFF0000) | ((tag & 0xFFFF) >> 8)
        if creator_tag != tag and creator_tag in ds._dict:
            elem.private_creator = ds[creator_tag].value
    ds._dict[tag] = elem
    return elem


@functools.lru_cache(maxsize=64)
def _ascii_round_trips(encodings: tuple[str, ...]) -> bool:
    """Whether pydicom decodes and re-encodes ASCII text (no escape) unchanged in ``encodings``."""
    text = _ASCII_SAMPLE.decode("ascii")
    try:
        return decode_bytes(_ASCII_SAMPLE, list(encodings), TEXT_VR_DELIMS) == text and encode_string(text, list(encodings)) == _ASCII_SAMPLE
    except Exception:
        return False


def _dataset_encodings(ds: Dataset) -> tuple[str, ...]:
    charset = ds.original_character_set or ds._character_set  # as Dataset.__getitem__ decodes
    return (charset,) if isinstance(charset, str) else tuple(charset)


def kept_raw_is_exact(ds: Dataset, raw: RawDataElement, vr: str) -> bool:
    """Whether writing the inert ``raw`` of ``ds`` unconverted gives the bytes pydicom writes after
    converting it (:func:`raw_write_is_exact`)."""
    return raw_write_is_exact(raw.value, vr, raw.tag, ds)


def raw_write_is_exact(value: bytes, vr: str, tag: int, ds: Dataset | tuple[str, ...]) -> bool:
    """Whether the inert ``value`` written as it is gives the bytes pydicom writes after converting it.

    pydicom strips trailing spaces and NULs (per value for LO/SH/UC, leading spaces too for AE, DS, IS
    and UI values) and pads to even length (UI with a NUL, text with a space, bytes with a NUL); numbers
    are unpacked and packed again (FL is left out: a signalling NaN would not survive). Text must be
    ASCII so that no character set change can alter it; LO/SH/UC/ST/LT/UT also need a character set
    (of ``ds``, or the encodings given) that decodes and encodes ASCII unchanged. Conservative: False
    means "convert it".
    """
    if vr in _BYTES_VRS:
        return not len(value) % 2
    if vr in _NUMBER_SIZES:
        return vr != "FL" and tag not in _LUT_DESCRIPTOR_TAGS
    if not value.isascii():
        return False
    stripped = value.rstrip(b"\x00 ")
    if vr in ("UI", "AE", "DS", "IS"):
        if value != stripped + (b"\x00" if vr == "UI" else b" ") * (len(stripped) % 2):
            return False
        return _CONTROL_OR_SPACE.search(stripped) is None
    if value != stripped + b" " * (len(stripped) % 2):
        return False
    if vr in ("CS", "DA", "DT", "TM"):
        return True
    if vr in _CHARSET_VRS:
        if vr in ("LO", "SH", "UC") and (b" \\" in stripped or b"\x00\\" in stripped):
            return False  # each value is stripped on its own
        return _ascii_round_trips(ds if isinstance(ds, tuple) else _dataset_encodings(ds))
    return False  # UR: stripped of any whitespace; converted


_CONTROL_OR_SPACE = re.compile(rb"[\x00-\x20]")


def written_encoding(ds: Dataset) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) of the transfer syntax in ``ds.file_meta``, which the writer uses;
    None when it names no public transfer syntax pydicom knows."""
    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    if not value:
        return None
    uid = UID(str(value).strip("\x00 "))
    if uid.is_private or not uid.is_transfer_syntax:
        return None
    return uid.is_implicit_VR, uid.is_little_endian


def element_ref(
    ds: Dataset, elem: DataElement | RawDataElement, depth: int, parents: tuple[int, ...], vr: str | None = None
) -> ElementRef:
    """What a rule can match on; the private creator is looked up in the element's own data set.

    ``vr`` is the VR of a raw element (:func:`inert_vr`). Refs are immutable and interned per (tag, VR,
    creator, depth, parents).
    """
    tag = int(elem.tag)
    group, el = tag >> 16, tag & 0xFFFF
    creator: str | None = None
    if group & 1:
        if 0x0010 <= el <= 0x00FF:
            creator = str(elem.value or "").strip()
        elif el >= 0x1000:
            owner = _element(ds, (group << 16) | (el >> 8))
            creator = str(owner.value or "").strip() if owner is not None else None
    return ref_for(tag, elem.VR if vr is None else vr, creator, depth, parents)


def ref_for(tag: int, vr: str | None, creator: str | None, depth: int, parents: tuple[int, ...]) -> ElementRef:
    """The interned :class:`ElementRef` of an element (``creator``: its block's private creator)."""
    key = (tag, vr, creator, depth, parents)
    ref = _REFS.get(key)
    if ref is None:
        ref = ElementRef(
            tag=tag,
            vr=meaning_vr(tag, _normal_vr(vr)),
            keyword="" if (tag >> 16) & 1 else _keyword(tag),
            private_creator=creator,
            depth=depth,
            parents=parents,
        )
        if len(_REFS) > _CACHE_LIMIT:
            _REFS.clear()
        _REFS[key] = ref
    return ref


def _log_unreadable(tag: int, raw: RawDataElement) -> None:
    """Log an element removed as unreadable: its tag only when the public dictionary knows it, else where
    its value starts, since a malformed file's "tag" may be 4 bytes of a value (text "ZQXI": (515A,4958))."""
    if _keyword(tag):
        log.warning("unreadable element %s removed", tag_str(tag))
    else:
        log.warning("unreadable element removed (value at byte %d; its tag is withheld: not in the public "
                    "dictionary, it may be a value's bytes)", raw.value_tell)


def walk(
    ds: Dataset,
    visit: Visit,
    leave: Leave | None = None,
    depth: int = 0,
    parents: tuple[int, ...] = (),
    prefix: str | None = "",
    lazy: bool = False,
) -> None:
    """Call ``visit(container, element, ref, path)`` for every element at every depth.

    ``visit`` may change or delete the element; it returns True to walk the items of a (still present)
    sequence. ``leave(container, depth)`` runs after each data set's own elements. With ``lazy`` an
    inert raw element (:func:`inert_vr`) reaches ``visit`` unconverted; :func:`convert_inert`
    converts it. ``prefix=None``: no paths are built (``path`` is ``""``).
    """
    elements = ds._dict
    path = ""
    for tag in list(elements.keys()):
        elem = elements.get(tag)
        if elem is None:  # deleted by an earlier visit
            continue
        if prefix is not None:
            path = prefix + _tag_str_cached(tag)
        vr = None
        if not isinstance(elem, DataElement):  # still raw: convert it now unless it may stay raw
            vr = inert_vr(ds, elem) if lazy else None
            if vr is None:
                try:
                    elem = ds[tag]
                except Exception:  # a value pydicom cannot convert: it goes, whatever it said
                    _log_unreadable(int(tag), elem)
                    del ds[tag]
                    continue
        ref = element_ref(ds, elem, depth, parents, vr)
        if not visit(ds, elem, ref, path):
            continue
        elem = elements.get(tag)
        if elem is None or not isinstance(elem, DataElement):  # gone, or raw (never a sequence)
            continue
        if elem.VR == "SQ" and elem.value:
            for i, item in enumerate(elem.value):
                walk(item, visit, leave, depth + 1, parents + (int(tag),), None if prefix is None else f"{path}[{i}].", lazy)
    if leave is not None:
        leave(ds, depth)


# --------------------------------------------------------------------------- rules


def is_protected(ref: ElementRef) -> bool:
    """Whether ``ref`` is an element the image or the file cannot do without (:data:`PROTECTED_KEYWORDS`)."""
    return ref.keyword in PROTECTED_KEYWORDS and (ref.depth == 0 or ref.keyword not in _TOP_LEVEL_ONLY)


def rule_for(profile: Profile, ref: ElementRef) -> Rule:
    """The profile's rule with deid's fixed overrides (icons, command elements, protected modules,
    documents, graphics)."""
    if ref.tag == ICON_IMAGE_SEQUENCE:
        return Rule("X", "deid:icon-image")
    if ref.tag in PIXEL_DATA_TAGS and ref.depth:  # an image in a sequence item, which no stage scans
        return Rule("X", "deid:nested-image")
    if ref.tag >> 16 == 0x0000:  # a command element (a DIMSE message's) has no place in a file (PS3.10 7.1)
        return Rule("X", "deid:command-element")
    if is_protected(ref):
        return Rule("K", "deid:protected")
    if (ref.tag & 0xFFFF) == 0:
        return Rule("X", "deid:group-length")
    if ref.tag == ENCAPSULATED_DOCUMENT and profile.settings.encapsulated_documents == "remove":
        return Rule("X", "deid:encapsulated-document")
    rule = profile.rule_for(ref)
    group, elem = ref.tag >> 16, ref.tag & 0xFFFF
    overlay = 0x6000 <= group <= 0x60FF and not group & 1
    if overlay and elem in _GRAPHICS_TEXT and (rule.action == "C" or rule.origin == GRAPHICS_CLEAN):
        return Rule("X", rule.origin + "+graphics-text")  # an Overlay Label the table does not list, too
    if rule.action != "C":
        return rule
    if 0x5000 <= group <= 0x50FF and not group & 1:  # curves: data, audio (a voice), labels; none scanned
        return Rule("X", rule.origin + "+curve-not-scanned")
    if ref.vr in _OPAQUE_VRS and not (overlay and elem == _OVERLAY_DATA):
        return Rule("D", rule.origin + "+opaque-bytes")
    return rule


#: Scopes of a sequence's items (flags): inside an X/Z/U* reference sequence, UIDs are replaced; inside
#: a sequence the profile cleans (C), free text and names the profile keeps only as unlisted are cleaned;
#: inside one it replaces with a dummy (D: a Person Identification Code Sequence, whose Code Value is a
#: staff number and Code Meaning a name), text kept only as unlisted or by the keep list is a dummy too,
#: coded identities included
UID_SCOPE, CLEAN_SCOPE, DUMMY_SCOPE = 1, 2, 4
#: ... except in the D sequences whose content the table lists element by element (SR content, graphic
#: annotations: a Concept Name's Code Meaning there is the document's structure, not an identity)
_LISTED_CONTENT = frozenset({"ContentSequence", "GraphicAnnotationSequence"})
#: VRs cleaned inside a CLEAN_SCOPE sequence when unlisted (a Code Meaning "Protocol for <name>"), and
#: elsewhere kept without the file's own identifying values (T) when kept only as unlisted or by the keep
#: list; the coded identities stay as they are (clean would take ``121071`` or ``18748-4`` for a number)
_CLEANED_IN_SCOPE = frozenset("LO LT PN SH ST UC UT".split())
_CODE_IDENTITY = frozenset({"CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "LongCodeValue"})
_DUMMIED_IN_SCOPE = _CLEANED_IN_SCOPE | {"UR"}  # a URN Code Value too
#: ... and the product that made the image, which T leaves too (a vendor's test data names its site
#: after the vendor: "TOSHIBA_MEC" would become "MEC")
_PRODUCT_IDENTITY = frozenset({"Manufacturer", "ManufacturerModelName", "SoftwareVersions"})
_DEFAULT_KEEPS = frozenset({UNLISTED_KEEP, KEEP_LIST})
#: UIDs an unlisted element holds that name a kind, not an instance (a SOP class, a transfer syntax, a
#: coding scheme, a context group, a mapping resource, the creating software, a template): kept as they
#: are. Any other unlisted UID (a Multi-frame Source SOP Instance UID, a Target Frame of Reference UID,
#: a Retrieve Location UID) is replaced with the file's other UIDs where the profile replaces them.
_KIND_UID_KEYWORDS = frozenset(
    {"CodingSchemeUID", "ContextUID", "MappingResourceUID", "CreatorVersionUID", "SegmentationTemplateUID"}
)


def _names_a_kind(keyword: str) -> bool:
    return keyword in _KIND_UID_KEYWORDS or "SOPClass" in keyword or "TransferSyntax" in keyword


_ALNUM_RUNS = re.compile(rb"[a-z0-9]+").findall
#: a term of punctuation alone: no run of a value's letters and digits is part of it
_NO_RUN = re.compile(rb"(?:^|\0)[^a-z0-9\0]{2,}(?=\0|$)").search
#: a term whose letters and digits stand alone ("J. D."): a value's one-character runs may be part of it
_INITIALS_ONLY = re.compile(rb"(?:^|\0)[^a-z0-9\0]*[a-z0-9](?:[^a-z0-9\0]+[a-z0-9])*[^a-z0-9\0]*(?=\0|$)").search


@functools.lru_cache(maxsize=256)
def _term_text(terms: frozenset[str]) -> tuple[bytes, bool] | None:
    """The file's terms lower-cased and joined by NULs, and whether one of them is initials only; None
    when one is not ASCII. Built with C-level joins: it runs once a file, over ~100 terms."""
    text = "\0".join(terms).lower()
    if not text.isascii():
        return None
    joined = text.encode()
    if _NO_RUN(joined):  # a term of punctuation alone: no run of the value tells
        return None
    return joined, _INITIALS_ONLY(joined) is not None


def _whole_run_in(run: bytes, text: bytes) -> bool:
    """Whether ``run`` (letters and digits) stands in ``text`` (:func:`_term_text`) as a whole run of a
    term, no letter or digit beside it: ``ct`` in ``1ct1`` is not (a find per place: a set of the runs
    cost every file ~70 us more than these few finds)."""
    i = text.find(run)
    while i >= 0:
        j = i + len(run)
        if not text[i - 1 : i].isalnum() and not text[j : j + 1].isalnum():
            return True
        i = text.find(run, i + 1)
    return False


@functools.lru_cache(maxsize=256)
def _stem_bytes(terms: frozenset[str]) -> tuple[bytes, ...]:
    """The name parts :func:`clean.name_stems` finds with letters after them, as ASCII bytes (a value
    whose runs start with none of them holds none of those forms)."""
    return tuple(p.encode() for p in name_stems(terms)[1] if p.isascii() and p.isalpha())  # "o'brien": its pieces


_SPLIT_SEPARATOR_BYTES = SPLIT_DIGIT_SEPARATORS.encode()


@functools.lru_cache(maxsize=256)
def _number_bytes(terms: frozenset[str]) -> tuple[bytes, ...]:
    """The file's numbers :func:`clean.split_digits_in` finds with their digits split, as ASCII bytes (a
    value whose bytes, without those separators, hold none of them holds none of those forms)."""
    return tuple(t.encode() for t in split_digit_terms(terms))


@functools.lru_cache(maxsize=_CACHE_LIMIT)
def _decision(profile: Profile, ref: ElementRef, scope: int) -> tuple[str, str]:
    """(code, applied code) for one element: the rule, UIDs inside an X/Z/U* sequence replaced, unlisted
    text inside a cleaned sequence cleaned, inside a dummy one a dummy (``scope``: :data:`UID_SCOPE`, ...), text
    kept only as unlisted or by the keep list kept without the file's own identifying values (T), an
    unlisted UID of an instance replaced where the profile replaces UIDs (U), an unlisted date treated
    as the listed dates are (C, following ``settings.dates``) unless the profile keeps those."""
    rule = rule_for(profile, ref)
    code = rule.action
    if (scope & DUMMY_SCOPE and code == "K" and rule.origin in _DEFAULT_KEEPS and ref.vr in _DUMMIED_IN_SCOPE
            and ref.private_creator is None):
        return "D", "D"
    if scope & UID_SCOPE and ref.vr == "UI" and code != "X" and ref.keyword != "ReferencedSOPClassUID":
        code = "U"
    if (code == "K" and rule.origin in _DEFAULT_KEEPS and ref.vr in _CLEANED_IN_SCOPE
            and ref.keyword not in _CODE_IDENTITY and ref.private_creator is None):
        if scope & CLEAN_SCOPE and rule.origin == UNLISTED_KEEP:
            code = "C"
        elif ref.keyword not in _PRODUCT_IDENTITY and profile.settings.kept_text_terms == "remove":
            code = "T"
    elif (code == "K" and rule.origin == UNLISTED_KEEP and ref.vr == "UI" and not _names_a_kind(ref.keyword)
          and _replaces_uids(profile)):
        code = "U"  # a Multi-frame Source SOP Instance UID is an instance's UID: replaced as that one is
    elif (code == "K" and rule.origin == UNLISTED_KEEP and ref.vr in actions.DATE_VRS
          and not _keeps_dates(profile)):
        code = "C"  # a Study Update DateTime is a date of the study: removed, shifted or cut to the year
    elif code == "K" and rule.origin == SAFE_PRIVATE:  # a safe private element is safe in kind, not in value
        if ref.vr == "UI" and _replaces_uids(profile):
            code = "U"  # an "Analyzed Series UID" is the series' own UID: replaced as that one is
        elif ref.vr in _CLEANED_IN_SCOPE and profile.settings.kept_text_terms == "remove":
            code = "T"
    return code, actions.resolve(code, ref)


@functools.lru_cache(maxsize=64)
def _keeps_dates(profile: Profile) -> bool:
    """Whether ``profile`` keeps the study's dates as they are (``retain-long-full-dates``): unlisted
    dates follow."""
    return rule_for(profile, ElementRef(0x00080020, "DA", "StudyDate", None, 0, ())).action == "K"


@functools.lru_cache(maxsize=64)
def _replaces_uids(profile: Profile) -> bool:
    """Whether ``profile`` replaces instance UIDs (not ``retain-uids``): private UIDs it keeps follow."""
    return rule_for(profile, ElementRef(0x00080018, "UI", "SOPInstanceUID", None, 0, ())).action != "K"


def child_scope(scope: int, applied: str, outcome: Any, keyword: str) -> int:
    """The scope of the items of the sequence ``keyword`` walked in ``scope``, whose applied code is
    ``applied`` and whose :meth:`Deidentifier.apply` outcome is ``outcome``."""
    return (scope | (UID_SCOPE if outcome is actions.UID_REFS else 0) | (CLEAN_SCOPE if applied == "C" else 0)
            | (DUMMY_SCOPE if applied == "D" and keyword not in _LISTED_CONTENT else 0))


def _str_values(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None:
        return []
    if isinstance(value, (list, MultiValue)):
        return [str(v) for v in value if v is not None]
    if isinstance(value, (bytes, bytearray)):
        return []
    return [str(value)]


def _is_non_ascii(value: Any) -> bool:
    if isinstance(value, (list, MultiValue)):
        return any(_is_non_ascii(v) for v in value)
    if isinstance(value, (str, PersonName)):
        return not str(value).isascii()
    return False


# --------------------------------------------------------------------------- PHI terms


def date_variants(value: str) -> set[str]:
    """A DA (or the date of a DT) in the formats people type and devices burn in."""
    digits = value.strip().replace(".", "").replace("-", "")[:8]
    try:
        d = _dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return set()
    y, yy, m, dd, mon = f"{d.year:04d}", f"{d.year % 100:02d}", f"{d.month:02d}", f"{d.day:02d}", _MONTHS[d.month - 1]
    th = f"{d.day}{_ordinal_suffix(d.day)}"
    out = {y + m + dd, f"{y}-{m}-{dd}", f"{y}/{m}/{dd}", f"{y}.{m}.{dd}", f"{yy}-{m}-{dd}", f"{yy}/{m}/{dd}"}
    for year in (y, yy):
        for sep in "/.-":
            out |= {f"{m}{sep}{dd}{sep}{year}", f"{dd}{sep}{m}{sep}{year}"}
            out |= {f"{d.month}{sep}{d.day}{sep}{year}", f"{d.day}{sep}{d.month}{sep}{year}"}
        out.add(f"{dd}{mon}{year}")
        for name in (mon, _MONTH_NAMES[d.month - 1]):  # NOV, NOVEMBER (any case: terms match so)
            for day in (dd, str(d.day), th):
                out |= {f"{day}-{name}-{year}", f"{day} {name} {year}", f"{name} {day}, {year}", f"{name} {day} {year}",
                        f"{name}-{day}-{year}"}
    for name in (mon, _MONTH_NAMES[d.month - 1]):
        out |= {f"{y}{name}{dd}", f"{y}-{name}-{dd}", f"{y} {name} {dd}"}
    return out


def _ordinal_suffix(day: int) -> str:
    return "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _name_terms(value: str) -> set[str]:
    """A PN value's terms: each group as written and with spaces for ``^``, its parts, its components
    run together ("ZQXSURNAMEZQXGIVEN", the given name first too), a part with an apostrophe or a hyphen
    also without it and each of its pieces. A one-part name is also written with a ``^`` after it,
    which marks it a name (:func:`clean.name_stems`). A name with typographic punctuation ("O’BRIEN",
    "SMITH–JONES") has those terms with ASCII punctuation too (:func:`clean.plain_punctuation`)."""
    out = set()
    for group in {g for v in (value, plain_punctuation(value)) for g in v.split("=")}:
        whole = group.strip("^ ")
        if whole:
            out.add(whole)
            out.add(" ".join(p for p in group.split("^") if p).strip())
        components = [c.strip() for c in group.split("^") if c.strip()]
        if len(components) >= 2:
            out |= {"".join(components), components[1] + components[0]}
        elif components and len(whole) >= MIN_INFLECTED_NAME:
            out.add(whole + "^")
        for part in group.replace("^", " ").replace(",", " ").split():
            if len(part.strip(".")) >= 2:
                out.add(part.strip("."))
            pieces = [p for p in NAME_PUNCTUATION.split(part.strip(".")) if p]
            if len(pieces) > 1:  # "O'BRIEN" is also written "OBRIEN"; "SMITH-JONES" as "SMITH", "JONES"
                out |= {p for p in pieces if len(p) >= 2} | {"".join(pieces), " ".join(pieces)}
    if not value.isascii():  # "MÜLLER^JÖRG" is also written "Mueller", "Muller", "Joerg", "Jorg"
        out |= {form for term in out for form in _ascii_forms(term)}
    return out


#: Letters a name is also written without (after their accents are dropped): one ASCII letter or two
_ONE_LETTER = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D",
                             "ı": "i", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "þ": "th", "Þ": "TH"})
#: ... and the two letters German, Scandinavian and Dutch spelling give some of them
_TWO_LETTERS = str.maketrans({"ä": "ae", "Ä": "AE", "ö": "oe", "Ö": "OE", "ü": "ue", "Ü": "UE", "ø": "oe",
                              "Ø": "OE", "å": "aa", "Å": "AA", "ĳ": "ij", "Ĳ": "IJ"})


def _ascii_forms(term: str) -> set[str]:
    """The ASCII spellings of a term with accented or special letters: accents dropped ("Muller"), and
    umlauts and the like written out ("Mueller", "Jorgensen"/"Joergensen"); none for an ASCII term or
    where letters would remain that have no ASCII form (Cyrillic, Greek, CJK: their own bytes are searched)."""
    if term.isascii():
        return set()
    out = set()
    for spelt in (term, term.translate(_TWO_LETTERS)):
        plain = "".join(c for c in unicodedata.normalize("NFKD", spelt) if not unicodedata.combining(c))
        plain = plain.translate(_ONE_LETTER)
        if plain.isascii() and plain != term:
            out.add(plain)
    return out


def _stripped(value: str) -> tuple[str]:
    return (value.strip(),)


def collect_phi_terms(ds: Dataset, profile: Profile) -> frozenset[str]:
    """Identifying values of this file *before* any change: names (and their parts), IDs, dates in
    common formats, accession, institution. In memory only; used by ``clean`` and the pixel stage."""
    terms: set[str] = set()

    def visit(container: Dataset, elem: DataElement | RawDataElement, ref: ElementRef, path: str) -> bool:
        if ref.private_creator is not None:
            return False
        if ref.vr == "SQ":
            return True
        parse = term_parser(profile, ref)
        if parse is not None:  # else the value is not read: a raw element stays raw
            for v in _str_values(convert_inert(container, elem) if elem.is_raw else elem):
                terms.update(parse(v))
        return False

    walk(ds, visit, prefix=None, lazy=True)
    return usable_terms(terms)


def usable_terms(terms: set[str]) -> frozenset[str]:
    """The collected terms :mod:`clean` and the pixel stage use (two characters, one alphanumeric); one
    with typographic punctuation also with ASCII punctuation (:func:`clean.plain_punctuation`), as clean
    reads the text."""
    usable = frozenset(t for t in terms if len(t) >= 2 and _ALNUM.search(t))
    joined = "".join(usable)  # one test of them all: most files' terms are ASCII
    if joined.isascii() and "`" not in joined:
        return usable
    return usable | {plain_punctuation(t) for t in usable}


#: One character ``str.isalnum`` accepts: ``\w`` is exactly those and the underscore (``re`` docs).
_ALNUM = re.compile(r"[^\W_]")


@functools.lru_cache(maxsize=_CACHE_LIMIT)
def term_parser(profile: Profile, ref: ElementRef) -> Callable[[str], Any] | None:
    """How :func:`collect_phi_terms` turns a value of a public, non-sequence element into terms; None
    when it does not read the element."""
    if ref.vr == "PN":
        return _name_terms_cached
    if ref.vr in ("DA", "DT"):
        if ref.keyword != "PatientBirthDate" and rule_for(profile, ref).action == "K":
            return None
        return _date_variants_cached
    if ref.keyword in _ID_KEYWORDS:
        return _id_terms_cached
    if ref.keyword in IDENTIFYING_KEYWORDS:
        return _stripped
    return None


#: Identifiers people also write without their letters or with a space or dash before the digits.
_ID_KEYWORDS = frozenset({"PatientID", "OtherPatientIDs", "AccessionNumber", "MedicalRecordLocator", "AdmissionID",
                          "ServiceEpisodeID", "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
                          "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest",
                          "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID"})
#: An identifier's letters, then its run of digits (5 at least: shorter runs are any number).
_ID_PARTS = re.compile(r"([A-Za-z]+)[\s\-_#:]*(\d{5,})")


@functools.lru_cache(maxsize=4096)
def _id_terms_cached(value: str) -> frozenset[str]:
    """An identifier as written, and where it is letters then 5 or more digits (``MRN884213``) also the
    digits alone and the two parts apart (``884213``, ``MRN 884213``, ``MRN-884213``)."""
    value = value.strip()
    out = {value}
    m = _ID_PARTS.fullmatch(value)
    if m is not None:
        letters, digits = m.groups()
        out |= {digits, f"{letters} {digits}", f"{letters}-{digits}", f"{letters}{digits}"}
    return frozenset(out)


@functools.lru_cache(maxsize=4096)
def _name_terms_cached(value: str) -> frozenset[str]:
    return frozenset(_name_terms(value))


@functools.lru_cache(maxsize=4096)
def _date_variants_cached(value: str) -> frozenset[str]:
    return frozenset(date_variants(value))


# --------------------------------------------------------------------------- de-identification


class Deidentifier:
    """The visitor of :func:`deidentify_header` (and the per-element steps of the byte-level pass in
    :mod:`fastpath`): one rule, one action, one count per element."""

    def __init__(self, profile: Profile, ctx: actions.ActionContext) -> None:
        self.profile = profile
        self.ctx = ctx
        self.counts: Counter[str] = Counter()
        self.scopes: dict[int, int] = {}  # id() of a sequence item -> its scope flags (UID_SCOPE, ...)
        self.non_ascii = False
        self.max_age = getattr(profile.settings, "max_age_years", None)
        self.raw_encoding: tuple[bool, bool] | None = None  # raw elements in it may be written raw
        self.patterns = profile.settings.kept_text_patterns == "remove"

    def visit(self, ds: Dataset, elem: DataElement | RawDataElement, ref: ElementRef, path: str) -> bool:
        if is_private_creator(ref.tag):
            return False  # kept or dropped in leave(), once its block is known
        scope = self.scopes.get(id(ds), 0)
        code, applied = _decision(self.profile, ref, scope)
        if elem.is_raw:  # inert: removed or kept without reading it when X/K need nothing of the value
            unread = self.unread(applied, ref, elem.value)
            if unread is actions.REMOVE:
                del ds[ref.tag]
                return False
            if (
                unread is actions.KEEP
                and (elem.is_implicit_VR, elem.is_little_endian) == self.raw_encoding
                and kept_raw_is_exact(ds, elem, ref.vr)  # ASCII text: non_ascii stays as it is
            ):
                self.counts[applied] += 1
                return False
            elem = convert_inert(ds, elem)
        outcome = self.apply(code, elem, ref, scope)
        if outcome is actions.REMOVE:
            del ds[ref.tag]
            return False
        if outcome is not None:  # a sequence whose items are walked
            child = child_scope(scope, applied, outcome, ref.keyword)
            if child:
                self.scopes.update((id(item), child) for item in elem.value or ())
        return outcome is not None

    def kept_value_fails(self, ref: ElementRef, raw: bytes) -> bool:
        """Whether a value K keeps must go (True: removed) because it is no value of its VR
        (:func:`invalid_for_vr`), is a code (CS) holding one of the file's identifying values, or is a
        Specific Character Set no codec knows (the text was read as something else: its names may
        not be found). An element the image or file needs (:func:`is_protected`) is not removed:
        the file is quarantined, ``invalid-header-value``, naming the element, never the value."""
        why = invalid_for_vr(ref, raw)
        if why is None and ref.vr == "CS":
            text = bytes(raw).decode("ascii", "replace")
            if ref.tag == 0x00080005:
                why = None if all(_known_charset(v) for v in text.split("\\")) else "a character set no codec knows"
            elif ref.tag == 0x00280004 and not ref.depth:
                why = None if text.strip(" \0") in PHOTOMETRIC_SAMPLES else "a Photometric Interpretation no reader knows"
            elif (self._may_hold_term(bytes(raw), inflected=False)
                  and remove_terms(text, self.ctx.phi_terms, inflected=False) != text):  # a code: whole names only
                why = "one of the file's identifying values"
        if why is None:
            return False
        if is_protected(ref):
            raise FileError("invalid-header-value", f"{ref.keyword or tag_str(ref.tag)} holds {why}")
        return True

    def _may_hold_term(self, raw: bytes, inflected: bool = True) -> bool:
        """Whether an ASCII value may hold one of the file's terms (True where that cannot be told):
        one of its runs of letters and digits is a whole run of a term (a term found as a whole word spans
        whole runs of the value, each of them one of the term's), its digits (split by
        :data:`clean.SPLIT_DIGIT_SEPARATORS` or not) hold one of the file's numbers, or, with
        ``inflected``, one of its runs starts with a name's part that is found with letters after it
        (:func:`clean.name_stems`)."""
        found = _term_text(self.ctx.phi_terms)
        if found is None or not raw.isascii():
            return True
        text, initials = found
        runs = _ALNUM_RUNS(raw.lower())
        if any(_whole_run_in(run, text) for run in runs if initials or len(run) > 1):
            return True
        if len(raw.translate(None, NOT_DIGIT_BYTES)) >= MIN_SPLIT_DIGITS:  # digits enough for a number of the file's
            numbers = _number_bytes(self.ctx.phi_terms)
            if numbers and any(n in raw.translate(None, _SPLIT_SEPARATOR_BYTES) for n in numbers):
                return True  # a number written a digit at a time ("9 9 8 8 7 7 6 6"): runs of one character
        stems = _stem_bytes(self.ctx.phi_terms) if inflected else ()
        return bool(stems) and any(run.startswith(stems) for run in runs)

    def terms_absent(self, raw: bytes) -> bool:
        """Whether an ASCII value, as read, holds none of the file's identifying values nor a UID the
        profile replaces nor (``kept_text_patterns: remove``) what a pattern could match (``T`` keeps it as read); False where that cannot be told from the bytes
        (non-ASCII value or term). A term found as a whole word spans whole runs of letters and digits
        of the value, each of them one of the term's: a value none of whose runs is a run of a term holds none."""
        if not raw.isascii() or (self.ctx.replaces_uids and may_hold_uid(raw)):
            return False
        if self.patterns and may_match_a_pattern(raw.decode("ascii")):
            return False  # T takes what the patterns find out of it too
        return not self._may_hold_term(raw)

    def unread(self, applied: str, ref: ElementRef, raw: bytes | None) -> Any:
        """For an element whose value is not read yet (``raw``, its bytes): REMOVE (counted) when its X
        needs nothing of the value, KEEP (not counted) when its K may keep it unread, or its T (the bytes
        hold none of the file's terms: :meth:`terms_absent`), else None (convert it, :meth:`apply`)."""
        if ref.vr in actions.DATE_VRS or ref.vr == "AS":
            return None  # dates are counted by value, ages capped
        if applied == "X" or (applied == "K" and raw is not None and ref.vr in _READ_WHEN_KEPT
                              and self.kept_value_fails(ref, raw)):
            self.counts["X"] += 1
            return actions.REMOVE
        if applied == "K" and raw is not None and ref.keyword in _CLASS_UID_KEYWORDS and self._holds_own_uid(raw):
            return None  # a Study Instance UID where a class belongs: read, replaced (apply)
        if applied == "K" or (applied == "T" and raw is not None and self.terms_absent(raw)):
            return actions.KEEP
        return None

    def _holds_own_uid(self, raw: bytes) -> bool:
        """Whether a UI value's bytes hold one of the file's own UIDs (:func:`own_uids`)."""
        own = self.ctx.own_uids
        return bool(own) and any(v in own for v in _uid_values(bytes(raw).decode("ascii", "replace")))

    def apply(self, code: str, elem: DataElement, ref: ElementRef, scope: int) -> Any:
        """Apply ``code`` to ``elem`` (its value changed in place) and count it. Returns REMOVE, KEEP for a
        sequence whose items are walked, UID_REFS for one whose items are walked in the UID scope, or
        None."""
        applied, outcome = actions.apply(code, elem, ref, self.ctx)
        if (applied == "K" and ref.vr in _READ_WHEN_KEPT and elem.value not in (None, "", b"")
                and self.kept_value_fails(ref, _value_bytes(elem))):
            applied, outcome = "X", actions.REMOVE
        elif applied == "K" and ref.vr == "UI" and ref.keyword in _CLASS_UID_KEYWORDS and self.ctx.own_uids:
            replaced = actions.own_uids_replaced(elem, self.ctx)
            if replaced is not None:  # the file's own UID where a class belongs: replaced as that UID is
                applied, outcome = "U", replaced
        self.counts[applied] += 1
        if outcome is actions.REMOVE:
            return actions.REMOVE
        if outcome is actions.KEEP or outcome is actions.UID_REFS:
            if ref.vr == "SQ":
                return actions.UID_REFS if outcome is actions.UID_REFS or scope & UID_SCOPE else actions.KEEP
            if ref.vr == "AS" and elem.value:  # the element's meaning: Patient's Age written as LO too
                elem.value = actions.cap_age(elem.value, self.max_age)
            self.non_ascii = self.non_ascii or _is_non_ascii(elem.value)
            return None
        if ref.vr == "SQ":
            elem.value = Sequence(outcome or [])
            return None
        if ref.vr == "AS" and outcome:
            outcome = actions.cap_age(outcome, self.max_age)
        elem.value = outcome
        self.non_ascii = self.non_ascii or _is_non_ascii(outcome)
        return None

    def unused_creators(self, keys: list[int]) -> list[int]:
        """The private creators among ``keys`` (one data set's tags) whose block holds no element."""
        creators = [t for t in keys if is_private_creator(t)]
        if not creators:
            return creators
        used = {(t >> 16, (t & 0xFFFF) >> 8) for t in keys if (t >> 16) & 1 and (t & 0xFFFF) >= 0x1000}
        return [t for t in creators if (t >> 16, t & 0xFF) not in used]

    def leave(self, ds: Dataset, depth: int) -> None:
        """Drop private creators whose block no longer holds any element."""
        for tag in self.unused_creators(list(ds.keys())):
            del ds[tag]
            self.counts["X"] += 1


def _temporal_state(dates: actions.DateStats, mode: str) -> str:
    if dates.shifted:
        return "MODIFIED"
    if dates.kept:
        return "UNMODIFIED"
    if dates.removed:
        return "REMOVED"
    return "MODIFIED" if mode == "shift" else "REMOVED"


def _check_encapsulated(ds: Dataset, profile: Profile) -> None:
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if ENCAPSULATED_DOCUMENT in ds or sop_class in ENCAPSULATED_SOP_CLASSES:
        if profile.settings.encapsulated_documents == "quarantine":
            raise FileError(
                "encapsulated-document",
                "an encapsulated document (PDF, CDA or 3D model) that the profile quarantines",
            )


def holds_audio(ds: Dataset, pixel_data: Any = None) -> bool:
    """Whether ``ds`` holds a sound recording: an audio object (:data:`AUDIO_SOP_CLASSES`), a waveform
    of mu-law or A-law samples, or a video whose stream carries sound (:func:`video_holds_sound`).
    ``pixel_data``: a file positioned at the Pixel Data value, read there instead of ``ds.PixelData``
    (a value left in its file stays there)."""
    if str(ds.get("SOPClassUID", "") or "") in AUDIO_SOP_CLASSES:
        return True
    if is_video(ds) and "PixelData" in ds and video_holds_sound(ds.PixelData if pixel_data is None else pixel_data):
        return True
    waveforms = ds.get(WAVEFORM_SEQUENCE)
    if waveforms is None or waveforms.VR != "SQ" or not waveforms.value:
        return False
    return any(str(item.get("WaveformSampleInterpretation", "") or "").strip().upper() in _AUDIO_SAMPLES
               for item in waveforms.value)


def is_video(ds: Dataset) -> bool:
    """Whether ``ds``'s transfer syntax is a video one (:data:`VIDEO_TRANSFER_SYNTAX`)."""
    ts = getattr(getattr(ds, "file_meta", None), "get", lambda *_: None)("TransferSyntaxUID")
    return bool(VIDEO_TRANSFER_SYNTAX.match(str(ts or "")))


def video_holds_sound(pixel_data: Any) -> bool:
    """Whether encapsulated video ``pixel_data`` holds a sound stream: an MP4 track with a sound
    handler, or an audio PES packet in a program or transport stream. Searched fragment by fragment, a
    fragment's last bytes carried into the next (a start code split by an item header is found); what
    does not split into items is searched as it is."""
    pattern, tail = None, b""
    for fragment in _video_fragments(pixel_data):
        if pattern is None:
            pattern = _MP4_SOUND if fragment[4:8] == b"ftyp" else _PES_AUDIO
        if pattern.search(tail + fragment[:16]) or pattern.search(fragment):
            return True
        tail = fragment[-15:]
    return False


def _video_fragments(pixel_data: Any) -> Iterator[bytes]:
    """The fragments of encapsulated ``pixel_data`` (bytes, or a file positioned at the value) past its
    Basic Offset Table, one at a time; where the items stop parsing, the bytes as they are (all of
    them, or a file's rest in blocks)."""
    from pydicom.encaps import generate_fragments

    items = generate_fragments(pixel_data)
    try:
        next(items, None)  # the Basic Offset Table
        yield from items
    except Exception:  # noqa: BLE001 - not (or no longer) items
        if isinstance(pixel_data, (bytes, bytearray, memoryview)):
            yield bytes(pixel_data)
        else:
            yield from iter(lambda: pixel_data.read(1 << 24), b"")


def _mark(ds: Dataset, profile: Profile, temporal: str) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"deid {profile.name} {profile.version}"[:64]
    items = []
    for scheme, value, meaning in profile.codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = scheme or "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = temporal


def _fix_file_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for tag in _META_REMOVED:
        if tag in meta:
            del meta[tag]
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DEID"


#: The file's own UIDs a class UID is compared with (:func:`own_uids`): SOP Instance, Study Instance,
#: Series Instance and Frame of Reference UID at the top level
OWN_UID_TAGS = (0x00080018, 0x0020000D, 0x0020000E, 0x00200052)
#: Class UIDs kept (protected) because they name standard or private classes, not instances
_CLASS_UID_KEYWORDS = frozenset({"SOPClassUID", "ReferencedSOPClassUID"})


def own_uids(ds: Dataset) -> frozenset[str]:
    """The values of :data:`OWN_UID_TAGS` in ``ds`` (its top level), read from the bytes of an element not
    converted yet (nothing converted, nothing changed); standard UIDs left out."""
    out: set[str] = set()
    for tag in OWN_UID_TAGS:
        elem = ds._dict.get(tag)  # type: ignore[call-overload]
        if elem is None:
            continue
        value = elem.value
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else "\\".join(_str_values(elem))
        out.update(v for v in _uid_values(text) if v and not actions.is_well_known_uid(v))
    return frozenset(out)


def _uid_values(text: str) -> list[str]:
    """The UIDs of a UI value as text (``\\``-separated, each stripped of its padding)."""
    return [u.strip(" \0") for u in text.split("\\")]


def action_context(ds: Dataset, profile: Profile, pseudo: Pseudonymizer, phi_terms: frozenset[str]) -> actions.ActionContext:
    """What the actions need for one file: settings, its patient's pseudonym and date shift, its PHI
    terms, its own UIDs (where the profile replaces UIDs)."""
    identity = patient_identity(ds)
    replaces = _replaces_uids(profile)
    return actions.ActionContext(
        settings=profile.settings,
        pseudo=pseudo,
        date_offset_days=pseudo.date_offset_days(identity),
        patient_pseudonym=pseudo.patient_id(identity),
        phi_terms=phi_terms,
        replaces_uids=replaces,
        own_uids=own_uids(ds) if replaces else frozenset(),
    )


def deidentify_header(
    ds: Dataset, profile: Profile, pseudo: Pseudonymizer, phi_terms: frozenset[str] | None = None
) -> HeaderResult:
    """Apply ``profile`` to ``ds`` (and ``ds.file_meta``) in place; counts per applied action code.

    Raises ``FileError("encapsulated-document")`` when the profile quarantines encapsulated documents.
    Never logs values.
    """
    _check_encapsulated(ds, profile)
    if phi_terms is None:  # the pipeline passes the terms it collected before the pixel stage
        phi_terms = collect_phi_terms(ds, profile)
    ctx = action_context(ds, profile, pseudo, phi_terms)
    visitor = Deidentifier(profile, ctx)
    visitor.raw_encoding = written_encoding(ds)
    walk(ds, visitor.visit, visitor.leave, prefix=None, lazy=True)
    _fix_file_meta(ds)
    _mark(ds, profile, _temporal_state(ctx.dates, profile.settings.dates))
    if visitor.non_ascii:
        ds.SpecificCharacterSet = "ISO_IR 192"
    log.debug("header de-identified: %s", dict(visitor.counts))
    return HeaderResult(action_counts=dict(sorted(visitor.counts.items())), phi_terms=phi_terms)


# --------------------------------------------------------------------------- dry run


def _value_repr(elem: DataElement) -> str:
    if elem.VR == "SQ":
        return f"<{len(elem.value or [])} items>"
    if isinstance(elem.value, (bytes, bytearray)):
        return f"<{len(elem.value)} bytes>"
    return repr(elem.value)[:200]


def inspect_dataset(
    ds: Dataset, profile: Profile, pseudo: Pseudonymizer | None = None, show_values: bool = False
) -> list[InspectRow]:
    """What :func:`deidentify_header` would do to each element, without changing ``ds``.

    Items of a sequence are listed when the sequence would be kept (K, C, D, U*), with the scope their
    sequence gives them (:func:`child_scope`).
    """
    rows: list[InspectRow] = []
    scopes: dict[int, int] = {}

    def visit(container: Dataset, elem: DataElement, ref: ElementRef, path: str) -> bool:
        if is_private_creator(ref.tag):
            code, origin = "K?", "deid:private-creator"
        else:
            scope = scopes.get(id(container), 0)
            rule = rule_for(profile, ref)
            plain, code = actions.resolve(rule.action, ref), _decision(profile, ref, scope)[1]
            origin = (rule.origin if code == plain else f"{rule.origin}+own-terms-removed" if code == "T"
                      else f"{rule.origin}+uid-replaced" if rule.origin in (SAFE_PRIVATE, UNLISTED_KEEP) and code == "U"
                      else f"{rule.origin}+dated-as-listed" if rule.origin == UNLISTED_KEEP and ref.vr in actions.DATE_VRS
                      else f"{rule.origin}+in-{ {'C': 'cleaned', 'D': 'dummy'}.get(code, 'uid')}-sequence")
            if ref.vr == "SQ" and elem.value:
                child = child_scope(scope, code, actions.UID_REFS if code == "U*" else actions.KEEP, ref.keyword)
                scopes.update((id(item), child) for item in elem.value)
        rows.append(
            InspectRow(
                path=path,
                tag=tag_str(ref.tag),
                keyword=ref.keyword,
                vr=ref.vr,
                action=code,
                origin=origin,
                value=_value_repr(elem) if show_values else None,
            )
        )
        return ref.vr == "SQ" and code in ("K", "C", "D", "U", "U*")

    walk(ds, visit)
    return rows
