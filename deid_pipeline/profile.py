"""Header confidentiality profiles: YAML data, validated when loaded, built by layering.

A profile file (``configs/profiles/*.yaml`` or a user's own) holds no code: metadata, the CID 7050
codes it claims, partial ``settings`` and ``rows``. It ``extends`` a built-in (or a list of them, or
a relative ``.yaml`` path); the chain is resolved base first, each file once, and later layers
override earlier ones. A row matches on one of:

* ``tag: "(0010,0010)"`` or ``keyword: PatientName`` -- one element (a tag row beats a keyword row
  for the same element in the same layer);
* ``tag: "(0019,\\"SIEMENS MR HEADER\\",08)"`` -- a private element by group, creator, element byte;
* ``tag: "(60xx,3000)"`` / ``"(0009,xx10)"`` -- a pattern; fewer ``x`` wins. ``x`` in the group
  matches even (public) groups only, as in the standard's repeating groups;
* ``vr: PN`` -- every *public* element with that VR (private elements follow the private rules).

For one element the latest layer with a matching row decides; inside that layer exact (tag, keyword,
private creator) > pattern > VR. Elements no row matches get a default from ``settings``
(``origin`` ``default:...``). :meth:`Profile.rule_for` is called once per element: it is dict
lookups, a short pattern scan and a per-profile memo.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydicom import datadict

from .errors import ProfileError
from .resources import configs_dir

log = logging.getLogger(__name__)

#: PS3.15 Table E.1-1a. deid adds no codes of its own; compounds are resolved by the header stage.
ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})
#: VRs whose values may be free text; removed when unlisted under ``unlisted_public: remove-text``.
TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UR UT".split())
VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
#: VRs of character strings; and of bytes that may hold anything, text too.
STRING_VRS = TEXT_VRS | {"UI"}
BINARY_VRS = frozenset("OB OD OF OL OV OW".split())


@functools.lru_cache(maxsize=65536)
def public_dictionary_vr(tag: int) -> str | None:
    """A public element's VR as the data dictionary gives it (``"US or SS"``, repeating groups too);
    None when private or unknown."""
    if (tag >> 16) & 1:
        return None
    try:
        return datadict.dictionary_VR(tag)
    except KeyError:
        return None


def dictionary_vr(tag: int) -> str | None:
    """A public element's one VR in the data dictionary; None when private, unknown or given several."""
    vr = public_dictionary_vr(tag)
    return None if vr is None or " or " in vr else vr


def meaning_vr(tag: int, vr: str) -> str:
    """The VR an element is judged by: the dictionary's for a public element of one character-string VR
    that the file writes with another string VR (a Secondary Reviewer Name written as LO is a person's
    name, a date written as LO a date); else the VR as written. Its value reads as a string either way."""
    meant = dictionary_vr(tag)
    return meant if meant is not None and meant != vr and meant in STRING_VRS and vr in STRING_VRS else vr


def text_as_bytes(tag: int, vr: str) -> bool:
    """A public element of a character-string VR written with a binary one (OB, OW, ...): text no
    action can read as such."""
    return vr in BINARY_VRS and dictionary_vr(tag) in STRING_VRS


SAFE_PRIVATE_TABLE = "standard/table_E.3.10-1.json"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class ElementRef:
    """What a rule can match on; built by ``tags.py`` during the walk."""

    tag: int  # pydicom BaseTag value, e.g. 0x00100010
    vr: str  # "PN", "SQ", "UN", ...
    keyword: str  # "" for private / unknown public tags
    private_creator: str | None  # creator string for private elements (block owner), else None
    depth: int  # 0 = top level, 1 = inside one sequence item, ...
    parents: tuple[int, ...]  # tags of enclosing sequences, outermost first
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.tag, self.vr, self.keyword, self.private_creator, self.depth, self.parents)))

    def __hash__(self) -> int:  # refs key the rule caches: hashed once
        return self._hash

    def __reduce__(self) -> tuple[Any, ...]:  # a string's hash differs between processes: rehash there
        return ElementRef, (self.tag, self.vr, self.keyword, self.private_creator, self.depth, self.parents)


