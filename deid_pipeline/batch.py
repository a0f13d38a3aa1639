"""Run ``pipeline.process_batch`` over an input tree with Dask, streaming results to the driver.

Default: a ``LocalCluster`` of worker processes (one thread each) sized to the machine, or one
worker per GPU with dask-cuda when it is installed and CUDA is present. ``--scheduler`` uses a
cluster the user already has. A bounded window of batches is in flight, so millions of inputs never
sit in memory at once. A batch lost with its worker is retried by Dask; when it keeps failing, its
files are retried one by one, and a file whose worker still dies runs once more at the end, alone: one
that kills its worker even then is recorded as ``failed``.
A batch that spends longer than the per-file time limit on one file (by the progress its worker
reports) is cancelled and its worker restarted (see ``run_distributed``).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import importlib.util
import logging
import os
import pickle
import re
import signal
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any, TypeVar

from .config import RunContext
from .discover import Candidate
from .errors import ConfigError
from .pipeline import _sha256_file, process_batch
from .prestart import QUICK_EXIT_ENV, WORKER_MALLOC_ENV, fork_environ, worker_environ
from .types import FileResult, Hashed

log = logging.getLogger(__name__)

T = TypeVar("T")


def usable_cpus() -> int:
    """The cores this process may use: ``dask.system.CPU_COUNT`` (CPU affinity and a container's cgroup
    quota count, not only the host's cores, which ``os.cpu_count()`` gives), at least 1."""
    from dask.system import CPU_COUNT

    return max(1, CPU_COUNT or 1)


def default_workers(gpu: bool = True) -> int:
    """One worker per GPU when CUDA is present (and ``gpu``), else one per core this process may use
    (:func:`usable_cpus`: a 2-CPU container on a 64-core host gets 2 workers, not 64). With ``gpu`` False
    (a run that scans no pixels), or on a host with no GPU driver at all, torch is not even imported: the
    driver stays light."""
    if gpu:
        from .detect.device import cuda_available

        if cuda_available():
            import torch

            return max(1, torch.cuda.device_count())
    return usable_cpus()


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), lazily."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def file_batches(candidates: Iterable[Candidate], ctx: RunContext) -> Iterator[list[Candidate]]:
    """Batches of at most ``ctx.batch_size`` files and about ``ctx.max_batch_bytes`` of input (a bigger
    file alone): a batch's files are held in memory together."""
    batch: list[Candidate] = []
    total = 0
    for cand in candidates:
        if batch and (len(batch) >= ctx.batch_size or total + cand.size > ctx.max_batch_bytes):
            yield batch
            batch, total = [], 0
        batch.append(cand)
        total += cand.size
    if batch:
        yield batch


