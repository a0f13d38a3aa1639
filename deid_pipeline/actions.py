"""Tag-action registry: an action code -> a pure function of (element, ref, context).

Codes (PS3.15 Table E.1-1): ``D`` dummy, ``Z`` zero-length, ``X`` remove, ``K`` keep, ``C`` clean,
``U`` replace UID, and the compounds ``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*``. deid's own
``T``: keep, the file's own identifying values taken out of the text (free text a profile keeps only
because its table does not list it or its keep list names it: a Code Meaning "Protocol for <name>").

Compounds are resolved before dispatch (:func:`resolve`). We ship no IOD tables, so the choice is
the one that keeps *any* file valid while removing the information:

* ``X/Z`` -> ``Z`` and ``X/Z/D`` / ``Z/D`` -> ``Z``: an empty value is valid wherever the attribute is
  Type 2 or 3; for the few attributes that are Type 1 in at least one common IOD
  (:data:`TYPE1_SOMETIMES`) they resolve to ``D``, which is valid everywhere;
* ``X/D`` -> ``D`` (a dummy is valid whatever the type);
* ``X/Z/U*`` -> ``U*``: the reference sequence is kept and the walk replaces every UID inside it.

Dummy values (``D``) by VR: PN/LO/SH/ST/LT/UT/UC/AE/CS ``ANONYMOUS``; DS/IS ``0``; binary numbers 0;
OB/OW/UN/OF/OD/OL/OV zero bytes; UI a keyed UID; SQ is kept and its items walked. Patient's Name and
Patient ID at the top level get the patient's keyed pseudonym under ``D`` *and* ``Z`` (PS3.15 allows a
dummy value for ``Z``). DA/DT under ``D`` or ``C`` follow ``settings.dates``: ``shift`` -> the
per-patient shifted value (a DT keeps its time and UTC offset), ``year`` -> 1 January of the year,
``remove`` -> empty (``C``) or a fixed dummy ``19000101`` (``D``). TM under ``C`` is kept when dates
shift (the offset is whole days) and emptied otherwise; TM under ``D`` is always ``000000``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from .clean import clean_text, may_match_a_pattern, remove_terms
from .errors import ProfileError

if TYPE_CHECKING:
    from .pseudonym import Pseudonymizer

log = logging.getLogger(__name__)


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


REMOVE = _Sentinel("REMOVE")  #: delete the element
KEEP = _Sentinel("KEEP")  #: leave the element (and, for SQ, walk its items)
UID_REFS = _Sentinel("UID_REFS")  #: keep the sequence; every UID inside is replaced by the walk

COMPOUNDS = ("Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")
DUMMY_TEXT = "ANONYMOUS"
DUMMY_DATE = "19000101"
DUMMY_TIME = "000000"
DUMMY_DATETIME = "19000101000000"
DICOM_UID_ROOT = "1.2.840.10008."

#: Attributes that are Type 1 in at least one common IOD; their Z/D and X/Z/D resolve to D.
TYPE1_SOMETIMES = frozenset(
    {
        "ContentDate",  # SR Document General, enhanced images, Segmentation
        "ContentTime",
        "AcquisitionDateTime",  # Enhanced MR/CT/XA Image modules (Type 1C)
        "InstructionPerformedDateTime",
        "DeviceSerialNumber",  # Enhanced General Equipment
        "InstitutionName",  # Enhanced General Equipment
        "StationName",
        "ContentCreatorName",  # Type 2 in Presentation State Identification; D is valid either way
    }
)
#: Patient's Name / Patient ID at the top level get the keyed pseudonym instead of a dummy.
PSEUDONYM_KEYWORDS = frozenset({"PatientName", "PatientID"})

TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
DATE_VRS = frozenset({"DA", "DT", "TM"})
BINARY_WIDTH = {"OB": 2, "OW": 2, "UN": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
BINARY_NUMBER_WIDTH = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8, "AT": 4}
NUMBER_VRS = frozenset(BINARY_NUMBER_WIDTH)


@dataclass
class DateStats:
    """What happened to date-ish values in one file (for LongitudinalTemporalInformationModified)."""

    shifted: int = 0
    removed: int = 0  # emptied, dummied or reduced to the year
    kept: int = 0


@dataclass
class ActionContext:
    """Everything an action may use besides the element: per-file, built once by ``tags.py``."""

    settings: Any  # profile.ProfileSettings
    pseudo: "Pseudonymizer"
    date_offset_days: int
    patient_pseudonym: str
    phi_terms: frozenset[str] = frozenset()
    dates: DateStats = field(default_factory=DateStats)
    replaces_uids: bool = True  # False under retain-uids: a UID in cleaned text stays as it came
    #: the file's own instance, series, study and frame of reference UIDs as read (where UIDs are replaced)
    own_uids: frozenset[str] = frozenset()


ActionFn = Callable[[DataElement, Any, ActionContext], Any]


# --------------------------------------------------------------------------- UIDs


def is_well_known_uid(value: str) -> bool:
    """SOP classes, transfer syntaxes, coding schemes...: the DICOM root or pydicom's UID registry."""
    value = value.strip()
    return value in UID_dictionary or value.startswith(DICOM_UID_ROOT)


