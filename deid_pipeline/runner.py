"""The driver of ``deid run``: check the configuration, resume, distribute, record, sum up.

Everything that can be wrong with the configuration is checked before a file is read or a folder
is made (``ConfigError``, exit status 2). A run holds an exclusive lock on OUTPUT and on its private
folder while it writes them (:func:`_lock`): a second run into either is refused, not interleaved.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import os
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .config import BATCH_SIZE_HEADER_ONLY, BATCH_SIZE_SCAN, RUN_UMASK, RunContext, check_outside, check_paths, read_key_file, write_new_key
from .detect import canonical_name, detector_problem
from .discover import walk_inputs
from .errors import STORAGE_CODE, ConfigError, StorageError, storage_error
from .manifest import (MANIFEST_NAME, PROFILE_RECORD_NAME, RUN_NAME, SCHEMA_VERSION, Ledger, atomic_write_json, key_id,
                       read_run_json)
from .pipeline import TMP_PREFIX
from .types import FileResult

log = logging.getLogger(__name__)

KEY_NAME = "run.key"


@dataclass
class RunOptions:
    """What the command line asked for."""

    input_dir: Path
    output_dir: Path
    profile: str = "safe-harbor"
    key_file: Path | None = None
    journal: Path | None = None
    workers: int | None = None
    scheduler: str | None = None
    device: str = "auto"
    pixels: str = "profile"
    detector: str = "auto"
    batch_size: int | None = None  # files per Dask task; None: BATCH_SIZE_SCAN or BATCH_SIZE_HEADER_ONLY
    linkage: Path | None = None
    debug: bool = False
    file_timeout: float | None = None  # seconds per file before a batch is cancelled (default 300)
    count_inputs: bool = False  # walk INPUT once more up front so the progress bar has an ETA
    memory_limit: str = "auto"  # per local worker: bytes ("4GiB") or "auto" (machine memory / workers)
    quiet: bool = False  # errors only, the workers' logs included
    retry_failed: bool = False  # a resumed run processes its failed inputs again (their records replaced)


@dataclass
class RunSummary:
    """What ``deid run`` reports at the end; also the body of ``run.json``."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        counts = self.data.get("counts", {})
        return 3 if counts.get("quarantined", 0) or counts.get("failed", 0) else 0

def private_dir(output_dir: Path, journal: Path | None = None) -> Path:
    """The private folder: ``--journal`` or ``OUTPUT.private`` beside OUTPUT."""
    if journal is not None:
        return journal
    out = output_dir.resolve()
    return out.parent / f"{out.name}.private"


STEADY_EVERY = 16  # arrival times kept for every 16th record: 0.5 MB per million files


