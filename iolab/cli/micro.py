"""``iolab micro``: what a script's or a program's output costs, with the operating system's evidence.

Thin: parse options into ``MicroOptions``, call ``measure``, write the report. Errors are iolab's own
exceptions; the top-level group turns them into one ``error: …`` line and an exit code.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click
from rich.console import Console

from iolab.measure.micro.runner import MicroOptions, MicroRunFailed, Progress, measure
from iolab.measure.micro.target import parse_modes, parse_stdout_kinds
from iolab.outputs import OutputKeeper, check_outputs
from iolab.report.micro import print_report, render_markdown
from iolab.results.micro import MicroResult, RunRecord, dumps

EPILOG = """\b
Examples:
  iolab micro solution.py --input in.txt          a Python script, stdin from a file
  iolab micro --input in.txt -- ./a.out           any command (everything after -- is the command)
  iolab micro solution.py --stdout pipe,tty --mode default,print-off --runs 3 -o micro.json
"""


def _progress_printer() -> Progress | None:
    """A one-line progress display on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    err = Console(stderr=True)

    def show(label: str, done: int, total: int) -> None:
        err.print(f"\r[dim]{done}/{total} {label}[/]".ljust(60), end="", highlight=False)
        if done == total:
            err.print("\r" + " " * 70 + "\r", end="")

    return show


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def failed_runs(result: MicroResult) -> list[RunRecord]:
    every = ([result.count_run] if result.count_run else []) + [
        r for s in result.settings for r in (*s.warmup, *s.runs)]
    return [r for r in every if r.status != "ok"]


def _stop(result: MicroResult) -> MicroRunFailed:
    bad = failed_runs(result)[0]
    if bad.stderr_tail:
        click.echo("the program's stderr ended with:", err=True)
        for line in bad.stderr_tail:
            click.echo(f"  | {line}", err=True)
    return MicroRunFailed(f"{' '.join(result.target.argv)} {bad.error} ({bad.label()}); "
                          "stopped (--keep-going runs the rest)")


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("program", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT.py|-- COMMAND [ARGS]...")
@click.option("--input", "input_path", metavar="FILE", help="Standard input for every run (default: /dev/null).")
@click.option("--runs", type=int, default=5, show_default=True, help="Measured runs per setting.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Unreported warm-up runs per setting.")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="Kill a run (with its process group) after this long.")
@click.option("--keep-going", is_flag=True, help="Keep measuring after a run fails or times out.")
@click.option("--python", metavar="PATH", help="Interpreter for a Python script (default: iolab's own).")
@click.option("--stdout", "stdout_kinds", default="pipe,file,null,tty", show_default=True, metavar="LIST",
              help="Output targets to compare: pipe, file, null, tty (a pseudo-terminal).")
@click.option("--mode", "modes", default="default,unbuffered,print-off", show_default=True, metavar="LIST",
              help="Python modes: default buffering, unbuffered (PYTHONUNBUFFERED=1), print-off.")
@click.option("-o", "--output", "json_path", metavar="FILE", help="Write the results as JSON (iolab.micro/1).")
@click.option("--markdown", "md_path", metavar="FILE", help="Write the report as Markdown.")
def micro_command(program: tuple[str, ...], input_path: str | None, runs: int, warmup: int, timeout_s: float,
                  keep_going: bool, python: str | None, stdout_kinds: str, modes: str, json_path: str | None,
                  md_path: str | None) -> None:
    """What does my output cost? Runs a Python script or any command in each output setting (stdout to a
    pipe, a file, /dev/null, a pty; for Python also unbuffered and with print disabled) and reports wall
    time, CPU, write syscalls (syscw), bytes, context switches and peak RSS, side by side, with why."""
    opts = MicroOptions(
        tokens=program, input=input_path, runs=runs, warmup=warmup, timeout_s=timeout_s,
        keep_going=keep_going, python=python, stdout_kinds=parse_stdout_kinds(stdout_kinds),
        modes=parse_modes(modes),
    )
    check_outputs(("-o", json_path), ("--markdown", md_path))  # before anything runs (exit 2)
    keeper = OutputKeeper()
    # A closed terminal (SIGHUP) takes the Ctrl-C path too: the programs run in sessions of their own,
    # so nothing else would stop them. (The top-level group does the same for SIGTERM.)
    previous = signal.signal(signal.SIGHUP, _interrupt)
    try:
        result = measure(opts, _progress_printer())
    finally:
        signal.signal(signal.SIGHUP, previous)
    if json_path:
        keeper.write("-o", json_path, dumps(result))
    if result.status == "interrupted":
        raise KeyboardInterrupt  # the top-level group reports it and exits 130
    if result.status == "stopped":
        raise _stop(result)
    print_report(result, Console(width=None if sys.stdout.isatty() else 160))
    if md_path:
        keeper.write("--markdown", md_path, render_markdown(result))
    if result.status == "failed":
        n = len(failed_runs(result))
        raise MicroRunFailed(f"{n} run(s) failed or timed out; they are left out of the figures")
    keeper.raise_if_fell_back()
