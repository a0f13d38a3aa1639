"""``deid inspect FILE``: a dry run over one file."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--profile", "profile", default="safe-harbor", show_default=True)
@click.option("--show-values", is_flag=True, help="Also print the values (PHI!). Off by default.")
def inspect_cmd(file: Path, profile: str, show_values: bool) -> None:
    """Every element of FILE, nested ones included, with the action that would apply and why."""
    import pydicom

    from ..profile import load_profile
    from ..tags import inspect_dataset

    try:
        prof = load_profile(profile)
    except ConfigError as exc:
        click.echo(f"deid: configuration error: {exc}", err=True)
        sys.exit(2)
    try:
        ds = pydicom.dcmread(file, force=True)
    except Exception:
        click.echo("deid: the file does not parse as DICOM", err=True)
        sys.exit(1)
    rows = inspect_dataset(ds, prof, show_values=show_values)
    table = Table(show_header=True, title=f"{prof.name} {prof.version}")
    for col in ("path", "keyword", "vr", "action", "rule"):
        table.add_column(col)
    if show_values:
        table.add_column("value")
    for r in rows:
        cells = [r.path, r.keyword, r.vr, r.action, r.origin]
        if show_values:
            cells.append("" if r.value is None else str(r.value))
        table.add_row(*cells)
    Console(width=200).print(table)