def spread_batches(candidates: Iterable[Candidate], ctx: RunContext, workers: int) -> Iterator[list[Candidate]]:
    """:func:`file_batches`, except that an input of fewer files than one full batch per worker is
    split evenly between the workers (10 files, 2 workers: two batches of 5, not one of 10)."""
    it = iter(candidates)
    head = list(islice(it, ctx.batch_size * workers))
    if len(head) < ctx.batch_size * workers:  # then ceil(len / workers) <= batch_size
        even = max(1, -(-len(head) // workers))
        return file_batches(head, dataclasses.replace(ctx, batch_size=even))
    return file_batches(chain(head, it), ctx)


#: Shares of a worker's memory limit: the largest input it accepts (the file, its parsed data set and
#: the written output are held at once, besides the detector) and the decoded pixels it holds at once.
FILE_SHARE_OF_LIMIT = 0.3
DECODED_SHARE_OF_LIMIT = 0.1


def fit_to_memory(ctx: RunContext, limit: int | None) -> RunContext:
    """``ctx`` with file, batch and decoded-pixel budgets that fit a worker memory limit (bytes; None or
    0: no limit)."""
    if not limit:
        return ctx
    file_max = int(limit * FILE_SHARE_OF_LIMIT)
    return dataclasses.replace(
        ctx, max_file_bytes=file_max, max_batch_bytes=min(ctx.max_batch_bytes, file_max),
        max_decoded_bytes=min(ctx.max_decoded_bytes, int(limit * DECODED_SHARE_OF_LIMIT)),
    )


def worker_memory_limit(client: Any) -> int | None:
    """The smallest memory limit among the cluster's workers (None when none is set)."""
    limits = [int(w.get("memory_limit") or 0) for w in client.scheduler_info().get("workers", {}).values()]
    limits = [x for x in limits if x > 0]
    return min(limits) if limits else None


#: Entries Dask keeps in each of its debugging logs on deid's local clusters (Dask's default: 1,000).
LOW_LEVEL_LOG_LENGTH = 100

#: Dask settings for the local clusters deid starts (never applied to a ``--scheduler`` cluster).
#: Dask's statistical profiler (on by default) samples each worker's task thread every 10 ms and keeps
#: one call tree per second, twice over (``Worker.profile_history`` and ``profile_keys_history``), in
#: deques of ``distributed.admin.low-level-log-length`` (1,000) entries. Over pydicom's deep, varied
#: stacks that measured ~60 KiB of trees a second, so a busy worker's RSS climbs for the first ~17
#: minutes of a run (to ~60 MiB more): the 143 -> 185 MiB growth of the 100k soak. With the profiler
#: off, worker RSS is flat. Only Dask's dashboard and ``Client.profile`` read the trees; deid's clusters
#: have no dashboard. Every Dask server (the scheduler and each nanny, in deid's driver process, and each
#: worker) also checks its event loop's health every ``distributed.admin.tick.interval`` (20 ms: 150
#: callbacks a second in the driver of a 2-worker run); the ticks only time the loop for Dask's metrics
#: and its "event loop unresponsive" warning (after ``tick.limit``, 3 s, unchanged). At 500 ms (the value
#: of Dask's own test suite) the driver of a 640-slice, 2-worker pixel run used ~1 CPU-s less (2.2-2.8
#: against 3.5-3.9 s). Dask also keeps the last ``low-level-log-length`` messages each batched stream
#: sent (the client's to the scheduler, the scheduler's to each worker), its transitions and its events,
#: for debugging: every task's message carries the run context, so the driver of a 100,000-file run held
#: two logs of 1,000 such messages and grew 140 -> 423 MiB; with LOW_LEVEL_LOG_LENGTH entries (and the
#: context compressed, :func:`pack`) 124 -> 137 MiB. Nannies hand these settings to every worker process
#: they start or restart.
#: Dask also spills a worker's stored task results to its scratch folder (``temporary-directory``, by
#: default ``/tmp/dask-scratch-space``) once the worker's memory passes ``memory.target`` / ``.spill``
#: (60 / 70 % of its limit, as a big image's decode can take it): deid's results name their inputs (paths
#: that may hold a patient's name) and are a few KB each, so spilling would write PHI outside OUTPUT for
#: nothing, and a killed worker would leave it there. Off on deid's clusters; pausing (80 %) and the
#: nanny's restart (95 %) stay.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {"distributed.worker.profile.enabled": False,
                                        "distributed.admin.tick.interval": "500ms",
                                        "distributed.admin.low-level-log-length": LOW_LEVEL_LOG_LENGTH,
                                        "distributed.worker.memory.target": False,
                                        "distributed.worker.memory.spill": False}


def local_worker_environ(detector: bool = True) -> dict[str, str]:
    """The environment variables a nanny of deid's local cluster sets for its worker: Dask's own
    (``distributed.nanny.pre-spawn-environ``: ``OMP_NUM_THREADS=1``, ...), with ``WORKER_MALLOC_ENV`` when
    the workers run the detector, and :data:`QUICK_EXIT_ENV`."""
    import dask
    import distributed  # noqa: F401  (loads distributed's config defaults)

    return worker_environ(dask.config.get("distributed.nanny.pre-spawn-environ", {}), detector)


def _cuda_cluster(device: str, gpu: bool) -> bool:
    """Whether the local cluster is dask-cuda's, one worker per GPU: ``gpu`` (pixels are scanned), CUDA
    present (auto: torch is asked only on a host with a GPU driver; an explicit cuda always asks it) and
    dask-cuda installed."""
    from .detect.device import cuda_available

    return (gpu and device in ("auto", "cuda") and cuda_available(quick=device == "auto")
            and importlib.util.find_spec("dask_cuda") is not None)


def _local_cluster(n: int, memory_limit: str | int | None, cuda: bool) -> Any:
    """One worker process per core (or, ``cuda``, per GPU with dask-cuda), one thread each."""
    if cuda:
        import torch
        from dask_cuda import LocalCUDACluster  # type: ignore[import-not-found]

        return LocalCUDACluster(n_workers=min(n, torch.cuda.device_count()), threads_per_worker=1,
                                dashboard_address=None, memory_limit=memory_limit)
    from distributed import LocalCluster

    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                        silence_logs=logging.ERROR, memory_limit=memory_limit)


#: How long ``--scheduler`` is waited for.
SCHEDULER_TIMEOUT_S = 30


def connect_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT_S) -> Any:
    """A Client of the Dask scheduler at ``address``; :class:`ConfigError` (exit status 2) when none
    answers there within ``timeout`` seconds or the address is not one."""
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"no Dask scheduler answered at {address} within {timeout:.0f} s ({type(exc).__name__}); "
                          "start it, or leave out --scheduler to use local workers") from None


MP_METHOD = "distributed.worker.multiprocessing-method"
NANNY_ENVIRON = "distributed.nanny.environ"


