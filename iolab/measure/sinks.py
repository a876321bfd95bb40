"""Where a started server's stdout and stderr go, and what arrived there.

A container runtime collects a service's output through a pipe it drains; that is the default here
(``pipe``). The other kinds change what a ``write()`` costs the server: a regular file (page cache), the
null device, a pseudo-terminal (what a person watching sees), or a pipe read slowly (a log shipper that
falls behind — the writer blocks once the pipe's 64 KiB fill up).
"""

from __future__ import annotations

import collections
import fcntl
import os
import struct
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iolab.errors import UsageError

SINK_KINDS = ("pipe", "file", "null", "tty", "slow")
_TAIL_LINES = 20
_READ_SIZE = 65536
# Linux keeps a pipe's data in pages: a writer blocked on a full pipe goes on only when a whole page
# has been read out of it.
PIPE_PAGE = 4096
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)  # Python ≥ 3.10 names it; 1032 on Linux
# The server's output is stuck when, for this long, its pipe stayed full and less than a page was read
# from it: every thread of the server that logs is then blocked in write(). 10 s: longer than any pause
# of a sink that drains (a rotating log shipper, a GC pause of a reader), far shorter than the 30 s
# request timeout after which the run would otherwise end with nothing but timeouts.
SINK_STALL_S = 10.0


@dataclass(frozen=True)
class SinkCounts:
    bytes: int
    lines: int
    tail: tuple[str, ...]


def parse_rate(text: str) -> int:
    """'400KB/s', '1MB/s', '4096' → bytes per second (K = 1000, Ki = 1024, as `pv` reads them)."""
    s = text.strip().removesuffix("/s").strip()
    units = {"": 1, "B": 1, "KB": 1000, "K": 1000, "KIB": 1024, "MB": 1000**2, "M": 1000**2, "MIB": 1024**2}
    num = s.rstrip("KkMmIiBb")
    unit = s[len(num):].upper()
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"cannot read the rate {text!r} (e.g. 400KB/s)") from None
    if unit not in units or value <= 0:
        raise UsageError(f"cannot read the rate {text!r} (e.g. 400KB/s)")
    return int(value * units[unit])