#: The origin of the rule of a public element no row names, kept (``unlisted_public: keep``)
UNLISTED_KEEP = "default:unlisted-keep"
#: ... and of one kept by ``keep_list`` under ``unlisted_public: remove-text``
KEEP_LIST = "default:keep-list"
#: ... and of a private element Table E.3.10-1 lists as safe (``private: retain-safe``)
SAFE_PRIVATE = "retain-safe-private:E.3.10-1"
#: ... and of an overlay's or a curve's element no row names, under ``graphics: clean``
GRAPHICS_CLEAN = "default:graphics-clean"
#: Public elements the table does not list that locate the site's copy of an object (a Retrieve URL
#: naming the PACS host and the original study UID, a Pixel Data Provider URL, a file's path in a
#: container) or reach a person (a Contact URI, its display name): removed even where unlisted elements
#: are kept, as the table removes Retrieve AE Title. A row or the keep list that names one keeps it.
UNLISTED_LOCATOR_TAGS = frozenset(
    {
        0x00080407,  # Stored Instance Base URI
        0x00080408,  # Folder Access URI
        0x00080409,  # File Access URI
        0x0008040B,  # Filename In Container
        0x00081190,  # Retrieve URL
        0x00287FE0,  # Pixel Data Provider URL
        0x00404073,  # Storage URL
        0x0040E010,  # Retrieve URI
        0x0074100A,  # Contact URI
        0x0074100C,  # Contact Display Name
    }
)


@dataclass(frozen=True)
class Rule:
    """The action for one element and where it came from (``"basic:(0010,0010)"``, ``"default:un"``)."""

    action: str
    origin: str


