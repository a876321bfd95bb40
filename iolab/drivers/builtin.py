"""The built-in HTTP/1.1 load driver: asyncio (uvloop when importable) and httptools.

It runs in a child process (``python -m iolab.drivers.builtin``), as pyperf runs its workers, so it can be
pinned to a core of its own and its CPU read apart from the server's: the spec goes in as JSON on
stdin, the result comes back as JSON on stdout, ``progress <done> <total>`` lines come on stderr.

By default every request opens a new connection, sends pre-encoded bytes, reads to the end of the
response and closes, as ``ab`` does without ``-k``. Latency runs from just before connect (or just before
send, on a reused connection) to httptools' message-complete callback, in integer microseconds, every
sample kept. Failures are counted by kind, never raised.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httptools

from iolab import __version__
from iolab.drivers.base import LoadResult, LoadSpec, ProgressCallback
from iolab.errors import DriverError, UsageError

NAME = "builtin"
_PROGRESS_INTERVAL_S = 0.1
_ERRORS_KEPT = 5
_STDERR_TAIL = 20
_READ_SIZE = 65536
# The event loop's timers count whole milliseconds, so a sleep ends up to ~0.5 ms early or late. Open loop
# aims this much early: requests then leave at most ~1 ms before they are due and seldom after, and an
# early one is timed from its send, so the timer's error stays out of the corrected latency.
_TIMER_LEAD_NS = 500_000
# Responses whose length is given by these headers end at a known byte; without either, at EOF.
_FRAMING_HEADERS = (b"content-length", b"transfer-encoding")

# --------------------------------------------------------------------------------------------- parent


class BuiltinDriver:
    """Runs the load in a child process. ``command`` replaces the child's argv (tests use it)."""

    name = NAME

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self._command = list(command or [sys.executable, "-m", "iolab.drivers.builtin"])

    def run(self, spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
        encode_request(spec)  # what this driver cannot send is a usage error, before any process starts
        payload = json.dumps(spec_to_json(spec)).encode()
        out, rusage, tail = _run_child(self._command, payload, progress)
        try:
            data = json.loads(out)
            return _result_from_json(data, rusage)
        except (ValueError, KeyError, TypeError) as exc:
            shown = out[:80].decode(errors="replace").strip() or "nothing"
            hint = f" (stderr: {tail[-1]})" if tail else ""
            raise DriverError(f"the builtin driver printed {shown!r}, not a result ({exc}){hint}") from None


def run_load(spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
    return BuiltinDriver().run(spec, progress)


def _run_child(
    command: list[str], payload: bytes, progress: ProgressCallback | None
) -> tuple[bytes, Any, deque[str]]:
    # Its own session: a Ctrl-C in the terminal reaches us, not the child; we then kill its group below.
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
        )
    except OSError as exc:
        raise DriverError(f"cannot start the builtin driver: {exc}") from None
    try:
        out, tail = _exchange(proc, payload, progress)
        _, status, rusage = os.wait4(proc.pid, 0)  # rusage of the child alone: the driver's own CPU
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:  # an exception, KeyboardInterrupt included: leave nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if proc.returncode != 0:
        how = (
            f"was killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with {proc.returncode}"
        )
        raise DriverError(f"the builtin driver {how}: {tail[-1] if tail else 'no message'}")
    return out, rusage, tail


def _exchange(
    proc: subprocess.Popen[bytes], payload: bytes, progress: ProgressCallback | None
) -> tuple[bytes, deque[str]]:
    """Feed stdin, collect stdout, turn stderr into progress calls, all on this thread (so Ctrl-C lands here)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin_fd, out_fd, err_fd = proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()
    out, err = bytearray(), bytearray()
    tail: deque[str] = deque(maxlen=_STDERR_TAIL)
    pending = memoryview(payload)
    os.set_blocking(stdin_fd, False)
    with selectors.DefaultSelector() as sel:
        sel.register(stdin_fd, selectors.EVENT_WRITE)
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                if key.fd == stdin_fd:
                    try:
                        pending = pending[os.write(stdin_fd, pending[:_READ_SIZE]) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the child exited early; its stderr says why
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(stdin_fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, _READ_SIZE)
                if not chunk:
                    sel.unregister(key.fd)
                elif key.fd == out_fd:
                    out += chunk
                else:
                    err += chunk
                    *lines, rest = err.split(b"\n")
                    err[:] = rest
                    _stderr_lines(lines, tail, progress)
    _stderr_lines([err], tail, progress)
    return bytes(out), tail


def _stderr_lines(lines: list[bytearray], tail: deque[str], progress: ProgressCallback | None) -> None:
    for raw in lines:
        line = raw.decode(errors="replace").rstrip()
        fields = line.split()
        if len(fields) == 3 and fields[0] == "progress" and fields[1].isdigit() and fields[2].isdigit():
            if progress is not None:
                progress(int(fields[1]), int(fields[2]))
        elif line:
            tail.append(line)


def spec_to_json(spec: LoadSpec) -> dict[str, Any]:
    data = dataclasses.asdict(spec)
    data["body"] = base64.b64encode(spec.body).decode()
    return data


def spec_from_json(data: dict[str, Any]) -> LoadSpec:
    data = dict(data)
    data["body"] = base64.b64decode(data.get("body", ""))
    data["headers"] = tuple((str(k), str(v)) for k, v in data.get("headers", ()))
    if data.get("cpus") is not None:
        data["cpus"] = tuple(int(c) for c in data["cpus"])
    return LoadSpec(**data)


def _result_from_json(data: dict[str, Any], rusage: Any) -> LoadResult:
    return LoadResult(
        driver=NAME,
        requests=int(data["requests"]),
        completed=int(data["completed"]),
        ok_2xx=int(data["ok_2xx"]),
        non_2xx=int(data["non_2xx"]),
        connect_errors=int(data["connect_errors"]),
        timeouts=int(data["timeouts"]),
        other_errors=int(data["other_errors"]),
        status_counts={int(k): int(v) for k, v in data["status_counts"].items()},
        duration_s=float(data["duration_s"]),
        latencies_us=tuple(data["latencies_us"]),
        bytes_received=int(data["bytes_received"]),
        cpu_user_s=rusage.ru_utime,
        cpu_sys_s=rusage.ru_stime,
        errors_sample=tuple(str(e) for e in data["errors_sample"]),
        latencies_uncorrected_us=tuple(data.get("latencies_uncorrected_us", ())),
    )


def encode_request(spec: LoadSpec) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes), encoded once for the whole run. Raises ``UsageError``."""
    parts = urlsplit(spec.url)
    if parts.scheme != "http":
        raise UsageError(f"the builtin driver speaks plain http:// only (got {spec.url!r})")
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError as exc:
        raise UsageError(f"bad URL {spec.url!r}: {exc}") from None
    if not host:
        raise UsageError(f"bad URL {spec.url!r}: no host")
    if spec.method.upper() == "HEAD":  # httptools cannot be told that a HEAD response has no body
        raise UsageError("the builtin driver cannot send HEAD requests")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    given = {name.lower() for name, _ in spec.headers}
    headers = list(spec.headers)
    defaults = {
        "host": parts.netloc.rpartition("@")[2],
        "user-agent": f"iolab/{__version__}",
        "accept": "*/*",
        # Without keep-alive we ask the server to close, as ab's HTTP/1.0 requests do.
        "connection": "keep-alive" if spec.keepalive else "close",
    }
    if spec.body or spec.method.upper() in ("POST", "PUT", "PATCH"):
        defaults["content-length"] = str(len(spec.body))
    headers += [(name.title(), value) for name, value in defaults.items() if name not in given]
    head = f"{spec.method.upper()} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    try:
        return host, port, (head + "\r\n").encode("latin-1") + spec.body
    except UnicodeEncodeError as exc:
        raise UsageError(f"the request cannot be encoded as HTTP/1.1: {exc}") from None


# ---------------------------------------------------------------------------------------------- child


class _Conn(asyncio.Protocol):
    """One connection; httptools calls back into it. With keep-alive, a request allocates only its waiter."""

    __slots__ = (
        "parser",
        "transport",
        "waiter",
        "received",
        "status",
        "done_ns",
        "error",
        "closed",
        "headers_done",
        "framed",
        "keep",
    )

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.reset()

    def reset(self) -> None:
        self.received = self.status = self.done_ns = 0
        self.error: str | None = None
        self.headers_done = self.framed = self.keep = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserError as exc:
            self._finish(f"malformed response: {exc}")
            self.transport.abort()  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17) and name.lower() in _FRAMING_HEADERS:
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        parser = self.parser
        self.status = parser.get_status_code()  # type: ignore[union-attr]
        # Asked here, as uvicorn does: llhttp clears the message's flags once it is complete.
        self.keep = parser.should_keep_alive()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        self.done_ns = time.perf_counter_ns()
        self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser = None  # break the parser <-> protocol cycle so refcounting frees both at once
        if self.headers_done and not self.framed and exc is None:
            self.done_ns = time.perf_counter_ns()  # a body delimited by the end of the connection
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


