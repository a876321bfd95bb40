"""``iolab run``: its options (in groups, one decorator each), options → RunConfig, the run, the report.

A feature adds its options as one more group (``FOO_OPTIONS = option_group(click.option(...), ...)``) and
one decorator line on :func:`run_command`; :func:`build_config` reads its values from ``kw``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console

from iolab.analysis.knowledge import NONE, ScenarioKnowledge
from iolab.cli.options import FiniteRange, limit_options, limits_request, option_group
from iolab.cli.opts_explain import explain_config, explain_options
from iolab.cli.opts_net import net_options, net_request
from iolab.cli.opts_scale import scale_fields, scale_options
from iolab.cli.opts_try import apply_try, try_options
from iolab.cli.progress import LineReporter, ProgressReporter
from iolab.demo.scenarios import knowledge, select, skipped
from iolab.errors import DegradedRunError, NothingMeasuredError, ServerDiedError, StdoutError, UsageError
from iolab.measure.config import DEMO_APP, RunConfig, ScenarioSpec
from iolab.measure.drivers import validate
from iolab.measure.drivers.base import LoadSpec, parse_duration
from iolab.measure.drivers.summary import MAX_ERROR_PCT
from iolab.measure.experiment import Experiment, experiment_outputs
from iolab.measure.sinks import parse_rate
from iolab.measure.targets import AppTarget, CommandTarget, RunningTarget, Target, check_pid, check_url
from iolab.outputs import OutputKeeper, check_outputs
from iolab.report import markdown, terminal
from iolab.results import RunResult

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def parse_path_scenario(text: str) -> ScenarioSpec:
    """'/orders', 'orders=/orders' or 'create=POST:/orders' → a scenario (name, method, path)."""
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = "", text
    method, sep, path = rest.partition(":")
    if not sep or method.upper() not in _METHODS:
        method, path = "GET", rest
    path = path.strip()
    if not path.startswith("/"):
        path = "/" + path
    return ScenarioSpec(name=name.strip() or path, path=path, method=method.upper())


def _headers(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise UsageError(f"--header {item!r}: expected NAME:VALUE")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def _target(kw: dict[str, Any]) -> tuple[Target, tuple[ScenarioSpec, ...]]:
    app, cmd, url, pid = kw.get("app"), kw.get("cmd"), kw.get("url"), kw.get("pid")
    paths = tuple(parse_path_scenario(p) for p in kw.get("paths") or ())
    if sum(bool(x) for x in (app, cmd)) > 1:
        raise UsageError("choose one target: --app or --cmd")
    if (app or cmd or url) and kw.get("scenario"):
        raise UsageError("--scenario chooses demo scenarios; with --app, --cmd or --url use --path")
    if pid is not None and (app or cmd or not url):
        raise UsageError("--pid goes with --url (a server that is already running)")
    if cmd and not url:
        raise UsageError("--cmd needs --url, the address the command's server answers on")
    if url and app:
        raise UsageError("--url does not go with --app (iolab serves the app itself)")
    if app:
        if not paths:
            raise UsageError("--app needs at least one --path to measure, e.g. --path /health")
        if kw.get("app_dir") and not Path(kw["app_dir"]).is_dir():
            raise UsageError(f"--app-dir {kw['app_dir']}: no such directory")
        app_target = AppTarget(
            app=app, app_dir=str(Path(kw["app_dir"]).resolve()) if kw.get("app_dir") else None,
            server=kw.get("server") or "uvicorn", loop=kw.get("loop") or "auto", workers=kw.get("workers") or 1,
            port=kw.get("port"),
        )
        app_target.check()
        return app_target, paths
    if url:
        check_url(url, kw.get("allow_remote", False))
        scenarios = paths or (parse_path_scenario(urlsplit(url).path or "/"),)
        if cmd:
            return CommandTarget(command=cmd, url=url), scenarios
        if pid is not None and not kw.get("agent_url"):  # with --agent the PID is on the agent's host
            check_pid(pid)
        return RunningTarget(url=url, pid=pid), scenarios
    if paths:
        raise UsageError("--path needs --app, --cmd or --url (the demo's scenarios are chosen with --scenario)")
    for name, reason in skipped(kw.get("scenario")):
        Console(stderr=True).print(f"iolab run: skipping {name}: {reason}", highlight=False)
    demo = tuple(ScenarioSpec(s.name, s.path, s.method, s.isolates, s.control)
                 for s in select(kw.get("scenario")))
    return AppTarget(DEMO_APP, kind="demo", loop=kw.get("loop") or "auto", workers=kw.get("workers") or 1,
                     port=kw.get("port")), demo


def build_config(kw: dict[str, Any], default_output: Path) -> RunConfig:
    target, scenarios = _target(kw)
    if len({s.name for s in scenarios}) != len(scenarios):
        raise UsageError("two scenarios have the same name; name them: --path orders=/orders")
    body = b""
    if kw.get("body"):
        try:
            body = Path(kw["body"]).read_bytes()
        except OSError as exc:
            raise UsageError(f"--body {kw['body']}: {exc.strerror}") from None
    names = {s.name for s in scenarios}
    pairs = []
    for item in kw.get("compare") or ():
        a, sep, b = item.partition(":")
        if not sep or a not in names or b not in names:
            raise UsageError(f"--compare {item!r}: expected A:B with two measured scenario names "
                             f"(have: {', '.join(sorted(names))})")
        pairs.append((a, b))
    driver = kw.get("driver") or "builtin"
    duration_s = parse_duration(str(kw["duration"])) if kw.get("duration") else None
    rate = kw.get("rate")
    if rate is not None and duration_s is None:
        raise UsageError("--rate needs --duration: an open loop runs for a time (e.g. --rate 800 --duration 20s)")
    if driver == "wrk" and duration_s is None:
        raise UsageError("--driver wrk runs for a time, not a number of requests: add --duration (e.g. 10s)")
    # What the driver cannot do fails here, before any server starts (the URL is a placeholder).
    validate(driver, LoadSpec(url="http://127.0.0.1:1/", requests=kw["requests"], concurrency=kw["concurrency"],
                              keepalive=kw["keepalive"], timeout_s=kw["timeout_s"], rate=rate,
                              duration_s=duration_s, arrival=kw.get("arrival") or "uniform"))
    return apply_try(RunConfig(
        scenarios=scenarios,
        target=target,
        # Only the demo's scenarios are known: a user's app gets no demo pairs, notes or attribution.
        knowledge=ScenarioKnowledge(**knowledge()) if isinstance(target, AppTarget) and target.kind == "demo"
        else NONE,
        compare=tuple(pairs),
        requests=kw["requests"],
        concurrency=kw["concurrency"],
        warmup=kw["warmup"],
        keepalive=kw["keepalive"],
        timeout_s=kw["timeout_s"],
        interval_s=kw["interval_s"],
        rounds=kw["rounds"],
        limits=limits_request(kw),
        stdout=kw["stdout_kind"],
        sink_rate_bytes_per_s=parse_rate(kw["sink_rate"]),
        unbuffered=kw["unbuffered"],
        ready_timeout_s=kw["ready_timeout_s"],
        output=kw.get("output") or default_output,
        headers=_headers(kw.get("headers") or ()),
        body=body,
        driver=driver,
        rate=rate,
        duration_s=duration_s,
        arrival=kw.get("arrival") or "uniform",
        hdr_log=kw.get("hdr_log"),
        work_us=kw.get("work_us", 0),
        sink_latency_ms=kw.get("sink_latency_ms", 0.0),
        max_error_pct=kw.get("max_error_pct", MAX_ERROR_PCT),
        network=net_request(kw, scenarios),
        **explain_config(kw),
        **scale_fields(kw),
    ), kw)


def write_outputs(result: RunResult, markdown_path: Path | None, console: Console,
                  html_path: Path | None = None, keeper: OutputKeeper | None = None) -> None:
    keeper = keeper or OutputKeeper()
    if html_path is not None:
        from iolab.report import html  # imports matplotlib: only when a page is asked for

        keeper.write("--html", html_path, html.render(result))
    if markdown_path is not None:
        text = markdown.render(result)
        if str(markdown_path) == "-":
            sys.stdout.write(text)
        else:
            keeper.write("--markdown", markdown_path, text)
    terminal.print_report(result, console)


def run_from_cli(kw: dict[str, Any], default_output: Path) -> RunResult:
    config = build_config(kw, default_output)
    # Every file the run will write, checked before any server starts (exit 2, nothing measured).
    check_outputs(*experiment_outputs(config), ("--markdown", kw.get("markdown")), ("--html", kw.get("html")),
                  stdout=("--markdown",))
    keeper = OutputKeeper()
    # Without a terminal (a pipe, a CI log) rich would wrap at 80 columns and cut the tables' cells.
    out = Console() if sys.stdout.isatty() else Console(width=200)
    err = Console(stderr=True)
    experiment: Experiment
    try:
        if kw.get("quiet"):
            experiment = Experiment(config, keeper=keeper)
            result = experiment.run()
        elif not err.is_terminal:
            err.print(f"iolab run: {len(config.scenarios)} scenario(s) × {config.rounds} round(s) "
                      f"→ {config.output}", highlight=False)
            experiment = Experiment(config, LineReporter(err), keeper=keeper)
            result = experiment.run()
        else:
            with ProgressReporter(err) as bar:
                experiment = Experiment(config, bar, keeper=keeper)
                result = experiment.run()
    except (ServerDiedError, NothingMeasuredError, DegradedRunError):
        # Every round ran, and some is not ok: the report still shows what was measured (— where nothing
        # was), then the error line says why the exit code is not 0 (its own code; a fallback file was
        # already named on stderr).
        # A stdout that fails meanwhile does not hide that code: the run's own failure says more.
        if experiment.finished is not None:
            with contextlib.suppress(StdoutError):
                write_outputs(experiment.finished, kw.get("markdown"), out, kw.get("html"), keeper)
                out.print(f"results: {keeper.where(config.output)}", highlight=False)
        raise
    write_outputs(result, kw.get("markdown"), out, kw.get("html"), keeper)
    out.print(f"results: {keeper.where(config.output)}", highlight=False)
    if config.hdr_log is not None:
        out.print(f"HdrHistogram log: {keeper.where(config.hdr_log)}", highlight=False)
    keeper.raise_if_fell_back()  # exit 9, naming the fallback files
    return result


# ---------------------------------------------------------------------------------------- the command
# Option groups, in the order `iolab run --help` lists them. Each is one decorator line on run_command.

TARGET_OPTIONS = option_group(
    click.option("--scenario", "scenario", default=None, metavar="LIST",
                 help="Demo scenarios or groups, comma-separated (see `iolab scenarios`): default = the seed's "
                      "four and their four controls, all = every installed scenario, catalog = the strategies "
                      "beyond those eight."),
    click.option("--app", default=None, metavar="MODULE:ATTR",
                 help="Your ASGI app instead of the demo, e.g. mypkg.main:app (needs --path)."),
    click.option("--app-dir", default=None, type=click.Path(file_okay=False),
                 help="Directory to import --app from (default: the current one)."),
    click.option("--path", "paths", multiple=True, metavar="[NAME=][METHOD:]PATH",
                 help="A path to measure (with --app, --cmd or --url); repeat for several, one fresh server "
                      "each. E.g. /health, orders=POST:/orders."),
    click.option("--server", type=click.Choice(["uvicorn", "hypercorn", "granian"]), default="uvicorn",
                 show_default=True, help="ASGI server for --app (hypercorn/granian where installed)."),
    click.option("--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True,
                 help="Event loop of the served app."),
    click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
                 help="Server worker processes (the probe sums the whole process tree)."),
    click.option("--cmd", default=None, metavar="COMMAND",
                 help="Start this server command per scenario (split like a shell, no shell); needs --url."),
    click.option("--url", default=None, metavar="URL",
                 help="Where the server answers: with --cmd, or alone for a server that is already running."),
    click.option("--pid", default=None, type=int,
                 help="With --url alone: the running server's PID, to measure its OS costs (else latency only)."),
    click.option("--allow-remote", is_flag=True, help="Allow a --url that is not on loopback."),
    click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Request header (repeatable)."),
    click.option("--body", type=click.Path(dir_okay=False), default=None, help="Request body from this file."),
)

LOAD_OPTIONS = option_group(
    click.option("-n", "--requests", default=10_000, show_default=True, type=click.IntRange(1),
                 help="Measured requests per scenario and round (ab -n)."),
    click.option("-c", "--concurrency", default=100, show_default=True, type=click.IntRange(1),
                 help="Requests in flight at once (ab -c)."),
    click.option("--driver", type=click.Choice(["builtin", "ab", "wrk", "hey", "locust"]), default="builtin",
                 show_default=True, help="Load generator: iolab's own, or ApacheBench, wrk, hey (must be installed), "
                                         "Locust (pip install 'iolab[scale]')."),
    click.option("--duration", default=None, metavar="D",
                 help="Run the measured load for this long (20s, 500ms, 2m) instead of -n requests."),
    click.option("--rate", default=None, type=FiniteRange(min=0, min_open=True), metavar="R",
                 help="Open loop: R requests/s, each due at its time whether or not the server kept up; latency "
                      "counted from the due time (needs --duration; builtin driver)."),
    click.option("--arrival", type=click.Choice(["uniform", "poisson"]), default="uniform", show_default=True,
                 help="Open loop: fixed intervals or Poisson arrivals."),
    click.option("--hdr-log", "hdr_log", type=click.Path(path_type=Path), default=None,
                 help="Also write every round's latencies as an HdrHistogram log (µs), for HdrHistogram's tools."),
    click.option("--warmup", default=1_000, show_default=True, type=click.IntRange(0),
                 help="Requests sent before measuring, on the same server."),
    click.option("--keepalive/--no-keepalive", default=False, show_default=True,
                 help="Reuse connections (default: a new connection per request, as ab does)."),
    click.option("--timeout", "timeout_s", default=30.0, show_default=True, type=FiniteRange(min=0.001),
                 help="Seconds before a request counts as timed out."),
    click.option("--max-error-pct", "max_error_pct", default=1.0, show_default=True,
                 type=FiniteRange(0, 100),
                 help="A round whose requests fail or get a status outside 2xx/3xx in more than this share (%) "
                      "is flagged degraded (exit 8); one where none succeeds measured nothing (exit 7)."),
    click.option("--interval", "interval_s", default=1.0, show_default=True, type=FiniteRange(min=0.05),
                 help="Seconds between /proc samples (pidstat's interval)."),
    click.option("--rounds", default=3, show_default=True, type=click.IntRange(1),
                 help="Rounds; each runs every scenario once, in rotated order (verdicts need ≥ 2)."),
    click.option("--compare", "compare", multiple=True, metavar="A:B",
                 help="A pair of scenarios to compare (repeatable; default: the demo's controls and seed pairs)."),
)

LIMIT_OPTIONS = limit_options  # --cpus, --memory, --pin/--no-pin, --require-limits (shared with `iolab sweep`)

SERVER_OPTIONS = option_group(
    click.option("--unbuffered", is_flag=True,
                 help="Run the server with PYTHONUNBUFFERED=1 (default: removed, Python's block buffering)."),
    click.option("--stdout", "stdout_kind", default="pipe", show_default=True,
                 type=click.Choice(["pipe", "file", "null", "tty", "slow"]),
                 help="Where the server's stdout/stderr go."),
    click.option("--sink-rate", default="400KB/s", show_default=True,
                 help="Read rate of --stdout slow."),
    click.option("--work-us", default=0, show_default=True, type=click.IntRange(0),
                 help="Demo app: each request also burns this many µs of CPU."),
    click.option("--sink-latency", "sink_latency_ms", default=0.0, show_default=True, type=FiniteRange(0),
                 help="Demo app: each log write blocks this many ms (a slow log sink)."),
    click.option("--port", default=None, type=click.IntRange(1, 65535),
                 help="Port for the server on 127.0.0.1 (default: a free one per server)."),
    click.option("--ready-timeout", "ready_timeout_s", default=30.0, show_default=True,
                 type=FiniteRange(min=0.1), help="Seconds to wait for the server to accept connections."),
)

# Output paths are not click.Path(dir_okay=False): iolab.outputs checks them all (a directory, a device, a
# FIFO, an unwritable place …) before anything is measured, with one `error:` line naming the option.
OUTPUT_OPTIONS = option_group(
    click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
                 help="Results file (JSON, iolab.run/1). Default: iolab-results/<timestamp>.json"),
    click.option("--markdown", type=click.Path(path_type=Path), default=None,
                 help="Also write the tables as GitHub Markdown ('-' = stdout)."),
    click.option("--html", type=click.Path(path_type=Path), default=None,
                 help="Also write a self-contained HTML report with charts (opens offline)."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
)


def default_output() -> Path:
    return Path("iolab-results") / f"{dt.datetime.now():%Y%m%d-%H%M%S}.json"


@click.command("run")
@TARGET_OPTIONS
@LOAD_OPTIONS
@LIMIT_OPTIONS
@SERVER_OPTIONS
@explain_options
@OUTPUT_OPTIONS
@scale_options
@net_options
@try_options
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
    run_from_cli(kw, default_output=default_output())
