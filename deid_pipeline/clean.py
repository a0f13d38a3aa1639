"""The C (clean) action on free text: remove identifying words, keep the clinical ones.

Three passes, each conservative on its own:
1. the file's own ``phi_terms`` (names, IDs, dates in common formats, institution), matched whole-word
   and case-insensitively, longest first; a number's digits also split or regrouped by spaces, dashes
   or dots (a telephone number's and a date's too), a date also in short forms ("1 2 2019"), a name's
   parts also with letters after them (:func:`_mark_terms`);
2. presidio-analyzer *pattern* recognizers (phone, e-mail, dates, SSN, URL, IP). The engine runs with a
   no-op NLP engine (no spaCy model, no network) and is built once per process, when the first value
   that one of them could match comes (:func:`may_match_a_pattern`): importing presidio takes seconds;
3. tokens with a run of five or more digits (IDs, accession numbers, compact dates).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import date
from itertools import chain
from typing import Any

log = logging.getLogger(__name__)

PRESIDIO_ENTITIES = ("PHONE_NUMBER", "EMAIL_ADDRESS", "DATE_TIME", "US_SSN", "URL", "IP_ADDRESS", "LABELLED_ID")
PRESIDIO_MIN_SCORE = 0.3
MIN_TERM_LENGTH = 2
_ID_TOKEN = re.compile(r"[A-Za-z0-9]*\d{5,}[A-Za-z0-9]*")  # a run of 5+ digits: IDs, not "512x512"
#: a UID written in text: a root 0-2, five or more components, 16 characters or more (not a version "1.2.3.4")
_UID_IN_TEXT = re.compile(r"(?<![\w.])[0-2](?:\.(?:0|[1-9]\d*)){4,}(?![\w.]|\.\d)")
_UID_MIN_LENGTH = 16
#: a plain decimal ("ratio 0.084906", "1.250000 mm"), not a dotted identifier ("1.2.840.113619"): no ID
_DECIMAL = re.compile(r"(?<![\w.])\d{1,4}\.\d+(?![\w.])|(?<![\w.])\d{1,4}\.\d+(?=\.(?:\s|$))")


# Shapes presidio's recognizers leave (measured: "Nov 12, 2019", "12 November 2019", "3rd March 2021",
# "Jan 2019", "2019-11-12T10:22", "MRN: 1234", an SSN presidio takes for a published sample), given to
# them as extra patterns ((name, regex, score); presidio matches case-insensitively with ``regex``).
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_MONTH_ALONE = _MONTH.replace("|may|", "|(?-i:May)|")  # without a year "may" is a verb
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
EXTRA_DATE_PATTERNS = (
    ("month day, year", rf"\b{_MONTH}\s+{_DAY},?\s+(?:\d{{4}}|'\d{{2}})\b", 0.6),
    ("day month year", rf"\b{_DAY}(?:\s+of)?[\s/,-]+{_MONTH}[\s/,-]+(?:\d{{4}}|'?\d{{2}})\b", 0.6),
    ("month year", rf"\b{_MONTH}[\s/,-]+(?:\d{{4}}|'\d{{2}})\b", 0.5),
    ("month day", rf"\b{_MONTH_ALONE}\s+{_DAY}\b", 0.4),
    ("day month", rf"\b{_DAY}(?:\s+of)?\s+{_MONTH_ALONE}(?![a-z])", 0.4),
    ("date and time", r"\b\d{4}-(?:0?[1-9]|1[0-2])-(?:0?[1-9]|[12]\d|3[01])[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\b", 0.6),
)
#: An identifier after its label: the value goes, the label stays ("MRN: 1234" -> "MRN:")
LABELLED_ID_PATTERNS = (
    ("labelled identifier",
     r"(?<=\b(?:mrn|mr\s*#|med(?:ical)?\s+rec(?:ord)?(?:\s+(?:no|number))?|acc(?:ession)?(?:\s*(?:no|number|#))?"
     r"|pat(?:ient)?\s*id|ssn|id\s*(?:no|number|#)|case\s*(?:no|number|#))\.?\s*[:#=]?\s*)"
     r"[a-z]*\d[a-z0-9-]*\b", 0.5),
)
#: Every SSN shape, published samples included: a de-identifier does not trust a number to be a sample
SSN_SHAPE_PATTERNS = (("ssn shape", r"\b\d{3}([- .])\d{2}\1\d{4}\b", 0.5),)


#: What each recognizer's every match holds: a digit (dates, times, phone numbers, SSNs, IPv4, labelled
#: IDs; any script's, as their ``\d``), an "@" (e-mail), a dot before a letter (a URL's top-level domain)
#: or two colons together (IPv6 in short form; the full form has seven colons, counted apart)
_PATTERN_NEEDS = re.compile(r"[\d@]|\.\w|::")
_IPV6_FULL_COLONS = 7


def may_match_a_pattern(text: str) -> bool:
    """Whether presidio's recognizers could find anything in ``text``: False for a value that holds
    none of what each of their patterns needs, so that such a value is not given to them (about 0.7 ms
    a value) and a process that meets no other does not import presidio (3 s here)."""
    return _PATTERN_NEEDS.search(text) is not None or text.count(":") >= _IPV6_FULL_COLONS


class _TorchRefused(importlib.abc.MetaPathFinder):
    """Refuses torch to one thread's imports (:func:`_without_torch`); other threads import it as ever."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if threading.get_ident() == self.thread and name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@contextlib.contextmanager
