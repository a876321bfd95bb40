"""The explain pass (issue 17): one more round per scenario, after the measured ones and never mixed into
their figures, that traces every output syscall of the server and samples who waits for them.

The round's requests are split in two halves on one fresh server: the tracer alone runs during the first
(its ``slowdown`` is the tracer's cost), the tracer and py-spy during the second (``sampler_slowdown``).
Calls per request count both halves: the tracer sees every call of the round.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from iolab.analysis import explain as analysis
from iolab.errors import AccessDenied, IolabError, NoSuchProcess, ProbeError
from iolab.measure import procfs
from iolab.measure.config import RunConfig, ScenarioSpec
from iolab.measure.drivers.base import LoadResult, LoadSpec
from iolab.measure.drivers.summary import latency_summary
from iolab.measure.explain.fds import FdWatch
from iolab.measure.explain.sampler import Sample, Sampler
from iolab.measure.explain.tracer import Trace, Tracer, TracerUnavailable, choose
from iolab.measure.limits import LimitSession
from iolab.measure.serving import serve
from iolab.measure.sinks import make_sink
from iolab.measure.targets import RunningTarget, url_for
from iolab.results.explain import Explain

EXPLAIN_REQUESTS = 2000
METHODS = ("auto", "bpftrace", "strace", "none")
_WARMUP_MAX = 300
_TIMED_HALF_S = 3.0

Drive = Callable[[LoadSpec, Callable[[int, int], None] | None], LoadResult]


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn/gunicorn workers, a --cmd shell's server)."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def syscw(pids: list[int]) -> int:
    """The write syscalls /proc/PID/io counted, summed over the processes (one that went counts 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(NoSuchProcess, AccessDenied, ProbeError):
            total += procfs.io(pid).write_syscalls
    return total


def _none(requests: int, reason: str) -> Explain:
    return Explain(method="none", requests=requests, slowdown=None, syscw_per_request=None,
                   output_syscalls_per_request=None, reason=reason)


def _mean_ms(load: LoadResult | None) -> float | None:
    if load is None or not load.completed:
        return None
    return latency_summary(load).latency_ms.mean


def _port(config: RunConfig, url: str) -> int | None:
    return urlsplit(url).port or (80 if url.startswith("http://") else 443)


@contextlib.contextmanager
def _server(config: RunConfig, spec: ScenarioSpec, env: dict[str, str]) -> Iterator[tuple[int | None, str]]:
    """A fresh server as the measured rounds had it (same limits, same stdout kind): (pid, url)."""
    target = config.target
    if isinstance(target, RunningTarget):
        yield target.pid, url_for(target.url, spec.path)
        return
    path = None
    if config.stdout == "file":
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in spec.name.strip("/")) or "root"
        path = config.output.parent / f"{Path(config.output).stem}.{safe}.explain.stdout.log"
    sink = make_sink(config.stdout, rate_bytes_per_s=config.sink_rate_bytes_per_s, file_path=path)
    with LimitSession(config.limits, name="iolab") as session:
        session.prepare()
        with serve(target, spec.path, session, env, sink, config.ready_timeout_s) as (server, url):
            yield server.pid, url


def explain_scenario(config: RunConfig, spec: ScenarioSpec, env: dict[str, str], drive: Drive,
                     measured_mean_ms: float | None, phase: Callable[[str], None] = lambda _t: None,
                     progress: Callable[[int, int], None] | None = None) -> Explain:
    """One explain round of ``spec``; never raises an IolabError: a round that cannot explain says why."""
    requests = max(2, config.explain_requests)
    if config.agent is not None:  # --pid names a process on the agent's host: the tracers see this one's
        return _none(0, "the server's PID is on the agent's host (--agent): the tracers see local processes only")
    tracer, why = choose(config.explain_method)
    if tracer is None:
        return _none(0, "; ".join(why) or "no tracer")
    try:
        with _server(config, spec, env) as (pid, url):
            if pid is None:
                return _none(0, "iolab did not start this server and was given no PID (--pid)")
            return _round(config, spec, url, pid, tracer, why, drive, measured_mean_ms, requests, phase, progress)
    except IolabError as exc:
        return _none(0, f"the explain round could not run: {exc}")
    except Exception as exc:  # a bug here must not lose the measured rounds, saved already
        return _none(0, f"the explain round failed: {type(exc).__name__}: {exc}")


