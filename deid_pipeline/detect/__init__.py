"""Text detectors behind one registry.

``get_detector(name, device)`` returns a cached ``TextDetector`` per (name, device) in this process.
Each backend declares what it needs and answers ``is_available()``; a missing one is reported with the
package or file to install, never downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError
from ..resources import models_dir
from ..types import Region
from .device import choose_device

__all__ = ["TextDetector", "UNION", "get_detector", "detector_problem", "canonical_name", "is_available", "available_detectors", "choose_device"]


@runtime_checkable
class TextDetector(Protocol):
    name: str
    weights_sha256: str
    device: str

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Region]]: ...


def _network_missing(weights_file: str, how: str) -> str:
    """What a torch network with the DB post-process (OpenCV) lacks: a package, or its weights in models/."""
    if importlib.util.find_spec("torch") is None:
        return "package torch is not installed"
    if importlib.util.find_spec("cv2") is None:
        return "package opencv-python-headless is not installed"
    if not (models_dir() / weights_file).is_file():
        return f"weights models/{weights_file} not found (see {how})"
    return ""


def _dbnet_missing() -> str:
    from .dbnet import WEIGHTS_FILE

    return _network_missing(WEIGHTS_FILE, "scripts/convert_ppocr_det.py")


def _make_dbnet(device: str) -> TextDetector:
    from .dbnet import DBNetDetector

    return DBNetDetector(device=device)


def _textseg_missing() -> str:
    from .textseg import WEIGHTS_FILE

    return _network_missing(WEIGHTS_FILE, "scripts/train_textseg.py")


def _make_textseg(device: str) -> TextDetector:
    from .textseg import TextSegDetector

    return TextSegDetector(device=device)


UNION = "ppocrv4-det+deid-textseg"


def _union_missing() -> str:
    return "; ".join(m for m in (_dbnet_missing(), _textseg_missing()) if m)


def _make_union(device: str) -> TextDetector:
    from .union import UnionDetector

    # PP-OCRv4 on the first view of a frame (min-max or "upper", colour), deid-textseg on every view (a
    # big frame's ``fine`` one too)
    first_views = frozenset({"full", "upper", "rgb"})
    return UnionDetector(UNION, [get_detector("ppocrv4-det", device), get_detector("deid-textseg", device)],
                         member_kinds=[first_views, None])


# name -> (what is missing, factory)
_BACKENDS: dict[str, tuple[Callable[[], str], Callable[[str], TextDetector]]] = {
    "ppocrv4-det": (_dbnet_missing, _make_dbnet),
    "deid-textseg": (_textseg_missing, _make_textseg),
    UNION: (_union_missing, _make_union),
}
# auto: both networks, the most complete (models/MODEL_CARD.md); deid-textseg alone is ~3x faster end to end on a CPU
_ALIASES = {"auto": UNION, "union": UNION, "dbnet": "ppocrv4-det", "textseg": "deid-textseg"}
_cache: dict[tuple[str, str], TextDetector] = {}
_lock = threading.Lock()


def available_detectors() -> dict[str, str]:
    """Every backend name and "" when usable, else what is missing."""
    return {name: missing() for name, (missing, _) in _BACKENDS.items()}


def is_available(name: str = "auto") -> bool:
    """True when the backend's packages and weights are present."""
    key = canonical_name(name)
    return key in _BACKENDS and _BACKENDS[key][0]() == ""


def canonical_name(name: str) -> str:
    """The registry name behind an alias ("auto" -> "ppocrv4-det+deid-textseg")."""
    return _ALIASES.get(name, name)


def detector_problem(name: str) -> str:
    """Why ``name`` cannot be used ("" when it can): an unknown name or what is missing."""
    key = canonical_name(name)
    if key not in _BACKENDS:
        return f"unknown text detector {name!r}; known: {', '.join(sorted(_BACKENDS))} (or auto)"
    missing = _BACKENDS[key][0]()
    return f"text detector {key} unavailable: {missing}" if missing else ""


def get_detector(name: str = "auto", device: str = "auto") -> TextDetector:
    """The detector ``name`` on ``device`` ("auto" | "cpu" | "cuda[:N]"), loaded once per process."""
    problem = detector_problem(name)
    if problem:
        raise ConfigError(problem)
    key = canonical_name(name)
    dev = choose_device(device)
    with _lock:
        det = _cache.get((key, dev))
    if det is None:  # built outside the lock: a union loads its members through get_detector
        det = _BACKENDS[key][1](dev)
        with _lock:
            det = _cache.setdefault((key, dev), det)
    return det
