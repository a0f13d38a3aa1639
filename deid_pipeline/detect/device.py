"""Where detection runs, decided in one place.

Order: an explicit request, then the ``DEID_DEVICE`` environment variable, then a CUDA probe.
Falling back to the CPU is logged once as a warning so a slow run on a GPU host is visible.
"""

from __future__ import annotations

import logging
import os
import sys

from ..errors import ConfigError
from ..prestart import QUICK_EXIT_ENV

logger = logging.getLogger(__name__)

_warned_cpu = False

#: Device nodes of the kernel drivers behind ``torch.cuda`` on Linux: NVIDIA (desktop and data centre,
#: containers included), NVIDIA Tegra/Jetson, WSL 2's GPU paravirtualisation, AMD ROCm.
GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/nvhost-ctrl", "/dev/nvmap", "/dev/dxg",
             "/dev/kfd")


def gpu_possible() -> bool:
    """Whether this host could have a GPU for torch at all, without importing torch (~1.5 s and ~190 MB):
    on Linux one of :data:`GPU_NODES` must exist; elsewhere torch is asked."""
    return not sys.platform.startswith("linux") or any(os.path.exists(p) for p in GPU_NODES)


def cuda_available(quick: bool = True) -> bool:
    """True when torch sees a usable CUDA device. ``quick``: False at once on a host with no GPU driver
    (:func:`gpu_possible`); an explicit request for CUDA asks torch whatever the host looks like."""
    if quick and not gpu_possible():
        return False
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
        if dev.startswith("cuda") and not cuda_available(quick=False):
            raise ConfigError(f"device {dev} requested but CUDA is not available")
        return dev
    if cuda_available():
        return "cuda:0"
    if not _warned_cpu:
        # a worker of deid's own local cluster: its driver warned once for all of them (``batch.dask_client``)
        local_worker = os.environ.get(QUICK_EXIT_ENV) == "1"
        logger.log(logging.INFO if local_worker else logging.WARNING,
                   "CUDA not available: text detection runs on the CPU (fp32), expect lower throughput")
        _warned_cpu = True
    return "cpu"
