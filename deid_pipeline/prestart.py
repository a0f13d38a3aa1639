"""Local workers forked from a pre-loaded server, started before the driver's own imports.

Each of deid's local Dask workers is a new process that imports Dask, deid and (when pixels are
scanned) torch, MONAI and OpenCV: ~0.9 s of a core for a header worker, ~2.8 s for a detector worker,
measured here, while the driver imports pydicom and Dask and starts the scheduler. ``deid run`` calls
:func:`start_for_run` first thing, so that one server process (multiprocessing's ``forkserver``) makes
those imports once, on another core, while the driver makes its own; the local cluster then forks its
workers from it (``batch.dask_client``), ready to work. The server only imports: it has one thread (no
pool of torch's, OpenCV's or BLAS' exists in it yet), so no pool is broken by the fork.

A forked worker inherits the server's environment and file-creation mask, not the driver's at the time
it starts (as a spawned one does). The server is therefore started with those a worker of that run gets:
the driver's environment plus the variables the nannies set before spawning (:func:`worker_environ`),
and the run's mask (``config.RUN_UMASK``: nothing a worker writes readable by others). A cluster forks
from it only when those variables and that mask are still the ones its workers get, and has each forked
worker set what changed in the driver's environment since (:func:`fork_environ`); any other cluster
(another kind of run in the same process, a removed variable, another mask, a GPU host, a failed
server) spawns its workers as before. ``deid verify`` does the same (:func:`start_for_verify`) with its
checks' imports. The one waste: a profile that scans no pixels, run without
``--pixels none``, leaves a server that imported torch for nothing, idle until the run ends.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys

log = logging.getLogger(__name__)

#: Set in the environment of every worker of deid's own local clusters: such a worker, once it has closed
#: cleanly, ends its process without the interpreter's teardown (``batch.quick_exit_after_close``).
QUICK_EXIT_ENV = "DEID_WORKER_QUICK_EXIT"

#: glibc settings for local workers that run the text detector. Dask's default
#: (MALLOC_TRIM_THRESHOLD_=65536) also fixes the mmap threshold at 128 KiB, so every tensor the detector
#: allocates is a fresh mmap: measured here 2.9x slower detection (1.41 s per 512x512 slice instead of
#: 0.49) with 3x the system time. A 32 MiB mmap threshold and a 128 MiB trim threshold: 0.32 s per
#: slice; buffers above 32 MiB (big images) are still returned to the system when freed. Header-only
#: runs keep Dask's default: there it measured faster (187 against 159 files/s on the 100k soak) with
#: less worker growth.
WORKER_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(128 * 2**20), "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}

#: Dask's ``distributed.nanny.pre-spawn-environ`` default, for :func:`start_for_run`, which runs before
#: Dask is imported. A cluster compares the server's environment with the one it computes from Dask's
#: configuration and spawns instead on any difference: a user setting or a newer Dask default costs the
#: head start, never a wrong environment (a test checks this copy against Dask's default).
DASK_PRE_SPAWN_DEFAULT = {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                          "OPENBLAS_NUM_THREADS": "1"}

#: Modules the server imports: what a worker imports for its first batch.
HEADER_PRELOAD = ("distributed", "deid_pipeline.batch", "deid_pipeline.pixels")
DETECTOR_PRELOAD = HEADER_PRELOAD + ("torch", "monai.transforms", "cv2", "deid_pipeline.scan", "deid_pipeline.redact",
                                     "deid_pipeline.detect.textseg")

#: Switch it off (``0``): every local worker is spawned.
ENABLE_ENV = "DEID_FORKSERVER"

_started: dict[str, str] | None = None  # the environment the server was started with
_started_umask: int | None = None  # and its file-creation mask


def worker_environ(pre_spawn: dict[str, object], detector: bool) -> dict[str, str]:
    """The variables a nanny of deid's local cluster sets for its worker: Dask's ``pre_spawn`` ones,
    with :data:`WORKER_MALLOC_ENV` when the workers run the detector, and :data:`QUICK_EXIT_ENV`."""
    env = {**pre_spawn, **(WORKER_MALLOC_ENV if detector else {}), QUICK_EXIT_ENV: "1"}
    return {k: str(v) for k, v in env.items()}


def available() -> bool:
    """Whether this process may start the server: a POSIX host that has forkserver, not switched off."""
    return (os.environ.get(ENABLE_ENV, "1") != "0" and sys.platform != "win32"
            and "forkserver" in multiprocessing.get_all_start_methods())


def _umask() -> int:
    """This process's file-creation mask (read by setting one: the strictest, for that instant)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def start(env: dict[str, str], preload: tuple[str, ...], umask: int) -> bool:
    """Start the server (once per process) with the driver's environment plus ``env`` and the
    file-creation mask ``umask``, importing ``preload``; returns whether it was
    started by this call. It runs beside the caller: the call returns at once, and the first worker
    forked waits for the imports to finish."""
    global _started, _started_umask
    if _started is not None or not available():
        return False
    from multiprocessing import forkserver

    saved = {k: os.environ.get(k) for k in env}
    old_umask = os.umask(umask)
    old_path = sys.path[:]
    try:
        os.environ.update(env)
        # multiprocessing writes the server's sys.path into its command line, which any local user can
        # read: the working folder (it may be named after a patient) is left out of it. Each worker still
        # gets the driver's whole sys.path when it starts (multiprocessing's preparation data).
        cwd = os.getcwd()
        sys.path[:] = [p for p in old_path if p not in ("", ".") and os.path.abspath(p) != cwd]
        multiprocessing.get_context("forkserver").set_forkserver_preload(list(preload))
        forkserver.ensure_running()
        _started, _started_umask = dict(os.environ), _umask()
    except Exception as exc:  # no server: workers are spawned, as without it
        log.debug("no worker server: %s", type(exc).__name__)
        return False
    finally:
        sys.path[:] = old_path
        os.umask(old_umask)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return True


