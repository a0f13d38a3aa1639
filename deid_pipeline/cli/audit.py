"""``deid audit verify OUTPUT``: check the manifest's tamper-evident chain."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import read_key_file
from ..errors import ConfigError


@click.group()
def audit() -> None:
    """Audit-trail commands."""


@audit.command("verify")
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), envvar="DEID_KEY_FILE", default=None,
              help="The run key; without it only the hash chain is checked, not its HMAC.")
def verify_cmd(output_dir: Path, key_file: Path | None) -> None:
    """Report edited, deleted, inserted or reordered manifest records (exit 1 when any)."""
    from ..manifest import verify_chain

    key = None
    if key_file is not None:
        try:
            key = read_key_file(key_file)
        except ConfigError as exc:
            click.echo(f"deid: configuration error: {exc}", err=True)
            sys.exit(2)
    problems = verify_chain(output_dir, key)
    if not problems:
        click.echo("audit: manifest chain intact" + (" and authenticated" if key else " (HMAC not checked: no key)"))
        return
    for p in problems:
        click.echo(f"audit: line {p.line}: {p.problem}")
    sys.exit(1)
