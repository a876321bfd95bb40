"""Build one RoundRecord from what a measured window produced, and the error a run of such records ends
with (pure: no I/O, no clocks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from iolab.analysis.aggregate import per_request
from iolab.analysis.stats import summarize
from iolab.errors import DegradedRunError, IolabError, NothingMeasuredError, ServerDiedError
from iolab.measure.drivers.base import LoadResult
from iolab.measure.drivers.summary import (
    Outcome,
    latency_summary,
    load_facts,
    successful,
    uncorrected_summary,
)
from iolab.measure.probe import Window
from iolab.results import (
    NOTHING_MEASURED,
    SERVER_DIED,
    SINK_STALLED,
    TOO_MANY_ERRORS,
    DriverUsage,
    LatencyMs,
    MainThread,
    PerRequest,
    RoundRecord,
    Sample,
    StdoutInfo,
    ThreadTotal,
)


@dataclass(frozen=True)
class ServerSide:
    """What the probe saw of the server in the measured window (absent when the server is not probed)."""

    window: Window
    samples: tuple[Sample, ...]
    threads: tuple[ThreadTotal, ...]


def noise_figures(machine: dict[str, float], wall_s: float, server_cpu_s: float, load: LoadResult,
                  throttle0: dict[str, int], throttle1: dict[str, int],
                  nonblocking: bool | None) -> dict[str, float]:
    """Other processes' CPU (machine busy − server − driver), cgroup throttling, the driver's own CPU."""
    noise = dict(machine)
    driver_cpu_s = load.cpu_s  # the whole driver process: all of it ran inside the wall window
    if "machine_busy_pct_of_core" in noise and wall_s > 0:
        busy_s = noise["machine_busy_pct_of_core"] * wall_s / 100.0
        noise["other_processes_pct_of_core"] = round(
            max(0.0, 100.0 * (busy_s - server_cpu_s - driver_cpu_s) / wall_s), 1)
    if throttle0 and throttle1:
        periods = throttle1.get("nr_periods", 0) - throttle0.get("nr_periods", 0)
        throttled = throttle1.get("nr_throttled", 0) - throttle0.get("nr_throttled", 0)
        noise["cgroup_periods"] = float(periods)
        noise["cgroup_throttled_periods"] = float(throttled)
        noise["cgroup_throttled_pct"] = round(100.0 * throttled / periods, 1) if periods else 0.0
    # The load window alone where the driver measured it (builtin), so Python's start-up does not count.
    noise["driver_cpu_pct_of_core"] = (
        round(100.0 * load.cpu_load_s / load.duration_s, 1) if load.duration_s else 0.0)
    if nonblocking is not None:
        noise["stdout_nonblocking"] = 1.0 if nonblocking else 0.0
    return noise


def _failures(load: LoadResult | None) -> int:
    return (load.connect_errors + load.timeouts + load.other_errors) if load else 0


def measured_round(round_no: int, started: str, load: LoadResult, server: ServerSide | None,
                   stdout: StdoutInfo, rusage: dict[str, float], noise: dict[str, float],
                   tail: tuple[str, ...], result: Outcome) -> RoundRecord:
    """The record of a round whose load ran to its end. ``result`` (drivers.summary.outcome) says whether
    anything succeeded: when nothing did, the round is "failed" and its latency, rates and per-request
    figures are null (the raw counts, samples and driver output stay, to show what happened)."""
    measured = result.status != "failed"
    lat = latency_summary(load)  # samples, wrk's histogram, or ab's/hey's percentile table: one record
    unc = uncorrected_summary(load)  # open loop only
    completed = load.completed
    samples = server.samples if server else ()
    server_cpu_s = 0.0
    pr = PerRequest()  # null: not measured
    if server is not None:
        w = server.window
        server_cpu_s = w.cpu_user_s + w.cpu_sys_s
        if measured:
            pr = per_request(completed, w.write_syscalls, w.write_bytes, w.voluntary, w.involuntary,
                             server_cpu_s)
    rps = round(completed / load.duration_s, 2) if measured and load.duration_s > 0 else None
    # Without a CPU figure (no probe, or a window shorter than a clock tick) the ratio does not exist.
    per_cpu = round(completed / server_cpu_s, 2) if measured and server_cpu_s > 0 else None
    return RoundRecord(
        round=round_no, status=result.status, error=result.error, error_kind=result.error_kind,
        started=started, duration_s=round(load.duration_s, 4),
        requests=completed, successful=result.successful, failed=_failures(load), non_2xx=load.non_2xx,
        timeouts=load.timeouts, connect_errors=load.connect_errors,
        rps=rps, server_cpu_s=round(server_cpu_s, 4), rps_per_server_cpu_s=per_cpu,
        latency_ms=lat.latency_ms if measured else LatencyMs(), latency_hdr=lat.hdr if measured else "",
        latency_uncorrected_ms=unc.latency_ms if unc and measured else LatencyMs(),
        latency_uncorrected_hdr=unc.hdr if unc and measured else "",
        cswch_per_s=summarize([s.cswch_per_s for s in samples]),
        nvcswch_per_s=summarize([s.nvcswch_per_s for s in samples]),
        main_thread=MainThread(summarize([s.main_cswch_per_s for s in samples]),
                               summarize([s.main_nvcswch_per_s for s in samples])),
        per_request=pr, stdout=stdout, threads=server.threads if server else (), samples=samples,
        driver=DriverUsage(name=load.driver, cpu_user_s=round(load.cpu_user_s, 4),
                           cpu_sys_s=round(load.cpu_sys_s, 4),
                           cpu_pct_of_core=noise.get("driver_cpu_pct_of_core", 0.0),
                           cpu_load_s=round(load.cpu_load_s, 4)),
        rusage=rusage, noise=noise, server_log_tail=tail[-5:],
        load={**load_facts(load), "latency_filled": list(lat.filled)}, driver_output=load.raw_output,
    )


def failed_round(round_no: int, started: str, error: str, stdout: StdoutInfo, tail: tuple[str, ...] = (),
                 load: LoadResult | None = None, error_kind: str = SERVER_DIED) -> RoundRecord:
    """A round cut short (the server died, its output sink stalled, the warm-up found nothing to measure):
    the counts of whatever load ran, no figure."""
    return RoundRecord(
        round=round_no, status="failed", error=error, error_kind=error_kind, started=started, duration_s=0.0,
        requests=load.completed if load else 0, successful=successful(load) if load else 0,
        failed=_failures(load), non_2xx=load.non_2xx if load else 0, timeouts=load.timeouts if load else 0,
        connect_errors=load.connect_errors if load else 0, rps=None, server_cpu_s=0.0,
        rps_per_server_cpu_s=None, latency_ms=LatencyMs(), latency_hdr="", cswch_per_s=summarize([]),
        nvcswch_per_s=summarize([]), main_thread=MainThread(), per_request=PerRequest(), stdout=stdout,
        threads=(), samples=(), driver=DriverUsage(name=load.driver) if load else DriverUsage(),
        server_log_tail=tail, driver_output=load.raw_output if load else "",
    )


# Short words for a round that is not ok, in the run's one error line.
_KIND_WORDS = {SERVER_DIED: "server died", NOTHING_MEASURED: "nothing measured", SINK_STALLED: "sink stalled",
               TOO_MANY_ERRORS: "too many errors"}


def run_error(rounds: Sequence[tuple[str, RoundRecord]], output: object) -> IolabError | None:
    """The one error a finished run ends with, from its (scenario path, round) pairs; None when every
    round is ok. It names the worst round and counts the rest. Precedence: a server that died (exit 4:
    the target broke, and a later round's trouble may only follow from it) over a round that measured
    nothing (7: no figure exists) over one with too many failed requests (8: its figures exist, flagged)."""
    bad = [(path, rec) for path, rec in rounds if rec.status != "ok"]
    if not bad:
        return None
    died = [b for b in bad if b[1].status == "failed" and b[1].error_kind == SERVER_DIED]
    nothing = [b for b in bad if b[1].status == "failed" and b[1].error_kind != SERVER_DIED]
    worst = (died or nothing or bad)[0]
    path, rec = worst
    others = [b for b in bad if b is not worst]
    more = ""
    if others:
        named = ", ".join(f"{p} round {r.round} ({_KIND_WORDS.get(r.error_kind or '', r.status)})"
                          for p, r in others[:3])
        more = f"; {len(others)} more round(s) not ok: {named}{', …' if len(others) > 3 else ''}"
    tail = f"{more}; the results are in {output}"
    if died:
        return ServerDiedError(f"{rec.error}{tail}")
    if nothing:
        return NothingMeasuredError(f"nothing was measured for {path} (round {rec.round}): {rec.error}{tail}")
    return DegradedRunError(f"too many requests failed for {path} (round {rec.round}): {rec.error}{tail}")