def _steady_rate(arrivals: "array[float]", every: int = STEADY_EVERY) -> float | None:
    """Records per second between the 10th and the 90th percentile of the records, from the arrival
    time of every ``every``-th record: the run's pace once the cluster is up, without worker start,
    imports and the tail (None for a run too short to tell)."""
    lo, hi = len(arrivals) // 10, (len(arrivals) * 9) // 10
    if hi - lo < 2 or arrivals[hi] <= arrivals[lo]:
        return None
    return round(every * (hi - lo) / (arrivals[hi] - arrivals[lo]), 3)


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def prepare_run(opts: RunOptions) -> tuple[RunContext, Path, bool, list[str]]:
    """Validate everything and return the context; nothing on disk changes here."""
    from .profile import load_profile

    notes: list[str] = []
    private = private_dir(opts.output_dir, opts.journal)
    check_paths(opts.input_dir, opts.output_dir, private)
    profile = load_profile(opts.profile)
    resume = (opts.output_dir / MANIFEST_NAME).exists()
    if opts.output_dir.exists() and not resume and any(opts.output_dir.iterdir()):
        raise ConfigError("OUTPUT is not empty and holds no deid run; choose an empty or new folder")
    stored_key = private / KEY_NAME
    if opts.key_file is not None:
        key = read_key_file(opts.key_file)
    elif resume and stored_key.exists():
        key = read_key_file(stored_key)
        notes.append("resuming with the random key stored in the private folder")
    elif resume:
        raise ConfigError("OUTPUT holds a run whose key is unknown; pass the same --key-file")
    else:
        key = b""  # made in start_run, once the checks passed
        notes.append(f"no --key-file: a random key is used (OUTPUT.private/{KEY_NAME}); pseudonyms will not link "
                     "to other runs, and the audit trail is signed by this run's own key: a recipient can check "
                     "it only with its public half (deid audit public-key --key-file OUTPUT.private/"
                     f"{KEY_NAME}), given by the site; use a site key for runs whose signature others check")
    if resume:
        run_json = opts.output_dir / RUN_NAME
        if run_json.exists():
            unreadable = ConfigError("OUTPUT's run.json does not read as a deid run summary (edited?); "
                                     "its run cannot be resumed: use a new OUTPUT")
            try:
                prev = read_run_json(run_json)
            except ValueError:
                raise unreadable from None
            if not (isinstance(prev, dict) and isinstance(prev.get("profile", {}), dict)
                    and isinstance(prev.get("detector", "auto"), str)):
                raise unreadable
            if prev.get("profile", {}).get("sha256") != profile.sha256:
                raise ConfigError("OUTPUT holds a run made with a different profile; use a new OUTPUT")
            if key and prev.get("key_id") and prev["key_id"] != key_id(key):
                raise ConfigError("OUTPUT holds a run made with a different key")
            if canonical_name(prev.get("detector", "auto")) != canonical_name(opts.detector):
                raise ConfigError("OUTPUT holds a run made with a different --detector; use the same one or a new OUTPUT")
    check_outside(opts.linkage, "the linkage file", OUTPUT=opts.output_dir, INPUT=opts.input_dir)
    if opts.memory_limit != "auto":
        from dask.utils import parse_bytes

        try:
            if parse_bytes(opts.memory_limit) < 2**30:
                raise ConfigError("--memory-limit below 1 GiB: the text detector alone needs about half of that")
        except ValueError:
            raise ConfigError("--memory-limit: give bytes such as 4GiB or 6000MB, or auto") from None
    if opts.file_timeout is not None and opts.file_timeout <= 0:
        raise ConfigError("--file-timeout must be a positive number of seconds")
    if opts.workers is not None and opts.workers < 0:
        raise ConfigError("--workers must be 0 (in-process) or more")
    ctx = RunContext(
        profile=profile,
        key=key,
        output_dir=opts.output_dir.resolve(),
        pixels=opts.pixels,
        device=opts.device,
        detector=opts.detector,
        batch_size=max(1, opts.batch_size) if opts.batch_size is not None else BATCH_SIZE_SCAN,
        debug=opts.debug,
        linkage=opts.linkage is not None,
        quiet=opts.quiet,
    )
    if opts.batch_size is None and not ctx.scans_pixels:
        ctx = dataclasses.replace(ctx, batch_size=BATCH_SIZE_HEADER_ONLY)
    if ctx.pixel_rule != "none":
        problem = detector_problem(opts.detector)
        if problem:
            raise ConfigError(problem)
    if ctx.scans_pixels and opts.device != "auto" and opts.scheduler is None:  # local workers: this host's GPUs
        from .detect.device import choose_device

        choose_device(opts.device)  # an explicit device the workers would refuse: refused here, before any file
    return ctx, private, resume, notes


def _remove_temporaries(output_dir: Path) -> int:
    n = 0
    for dirpath, _dirs, files in os.walk(output_dir):
        for name in files:
            if name.startswith(TMP_PREFIX) or (name.startswith(".") and ".tmp-" in name):
                os.unlink(os.path.join(dirpath, name))
                n += 1
    return n