def own_uids_replaced(elem: DataElement, ctx: ActionContext) -> Any:
    """A class UID element's value with each of the file's own UIDs in it (:attr:`ActionContext.own_uids`:
    a Study Instance UID written where a SOP class belongs) replaced as that UID is everywhere else,
    its other values (a class, standard or private) kept; None when it holds none of them."""
    values = [str(v).strip().rstrip("\x00") for v in _values(elem)]
    if not ctx.own_uids.intersection(values):
        return None
    return _pack([ctx.pseudo.uid(v) if v in ctx.own_uids else v for v in values])


def replace_uid(value: str, ctx: ActionContext) -> str:
    value = str(value).strip().rstrip("\x00")
    if not value or is_well_known_uid(value):
        return value
    return ctx.pseudo.uid(value)


# --------------------------------------------------------------------------- dates

_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?([0-9.]*)([+-]\d{4})?$")


def _parse_da(value: str) -> _dt.date | None:
    digits = value.strip().replace(".", "")  # ACR-NEMA style "YYYY.MM.DD"
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return _dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def shift_da(value: str, days: int) -> str | None:
    """``value`` moved by ``days``; None when it is not a date."""
    parsed = _parse_da(value)
    if parsed is None:
        return None
    try:
        return (parsed + _dt.timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return None


def shift_dt(value: str, days: int) -> str | None:
    """A DT moved by whole days, same precision, time and UTC offset intact; None when unparsable."""
    m = _DT_RE.match(value.strip())
    if m is None:
        return None
    year, month, day, rest, tz = m.groups()
    try:
        moved = _dt.date(int(year), int(month or 1), int(day or 1)) + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    out = f"{moved.year:04d}"
    if month:
        out += f"{moved.month:02d}"
    if day:
        out += f"{moved.day:02d}"
    return out + (rest or "") + (tz or "")


def year_only(value: str, vr: str) -> str | None:
    """1 January of the value's year (``20170302`` -> ``20170101``); None when unparsable."""
    if vr == "DA":
        parsed = _parse_da(value)
        return None if parsed is None else f"{parsed.year:04d}0101"
    m = _DT_RE.match(value.strip())
    return None if m is None else f"{m.group(1)}0101"


def _date_value(value: str, vr: str, ctx: ActionContext, dummy: bool) -> str:
    """One DA/DT/TM value under D (``dummy``) or C, following ``settings.dates``."""
    mode = ctx.settings.dates
    if not value.strip():
        return value
    if vr == "TM":
        if mode == "shift" and not dummy:
            ctx.dates.kept += 1
            return value
        ctx.dates.removed += 1
        return DUMMY_TIME if dummy else ""
    if mode == "shift":
        moved = shift_da(value, ctx.date_offset_days) if vr == "DA" else shift_dt(value, ctx.date_offset_days)
        if moved is not None:
            ctx.dates.shifted += 1
            return moved
    elif mode == "year":
        reduced = year_only(value, vr)
        if reduced is not None:
            ctx.dates.removed += 1
            return reduced
    ctx.dates.removed += 1
    if not dummy:
        return ""
    return DUMMY_DATE if vr == "DA" else DUMMY_DATETIME


# --------------------------------------------------------------------------- helpers


def _values(elem: DataElement) -> list[Any]:
    value = elem.value
    if value is None:
        return []
    if isinstance(value, (list, MultiValue)):
        return list(value)
    return [value]


def _pack(values: list[Any]) -> Any:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _is_pseudonym_target(ref: Any) -> bool:
    return ref.depth == 0 and ref.keyword in PSEUDONYM_KEYWORDS


def _empty(vr: str) -> Any:
    if vr == "SQ":
        return []
    if vr in BINARY_WIDTH:
        return b""
    if vr in TEXT_VRS or vr in DATE_VRS or vr in {"UI", "AS", "DS", "IS"}:
        return ""
    return None


# --------------------------------------------------------------------------- actions


def act_remove(elem: DataElement, ref: Any, ctx: ActionContext) -> Any:
    """X: delete the element."""
    if ref.vr in DATE_VRS and elem.value:
        ctx.dates.removed += 1
    return REMOVE


def act_keep(elem: DataElement, ref: Any, ctx: ActionContext) -> Any:
    """K: keep; a kept sequence is still walked."""
    if ref.vr in DATE_VRS and elem.value:
        ctx.dates.kept += 1
    return KEEP


def act_zero(elem: DataElement, ref: Any, ctx: ActionContext) -> Any:
    """Z: zero-length value (the patient pseudonym for Patient's Name / ID)."""
    if _is_pseudonym_target(ref):
        return ctx.patient_pseudonym
    if ref.vr in DATE_VRS and elem.value:
        ctx.dates.removed += 1
    return _empty(ref.vr)


def act_dummy(elem: DataElement, ref: Any, ctx: ActionContext) -> Any:
    """D: a non-empty dummy consistent with the VR (see module docstring)."""
    vr = ref.vr
    if _is_pseudonym_target(ref):
        return ctx.patient_pseudonym
    if vr == "SQ":
        return KEEP
    if vr in DATE_VRS:
        values = [_date_value(str(v), vr, ctx, dummy=True) for v in _values(elem)]
        return _pack(values) or (DUMMY_TIME if vr == "TM" else DUMMY_DATE if vr == "DA" else DUMMY_DATETIME)
    if vr == "UI":
        values = [replace_uid(str(v), ctx) for v in _values(elem)]
        return _pack(values) or ctx.pseudo.uid("dummy")
    if vr in ("DS", "IS"):
        return "0"
    if vr == "AS":
        return "000Y"
    if vr == "UR":
        return "urn:deid:removed"
    if vr in BINARY_WIDTH:
        return b"\x00" * BINARY_WIDTH[vr]
    if vr in NUMBER_VRS:
        return 0
    return DUMMY_TEXT


def act_uid(elem: DataElement, ref: Any, ctx: ActionContext) -> Any:
    """U: every non-standard UID replaced by its keyed ``2.25`` UID."""
    if ref.vr == "SQ":
        return UID_REFS
    if ref.vr != "UI":
        return act_dummy(elem, ref, ctx)
    return _pack([replace_uid(str(v), ctx) for v in _values(elem)])


def act_uid_refs(elem: DataElement, ref: Any, ctx: ActionContext) -> Any:
    """U* (from X/Z/U*): keep the reference sequence; the walk replaces every UID in its items."""
    return UID_REFS if ref.vr == "SQ" else act_uid(elem, ref, ctx)


def act_clean(elem: DataElement, ref: Any, ctx: ActionContext) -> Any:
    """C: remove identifying content, keep the rest (dates per settings, text via :mod:`clean`)."""
    vr = ref.vr
    if vr == "SQ":
        return KEEP
    if vr in DATE_VRS:
        return _pack([_date_value(str(v), vr, ctx, dummy=False) for v in _values(elem)])
    if vr == "PN":
        return ""
    if vr == "UI":
        return act_uid(elem, ref, ctx)
    if vr in TEXT_VRS:
        uid = (lambda u: replace_uid(u, ctx)) if ctx.replaces_uids else str
        return _pack([clean_text(str(v), ctx.phi_terms, uid=uid) for v in _values(elem)])
    if vr == "UN":
        return REMOVE  # unknown bytes may hold text we cannot read
    return KEEP  # numbers, ages (capped later), overlay bits


def act_keep_terms(elem: DataElement, ref: Any, ctx: ActionContext) -> Any:
    """T: keep, without the file's own identifying values, a UID written in it replaced as the header's
    are (where the profile replaces them), and under ``settings.kept_text_patterns: remove`` without
    what the Clean action's patterns find either (C's :func:`clean.clean_text`, given only a value
    they could match); KEEP when the value holds none of these."""
    values = _values(elem)
    uid = (lambda u: replace_uid(u, ctx)) if ctx.replaces_uids else None
    patterns = getattr(ctx.settings, "kept_text_patterns", "keep") == "remove"
    kept = [clean_text(str(v), ctx.phi_terms, uid=uid or str) if patterns and may_match_a_pattern(str(v))
            else remove_terms(str(v), ctx.phi_terms, uid) for v in values]
    if kept == [str(v) for v in values]:
        return KEEP
    return _pack(kept)


ACTIONS: dict[str, ActionFn] = {
    "X": act_remove,
    "K": act_keep,
    "Z": act_zero,
    "D": act_dummy,
    "U": act_uid,
    "U*": act_uid_refs,
    "C": act_clean,
    "T": act_keep_terms,
}


def resolve(code: str, ref: Any) -> str:
    """A compound code -> the single code applied (see module docstring); other codes unchanged."""
    if code == "X/Z":
        return "Z"
    if code == "X/D":
        return "D"
    if code in ("Z/D", "X/Z/D"):
        return "D" if ref.keyword in TYPE1_SOMETIMES else "Z"
    if code == "X/Z/U*":
        return "U*"
    return code


def apply(code: str, elem: DataElement, ref: Any, ctx: ActionContext) -> tuple[str, Any]:
    """Resolve ``code`` and run its function: (applied code, REMOVE | KEEP | UID_REFS | new value)."""
    applied = resolve(code, ref)
    fn = ACTIONS.get(applied)
    if fn is None:
        raise ProfileError(f"unknown action code {applied!r} for tag {ref.tag:08X}")
    return applied, fn(elem, ref, ctx)


# --------------------------------------------------------------------------- ages

#: An age as written: a number (leading zeros, blanks round it) and a unit, days, weeks, months or years
#: in either case, none meaning years. AS is three digits and an upper-case unit (095Y), but "95Y",
#: "0095Y", "095y" or "1200M" (100 years) are ages over 89 all the same.
_AGE_RE = re.compile(r"\s*(\d{1,9})\s*([DWMYdwmy]?)\s*")
_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
AGGREGATED_AGE = "090Y"


def cap_age(value: Any, max_years: int | None) -> Any:
    """An age (an AS element's value, or one of an element the dictionary gives as AS written as
    another string VR) above ``max_years`` becomes ``090Y`` (HIPAA: ages over 89 aggregated), each value
    of a multi-valued one; a value that reads as no age (not a number of days, weeks, months or years) is
    emptied, since it cannot be shown to be ``max_years`` or under; an empty one stays."""
    if max_years is None:
        return value
    if isinstance(value, (list, tuple, MultiValue)):
        return [cap_age(v, max_years) for v in value]
    text = str(value)
    if not text.strip(" \0"):
        return value
    m = _AGE_RE.fullmatch(text.rstrip("\0"))
    if m is not None and int(m.group(1)) * _UNIT_YEARS[(m.group(2) or "Y").upper()] <= max_years:
        return value
    return AGGREGATED_AGE if m is not None else ""
