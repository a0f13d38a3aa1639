"""The C (clean) action on free text: remove identifying words, keep the clinical ones.

Three passes, each conservative on its own:
1. the file's own ``phi_terms`` (names, IDs, dates in common formats, institution), matched whole-word
   and case-insensitively, longest first;
2. presidio-analyzer *pattern* recognizers (phone, e-mail, dates, SSN, URL, IP). The engine runs with a
   no-op NLP engine (no spaCy model, no network) and is built once per process;
3. tokens with a run of five or more digits (IDs, accession numbers, compact dates).
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

log = logging.getLogger(__name__)

PRESIDIO_ENTITIES = ("PHONE_NUMBER", "EMAIL_ADDRESS", "DATE_TIME", "US_SSN", "URL", "IP_ADDRESS")
PRESIDIO_MIN_SCORE = 0.3
MIN_TERM_LENGTH = 2
_ID_TOKEN = re.compile(r"[A-Za-z0-9]*\d{5,}[A-Za-z0-9]*")  # a run of 5+ digits: IDs, not "512x512"
_SEPARATORS = " \t\r\n-_,;:/\\^|.()[]"


@functools.lru_cache(maxsize=1)
def _analyzer() -> Any:
    """presidio AnalyzerEngine with pattern recognizers only; works offline. None when unavailable."""
    try:
        import tldextract
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
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

    registry = RecognizerRegistry(
        recognizers=[
            PhoneRecognizer(),
            _OfflineEmailRecognizer(),
            DateRecognizer(),
            UsSsnRecognizer(),
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


def _tidy(text: str) -> str:
    text = re.sub(r"\s{2,}", " ", text)
    text = re.sub(r"([-_,;:/\\^|.])(\s*[-_,;:/\\^|.])+", r"\1", text)
    return text.strip(_SEPARATORS)


def _presidio_spans(text: str) -> list[tuple[int, int]]:
    engine = _analyzer()
    if engine is None or not text.strip():
        return []
    results = engine.analyze(text=text, language="en", entities=list(PRESIDIO_ENTITIES))
    return [(r.start, r.end) for r in results if r.score >= PRESIDIO_MIN_SCORE]


def clean_text(value: str, phi_terms: frozenset[str], use_presidio: bool = True) -> str:
    """``value`` without identifying text; clinical words stay. May return an empty string."""
    if not value:
        return value
    text = value
    pattern = _terms_pattern(frozenset(phi_terms))
    if pattern is not None:
        text = pattern.sub(" ", text)
    if use_presidio:
        drop = [False] * len(text)
        for start, end in _presidio_spans(text):
            drop[start:end] = [True] * (end - start)
        text = "".join(" " if d else c for c, d in zip(text, drop))
    text = _ID_TOKEN.sub(" ", text)
    return _tidy(text)