def _lock(folder: Path) -> int:
    """An exclusive lock on ``folder`` itself (``flock``: no file added to it), held until the returned
    descriptor is closed or the process ends, killed or not; :class:`ConfigError` when another process
    holds it. A file system without ``flock`` support (some network mounts) leaves the run unlocked."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            raise ConfigError("another deid run is writing to OUTPUT or to its private folder; "
                              "wait for it to end (a run it was resuming can be resumed then)") from None
        log.debug("no lock on a folder of the run: the file system has no flock (errno %s)", exc.errno)
    return fd


def execute(
    opts: RunOptions,
    on_result: Callable[[FileResult, dict[str, Any]], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Run the whole job (``prepare_run`` must not have raised) and write ``run.json``."""
    ctx, private, resume, notes = prepare_run(opts)
    from .profile import record_profile

    profile_record = record_profile(ctx.profile)  # kept in the private folder: what verify judges by
    if opts.scheduler:  # reachable before anything is written (exit status 2 leaves OUTPUT untouched)
        from .batch import connect_scheduler

        connect_scheduler(opts.scheduler).close()
    old_umask = os.umask(RUN_UMASK)
    locks: list[int] = []
    try:
        try:
            private.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(private, 0o700)
            opts.output_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:  # a parent that is missing, read-only or not a folder
            raise ConfigError(f"OUTPUT or its private folder could not be made: {exc.strerror or type(exc).__name__}") from None
        locks += [_lock(opts.output_dir), _lock(private)]
        if (opts.output_dir / MANIFEST_NAME).exists() != resume:  # another run wrote it since the checks
            raise ConfigError("OUTPUT changed while this run was starting; run the command again")
        if not ctx.key:
            key_path = private / KEY_NAME
            if key_path.exists():
                key_path.unlink()
            ctx = RunContext(**{**ctx.__dict__, "key": write_new_key(key_path)})
        removed = _remove_temporaries(ctx.output_dir) if resume else 0
        atomic_write_json(private / PROFILE_RECORD_NAME, profile_record, mode=0o600)
        profile_info = {"name": ctx.profile.name, "version": ctx.profile.version, "sha256": ctx.profile.sha256}
        ledger = Ledger(ctx.output_dir, private, ctx.key, profile_info, __version__)
        kept = ledger.open(retry_failed=opts.retry_failed and resume)
        if ledger.retried:
            notes.append(f"{sum(ledger.retried.values())} failed inputs taken out of the manifest to be processed again")
        started = _utc()
        t0 = time.perf_counter()
        base: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "tool_version": __version__,
            "profile": profile_info,
            "key_id": key_id(ctx.key),
            "started": started,
            "state": "running",
            "resumed": resume,
            "records_before_resume": kept,
            "failed_retried": dict(sorted(ledger.retried.items())),  # reason codes of the failed records redone
            "temporaries_removed": removed,
            "pixels": ctx.pixel_rule,
            "pixel_mode": ctx.profile.settings.pixel_mode,
            "device_requested": ctx.device,
            "detector": canonical_name(ctx.detector),
            "notes": notes,
        }
        atomic_write_json(ctx.output_dir / RUN_NAME, base)
        log.info("run started: profile %s %s, pixels %s, key %s, resumed %s with %d records", ctx.profile.name,
                 ctx.profile.version, ctx.pixel_rule, base["key_id"], resume, kept)
        if on_start:
            info = dict(base)
            if opts.count_inputs:
                info["inputs_total"] = sum(1 for _ in walk_inputs(opts.input_dir))
                info["inputs_done"] = kept
            on_start(info)
        linkage_rows: list[dict[str, str]] = []
        linkage_seen: set[tuple[tuple[str, str], ...]] = set()
        devices: set[str] = set()
        arrivals = array("d")  # perf_counter when every STEADY_EVERY-th record of this session arrived
        handled = [0]

        def handle(result: FileResult) -> None:
            if handled[0] % STEADY_EVERY == 0:
                arrivals.append(time.perf_counter())
            handled[0] += 1
            if result.linkage:
                row_key = tuple(sorted(result.linkage.items()))
                if row_key not in linkage_seen:
                    linkage_seen.add(row_key)
                    linkage_rows.append(result.linkage)
                result.linkage = None
            if result.reason_code == STORAGE_CODE:  # OUTPUT is full: stop; resume redoes this file
                raise StorageError(result.reason)
            rec = ledger.add(result)  # (a full disk here: a StorageError, below)
            log.debug("record %d: %s %s", ledger.records, rec["status"], rec.get("reason") or "")
            dev = (rec.get("pixel") or {}).get("device")
            if dev:
                devices.add(dev)
            if on_result:
                on_result(result, rec)

        todo = (c for c in walk_inputs(opts.input_dir) if not ledger.is_done(c.rel))
        from .batch import run_distributed, run_inline

        try:
            if opts.workers == 0:
                n_workers = run_inline(opts.input_dir, todo, ctx, handle)
            else:
                n_workers = run_distributed(opts.input_dir, todo, ctx, handle, opts.workers, opts.scheduler,
                                            file_timeout=opts.file_timeout, memory_limit=opts.memory_limit)
        finally:
            ledger.close()  # its closing flush too (a full disk may show first there)
        elapsed = time.perf_counter() - t0
        if linkage_rows and opts.linkage is not None:
            from .pseudonym import read_linkage, write_linkage

            if opts.linkage.exists():  # a resumed run adds to the rows of the sessions before it
                for row in read_linkage(opts.linkage, ctx.key):
                    if tuple(sorted(row.items())) not in linkage_seen:
                        linkage_rows.append(row)
            write_linkage(opts.linkage, ctx.key, linkage_rows)
        done_now = ledger.records - kept
        summary = {
            **base,
            "state": "finished",
            "finished": _utc(),
            "elapsed_s": round(elapsed, 3),
            "counts": {s: ledger.status_counts.get(s, 0) for s in ("written", "skipped", "quarantined", "failed")},
            "reasons": dict(sorted(ledger.reason_counts.items())),
            "records": ledger.records,
            "files_this_session": done_now,
            "images_this_session": ledger.images,
            "files_per_s": round(done_now / elapsed, 3) if elapsed > 0 else None,
            "images_per_s": round(ledger.images / elapsed, 3) if elapsed > 0 else None,
            # between the 10th and the 90th percentile of records: without cluster start and the tail
            "files_per_s_steady": _steady_rate(arrivals),
            "device": sorted(devices) or ["none"],
            "workers": n_workers,
            "cluster": "external" if opts.scheduler else ("in-process" if opts.workers == 0 else "local"),
        }
        summary["chain"] = ledger.chain(summary)  # signs the head and every field above
        atomic_write_json(ctx.output_dir / RUN_NAME, summary)
        log.info("run finished: %s in %.1f s (%s files/s), chain head %s", summary["counts"], elapsed,
                 summary["files_per_s"], summary["chain"]["head_sha256"])
        return RunSummary(summary)
    except Exception as exc:  # any write of the run: the key, run.json, the journal, the private folder's SQLite index, the linkage file
        full = storage_error(exc)
        if full is None:
            raise
        raise full from None
    finally:
        os.umask(old_umask)
        for fd in locks:
            os.close(fd)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
