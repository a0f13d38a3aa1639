"""``deid run INPUT OUTPUT``."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..config import check_outside
from ..errors import TRACEBACK_ENV, ConfigError, StorageError
from .logs import log_options, setup_logging


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's stop, ``kill``): the run ends as on Ctrl-C, its records flushed."""


def _interrupt(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM: stop the run. Dask's event loop and scheduler, interrupted inside a call and
    closing, then log tracebacks of their own (tornado's "Exception in callback", the scheduler's "Closed
    comm" while sending an event): noise as the run ends, so those loggers are silenced first."""
    import logging

    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _DASK]
    for name in names:  # each: Dask's logging configuration sets some of them a level of their own
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    if not getattr(sys.unraisablehook, "deid_quiet_teardown", False):
        sys.unraisablehook = _quiet_teardown(sys.unraisablehook)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


_DASK = ("tornado", "distributed")


def _quiet_teardown(previous: Any) -> Any:
    """``sys.unraisablehook`` once interrupted: an exception raised in a ``__del__`` of Dask's or
    tornado's (a client future the signal caught half made, collected as the process ends: "Exception
    ignored in: Future.__del__ ... AttributeError", seen in 1 of 40 SIGTERMs) is dropped; any other goes
    to ``previous``."""

    def hook(unraisable: Any) -> None:
        if (getattr(unraisable.object, "__module__", None) or "").split(".")[0] in _DASK:
            return
        previous(unraisable)

    hook.deid_quiet_teardown = True  # type: ignore[attr-defined]
    return hook


_STOPS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _interrupts_end_the_run() -> Iterator[None]:
    """Within: SIGTERM ends the run like Ctrl-C (:func:`_interrupt`: the ledger closed, the workers
    closed); after: the caller's handlers again (the command may run inside another program: the tests,
    a notebook)."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in _STOPS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.argument("input_dir", metavar="INPUT", type=click.Path(path_type=Path, file_okay=False))
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(path_type=Path, file_okay=False))
@click.option("--profile", "profile", default="safe-harbor", show_default=True, help="Profile name, combined spec (basic+retain-uids) or YAML path.")
@click.option("--workers", type=int, default=None, help="Local Dask worker processes (default: one per core, or per GPU). 0 runs in-process.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Use an existing Dask cluster, e.g. tcp://host:8786.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), envvar="DEID_KEY_FILE", default=None, help="Secret key for pseudonyms (or DEID_KEY_FILE). Mode 600.")
@click.option("--journal", type=click.Path(path_type=Path, file_okay=False), default=None, help="Private folder for the input-path journal (default OUTPUT.private beside OUTPUT).")
@click.option("--pixels", type=click.Choice(["profile", "all", "triage", "none"]), default="profile", show_default=True, help="Which images the text detector scans.")
@click.option("--detector", default="auto", show_default=True, metavar="NAME",
              help="Text detector: auto (ppocrv4-det+deid-textseg, both networks), ppocrv4-det, or deid-textseg (about 3x faster end to end on a CPU; see benchmarks/README.md).")
@click.option("--linkage", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write an encrypted original-to-pseudonym table here (outside OUTPUT and INPUT).")
@click.option("--batch-size", type=int, default=None, help="Files per Dask task (default 16 when pixels are scanned, 64 for a header-only run).")
@click.option("--file-timeout", type=float, default=None, envvar="DEID_FILE_TIMEOUT", help="Seconds one file may take, a scan counted from its last step (its batch is then cancelled and its files retried alone; default 300).")
@click.option("--memory-limit", default="auto", show_default=True, metavar="BYTES",
              help="Per local worker (e.g. 4GiB); Dask restarts a worker above it. Inputs too big for it fail with a reason.")
@click.option("--retry-failed", is_flag=True,
              help="Resuming: process the inputs recorded failed (I/O error, crashed or timed-out worker, memory limit) again; their records are replaced, one record per input.")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary; errors only.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@log_options
@click.option("--debug", is_flag=True, hidden=True,
              help=f"Re-raise per-file errors (development; their traceback is shown with {TRACEBACK_ENV}=1).")
def run(input_dir: Path, output_dir: Path, profile: str, workers: int | None, scheduler: str | None, device: str,
        key_file: Path | None, journal: Path | None, pixels: str, detector: str, linkage: Path | None, batch_size: int | None,
        file_timeout: float | None, memory_limit: str, retry_failed: bool, quiet: bool, log_format: str, verbose: bool, log_file: Path | None,
        debug: bool) -> None:
    """De-identify every file under INPUT into OUTPUT, with OUTPUT/manifest.jsonl."""
    from ..prestart import start_for_run

    start_for_run(workers, scheduler, pixels)  # first: the workers' imports run beside the driver's (below)
    from ..runner import RunOptions, execute, prepare_run
    from ..types import FileResult
    from .progress import Feedback

    opts = RunOptions(input_dir=input_dir, output_dir=output_dir, profile=profile, key_file=key_file, journal=journal,
                      workers=workers, scheduler=scheduler, device=device, pixels=pixels, detector=detector, batch_size=batch_size,
                      linkage=linkage, debug=debug, file_timeout=file_timeout, memory_limit=memory_limit, retry_failed=retry_failed, quiet=quiet, count_inputs=not quiet and sys.stderr.isatty())
    try:
        check_outside(log_file, "the log file", INPUT=input_dir)  # before it is opened: INPUT is never modified
        setup_logging(log_format, quiet, verbose, log_file)
        prepare_run(opts)
    except ConfigError as exc:
        click.echo(f"deid: configuration error: {exc}", err=True)
        sys.exit(2)
    feedback = Feedback(enabled=not quiet and sys.stderr.isatty())

    def on_start(info: dict[str, Any]) -> None:
        if not quiet:
            for note in info.get("notes", []):
                click.echo(f"deid: {note}", err=True)
        feedback.start(info.get("inputs_total"), info.get("inputs_done", 0))

    def on_result(result: FileResult, rec: dict[str, Any]) -> None:
        feedback.advance(result.images)

    with _interrupts_end_the_run():
        try:
            try:
                summary = execute(opts, on_result=on_result, on_start=on_start)
            finally:
                feedback.stop()  # the progress bar ends before any line below (or ``main``'s error line)
        except ConfigError as exc:
            click.echo(f"deid: configuration error: {exc}", err=True)
            sys.exit(2)
        except StorageError as exc:
            click.echo(f"deid: the run stopped: OUTPUT or its private folder takes no more writes ({exc}); what was "
                       "recorded stays: make room and run the same command again to resume", err=True)
            sys.exit(4)
        except KeyboardInterrupt as exc:
            click.echo("deid: interrupted; run the same command again to resume", err=True)
            sys.exit(128 + signal.SIGTERM if isinstance(exc, Terminated) else 130)
        for sig in _STOPS:  # the run is recorded and its workers closed: only the summary is left
            signal.signal(sig, signal.SIG_IGN)
        if not quiet:
            feedback.summary(summary.data)
            failed = summary.data.get("counts", {}).get("failed", 0)
            if failed:
                click.echo(f"deid: {failed} inputs failed (an I/O error, a crashed or timed-out worker, the memory "
                           "limit; their reasons are in the manifest): the same command with --retry-failed "
                           "processes them again", err=True)
        sys.exit(summary.exit_code)
