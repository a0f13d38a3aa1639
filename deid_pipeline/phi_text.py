"""phi-text mode: read each detected region and keep only the PHI ones for redaction.

A region is redacted when its text
* is unreadable or empty (fail safe), or
* matches one of the file's own identifying header values (``phi_terms``, from the header stage) in a
  common rendering: case, punctuation and spacing ignored; names by component; dates as YYYYMMDD,
  DD.MM.YYYY, MM/DD/YYYY, YYYY-MM-DD, DD-MON-YY and friends; or
* is flagged by presidio-analyzer's pattern recognizers (dates, times, phone, e-mail, SSN, long IDs), or
* holds any word that is neither on the device-text vocabulary (``configs/device_text_vocabulary.txt``
  when present, else the built-in list) nor a measurement / acquisition parameter (numbers with units).

Reading uses PaddleOCR's PP-OCRv4 recogniser (``models/ppocrv4_rec.onnx``, Apache-2.0) through
onnxruntime, an optional backend (``Recognizer.is_available()``). Without it every region is kept for
redaction, which is the all-text behaviour. OCR text never leaves this module: not returned, not logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from .resources import configs_dir, models_dir
from .types import Region

logger = logging.getLogger(__name__)

REC_FILE = "ppocrv4_rec.onnx"
REC_SHA256 = "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"
_BUILTIN_VOCAB = """
adv breast abd abdomen pelvis thyroid carotid cardiac liver kidney renal vascular msk mskel cine
gen pen res dyn dr mi tis tib tic ti mi= tis= fr hz bpm cm mm db gain dep depth zoom frq freq
2d 3d 4d cw pw cf pwr color colour doppler harmonic thi nav comp map persist wall filter scale
prf angle sv l r a p h f s i ap pa lat ax sag cor tra axial sagittal coronal left right ant post
kv kvp mas ma ms sec s wl ww w l c tilt slice thk thickness fov mat matrix se im ser img image
series acq rec kernel pitch rot ctdi dlp mgy mgycm spacing contrast pre post scout topogram
mr ct us cr dx xa mg nm pt ot sc te tr ti fa etl nex bw echo flip avg gre tse fse epi dwi adc
stir flair t1 t2 pd grid portable supine prone upright erect sid view lmlo rmlo lcc rcc
ultrasound power probe preset exam trans long sag trv cursor caliper dist area vol volume
""".split()
_UNIT = re.compile(
    r"^[<>=~+\-]?\d+([.,:/]\d+)*\s*(%|cm|mm|m|hz|khz|mhz|db|s|ms|bpm|kv|kvp|mas|ma|mgy|cgy|x|fps|deg|°|cm/s|mm/s)?$",
    re.I)
_PATTERNS = [  # general PHI shapes, besides presidio
    re.compile(r"\d{1,4}[./\-]\d{1,2}[./\-]\d{2,4}"),  # dates
    re.compile(r"\d{1,2}:\d{2}(:\d{2})?"),  # times
    re.compile(r"\d{5,}"),  # IDs, accession numbers, compact dates
    re.compile(r"\d{1,2}[\- ]?(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*[\- ]?\d{2,4}", re.I),
]


class Recognizer:
    """PP-OCRv4 text recognition (CTC) on onnxruntime's CPU provider."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime as ort

        from .detect.dbnet import file_sha256

        p = path or models_dir() / REC_FILE
        if file_sha256(p) != REC_SHA256:
            raise ValueError(f"models/{REC_FILE} sha256 mismatch")
        self._sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        meta = self._sess.get_modelmeta().custom_metadata_map
        self._chars = ["<blank>"] + meta["character"].splitlines() + [" "]

    @staticmethod
    def is_available() -> bool:
        import importlib.util

        return importlib.util.find_spec("onnxruntime") is not None and (models_dir() / REC_FILE).is_file()

    def read(self, crops: list[np.ndarray]) -> list[str]:
        """Text of each uint8 RGB crop (greedy CTC)."""
        import cv2

        out = []
        for crop in crops:
            h, w = crop.shape[:2]
            if h < 2 or w < 2:
                out.append("")
                continue
            nw = max(16, min(1600, int(np.ceil(48 * w / h))))
            x = cv2.resize(np.ascontiguousarray(crop[..., ::-1]), (nw, 48)).astype(np.float32)
            x = ((x / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
            prob = self._sess.run(None, {self._sess.get_inputs()[0].name: x})[0][0]
            idx = prob.argmax(axis=1)
            chars = [self._chars[i] for k, i in enumerate(idx) if i != 0 and (k == 0 or i != idx[k - 1]) and i < len(self._chars)]
            out.append("".join(chars))
        return out


@lru_cache(maxsize=1)
def _recognizer() -> Recognizer | None:
    if not Recognizer.is_available():
        logger.warning("phi-text: onnxruntime or models/%s missing; every text region is redacted", REC_FILE)
        return None
    return Recognizer()


@lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    p = configs_dir() / "device_text_vocabulary.txt"
    words = set(_BUILTIN_VOCAB)
    if p.is_file():
        for line in p.read_text().splitlines():
            line = line.split("#", 1)[0].strip().lower()
            if line:
                words.update(line.split())
    return frozenset(words)


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpArtifacts  # noqa: F401
        from presidio_analyzer.predefined_recognizers import (
            DateRecognizer, EmailRecognizer, PhoneRecognizer, UsSsnRecognizer)
    except Exception:
        return None
    registry = RecognizerRegistry()
    for rec in (DateRecognizer(), EmailRecognizer(), PhoneRecognizer(), UsSsnRecognizer()):
        registry.add_recognizer(rec)
    return registry


def _norm(s: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", s.upper())


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def term_variants(terms: Iterable[str]) -> frozenset[str]:
    """Normalised forms of the header's identifying values to look for in OCR text."""
    out: set[str] = set()
    for t in terms:
        t = str(t)
        for part in re.split(r"[\^\s,]+", t) + [t]:
            n = _norm(part)
            if len(n) >= 3:
                out.add(n)
        m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", t.strip())
        if m:
            y, mo, d = m.groups()
            for v in (f"{y}{mo}{d}", f"{d}{mo}{y}", f"{mo}{d}{y}", f"{d}{mo}{y[2:]}", f"{mo}{d}{y[2:]}"):
                out.add(v)
            if 1 <= int(mo) <= 12:
                out.add(f"{d}{_MONTHS[int(mo) - 1]}{y[2:]}")
                out.add(f"{d}{_MONTHS[int(mo) - 1]}{y}")
    return frozenset(out)


def is_phi_text(text: str, variants: frozenset[str], vocab: frozenset[str] | None = None) -> bool:
    """The decision for one region's text (see the module docstring)."""
    vocab = vocab if vocab is not None else vocabulary()
    if not text.strip():
        return True
    n = _norm(text)
    if any(v in n for v in variants if len(v) >= 3):
        return True
    if any(p.search(text) for p in _PATTERNS):
        return True
    reg = _analyzer()
    if reg is not None:
        for rec in reg.recognizers:
            try:
                if rec.analyze(text, rec.supported_entities, None):
                    return True
            except Exception:
                return True
    for word in re.split(r"[\s:;,()\[\]]+", text):
        w = word.strip().lower().strip(".*-_'\"")
        if not w or _UNIT.match(w) or w in vocab or re.fullmatch(r"([a-z]{1,4}\s*[=:<>]?\s*\d+([.,]\d+)?[a-z%]{0,3})+", w):
            continue
        if re.fullmatch(r"[\W\d_]+", w):
            continue
        return True
    return False


def select_phi(ds: Dataset, frame: np.ndarray, regions: list[Region], phi_terms: frozenset[str]) -> list[Region]:
    """The regions of one frame whose text is PHI; fixed regions are always kept."""
    rec = _recognizer()
    if rec is None or not regions:
        return list(regions)
    from .prepare import prepare_views

    views = prepare_views(ds, frame, device="cpu", min_long=1, max_long=100_000, extra_views=False)
    if not views:
        return list(regions)
    v = views[0]
    crops = [v.image[v.oy + r.y : v.oy + r.y + r.h, v.ox + r.x : v.ox + r.x + r.w] for r in regions]
    texts = rec.read(crops)
    variants = term_variants(phi_terms)
    keep = [r for r, t in zip(regions, texts) if r.source == "fixed" or is_phi_text(t, variants)]
    logger.debug("phi-text: %d of %d regions judged PHI", len(keep), len(regions))
    return keep
