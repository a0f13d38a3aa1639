"""``deid verify OUTPUT --against INPUT``."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

from ..config import check_outside, read_key_file
from ..errors import ConfigError
from .logs import log_options, setup_logging


@click.command("verify")
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--against", "input_dir", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True), help="The INPUT of the run.")
@click.option("--journal", type=click.Path(path_type=Path, file_okay=False), default=None, help="Private folder of the run (default OUTPUT.private).")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), envvar="DEID_KEY_FILE", default=None)
@click.option("--profile", "profile", default=None, help="Profile to check against (default: the one the run kept in its private folder).")
@click.option("--workers", type=int, default=None)
@click.option("--scheduler", default=None, metavar="ADDRESS")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--no-rescan", is_flag=True, help="Skip running the text detector again on redacted images.")
@click.option("--quiet", is_flag=True)
@log_options
def verify(output_dir: Path, input_dir: Path, journal: Path | None, key_file: Path | None, profile: str | None,
           workers: int | None, scheduler: str | None, device: str, no_rescan: bool, quiet: bool, verbose: bool, log_file: Path | None) -> None:
    """Check every output against its input; exit 1 when anything is found (report in OUTPUT/verify.json)."""
    from ..prestart import start_for_verify, verify_rescans

    try:  # read again (and any fault reported) by verify_run
        run_info = json.loads((output_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run_info = {}
    # first: the workers' imports run beside the driver's (below)
    start_for_verify(workers, scheduler, verify_rescans(run_info if isinstance(run_info, dict) else {}, not no_rescan))
    from ..verify import verify_run
    from ..runner import private_dir

    private = private_dir(output_dir, journal)
    try:
        check_outside(log_file, "the log file", INPUT=input_dir)  # before it is opened: INPUT is never modified
        setup_logging("text", quiet, verbose, log_file)
        key = read_key_file(key_file) if key_file else (read_key_file(private / "run.key") if (private / "run.key").exists() else None)
    except ConfigError as exc:
        click.echo(f"deid: configuration error: {exc}", err=True)
        sys.exit(2)
    if not (private / "journal.jsonl").exists():
        click.echo("deid: configuration error: the run's private journal was not found (use --journal)", err=True)
        sys.exit(2)
    try:
        report = verify_run(output_dir, input_dir, private, key, profile, workers, scheduler, not no_rescan, device, quiet)
    except ConfigError as exc:  # an unknown profile, a scheduler that does not answer
        click.echo(f"deid: configuration error: {exc}", err=True)
        sys.exit(2)
    if not quiet:
        click.echo(f"verify: {report['checked_outputs']} outputs checked, {len(report['findings'])} findings")
        for kind, n in sorted(report["counts"].items()):
            click.echo(f"  {kind}: {n}")
            details = Counter(f["detail"] for f in report["findings"] if f["kind"] == kind)
            for detail, m in details.most_common(5):  # details name tags and categories, never values
                click.echo(f"    {m} x {detail}")
            if len(details) > 5:
                click.echo(f"    ... {len(details) - 5} other details in verify.json")
        if key is None:
            click.echo("  (no key: the chain HMAC was not checked)")
    sys.exit(0 if report["ok"] else 1)