def _without_torch() -> Iterator[None]:
    """presidio imports spaCy, whose thinc imports torch when it can: 1.7 s and 185 MiB of a header
    worker's memory (measured here: the import 2.97 s / 291 MiB, without torch 1.28 s / 106 MiB), for
    nothing the pattern recognizers use. While this is open, the calling thread's imports find no torch
    (thinc then works without it); a process that has torch already keeps it."""
    if "torch" in sys.modules:
        yield
        return
    finder = _TorchRefused()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@functools.lru_cache(maxsize=1)
def _analyzer() -> Any:
    """presidio AnalyzerEngine with pattern recognizers only; works offline. None when unavailable."""
    with _without_torch():
        return _build_analyzer()


def _build_analyzer() -> Any:
    try:
        import tldextract
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            DateRecognizer,
            EmailRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            UrlRecognizer,
            UsSsnRecognizer,
        )
    except ImportError:  # pragma: no cover - presidio is a declared dependency
        log.warning("presidio-analyzer not importable; clean uses header terms and digit rules only")
        return None

    offline_tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class _OfflineEmailRecognizer(EmailRecognizer):  # type: ignore[misc]
        """presidio's e-mail check calls tldextract, which fetches the suffix list; use the snapshot."""

        def validate_result(self, pattern_text: str) -> bool:
            return offline_tld(pattern_text.rsplit("@", 1)[-1]).fqdn != ""

    def patterns(rows: tuple[tuple[str, str, float], ...]) -> list[Any]:
        return [Pattern(name, regex, score) for name, regex, score in rows]

    registry = RecognizerRegistry(
        recognizers=[
            PhoneRecognizer(),
            _OfflineEmailRecognizer(),
            DateRecognizer(patterns=DateRecognizer.PATTERNS + patterns(EXTRA_DATE_PATTERNS)),
            UsSsnRecognizer(),
            PatternRecognizer("US_SSN", name="SsnShapeRecognizer", patterns=patterns(SSN_SHAPE_PATTERNS)),
            PatternRecognizer("LABELLED_ID", name="LabelledIdRecognizer", patterns=patterns(LABELLED_ID_PATTERNS)),
            UrlRecognizer(),
            IpRecognizer(),
        ]
    )
    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "noop"}])
    nlp.load()
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])


@functools.lru_cache(maxsize=256)
def _terms_pattern(terms: frozenset[str]) -> re.Pattern[str] | None:
    usable = sorted({t.strip() for t in terms if len(t.strip()) >= MIN_TERM_LENGTH}, key=len, reverse=True)
    if not usable:
        return None
    body = "|".join(re.escape(t) for t in usable)
    return re.compile(rf"(?<![^\W_])(?:{body})(?![^\W_])", re.IGNORECASE)


#: Separators that go with a removed word (``"Smith, John"``); line breaks and sentence ends stay
_JOINED = frozenset(" \t,;:/\\^|_-")
_CLOSING = frozenset(".,;:!?)]}")


