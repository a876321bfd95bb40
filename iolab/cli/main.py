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
<<<<<<< HEAD
from iolab.cli.options import limit_options
from iolab.cli.opts_net import net_options
from iolab.errors import EXIT_INTERRUPTED, IolabError
=======
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
>>>>>>> main


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


<<<<<<< HEAD
@cli.command("run")
@click.option("--scenario", "scenario", default=None, metavar="LIST",
              help="Demo scenarios or groups, comma-separated (see `iolab scenarios`): default = the seed's "
                   "four and their four controls, all = every installed scenario, catalog = the strategies "
                   "beyond those eight.")
@click.option("--app", default=None, metavar="MODULE:ATTR",
              help="Your ASGI app instead of the demo, e.g. mypkg.main:app (needs --path).")
@click.option("--app-dir", default=None, type=click.Path(file_okay=False),
              help="Directory to import --app from (default: the current one).")
@click.option("--path", "paths", multiple=True, metavar="[NAME=][METHOD:]PATH",
              help="A path to measure (with --app, --cmd or --url); repeat for several, one fresh server each. "
                   "E.g. /health, orders=POST:/orders.")
@click.option("--server", type=click.Choice(["uvicorn", "hypercorn", "granian"]), default="uvicorn",
              show_default=True, help="ASGI server for --app (hypercorn/granian where installed).")
@click.option("--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True,
              help="Event loop of the served app.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Server worker processes (the probe sums the whole process tree).")
@click.option("--cmd", default=None, metavar="COMMAND",
              help="Start this server command per scenario (split like a shell, no shell); needs --url.")
@click.option("--url", default=None, metavar="URL",
              help="Where the server answers: with --cmd, or alone for a server that is already running.")
@click.option("--pid", default=None, type=int,
              help="With --url alone: the running server's PID, to measure its OS costs (else latency only).")
@click.option("--allow-remote", is_flag=True, help="Allow a --url that is not on loopback.")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Request header (repeatable).")
@click.option("--body", type=click.Path(dir_okay=False), default=None, help="Request body from this file.")
@click.option("-n", "--requests", default=10_000, show_default=True, type=click.IntRange(1),
              help="Measured requests per scenario and round (ab -n).")
@click.option("-c", "--concurrency", default=100, show_default=True, type=click.IntRange(1),
              help="Requests in flight at once (ab -c).")
@click.option("--driver", type=click.Choice(["builtin", "ab", "wrk", "hey"]), default="builtin", show_default=True,
              help="Load generator: iolab's own, or ApacheBench, wrk, hey (must be installed).")
@click.option("--duration", default=None, metavar="D",
              help="Run the measured load for this long (20s, 500ms, 2m) instead of -n requests.")
@click.option("--rate", default=None, type=click.FloatRange(min=0, min_open=True), metavar="R",
              help="Open loop: R requests/s, each due at its time whether or not the server kept up; latency "
                   "counted from the due time (needs --duration; builtin driver).")
@click.option("--arrival", type=click.Choice(["uniform", "poisson"]), default="uniform", show_default=True,
              help="Open loop: fixed intervals or Poisson arrivals.")
@click.option("--hdr-log", "hdr_log", type=click.Path(path_type=Path), default=None,
              help="Also write every round's latencies as an HdrHistogram log (µs), for HdrHistogram's tools.")
@click.option("--warmup", default=1_000, show_default=True, type=click.IntRange(0),
              help="Requests sent before measuring, on the same server.")
@click.option("--keepalive/--no-keepalive", default=False, show_default=True,
              help="Reuse connections (default: a new connection per request, as ab does).")
@click.option("--timeout", "timeout_s", default=30.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds before a request counts as timed out.")
@click.option("--max-error-pct", "max_error_pct", default=1.0, show_default=True,
              type=click.FloatRange(0, 100),
              help="A round whose requests fail or get a status outside 2xx/3xx in more than this share (%) "
                   "is flagged degraded (exit 8); one where none succeeds measured nothing (exit 7).")
@click.option("--interval", "interval_s", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between /proc samples (pidstat's interval).")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1),
              help="Rounds; each runs every scenario once, in rotated order (verdicts need ≥ 2).")
@click.option("--compare", "compare", multiple=True, metavar="A:B",
              help="A pair of scenarios to compare (repeatable; default: the demo's controls and seed pairs).")
@limit_options
@net_options
@click.option("--unbuffered", is_flag=True,
              help="Run the server with PYTHONUNBUFFERED=1 (default: removed, Python's block buffering).")
@click.option("--stdout", "stdout_kind", default="pipe", show_default=True,
              type=click.Choice(["pipe", "file", "null", "tty", "slow"]),
              help="Where the server's stdout/stderr go.")
@click.option("--sink-rate", default="400KB/s", show_default=True,
              help="Read rate of --stdout slow.")
@click.option("--work-us", default=0, show_default=True, type=click.IntRange(0),
              help="Demo app: each request also burns this many µs of CPU.")
@click.option("--sink-latency", "sink_latency_ms", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Demo app: each log write blocks this many ms (a slow log sink).")
@click.option("--port", default=None, type=click.IntRange(1, 65535),
              help="Port for the server on 127.0.0.1 (default: a free one per server).")
@click.option("--ready-timeout", "ready_timeout_s", default=30.0, show_default=True,
              type=click.FloatRange(min=0.1), help="Seconds to wait for the server to accept connections.")
# Output paths are not click.Path(dir_okay=False): iolab.outputs checks them all (a directory, a device, a
# FIFO, an unwritable place …) before anything is measured, with one `error:` line naming the option.
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Results file (JSON, iolab.run/1). Default: iolab-results/<timestamp>.json")
@click.option("--markdown", type=click.Path(path_type=Path), default=None,
              help="Also write the tables as GitHub Markdown ('-' = stdout).")
@click.option("--html", type=click.Path(path_type=Path), default=None,
              help="Also write a self-contained HTML report with charts (opens offline).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def run_command(**kw: Any) -> None:
    """Reproduce the seed experiment (or measure your app) and print the tables.
=======
def _say(line: str) -> None:
    try:
        click.echo(line, err=True)
    except OSError:  # stderr gone too: the exit code is all that is left to say it
        pass
>>>>>>> main


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
