"""The builtin driver's child process (``python -m iolab.measure.drivers.builtin_child``): the load itself.

The spec comes in as JSON on stdin, the result goes out as JSON on stdout, ``progress <done> <total>``
lines go to stderr. asyncio (uvloop when importable) and httptools; latency in integer microseconds from
just before connect (or just before send, on a reused connection) to the arrival of the bytes that
complete the response, every sample kept. Failures are counted by kind, never raised. The connections,
the closed loop and the open loop's schedule are in ``builtin_conns``; this module holds the counters
they share (``Load``), the timeout sweep, progress, and the process around them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iolab.errors import UsageError
from iolab.measure.drivers.base import LATE_US, LoadSpec
from iolab.measure.drivers.builtin_conns import OpenLoop, run_closed
from iolab.measure.drivers.request import encode_request, spec_from_json

if TYPE_CHECKING:
    from iolab.measure.drivers.builtin_conns import _Conn

_PROGRESS_INTERVAL_S = 0.1
_ERRORS_KEPT = 5
# How early the open loop's timer is set, before a request is due. A timerfd fires on time, and the send
# follows the wake-up by ~10–40 µs on the bench machine (epoll's return, the callback): a small lead puts
# sends on time. The loop's own timers (the fallback) are whole milliseconds: aim 0.5 ms early. Either
# way a request sent early is timed from its send, so the timer's error stays out of the corrected latency.
_LEAD_PRECISE_NS = 20_000
_LEAD_COARSE_NS = 500_000
_LATE_NS = LATE_US * 1000

perf_ns = time.perf_counter_ns


class Load:
    """One run's counters, shared by every connection and client (one thread: no locks)."""

    def __init__(self, spec: LoadSpec, host: str, port: int, request: bytes) -> None:
        self.spec, self.host, self.port, self.request = spec, host, port, request
        self.total = spec.expected_requests
        self.open_loop = spec.rate is not None
        self.interval_ns = round(1e9 / spec.rate) if spec.rate else 0
        self.timeout_ns = int(spec.timeout_s * 1e9)
        self.end_ns = 0  # timed closed loop: no request starts after this
        # Responses are counted once, in latencies_us and statuses (one entry each, in the same order);
        # completed, ok_2xx and non_2xx are derived from those, which keeps the per-response path short.
        self.claimed = 0
        self.connect_errors = self.timeouts = self.other_errors = 0
        self.bytes_received = 0
        self.statuses: list[int] = []
        self.latencies_us: list[int] = []
        self.uncorrected_us: list[int] = []
        self.timeline_ms: list[int] = []
        self.lags_us: list[int] = []  # open loop: send − due, per request sent
        self.late_no_connection = 0
        self.errors: dict[str, None] = {}  # insertion-ordered set
        self.first_ns = self.last_ns = self.origin_ns = self.last_send_ns = 0
        self.rng = random.Random(spec.seed)
        self.next_due_ns = 0
        self.done: asyncio.Future[None] | None = None
        self.live = 0  # closed loop: connections and connectors still at work
        self.conns: set[_Conn] = set()
        self.cpu_user_s = self.cpu_sys_s = 0.0
        self.timer = ""  # open loop: what kept the schedule
        # Closed loop: the last response the parser read whole from one chunk (builtin_conns.ClosedConn).
        self.same_response: bytes | None = None
        self.same_status = 0

    def more(self, now: int) -> bool:
        """May one more request start now?"""
        if self.end_ns:
            return now < self.end_ns
        return self.claimed < self.total

    def due(self, index: int) -> int:
        """When request ``index`` is due (open loop). Called once per index, in increasing order."""
        if self.spec.arrival == "poisson":
            due = self.next_due_ns
            self.next_due_ns += int(self.rng.expovariate(self.spec.rate or 1.0) * 1e9)
            return due
        return self.origin_ns + index * self.interval_ns

    @staticmethod
    def lead_ns(precise: bool) -> int:
        return _LEAD_PRECISE_NS if precise else _LEAD_COARSE_NS

    def sent(self, due: int, start: int, waited: bool) -> int:
        """Open loop: note how late a request left (``waited``: for a free connection); returns the time
        its latency counts from."""
        lag = start - due
        self.lags_us.append(lag // 1000)
        self.last_send_ns = start
        if not self.first_ns:
            self.first_ns = start
        if lag > _LATE_NS and waited:
            self.late_no_connection += 1
        return min(due, start)  # sent early (the timer's lead): timed from the send

    @property
    def completed(self) -> int:
        return len(self.latencies_us)

    @property
    def finished(self) -> int:
        return len(self.latencies_us) + self.connect_errors + self.timeouts + self.other_errors

    def error(self, kind: str, message: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.last_ns = perf_ns()
        if len(self.errors) < _ERRORS_KEPT:
            self.errors[message] = None

    def response(self, status: int, received: int, done: int, latency_us: int) -> None:
        self.last_ns = done
        self.bytes_received += received
        self.latencies_us.append(latency_us)
        self.statuses.append(status)
        if not self.open_loop:  # when each completed, for latency second by second (the open loop's own)
            self.timeline_ms.append((done - self.first_ns) // 1_000_000)

    def schedule(self) -> dict[str, Any] | None:
        if not self.open_loop:
            return None
        lags = sorted(max(0, lag) for lag in self.lags_us)
        sent = len(lags)
        span_s = (self.last_send_ns - self.origin_ns) / 1e9 if sent > 1 else 0.0
        return {
            "target_rate": self.spec.rate,
            "achieved_rate": round((sent - 1) / span_s, 2) if span_s > 0 else 0.0,
            "arrival": self.spec.arrival,
            "timer": self.timer,
            "sent": sent,
            "late": sum(1 for lag in lags if lag > LATE_US),
            "late_no_connection": self.late_no_connection,
            "lag_p50_us": lags[sent // 2] if sent else 0,
            "lag_p99_us": lags[min(sent - 1, int(sent * 0.99))] if sent else 0,
            "lag_max_us": lags[-1] if sent else 0,
        }

    def to_json(self) -> dict[str, Any]:
        status_counts = dict(Counter(self.statuses))
        ok_2xx = sum(n for status, n in status_counts.items() if 200 <= status < 300)
        return {
            "requests": self.claimed,
            "completed": self.completed,
            "ok_2xx": ok_2xx,
            "non_2xx": self.completed - ok_2xx,
            "connect_errors": self.connect_errors,
            "timeouts": self.timeouts,
            "other_errors": self.other_errors,
            "status_counts": status_counts,
            "duration_s": max(0, self.last_ns - self.first_ns) / 1e9,
            "latencies_us": self.latencies_us,
            "latencies_uncorrected_us": self.uncorrected_us,
            "timeline_ms": self.timeline_ms,
            "bytes_received": self.bytes_received,
            "errors_sample": list(self.errors),
            "cpu_load_user_s": self.cpu_user_s,
            "cpu_load_sys_s": self.cpu_sys_s,
            "schedule": self.schedule(),
        }


def _tick(load: Load, every_s: float, progress_at: list[float]) -> None:
    """Periodic: time out late requests (one sweep is cheaper than a timer per request) and report progress."""
    loop = asyncio.get_running_loop()
    now = perf_ns()
    deadline = now - load.timeout_ns
    for conn in [c for c in load.conns if c.start and c.start < deadline]:
        conn.fail("timeouts", f"no complete response within {load.spec.timeout_s:g} s")
        conn.transport.abort()  # type: ignore[union-attr]
    if loop.time() >= progress_at[0]:
        progress_at[0] = loop.time() + _PROGRESS_INTERVAL_S
        _progress(load, now)
    loop.call_later(every_s, _tick, load, every_s, progress_at)


async def _run(load: Load) -> None:
    loop = asyncio.get_running_loop()
    spec = load.spec
    width = spec.concurrency if spec.timed else min(spec.concurrency, load.total)
    every_s = min(_PROGRESS_INTERVAL_S, max(0.001, spec.timeout_s / 10))  # timers count whole ms
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    schedule = OpenLoop(load, precise=spec.pacing == "timerfd") if load.open_loop else None
    try:
        if schedule is not None:
            await schedule.connect_all()
        # The clock starts now: the open loop's schedule, the timed closed loop's end, the progress.
        load.origin_ns = load.next_due_ns = perf_ns()
        if spec.timed and spec.duration_s is not None:
            load.end_ns = load.origin_ns + int(spec.duration_s * 1e9)
        ticker = loop.call_later(every_s, _tick, load, every_s, [0.0])
        try:
            if schedule is not None:
                load.timer = await schedule.run()
            else:
                await run_closed(load, max(1, width))
        finally:
            ticker.cancel()
    finally:
        if schedule is not None:
            schedule.close()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    load.cpu_user_s = r1.ru_utime - r0.ru_utime
    load.cpu_sys_s = r1.ru_stime - r0.ru_stime
    _progress(load, perf_ns(), final=True)


def _progress(load: Load, now: int, final: bool = False) -> None:
    # One write of a short line: atomic on a pipe, so it never interleaves with anything else.
    if load.end_ns:  # timed: the count is not known in advance, so report time
        total = (load.end_ns - load.origin_ns) // 1_000_000
        done = total if final else min(total, (now - load.origin_ns) // 1_000_000)
    else:
        done, total = load.finished, load.total
    os.write(2, f"progress {done} {total}\n".encode())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def main() -> int:
    """The child: spec on stdin, result on stdout. Exit 2 with ``error: …`` on a spec it cannot run."""
    try:
        spec = spec_from_json(json.loads(sys.stdin.buffer.read()))
        host, port, request = encode_request(spec)
        if spec.cpus:
            os.sched_setaffinity(0, spec.cpus)
        # Resolve once: the clients then connect to a numeric address, with no lookup per request.
        addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
        host = str(addr[0])
    except (UsageError, OSError, ValueError, TypeError, KeyError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    load = Load(spec, host, port, request)
    # What exists now (interpreter, imports) never becomes garbage: keep collections from walking it, and
    # from running at all during the load, where their pauses would land in the latencies. The load makes
    # no reference cycles but on error paths; those are collected when the collector is back on.
    gc.freeze()
    gc.disable()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run(load))
    gc.enable()
    _write_all(1, json.dumps(load.to_json(), separators=(",", ":")).encode())
    return 0


def _write_all(fd: int, data: bytes) -> None:
    # Not sys.stdout: under PYTHONUNBUFFERED=1 it is a bare FileIO whose short writes TextIOWrapper drops,
    # and a signal during a large blocking write to a pipe makes one short (seen after uvloop ran).
    os.set_blocking(fd, True)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    sys.exit(main())