class ProfileSettings(BaseModel):
    """Settings the other stages read. Defaults are ``basic``'s; a layer sets only what it changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pixels: Literal["all", "triage", "none"] = "triage"
    pixel_mode: Literal["all-text", "phi-text", "none"] = "all-text"
    dates: Literal["remove", "year", "shift"] = "remove"
    unlisted_public: Literal["keep", "remove-text", "remove"] = "keep"
    keep_list: tuple[str, ...] = ()
    # free text kept only as unlisted or by keep_list: "remove" takes the file's own identifying values
    # out of it (action T: a Code Meaning "Protocol for <name>"); "keep" writes it as it came, for a site
    # whose labels must stay exact ("White matter" for a patient named White); verify still reports them
    kept_text_terms: Literal["remove", "keep"] = "remove"
    # ... and "remove" here takes out of it, besides, what the Clean action's patterns find (phone
    # numbers, e-mail addresses, URLs, IP addresses, dates, labelled IDs, runs of 5 or more digits),
    # whoever's they are: safe-harbor's (B)-(R) in a Code Meaning "Call 555-123-4567"
    kept_text_patterns: Literal["remove", "keep"] = "keep"
    private: Literal["remove", "retain-safe"] = "remove"
    graphics: Literal["remove", "clean"] = "remove"
    encapsulated_documents: Literal["quarantine", "remove"] = "quarantine"
    # a sound recording (a dictation, a voice, a video's sound track: tags.holds_audio) is never heard
    # by any stage; "keep" writes it as it came (a study of voices under an expert determination);
    # verify still reports it
    audio: Literal["quarantine", "keep"] = "quarantine"
    max_age_years: int | None = Field(default=None, ge=0, le=999)  # None: no cap
    # images that show a face or other recognisable features (RecognizableVisualFeatures YES, or a
    # visible-light photograph SOP class without it saying NO): text redaction does not make them safe
    recognizable_visual_features: Literal["keep", "quarantine"] = "keep"

    @field_validator("keep_list")
    @classmethod
    def _known_keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in value if datadict.tag_for_keyword(k) is None]
        if unknown:
            raise ValueError(f"unknown keyword(s) in keep_list: {', '.join(unknown)}")
        return value


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    tag: str | int | None = None
    keyword: str | None = None
    vr: str | None = None
    action: str
    name: str | None = None
    retired: bool = False
    note: str | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str | int | float
    description: str = ""
    kind: Literal["profile", "option"] = "profile"
    extends: str | list[str] | None = None
    standard: dict[str, str] | None = None
    codes: list[tuple[str, str, str]] = []
    settings: dict[str, Any] = {}
    rows: list[Any] = []


@dataclass(frozen=True)
class _CRow:
    """One validated row. ``key``: tag int | (group, creator, byte) | (mask, value) | VR string."""

    kind: str  # "tag" | "keyword" | "creator" | "pattern" | "vr"
    key: Any
    match: str  # canonical text of what it matches
    action: str
    keyword: str
    name: str
    retired: bool
    index: int
    xcount: int = 0


@dataclass(frozen=True)
class _Layer:
    name: str
    version: str
    description: str
    kind: str
    label: str  # file as shown in messages
    path: Path
    builtin: bool
    extends: tuple[str, ...]
    codes: tuple[tuple[str, str, str], ...]
    settings: dict[str, Any]
    rows: tuple[_CRow, ...]
    text_sha256: str = ""  # of the file's text as parsed: a run records that text (record_profile)


# --------------------------------------------------------------------------- parsing

_PLAIN_TAG = re.compile(r"^\(?\s*([0-9A-Fa-fxX]{4})\s*,\s*([0-9A-Fa-fxX]{4})\s*\)?$")
_HEX8 = re.compile(r"^(?:0x)?([0-9A-Fa-f]{8})$")
_CREATOR_TAG = re.compile(r'^\(\s*([0-9A-Fa-f]{4})\s*,\s*"([^"]+)"\s*,\s*(?:xx)?([0-9A-Fa-f]{2})\s*\)$')


def tag_str(tag: int) -> str:
    """``0x00100010`` -> ``"(0010,0010)"``."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _parse_tag(raw: object) -> tuple[str, Any, str, int]:
    """A row's ``tag`` -> (kind, key, canonical text, number of x). Raises ValueError."""
    if not isinstance(raw, str):  # YAML reads 00100010 as an octal number: insist on a string
        raise ValueError(f"bad tag syntax {raw!r}: quote tags, e.g. \"(0010,0010)\"")
    text = raw.strip()
    m = _CREATOR_TAG.match(text)
    if m:
        group = int(m.group(1), 16)
        if not group & 1:
            raise ValueError(f"bad tag syntax {raw!r}: a private creator needs an odd group")
        creator, byte = m.group(2).strip(), int(m.group(3), 16)
        return "creator", (group, creator, byte), f'({group:04X},"{creator}",{byte:02X})', 0
    m = _HEX8.match(text)
    if m:
        tag = int(m.group(1), 16)
        return "tag", tag, tag_str(tag), 0
    m = _PLAIN_TAG.match(text)
    if not m:
        raise ValueError(
            f"bad tag syntax {raw!r}: use (gggg,eeee), x for any hex digit, or (gggg,\"CREATOR\",ee)"
        )
    digits = (m.group(1) + m.group(2)).lower()
    if "x" not in digits:
        tag = int(digits, 16)
        return "tag", tag, tag_str(tag), 0
    mask = value = 0
    for ch in digits:
        mask, value = mask << 4, value << 4
        if ch != "x":
            mask |= 0xF
            value |= int(ch, 16)
    if digits[3] == "x":  # wildcard group: public (even) groups only
        mask |= 0x00010000
        value &= ~0x00010000
    canon = f"({digits[:4].upper().replace('X', 'x')},{digits[4:].upper().replace('X', 'x')})"
    return "pattern", (mask, value), canon, digits.count("x")


def _describe(raw: dict[str, Any]) -> str:
    for key in ("tag", "keyword", "vr"):
        if isinstance(raw, dict) and raw.get(key) is not None:
            return f"{key} {raw[key]}"
    return "no tag, keyword or vr"


