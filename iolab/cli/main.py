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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from iolab import __version__
from iolab.cli.stdout import fill_closed_std_fds, guarded_stdout
from iolab.demo.scenarios import ScenarioChoiceError
from iolab.errors import EXIT_OK, Interrupted, IolabError, UsageError

# Every command: (name, "module:attribute"). A command's module is imported when the command is invoked
# (or listed by --help, alphabetically): `iolab report` does not import the measuring machinery.
_COMMANDS = (
    ("run", "iolab.cli.run:run_command"),
    ("compare", "iolab.cli.compare:compare_command"),
    ("report", "iolab.cli.report:report_command"),
    ("scenarios", "iolab.cli.scenarios:scenarios_command"),
    ("micro", "iolab.cli.micro:micro_command"),
    ("sweep", "iolab.cli.sweep:sweep_command"),
    ("agent", "iolab.cli.agent:agent_command"),
)


class _Group(click.Group):
    """The commands of ``_COMMANDS``, imported on demand; Ctrl-C in one becomes :class:`Interrupted`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*(name for name, _ in _COMMANDS), *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = dict(_COMMANDS).get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

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