def _splice(value: str, drop: bytearray) -> str:
    """``value`` without the dropped characters and the separators beside them; each removal leaves one
    space between words, nothing at a line's or the value's ends or before punctuation. What no removal
    touches (line breaks, padding, a closing full stop) stays as it was."""
    n = len(value)
    runs: list[tuple[int, int]] = []
    i = 0
    while i < n:
        if not drop[i]:
            i += 1
            continue
        start = i
        while i < n and drop[i]:
            i += 1
        while start > 0 and value[start - 1] in _JOINED:
            start -= 1
        end = i
        while end < n and (value[end] in _JOINED or drop[end]):
            end += 1
        i = end
        if runs and start <= runs[-1][1]:
            start = runs.pop()[0]
        runs.append((start, end))
    pieces, kept = [], 0
    for start, end in runs:
        left, right = value[kept:start], value[end:]
        pieces.append(left)
        at_edge = (not any(pieces) or pieces[-1].endswith(("\n", "\r")) or not right
                   or right[0] in "\r\n" or right[0] in _CLOSING)
        pieces.append("" if at_edge else " ")
        kept = end
    pieces.append(value[kept:])
    return "".join(pieces)


#: Values up to this long keep presidio's answer for the next file (:func:`_presidio_spans`)
_REMEMBERED_LENGTH = 1024


def _presidio_spans(text: str) -> tuple[tuple[int, int], ...]:
    """Where presidio's recognizers find something in ``text`` (at :data:`PRESIDIO_MIN_SCORE` or more)."""
    if not may_match_a_pattern(text):
        return ()
    if len(text) <= _REMEMBERED_LENGTH:
        return _remembered_spans(text)
    return _analyzed_spans(text)


@functools.lru_cache(maxsize=4096)
def _remembered_spans(text: str) -> tuple[tuple[int, int], ...]:
    """:func:`_analyzed_spans`, remembered in this process: a series' files repeat their values (a
    protocol's comment, a description with a number), and presidio's analysis (its phone number
    matcher tries eight regions) was most of what clean cost: 1.7x files/s when remembered, on the
    header benchmark's corpus under ``basic+clean-descriptors``. Never written anywhere."""
    return _analyzed_spans(text)


def _analyzed_spans(text: str) -> tuple[tuple[int, int], ...]:
    engine = _analyzer()
    if engine is None:
        return ()
    results = engine.analyze(text=text, language="en", entities=list(PRESIDIO_ENTITIES))
    return tuple((r.start, r.end) for r in results if r.score >= PRESIDIO_MIN_SCORE)


@functools.lru_cache(maxsize=256)
def lowered_terms(terms: frozenset[str]) -> tuple[str, ...]:
    """The terms clean and T look for, lower-cased (a value holding none of them is left as it is)."""
    return tuple({t.strip().lower() for t in terms if len(t.strip()) >= MIN_TERM_LENGTH})