@contextmanager
def dask_client(workers: int | None, scheduler: str | None, device: str, memory_limit: str | int | None = "auto",
                detector: bool = True) -> Iterator[Any]:
    """A distributed Client: the user's scheduler, or a local cluster we own and close (each worker
    with ``memory_limit``: Dask's "auto" is the machine's memory shared between the workers; with
    ``WORKER_MALLOC_ENV`` when the workers will run the detector; with ``LOCAL_CLUSTER_CONFIG``; forked
    from the pre-loaded server of :mod:`prestart` when it has exactly the workers' environment)."""
    from distributed import Client

    if scheduler:
        client = connect_scheduler(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    spawn_env = local_worker_environ(detector)  # (distributed is imported: its config defaults are loaded)
    cuda = _cuda_cluster(device, detector)
    if detector and not cuda:  # the CPU fallback warned once, here, not by each worker
        from .detect.device import choose_device

        choose_device(device)
    forked = None if cuda else fork_environ(spawn_env)
    config = {**LOCAL_CLUSTER_CONFIG, MP_METHOD: dask.config.get(MP_METHOD)}
    if forked is not None:  # each forked worker sets what changed here since the server started
        config |= {MP_METHOD: "forkserver", NANNY_ENVIRON: {**dask.config.get(NANNY_ENVIRON, {}), **forked}}
    method = config[MP_METHOD]
    n = workers or default_workers(detector)
    # LOCAL_CLUSTER_CONFIG and the start method stay set while the cluster lives: a nanny's copy of the
    # config shares its nested dicts with ours, so a worker it restarts (after a timed-out batch) reads
    # the values in force then, not those of when the nanny started.
    with dask.config.set(config):
        saved = {k: os.environ.get(k) for k in spawn_env.keys() | WORKER_MALLOC_ENV.keys()}
        try:
            with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):  # read when each nanny starts
                try:
                    cluster = _local_cluster(n, memory_limit, cuda)
                except Exception as exc:
                    if method != "forkserver":
                        raise
                    log.warning("local workers could not be forked from the pre-loaded server (%s); spawning them",
                                type(exc).__name__)
                    dask.config.set({MP_METHOD: "spawn"})  # for this cluster's life: undone with the rest
                    cluster = _local_cluster(n, memory_limit, cuda)
        finally:  # nannies copy these into our own environment too; later clusters must not inherit them
            _restore_environ(saved)
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
            _restore_environ(saved)  # again: a nanny copies them at every worker restart as well