class _Load:
    """One run's counters, shared by every client coroutine (one thread: no locks)."""

    def __init__(self, spec: LoadSpec, host: str, port: int, request: bytes) -> None:
        self.spec, self.host, self.port, self.request = spec, host, port, request
        self.total = spec.expected_requests
        self.interval_ns = round(1e9 / spec.rate) if spec.rate else 0
        self.timeout_ns = int(spec.timeout_s * 1e9)
        self.claimed = self.finished = 0
        self.completed = self.ok_2xx = self.non_2xx = 0
        self.connect_errors = self.timeouts = self.other_errors = 0
        self.bytes_received = 0
        self.status_counts: dict[int, int] = {}
        self.latencies_us: list[int] = []
        self.uncorrected_us: list[int] = []
        self.errors: dict[str, None] = {}  # insertion-ordered set
        self.first_ns = self.last_ns = self.origin_ns = 0

    def error(self, kind: str, message: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.finished += 1
        self.last_ns = time.perf_counter_ns()
        if len(self.errors) < _ERRORS_KEPT:
            self.errors[message] = None

    def response(self, conn: _Conn, due_ns: int, sent_ns: int) -> None:
        self.finished += 1
        self.completed += 1
        self.last_ns = done = conn.done_ns
        self.latencies_us.append((done - due_ns) // 1000)
        if self.interval_ns:
            self.uncorrected_us.append((done - sent_ns) // 1000)
        status = conn.status
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        if 200 <= status < 300:
            self.ok_2xx += 1
        else:
            self.non_2xx += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.claimed,
            "completed": self.completed,
            "ok_2xx": self.ok_2xx,
            "non_2xx": self.non_2xx,
            "connect_errors": self.connect_errors,
            "timeouts": self.timeouts,
            "other_errors": self.other_errors,
            "status_counts": self.status_counts,
            "duration_s": max(0, self.last_ns - self.first_ns) / 1e9,
            "latencies_us": self.latencies_us,
            "latencies_uncorrected_us": self.uncorrected_us,
            "bytes_received": self.bytes_received,
            "errors_sample": list(self.errors),
        }


async def _client(load: _Load, slot: _Slot) -> None:
    loop = asyncio.get_running_loop()
    keepalive, interval = load.spec.keepalive, load.interval_ns
    conn: _Conn | None = None
    while load.claimed < load.total:
        index = load.claimed
        load.claimed += 1
        if interval:  # open loop: each request is due at a fixed time, late or not
            due = load.origin_ns + index * interval
            wait_ns = due - time.perf_counter_ns() - _TIMER_LEAD_NS
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
        start = time.perf_counter_ns()
        due = min(due, start) if interval else start  # sent early: timed from the send
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
        load.bytes_received += conn.received
        if conn.error is None:
            load.response(conn, due, start)
        else:
            load.error("other_errors" if conn.received else "connect_errors", conn.error)
        if not (keepalive and conn.keep) or conn.closed:
            conn.transport.close()  # type: ignore[union-attr]
            conn = None
    if conn is not None:
        conn.transport.close()  # type: ignore[union-attr]


def _tick(load: _Load, slots: list[_Slot], every_s: float, progress_at: list[float]) -> None:
    """Periodic: time out late requests (one sweep is cheaper than a timer per request) and report progress."""
    loop = asyncio.get_running_loop()
    deadline = time.perf_counter_ns() - load.timeout_ns
    for slot in slots:
        if slot.start_ns and slot.start_ns < deadline and not slot.timed_out and slot.task is not None:
            slot.timed_out = True
            slot.task.cancel()
    if loop.time() >= progress_at[0]:
        progress_at[0] = loop.time() + _PROGRESS_INTERVAL_S
        _progress(load)
    loop.call_later(every_s, _tick, load, slots, every_s, progress_at)


async def _run(load: _Load) -> None:
    loop = asyncio.get_running_loop()
    slots = [_Slot() for _ in range(min(load.spec.concurrency, load.total))]
    every_s = min(_PROGRESS_INTERVAL_S, max(0.001, load.spec.timeout_s / 10))  # timers count whole ms
    load.origin_ns = time.perf_counter_ns()
    for slot in slots:
        slot.task = loop.create_task(_client(load, slot))
    ticker = loop.call_later(every_s, _tick, load, slots, every_s, [0.0])
    try:
        await asyncio.gather(*(slot.task for slot in slots if slot.task is not None))
    finally:
        ticker.cancel()
    _progress(load)


def _progress(load: _Load) -> None:
    # One write of a short line: atomic on a pipe, so it never interleaves with anything else.
    os.write(2, f"progress {load.finished} {load.total}\n".encode())


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
    # What exists now (interpreter, imports) never becomes garbage: keep full collections from walking it
    # mid-run, where their pauses would land in the latencies.
    gc.freeze()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run(load))
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