#: A number of the file's own (an ID, a compact date) is found with its digits split by these too
#: ("9988 7766", "9988-7766", "99 88 77 66" for ``99887766``; "(555) 1234567"): up to three of them between two digits
SPLIT_DIGIT_SEPARATORS = " \t-./_()"
_SPLIT_GAP = "[" + re.escape(SPLIT_DIGIT_SEPARATORS) + "]{0,3}"
_SQUEEZE = str.maketrans("", "", SPLIT_DIGIT_SEPARATORS)
#: ... when it has this many digits at least (as an ID's digits, ``tags._ID_PARTS``: shorter is any number)
MIN_SPLIT_DIGITS = 5
#: A value of the file's written with punctuation between its digits (a telephone number ``555-123-4567``,
#: an SSN, a date ``03/12/1965``) is found by its digits too, grouped otherwise ("555 1234567", "0312 1965"),
#: when it has this many digits at least (as verify compares telephone numbers): a date's short forms
#: ("1/2/2019") have fewer, which a decimal ("122.019") would match
MIN_REGROUPED_DIGITS = 7
#: such a number: digits with spaces (ASCII whitespace, a line break apart), dashes, dots, slashes or brackets
_PUNCTUATED = r"\+?\(?\d[\d\t\x0b\x0c\r\x1c-\x1f \-./()]*\d\)?"
_PUNCTUATED_NUMBER = re.compile(_PUNCTUATED.replace(r"\t", r"\t\n"))  # a term holding a line break
#: ... or a number alone, as a whole line of the terms joined by line breaks
_NUMBER_LINES = re.compile(rf"^(?:{_PUNCTUATED}|\d+)$", re.MULTILINE)
NOT_DIGIT_BYTES = bytes(b for b in range(256) if not 0x30 <= b <= 0x39)
#: A person's name part is found with letters after it: ``s`` / ``es`` (a plural or a possessive
#: without its apostrophe, "Canarys") after a part of 3 letters or more, any letters ("Canarysons",
#: "CanaryZqxgiven") after one of 6 or more. Shorter parts would take common words ("Ha" in "has",
#: "Lumb" in "lumbar", "Head" in "header"; measured in benchmarks/README.md). Such a part is also
#: found joined by a hyphen to a word before or after it ("Smith-Jones": a double surname) and with
#: a number after it ("Canary2", "Canary_2").
MIN_INFLECTED_NAME = 3
MIN_PREFIX_NAME = 6
_INFLECTIONS = "(?:e?s|'s)"  # a possessive's apostrophe goes with the name
_HYPHENED = r"[^\W\d_]+-"
_AFTER_NAME = r"(?:-[^\W\d_]+)?(?:[-_]?\d+)?"
#: Punctuation inside a name's part ("O'Brien", "Smith-Jones"): the part is a name's part with it, and
#: so is each piece between it
NAME_PUNCTUATION = re.compile(r"[-']")
#: Typographic forms of that punctuation, read as the ASCII mark in terms and text alike (one character
#: for one: a match's offsets stand): apostrophes and quotes used as ones (’ ‘ ` ´ ʼ ′ ＇) and hyphens,
#: a figure or en dash, a minus (‐ ‑ ‒ – − ﹣ －). Not an em dash: it sets words apart ("Smith—knee").
TYPOGRAPHIC = str.maketrans(dict.fromkeys("\u2019\u2018`\u00b4\u02bc\u2032\uff07", "'")
                            | dict.fromkeys("\u2010\u2011\u2012\u2013\u2212\ufe63\uff0d", "-"))


def plain_punctuation(text: str) -> str:
    """``text`` with its :data:`TYPOGRAPHIC` punctuation in ASCII ("O’Brien" as "O'Brien")."""
    return text if text.isascii() and "`" not in text else text.translate(TYPOGRAPHIC)


@functools.lru_cache(maxsize=1)
def _country_codes() -> frozenset[str]:
    """The ITU-T E.164 country calling codes, from libphonenumber's metadata (``phonenumbers``)."""
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

    return frozenset(str(code) for code in COUNTRY_CODE_TO_REGION_CODE)


def phone_core(number: str) -> str:
    """The digits of a telephone number as written (``+1 555 123 4567``, ``verify._PHONE``) that stay
    whatever way it is written: without its country code (after ``+`` or ``00``: E.164 codes are
    prefix-free, so the first of 1-3 digits that is one), a national trunk ``0``, or North America's
    ``1`` before ten digits. A code no country has stays part of the number."""
    digits = re.sub(r"\D", "", number)
    if number.startswith("+") or digits.startswith("00"):
        rest = digits if number.startswith("+") else digits[2:]
        code = next((rest[:n] for n in (1, 2, 3) if rest[:n] in _country_codes()), "")
        return rest[len(code):]
    if len(digits) == 11 and digits.startswith("1"):
        return digits[1:]
    return digits[1:] if digits.startswith("0") else digits


