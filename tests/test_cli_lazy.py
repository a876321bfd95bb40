"""The command list is lazy: `iolab --help` names every command without importing it, in click's words."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from iolab.cli import main
from tests.conftest import REPO


@pytest.mark.parametrize("name", sorted(main._COMMANDS))
@pytest.mark.parametrize("limit", [45, 104])
def test_listed_help_is_the_commands_own(name: str, limit: int) -> None:
    """The table's text gives the same short help as the command itself would (no drift)."""
    command = main.cli.get_command(click.Context(main.cli), name)
    assert command is not None
    assert main._listed(name, {}).get_short_help_str(limit) == command.get_short_help_str(limit)


def _lab_modules_imported(*args: str) -> set[str]:
    """The iolab.measure/analysis/report modules one CLI call imports (run in a fresh interpreter)."""
    code = ("import sys; from iolab.cli.main import exit_code; code = exit_code(sys.argv[1:]); "
            "print(' '.join(m for m in sys.modules if m.split('.')[:2] in "
            "(['iolab', 'measure'], ['iolab', 'analysis'], ['iolab', 'report'])), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stderr.split())


def test_group_help_lists_every_command_and_imports_none() -> None:
    proc = subprocess.run([sys.executable, "-m", "iolab", "--help"], cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert all(f"\n  {name} " in proc.stdout for name in main._COMMANDS)
    assert _lab_modules_imported("--help") == set()


def test_report_imports_no_measuring() -> None:
    imported = _lab_modules_imported("report", "--help")
    assert "iolab.report.terminal" in imported
    assert not {m for m in imported if m.startswith("iolab.measure")}
