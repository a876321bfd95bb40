"""``iolab scenarios``: the demo app's scenarios and what each isolates."""

from __future__ import annotations

import sys

import click


@click.command("scenarios")
def scenarios_command() -> None:
    """List the demo app's scenarios and what each isolates."""
    from rich.console import Console

    from iolab.demo.scenarios import table

    Console(width=None if sys.stdout.isatty() else 200).print(table())
