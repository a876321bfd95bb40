"""``iolab run`` as the CLI uses it: options → RunConfig, a progress bar, the report, the files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from iolab.cli.options import limits_request
from iolab.cli.opts_net import net_request
from iolab.demo.scenarios import select, skipped
from iolab.errors import DegradedRunError, NothingMeasuredError, ServerDiedError, UsageError
from iolab.measure.config import DEMO_APP, RunConfig, ScenarioSpec
from iolab.measure.drivers import validate
from iolab.measure.drivers.base import LoadSpec, parse_duration
from iolab.measure.drivers.summary import MAX_ERROR_PCT
from iolab.measure.experiment import Experiment, experiment_outputs
from iolab.measure.sinks import parse_rate
from iolab.measure.targets import AppTarget, CommandTarget, RunningTarget, Target, check_pid, check_url
from iolab.outputs import OutputKeeper, check_outputs
from iolab.report import markdown, terminal
from iolab.results import RoundRecord, RunResult

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
        if pid is not None:
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
    return RunConfig(
        scenarios=scenarios,
        target=target,
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
    )


class ProgressReporter:
    """A rich progress bar on stderr: one line per scenario-round, showing the requests sent."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self._task: Any = None
        self._label = ""

    def __enter__(self) -> ProgressReporter:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def scenario_started(self, round_no: int, rounds: int, name: str, index: int, total: int) -> None:
        self._label = f"round {round_no}/{rounds} · {name}"
        self._task = self._bar.add_task(self._label, total=None)

    def phase(self, text: str) -> None:
        if self._task is not None:
            self._bar.update(self._task, description=f"{self._label} · {text}", completed=0, total=None)

    def progress(self, done: int, total: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done, total=total)

    def scenario_finished(self, record: RoundRecord) -> None:
        if self._task is not None:
            state = {"ok": "done", "degraded": "DEGRADED"}.get(record.status, "FAILED")
            self._bar.update(self._task, description=f"{self._label} · {state}")


class LineReporter:
    """Without a terminal (CI, a pipe): one line per scenario-round on stderr."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._label = ""

    def scenario_started(self, round_no: int, rounds: int, name: str, index: int, total: int) -> None:
        self._label = f"round {round_no}/{rounds} · {name} ({index}/{total})"

    def phase(self, text: str) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        pass

    def scenario_finished(self, record: RoundRecord) -> None:
        self._console.print(f"{self._label}: {round_line(record)}", highlight=False)


def round_line(record: RoundRecord) -> str:
    """One round in a few words; figures only for a round that measured them (a failed one has none)."""
    if record.status == "failed":
        return f"FAILED — {record.error}"
    rps = "— req/s" if record.rps is None else f"{record.rps:,.0f} req/s"
    p50 = "p50 —" if record.latency_ms.p50 is None else f"p50 {record.latency_ms.p50:.1f} ms"
    text = f"{record.requests:,} requests, {rps}, {p50}"
    return text if record.status == "ok" else f"{text}; DEGRADED — {record.error}"


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
        if experiment.finished is not None:
            write_outputs(experiment.finished, kw.get("markdown"), out, kw.get("html"), keeper)
            out.print(f"results: {keeper.where(config.output)}", highlight=False)
        raise
    write_outputs(result, kw.get("markdown"), out, kw.get("html"), keeper)
    out.print(f"results: {keeper.where(config.output)}", highlight=False)
    if config.hdr_log is not None:
        out.print(f"HdrHistogram log: {keeper.where(config.hdr_log)}", highlight=False)
    keeper.raise_if_fell_back()  # exit 9, naming the fallback files
    return result


def compare_from_cli(base_path: Path, new_path: Path, gate_texts: tuple[str, ...],
                     markdown_path: Path | None, html_path: Path | None = None) -> None:
    from iolab import results
    from iolab.analysis.compare import compare_runs, parse_gate
    from iolab.errors import GateFailedError
    from iolab.report import tables

    # Unwritable outputs are bad input (exit 2), found before anything is read or any gate judged.
    check_outputs(("--markdown", markdown_path), ("--html", html_path), stdout=("--markdown",))
    keeper = OutputKeeper()
    gates = [parse_gate(g) for g in gate_texts]  # a malformed gate fails before any file is read
    base = results.load(base_path)
    new = results.load(new_path)
    rc = compare_runs(base, new, gates, labels=(str(base_path), str(new_path)))
    out = Console() if sys.stdout.isatty() else Console(width=200)
    paths = {s.name: s.path for s in (*base.scenarios, *new.scenarios)}
    tabs = tables.comparison_tables(rc.comparisons, paths)
    if not tabs and not rc.failures:  # with gates, a new run that has lost every scenario is a regression
        raise UsageError(f"{base_path} and {new_path} have no successful scenario in common")
    for t in tabs:
        out.print(terminal.rich_table(t))
    for name in rc.only_in_base:
        out.print(f"only in base: {name}", highlight=False)
    for name in rc.only_in_new:
        out.print(f"only in new: {name}", highlight=False)
    if markdown_path is not None:
        text = "\n\n".join(markdown.table(t) for t in tabs) + "\n"
        if str(markdown_path) == "-":
            sys.stdout.write(text)
        else:
            keeper.write("--markdown", markdown_path, text)
    if html_path is not None:  # before the gates decide the exit code: a failing CI keeps its page
        from iolab.report import html

        keeper.write("--html", html_path, html.render_comparison(rc, (str(base_path), str(new_path)), gates))
    keeper.raise_if_fell_back()
    if gates:  # after every output is written: a failing CI keeps its tables and page
        for check in rc.passed:
            out.print(f"gate passed: {check.describe()}", highlight=False, markup=False, soft_wrap=True)
        for f in rc.failures:
            print(f"gate failed: {f.describe()}", file=sys.stderr)
        if rc.failures:
            raise GateFailedError(rc.gate_summary())
        out.print(rc.gate_summary(), highlight=False, markup=False)


def report_from_cli(results_file: Path, fmt: str | None, output: Path | None) -> None:
    from iolab import results

    check_outputs(("-o", output), stdout=("-o",))
    result = results.load(results_file)
    if fmt is None:
        suffix = output.suffix.lower() if output is not None and str(output) != "-" else ""
        fmt = {".md": "md", ".markdown": "md", ".json": "json", ".html": "html",
               ".htm": "html"}.get(suffix, "text")
    if fmt == "html":
        from iolab.report import html

        text = html.render(result)
    elif fmt == "md":
        text = markdown.render(result)
    elif fmt == "json":
        text = results.dumps(result)
    else:
        text = terminal.render(result, width=160)
    if output is None or str(output) == "-":
        sys.stdout.write(text)
    else:
        keeper = OutputKeeper()
        keeper.write("-o", output, text)
        keeper.raise_if_fell_back()
