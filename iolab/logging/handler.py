"""BatchHandler: format on the caller's thread, write in batches on one writer thread.

The caller's path is: format the record, encode it, `list.append` the bytes, add their length to a
counter, compare the counter with `_limit`. No lock, no syscall, no thread wake-up per record. Everything
rare (a full batch, a full budget, an idle writer, a fork, a closed handler) is folded into that one
comparison by lowering `_limit`, and handled in `_slow` under a real lock.

Why no lock on the common path: `list.append` is atomic under the GIL (the Python FAQ lists it), and the
writer removes records only from the front (`del buf[:n]`, also atomic) while holding `_lock`, so a
concurrent append can neither be lost nor taken twice. An uncontended `with lock:` costs ~0.2 us here,
as much as everything else we add to the stdlib Logger's own cost. The byte counter `_in` is updated
without the lock, so a thread switch inside `self._in = n` could lose an increment; the writer
recomputes it from the buffer whenever the buffer is small, so the error stays at a few records.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Literal

from iolab.logging import _sink

Policy = Literal["block", "drop_newest", "drop_oldest"]
POLICIES: tuple[str, ...] = ("block", "drop_newest", "drop_oldest")

# The writer takes at most this many records per syscall batch so that its GIL-holding work (slicing,
# joining) stays well under a millisecond even when a slow sink has let a large backlog build up.
_TAKE_RECORDS = 4096
_FastPlan = tuple["str | None", bool, logging.Formatter]


def _fast_plan(formatter: logging.Formatter | None) -> _FastPlan | None:
    """Precompute what Formatter.format would do, for the exact stdlib Formatter with %-style.

    Formatter.format spends about half its time re-deciding per record whether the format uses the time
    and dispatching through three methods; for the plain stdlib class the answer never changes, so we
    decide once. Subclasses (uvicorn's, JSON formatters...) take the ordinary `self.format` path.
    """
    f = formatter if formatter is not None else getattr(logging, "_defaultFormatter", None)
    if f is None or type(f) is not logging.Formatter:
        return None
    style = getattr(f, "_style", None)
    if type(style) is not logging.PercentStyle or getattr(style, "_defaults", None):
        return None
    fmt = getattr(style, "_fmt", None)
    if not isinstance(fmt, str):
        return None
    return (None if fmt == "%(message)s" else fmt), f.usesTime(), f


class BatchHandler(logging.Handler):
    """A drop-in `logging.Handler` that never makes a syscall on the caller's thread.

    stream: a file object or a file descriptor (default sys.stderr); or filename= to open (and own) a file.
    deadline: seconds a record may wait in memory before the writer sends it (output latency bound).
    batch_bytes: once this much is buffered, the writer is woken without waiting for the deadline.
    max_bytes: memory budget for formatted records not yet written (the batch being written included).
    policy: what a full budget does: "block" (the caller waits up to block_timeout for room, then the
        record is dropped), "drop_newest" (drop the incoming record) or "drop_oldest" (drop the oldest
        buffered records, at least 1/16 of the budget at a time).
    flush_timeout: flush()/close()/exit give up after this many seconds without progress from the sink.
    defer: True makes this a DeferredHandler: the caller only captures, the writer formats (see
        docs/logging.md, "defer=True"); its budget is then max_records/batch_records, not bytes.
    """

    terminator = "\n"

    def __new__(cls, *args: Any, defer: bool = False, **kwargs: Any) -> BatchHandler:
        # BatchHandler(defer=True), also from dictConfig ("defer": True), is a DeferredHandler.
        if defer and cls is BatchHandler:
            from iolab.logging._deferred import DeferredHandler  # late: it imports this module

            return super().__new__(DeferredHandler)
        return super().__new__(cls)

    def __init__(
        self,
        stream: Any = None,
        *,
        defer: bool = False,
        filename: str | os.PathLike[str] | None = None,
        mode: str = "a",
        level: int | str = logging.NOTSET,
        deadline: float = 0.05,
        batch_bytes: int = 1024 * 1024,
        max_bytes: int = 4 * 1024 * 1024,
        policy: Policy | str = "block",
        block_timeout: float = 1.0,
        flush_timeout: float = 5.0,
        encoding: str = "utf-8",
        errors: str = "backslashreplace",
    ) -> None:
        if defer and self._units_are_bytes:
            raise ValueError(f"defer=True makes a DeferredHandler; {type(self).__name__} is a subclass of "
                             "BatchHandler that cannot defer")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        if deadline <= 0 or batch_bytes <= 0 or max_bytes <= 0:
            raise ValueError("deadline, batch_bytes and max_bytes must be positive")
        self._plan: _FastPlan | None = None
        self._formatter: logging.Formatter | None = None
        super().__init__(level)
        self.deadline = float(deadline)
        self.batch_bytes = int(batch_bytes)
        self.max_bytes = int(max_bytes)
        self.policy = policy
        self.block_timeout = float(block_timeout)
        self.flush_timeout = float(flush_timeout)
        self.encoding = encoding
        self.errors = errors
        self._utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        self._fd, self._stream, self._owns_fd = _sink.resolve(stream, filename, mode)
        self._closed = False
        self._reset_state()
        from iolab.logging import _lifecycle  # late: _lifecycle imports this module

        _lifecycle.register(self)

    # The formatter is a property so that every way of setting it (setFormatter, dictConfig, plain
    # assignment) refreshes the precomputed fast path.
    @property  # type: ignore[override]
    def formatter(self) -> logging.Formatter | None:
        return self._formatter

    @formatter.setter
    def formatter(self, value: logging.Formatter | None) -> None:
        self._formatter = value
        self._plan = _fast_plan(value)

    def _reset_state(self) -> None:
        """Fresh lock, buffer, counters and no writer: at creation and in a forked child."""
        self._lock = threading.RLock()  # re-entrant: a SIGTERM handler may flush while we hold it
        self._wake = threading.Condition(self._lock)  # the writer waits here
        self._space = threading.Condition(self._lock)  # blocked callers and flush() wait here
        self._buf: list[bytes] = []
        self._in = 0  # bytes ever appended (updated without the lock, see the module docstring)
        self._out = 0  # bytes ever written or discarded (lock held)
        self._inflight = 0  # bytes taken by the writer and not yet written
        self._written = 0
        self._gave_up_at = -1  # _out when a flush last gave up on a sink that did not move
        self._writer: threading.Thread | None = None
        self._need_writer = True
        self._idle = False
        self._signalled = False  # the writer was told a full batch is waiting
        self._urgent = False  # flush(), a blocked caller or close() wants everything written now
        self._behind = False  # the last take hit _TAKE_RECORDS: the rest is already due, do not wait
        self._closing = False
        self._stalled = False  # "block" timed out: drop at once until the sink moves again
        self._dropped = 0
        self._unreported_new = 0  # dropped incoming records: the notice goes where they would have been
        self._unreported_old = 0  # dropped buffered records: the notice heads the next batch
        self._reported_error = False
        self._peak = 0
        self._syscalls = 0
        self._batches = 0
        self._limit = -1

    # ------------------------------------------------------------------ caller side
    def handle(self, record: logging.LogRecord) -> Any:
        """Filter, format and buffer the record.

        Overrides Handler.handle to skip its per-record acquire()/release() of the handler's I/O lock:
        nothing here does I/O, and the buffer is safe without it (see the module docstring).
        """
        if self.filters:
            rv = self.filter(record)
            if not rv:
                return rv
            if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a replacement
                record = rv
        try:
            plan = self._plan
            if plan is not None:
                fmt, uses_time, f = plan
                msg = record.message = record.getMessage()
                if uses_time:
                    record.asctime = f.formatTime(record, f.datefmt)
                if record.exc_info or record.exc_text or record.stack_info:
                    msg = f.format(record)
                elif fmt is not None:
                    try:
                        msg = fmt % record.__dict__
                    except KeyError:
                        msg = f.format(record)  # raises the stdlib's own ValueError
            else:
                msg = self.format(record)
            msg += self.terminator
            try:
                # str.encode() without arguments takes CPython's UTF-8 fast path; lone surrogates and
                # other encodings go the long way.
                data = msg.encode() if self._utf8 else msg.encode(self.encoding, self.errors)
            except UnicodeEncodeError:
                data = msg.encode(self.encoding, self.errors)
            k = len(data)
            self._buf.append(data)
            n = self._in + k
            self._in = n
            if n > self._limit:
                self._slow(data)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """For code that calls emit() directly; the logging machinery goes through handle()."""
        try:
            data = (self.format(record) + self.terminator).encode(self.encoding, self.errors)
            self._buf.append(data)
            self._in += len(data)
            if self._in > self._limit:
                self._slow(data)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    # ------------------------------------------------------------------ units of the budget
    # The buffer holds items whose size counts against the budget. Here the items are formatted bytes
    # and the unit is the byte; the deferred handler (defer=True, _deferred.py) buffers captured records
    # and counts records. Everything below the caller's fast path is written in these terms.
    _units_are_bytes = True
    _unit_name = "byte"

    @property
    def _max_units(self) -> int:
        return self.max_bytes

    @property
    def _batch_units(self) -> int:
        return self.batch_bytes

    def _size(self, item: Any) -> int:
        return len(item)

    def _render(self, parts: list[Any]) -> bytes:
        """The bytes of a batch taken from the buffer (the writer calls it without the lock)."""
        return b"".join(parts)

    def _slow(self, data: Any) -> None:
        """`data` is already in the buffer and the fast path's one comparison failed: decide properly."""
        with self._lock:
            self._peak = max(self._peak, self._in - self._out)
            if self._closed or (self._need_writer and not self._start_writer()):
                if self._unlink(data):
                    if self._gave_up_at == self._out or (self._writer is not None and self._writer.is_alive()):
                        # A stuck sink, or a writer still finishing: do not block or reorder; count it.
                        self._dropped += 1
                        self._unreported_old += 1
                    else:
                        self._write_now(data)
                return
            if self._idle:
                self._idle = False
                self._wake.notify()
            give_up_at: float | None = None
            # A record larger than the whole budget still goes out, alone, when nothing else is pending.
            size = self._size(data)
            alone = size if size > self._max_units else 0
            while True:
                used = self._in - self._out
                if used <= self._max_units or used <= alone:
                    break
                if self.policy == "drop_oldest":
                    if self._drop_oldest():
                        continue
                    break  # only the batch being written is older: keep the newest record anyway
                if self.policy == "block" and not self._stalled:
                    now = time.monotonic()
                    give_up_at = now + self.block_timeout if give_up_at is None else give_up_at
                    if now < give_up_at:
                        self._urgent = True
                        self._wake.notify()
                        self._space.wait(give_up_at - now)
                        continue
                    # No room within block_timeout: drop at once until the sink moves again, so a dead
                    # sink costs each later call nothing instead of block_timeout.
                    self._stalled = True
                if self._unlink(data):
                    self._dropped += 1
                    self._unreported_new += 1
                    self._set_limit()
                    return
                break  # the writer took it meanwhile: it is on its way, nothing to drop
            if self._unreported_new:  # the first record accepted after drops carries the notice
                self._insert_before(data, self._notice(self._unreported_new))
                self._unreported_new = 0
            used = self._in - self._out
            self._peak = max(self._peak, used)
            if not self._signalled and used - self._inflight >= self._batch_units:
                self._signalled = True
                self._wake.notify()
            self._set_limit()

    def _unlink(self, data: Any) -> bool:
        """Blank out `data` if the writer has not taken it yet. Lock held, so the writer cannot take now.

        Other threads may append after it concurrently, so we only ever overwrite a slot (atomic) and
        never shift the list. Returns False when the writer already took it.
        """
        buf = self._buf
        for i in range(len(buf) - 1, max(-1, len(buf) - 1025), -1):
            if buf[i] is data:
                buf[i] = b""
                self._out += self._size(data)
                return True
        return False

    def _insert_before(self, data: Any, notice: bytes) -> None:
        buf = self._buf
        for i in range(len(buf) - 1, max(-1, len(buf) - 1025), -1):
            if buf[i] is data:
                buf.insert(i, notice)
                break
        else:
            buf.append(notice)
        self._in += self._size(notice)

    def _drop_oldest(self) -> bool:
        """Drop from the front, at least 1/16 of the budget, so overflow handling is amortised.

        Returns False when only the newest record is left to drop (the rest is being written).
        """
        buf = self._buf
        need = max(self._in - self._out - self._max_units, self._max_units // 16)
        freed = j = records = 0
        last = len(buf) - 1  # the newest record stays
        while j < last and freed < need:
            size = self._size(buf[j])
            freed += size
            records += size > 0  # slots blanked by _unlink were counted already
            j += 1
        del buf[:j]
        self._peak = max(self._peak, self._in - self._out)
        self._out += freed
        self._dropped += records
        self._unreported_old += records
        return j > 0

    def _set_limit(self) -> None:
        """Set the fast path's threshold: -1 whenever the next record must take the slow path."""
        if self._idle or self._need_writer or self._closed or self._stalled or self._unreported_new:
            self._limit = -1
        elif self._signalled:
            self._limit = self._out + self._max_units
        else:
            self._limit = self._out + min(self._max_units, self._inflight + self._batch_units)

    def _notice(self, n: int) -> bytes:
        text = (f"… {n} records dropped (iolab.logging: {self._max_units}-{self._unit_name} buffer full, "
                f"policy {self.policy}) …")
        return (text + self.terminator).encode(self.encoding, self.errors)

    def _start_writer(self) -> bool:
        """Start the writer thread (first record, or first record in a forked child). Lock held."""
        try:
            t = threading.Thread(target=self._run, name="iolab-log-writer", daemon=True)
            t.start()
        except RuntimeError:  # interpreter shutting down: the caller writes synchronously instead
            return False
        self._writer = t
        self._need_writer = False
        self._set_limit()
        return True

    # ------------------------------------------------------------------ writer side
    def _has_work(self) -> bool:
        late_notice = self._unreported_new and (self._urgent or self._closing)
        return bool(self._buf or self._unreported_old or late_notice)

    def _run(self) -> None:
        wake = self._wake
        with wake:
            while True:
                if not self._has_work():
                    if self._closing:
                        return
                    # Publish "idle" (limit -1) *before* the last look at the buffer: a caller that
                    # appends after that look then sees limit -1 and wakes us, so no record is stranded.
                    self._idle = True
                    self._set_limit()
                    if not self._has_work():
                        wake.wait()
                    self._idle = False
                    self._set_limit()
                    continue
                backlog = self._in - self._out - self._inflight >= self._batch_units
                if not (backlog or self._urgent or self._closing or self._behind):
                    wake.wait(self.deadline)  # let a batch accumulate; a full batch wakes us early
                self._write_some()

    def _take(self) -> tuple[list[Any], int, int]:
        """Move up to _TAKE_RECORDS items out of the buffer into one in-flight batch. Lock held.

        Returns the items (render them with _render, without the lock), how many of them are our own
        drop notices (not records), and the units they weigh.
        """
        buf = self._buf
        notices = 0
        n = min(len(buf), _TAKE_RECORDS)
        parts = buf[:n]
        del buf[:n]  # only the front: appends racing with us land after index n
        self._behind = n == _TAKE_RECORDS and bool(buf)
        if self._unreported_old:
            notice = self._notice(self._unreported_old)
            parts.insert(0, notice)
            self._in += self._size(notice)
            self._unreported_old = 0
            notices += 1
        if self._unreported_new and (self._urgent or self._closing):
            # No record came after the drops to carry the notice: it closes the batch instead.
            notice = self._notice(self._unreported_new)
            parts.append(notice)
            self._in += self._size(notice)
            self._unreported_new = 0
            notices += 1
        units = sum(map(self._size, parts))
        self._inflight = units
        if len(buf) < 256:
            # Repair any increment of _in lost to a thread switch (see the module docstring).
            self._in = self._out + self._inflight + sum(map(self._size, buf[:]))
        if self._in - self._out - self._inflight < self._batch_units:
            self._signalled = False
        if not buf:
            self._urgent = False
        self._batches += 1
        self._set_limit()
        return parts, notices, units

    def _write_some(self) -> None:
        """Take a batch, render and write it with the lock released. Lock held on entry and exit."""
        parts, notices, units = self._take()
        self._lock.release()
        try:
            self._write(self._render(parts), notices, units)
        finally:
            self._lock.acquire()
            self._inflight = 0
            self._set_limit()

    def _write_now(self, data: Any) -> None:
        """Synchronous write of a record on the calling thread (closed handler, no writer). Lock held."""
        units = self._size(data)
        self._in += units  # _unlink counted it as discarded; it is written after all
        self._inflight += units
        self._write(self._render([data]), 0, units)  # accounts for every unit, written or lost

    def _drain_here(self) -> None:
        """Write everything buffered on the calling thread, when there is no writer thread. Lock held."""
        while self._has_work():
            self._urgent = True
            parts, notices, units = self._take()
            try:
                if not self._write(self._render(parts), notices, units):
                    return
            finally:
                self._inflight = 0

    def _progress(self, units: int, nbytes: int = 0) -> None:
        """`units` left the in-flight batch (`nbytes` of them reached the sink): room for callers."""
        with self._lock:
            # The fast path appends without the lock and keeps no peak (it is the caller's cost); what it
            # buffered only leaves here, so the most ever held is read just before it does.
            self._peak = max(self._peak, self._in - self._out)
            self._inflight -= units
            self._out += units
            self._written += nbytes
            self._stalled = False
            self._set_limit()
            self._space.notify_all()

    def _progress_bytes(self, nbytes: int) -> None:
        """After each syscall. Bytes are the units here: memory is freed and callers released at once."""
        if self._units_are_bytes:
            self._progress(nbytes, nbytes)
            return
        with self._lock:  # records leave when their whole batch is written; this shows the sink moves
            self._written += nbytes
            self._stalled = False
            self._space.notify_all()

    def _write(self, data: bytes, notices: int = 0, units: int | None = None) -> bool:
        """Write a batch weighing `units`; on failure count the records lost (not our notices), return False.

        Every unit is accounted for by the time this returns (_progress), whether written or lost.
        """
        units = len(data) if units is None else units
        if not data:
            if units:
                self._progress(units)
            return True
        try:
            if self._fd is not None:
                self._syscalls += _sink.write_fd(self._fd, data, self._progress_bytes)
            elif self._stream is not None:
                self._syscalls += _sink.write_stream(self._stream, data, self.encoding, self.errors,
                                                     self._progress_bytes)
            else:
                raise _sink.SinkError(OSError("the handler is closed, and its file with it"), memoryview(data))
        except _sink.SinkError as exc:  # a broken sink must not kill the writer: count what it lost
            unwritten = bytes(exc.unwritten)
            # Notices sit at the ends of the batch; a lost notice is not a lost record. (A record with
            # embedded newlines counts once per line here: the count errs towards "more lost".)
            lost = max(0, unwritten.count(b"\n") - min(notices, 1 if len(unwritten) < len(data) else notices))
            if not self._reported_error and self._fd != 2 and sys.__stderr__ is not None:
                self._reported_error = True  # once per handler: the drop notices carry the counts
                try:
                    sys.__stderr__.write(f"iolab.logging: cannot write to the log sink ({exc.cause!r}); "
                                         "records are dropped and counted\n")
                    sys.__stderr__.flush()
                except Exception:
                    pass
            with self._lock:
                self._dropped += lost
                self._unreported_old += lost
                self._progress(len(unwritten) if self._units_are_bytes else units)
            return False
        if not self._units_are_bytes:
            self._progress(units)
        return True

    # ------------------------------------------------------------------ flush, close, fork
    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Write out everything buffered before this call; True when done.

        Gives up (returns False) once the sink has accepted nothing for `timeout` seconds
        (default flush_timeout), so a dead sink cannot hang the program's exit forever.
        """
        timeout = self.flush_timeout if timeout is None else timeout
        with self._lock:
            if self._out == self._gave_up_at:
                # An earlier flush already waited this long and the sink has not moved since: exit-time
                # flushes (atexit, logging.shutdown, close) must not each wait the full timeout again.
                timeout = min(timeout, 0.05)
            if self._need_writer or self._writer is None or not self._writer.is_alive():
                self._drain_here()  # no writer in this process (not started, forked, exiting)
                return True
            target = self._in
            self._urgent = True
            if self._idle:
                self._idle = False
            self._wake.notify()
            last, last_t = (self._out, self._written), time.monotonic()
            # _in is approximate (module docstring), so "nothing left at all" also ends the wait.
            while self._out < target and (self._has_work() or self._inflight):
                self._space.wait(min(timeout, 0.1))
                now = time.monotonic()
                if (self._out, self._written) != last:  # the sink moved: keep waiting
                    last, last_t = (self._out, self._written), now
                elif now - last_t >= timeout:
                    self._gave_up_at = self._out
                    return False
            return True

    def close(self) -> None:
        """Flush (bounded by flush_timeout), stop the writer, close the file if we opened it."""
        if self._closed:
            return
        self.flush()
        with self._lock:
            self._closing = True
            self._wake.notify()
            writer = self._writer
        stuck = self._gave_up_at == self._out
        if writer is not None and writer is not threading.current_thread() and writer.is_alive() and not stuck:
            writer.join(self.flush_timeout)
        with self._lock:
            self._closed = True
            self._set_limit()
            if writer is None or not writer.is_alive():
                self._drain_here()  # records that raced with close(); later ones are written synchronously
                if self._owns_fd and self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            # else: the writer is stuck in a write to a sink that stopped reading; it keeps the fd and
            # finishes what it holds if the sink ever moves. Nothing here may block on that sink.
        from iolab.logging import _lifecycle

        _lifecycle.unregister(self)
        super().close()

    def _after_fork_in_child(self) -> None:
        """The parent's writer writes what was buffered before the fork; the child starts empty."""
        closed = self._closed
        self._reset_state()
        self._closed = closed

    # ------------------------------------------------------------------ introspection
    @property
    def dropped(self) -> int:
        """Records dropped so far (full budget, or a sink that failed)."""
        return self._dropped

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "dropped": self._dropped,
                "pending_bytes": max(0, self._in - self._out),
                "peak_bytes": self._peak,
                "written_bytes": self._written,
                "write_syscalls": self._syscalls,
                "batches": self._batches,
            }

    def __repr__(self) -> str:
        where = f"fd={self._fd}" if self._fd is not None else repr(self._stream)
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {where} ({level}) policy={self.policy} max_bytes={self.max_bytes}>"
