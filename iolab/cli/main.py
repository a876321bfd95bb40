"""The ``iolab`` command line: parse into config dataclasses, call the library, map errors once.

Only this module prints ``error: …`` and chooses exit codes (hyperfine's main.rs, uvicorn's named codes).
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from iolab import __version__
from iolab.cli.options import limit_options
from iolab.cli.opts_net import net_options
from iolab.errors import EXIT_INTERRUPTED, IolabError


class _Group(click.Group):
    """Maps iolab's own errors to one line ``error: …`` and a named exit code; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        previous = signal.getsignal(signal.SIGTERM)

        def _terminate(signum: int, frame: FrameType | None) -> None:
            # SIGTERM takes the same path as Ctrl-C: servers killed, cgroups removed, results saved.
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except IolabError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; partial results were kept", err=True)
            sys.exit(EXIT_INTERRUPTED)
        finally:
            signal.signal(signal.SIGTERM, previous)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="iolab")
def cli() -> None:
    """Measure, explain and cut what I/O (print, logging, stdout) costs a Python program or service.

    \b
    iolab run                  the seed experiment on the built-in demo app
    iolab scenarios            what each demo scenario isolates
    iolab micro script.py      what each print costs a script
    """


def _default_output() -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("iolab-results") / f"{stamp}.json"


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

    \b
    Examples:
      iolab run
      iolab run --scenario sync,async -n 2000 -c 50 --rounds 5
      iolab run --app mypkg.main:app --path /orders --path /health
      iolab run --cpus 0 --memory 0 --unbuffered --markdown -
      iolab run --driver wrk --duration 20s --keepalive
      iolab run --rate 800 --duration 20s --hdr-log run.hlog
      iolab run --html report.html
    """
    from iolab.cli.run import run_from_cli

    run_from_cli(kw, default_output=_default_output())


@cli.command("compare")
@click.argument("base", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fail-if", "gates", multiple=True, metavar="EXPR",
              help="Exit 1 if EXPR holds for a scenario of BASE in NEW: 'p99_ms > +10%' (relative to BASE), "
                   "'write_syscalls_per_request > 4' (absolute). Repeatable; prefix a scenario of BASE as "
                   "'sync:rps < -5%'. Judged on the value the tables show: the median over the successful rounds "
                   "(failed, non_2xx: their total). Also exit 1 when either run is not complete, a scenario of "
                   "BASE is missing or not ok in NEW, or the metric was not measured; exit 2 for an unknown "
                   "scenario or metric.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None,
              help="Also write the comparison as Markdown ('-' = stdout).")
@click.option("--html", type=click.Path(path_type=Path), default=None,
              help="Also write the comparison as a self-contained HTML page with charts.")
def compare_command(base: Path, new: Path, gates: tuple[str, ...], markdown: Path | None,
                    html: Path | None) -> None:
    """Compare two saved runs per scenario and metric; with --fail-if, act as a CI gate.

    write_syscalls_per_request counts write, writev, pwrite and sendfile calls (/proc/PID/io syscw), not
    send/sendto/sendmsg: a server that answers with send shows fewer than it makes.

    \b
    Examples:
      iolab compare base.json new.json
      iolab compare base.json new.json --fail-if "p99_ms > +10%" --fail-if "write_syscalls_per_request > 4"
    """
    from iolab.cli.run import compare_from_cli

    compare_from_cli(base, new, gates, markdown, html)


@cli.command("report")
@click.argument("results_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json", "html"]), default=None,
              help="Output format (default: from -o's extension, else text).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write here instead of stdout ('-' = stdout).")
def report_command(results_file: Path, fmt: str | None, output: Path | None) -> None:
    """Render a saved run (any older iolab.run version) as text, Markdown, JSON or an HTML page.

    \b
    Examples:
      iolab report iolab-results/20260101-120000.json
      iolab report results.json -o results.md
      iolab report results.json -o report.html
    """
    from iolab.cli.run import report_from_cli

    report_from_cli(results_file, fmt, output)


@cli.command("scenarios")
def scenarios_command() -> None:
    """List the demo app's scenarios and what each isolates."""
    from rich.console import Console

    from iolab.demo.scenarios import table

    Console(width=None if sys.stdout.isatty() else 200).print(table())


# Commands that live in their own packages: (name, "module:attribute").
_COMMANDS = (("micro", "iolab.cli.micro:micro_command"), ("sweep", "iolab.cli.sweep:sweep_command"))


def _register() -> None:
    import importlib

    for name, target in _COMMANDS:
        module, _, attr = target.partition(":")
        cli.add_command(getattr(importlib.import_module(module), attr), name=name)


def main() -> None:
    _register()
    cli(prog_name="iolab")

