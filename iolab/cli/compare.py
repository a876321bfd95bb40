"""``iolab compare``: two saved runs side by side per scenario and metric; with ``--fail-if``, a CI gate.

A gate that holds raises GateFailedError (exit 1) after every output is written; main.py reports it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console

from iolab.errors import GateFailedError, UsageError
from iolab.outputs import OutputKeeper, check_outputs
from iolab.report import markdown, terminal


@dataclass(frozen=True)
class CompareOptions:
    base: Path
    new: Path
    gates: tuple[str, ...] = ()  # --fail-if expressions, as typed
    markdown: Path | None = None  # '-' = stdout
    html: Path | None = None


@click.command("compare")
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
    compare_from_cli(CompareOptions(base, new, gates, markdown, html))


def compare_from_cli(opts: CompareOptions) -> None:
    from iolab import results
    from iolab.analysis.compare import compare_runs, parse_gate
    from iolab.analysis.findings import comparison_findings
    from iolab.report import findings, tables

    base_path, new_path, markdown_path, html_path = opts.base, opts.new, opts.markdown, opts.html
    # Unwritable outputs are bad input (exit 2), found before anything is read or any gate judged.
    check_outputs(("--markdown", markdown_path), ("--html", html_path), stdout=("--markdown",))
    keeper = OutputKeeper()
    gates = [parse_gate(g) for g in opts.gates]  # a malformed gate fails before any file is read
    base = results.load(base_path)
    new = results.load(new_path)
    rc = compare_runs(base, new, gates, labels=(str(base_path), str(new_path)))
    out = Console() if sys.stdout.isatty() else Console(width=200)
    paths = {s.name: s.path for s in (*base.scenarios, *new.scenarios)}
    tabs = tables.comparison_tables(rc.comparisons, paths)
    if not tabs and not rc.failures:  # with gates, a new run that has lost every scenario is a regression
        raise UsageError(f"{base_path} and {new_path} have no successful scenario in common")
    found = comparison_findings(rc.comparisons, paths, (str(base_path), str(new_path)))
    findings.print_findings(found, out)  # the answer first
    for t in tabs:
        out.print(terminal.rich_table(t))
    for name in rc.only_in_base:
        out.print(f"only in base: {name}", highlight=False)
    for name in rc.only_in_new:
        out.print(f"only in new: {name}", highlight=False)
    if markdown_path is not None:
        text = findings.markdown(found) + "\n" + "\n\n".join(markdown.table(t) for t in tabs) + "\n"
        if str(markdown_path) == "-":
            sys.stdout.write(text)
        else:
            keeper.write("--markdown", markdown_path, text)
    if html_path is not None:  # before the gates decide the exit code: a failing CI keeps its page
        from iolab.report import html

        keeper.write("--html", html_path, html.render_comparison(rc, (str(base_path), str(new_path)), gates,
                                                                 found))
    keeper.raise_if_fell_back()
    if gates:  # after every output is written: a failing CI keeps its tables and page
        for check in rc.passed:
            out.print(f"gate passed: {check.describe()}", highlight=False, markup=False, soft_wrap=True)
        for f in rc.failures:
            print(f"gate failed: {f.describe()}", file=sys.stderr)
        if rc.failures:
            raise GateFailedError(rc.gate_summary())
        out.print(rc.gate_summary(), highlight=False, markup=False)
