"""Where detection runs, decided in one place.

Order: an explicit request, then the ``DEID_DEVICE`` environment variable, then a CUDA probe.
Falling back to the CPU is logged once as a warning so a slow run on a GPU host is visible.
"""

from __future__ import annotations

import logging
import os

from ..errors import ConfigError

logger = logging.getLogger(__name__)

_warned_cpu = False


def cuda_available() -> bool:
    """True when torch sees a usable CUDA device."""
    try:
        import torch

        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # a broken driver must not stop a CPU run
        return False


def _normalise(device: str) -> str:
    d = device.strip().lower()
    if d == "cuda":
        return "cuda:0"
    if d == "cpu" or (d.startswith("cuda:") and d[5:].isdigit()):
        return d
    raise ConfigError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def choose_device(requested: str = "auto") -> str:
    """Return "cpu" or "cuda:N" for ``requested`` ("auto", "cpu", "cuda", "cuda:N").

    ``DEID_DEVICE`` overrides "auto". Asking for CUDA on a host without it is a configuration error,
    not a silent fallback.
    """
    global _warned_cpu
    req = (requested or "auto").strip().lower()
    if req == "auto":
        req = os.environ.get("DEID_DEVICE", "auto").strip().lower() or "auto"
    if req != "auto":
        dev = _normalise(req)
        if dev.startswith("cuda") and not cuda_available():
            raise ConfigError(f"device {dev} requested but CUDA is not available")
        return dev
    if cuda_available():
        return "cuda:0"
    if not _warned_cpu:
        logger.warning("CUDA not available: text detection runs on the CPU (fp32), expect lower throughput")
        _warned_cpu = True
    return "cpu"
