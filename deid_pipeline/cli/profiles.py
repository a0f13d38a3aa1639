"""``deid profiles list|show``."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError


@click.group()
def profiles() -> None:
    """List and show de-identification profiles."""


@profiles.command("list")
def list_cmd() -> None:
    """Every built-in profile and option overlay."""
    from ..profile import list_profiles

    table = Table(show_header=True)
    for col in ("name", "version", "description"):
        table.add_column(col)
    for name, version, desc in list_profiles():
        table.add_row(name, version, desc)
    Console().print(table)


@profiles.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def show_cmd(name: str, fmt: str) -> None:
    """The resolved table of NAME (a profile, a combined spec or a YAML path)."""
    from ..profile import load_profile

    try:
        prof = load_profile(name)
    except ConfigError as exc:
        click.echo(f"deid: configuration error: {exc}", err=True)
        sys.exit(2)
    rows = prof.table()
    if fmt == "json":
        click.echo(json.dumps({"name": prof.name, "version": prof.version, "sha256": prof.sha256,
                               "layers": list(prof.layers), "settings": prof.settings.model_dump(),
                               "rows": rows}, indent=2, default=str))
        return
    console = Console()
    console.print(f"{prof.name} {prof.version}  sha256 {prof.sha256}  layers {' > '.join(prof.layers)}")
    console.print(f"settings: {prof.settings.model_dump()}")
    if rows:
        table = Table(show_header=True)
        cols = list(rows[0].keys())
        for col in cols:
            table.add_column(col)
        for row in rows:
            table.add_row(*[str(row.get(c, "")) for c in cols])
        console.print(table)
