"""The ``iolab`` command line: the click group, the one place errors become exit codes, the commands' list.

Each command is a module of its own (run, compare, report, scenarios, micro, sweep): it parses its options
into a config dataclass, calls the library and raises iolab's errors. None of them prints ``error: …`` or
chooses an exit code; :func:`exit_code` does, once (hyperfine's main.rs, uvicorn's named codes), and
:func:`main` is the only caller of ``sys.exit`` in iolab.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from iolab import __version__
from iolab.cli.stdout import fill_closed_std_fds, guarded_stdout
from iolab.demo.scenarios import ScenarioChoiceError
from iolab.errors import EXIT_OK, Interrupted, IolabError, UsageError

# Every command: name -> ("module:attribute", the first paragraph of its help). A command's module is
# imported only when the command runs or prints its own help: `iolab --help` lists the commands from this
# table and `iolab report` does not import the measuring machinery (click's "lazily loading subcommands").
# tests/test_cli_lazy.py checks each text against its command's own help.
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("iolab.cli.run:run_command",
            "Reproduce the seed experiment (or measure your app) and print the tables."),
    "compare": ("iolab.cli.compare:compare_command",
                "Compare two saved runs per scenario and metric; with --fail-if, act as a CI gate."),
    "report": ("iolab.cli.report:report_command",
               "Render a saved run (any older iolab.run version) as text, Markdown, JSON or an HTML page."),
    "scenarios": ("iolab.cli.scenarios:scenarios_command",
                  "List the demo app's scenarios and what each isolates."),
    "micro": ("iolab.cli.micro:micro_command",
              "What does my output cost? Runs a Python script or any command in each output setting (stdout"
              " to a pipe, a file, /dev/null, a pty; for Python also unbuffered and with print disabled) and"
              " reports wall time, CPU, write syscalls (syscw), bytes, context switches and peak RSS, side by"
              " side, with why."),
    "sweep": ("iolab.cli.sweep:sweep_command",
              "When does async logging pay? Run strategies over a grid of CPU work × sink latency."),
    "agent": ("iolab.cli.agent:agent_command",
              "Serve /metrics and sampling windows of this host's processes, read-only, behind a token."),
}


def _listed(name: str, commands: Mapping[str, click.Command]) -> click.Command:
    """What ``--help`` lists for ``name``: a stand-in carrying the table's help, not the imported command."""
    return click.Command(name, help=_COMMANDS[name][1]) if name in _COMMANDS else commands[name]


class _Group(click.Group):
    """The commands of ``_COMMANDS``, imported on demand; Ctrl-C in one becomes :class:`Interrupted`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, _, attr = _COMMANDS[cmd_name][0].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing, but from the table: it would import every command for its short help.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, _listed(name, self.commands).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        # Before click turns a KeyboardInterrupt into a bare "Aborted!" (exit 1).
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="iolab")
def cli() -> None:
    """Measure, explain and cut what I/O (print, logging, stdout) costs a Python program or service.

    \b
    iolab run                  the seed experiment on the built-in demo app
    iolab scenarios            what each demo scenario isolates
    iolab micro script.py      what each print costs a script
    """


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes Ctrl-C's path: servers killed, cgroups removed, results saved, exit 130."""

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(line: str) -> None:
    try:
        click.echo(line, err=True)
    except OSError:  # stderr gone too: the exit code is all that is left to say it
        pass


def exit_code(args: Sequence[str] | None = None) -> int:
    """Run the command line on ``args`` (default: sys.argv) and return its exit code.

    The one place that maps outcomes to codes: iolab's errors (errors.py, README's table) to one line
    ``error: …`` and their code; click's own usage errors to its message and 2; a failed write to
    standard output (StdoutError, exit 11) like any other error. Anything else is a bug and keeps its
    traceback.
    """
    try:
        with _sigterm_as_interrupt(), guarded_stdout():
            rv = cli.main(list(args) if args is not None else None, prog_name="iolab", standalone_mode=False)
    except IolabError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except ScenarioChoiceError as exc:  # the demo's own (it imports nothing of the lab): bad input
        _say(f"error: {exc}")
        return UsageError.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C while click itself parsed the options
        _say(f"error: {Interrupted()}")
        return Interrupted.exit_code
    # A command returns None; --help and --version return click's code (0).
    return rv if isinstance(rv, int) else EXIT_OK


def main(args: Sequence[str] | None = None) -> None:
    """The ``iolab`` console script."""
    fill_closed_std_fds()
    sys.exit(exit_code(args))
