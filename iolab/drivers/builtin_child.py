"""The builtin driver's child process (``python -m iolab.drivers.builtin_child``): the load itself.

The spec comes in as JSON on stdin, the result goes out as JSON on stdout, ``progress <done> <total>``
lines go to stderr. asyncio (uvloop when importable) and httptools; latency in integer microseconds from
just before connect (or just before send, on a reused connection) to httptools' message-complete callback,
every sample kept; "message complete" is timed when the chunk that completes it reached the driver, before
the parser's Python callbacks run. Failures are counted by kind, never raised.

Two ways to drive, one set of counters:

* Closed loop with keep-alive (what ``wrk`` does, and what a throughput benchmark wants) runs on callbacks
  alone: the callback that completes a response writes the next request on the same connection. No task,
  no future, no wake-up per request; that is most of what an asyncio client spends per request.
* Everything else (a new connection per request, as ``ab`` does; the open loop's schedule) runs one
  coroutine per client, which reads as the sequence it is: wait until due, connect, send, await.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import re
import resource
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import httptools

from iolab.drivers.base import LATE_US, LoadSpec
from iolab.drivers.request import encode_request, spec_from_json
from iolab.errors import UsageError

_PROGRESS_INTERVAL_S = 0.1
_ERRORS_KEPT = 5
# The event loop's timers count whole milliseconds, so a sleep ends up to ~0.5 ms early or late. Open loop
# aims this much early: requests then leave at most ~1 ms before they are due and seldom after, and an
# early one is timed from its send, so the timer's error stays out of the corrected latency.
_TIMER_LEAD_NS = 500_000
_LATE_NS = LATE_US * 1000
# A response whose length none of these headers gives ends at EOF (HTTP/1.0 style). Looked for in the
# bytes of the head only when a connection ends mid-message, instead of a Python callback per header.
_FRAMING = re.compile(rb"\r\n(?:content-length|transfer-encoding)[ \t]*:", re.IGNORECASE)

perf_ns = time.perf_counter_ns


class _Load:
    """One run's counters, shared by every connection and client (one thread: no locks)."""

    def __init__(self, spec: LoadSpec, host: str, port: int, request: bytes) -> None:
        self.spec, self.host, self.port, self.request = spec, host, port, request
        self.total = spec.expected_requests
        self.open_loop = spec.rate is not None
        self.interval_ns = round(1e9 / spec.rate) if spec.rate else 0
        self.timeout_ns = int(spec.timeout_s * 1e9)
        self.end_ns = 0  # timed closed loop: no request starts after this
        # Responses are counted once, in latencies_us and status_counts; completed, ok_2xx and non_2xx are
        # derived from those (properties below), which keeps the per-response path short.
        self.claimed = 0
        self.connect_errors = self.timeouts = self.other_errors = 0
        self.bytes_received = 0
        self.status_counts: dict[int, int] = {}
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
        self.live = 0  # fast path: connections and connectors still at work
        self.conns: set[_FastConn] = set()
        self.cpu_user_s = self.cpu_sys_s = 0.0

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

    def sent(self, due: int, start: int, claimed_late: bool) -> int:
        """Open loop: note how late a request left; returns the time its latency counts from."""
        lag = start - due
        self.lags_us.append(lag // 1000)
        self.last_send_ns = start
        if lag > _LATE_NS and claimed_late:
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
        self.status_counts[status] = self.status_counts.get(status, 0) + 1

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
            "sent": sent,
            "late": sum(1 for lag in lags if lag > LATE_US),
            "late_no_connection": self.late_no_connection,
            "lag_p50_us": lags[sent // 2] if sent else 0,
            "lag_p99_us": lags[min(sent - 1, int(sent * 0.99))] if sent else 0,
            "lag_max_us": lags[-1] if sent else 0,
        }

    def to_json(self) -> dict[str, Any]:
        ok_2xx = sum(n for status, n in self.status_counts.items() if 200 <= status < 300)
        return {
            "requests": self.claimed,
            "completed": self.completed,
            "ok_2xx": ok_2xx,
            "non_2xx": self.completed - ok_2xx,
            "connect_errors": self.connect_errors,
            "timeouts": self.timeouts,
            "other_errors": self.other_errors,
            "status_counts": self.status_counts,
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


def _eof_delimited(head: bytes) -> bool:
    return _FRAMING.search(head) is None


# ------------------------------------------------------------------ closed loop, keep-alive: callbacks


class _FastConn(asyncio.Protocol):
    """A kept-alive connection that sends its next request from the callback completing the last one."""

    __slots__ = ("load", "parser", "transport", "start", "received", "head", "headers_done", "keep", "status",
                 "rx_ns")

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.start = self.received = self.status = self.rx_ns = 0  # start: 0 when no request is in flight
        self.head = b""
        self.headers_done = False
        self.keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.load.conns.add(self)

    def data_received(self, data: bytes) -> None:
        # When the bytes (the last ones, if this chunk completes the response) reached the driver: taken
        # before parsing, so the parser's Python callbacks stay out of the latency.
        self.rx_ns = perf_ns()
        self.received += len(data)
        if not self.headers_done:
            self.head += data  # b"" + data is data itself: no copy on the usual one-chunk response
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserError as exc:
            self._fail("other_errors", f"malformed response: {exc}")
            self.transport.abort()  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        self.headers_done = True
        parser = self.parser
        self.status = parser.get_status_code()  # type: ignore[union-attr]
        # Asked here, as uvicorn does: llhttp clears the message's flags once it is complete.
        self.keep = parser.should_keep_alive()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        # The hot path of a throughput run: Load.response() and Load.more() written out inline, as every
        # Python call and attribute lookup here is paid once per request.
        done = self.rx_ns
        load = self.load
        load.latencies_us.append((done - self.start) // 1000)
        load.last_ns = done
        load.bytes_received += self.received
        counts = load.status_counts
        counts[self.status] = counts.get(self.status, 0) + 1
        self.start = self.received = 0
        self.head = b""
        self.headers_done = False
        if self.keep and (done < load.end_ns if load.end_ns else load.claimed < load.total):
            load.claimed += 1
            self.start = perf_ns()
            self.transport.write(load.request)  # type: ignore[union-attr]
        else:
            self.transport.close()  # type: ignore[union-attr]

    def _fail(self, kind: str, message: str) -> None:
        if self.start:
            self.start = 0
            self.load.error(kind, message)

    def connection_lost(self, exc: Exception | None) -> None:
        load = self.load
        load.conns.discard(self)
        if self.start and self.headers_done and exc is None and _eof_delimited(self.head):
            done = perf_ns()  # a body delimited by the end of the connection: complete
            load.response(self.status, self.received, done, (done - self.start) // 1000)
            self.start = 0
        elif self.received:
            self._fail("other_errors", f"connection closed mid-response: {exc or 'EOF'}")
        else:
            self._fail("connect_errors", f"connection closed before a response: {exc or 'EOF'}")
        self.parser = None  # break the parser <-> protocol cycle so refcounting frees both at once
        if load.more(perf_ns()):
            asyncio.get_running_loop().create_task(_connector(load))
        else:
            _slot_done(load)


def _slot_done(load: _Load) -> None:
    load.live -= 1
    if load.live == 0 and load.done is not None and not load.done.done():
        load.done.set_result(None)


async def _connector(load: _Load) -> None:
    """Opens a connection and sends its first request; after a failed connect, tries the next request."""
    loop = asyncio.get_running_loop()
    while load.more(perf_ns()):
        load.claimed += 1
        start = perf_ns()
        if not load.first_ns:
            load.first_ns = start
        try:
            async with asyncio.timeout(load.spec.timeout_s):
                transport, conn = await loop.create_connection(lambda: _FastConn(load), load.host, load.port)
        except TimeoutError:
            load.error("timeouts", f"no connection within {load.spec.timeout_s:g} s")
            continue
        except OSError as exc:
            load.error("connect_errors", f"connect: {exc.strerror or exc}")
            continue
        conn.start = start
        transport.write(load.request)
        return  # the connection carries on by callbacks; its connection_lost takes over this slot
    _slot_done(load)


async def _run_fast(load: _Load, slots: int) -> None:
    load.done = asyncio.get_running_loop().create_future()
    load.live = slots
    for _ in range(slots):
        asyncio.get_running_loop().create_task(_connector(load))
    await load.done


# ---------------------------------------------------------------- everything else: a coroutine a client


class _Conn(asyncio.Protocol):
    """One connection; httptools calls back into it. With keep-alive, a request allocates only its waiter."""

    __slots__ = ("parser", "transport", "waiter", "received", "status", "done_ns", "error", "closed",
                 "headers_done", "keep", "head", "rx_ns")

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.reset()

    def reset(self) -> None:
        self.received = self.status = self.done_ns = self.rx_ns = 0
        self.error: str | None = None
        self.headers_done = self.keep = False
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.rx_ns = perf_ns()  # as in _FastConn: the bytes' arrival, before the parser's callbacks
        self.received += len(data)
        if not self.headers_done:
            self.head += data
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserError as exc:
            self._finish(f"malformed response: {exc}")
            self.transport.abort()  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        self.headers_done = True
        parser = self.parser
        self.status = parser.get_status_code()  # type: ignore[union-attr]
        self.keep = parser.should_keep_alive()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        self.done_ns = self.rx_ns
        self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser = None
        if self.headers_done and exc is None and _eof_delimited(self.head):
            self.done_ns = perf_ns()
            self._finish(None)
        elif self.received:
            self._finish(f"connection closed mid-response: {exc or 'EOF'}")
        else:
            self._finish(f"connection closed before a response: {exc or 'EOF'}")

    def _finish(self, error: str | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.error = error
            waiter.set_result(None)


class _Slot:
    """What the timeout sweep needs to see of one client: when its request started."""

    __slots__ = ("start_ns", "timed_out", "task")

    def __init__(self) -> None:
        self.start_ns = 0
        self.timed_out = False
        self.task: asyncio.Task[None] | None = None


async def _client(load: _Load, slot: _Slot) -> None:
    loop = asyncio.get_running_loop()
    keepalive, open_loop = load.spec.keepalive, load.open_loop
    conn: _Conn | None = None
    due, claimed_late = 0, False
    while load.more(perf_ns()):
        index = load.claimed
        load.claimed += 1
        if open_loop:  # each request is due at its time, late or not
            due = load.due(index)
            claimed_late = perf_ns() - due > _LATE_NS  # no connection was free when it fell due
            wait_ns = due - perf_ns() - _TIMER_LEAD_NS
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
        start = perf_ns()
        due = load.sent(due, start, claimed_late) if open_loop else start
        if not load.first_ns:
            load.first_ns = start
        slot.start_ns = start
        try:
            if conn is None or conn.closed:
                conn = None
                _, conn = await loop.create_connection(_Conn, load.host, load.port)
            else:
                conn.reset()
            waiter = conn.waiter = loop.create_future()
            conn.transport.write(load.request)  # type: ignore[union-attr]
            await waiter
        except asyncio.CancelledError:
            if not slot.timed_out:
                raise
            slot.task.uncancel()  # type: ignore[union-attr]
            slot.timed_out = False
            load.error("timeouts", f"no complete response within {load.spec.timeout_s:g} s")
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            conn = None
            continue
        except OSError as exc:
            load.error("connect_errors", f"connect: {exc.strerror or exc}")
            conn = None
            continue
        finally:
            slot.start_ns = 0
        if conn.error is None:
            done = conn.done_ns
            load.response(conn.status, conn.received, done, (done - due) // 1000)
            if open_loop:
                load.uncorrected_us.append((done - start) // 1000)
                load.timeline_ms.append((done - load.origin_ns) // 1_000_000)
        else:
            load.bytes_received += conn.received
            load.error("other_errors" if conn.received else "connect_errors", conn.error)
        if not (keepalive and conn.keep) or conn.closed:
            conn.transport.close()  # type: ignore[union-attr]
            conn = None
    if conn is not None:
        conn.transport.close()  # type: ignore[union-attr]


async def _run_clients(load: _Load, slots: list[_Slot]) -> None:
    loop = asyncio.get_running_loop()
    for slot in slots:
        slot.task = loop.create_task(_client(load, slot))
    await asyncio.gather(*(slot.task for slot in slots if slot.task is not None))


# ------------------------------------------------------------------------------------------- the run


def _tick(load: _Load, slots: list[_Slot], every_s: float, progress_at: list[float]) -> None:
    """Periodic: time out late requests (one sweep is cheaper than a timer per request) and report progress."""
    loop = asyncio.get_running_loop()
    now = perf_ns()
    deadline = now - load.timeout_ns
    for slot in slots:
        if slot.start_ns and slot.start_ns < deadline and not slot.timed_out and slot.task is not None:
            slot.timed_out = True
            slot.task.cancel()
    for conn in [c for c in load.conns if c.start and c.start < deadline]:
        conn._fail("timeouts", f"no complete response within {load.spec.timeout_s:g} s")
        conn.transport.abort()  # type: ignore[union-attr]
    if loop.time() >= progress_at[0]:
        progress_at[0] = loop.time() + _PROGRESS_INTERVAL_S
        _progress(load, now)
    loop.call_later(every_s, _tick, load, slots, every_s, progress_at)


async def _run(load: _Load) -> None:
    loop = asyncio.get_running_loop()
    spec = load.spec
    width = spec.concurrency if spec.timed else min(spec.concurrency, load.total)
    fast = spec.keepalive and not load.open_loop
    slots = [] if fast else [_Slot() for _ in range(max(1, width))]
    every_s = min(_PROGRESS_INTERVAL_S, max(0.001, spec.timeout_s / 10))  # timers count whole ms
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    load.origin_ns = load.next_due_ns = perf_ns()
    if spec.timed and spec.duration_s is not None:
        load.end_ns = load.origin_ns + int(spec.duration_s * 1e9)
    ticker = loop.call_later(every_s, _tick, load, slots, every_s, [0.0])
    try:
        if fast:
            await _run_fast(load, max(1, width))
        else:
            await _run_clients(load, slots)
    finally:
        ticker.cancel()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    load.cpu_user_s = r1.ru_utime - r0.ru_utime
    load.cpu_sys_s = r1.ru_stime - r0.ru_stime
    _progress(load, perf_ns(), final=True)


def _progress(load: _Load, now: int, final: bool = False) -> None:
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
    load = _Load(spec, host, port, request)
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