def _compile_row(index: int, raw: Any) -> _CRow:
    if not isinstance(raw, dict):
        raise ValueError("a row must be a mapping")
    row = _Row.model_validate(raw)
    if row.action not in ACTIONS:
        raise ValueError(f"unknown action code {row.action!r} (allowed: {', '.join(sorted(ACTIONS))})")
    if row.vr is not None and (row.tag is not None or row.keyword is not None):
        raise ValueError("a row matches on tag/keyword or on vr, not both")
    if row.tag is None and row.vr is None and row.keyword is None:
        raise ValueError("a row needs one of tag, keyword, vr")
    kw_tag = None
    if row.keyword is not None:
        kw_tag = datadict.tag_for_keyword(row.keyword)
        if kw_tag is None:
            raise ValueError(f"unknown keyword {row.keyword!r}")
    if row.vr is not None:
        vr = row.vr.strip().upper()
        if vr not in VRS:
            raise ValueError(f"unknown VR {row.vr!r}")
        return _CRow("vr", vr, f"vr={vr}", row.action, "", row.name or "", row.retired, index)
    if row.tag is None:
        assert kw_tag is not None and row.keyword is not None
        name = row.name or datadict.dictionary_description(kw_tag)
        return _CRow("keyword", kw_tag, tag_str(kw_tag), row.action, row.keyword, name, row.retired, index)
    kind, key, canon, xcount = _parse_tag(row.tag)
    if kw_tag is not None and (kind != "tag" or key != kw_tag):
        raise ValueError(f"keyword {row.keyword!r} is {tag_str(kw_tag)}, not {canon}")
    keyword = row.keyword or ""
    if kind == "tag" and not keyword and not (key >> 16) & 1:
        keyword = datadict.keyword_for_tag(key) or ""
    return _CRow(kind, key, canon, row.action, keyword, row.name or "", row.retired, index, xcount)


def _fmt_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


_FILE_CACHE: dict[tuple[str, int, int], _Layer] = {}


def _read_layer(path: Path, label: str, builtin: bool) -> _Layer:
    try:
        st = path.stat()
    except OSError as exc:
        raise ProfileError(f"profile {label}: cannot read ({exc.strerror})") from None
    cache_key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    hit = _FILE_CACHE.get(cache_key)
    if hit is not None:
        return hit
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {label}: not readable YAML ({exc})") from None
    layer = _parse_layer(text, label, path.resolve(), builtin)
    if builtin and layer.name != path.stem:
        raise ProfileError(f"profile {label}: name {layer.name!r} differs from its file name")
    _FILE_CACHE[cache_key] = layer
    return layer