def _round(config: RunConfig, spec: ScenarioSpec, url: str, pid: int, tracer: Tracer, why: list[str],
           drive: Drive, measured_mean_ms: float | None, requests: int, phase: Callable[[str], None],
           progress: Callable[[int, int], None] | None) -> Explain:
    base = LoadSpec(url=url, requests=requests // 2, concurrency=config.concurrency, keepalive=config.keepalive,
                    timeout_s=config.timeout_s, method=spec.method, headers=config.headers, body=config.body)
    warm = min(config.warmup, _WARMUP_MAX)
    if warm > 0:
        phase("explain: warm-up")
        drive(_half(config, replace(base, requests=warm, concurrency=min(config.concurrency, warm))), progress)
    pids = tree(pid)
    watch = FdWatch(lambda: tree(pid), _port(config, url))
    watch.start()
    try:
        phase(f"explain: starting {tracer.method}")
        try:
            tracer.start(pids)
        except TracerUnavailable as exc:
            return _none(0, "; ".join([*why, str(exc)]))
        sampler = Sampler(pid)
        try:
            w0 = syscw(pids)
            phase(f"explain: {tracer.method}")
            first = drive(_half(config, base), progress)
            phase(f"explain: {tracer.method} + py-spy")
            # py-spy reads the process with ptrace too: it cannot while strace holds it.
            sampler_reason = ("py-spy cannot sample a process that strace is tracing"
                              if tracer.method == "strace" else sampler.start())
            second = drive(_half(config, replace(base, requests=requests - requests // 2)), progress)
            samples, stop_reason = sampler.stop() if sampler_reason is None else ([], sampler_reason)
            w1 = syscw(pids)
        finally:
            trace: Trace = tracer.stop()
            with contextlib.suppress(Exception):
                sampler.stop()
    finally:
        watch.stop()
    explain = build(trace, watch, first, second, w1 - w0, samples, stop_reason, measured_mean_ms, why)
    if _gone(pid):
        explain = replace(explain, reason="; ".join(filter(None, [
            explain.reason, "the server exited during the explain round"])))
    return explain


def _gone(pid: int) -> bool:
    """The server exited (a child of ours stays a zombie until it is reaped)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _half(config: RunConfig, spec: LoadSpec) -> LoadSpec:
    """A part of the explain round in the measured rounds' mode: an open loop at their rate for as long as
    its requests take; a driver that runs for a time (wrk, --duration) for _TIMED_HALF_S; else requests."""
    if config.rate is not None:
        return replace(spec, rate=config.rate, duration_s=max(1.0, spec.requests / config.rate),
                       arrival=config.arrival)
    if config.duration_s is not None or config.driver == "wrk":
        return replace(spec, duration_s=_TIMED_HALF_S)
    return spec


def build(trace: Trace, watch: FdWatch, first: LoadResult, second: LoadResult, syscw_delta: int,
          samples: list[Sample], sampler_reason: str | None, measured_mean_ms: float | None, why: list[str]) -> Explain:
    done = first.completed + second.completed
    # The kernel's names first (bpftrace's at the call, else /proc's); py-spy's Python name for a thread
    # neither saw named.
    comms = {**{s.tid: s.thread for s in samples if s.tid is not None}, **watch.thread_names, **trace.thread_names}
    calls = []
    for g in trace.groups:
        where = watch.where(g.pid, g.fd, g.origin, g.link)
        calls.append(analysis.Call(
            destination=where.destination, target=where.target, fd_kind=where.fd_kind, syscall=g.syscall,
            thread=_thread_name(g.pid, g.tid, comms), tid=g.tid, calls=g.calls,
            bytes=g.bytes, total_ns=g.total_ns, hist=tuple(g.hist)))
    rows = analysis.write_rows(calls, done)
    sampled = [analysis.Sampled(s.thread, s.state, s.site, s.count) for s in samples]
    notes = [f"{trace.method} ran ({'; '.join(why)})"] if why else []
    if trace.note:
        notes.append(trace.note)
    # Refused or cut requests end fast: a slowdown from their mean would read as a tracer that costs nothing.
    failed = [r.connect_errors + r.timeouts + r.other_errors for r in (first, second)]
    if any(failed):
        notes.append(f"{sum(failed):,} of the explain round's {first.requests + second.requests:,} requests failed "
                     f"(refused, timed out or cut): the per-request figures cover the {done:,} answered; no slowdown")
    if not rows and syscw_delta > 0:
        # syscw saw writes the trace has not: the trace failed, and an empty table would read as "no writes".
        return replace(_none(done, "; ".join([*notes, f"{trace.method} saw none of the {syscw_delta:,} write "
                                              "syscalls /proc/PID/io counted"])),
                       method=trace.method, syscw_per_request=syscw_delta / done if done else None)
    return Explain(
        method=trace.method, requests=done,
        slowdown=analysis.slowdown(_mean_ms(first), measured_mean_ms) if not failed[0] else None,
        syscw_per_request=syscw_delta / done if done else None,
        output_syscalls_per_request=analysis.output_calls_per_request(rows) if done else None,
        writes=rows, blocked_sites=analysis.blocked_sites(sampled),
        reason="; ".join(notes) or None,
        sampler="py-spy" if samples else "none",
        sampler_slowdown=analysis.slowdown(_mean_ms(second), measured_mean_ms) if samples and not failed[1] else None,
        sampler_reason=sampler_reason,
        syscw_attributed_per_request=analysis.syscw_calls_per_request(rows) if done else None)


def _thread_name(pid: int, tid: int, comms: dict[int, str]) -> str:
    """The kernel's name of the thread (comm, as a thread pool names its workers), marking the main one;
    a thread that never named itself carries its process's name, and reads as "thread of ..."."""
    comm = comms.get(tid)
    if tid == pid:
        return f"main ({comm or '?'})"
    main = comms.get(pid)
    if comm is None:
        return f"thread of {main}" if main else "a thread that ended before iolab read its name"
    if comm == main:
        return f"thread of {comm}"
    return comm
