"""``iolab sweep``: options → SweepSpec, one line of progress per measured round, tables, files.

Listed in iolab/cli/main.py as ("sweep", "iolab.cli.sweep:sweep_command"); its IolabErrors become
``error: …`` there.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from iolab.cli.options import FiniteRange, limit_options, limits_request
from iolab.demo.scenarios import select
from iolab.errors import UsageError
from iolab.outputs import OutputKeeper, check_outputs
from iolab.results import RoundRecord

DEFAULT_STRATEGIES = "sync-handler,async-blocking-log,queue-async"


def _numbers(text: str, option: str, kind: type[int] | type[float]) -> tuple[Any, ...]:
    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            value = kind(item.strip())
        except ValueError:
            raise UsageError(f"{option} {text!r}: expected comma-separated numbers, e.g. 0,200,1000") from None
        if value < 0:
            raise UsageError(f"{option} {text!r}: values must be >= 0")
        if value not in out:
            out.append(value)
    if not out:
        raise UsageError(f"{option} needs at least one value")
    return tuple(out)


def _auto_int(text: str, option: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: a whole number or auto") from None
    if value < 1 and option != "--warmup" or value < 0:
        raise UsageError(f"{option} {text!r} is too small")
    return value


class LineReporter:
    """One line per cell and per measured round, on stderr (a sweep is long: show it is alive)."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self._c = console
        self._quiet = quiet
        self._cell = ""

    def cell_started(self, index: int, total: int, work_us: int, latency_ms: float, requests: int) -> None:
        self._cell = f"cell {index}/{total} (work {work_us:g} µs, sink {latency_ms:g} ms)"
        if not self._quiet:
            self._c.print(f"{self._cell}: -n {requests:,}", highlight=False)

    def round_finished(self, record: RoundRecord, name: str) -> None:
        if self._quiet:
            return
        from iolab.cli.progress import round_line

        self._c.print(f"  {name}: {round_line(record)}", highlight=False)

    def cell_finished(self, cell: Any) -> None:
        if not self._quiet:
            from iolab.analysis.sweep import cell_label

            self._c.print(f"  → {cell_label(cell)}", highlight=False)


@click.command("sweep")
@click.option("--scenario", "scenario", default=DEFAULT_STRATEGIES, show_default=True, metavar="LIST",
              help="Demo strategies to compare in every cell (see `iolab scenarios`).")
@click.option("--work-us", "work_us", default="0,200,1000", show_default=True, metavar="LIST",
              help="CPU work per request, µs (rows of the grid).")
@click.option("--sink-latency", "sink_latency", default="0,1,5", show_default=True, metavar="LIST",
              help="Blocking time of every write(2) to the log sink, ms (columns of the grid).")
@click.option("--metric", default="rps", show_default=True,
              type=click.Choice(["rps", "p50_ms", "p99_ms", "rps_per_server_cpu_s", "cpu_ms_per_request"]),
              help="What decides a cell's winner (every pair is also compared on p50, p99 and req/s).")
@click.option("-n", "--requests", default="auto", show_default=True, metavar="N|auto",
              help="Measured requests per strategy and round; auto sizes each cell to --seconds.")
@click.option("--seconds", "seconds", default=2.0, show_default=True, type=FiniteRange(min=0.1),
              help="With -n auto: about how long the slowest strategy's round lasts.")
@click.option("-c", "--concurrency", default=50, show_default=True, type=click.IntRange(1),
              help="Requests in flight at once.")
@click.option("--rounds", default=4, show_default=True, type=click.IntRange(2),
              help="Rounds per cell (each runs every strategy once, order rotated).")
@click.option("--warmup", default="auto", show_default=True, metavar="N|auto",
              help="Warm-up requests per server (auto: a tenth of -n, at least 20).")
@click.option("--interval", "interval_s", default=0.25, show_default=True, type=FiniteRange(min=0.05),
              help="Seconds between /proc samples.")
@limit_options
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Sweep document (JSON, iolab.sweep/1); cell runs go in a directory of the same name. "
                   "Default: iolab-results/sweep-<timestamp>.json")
@click.option("--svg", type=click.Path(path_type=Path), default=None,
              help="Heat map (default: next to -o, .svg).")
@click.option("--html", type=click.Path(path_type=Path), default=None,
              help="Also write an HTML page: reading, heat map, tables.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def sweep_command(**kw: Any) -> None:
    """When does async logging pay? Run strategies over a grid of CPU work × sink latency.

    \b
    Examples:
      iolab sweep
      iolab sweep --scenario sync-handler,async-blocking-log,queue-async --work-us 0,200,1000 --sink-latency 0,1,5
      iolab sweep --scenario async-blocking-log,queue-async,ours-async --metric p99_ms --html sweep.html
    """
    from iolab.analysis.sweep import grid
    from iolab.measure.sweep import Sweep, SweepSpec, cell_file
    from iolab.report.sweep import render_heatmap_svg, render_html, values_table, winner_table
    from iolab.report.terminal import rich_table

    names = tuple(s.name for s in select(kw["scenario"]))
    output: Path = kw["output"] or Path("iolab-results") / f"sweep-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    spec = SweepSpec(
        scenarios=names, work_us=_numbers(kw["work_us"], "--work-us", int),
        sink_latency_ms=tuple(float(x) for x in _numbers(kw["sink_latency"], "--sink-latency", float)),
        output=output, metric=kw["metric"], requests=_auto_int(kw["requests"], "-n"),
        warmup=_auto_int(kw["warmup"], "--warmup"), seconds_per_round=kw["seconds"],
        concurrency=kw["concurrency"], rounds=kw["rounds"], interval_s=kw["interval_s"], limits=limits_request(kw),
    )
    svg_path: Path = kw["svg"] or output.with_suffix(".svg")
    if output.with_suffix("") == output:
        raise UsageError(f"-o {output}: give the sweep document a suffix (e.g. {output}.json); its cell runs go "
                         f"in the directory {output}")
    # Every file the sweep will write, before anything is measured (exit 2).
    check_outputs(("-o", output), ("--svg", svg_path), ("--html", kw["html"]),
                  *(("-o (a cell's run)", cell_file(output, w, lat)) for w in spec.work_us for lat in spec.sink_latency_ms))
    keeper = OutputKeeper()
    err = Console(stderr=True, width=200)
    cells = len(spec.work_us) * len(spec.sink_latency_ms)
    if not kw["quiet"]:
        err.print(f"iolab sweep: {cells} cells × {len(names)} strategies × {spec.rounds} rounds → {output}",
                  highlight=False)
    sweep = Sweep(spec, LineReporter(err, kw["quiet"]), keeper=keeper)
    result = sweep.run()
    svg = render_heatmap_svg(grid(result))
    keeper.write("--svg", svg_path, svg)
    if kw["html"] is not None:
        keeper.write("--html", kw["html"], render_html(result, svg))
    out = Console() if sys.stdout.isatty() else Console(width=200)
    out.print(rich_table(winner_table(result)))
    out.print(rich_table(values_table(result)))
    out.print(result.reading, highlight=False)
    page = f" · page: {keeper.where(kw['html'])}" if kw["html"] else ""
    out.print(f"sweep: {keeper.where(output)} · heat map: {keeper.where(svg_path)}{page} · {result.wall_s:.0f} s",
              highlight=False)
    error = sweep.outcome_error()  # after every output is written: a cell that is not ok sets the exit code
    if error is not None:
        raise error  # its own code wins; a fallback was already named on stderr
    keeper.raise_if_fell_back()