@functools.lru_cache(maxsize=256)
def split_digit_terms(terms: frozenset[str]) -> tuple[str, ...]:
    """The numbers among ``terms`` found with their digits split: the terms that are numbers of
    :data:`MIN_SPLIT_DIGITS` digits or more (IDs, compact dates), and the digits of those that are
    numbers with punctuation (telephone numbers, SSNs, dates) of :data:`MIN_REGROUPED_DIGITS` or more; of
    an international telephone number (``+`` or ``00``), also its national digits (:func:`phone_core`),
    with a trunk ``0`` before them and without."""
    stripped = {t.strip() for t in terms}
    lines = "\n".join(stripped)  # one pass of a regex over all of them, a term a line: a file has ~100 dates
    broken: list[str] = []
    if not lines.isascii() or lines.count("\n") != len(stripped) - 1:  # a term not ASCII, or holding a line break
        broken = [t for t in stripped if t.isascii() and "\n" in t]
        lines = "\n".join(t for t in stripped if t.isascii() and "\n" not in t)
    out = set()
    for t in [m.group() for m in _NUMBER_LINES.finditer(lines)] + [t for t in broken if _PUNCTUATED_NUMBER.fullmatch(t)]:
        if t.isdigit():
            if len(t) >= MIN_SPLIT_DIGITS:
                out.add(t)
            continue
        digits = t.encode().translate(None, NOT_DIGIT_BYTES).decode()
        if len(digits) < MIN_REGROUPED_DIGITS:
            continue
        out.add(digits)
        if t.startswith("+") or digits.startswith("00"):  # written at home: no country code, a trunk 0
            core = phone_core(t)
            if len(core) >= MIN_REGROUPED_DIGITS:
                out.update((core, core if core.startswith("0") else "0" + core))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _split_pattern(found: frozenset[str]) -> re.Pattern[str]:
    body = "|".join(_SPLIT_GAP.join(t) for t in sorted(found, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{body})(?![^\W_])")


def split_digits_in(text: str, numbers: tuple[str, ...]) -> Iterator[re.Match[str]]:
    """Where ``numbers`` (:func:`split_digit_terms`) stand in ``text`` as whole words, their digits
    together or split by :data:`SPLIT_DIGIT_SEPARATORS`."""
    squeezed = text.translate(_SQUEEZE)
    found = frozenset(t for t in numbers if t in squeezed)
    return _split_pattern(found).finditer(text) if found else iter(())


#: A date of the file's as :func:`tags.date_variants` writes every one (``2019-01-02``)
_ISO_DATE_LINES = re.compile(r"^\d{4}-\d\d-\d\d$", re.MULTILINE)
#: Between a short date's numbers (:func:`short_dates_in`): spaces, or a mark with spaces round it or not
_DATE_SPACE = "[ \t]+"
_DATE_MARKS = "-./_"
_DATE_MARK = rf"[ \t]*[{re.escape(_DATE_MARKS)}][ \t]*"
_DATE_GAP = rf"(?:{_DATE_MARK}|{_DATE_SPACE})"


@functools.lru_cache(maxsize=256)
def file_dates(terms: frozenset[str]) -> tuple[tuple[int, int, int], ...]:
    """The dates among ``terms`` (year, month, day), found by their ISO form, which
    :func:`tags.date_variants` writes for every date of the file."""
    out = set()
    for m in _ISO_DATE_LINES.finditer("\n".join(t for t in terms if len(t) == 10)):
        with contextlib.suppress(ValueError):  # an ID written so, not a date
            d = date.fromisoformat(m.group())
            out.add((d.year, d.month, d.day))
    return tuple(sorted(out))


def _short_forms(y: int, m: int, d: int) -> list[str]:
    """Regexes of a date's short forms (:func:`short_dates_in`)."""
    def number(n: int) -> str:
        return f"0?{n}" if n < 10 else str(n)

    day, month, padded_day, padded_month = number(d), number(m), f"{d:02d}", f"{m:02d}"
    year, yy = str(y), f"{y % 100:02d}"
    forms = [_DATE_GAP.join(order) for order in ((day, month, year), (month, day, year), (year, month, day))]
    forms += [_DATE_MARK.join(order) for order in ((day, month, yy), (month, day, yy), (yy, month, day))]
    forms += [_DATE_SPACE.join(order) for order in ((padded_day, padded_month, yy), (padded_month, padded_day, yy),
                                                     (yy, padded_month, padded_day))]
    return forms


@functools.lru_cache(maxsize=256)
def _dates_pattern(dates: frozenset[tuple[int, int, int]]) -> re.Pattern[str]:
    body = "|".join(form for day in sorted(dates) for form in _short_forms(*day))
    return re.compile(rf"(?=\d)(?<![^\W_])(?<!\d[.,])(?:{body})(?![^\W_]|[.,]\d)")  # a digit first: faster


@functools.lru_cache(maxsize=256)
def _two_digit_years(dates: tuple[tuple[int, int, int], ...]) -> tuple[tuple[str, tuple[int, int, int]], ...]:
    """Each of ``dates`` with its year's last two digits (each of its short forms holds them)."""
    return tuple((f"{day[0] % 100:02d}", day) for day in dates)


def short_dates_in(text: str, dates: tuple[tuple[int, int, int], ...]) -> Iterator[re.Match[str]]:
    """Where ``dates`` (:func:`file_dates`) stand in ``text`` as whole words in short forms: day, month
    and year in day-month-year, month-day-year or year-month-day order, day and month with a leading zero
    or not, apart by a space or a mark (``-./_``, spaces round it or not): ``1 2 2019``, ``2019_1_2``,
    ``1 / 2 / 2019``. With a 2-digit year only where both gaps are marks (``19.1.2``, ``2/1-19``) or day
    and month are written with two digits (``01 02 19``): ``1 2 19 mm`` is a list of numbers as often
    as a date. Not inside a dotted or decimal number (``2019.1.2.5``)."""
    found = [day for yy, day in _two_digit_years(dates) if yy in text]
    return _dates_pattern(frozenset(found)).finditer(text) if found else iter(())


@functools.lru_cache(maxsize=256)
def name_stems(terms: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The parts of the persons' names among ``terms`` (lower case, letters only, or letters with
    :data:`NAME_PUNCTUATION` inside: then each piece too) that are found with letters after them: (parts
    of :data:`MIN_PREFIX_NAME` letters or more, any letters after; parts of :data:`MIN_INFLECTED_NAME`
    or more, ``s`` / ``es`` / ``'s`` after). A name is a term holding a PN's component separator ``^``
    (``tags._name_terms`` writes a one-part name so too)."""
    parts = set()
    for t in terms:
        if "^" in t:
            for p in re.split(r"[\^\s,]+", t.lower()):
                pieces = NAME_PUNCTUATION.split(p)
                if all(q.isalpha() for q in pieces):
                    parts.update([p, *pieces] if len(pieces) > 1 else pieces)

    def letters(p: str) -> int:
        return len(NAME_PUNCTUATION.sub("", p))

    return (tuple(sorted(p for p in parts if letters(p) >= MIN_PREFIX_NAME)),
            tuple(sorted(p for p in parts if letters(p) >= MIN_INFLECTED_NAME)))


@functools.lru_cache(maxsize=256)
def _stems_pattern(prefixes: frozenset[str], inflected: frozenset[str]) -> re.Pattern[str]:
    def either(parts: frozenset[str]) -> str:
        return "|".join(map(re.escape, sorted(parts, key=len, reverse=True)))

    body = "|".join(([f"(?:{either(prefixes)})[^\\W\\d_]*{_INFLECTIONS}?"] if prefixes else [])
                    + ([f"(?:{either(inflected)}){_INFLECTIONS}?"] if inflected else []))
    return re.compile(rf"(?<![^\W_])(?:{_HYPHENED})?(?:{body}){_AFTER_NAME}(?![^\W_])", re.IGNORECASE)


def _mark_terms(value: str, phi_terms: frozenset[str], drop: bytearray, inflected: bool = True) -> None:
    """Mark in ``drop`` the file's own identifying values in ``value`` (whole words, any case); the
    pattern is built of the few terms the value holds, not of the file's every date rendering. Its
    numbers are found with their digits split too (:func:`split_digits_in`), its dates in short forms
    (:func:`short_dates_in`) and, with ``inflected``, its names' parts with letters after them
    (:func:`name_stems`). Typographic punctuation is read as ASCII (:func:`plain_punctuation`: "O’Brien"
    is the term "O'Brien")."""
    value = plain_punctuation(value)
    low = value.lower()
    found = frozenset(t for t in lowered_terms(phi_terms) if t in low)
    pattern = _terms_pattern(found) if found else None  # most values hold none: no pattern to build
    if pattern is not None:
        for m in pattern.finditer(value):
            drop[m.start() : m.end()] = b"\1" * (m.end() - m.start())
    if _HAS_DIGIT(value):
        numbers, dates = split_digit_terms(phi_terms), file_dates(phi_terms)
        for m in chain(split_digits_in(value, numbers) if numbers else (), short_dates_in(value, dates) if dates else ()):
            drop[m.start() : m.end()] = b"\1" * (m.end() - m.start())
    if not inflected:
        return
    prefixes, short = name_stems(phi_terms)
    if prefixes or short:
        longer = frozenset(p for p in prefixes if p in low)
        shorter = frozenset(p for p in short if p in low)
        if longer or shorter:
            for m in _stems_pattern(longer, shorter).finditer(value):
                drop[m.start() : m.end()] = b"\1" * (m.end() - m.start())


_HAS_DIGIT = re.compile(r"\d").search


def remove_terms(value: str, phi_terms: frozenset[str], uid: Callable[[str], str] | None = None,
                 inflected: bool = True) -> str:
    """``value`` without the file's own identifying values (whole words, any case; :func:`_mark_terms`,
    names with letters after them where ``inflected``); the rest as it was. ``uid``: a UID written in
    the text is given by it whole, as in :func:`clean_text`."""
    if not value:
        return value
    protected: list[tuple[int, int]] = []
    if uid is not None:
        value, protected = _with_uids(value, uid)
    drop = bytearray(len(value))
    _mark_terms(value, phi_terms, drop, inflected)
    for start, end in protected:
        drop[start:end] = bytes(end - start)
    return _splice(value, drop) if any(drop) else value


#: Bytes that may hold a UID written in text (:data:`_UID_IN_TEXT`'s five components): a cheap test
#: before a value is read.
_UID_IN_BYTES = re.compile(rb"[0-2](?:\.\d+){4,}")


def may_hold_uid(raw: bytes) -> bool:
    """Whether ``raw`` may hold a UID written in text (False: it holds none)."""
    return _UID_IN_BYTES.search(raw) is not None


def _with_uids(value: str, uid: Callable[[str], str]) -> tuple[str, list[tuple[int, int]]]:
    """``value`` with each UID written in it given by ``uid`` (its keyed replacement), and their spans."""
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = length = 0
    for m in _UID_IN_TEXT.finditer(value):
        if len(m.group()) < _UID_MIN_LENGTH:
            continue
        before, new = value[pos : m.start()], uid(m.group())
        pieces += [before, new]
        length += len(before)
        spans.append((length, length + len(new)))
        length += len(new)
        pos = m.end()
    pieces.append(value[pos:])
    return "".join(pieces), spans


def clean_text(value: str, phi_terms: frozenset[str], use_presidio: bool = True,
               uid: Callable[[str], str] | None = None) -> str:
    """``value`` without identifying text; clinical words stay, and so does the rest of the value as it
    was (line breaks, punctuation): a value with nothing to take out comes back unchanged. May return
    an empty string. ``uid``: a UID written in the text is given by it whole (its keyed replacement,
    as the header's UIDs are replaced) instead of losing its long parts as identifiers."""
    if not value:
        return value
    protected: list[tuple[int, int]] = []
    if uid is not None:
        value, protected = _with_uids(value, uid)
    drop = bytearray(len(value))
    _mark_terms(value, phi_terms, drop)

    def blanked() -> str:  # the value with what is dropped so far as spaces: the same offsets
        return "".join(" " if d else c for c, d in zip(value, drop))

    if use_presidio:
        for start, end in _presidio_spans(blanked()):
            drop[start:end] = b"\1" * (end - start)
    text = blanked()
    decimals = [m.span() for m in _DECIMAL.finditer(text)]
    for m in _ID_TOKEN.finditer(text):
        if not any(a <= m.start() and m.end() <= b for a, b in decimals):
            drop[m.start() : m.end()] = b"\1" * (m.end() - m.start())
    for start, end in protected:  # a UID stands whole, replaced (or kept) as the header's are
        drop[start:end] = bytes(end - start)
    return _splice(value, drop) if any(drop) else value
