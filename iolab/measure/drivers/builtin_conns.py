"""The builtin driver's connections: HTTP/1.1 over asyncio protocols, driven by callbacks alone.

No task, future or coroutine wakes up per request: the callback that completes a response is the one that
sends the next request (closed loop) or hands the connection back to the schedule (open loop). That is
most of what an asyncio client would otherwise spend per request. A task runs only to open a connection.

* ``run_closed``: ``width`` connections, each sending its next request as soon as the last one is answered
  (wrk; with keep-alive off every request opens a connection of its own, as ab does).
* ``OpenLoop``: requests due at fixed times (or Poisson arrivals) whatever the server does; a request due
  while every connection is busy waits for the first one free, and its latency counts from its due time.
  The schedule is kept by a ``PreciseTimer`` (a timerfd), not by the loop's millisecond timers. Every
  connection is opened before the first request is due and they take requests in turn, as wrk2's do.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from iolab.measure.drivers.builtin_child import Load

perf_ns = time.perf_counter_ns

_HEAD_KEPT = 16384  # a longer head with no length is counted as cut short, not as complete
# A response whose length none of these headers gives ends at EOF (HTTP/1.0 style). Looked for in the
# bytes of the head only when a connection ends mid-message, instead of a Python callback per header.
_FRAMING = re.compile(rb"\r\n(?:content-length|transfer-encoding)[ \t]*:", re.IGNORECASE)


def _eof_delimited(head: bytes) -> bool:
    return _FRAMING.search(head) is None


class _Conn(asyncio.Protocol):
    """One connection: timestamps each chunk it reads, feeds it to httptools, counts its failures.

    Only ``on_message_complete`` is called back from the parser (status and keep-alive are asked there:
    llhttp clears the message's flags only after that callback returns), so a response costs two Python
    calls. ``head`` keeps the start of the response in progress (its first chunk, and more up to
    _HEAD_KEPT) for the one case the parser cannot finish on its own: a body that ends with the connection.
    ``start`` is when the request in flight was sent (before its connect, on a new connection); 0: none.
    """

    __slots__ = ("load", "parser", "transport", "received", "head", "rx_ns", "start")

    def __init__(self, load: Load) -> None:
        self.load = load
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.received = self.rx_ns = self.start = 0  # received: bytes of the response in progress
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.load.conns.add(self)

    def data_received(self, data: bytes) -> None:
        # When the bytes (the last ones, if this chunk completes the response) reached the driver: taken
        # before parsing, so the parser's work and Python callbacks stay out of the latency.
        self.feed(data, perf_ns())

    def feed(self, data: bytes, rx_ns: int) -> None:
        self.rx_ns = rx_ns
        if not self.received:
            self.head = data  # no copy: the usual response is one chunk
        elif len(self.head) < _HEAD_KEPT:
            self.head += data
        self.received += len(data)
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserError as exc:
            self.load.same_response = None  # it may have been the start of what the parser could not read
            self.fail("other_errors", f"malformed response: {exc}")
            self.transport.abort()  # type: ignore[union-attr]

    def fail(self, kind: str, message: str) -> None:
        """The request in flight failed (counted once, however many ways the connection then ends)."""
        if self.start:
            self.start = 0
            self.load.error(kind, message)

    def connection_lost(self, exc: Exception | None) -> None:
        load = self.load
        load.conns.discard(self)
        end = self.head.find(b"\r\n\r\n")
        if self.start and exc is None and self.received and end >= 0 and _eof_delimited(self.head[: end + 2]):
            # A whole head and no length: the body ran to the end of the connection (HTTP/1.0 style).
            self.rx_ns = perf_ns()
            self.complete_at_eof(self.parser.get_status_code())  # type: ignore[union-attr]
        elif self.received:
            self.fail("other_errors", f"connection closed mid-response: {exc or 'EOF'}")
        else:
            self.fail("connect_errors", f"connection closed before a response: {exc or 'EOF'}")
        self.parser = None  # break the parser <-> protocol cycle so refcounting frees both at once
        self.closed()

    def complete_at_eof(self, status: int) -> None:
        raise NotImplementedError

    def closed(self) -> None:
        raise NotImplementedError


# -------------------------------------------------------------------------------------- closed loop


class ClosedConn(_Conn):
    """Sends its next request from the callback that completes the last one."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        rx_ns = perf_ns()
        load = self.load
        # A response byte for byte the same as the last one the parser found complete in a single chunk,
        # arriving where a response starts: the parser would go through the same states to the same end
        # (same status, same keep-alive, back at a message's start), so it is not run again. A static file
        # or a fixed reply changes only with its Date header, once a second; this halves the driver's
        # Python time per response (docs/drivers.md).
        if data == load.same_response and not self.received:
            self.complete(rx_ns, len(data), load.same_status, True)
        else:
            self.feed(data, rx_ns)

    def on_message_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()  # type: ignore[union-attr]
        keep = parser.should_keep_alive()  # type: ignore[union-attr]
        load = self.load
        if keep and self.received == len(self.head):  # the whole response came in one chunk
            load.same_response, load.same_status = self.head, status
        self.complete(self.rx_ns, self.received, status, keep)

    def complete(self, done: int, nbytes: int, status: int, keep: bool) -> None:
        # The hot path of a throughput run: Load.response() and Load.more() written out inline, as every
        # Python call and attribute lookup here is paid once per request.
        load = self.load
        load.latencies_us.append((done - self.start) // 1000)
        load.timeline_ms.append((done - load.first_ns) // 1_000_000)  # latency second by second
        load.statuses.append(status)
        load.last_ns = done
        load.bytes_received += nbytes
        self.start = self.received = 0
        if keep and (done < load.end_ns if load.end_ns else load.claimed < load.total):
            load.claimed += 1
            self.start = perf_ns()
            self.transport.write(load.request)  # type: ignore[union-attr]
        else:
            self.transport.close()  # type: ignore[union-attr]

    def complete_at_eof(self, status: int) -> None:
        self.load.response(status, self.received, self.rx_ns, (self.rx_ns - self.start) // 1000)
        self.start = 0

    def closed(self) -> None:
        load = self.load
        if load.more(perf_ns()):
            asyncio.get_running_loop().create_task(_connect_closed(load))
        else:
            _slot_done(load)


def _slot_done(load: Load) -> None:
    load.live -= 1
    if load.live == 0 and load.done is not None and not load.done.done():
        load.done.set_result(None)


async def _connect_closed(load: Load) -> None:
    """Opens a connection and sends its first request; after a failed connect, tries the next request."""
    loop = asyncio.get_running_loop()
    while load.more(perf_ns()):
        load.claimed += 1
        start = perf_ns()
        if not load.first_ns:
            load.first_ns = start
        try:
            async with asyncio.timeout(load.spec.timeout_s):
                transport, conn = await loop.create_connection(lambda: ClosedConn(load), load.host, load.port)
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


async def run_closed(load: Load, width: int) -> None:
    loop = asyncio.get_running_loop()
    load.done = loop.create_future()
    load.live = width
    for _ in range(width):
        loop.create_task(_connect_closed(load))
    await load.done


# ---------------------------------------------------------------------------------------- open loop


class PacedConn(_Conn):
    """A connection of the open loop: reports each response to the schedule, which decides what is next."""

    __slots__ = ("schedule", "due")

    def __init__(self, load: Load, schedule: OpenLoop) -> None:
        super().__init__(load)
        self.schedule = schedule
        self.due = 0  # when the request in flight was due (or sent, if it left early)

    def on_message_complete(self) -> None:
        parser = self.parser
        self.record(self.rx_ns, parser.get_status_code())  # type: ignore[union-attr]
        if parser.should_keep_alive():  # type: ignore[union-attr]
            self.schedule.free(self)
        else:
            self.transport.close()  # type: ignore[union-attr]

    def record(self, done: int, status: int) -> None:
        load = self.load
        load.response(status, self.received, done, (done - self.due) // 1000)
        load.uncorrected_us.append((done - self.start) // 1000)
        load.timeline_ms.append((done - load.origin_ns) // 1_000_000)
        self.start = self.received = 0

    def complete_at_eof(self, status: int) -> None:
        self.record(self.rx_ns, status)

    def closed(self) -> None:
        self.schedule.lost(self)


class OpenLoop:
    """The schedule: sends each request at its due time on the connection idle longest, opening one when
    none is (the server closed some, or keep-alive is off), up to ``concurrency`` at once.

    Connections take requests in turn, not the last one freed first: ``-c 50`` then means what wrk2 and
    the user mean, 50 connections sharing the load, and a round trip measured on a connection used every
    2 ms is not the one a server shows over 50 used in turn. Measured against nginx at 500 req/s, a
    connection reused at once (the old way, which kept one connection busy) made every round trip
    7–10 µs longer, for wrk (``-c 1``) and plain Python sockets alike: its p10 70–78 µs against 62–66 µs.
    """

    def __init__(self, load: Load, precise: bool = True) -> None:
        from iolab.measure.drivers.pacer import PreciseTimer  # ctypes: only the open loop pays for its import

        self.load = load
        self.loop = asyncio.get_running_loop()
        self.timer = PreciseTimer(self.loop, self.tick, precise=precise)
        self.lead_ns = load.lead_ns(self.timer.precise)
        self.idle: deque[PacedConn] = deque()  # longest idle first
        self.waiting: deque[int] = deque()  # due times of requests that found every connection busy
        self.open = 0  # connections open or opening: at most spec.concurrency
        self.next_due = 0
        self.done: asyncio.Future[None] = self.loop.create_future()

    async def connect_all(self) -> None:
        """Opens the connections before the clock starts, so no request's latency includes a connect that
        wrk would have made beforehand. One that cannot open is left to the schedule: each request that
        finds no connection tries again, and its failure is counted then."""
        load = self.load
        count = min(load.spec.concurrency, load.total)
        self.open += count  # open or opening, as in connect(); lost() counts one the server closes early
        opened = await asyncio.gather(*(self._dial() for _ in range(count)), return_exceptions=True)
        for conn in opened:
            if isinstance(conn, PacedConn):
                if not conn.transport.is_closing():  # type: ignore[union-attr]
                    self.idle.append(conn)
            elif isinstance(conn, (TimeoutError, OSError)):
                self.open -= 1
            else:
                raise conn

    async def _dial(self) -> PacedConn:
        load = self.load
        async with asyncio.timeout(load.spec.timeout_s):
            _, conn = await self.loop.create_connection(lambda: PacedConn(load, self), load.host, load.port)
        return conn

    async def run(self) -> str:
        """Runs the schedule to its end; returns the timer that kept it ("timerfd" or the loop's)."""
        if self.load.total:
            self.next_due = self.load.due(0)
            self.tick()
            await self.done
        return "timerfd" if self.timer.precise else "event loop (1 ms)"

    def tick(self) -> None:
        """Sends every request due by now (and up to lead_ns ahead); arms the timer for the next one."""
        load = self.load
        limit = perf_ns() + self.lead_ns
        due_now = []
        while load.claimed < load.total and self.next_due <= limit:
            due_now.append(self.next_due)
            load.claimed += 1
            if load.claimed < load.total:
                self.next_due = load.due(load.claimed)
        # The timer first: after the sends the driver has nothing left to do but wait for the responses,
        # and work it does while they are on their way lengthens the round trip it measures (seen: ~10 µs).
        if load.claimed < load.total:
            self.timer.arm(self.next_due - self.lead_ns)
        for due in due_now:
            if self.idle:
                self.send(self.idle.popleft(), due, False)
            elif self.open < load.spec.concurrency:
                self.connect(due)
            else:
                self.waiting.append(due)
        self.check_done()

    def send(self, conn: PacedConn, due: int, waited: bool, start: int = 0) -> None:
        start = start or perf_ns()
        conn.start = start
        conn.due = self.load.sent(due, start, waited)
        conn.transport.write(self.load.request)  # type: ignore[union-attr]

    def free(self, conn: PacedConn) -> None:
        if self.waiting:
            self.send(conn, self.waiting.popleft(), True)
        else:
            self.idle.append(conn)
        self.check_done()

    def lost(self, conn: PacedConn) -> None:
        self.open -= 1
        if conn in self.idle:  # the server closed a kept-alive connection while it was idle (O(n), rare)
            self.idle.remove(conn)
        if self.waiting:
            self.connect(self.waiting.popleft(), waited=True)
        self.check_done()

    def connect(self, due: int, waited: bool = False) -> None:
        """Opens a connection for the request due at ``due``: its latency includes the connect."""
        self.open += 1
        self.loop.create_task(self._connect(due, waited, perf_ns()))

    async def _connect(self, due: int, waited: bool, start: int) -> None:
        load = self.load
        try:
            conn = await self._dial()
        except (TimeoutError, OSError) as exc:
            load.sent(due, start, waited)
            if isinstance(exc, TimeoutError):
                load.error("timeouts", f"no connection within {load.spec.timeout_s:g} s")
            else:
                load.error("connect_errors", f"connect: {exc.strerror or exc}")
            self.open -= 1
            if self.waiting:
                self.connect(self.waiting.popleft(), waited=True)
            self.check_done()
            return
        self.send(conn, due, waited, start)

    def check_done(self) -> None:
        load = self.load
        if load.claimed >= load.total and load.finished >= load.total and not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        self.timer.close()
        for conn in self.idle:
            conn.transport.close()  # type: ignore[union-attr]
