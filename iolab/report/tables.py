"""The report's tables as plain data, built once and rendered by each exporter (terminal, Markdown…)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from iolab.analysis.latency import PERCENTILES, percentile_field, percentile_label
from iolab.analysis.stats import RATIO_UNBOUNDED
from iolab.report import about_server
from iolab.report.table import Table
from iolab.results import Comparison, RunResult, ScenarioResult, Summary

LATENCY_ROWS: tuple[tuple[str, str], ...] = (
    *((percentile_label(q), percentile_field(q)) for q in PERCENTILES), ("mean", "mean"),
)
SUMMARY_COLUMNS = ("Count", "Min", "P50", "P90", "P95", "P99", "Max", "Mean")
# What per_request.write_syscalls counts (measured: 1.000 per write, writev and sendfile on a socket,
# 0.000 per send, sendall and sendmsg); shown wherever the figure is (docs/measuring.md).
WRITE_SYSCALLS_CAPTION = (
    "write syscalls (syscw) = write, writev, pwrite and sendfile calls of the whole process, from /proc/PID/io "
    "syscw; send/sendto/sendmsg (how http.server, gunicorn sync workers and asyncio without uvloop answer) "
    "are not counted")


# What a cell shows for a figure that was not measured (null in the results): never a 0.
MISSING = "—"


def _ms(v: float | None) -> str:
    return MISSING if v is None else f"{v:.1f}"


def _num(v: float | None, digits: int = 2) -> str:
    return MISSING if v is None else f"{v:,.{digits}f}"


def _summary_row(name: str, s: Summary) -> tuple[str, ...]:
    if s.count == 0:  # no sample: a summary of nothing has no minimum or mean
        return (name, "0", *(MISSING for _ in range(7)))
    return (name, str(s.count), *(_num(x) for x in (s.min, s.p50, s.p90, s.p95, s.p99, s.max, s.mean)))


def _missing_note(any_missing: bool) -> str:
    if not any_missing:
        return ""
    return f"{MISSING} = not measured (no successful request, or the server was not sampled); "


def scenario_label(s: ScenarioResult) -> str:
    """A column or row header: the path, and what went wrong when the scenario is not ok."""
    return s.path if s.status == "ok" else f"{s.path} ({s.status})"


def latency_table(result: RunResult) -> Table:
    sc = result.scenarios
    rows = tuple(
        (label, *(_ms(getattr(s.latency_ms, key)) for s in sc)) for label, key in LATENCY_ROWS
    )
    return Table(
        "Response time (ms) — lower is better",
        ("Percentile", *(scenario_label(s) for s in sc)),
        rows,
        _missing_note(any(not s.latency_ms.measured for s in sc))
        + "from the moment a request's connection is opened to the last byte of the response; "
        "µs resolution, every round pooled",
    )


def _summary_table(result: RunResult, title: str, pick: Callable[[ScenarioResult], Summary],
                   caption: str) -> Table:
    rows = tuple(_summary_row(scenario_label(s), pick(s)) for s in result.scenarios)
    return Table(title, ("Scenario", *SUMMARY_COLUMNS), rows, caption)


def context_switch_tables(result: RunResult) -> list[Table]:
    whole = "per-second samples inside the measured window, every thread of the server (exited ones kept)"
    main = f"/proc/PID/status: {about_server.main_thread(result.target)} only — what `pidstat -w` shows"
    return [
        _summary_table(result, "cswch/s — voluntary context switches, whole process",
                       lambda s: s.cswch_per_s, whole),
        _summary_table(result, "nvcswch/s — involuntary context switches, whole process",
                       lambda s: s.nvcswch_per_s, whole),
        _summary_table(result, "cswch/s — main thread only (pidstat -w)",
                       lambda s: s.main_thread.cswch_per_s, main),
        _summary_table(result, "nvcswch/s — main thread only (pidstat -w)",
                       lambda s: s.main_thread.nvcswch_per_s, main),
    ]


def per_request_table(result: RunResult) -> Table:
    rows = []
    for s in result.scenarios:
        p = s.per_request
        rows.append((
            scenario_label(s), _num(p.write_syscalls, 3), _num(p.voluntary_ctx_switches, 3),
            _num(p.involuntary_ctx_switches, 3), _num(p.cpu_ms, 3), _num(s.rps, 0),
            _num(s.rps_per_server_cpu_s, 0), f"{s.stdout.lines:,}", f"{s.failed:,}", f"{s.non_2xx:,}",
        ))
    return Table(
        "Per request, server side (measured window)",
        ("Scenario", "write syscalls (syscw)", "vol. switches", "invol. switches", "CPU ms", "req/s",
         "req per CPU-s", "stdout lines", "failed", "non-2xx"),
        tuple(rows),
        _missing_note(any(not s.per_request.measured or s.rps is None for s in result.scenarios))
        + WRITE_SYSCALLS_CAPTION + "; switches summed over every thread; CPU = user + sys of the whole process",
    )


def threads_table(result: RunResult) -> Table:
    rows = []
    for s in result.scenarios:
        req = max(1, s.requests)
        for t in s.threads[:4]:
            rows.append((s.path, t.name, str(t.threads), _num(t.voluntary_ctx_switches / req, 3),
                         _num(t.involuntary_ctx_switches / req, 3), _num(t.cpu_ms / req, 4)))
    return Table(
        "Where the switches happen: per thread name, per request",
        ("Scenario", "thread", "threads", "vol. switches", "invol. switches", "CPU ms"),
        tuple(rows),
        about_server.threads_caption(result),
    )


def facts_table(result: RunResult) -> Table:
    lim = result.limits
    env = result.environment
    py = env.get("python", {}) if isinstance(env.get("python"), dict) else {}
    load = result.load
    rows: list[tuple[str, str]] = [
        ("target", about_server.target_text(result.target)),
        ("limits", _limits_text(lim)),
        ("pinning", f"server on CPU {lim.get('server_cpus')}, load on CPU {lim.get('load_cpus')}"
         if lim.get("server_cpus") else "none"),
        ("load", f"{load.get('driver')}, {load.get('mode')} loop, " + _amount_text(load) +
                 f" -c {load.get('concurrency')}, warm-up {load.get('warmup_requests')}, "
                 f"{'keep-alive' if load.get('keepalive') else 'new connection per request'}, "
                 f"{load.get('rounds')} round(s)"),
        ("stdout", about_server.stdout_text(result)),
        # The server's Python is iolab's own only when iolab serves the app.
        *([("python", f"{py.get('implementation')} {py.get('version')}")] if about_server.served(result.target)
          else []),
        ("server", about_server.server_text(result)),
        *([("probe", _probe_text(env["probe"]))] if isinstance(env.get("probe"), dict)
          and env["probe"].get("kind") == "agent" else []),
        ("machine", f"{result.machine.get('cpu_model')}, {result.machine.get('cpu_count')} CPUs, "
                    f"kernel {result.machine.get('kernel')}"),
    ]
    return Table("Run facts", ("fact", "value"), tuple(rows), left_columns=2)


def _probe_text(probe: dict[str, object]) -> str:
    cost = probe.get("agent_cpu_ms_per_reading")
    return f"iolab agent at {probe.get('url')}" + (f", {cost} ms of agent CPU per /proc reading" if cost else "")


def _amount_text(load: dict[str, object]) -> str:
    if load.get("rate"):
        return f"{load.get('rate')} req/s ({load.get('arrival')}) for {load.get('duration_s')} s,"
    if load.get("duration_s"):
        return f"for {load.get('duration_s')} s,"
    return f"-n {load.get('requests')}"


def uncorrected_latency_table(result: RunResult) -> Table | None:
    """Open loop: latency from each request's actual send, next to the corrected one (wrk2's pair)."""
    sc = [s for s in result.scenarios if s.latency_uncorrected_hdr]
    if not sc:
        return None
    rows = tuple((label, *(_ms(getattr(s.latency_uncorrected_ms, key)) for s in sc)) for label, key in LATENCY_ROWS)
    return Table("Response time (ms), uncorrected — from each request's actual send",
                 ("Percentile", *(s.path for s in sc)), rows,
                 "open loop: the table above counts from when each request was due (coordinated-omission "
                 "corrected); the gap between the two is time requests spent waiting to be sent")


def _limits_text(lim: dict[str, object]) -> str:
    if not lim:
        return "not recorded"
    cpus = lim.get("cpus")
    mem = lim.get("memory_bytes")
    parts = [f"method {lim.get('method')}"]
    parts.append(f"{cpus} CPU" if cpus else "no CPU limit")
    parts.append(f"{int(mem) // (1024 * 1024)} MiB" if isinstance(mem, (int, float)) and mem else "no memory limit")
    reason = lim.get("reason")
    return ", ".join(parts) + (f" — {reason}" if reason else "")


def noise_table(result: RunResult) -> Table:
    rows = []
    for s in result.scenarios:
        for r in s.rounds:
            n = r.noise
            rows.append((
                s.path, str(r.round), r.status,
                _num(r.driver.cpu_pct_of_core, 0) + " %",
                _num(n.get("other_processes_pct_of_core", 0.0), 0) + " %",
                _num(n.get("steal_pct_of_core", 0.0), 0) + " %",
                _num(n.get("cgroup_throttled_pct", 0.0), 0) + " %",
            ))
    return Table("Rounds and noise", ("Scenario", "round", "status", "driver CPU", "other processes",
                                      "steal", "throttled periods"), tuple(rows),
                 "CPU in percent of one core during the measured window")


VERDICT_METRICS: tuple[tuple[str, str], ...] = (
    ("p50_ms", "p50"), ("p99_ms", "p99"), ("mean_ms", "mean"), ("rps", "req/s"), ("rps_per_server_cpu_s", "req/CPU-s"),
    ("cpu_ms_per_request", "CPU/req"), ("write_syscalls_per_request", "syscw/req"),
    ("voluntary_ctx_switches_per_request", "vol.sw/req"),
)


def verdict_cell(c: Comparison) -> str:
    """'−21 %' when significant, 'n.s.' otherwise; a change from zero is shown as the two values."""
    if c.ratio >= RATIO_UNBOUNDED or c.a_value == 0:
        change = f"0 → {c.b_value:.3g}"
    else:
        change = f"{(c.ratio - 1.0) * 100.0:+.1f} %".replace("-", "−")
    if c.verdict == "no significant difference":
        return f"n.s. ({change})"
    return change


def verdict_table(result: RunResult) -> Table | None:
    pairs: dict[tuple[str, str], dict[str, Comparison]] = {}
    for c in result.comparisons:
        pairs.setdefault((c.a, c.b), {})[c.metric] = c
    if not pairs:
        return None
    paths = {s.name: s.path for s in result.scenarios}
    rows = []
    for (a, b), by_metric in pairs.items():
        cells = [verdict_cell(by_metric[m]) if m in by_metric else "—" for m, _ in VERDICT_METRICS]
        rows.append((f"{paths.get(b, b)} vs {paths.get(a, a)}", *cells))
    return Table(
        "Verdicts: change of B vs A (ratio of medians over rounds)",
        ("B vs A", *(label for _, label in VERDICT_METRICS)),
        tuple(rows),
        "n.s. = no significant difference (95 % CI of the ratio includes 1, p ≥ 0.05, or |change| < 1 %); "
        "Welch's t on log round values, see docs/statistics.md",
    )


def stability_table(result: RunResult) -> Table | None:
    rows = []
    for s in result.scenarios:
        if s.stability_cv_pct:
            rows.append((s.path, *(f"{s.stability_cv_pct.get(m, 0.0):.1f} %" for m, _ in VERDICT_METRICS)))
    if not rows:
        return None
    return Table("Stability: coefficient of variation over rounds",
                 ("Scenario", *(label for _, label in VERDICT_METRICS)), tuple(rows),
                 "per-request counts vary least: they make the best CI gates (iolab compare --fail-if)")


def all_tables(result: RunResult) -> list[Table]:
    if not result.scenarios:
        return [facts_table(result)]
    from iolab.report import delivery  # late: it imports this module

    tables = [latency_table(result), *delivery.tables(result)]  # issue 20: delivery next to latency
    tables += [t for t in (uncorrected_latency_table(result),) if t is not None]
    tables += [*context_switch_tables(result), per_request_table(result),
              threads_table(result), noise_table(result)]
    tables += [t for t in (stability_table(result), verdict_table(result)) if t is not None]
    from iolab.report.explain import explain_tables  # it imports this module

    return [*tables, *explain_tables(result), facts_table(result)]


def comparison_tables(comparisons: Sequence[Comparison], paths: dict[str, str]) -> list[Table]:
    """``iolab compare``: one table per scenario, base (A) against new (B)."""
    by_scenario: dict[str, list[Comparison]] = {}
    for c in comparisons:
        by_scenario.setdefault(c.b, []).append(c)
    tables = []
    for name, cs in by_scenario.items():
        rows = tuple(
            (c.metric, f"{c.a_value:,.4g}", f"{c.b_value:,.4g}", verdict_cell(c),
             f"{c.ci95[0]:.3f}–{c.ci95[1]:.3f}" if c.ratio < RATIO_UNBOUNDED else "—",
             f"{c.p_value:.3g}", c.verdict)
            for c in cs
        )
        caption = ("write_syscalls_per_request: " + WRITE_SYSCALLS_CAPTION
                   if any(c.metric == "write_syscalls_per_request" for c in cs) else "")
        tables.append(Table(f"{paths.get(name, name)}: new vs base", ("metric", "base", "new", "change",
                                                                        "95 % CI of ratio", "p", "verdict"),
                            rows, caption, left_columns=1))
    return tables
