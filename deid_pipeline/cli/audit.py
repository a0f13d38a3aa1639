"""``deid audit verify OUTPUT``: check the manifest's tamper-evident chain; ``deid audit public-key``:
the public key that signs it, for a site to publish."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from ..config import read_key_file
from ..errors import ConfigError


@click.group()
def audit() -> None:
    """Audit-trail commands."""


def _fail(message: str) -> NoReturn:
    click.echo(f"deid: configuration error: {message}", err=True)
    sys.exit(2)


@audit.command("verify")
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), envvar="DEID_KEY_FILE", default=None,
              help="The run key: checks the chain head's HMAC (and its signature).")
@click.option("--public-key", "public_key_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The site's published public key (PEM or hex, from `deid audit public-key`): checks that the "
                   "chain head is signed by it, without the run key.")
def verify_cmd(output_dir: Path, key_file: Path | None, public_key_file: Path | None) -> None:
    """Report edited, deleted, inserted or reordered manifest records (exit 1 when any)."""
    from ..manifest import key_fingerprint, parse_public_key, verify_chain

    key = public = None
    if key_file is not None:
        try:
            key = read_key_file(key_file)
        except ConfigError as exc:
            _fail(str(exc))
    if public_key_file is not None:
        try:
            public = parse_public_key(public_key_file.read_bytes())
        except OSError:
            _fail("public key: cannot be read")
        except ValueError:
            _fail("public key: not an Ed25519 public key in PEM nor 64 hex digits")
    problems = verify_chain(output_dir, key, public)
    if not problems:
        checked = (["authenticated by the run key"] if key else []) + (
            [f"signed by the trusted key {key_fingerprint(public)}"] if public else [])
        click.echo("audit: manifest chain intact" + (" and " + " and ".join(checked) if checked
                                                       else " (not authenticated: no --key-file nor --public-key)"))
        return
    for p in problems:
        click.echo(f"audit: line {p.line}: {p.problem}")
    sys.exit(1)


@audit.command("public-key")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), envvar="DEID_KEY_FILE", required=True,
              help="The run key whose signing key's public half is printed.")
def public_key_cmd(key_file: Path) -> None:
    """Print (PEM) the public key that signs the chain heads of runs under this key: publish it, and a
    recipient checks an output with `deid audit verify OUTPUT --public-key FILE`."""
    from ..manifest import public_key_pem

    try:
        key = read_key_file(key_file)
    except ConfigError as exc:
        _fail(str(exc))
    click.echo(public_key_pem(key), nl=False)
