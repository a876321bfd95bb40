"""Where the writer thread puts its batches: a file descriptor, or a stream object as a last resort.

Kept apart from the handler so the handler's buffering logic does not mix with syscall details.
"""

from __future__ import annotations

import errno
import os
import select
import sys
from collections.abc import Callable
from typing import Any

# One syscall carries at most this much: progress (memory freed, blocked callers released) stays visible
# every 256 KiB even when a slow reader makes each write take seconds.
MAX_SYSCALL_BYTES = 256 * 1024


def resolve(stream: Any, filename: str | os.PathLike[str] | None, mode: str) -> tuple[int | None, Any, bool]:
    """Return (fd or None, stream object, whether we own the fd)."""
    if filename is not None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        flags |= os.O_TRUNC if mode.startswith("w") else os.O_APPEND
        return os.open(filename, flags, 0o666), None, True
    if stream is None:
        stream = sys.stderr
    if isinstance(stream, int):
        return stream, None, False
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None, stream, False
    try:
        # Whatever the program already printed through this stream must come out before our first batch.
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass
    return fd, stream, False


def _wait_writable(fd: int, timeout_ms: int = 1000) -> None:
    """Someone else made the descriptor non-blocking: wait for room instead of changing its mode back."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    for _fd, events in poller.poll(timeout_ms):
        if events & select.POLLNVAL:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))


class SinkError(Exception):
    """A write failed; `unwritten` is what did not reach the sink."""

    def __init__(self, cause: BaseException, unwritten: memoryview) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.unwritten = unwritten


def write_fd(fd: int, data: bytes, progress: Callable[[int], None]) -> int:
    """Write all of data, MAX_SYSCALL_BYTES at a time; progress(n) after each syscall; returns syscalls."""
    view = memoryview(data)
    calls = 0
    while view:
        try:
            # os.write releases the GIL for the duration of the syscall, so callers keep running.
            n = os.write(fd, view[:MAX_SYSCALL_BYTES])
        except BlockingIOError:
            _wait_writable(fd)
            continue
        except OSError as exc:
            raise SinkError(exc, view) from exc
        calls += 1
        view = view[n:]
        progress(n)
    return calls


def write_stream(stream: Any, data: bytes, encoding: str, errors: str, progress: Callable[[int], None]) -> int:
    """Fallback for objects without a file descriptor (StringIO, some capture wrappers)."""
    try:
        stream.write(data.decode(encoding, errors))
        stream.flush()
    except Exception as exc:
        raise SinkError(exc, memoryview(data)) from exc
    progress(len(data))
    return 1
