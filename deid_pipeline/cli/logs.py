"""Logging set-up for the CLI (the library only ever calls ``logging.getLogger``)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone


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


def setup_logging(fmt: str = "text", quiet: bool = False, verbose: bool = False) -> None:
    """Log to stderr; WARNING by default, ERROR with ``--quiet``, DEBUG with ``--verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("deid: %(levelname)s: %(message)s"))
    handler.addFilter(_quiet_dependencies)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    for noisy in ("distributed", "tornado", "asyncio", "bokeh", "presidio-analyzer", "pydicom"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if quiet else logging.ERROR)
