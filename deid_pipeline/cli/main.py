"""``deid``: the command group."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from .. import __version__
from ..errors import TRACEBACK_ENV, withhold_warning_messages
from .audit import audit
from .inspect_cmd import inspect_cmd
from .profiles import profiles
from .report import report
from .run import run
from .verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deid")
def cli() -> None:
    """deid: DICOM de-identification (PS3.15 Annex E, HIPAA Safe Harbor, burned-in text)."""


cli.add_command(run)
cli.add_command(profiles)
cli.add_command(inspect_cmd)
cli.add_command(audit)
cli.add_command(verify)
cli.add_command(report)


def internal_error_line(exc: BaseException) -> str:
    """What ``deid`` prints for an error it did not expect: the exception's type and the innermost
    frames of deid and of the library that raised it (file and line), never its message or arguments,
    which may hold an input path or a header value."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "deid_pipeline" in Path(f.filename).parts]
    place = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    if ours and ours[-1] is not frames[-1]:
        place += f" (called from {Path(ours[-1].filename).name}:{ours[-1].lineno})"
    return (f"deid: internal error: {type(exc).__name__}{place}; its message is withheld (it may name an input "
            f"path or quote a value): set {TRACEBACK_ENV}=1 to see the traceback. deid writes each output "
            "atomically, so what it wrote is whole; the same `deid run` command resumes a run.")


def main() -> None:
    """Console-script entry point: an unexpected error ends with exit status 1 and one line without its
    message (:func:`internal_error_line`) instead of a traceback."""
    withhold_warning_messages()
    try:
        cli()
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        click.echo(internal_error_line(exc), err=True)
        sys.exit(1)
