"""Where a started server's stdout and stderr go, and what arrived there.

A container runtime collects a service's output through a pipe it drains; that is the default here
(``pipe``). The other kinds change what a ``write()`` costs the server: a regular file (page cache), the
null device, a pseudo-terminal (what a person watching sees), or a pipe read slowly (a log shipper that
falls behind — the writer blocks once the pipe's 64 KiB fill up).
"""

from __future__ import annotations

import collections
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from iolab.errors import UsageError

SINK_KINDS = ("pipe", "file", "null", "tty", "slow")
_TAIL_LINES = 20
_READ_SIZE = 65536


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

    def __init__(self) -> None:
        self._bytes = 0
        self._lines = 0
        self._tail: collections.deque[bytes] = collections.deque(maxlen=_TAIL_LINES)
        self._partial = b""
        self._lock = threading.Lock()
        self._closed = False

    def child_fd(self) -> int:
        raise NotImplementedError

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
        self._thread = threading.Thread(target=self._drain, name="iolab-sink", daemon=True)

    def child_fd(self) -> int:
        assert self._write_fd is not None
        return self._write_fd

    def after_spawn(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        self._thread.start()

    def _drain(self) -> None:
        # The slow sink reads a fixed chunk per tick: 4 KiB every tick gives the rate asked for.
        chunk = _READ_SIZE if self._rate is None else 4096
        tick = 0.0 if self._rate is None else chunk / self._rate
        while True:
            try:
                data = os.read(self._read_fd, chunk)
            except OSError:  # EIO on a pty once every writer has closed it
                break
            if not data:
                break
            self._account(data)
            if tick:
                time.sleep(tick)

    def close(self) -> SinkCounts:
        if self._closed:
            return self.counts()
        self._closed = True
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


class PipeSink(_DrainedSink):
    kind = "pipe"

    def __init__(self) -> None:
        r, w = os.pipe()
        super().__init__(r, w)


class SlowSink(_DrainedSink):
    kind = "slow"

    def __init__(self, rate_bytes_per_s: int) -> None:
        r, w = os.pipe()
        super().__init__(r, w, rate_bytes_per_s)


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