def _local_workers_ahead(workers: int | None, scheduler: str | None) -> bool:
    """Whether a local CPU cluster will start: not ``--workers 0``, not ``--scheduler``, not on a host
    with a GPU driver (whose workers are dask-cuda's)."""
    if workers == 0 or scheduler or not available():
        return False
    from .detect.device import gpu_possible

    return not gpu_possible()


def start_for_run(workers: int | None, scheduler: str | None, pixels: str) -> bool:
    """:func:`start` for a ``deid run`` that will start a local cluster (not ``--workers 0``, not
    ``--scheduler``, not on a host with a GPU driver, whose workers are dask-cuda's); with the
    detector's settings and imports unless ``--pixels none``. A profile that scans no pixels under the
    default ``--pixels profile`` makes header workers: their environment differs, so they are spawned."""
    if not _local_workers_ahead(workers, scheduler):
        return False
    from .config import RUN_UMASK

    detector = pixels != "none"
    return start(worker_environ(DASK_PRE_SPAWN_DEFAULT, detector), DETECTOR_PRELOAD if detector else HEADER_PRELOAD,
                 RUN_UMASK)


def verify_rescans(run_info: dict[str, object], rescan: bool) -> bool:
    """Whether ``deid verify`` runs the text detector again on some outputs of the run ``run_info``
    (its ``run.json``), so that its workers get the detector's settings: only a run that scanned pixels
    and recorded all text (the rescan's ``mode``); a header-only run's are header workers."""
    return rescan and run_info.get("pixels") != "none" and run_info.get("pixel_mode", "all-text") == "all-text"


def start_for_verify(workers: int | None, scheduler: str | None, detector: bool) -> bool:
    """:func:`start` for a ``deid verify`` that will start a local cluster: its checks' imports (and the
    detector's, when it rescans), with the caller's file-creation mask (verify's workers write nothing)."""
    if not _local_workers_ahead(workers, scheduler):
        return False
    preload = (DETECTOR_PRELOAD if detector else HEADER_PRELOAD) + ("deid_pipeline.verify",)
    return start(worker_environ(DASK_PRE_SPAWN_DEFAULT, detector), preload, _umask())


def fork_environ(env: dict[str, str]) -> dict[str, str] | None:
    """For a worker forked now from this process's server: the variables it must set when it starts to
    see the environment a worker spawned now with ``env`` would get (those set or changed here since the
    server started, such as ``GDCM_RESOURCES_PATH``, which python-gdcm sets when pydicom imports it);
    None when it must be spawned instead: no server, a file-creation mask other than the server's, a
    variable removed since, or one of ``env`` (read when the process and its libraries start: malloc,
    OpenMP) different from the server's."""
    if _started is None or _umask() != _started_umask:
        return None
    now = {**os.environ, **env}
    if any(k not in now for k in _started) or any(_started.get(k) != v for k, v in env.items()):
        return None
    return {k: v for k, v in now.items() if _started.get(k) != v}