class Sink:
    """Base: ``child_fd()`` is given to the server as fds 1 and 2; ``close()`` returns the counts."""

    kind = "pipe"
    # The last lines, for an error message; iolab micro counts only (less of iolab's CPU per byte).
    keep_tail = True

    def __init__(self) -> None:
        self._bytes = 0
        self._lines = 0
        self._tail: collections.deque[bytes] = collections.deque(maxlen=_TAIL_LINES)
        self._partial = b""
        self._lock = threading.Lock()
        self._closed = False

    def child_fd(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        """Start draining before the child is spawned (else after_spawn does): no thread start inside a
        measured wall time."""

    def after_spawn(self) -> None:
        """Close our copy of the child's end, start draining."""

    def counts(self) -> SinkCounts:
        with self._lock:
            tail = [*self._tail]
            if self._partial:
                tail.append(self._partial)
            return SinkCounts(self._bytes, self._lines,
                              tuple(t.decode("utf-8", "replace") for t in tail[-_TAIL_LINES:]))

    def close(self) -> SinkCounts:
        return self.counts()

    def _account(self, data: bytes) -> None:
        with self._lock:
            self._bytes += len(data)
            self._lines += data.count(b"\n")
            if not self.keep_tail:
                return
            chunk = self._partial + data
            *full, self._partial = chunk.split(b"\n")
            self._tail.extend(full[-_TAIL_LINES:])
            if len(self._partial) > 4096:  # a line that never ends must not grow without bound
                self._partial = self._partial[-4096:]


class _DrainedSink(Sink):
    """A reader thread drains ``self._read_fd`` and accounts for every byte."""

    def __init__(self, read_fd: int, write_fd: int, rate_bytes_per_s: int | None = None) -> None:
        super().__init__()
        self._read_fd = read_fd
        self._write_fd: int | None = write_fd
        self._rate = rate_bytes_per_s
        self._stop = threading.Event()  # close(): stop throttling, drain what is left
        self._thread = threading.Thread(target=self._drain, name="iolab-sink", daemon=True)

    def child_fd(self) -> int:
        assert self._write_fd is not None
        return self._write_fd

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def after_spawn(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        self.start()

    def _drain(self) -> None:
        # The slow sink reads a fixed chunk per tick, at most 4 KiB and at least ten ticks a second where
        # the rate allows it (1 B/s reads a byte a second, not 4 KiB at once every 68 minutes).
        chunk = _READ_SIZE if self._rate is None else max(1, min(PIPE_PAGE, self._rate // 10))
        tick = 0.0 if self._rate is None else chunk / self._rate
        while True:
            try:
                data = os.read(self._read_fd, _READ_SIZE if self._stop.is_set() else chunk)
            except OSError:  # EIO on a pty once every writer has closed it
                break
            if not data:
                break
            self._account(data)
            if tick and not self._stop.is_set():
                self._stop.wait(tick)

    def backlog(self) -> tuple[int, int] | None:
        """(bytes in the pipe not read yet, the pipe's capacity); None for a tty or once closed."""
        if self._closed or self.kind == "tty":
            return None
        try:
            unread = struct.unpack("i", fcntl.ioctl(self._read_fd, termios.FIONREAD, b"\0" * 4))[0]
            capacity = fcntl.fcntl(self._read_fd, _F_GETPIPE_SZ)
        except OSError:
            return None
        return int(unread), int(capacity)

    def close(self) -> SinkCounts:
        if self._closed:
            return self.counts()
        self._closed = True
        self._stop.set()
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        if self._thread.is_alive():
            # Every writer is gone once the server's group is dead, so EOF comes; the timeout guards
            # against a grandchild that escaped the group and still holds the pipe.
            self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            os.close(self._read_fd)
        return self.counts()


class StallDetector:
    """Pure (fed its clock): is the sink stuck? True once the pipe has stayed full for ``limit_s`` while
    less than a page (``PIPE_PAGE``) was read out of it. "Full" = within two pages of its capacity: the
    page being read and the page being appended to may each be partly empty while the writer waits."""

    def __init__(self, limit_s: float = SINK_STALL_S) -> None:
        self.limit_s = limit_s
        self._since: float | None = None
        self._read_then = 0

    def observe(self, t_s: float, unread: int, capacity: int, read_total: int) -> bool:
        if unread < capacity - 2 * PIPE_PAGE:
            self._since = None
            return False
        if self._since is None or read_total - self._read_then >= PIPE_PAGE:
            self._since, self._read_then = t_s, read_total  # (again) full, or a page went: a new window
            return False
        return t_s - self._since >= self.limit_s


class SinkWatch:
    """While a server runs (a context manager around its load), watches its drained sink on a thread;
    when the sink stalls (``StallDetector``) it calls ``on_stall(message)`` once and stops watching.
    For sinks without a pipe to read (file, null, tty) it does nothing."""

    def __init__(self, sink: Sink, on_stall: Callable[[str], None], limit_s: float = SINK_STALL_S,
                 poll_s: float = 0.25) -> None:
        self.sink = sink
        self.on_stall = on_stall
        self.detector = StallDetector(limit_s)
        self.poll_s = poll_s
        self.stalled: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="iolab-sink-watch", daemon=True)

    def __enter__(self) -> SinkWatch:
        if isinstance(self.sink, _DrainedSink) and self.sink.backlog() is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        assert isinstance(self.sink, _DrainedSink)
        while not self._done.wait(self.poll_s):
            backlog = self.sink.backlog()
            if backlog is None:
                return
            unread, capacity = backlog
            if self.detector.observe(time.monotonic(), unread, capacity, self.sink.counts().bytes):
                self.stalled = stall_message(self.sink, self.detector.limit_s, unread, capacity)
                self.on_stall(self.stalled)
                return


def stall_message(sink: Sink, limit_s: float, unread: int, capacity: int) -> str:
    rate = getattr(sink, "_rate", None)
    what = f"--stdout slow at {rate:,} B/s" if sink.kind == "slow" and rate else f"--stdout {sink.kind}"
    return (f"the server's stdout sink ({what}) made no progress for {limit_s:g} s: its pipe stayed full "
            f"({unread:,} of {capacity:,} bytes unread) and less than {PIPE_PAGE:,} bytes were read from it, "
            "so the server was blocked writing its log")


class PipeSink(_DrainedSink):
    kind = "pipe"

    def __init__(self, rate_bytes_per_s: int | None = None) -> None:
        r, w = os.pipe()
        super().__init__(r, w, rate_bytes_per_s)


class SlowSink(PipeSink):
    """A pipe read at ``rate_bytes_per_s``."""

    kind = "slow"

    def __init__(self, rate_bytes_per_s: int) -> None:
        super().__init__(rate_bytes_per_s)


class TtySink(_DrainedSink):
    kind = "tty"

    def __init__(self) -> None:
        master, slave = os.openpty()
        super().__init__(master, slave)


class _FdSink(Sink):
    """The child writes straight into a descriptor we opened (a file, /dev/null): nothing to drain."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd: int | None = fd

    def child_fd(self) -> int:
        assert self._fd is not None
        return self._fd

    def after_spawn(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FileSink(_FdSink):
    kind = "file"

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            fd, name = tempfile.mkstemp(prefix="iolab-stdout-", suffix=".log")
            self.path = Path(name)
            self._temporary = True
        else:
            self.path = path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            self._temporary = False
        super().__init__(fd)

    def close(self) -> SinkCounts:
        if self._closed:
            return self.counts()
        self._closed = True
        self.after_spawn()
        with open(self.path, "rb") as fh:
            while data := fh.read(_READ_SIZE):
                self._account(data)
        if self._temporary:
            self.path.unlink(missing_ok=True)
        return self.counts()


class NullSink(_FdSink):
    """/dev/null: nothing can be counted; bytes come from the probe's wchar instead."""

    kind = "null"

    def __init__(self) -> None:
        super().__init__(os.open(os.devnull, os.O_WRONLY))

    def close(self) -> SinkCounts:
        self.after_spawn()
        return self.counts()


def make_sink(kind: str, *, rate_bytes_per_s: int = 400_000, file_path: Path | None = None) -> Sink:
    if kind == "pipe":
        return PipeSink()
    if kind == "file":
        return FileSink(file_path)
    if kind == "null":
        return NullSink()
    if kind == "tty":
        return TtySink()
    if kind == "slow":
        return SlowSink(rate_bytes_per_s)
    raise UsageError(f"unknown --stdout {kind!r} (one of: {', '.join(SINK_KINDS)})")


def python_buffering(kind: str, unbuffered: bool) -> str:
    """How CPython buffers sys.stdout for this sink: unbuffered with -u/PYTHONUNBUFFERED, line-buffered on
    a tty, block-buffered on a pipe or a file (io.TextIOWrapper's rules)."""
    if unbuffered:
        return "unbuffered"
    return "line" if kind == "tty" else "block"
