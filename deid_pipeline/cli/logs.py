"""Logging set-up for the CLI (the library only ever calls ``logging.getLogger``)."""

from __future__ import annotations

import json
import logging
import os
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


def _quiet_dependencies(record: logging.LogRecord) -> bool:
    """Drop chatter below ERROR from dependencies (Dask reconfigures its own loggers)."""
    return record.levelno >= logging.ERROR or not record.name.startswith(_NOISY)


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
    handler.addFilter(_quiet_dependencies)
    handler.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        file_handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        file_handler.setFormatter(JsonFormatter())
        file_handler.addFilter(_quiet_dependencies)
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