def _parse_layer(text: str, label: str, path: Path, builtin: bool) -> _Layer:
    """One profile file's text, validated (``path``: where it came from, for ``extends``)."""
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {label}: not readable YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"profile {label}: the top level must be a mapping")
    try:
        meta = _File.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"profile {label}: {_fmt_validation(exc)}") from None
    if not _NAME_RE.match(meta.name):
        raise ProfileError(f"profile {label}: bad name {meta.name!r} (lower-case letters, digits, . _ -)")
    unknown = sorted(set(meta.settings) - set(ProfileSettings.model_fields))
    if unknown:
        raise ProfileError(
            f"profile {label}: unknown setting(s) {', '.join(unknown)} "
            f"(known: {', '.join(ProfileSettings.model_fields)})"
        )
    rows: list[_CRow] = []
    seen: dict[tuple[str, Any], int] = {}
    for i, raw in enumerate(meta.rows):
        try:
            row = _compile_row(i, raw)
        except ValidationError as exc:
            raise ProfileError(f"profile {label}: row {i} ({_describe(raw)}): {_fmt_validation(exc)}") from None
        except ValueError as exc:
            raise ProfileError(f"profile {label}: row {i} ({_describe(raw)}): {exc}") from None
        dup = seen.get((row.kind, row.key))
        if dup is not None:
            raise ProfileError(f"profile {label}: row {i} ({_describe(raw)}): duplicate of row {dup}")
        seen[(row.kind, row.key)] = i
        rows.append(row)
    extends = () if meta.extends is None else (meta.extends,) if isinstance(meta.extends, str) else tuple(meta.extends)
    for code in meta.codes:
        if code[0] != "DCM" or not code[1].isdigit() or not code[2]:
            raise ProfileError(f"profile {label}: bad code {list(code)!r} (expected [DCM, <digits>, <meaning>])")
    return _Layer(
        name=meta.name,
        version=str(meta.version),
        description=meta.description,
        kind=meta.kind,
        label=label,
        path=path,
        builtin=builtin,
        extends=extends,
        codes=tuple(tuple(c) for c in meta.codes),  # type: ignore[misc]
        settings=dict(meta.settings),
        rows=tuple(rows),
        text_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def _profiles_dir() -> Path:
    return configs_dir() / "profiles"


def _builtin(name: str) -> _Layer | None:
    path = _profiles_dir() / f"{name}.yaml"
    if not _NAME_RE.match(name) or not path.is_file():
        return None
    return _read_layer(path, f"profiles/{name}.yaml", builtin=True)


def _builtin_names() -> list[str]:
    return sorted(p.stem for p in _profiles_dir().glob("*.yaml"))


def _is_path_spec(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or "/" in spec or "\\" in spec


def _user_layer(path: Path) -> _Layer:
    layer = _read_layer(path, str(path), builtin=False)
    if _builtin(layer.name) is not None:
        raise ProfileError(f"profile {path}: name {layer.name!r} is taken by a built-in profile; rename it")
    return layer


def _linearize(layer: _Layer, out: list[_Layer], done: set[Path], stack: list[_Layer]) -> None:
    if layer.path in done:
        return
    if any(s.path == layer.path for s in stack):
        chain = " -> ".join(s.name for s in stack) + f" -> {layer.name}"
        raise ProfileError(f"profile {stack[-1].label}: extends cycle {chain}")
    stack.append(layer)
    for parent_spec in layer.extends:
        if _is_path_spec(parent_spec):
            parent_path = (layer.path.parent / parent_spec).resolve()
            if not parent_path.is_file():
                raise ProfileError(f"profile {layer.label}: unknown extends {parent_spec!r} (no such file)")
            parent = _user_layer(parent_path)
        else:
            found = _builtin(parent_spec)
            if found is None:
                raise ProfileError(
                    f"profile {layer.label}: unknown extends {parent_spec!r} "
                    f"(built-ins: {', '.join(_builtin_names())})"
                )
            parent = found
        _linearize(parent, out, done, stack)
    stack.pop()
    done.add(layer.path)
    out.append(layer)


# --------------------------------------------------------------------------- safe private


_SAFE_CACHE: dict[str, tuple[str, frozenset[tuple[int, str, int]]]] = {}


def _safe_private() -> tuple[str, frozenset[tuple[int, str, int]]]:
    """Table E.3.10-1 as {(group, creator, element byte)} and its content sha256."""
    path = configs_dir() / SAFE_PRIVATE_TABLE
    hit = _SAFE_CACHE.get(str(path))
    if hit is not None:
        return hit
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = frozenset(
            (int(r["tag"][1:5], 16), r["private_creator"].strip(), int(r["tag"][8:10], 16)) for r in data["rows"]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileError(f"{SAFE_PRIVATE_TABLE}: cannot load the safe private attributes ({exc})") from None
    _SAFE_CACHE[str(path)] = (data["content_sha256"], entries)
    return _SAFE_CACHE[str(path)]


# --------------------------------------------------------------------------- the profile


@dataclass(frozen=True)
class _Hit:
    layer: int
    rule: Rule


@dataclass(frozen=True)
class _Pattern:
    mask: int
    value: int
    layer: int
    rule: Rule


class Profile:
    """A resolved profile: layers merged, settings validated, lookups precomputed."""

    # Codes whose behaviour lives in settings: claimed only when the settings deliver it.
    _SETTING_CLAIMS = {
        "113101": lambda s: s.pixels == "all" and s.pixel_mode == "all-text",  # Clean Pixel Data
        "113103": lambda s: s.graphics == "clean",  # Clean Graphics
        "113107": lambda s: s.dates == "shift",  # Modified Dates
        "113111": lambda s: s.private == "retain-safe",  # Retain Safe Private
    }

    def __init__(self, name: str, version: str, layers: list[_Layer], settings: ProfileSettings) -> None:
        self.name = name
        self.version = version
        self.settings = settings
        self.layers: tuple[str, ...] = tuple(layer.name for layer in layers)
        self.description = layers[-1].description if layers else ""
        self._layers = tuple(layers)
        self._exact: dict[int, _Hit] = {}
        self._creator: dict[tuple[int, str, int], _Hit] = {}
        self._vr: dict[str, _Hit] = {}
        patterns: list[tuple[int, int, int, _Pattern]] = []
        for li, layer in enumerate(layers):
            # keyword rows first so a tag row for the same element in this layer wins
            for row in sorted(layer.rows, key=lambda r: r.kind != "keyword"):
                rule = Rule(row.action, f"{layer.name}:{row.match}")
                if row.kind in ("tag", "keyword"):
                    self._exact[row.key] = _Hit(li, rule)
                elif row.kind == "creator":
                    self._creator[row.key] = _Hit(li, rule)
                elif row.kind == "vr":
                    self._vr[row.key] = _Hit(li, rule)
                else:
                    patterns.append((li, -row.xcount, row.index, _Pattern(row.key[0], row.key[1], li, rule)))
        patterns.sort(key=lambda p: p[:3], reverse=True)
        self._patterns = tuple(p[3] for p in patterns)
        self._keep_tags = frozenset(datadict.tag_for_keyword(k) for k in settings.keep_list)
        self._safe: frozenset[tuple[int, str, int]] = frozenset()
        self._safe_sha = ""
        if settings.private == "retain-safe":
            self._safe_sha, self._safe = _safe_private()
        self._safe_creators = frozenset((g, c) for g, c, _ in self._safe)
        self._memo: dict[tuple[int, str, str | None], Rule] = {}
        self.codes: tuple[tuple[str, str, str], ...] = self._claimed_codes()
        self.sha256 = hashlib.sha256(self._canonical().encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, version={self.version!r}, sha256={self.sha256[:12]})"

    # ----------------------------------------------------------------- lookups

    def rule_for(self, ref: ElementRef) -> Rule:
        """The rule for one element (see the module docstring for precedence)."""
        key = (ref.tag, ref.vr, ref.private_creator)
        rule = self._memo.get(key)
        if rule is None:
            rule = self._lookup(ref)
            if len(self._memo) > 200_000:
                self._memo.clear()
            self._memo[key] = rule
        return rule

    def _lookup(self, ref: ElementRef) -> Rule:
        tag = ref.tag
        private = (tag >> 16) & 1
        if text_as_bytes(tag, ref.vr):  # text hidden as bytes: whatever its row, no action reads it as text
            return Rule("X", "default:text-as-bytes")
        best = self._exact.get(tag)
        if private and ref.private_creator is not None and self._creator and (tag & 0xFFFF) >= 0x1000:
            hit = self._creator.get((tag >> 16, ref.private_creator.strip(), tag & 0xFF))
            if hit is not None and (best is None or hit.layer >= best.layer):
                best = hit
        for pat in self._patterns:
            if best is not None and pat.layer <= best.layer:
                break
            if tag & pat.mask == pat.value:
                best = _Hit(pat.layer, pat.rule)
                break
        if not private:
            hit = self._vr.get(ref.vr)
            if hit is not None and (best is None or hit.layer > best.layer):
                best = hit
        return best.rule if best is not None else self._default(ref)

    def _default(self, ref: ElementRef) -> Rule:
        s = self.settings
        tag = ref.tag
        group, elem = tag >> 16, tag & 0xFFFF
        if group & 1:
            creator = (ref.private_creator or "").strip()
            if 0x0010 <= elem <= 0x00FF:
                if s.private == "retain-safe" and (ref.private_creator is None or (group, creator) in self._safe_creators):
                    return Rule("K", "retain-safe-private:creator")
                return Rule("X", "default:private-creator")
            if s.private == "retain-safe" and elem >= 0x1000 and (group, creator, elem & 0xFF) in self._safe:
                return Rule("K", SAFE_PRIVATE)
            return Rule("X", "default:private")
        if ref.vr == "UN":
            return Rule("X", "default:un")
        if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            return Rule("K", GRAPHICS_CLEAN) if s.graphics == "clean" else Rule("X", "default:graphics")
        if s.unlisted_public != "keep":
            if tag in self._keep_tags:
                return Rule("K", KEEP_LIST)
            if s.unlisted_public == "remove":
                return Rule("X", "default:unlisted")
            if ref.vr in TEXT_VRS:
                return Rule("X", "default:unlisted-text")
            if ref.vr in BINARY_VRS and public_dictionary_vr(tag) is None:  # bytes of an unknown element
                return Rule("X", "default:unlisted-unknown-bytes")
        if tag in UNLISTED_LOCATOR_TAGS:
            return Rule("X", "default:unlisted-locator")
        if ref.vr == "PN":  # a person's name, whoever's: the table removes every one it lists
            return Rule("X", "default:unlisted-person-name")
        return Rule("K", UNLISTED_KEEP)

    # ----------------------------------------------------------------- reporting

    def _representative(self, row: _CRow) -> ElementRef | None:
        """An element a row is about, to ask :meth:`rule_for` what finally happens to it."""
        if row.kind in ("tag", "keyword"):
            tag = row.key
            vr = ""
            if not (tag >> 16) & 1 and datadict.dictionary_has_tag(tag):
                vr = datadict.dictionary_VR(tag).split(" or ")[0]
            return ElementRef(tag, vr, datadict.keyword_for_tag(tag) or "", None, 0, ())
        if row.kind == "creator":
            group, creator, byte = row.key
            return ElementRef((group << 16) | 0x1000 | byte, "", "", creator, 0, ())
        if row.kind == "pattern":
            return ElementRef(row.key[1], "", "", None, 0, ())
        return None

    def _layer_holds(self, layer: _Layer, weakening_only: bool) -> bool:
        """Whether a layer's rows still decide what happens (or, for basic, were only weakened by options)."""
        for row in layer.rows:
            ref = self._representative(row)
            if ref is None:
                continue
            got = self.rule_for(ref)
            if got.action == row.action:
                continue
            if not weakening_only:
                return False
            if got.action == "K" or got.origin.startswith("default:"):
                winner = got.origin.split(":", 1)[0]
                sanctioned = any(l.name == winner and l.builtin and l.kind == "option" for l in self._layers)
                if not sanctioned:
                    return False
        return True

    def _claimed_codes(self) -> tuple[tuple[str, str, str], ...]:
        claimed: list[tuple[str, str, str]] = []
        for layer in self._layers:
            for code in layer.codes:
                if code in claimed:
                    continue
                check = self._SETTING_CLAIMS.get(code[1])
                if check is not None and not check(self.settings):
                    log.info("profile %s: code %s not claimed (settings)", self.name, code[1])
                    continue
                if code[1] != "113100" and layer.kind == "option" and not self._layer_holds(layer, False):
                    log.info("profile %s: code %s not claimed (rows overridden)", self.name, code[1])
                    continue
                claimed.append(code)
        values = {c[1] for c in claimed}
        for layer in self._layers:
            for code in layer.codes:
                if code[1] != "113100" or code not in claimed:
                    continue
                ok = self._layer_holds(layer, True)
                ok = ok and (self.settings.private == "remove" or "113111" in values)
                ok = ok and (self.settings.graphics == "remove" or "113103" in values)
                if not ok:
                    log.info("profile %s: code 113100 not claimed (basic rows weakened)", self.name)
                    claimed.remove(code)
        return tuple(claimed)

    def table(self) -> list[dict[str, Any]]:
        """Resolved rows for ``deid profiles show``: one per element, pattern and VR any layer names.

        Keys: ``tag`` (``"(0010,0010)"``, a pattern, ``(gggg,"CREATOR",ee)``, or ``""`` for VR rows),
        ``vr`` (VR rows only), ``kind`` (tag | creator | pattern | vr), ``keyword``, ``name``, ``retired``,
        ``action``, ``origin`` (``layer:match`` of the deciding row) and ``layer``.

        For elements, ``action``/``origin`` is what :meth:`rule_for` finally decides (a later VR or
        pattern row may win over an earlier layer's exact row).
        """
        latest: dict[tuple[str, Any], tuple[_Layer, _CRow]] = {}
        for layer in self._layers:
            for row in layer.rows:
                kind = "tag" if row.kind == "keyword" else row.kind
                prev = latest.get((kind, row.key))
                if prev is not None and prev[0] is layer and row.kind == "keyword":
                    continue
                latest[(kind, row.key)] = (layer, row)
        order = {"tag": 0, "creator": 1, "pattern": 2, "vr": 3}
        out: list[dict[str, Any]] = []
        for (kind, _), (layer, row) in latest.items():
            action, origin = row.action, f"{layer.name}:{row.match}"
            if kind in ("tag", "creator"):
                ref = self._representative(row)
                assert ref is not None
                rule = self.rule_for(ref)
                action, origin = rule.action, rule.origin
            out.append(
                {
                    "tag": "" if kind == "vr" else row.match,
                    "vr": row.key if kind == "vr" else "",
                    "kind": kind,
                    "keyword": row.keyword,
                    "name": row.name,
                    "retired": row.retired,
                    "action": action,
                    "origin": origin,
                    "layer": origin.split(":", 1)[0],
                }
            )
        out.sort(key=lambda r: (order[r["kind"]], r["tag"], r["vr"]))
        return out

    def _canonical(self) -> str:
        doc = {
            "rows": self.table(),
            "settings": self.settings.model_dump(mode="json"),
            "safe_private_sha256": self._safe_sha,
            "codes": [list(c) for c in self.codes],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- public API


def _resolve(parts: list[_Layer]) -> list[_Layer]:
    out: list[_Layer] = []
    done: set[Path] = set()
    for part in parts:
        _linearize(part, out, done, [])
    return out


def _settings_for(layers: list[_Layer]) -> ProfileSettings:
    merged: dict[str, Any] = {}
    settings = ProfileSettings()
    for layer in layers:
        merged.update(layer.settings)
        try:
            settings = ProfileSettings.model_validate(merged)
        except ValidationError as exc:
            raise ProfileError(f"profile {layer.label}: settings: {_fmt_validation(exc)}") from None
    return settings


def load_profile(spec: str) -> Profile:
    """``"safe-harbor"`` | ``"basic+retain-uids+clean-descriptors"`` | ``"path/to/user.yaml"``.

    Raises :class:`ProfileError` naming the file and row when anything does not validate.
    """
    spec = spec.strip()
    if not spec:
        raise ProfileError("empty profile name")
    if Path(spec).is_file() and _is_path_spec(spec):
        parts_specs = [spec]
    else:
        parts_specs = [p.strip() for p in spec.split("+")]
    parts: list[_Layer] = []
    for part in parts_specs:
        if not part:
            raise ProfileError(f"profile spec {spec!r}: empty part")
        if _is_path_spec(part):
            path = Path(part)
            if not path.is_file():
                raise ProfileError(f"profile {part}: no such file")
            parts.append(_user_layer(path))
        else:
            found = _builtin(part)
            if found is None:
                raise ProfileError(f"unknown profile {part!r} (built-ins: {', '.join(_builtin_names())})")
            parts.append(found)
    layers = _resolve(parts)
    settings = _settings_for(layers)
    name = "+".join(p.name for p in parts)
    version = "+".join(p.version for p in parts)
    profile = Profile(name, version, layers, settings)
    log.debug("profile %s resolved: layers=%s sha256=%s", profile.name, profile.layers, profile.sha256)
    return profile


def list_profiles() -> list[tuple[str, str, str]]:
    """Built-in profiles then options: (name, version, description)."""
    layers = [layer for name in _builtin_names() if (layer := _builtin(name)) is not None]
    layers.sort(key=lambda l: (l.kind != "profile", l.name))
    return [(l.name, l.version, l.description) for l in layers]


def record_profile(profile: Profile) -> dict[str, Any]:
    """What a run keeps of its profile (``OUTPUT.private/profile.json``): the text of each layer's
    file, base first, so :func:`load_recorded` rebuilds the same rules after the user's files have
    moved or changed. Raises :class:`ProfileError` when a file is gone or changed since ``profile``
    was loaded (its text is not the one parsed)."""
    layers = []
    for layer in profile._layers:
        try:
            text = layer.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"profile {layer.label}: cannot read ({exc})") from None
        if hashlib.sha256(text.encode()).hexdigest() != layer.text_sha256:
            raise ProfileError(f"profile {layer.label}: the file changed while the run was starting")
        layers.append({"name": layer.name, "builtin": layer.builtin, "text": text})
    return {"name": profile.name, "version": profile.version, "sha256": profile.sha256, "layers": layers}


def load_recorded(doc: dict[str, Any]) -> Profile:
    """:func:`record_profile`'s record as a profile: its layers in their recorded order (each file's
    ``extends`` already resolved there), validated as when loaded. The sha256 is computed afresh:
    compare it with the record's to tell whether this deid reads the record as the run did."""
    try:
        parsed = [
            _parse_layer(entry["text"], f"{entry['name']} (as the run recorded it)", Path(f"<recorded {i}>"),
                         builtin=bool(entry["builtin"]))
            for i, entry in enumerate(doc["layers"])
        ]
    except (KeyError, TypeError) as exc:
        raise ProfileError(f"a recorded profile without {exc}: not one deid wrote") from None
    layers = [dataclasses.replace(layer, extends=()) for layer in parsed]
    return Profile(str(doc["name"]), str(doc["version"]), layers, _settings_for(layers))
