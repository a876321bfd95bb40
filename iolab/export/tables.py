"""The report's tables as plain data, built once and rendered by each exporter (terminal, Markdown…)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from iolab.results import RunResult, ScenarioResult, Summary

LATENCY_ROWS: tuple[tuple[str, str], ...] = (
    ("50%", "p50"), ("66%", "p66"), ("75%", "p75"), ("80%", "p80"), ("90%", "p90"), ("95%", "p95"),
    ("98%", "p98"), ("99%", "p99"), ("99.9%", "p99_9"), ("100%", "p100"), ("mean", "mean"),
)
SUMMARY_COLUMNS = ("Count", "Min", "P50", "P90", "P95", "P99", "Max", "Mean")


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    align_first_left: bool = True


def _ms(v: float) -> str:
    return f"{v:.1f}"


def _num(v: float, digits: int = 2) -> str:
    return f"{v:,.{digits}f}"


def _summary_row(name: str, s: Summary) -> tuple[str, ...]:
    return (name, str(s.count), *(_num(x) for x in (s.min, s.p50, s.p90, s.p95, s.p99, s.max, s.mean)))


def latency_table(result: RunResult) -> Table:
    sc = result.scenarios
    rows = tuple(
        (label, *(_ms(getattr(s.latency_ms, key)) for s in sc)) for label, key in LATENCY_ROWS
    )
    return Table(
        "Response time (ms) — lower is better",
        ("Percentile", *(s.path for s in sc)),
        rows,
        "from the moment a request's connection is opened to the last byte of the response; "
        "µs resolution, every round pooled",
    )


def _summary_table(result: RunResult, title: str, pick: Callable[[ScenarioResult], Summary],
                   caption: str) -> Table:
    rows = tuple(_summary_row(s.path, pick(s)) for s in result.scenarios)
    return Table(title, ("Scenario", *SUMMARY_COLUMNS), rows, caption)


def context_switch_tables(result: RunResult) -> list[Table]:
    whole = "per-second samples inside the measured window, every thread of the server (exited ones kept)"
    main = "/proc/PID/status: the main (event-loop) thread only — what `pidstat -w` shows"
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
            s.path, _num(p.write_syscalls, 3), _num(p.voluntary_ctx_switches, 3),
            _num(p.involuntary_ctx_switches, 3), _num(p.cpu_ms, 3), _num(s.rps, 0),
            _num(s.rps_per_server_cpu_s, 0), f"{s.stdout.lines:,}", f"{s.failed:,}", f"{s.non_2xx:,}",
        ))
    return Table(
        "Per request, server side (measured window)",
        ("Scenario", "write syscalls", "vol. switches", "invol. switches", "CPU ms", "req/s",
         "req per CPU-s", "stdout lines", "failed", "non-2xx"),
        tuple(rows),
        "write syscalls from /proc/PID/io syscw (every write/writev of the process, socket writes "
        "included); switches summed over every thread; CPU = user + sys of the whole process",
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
        "`main` is the event loop; AnyIO worker threads run `def` endpoints",
    )


def facts_table(result: RunResult) -> Table:
    lim = result.limits
    env = result.environment
    stdout = env.get("stdout", {}) if isinstance(env.get("stdout"), dict) else {}
    py = env.get("python", {}) if isinstance(env.get("python"), dict) else {}
    pk = env.get("packages", {}) if isinstance(env.get("packages"), dict) else {}
    uv = env.get("uvicorn", {}) if isinstance(env.get("uvicorn"), dict) else {}
    load = result.load
    rows: list[tuple[str, str]] = [
        ("target", f"{result.target.get('app')} ({result.target.get('kind')})"),
        ("limits", _limits_text(lim)),
        ("pinning", f"server on CPU {lim.get('server_cpus')}, load on CPU {lim.get('load_cpus')}"
         if lim.get("server_cpus") else "none"),
        ("load", f"{load.get('driver')}, {load.get('mode')} loop, -n {load.get('requests')} "
                 f"-c {load.get('concurrency')}, warm-up {load.get('warmup_requests')}, "
                 f"{'keep-alive' if load.get('keepalive') else 'new connection per request'}, "
                 f"{load.get('rounds')} round(s)"),
        ("stdout", f"{stdout.get('kind')}, {stdout.get('buffering')}-buffered"
                   + (" (PYTHONUNBUFFERED removed from the server's environment)"
                      if stdout.get("pythonunbuffered_in_our_env") and not
                      stdout.get("pythonunbuffered_in_server_env") else "")),
        ("python", f"{py.get('implementation')} {py.get('version')}"),
        ("uvicorn", f"{pk.get('uvicorn')} (loop {uv.get('loop')}, http {uv.get('http')}), fastapi "
                    f"{pk.get('fastapi')}, aiologger {pk.get('aiologger')}"),
        ("machine", f"{result.machine.get('cpu_model')}, {result.machine.get('cpu_count')} CPUs, "
                    f"kernel {result.machine.get('kernel')}"),
    ]
    return Table("Run facts", ("fact", "value"), tuple(rows))


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


def all_tables(result: RunResult) -> list[Table]:
    if not result.scenarios:
        return [facts_table(result)]
    return [latency_table(result), *context_switch_tables(result), per_request_table(result),
            threads_table(result), noise_table(result), facts_table(result)]
