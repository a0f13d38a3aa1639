"""Apply a profile to a data set: one visitor walks every element, sequences included.

:func:`walk` is the only recursion over a data set; :func:`collect_phi_terms`,
:func:`deidentify_header` and :func:`inspect_dataset` are visitors over it. For each element the
walk builds an :class:`~deid_pipeline.profile.ElementRef` (tag, VR, keyword, private creator, depth,
parent sequence tags), asks the profile for its :class:`Rule`, and :mod:`actions` does the rest.

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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from pydicom.valuerep import PersonName

from . import actions
from .errors import FileError
from .profile import ElementRef, Profile, Rule
from .pseudonym import Pseudonymizer, patient_identity
from .types import HeaderResult

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
#: Free-text elements of curves (50xx) and overlays (60xx): removed even when graphics are cleaned.
_GRAPHICS_TEXT = frozenset({0x0022, 0x1500, 0x4000, 0x2500, 0x0003})
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
    }
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


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


def tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _normal_vr(vr: str | None) -> str:
    return (vr or "UN").split(" or ")[0]


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


def element_ref(ds: Dataset, elem: DataElement, depth: int, parents: tuple[int, ...]) -> ElementRef:
    """What a rule can match on; the private creator is looked up in the element's own data set.

    Refs are immutable and interned per (tag, VR, creator, depth, parents).
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
    vr = elem.VR
    key = (tag, vr, creator, depth, parents)
    ref = _REFS.get(key)
    if ref is None:
        ref = ElementRef(
            tag=tag,
            vr=_normal_vr(vr),
            keyword="" if group & 1 else _keyword(tag),
            private_creator=creator,
            depth=depth,
            parents=parents,
        )
        if len(_REFS) > _CACHE_LIMIT:
            _REFS.clear()
        _REFS[key] = ref
    return ref


def walk(
    ds: Dataset,
    visit: Visit,
    leave: Leave | None = None,
    depth: int = 0,
    parents: tuple[int, ...] = (),
    prefix: str = "",
) -> None:
    """Call ``visit(container, element, ref, path)`` for every element at every depth.

    ``visit`` may change or delete the element; it returns True to walk the items of a (still present)
    sequence. ``leave(container, depth)`` runs after each data set's own elements.
    """
    elements = ds._dict
    for tag in list(elements.keys()):
        elem = elements.get(tag)
        if elem is None:  # deleted by an earlier visit
            continue
        path = prefix + _tag_str_cached(tag)
        if not isinstance(elem, DataElement):  # still raw: convert it now
            try:
                elem = ds[tag]
            except Exception:  # a value pydicom cannot convert: it goes, whatever it said
                log.warning("unreadable element %s removed", tag_str(int(tag)))
                del ds[tag]
                continue
        ref = element_ref(ds, elem, depth, parents)
        if not visit(ds, elem, ref, path):
            continue
        elem = _element(ds, tag)
        if elem is None:
            continue
        if elem.VR == "SQ" and elem.value:
            for i, item in enumerate(elem.value):
                walk(item, visit, leave, depth + 1, parents + (int(tag),), f"{path}[{i}].")
    if leave is not None:
        leave(ds, depth)


# --------------------------------------------------------------------------- rules


def rule_for(profile: Profile, ref: ElementRef) -> Rule:
    """The profile's rule with deid's fixed overrides (protected modules, icons, documents, graphics)."""
    if ref.tag == ICON_IMAGE_SEQUENCE:
        return Rule("X", "deid:icon-image")
    if ref.keyword in PROTECTED_KEYWORDS and (ref.depth == 0 or ref.keyword not in _TOP_LEVEL_ONLY):
        return Rule("K", "deid:protected")
    if (ref.tag & 0xFFFF) == 0:
        return Rule("X", "deid:group-length")
    if ref.tag == ENCAPSULATED_DOCUMENT and profile.settings.encapsulated_documents == "remove":
        return Rule("X", "deid:encapsulated-document")
    rule = profile.rule_for(ref)
    group = ref.tag >> 16
    if rule.action == "C" and 0x5000 <= group <= 0x60FF and not group & 1 and (ref.tag & 0xFFFF) in _GRAPHICS_TEXT:
        return Rule("X", rule.origin + "+graphics-text")
    return rule


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
    out = {y + m + dd, f"{y}-{m}-{dd}", f"{y}/{m}/{dd}", f"{y}.{m}.{dd}"}
    for year in (y, yy):
        for sep in "/.-":
            out |= {f"{m}{sep}{dd}{sep}{year}", f"{dd}{sep}{m}{sep}{year}"}
            out |= {f"{d.month}{sep}{d.day}{sep}{year}", f"{d.day}{sep}{d.month}{sep}{year}"}
        out |= {f"{dd}-{mon}-{year}", f"{dd} {mon} {year}", f"{dd}{mon}{year}", f"{mon} {dd}, {year}", f"{mon} {d.day}, {year}"}
    return out


