"""Where the shipped data lives: profiles and tables under ``configs/``, weights under ``models/``."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def configs_dir() -> Path:
    """The configs folder: ``DEID_CONFIGS_DIR`` if set, else the one beside the package."""
    return Path(os.environ.get("DEID_CONFIGS_DIR", _REPO / "configs"))


def models_dir() -> Path:
    """The models folder: ``DEID_MODELS_DIR`` if set, else the one beside the package."""
    return Path(os.environ.get("DEID_MODELS_DIR", _REPO / "models"))
