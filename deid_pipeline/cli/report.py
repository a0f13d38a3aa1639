"""``deid report OUTPUT [--with-originals --against INPUT]``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import check_outside
from ..errors import ConfigError
from .logs import log_options, setup_logging


@click.command("report")
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the HTML (default OUTPUT/report.html; with originals, the private folder: never inside OUTPUT or INPUT).")
@click.option("--with-originals", is_flag=True, help="Show each original frame beside the redacted one (PHI: needs --against).")
@click.option("--against", "input_dir", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="The INPUT of the run (read through the private journal).")
@click.option("--journal", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Private folder of the run (default OUTPUT.private).")
@click.option("--quiet", is_flag=True)
@log_options
def report(output_dir: Path, out: Path | None, with_originals: bool, input_dir: Path | None,
           journal: Path | None, quiet: bool, verbose: bool, log_file: Path | None) -> None:
    """Write a self-contained HTML QA report: summary, charts, redacted thumbnails by series."""
    from ..report import build_report
    from ..runner import private_dir

    try:
        check_outside(log_file, "the log file", INPUT=input_dir)  # before it is opened: INPUT is never modified
    except ConfigError as exc:
        click.echo(f"deid: configuration error: {exc}", err=True)
        sys.exit(2)
    setup_logging("text", quiet, verbose, log_file)
    if not (output_dir / "manifest.jsonl").exists():
        click.echo("deid: configuration error: OUTPUT holds no manifest.jsonl", err=True)
        sys.exit(2)
    private = private_dir(output_dir, journal)
    if with_originals:
        if input_dir is None:
            click.echo("deid: configuration error: --with-originals needs --against INPUT", err=True)
            sys.exit(2)
        if not (private / "journal.jsonl").exists():
            click.echo("deid: configuration error: the run's private journal was not found (use --journal)", err=True)
            sys.exit(2)
    elif input_dir is not None:
        click.echo("deid: configuration error: --against is only used with --with-originals", err=True)
        sys.exit(2)
    try:
        path, n = build_report(output_dir, out, input_dir if with_originals else None, private if with_originals else None)
    except ConfigError as exc:  # originals asked into OUTPUT or INPUT
        click.echo(f"deid: configuration error: {exc}", err=True)
        sys.exit(2)
    if not quiet:
        click.echo(f"report: {n} redacted files -> {path}")