def _restore_environ(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


DEFAULT_FILE_TIMEOUT_S = 300.0
#: Seconds to fetch a finished batch's results; longer means they were lost with their worker meanwhile.
FETCH_TIMEOUT_S = 60.0
START_TOPIC = "deid-batch-start"
MAX_LOST_RESUBMITS = 3

# Test-only fault hooks, read by the worker-side wrapper (never set them in production):
#   DEID_TEST_KILL_ON=<basename>[,...]   the worker SIGKILLs itself when its batch holds that input
#   DEID_TEST_SLEEP_ON=<basename>[,...]  the worker sleeps DEID_TEST_SLEEP_S (default 3600) seconds
#   DEID_TEST_HOOK_ONCE_DIR=<folder>     each hook fires once per input (marker files there),
#                                        so a retry succeeds; unset, it fires every time.
_TEST_HOOKS = ("DEID_TEST_KILL_ON", "DEID_TEST_SLEEP_ON", "DEID_TEST_RAISE_ON")


def _hook_fires(var: str, name: str) -> bool:
    once = os.environ.get("DEID_TEST_HOOK_ONCE_DIR")
    if not once:
        return True
    try:
        os.close(os.open(os.path.join(once, f"{var}-{name}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


def _test_faults(batch: list[Candidate]) -> None:
    """Simulate a crashing, hanging or raising batch for the fault tests; a no-op unless DEID_TEST_* is set."""
    names = {Path(c.rel).name for c in batch}
    for var in _TEST_HOOKS:
        targets = {t for t in os.environ.get(var, "").split(",") if t}
        for name in sorted(names & targets):
            if not _hook_fires(var, name):
                continue
            if var == "DEID_TEST_KILL_ON":
                os.kill(os.getpid(), signal.SIGKILL)
            elif var == "DEID_TEST_RAISE_ON":  # a bug whose message names the input, as a path's OSError does
                raise RuntimeError(f"simulated failure reading {batch[0].rel}")
            else:
                time.sleep(float(os.environ.get("DEID_TEST_SLEEP_S", "3600")))


#: On a worker: the object last unpacked (the run's context, or verify's profile), by digest (see :func:`pack`).
_UNPACKED: dict[str, Any] = {}


def pack(obj: Any) -> tuple[str, bytes]:
    """``obj`` as every task of a run carries it: its digest and its pickle, compressed (a safe-harbor
    run context: 144 KB, 33 KB compressed, once per run). Not scattered: a broadcast measured 0.44 s of
    every run's start on a local cluster, and an object sent as such would be a fresh one per task, a
    profile's rule caches (keyed by identity) cold every batch. Compressed because each task's message
    is kept by Dask's logs of recent messages, in the client and the scheduler (``LOCAL_CLUSTER_CONFIG``)."""
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.sha256(blob).hexdigest(), zlib.compress(blob, 1)


def unpack(packed: tuple[str, bytes]) -> Any:
    """:func:`pack`'s object, unpickled once per worker and run: the same object for every task."""
    digest, blob = packed
    obj = _UNPACKED.get(digest)
    if obj is None:
        _UNPACKED.clear()  # a worker serves one run at a time
        obj = _UNPACKED[digest] = pickle.loads(zlib.decompress(blob))
    return obj


def _pack_context(ctx: RunContext) -> tuple[str, bytes]:
    return pack(ctx)


def _unpack_context(packed: tuple[str, bytes]) -> RunContext:
    ctx: RunContext = unpack(packed)
    return ctx


class _Reporter:
    """The task's progress, sent to the driver as events on ``START_TOPIC``: the start (one file's
    work ahead), then :func:`process_batch`'s calls, at most one per ``every`` seconds unless forced.

    A dropped call never announces more files' work than the last event sent (one file, or the scan's
    files while its steps beat), and came less than ``every`` seconds after it, so the driver's
    deadline, last event + its files x limit + ``every``, is never earlier than the work allows.

    It also keeps, for the driver to ask once the deadline passed (:func:`_file_in_progress`; no event:
    a header run would send one per file), which file's own step runs (``None`` in the scan), the
    inputs' hashes, and when the work last advanced (any call, sent or dropped)."""

    def __init__(self, worker: Any, token: str, every: float, single: bool = False) -> None:
        self.worker, self.token, self.every, self.single = worker, token, every, single
        self.last = float("-inf")
        self.index: int | None = None
        self.advanced = time.monotonic()
        self.keys: dict[int, tuple[str, int]] = {}

    def __call__(self, files: int, force: bool = False, start: bool = False) -> None:
        now = self.advanced = time.monotonic()
        if force or start or now - self.last >= self.every:
            self.last = now
            self.worker.log_event(START_TOPIC, {"token": self.token, "worker": self.worker.address, "files": files,
                                                "start": start})

    def at(self, index: int | None) -> None:
        """A :data:`Current`: the step of file ``index`` (``None``: the scan's) begins."""
        self.index, self.advanced = index, time.monotonic()

    def hashed(self, sha256: str, size: int) -> None:
        """Keep the input's hash; a single file's task also sends it (the driver keys its record by it
        should the file kill its worker before the task returns); no progress: the deadline stays."""
        if self.index is not None:
            self.keys[self.index] = (sha256, size)
        if self.single:
            self.worker.log_event(START_TOPIC, {"token": self.token, "sha256": sha256, "size": size})

    def in_progress(self) -> tuple[int, str, int, float] | None:
        """The file whose own step runs (its index, sha256 and size or ``""``, 0) and the seconds since
        the work last advanced; ``None`` in the scan."""
        index = self.index
        if index is None:
            return None
        sha256, size = self.keys.get(index, ("", 0))
        return index, sha256, size, time.monotonic() - self.advanced


#: On a worker: the reporters of its running tasks, by token (read by :func:`_in_progress`).
_RUNNING: dict[str, _Reporter] = {}


def _in_progress(token: str) -> tuple[int, str, int, float] | None:
    """Run on a worker by :func:`_file_in_progress`: what the task ``token`` is on, if it runs there."""
    reporter = _RUNNING.get(token)
    return reporter.in_progress() if reporter is not None else None


#: Seconds the driver waits for a worker to say which file its timed-out batch is on (a worker whose
#: hung code holds the GIL never answers: its batch's files are then retried one by one).
IN_PROGRESS_QUERY_S = 2.0


def _file_in_progress(client: Any, address: str, token: str, limit: float) -> tuple[int, str, int] | None:
    """The file of the timed-out batch ``token`` that hung: the index, sha256 and size (``""``, 0 before
    it was hashed) of the file whose own step has not advanced for ``limit`` seconds on its worker, asked
    before the worker is killed; ``None`` when no single file can be named (the scan, no answer in
    :data:`IN_PROGRESS_QUERY_S`, or the work advanced since: a file that only just went past the limit)."""
    if not address:
        return None
    answer: list[Any] = []

    def ask() -> None:
        try:
            answer.append(client.run(_in_progress, token, workers=[address], on_error="ignore").get(address))
        except Exception:  # noqa: BLE001 - the worker gone or not answering: no file named
            pass

    thread = threading.Thread(target=ask, name="deid-ask-hung-file", daemon=True)
    thread.start()
    thread.join(IN_PROGRESS_QUERY_S)
    got = answer[0] if answer else None
    if not (isinstance(got, (tuple, list)) and len(got) == 4):
        return None
    index, sha256, size, idle = got
    return (int(index), str(sha256), int(size)) if float(idle) >= limit else None


_OPENCV_THREADS_SET: list[int] = []  # the thread count last applied in this worker process


def local_opencv_threads(n_workers: int, cpus: int | None = None) -> int:
    """OpenCV threads for each of ``n_workers`` local workers: the host's cores (:func:`usable_cpus`)
    shared between them."""
    return max(1, (usable_cpus() if cpus is None else cpus) // max(1, n_workers))


def limit_opencv_threads(threads: int | None = None) -> int | None:
    """Size OpenCV's thread pool in this worker process (returns the count applied, or None).

    Dask starts each local worker with ``OMP_NUM_THREADS=1`` (one task thread per core; torch and
    numpy's BLAS follow it), but the OpenCV wheels' pthreads pool ignores it and starts one thread per
    core in every worker: two workers on two cores ran the glyph finder at 15.9-17.1 ms a CT view
    instead of 11.3-13.7 with one OpenCV thread each (measured here). ``threads``: the count the driver
    chose for its local cluster (:func:`local_opencv_threads`: one GPU worker on a many-core host keeps
    them all); None (a ``--scheduler`` cluster): the worker's ``OMP_NUM_THREADS`` when it is a positive
    integer, else OpenCV is left alone. Applied when it changes, not per task.
    """
    if threads is None:
        try:
            threads = int(os.environ.get("OMP_NUM_THREADS", ""))
        except ValueError:
            return None
    if threads < 1:
        return None
    if _OPENCV_THREADS_SET != [threads]:
        import cv2

        cv2.setNumThreads(threads)
        _OPENCV_THREADS_SET[:] = [threads]
    return threads


def _quick_exit(worker: Any) -> None:
    """atexit hook of a local worker (see :func:`quick_exit_after_close`)."""
    from distributed.core import Status

    if getattr(worker, "status", None) != Status.closed:
        return  # not a clean close (an error on the way out): the interpreter ends as it would have
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


def quick_exit_after_close(worker: Any) -> None:
    """Have ``worker``'s process, once the worker has closed cleanly, skip the interpreter's teardown.

    A worker that has loaded torch, MONAI and OpenCV spent ~0.7-0.9 s after its close in native
    teardown (static destructors, module clean-up; measured here), and ``deid run`` waits for its local
    workers to exit: 0.78-1.02 s against 0.06-0.07 s per close. Once the worker is closed every task has
    returned and every output is on disk, so the process flushes its logs and ends with status 0. Only
    for deid's own local clusters (:data:`QUICK_EXIT_ENV`); a worker that ends any other way (an error,
    a signal, the nanny's kill) ends as before. Registered again after every task, so that it runs before
    the atexit hooks of what the task imported.
    """
    atexit.unregister(_quick_exit)
    atexit.register(_quick_exit, worker)


class _WithholdTaskDetails(logging.Filter):
    """On a worker: Dask logs a failed task's arguments (INPUT's path, the batch's file names) and its
    exception's text (``Compute Failed``); this keeps the record, its key and the exception's type only.
    On a worker of deid's own local cluster (whose stderr is the run's) it also drops Dask's tracebacks
    of a connection the driver closed (a result it stopped fetching, a heartbeat to the scheduler that
    is closing): deid interrupted or ending; the driver says why itself. A ``--scheduler`` cluster's
    workers keep those records in their own logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.msg in _CLOSED_BY_DRIVER and record.exc_info and os.environ.get(QUICK_EXIT_ENV) == "1"
                and _closed_by_peer(record.exc_info[1])):
            return False
        if isinstance(record.msg, str) and record.msg.startswith("Compute Failed") and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            text = str(args[3]) if len(args) > 3 else ""
            name = re.match(r"([A-Za-z_][\w.]*)\(", text)  # "ValueError('...')": the type's name, never the message
            kind = name.group(1) if name else "an exception"
            record.msg = "Compute Failed: task %s raised %s; its arguments and message withheld (they may name inputs)"
            record.args = (args[0], kind)
        return True


_GET_DATA_FAILED = "failed during get data with %s -> %s"  # distributed.worker.Worker.get_data
_HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat."  # Worker.heartbeat
_CLOSED_BY_DRIVER = (_GET_DATA_FAILED, _HEARTBEAT_FAILED)


def _closed_by_peer(exc: BaseException | None) -> bool:
    from distributed.comm.core import CommClosedError

    return isinstance(exc, CommClosedError)


_WITHHOLD = _WithholdTaskDetails()


def withhold_task_details() -> None:
    """On a Dask worker, from its first task of deid's: :class:`_WithholdTaskDetails` on Dask's worker log."""
    worker_log = logging.getLogger("distributed.worker")
    if _WITHHOLD not in worker_log.filters:
        worker_log.addFilter(_WITHHOLD)


if os.environ.get(QUICK_EXIT_ENV) == "1":  # a worker of deid's own local cluster (this module is in its
    withhold_task_details()  # server's preload): filtered from its start, before any task (a run interrupted early)


def task_log_level(quiet: bool) -> None:
    """In a Dask task: deid's loggers pass errors only with ``--quiet`` (what a worker logs reaches the
    user's stderr), else all; set for every task, so that a worker of a ``--scheduler`` cluster serves a
    later command without ``--quiet`` at the usual level."""
    logging.getLogger("deid_pipeline").setLevel(logging.ERROR if quiet else logging.NOTSET)


def _run_batch_task(root: str, batch: list[Candidate], packed: tuple[str, bytes], token: str,
                    every: float = 0.0) -> list[FileResult]:
    """The Dask task: announce the start (the driver's deadline counts from here), then process,
    reporting progress (see :class:`_Reporter`). A task that may scan pixels first fits OpenCV's
    thread pool to the worker (:func:`limit_opencv_threads`); on deid's own local cluster the worker
    then ends quickly once closed (:func:`quick_exit_after_close`). Its log level: :func:`task_log_level`."""
    withhold_task_details()
    ctx = _unpack_context(packed)
    task_log_level(ctx.quiet)
    if ctx.scans_pixels:
        limit_opencv_threads(ctx.opencv_threads)
    reporter: _Reporter | None = None
    worker: Any = None
    try:
        from distributed import get_worker

        worker = get_worker()
        reporter = _Reporter(worker, token, every, single=len(batch) == 1)
        reporter(1, start=True)
    except Exception:  # not on a Dask worker (tests), or events unavailable: the fallback deadline applies
        reporter = None
    hashed = reporter.hashed if reporter is not None else None
    if os.environ.get("DEID_TEST_SLEEP_AFTER_HASH") == "1":
        hashed = _faults_after_hash(hashed, batch, reporter)
    elif any(os.environ.get(v) for v in _TEST_HOOKS):
        _test_faults(batch)
    if reporter is not None:
        _RUNNING[token] = reporter
    try:
        return process_batch(root, batch, ctx, reporter, hashed, reporter.at if reporter is not None else None)
    finally:
        _RUNNING.pop(token, None)
        if worker is not None and os.environ.get(QUICK_EXIT_ENV) == "1":
            quick_exit_after_close(worker)


def _faults_after_hash(hashed: Hashed | None, batch: list[Candidate], reporter: _Reporter | None) -> Hashed:
    """Test hook (``DEID_TEST_SLEEP_AFTER_HASH=1``): the faults of ``DEID_TEST_*`` fire once their input
    is hashed, as a hang in its parse would, instead of before the batch starts."""

    def then_fault(sha256: str, size: int) -> None:
        if hashed is not None:
            hashed(sha256, size)
        index = reporter.index if reporter is not None else None
        _test_faults(batch if index is None else [batch[index]])

    return then_fault


def _failed(batch: list[Candidate], code: str, reason: str) -> list[FileResult]:
    return [
        FileResult(rel_input=c.rel, input_sha256="", input_size=0, status="failed", reason_code=code, reason=reason)
        for c in batch
    ]


#: Single files whose worker died that a run runs again alone at its end, at most: each that kills its
#: worker again costs Dask's allowed failures in worker restarts once more (a run with many such files
#: records the rest ``worker-crashed`` at once).
MAX_ALONE = 64
#: Seconds the end of a run waits for workers its last file killed to be back before the cluster closes.
RESTART_WAIT_S = 30.0
#: Seconds the driver spends hashing the input of a file whose worker died or raised, at most.
HASH_FAILED_INPUT_S = 60.0


def _hash_failed_input(root: Path, result: FileResult, limit: float = HASH_FAILED_INPUT_S) -> None:
    """Fill ``input_sha256`` and ``input_size`` of a ``failed`` record the driver writes for a file its
    worker died on or raised on (the worker never reported them), so that the manifest keys it like
    every read input. Hashed on a daemon thread, given up after ``limit`` seconds or on an I/O error
    (the key stays empty). Only where the worker did not send the hash (:meth:`_Reporter.hashed`);
    never for a ``timeout``, whose input may sit on a mount that hangs: its key is the worker's or none."""
    path = root / result.rel_input
    out: list[tuple[str, int]] = []

    def run() -> None:
        try:
            size = os.stat(path).st_size
            out.append((_sha256_file(path), size))
        except OSError:
            pass

    worker = threading.Thread(target=run, name="deid-hash-failed-input", daemon=True)
    worker.start()
    worker.join(limit)
    if out:
        result.input_sha256, result.input_size = out[0]


def _crashed(batch: list[Candidate]) -> list[FileResult]:
    return _failed(batch, "worker-crashed", "the worker processing this file died repeatedly; the file was not written")


@dataclass
class _Job:
    """One batch in flight, as the driver tracks it."""

    batch: list[Candidate]
    single: bool
    token: str
    submitted: float
    lost: int = 0  # resubmissions after the task was cancelled or lost without crashing a worker
    alone: bool = False  # run with no other task of the run in flight (a single file whose worker died)


@dataclass(frozen=True)
class _Seen:
    """A batch's latest event, on the driver's clock: when, on which worker, how many files' work ahead."""

    at: float
    worker: str
    files: int = 1


class _Starts:
    """Start and progress events from the workers (token -> :class:`_Seen`), and the input hashes of
    single-file tasks (token -> sha256, size); filled on the client's loop. A start (``"start": True``)
    opens a token's entry; progress and a hash only update an open one, so an event that arrives after
    its batch's result leaves nothing behind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self._hashed: dict[str, tuple[str, int]] = {}

    def __call__(self, event: Any) -> None:
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if isinstance(msg, dict) and "token" in msg and "sha256" in msg:  # a single file's input hashed
            try:
                token, hashed = str(msg["token"]), (str(msg["sha256"]), int(msg["size"]))
            except (KeyError, TypeError, ValueError):
                return
            with self._lock:
                if token in self._seen:
                    self._hashed[token] = hashed
        elif isinstance(msg, dict) and "token" in msg:
            token = str(msg["token"])
            try:
                files = max(1, int(msg.get("files", 1)))
            except (TypeError, ValueError):
                files = 1
            with self._lock:
                if msg.get("start", True) or token in self._seen:
                    self._seen[token] = _Seen(time.monotonic(), str(msg.get("worker", "")), files)

    def pop(self, token: str) -> tuple[_Seen | None, tuple[str, int] | None]:
        """Forget a token: its latest event and the hash its single file's worker sent, if any."""
        with self._lock:
            return self._seen.pop(token, None), self._hashed.pop(token, None)

    def get(self, token: str) -> _Seen | None:
        with self._lock:
            return self._seen.get(token)


def progress_interval(limit: float) -> float:
    """Seconds between a task's progress events: a tenth of the per-file limit, at most 5 s."""
    return min(5.0, limit / 10)


def batch_deadline(submitted: float, files: int, seen: _Seen | None, limit: float, every: float, window: int) -> float:
    """When a batch counts as hung (driver clock): ``limit`` seconds per file of work its last event
    announced, plus ``every`` (progress not yet reported); with no event yet, the batch may still be
    queued behind ``window`` others, each of up to ``files`` files."""
    if seen is not None:
        return seen.at + limit * seen.files + every
    return submitted + limit * files * (window + 1)


def _file_timeout(value: float | None) -> float:
    if value is not None:
        return float(value)
    env = os.environ.get("DEID_FILE_TIMEOUT")
    return float(env) if env else DEFAULT_FILE_TIMEOUT_S


#: Seconds a worker whose batch ran past its limit is given to close before its nanny kills it. Dask's
#: restart gives 4: a worker whose task thread is stuck never closes, so each timed-out batch cost 4 s of
#: a worker's time for nothing. Outputs are written through temporary files: nothing half-written stays.
HUNG_WORKER_GRACE_S = 0.5


def _restart_worker(client: Any, address: str) -> None:
    """Replace a worker whose thread is stuck in a hung task: its nanny kills it after
    :data:`HUNG_WORKER_GRACE_S` and starts another (as Dask's ``restart_workers`` does, with a shorter
    grace), and this waits for the worker count to be back; a worker without a nanny is retired."""
    if not address:
        return
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        nanny = (workers.get(address) or {}).get("nanny")
        if not nanny:
            raise LookupError("no nanny")
        client.sync(client.rpc(nanny).kill, reason="deid-batch-timeout", timeout=HUNG_WORKER_GRACE_S)
        client.wait_for_workers(len(workers), timeout=60)
        log.warning("restarted a worker after a batch ran past its time limit")
    except Exception as exc:
        log.warning("could not restart the worker of a timed-out batch (%s); retiring it", type(exc).__name__)
        try:
            client.retire_workers([address], close_workers=True, remove=True)
        except Exception as exc2:
            log.error("could not retire the worker of a timed-out batch (%s)", type(exc2).__name__)


def run_distributed(
    root: Path,
    candidates: Iterable[Candidate],
    ctx: RunContext,
    on_result: Callable[[FileResult], None],
    workers: int | None = None,
    scheduler: str | None = None,
    file_timeout: float | None = None,
    memory_limit: str | int | None = "auto",
) -> int:
    """Process every candidate on Dask; ``on_result`` is called in the driver for each result.

    Failures of the machinery, never of a file (those are records from ``process_batch``):
    a batch whose worker died (``KilledWorker`` once Dask gave up re-running it) or that raised is
    split and its files retried one by one; a single file whose worker still died is run once more at
    the end, alone (it may only have been queued on the worker another file killed), and ends ``failed``
    with ``worker-crashed`` when it kills its worker even so (a single file that raises:
    ``internal-error``). A batch that spends longer than ``file_timeout`` seconds (default
    ``DEID_FILE_TIMEOUT`` or 300) on one file -- on its scan, which serves several files in one pass,
    that many times as long -- by the progress its worker reports (see
    :func:`batch_deadline`), is cancelled and its worker restarted; the file its worker names as stuck
    in its own step (:func:`_file_in_progress`) ends ``failed`` with ``timeout`` and the other files run
    again as a batch, or, no file named, its files are retried singly; one that times out alone ends
    ``failed`` with ``timeout``. So a hung file is found after about ``file_timeout`` seconds whatever
    the batch size. A task cancelled under us (lost with its
    worker, a scheduler hiccup) is resubmitted as it was, a few times.
    """
    from distributed import KilledWorker, wait
    from distributed.client import FutureCancelledError

    limit = _file_timeout(file_timeout)
    every = progress_interval(limit)
    scans = ctx.scans_pixels
    with dask_client(workers, scheduler, ctx.device, memory_limit, detector=scans) as client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (workers or 1))
        ctx = fit_to_memory(ctx, worker_memory_limit(client))
        if scheduler is None:  # our local cluster: this host's cores shared between its workers
            ctx = dataclasses.replace(ctx, opencv_threads=local_opencv_threads(n_workers))
        window = n_workers * 4
        starts = _Starts()
        client.subscribe_topic(START_TOPIC, starts)
        packed = _pack_context(ctx)
        batches = spread_batches(candidates, ctx, n_workers)
        pending: dict[Any, _Job] = {}

        rerun_alone: list[Candidate] = []  # single files whose worker died, to run again one at a time at the end
        queued_alone = lost_alone = 0  # files put there; workers their lone runs killed (restarting as the run ends)

        def submit(batch: list[Candidate], single: bool, lost: int = 0, alone: bool = False) -> None:
            token = uuid.uuid4().hex
            fut = client.submit(_run_batch_task, str(root), batch, packed, token, every, pure=False, retries=1)
            pending[fut] = _Job(batch, single, token, time.monotonic(), lost, alone)

        def split_or(job: _Job, final: Callable[[list[Candidate]], list[FileResult]]) -> list[FileResult]:
            if job.single or len(job.batch) == 1:
                return final(job.batch)
            for c in job.batch:
                submit([c], True)
            return []

        def deadline(job: _Job) -> float:
            return batch_deadline(job.submitted, len(job.batch), starts.get(job.token), limit, every, window)

        for batch in islice(batches, window):
            submit(batch, False)
        tick = max(0.05, min(1.0, limit / 4))
        while pending or rerun_alone:
            if not pending:  # every batch done: the files whose worker died, each with the cluster to itself
                submit([rerun_alone.pop(0)], True, alone=True)
            try:
                wait(list(pending), timeout=tick, return_when="FIRST_COMPLETED")
            except Exception:  # TimeoutError, or CancelledError for a cancelled future: handled below
                pass
            now = time.monotonic()
            for fut in [f for f in pending if f.done() or now > deadline(pending[f])]:
                job = pending[fut]
                results: list[FileResult]
                if fut.done():
                    try:
                        results = fut.result(timeout=FETCH_TIMEOUT_S)
                    except KilledWorker:
                        if job.single and not job.alone and queued_alone < MAX_ALONE:  # perhaps only queued beside the killer
                            log.warning("a file's worker kept dying; it runs again alone at the end")
                            rerun_alone.extend(job.batch)
                            queued_alone += len(job.batch)
                            results = []
                        elif job.alone:
                            log.warning("a file killed its worker again, run alone; recorded worker-crashed")
                            results = _crashed(job.batch)
                            lost_alone += 1
                        else:
                            log.warning("a batch of %d file(s) kept killing its workers; retrying its files one by one", len(job.batch))
                            results = split_or(job, _crashed)
                    except FutureCancelledError:
                        if job.lost < MAX_LOST_RESUBMITS:
                            log.warning("a batch was cancelled or lost on the cluster; resubmitting it")
                            submit(job.batch, job.single, job.lost + 1, job.alone)
                            results = []
                        else:
                            results = split_or(job, _crashed)
                    except Exception as exc:
                        if isinstance(exc, TimeoutError) and fut.status != "error":
                            continue  # not the task's error: its result was lost with its worker while we fetched it
                        log.warning("a batch failed on its worker (%s); retrying its files one by one", type(exc).__name__)
                        name = type(exc).__name__
                        results = split_or(job, lambda b: _failed(b, "internal-error", f"unexpected {name} on the worker; the file was not written"))
                elif now <= deadline(job):
                    # it looked done a moment ago: a finished result lost with its worker before we fetched
                    # it (Dask computes it again); wait for it as for any running batch
                    continue
                else:
                    log.warning("a batch of %d file(s) ran past its time limit; cancelled", len(job.batch))
                    seen = starts.get(job.token)
                    address = seen.worker if seen else ""
                    hung = _file_in_progress(client, address, job.token, limit) if len(job.batch) > 1 else None
                    fut.cancel()
                    _restart_worker(client, address)
                    why = f"processing took longer than {limit:g} s (a scan: one of its steps); the file was not written"
                    if hung is not None and hung[0] < len(job.batch):  # its worker named the file: not run again
                        index, sha256, size = hung
                        log.warning("its worker named the file that hung; the batch's other files run again")
                        results = _failed([job.batch[index]], "timeout", why)
                        results[0].input_sha256, results[0].input_size = sha256, size
                        submit(job.batch[:index] + job.batch[index + 1:], job.single)
                    else:
                        results = split_or(job, lambda b: _failed(b, "timeout", why))
                del pending[fut]
                _, hashed = starts.pop(job.token)
                fut.release()
                for r in results:
                    if r.status == "failed" and not r.input_sha256:
                        if hashed is not None and len(job.batch) == 1:  # the worker hashed it before it hung or died
                            r.input_sha256, r.input_size = hashed
                        elif r.reason_code in ("worker-crashed", "internal-error"):
                            _hash_failed_input(root, r)
                    on_result(r)
                nxt = next(batches, None)
                if nxt is not None:
                    submit(nxt, False)
        if lost_alone:  # the last work killed a worker: let its restart finish, or closing the cluster races
            try:       # with the new worker registering (tracebacks on stderr in 4 of 6 such runs)
                client.wait_for_workers(n_workers, timeout=RESTART_WAIT_S)
            except Exception:  # noqa: BLE001 - a worker that does not come back changes nothing here
                pass
    return n_workers


def run_inline(root: Path, candidates: Iterable[Candidate], ctx: RunContext, on_result: Callable[[FileResult], None]) -> int:
    """Process in the driver process (``--workers 0``): for debugging and tiny inputs."""
    for batch in file_batches(candidates, ctx):
        for r in process_batch(root, batch, ctx):
            on_result(r)
    return 0
