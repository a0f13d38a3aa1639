"""Logging set-up for the CLI (the library only ever calls ``logging.getLogger``)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


_NOISY = ("distributed", "tornado", "asyncio", "bokeh", "presidio-analyzer", "pydicom", "dask")


#: Dask's errors about what deid handles and reports itself: a result fetched again after its worker died,
#: a batch that kept killing its workers (deid warns, retries its files one by one and records the file
#: that kills them ``worker-crashed``). Shown with ``--verbose`` only, as debug.
_HANDLED_BY_DEID = (re.compile(r"^Couldn't gather keys"), re.compile(r"marked as failed because \d+ workers died"))


def _dependency_filter(verbose: bool) -> Callable[[logging.LogRecord], bool]:
    """A handler filter: chatter below ERROR from dependencies dropped (Dask reconfigures its own loggers
    when imported), and Dask's errors in ``_HANDLED_BY_DEID`` turned debug (dropped without ``verbose``)."""

    def keep(record: logging.LogRecord) -> bool:
        if not record.name.startswith(_NOISY):
            return True
        if record.name.startswith("distributed") and any(p.search(record.getMessage()) for p in _HANDLED_BY_DEID):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return verbose
        return record.levelno >= logging.ERROR

    return keep


def setup_logging(fmt: str = "text", quiet: bool = False, verbose: bool = False, log_file: Path | None = None) -> None:
    """Log to stderr (WARNING; ERROR with ``--quiet``; DEBUG with ``--verbose``) and, when given, to a file.

    The file gets JSON lines at INFO (DEBUG with ``--verbose``), is created mode 0600 and appended to,
    so one file can hold a run and its resumptions. Messages never carry values or input paths.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("deid: %(levelname)s: %(message)s"))
    handler.addFilter(_dependency_filter(verbose))
    handler.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        file_handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        file_handler.setFormatter(JsonFormatter())
        file_handler.addFilter(_dependency_filter(verbose))
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(file_handler)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(min(h.level for h in handlers))
    for noisy in ("distributed", "tornado", "asyncio", "bokeh", "presidio-analyzer", "pydicom"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if quiet else logging.ERROR)


def log_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--verbose`` and ``--log-file`` for a command."""
    fn = click.option("--log-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                      help="Also append JSON log lines here (created mode 600; never holds values or input paths).")(fn)
    return click.option("--verbose", is_flag=True, help="Debug messages on stderr.")(fn)
