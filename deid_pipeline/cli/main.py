"""``deid``: the command group."""

from __future__ import annotations

import click

from .. import __version__
from ..errors import withhold_warning_messages
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


def main() -> None:
    """Console-script entry point."""
    withhold_warning_messages()
    cli()