def _name_terms(value: str) -> set[str]:
    out = set()
    for group in value.split("="):
        if group.strip("^ "):
            out.add(group.strip("^ "))
            out.add(" ".join(p for p in group.split("^") if p).strip())
        for part in group.replace("^", " ").replace(",", " ").split():
            if len(part.strip(".")) >= 2:
                out.add(part.strip("."))
    return out


def collect_phi_terms(ds: Dataset, profile: Profile) -> frozenset[str]:
    """Identifying values of this file *before* any change: names (and their parts), IDs, dates in
    common formats, accession, institution. In memory only; used by ``clean`` and the pixel stage."""
    terms: set[str] = set()

    def visit(container: Dataset, elem: DataElement, ref: ElementRef, path: str) -> bool:
        if ref.private_creator is not None:
            return False
        if ref.vr == "SQ":
            return True
        values = _str_values(elem)
        if not values:
            return False
        if ref.vr == "PN":
            for v in values:
                terms.update(_name_terms(v))
        elif ref.vr in ("DA", "DT"):
            if ref.keyword == "PatientBirthDate" or rule_for(profile, ref).action != "K":
                for v in values:
                    terms.update(date_variants(v))
        elif ref.keyword in IDENTIFYING_KEYWORDS:
            terms.update(v.strip() for v in values)
        return False

    walk(ds, visit)
    return frozenset(t for t in terms if len(t) >= 2 and any(c.isalnum() for c in t))


# --------------------------------------------------------------------------- de-identification


class _Deidentifier:
    """The visitor of :func:`deidentify_header`: one rule, one action, one count per element."""

    def __init__(self, profile: Profile, ctx: actions.ActionContext) -> None:
        self.profile = profile
        self.ctx = ctx
        self.counts: Counter[str] = Counter()
        self.uid_scope: set[int] = set()  # id() of items inside an X/Z/U* reference sequence
        self.non_ascii = False
        self.max_age = getattr(profile.settings, "max_age_years", None)

    def visit(self, ds: Dataset, elem: DataElement, ref: ElementRef, path: str) -> bool:
        if is_private_creator(ref.tag):
            return False  # kept or dropped in leave(), once its block is known
        rule = rule_for(self.profile, ref)
        code = rule.action
        in_scope = id(ds) in self.uid_scope
        if in_scope and ref.vr == "UI" and code != "X" and ref.keyword != "ReferencedSOPClassUID":
            code = "U"
        applied, outcome = actions.apply(code, elem, ref, self.ctx)
        self.counts[applied] += 1
        if outcome is actions.REMOVE:
            del ds[ref.tag]
            return False
        if outcome is actions.KEEP or outcome is actions.UID_REFS:
            if ref.vr == "SQ":
                if outcome is actions.UID_REFS or in_scope:
                    self.uid_scope.update(id(item) for item in elem.value or ())
                return True
            if ref.vr == "AS" and elem.value:
                elem.value = actions.cap_age(str(elem.value), self.max_age)
            self.non_ascii = self.non_ascii or _is_non_ascii(elem.value)
            return False
        if ref.vr == "SQ":
            elem.value = Sequence(outcome or [])
            return False
        if ref.vr == "AS" and outcome:
            outcome = actions.cap_age(str(outcome), self.max_age)
        elem.value = outcome
        self.non_ascii = self.non_ascii or _is_non_ascii(outcome)
        return False

    def leave(self, ds: Dataset, depth: int) -> None:
        """Drop private creators whose block no longer holds any element."""
        for tag in [t for t in ds.keys() if is_private_creator(int(t))]:
            group, block = int(tag) >> 16, int(tag) & 0xFF
            used = any(
                (int(t) >> 16) == group and (int(t) & 0xFFFF) >> 8 == block and (int(t) & 0xFFFF) >= 0x1000
                for t in ds.keys()
            )
            if not used:
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
    identity = patient_identity(ds)
    ctx = actions.ActionContext(
        settings=profile.settings,
        pseudo=pseudo,
        date_offset_days=pseudo.date_offset_days(identity),
        patient_pseudonym=pseudo.patient_id(identity),
        phi_terms=phi_terms,
    )
    visitor = _Deidentifier(profile, ctx)
    walk(ds, visitor.visit, visitor.leave)
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

    Items of a sequence are listed when the sequence would be kept (K, C, D, U*).
    """
    rows: list[InspectRow] = []

    def visit(container: Dataset, elem: DataElement, ref: ElementRef, path: str) -> bool:
        if is_private_creator(ref.tag):
            code, origin = "K?", "deid:private-creator"
        else:
            rule = rule_for(profile, ref)
            code, origin = actions.resolve(rule.action, ref), rule.origin
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
