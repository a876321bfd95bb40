"""Where the program's stdout goes: a pipe or a pty drained by iolab, a regular file, or /dev/null.

Each sink hands the child one descriptor (``child_fd``, dup'ed onto fd 1 by the spawner) and, when the
program has exited, says how many bytes and lines arrived (``None`` for /dev/null: nothing keeps them).
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
from pathlib import Path

# A drain that never ends means some process outside the killed process group still holds the pipe
# (it called setsid itself); we stop waiting for it rather than hang the whole measurement.
DRAIN_JOIN_TIMEOUT_S = 5.0
READ_CHUNK = 1 << 16


class Sink:
    kind = "null"

    def __init__(self) -> None:
        self.child_fd = -1

    def start(self) -> None:
        """Called just before the program starts."""

    def close_child_end(self) -> None:
        """Our copy of the child's descriptor: closed once the child has its own, so EOF can arrive."""
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1

    def finish(self) -> tuple[int | None, int | None]:
        """(bytes, lines) received, after the program and its process group are gone."""
        self.close_child_end()
        return None, None


class NullSink(Sink):
    kind = "null"

    def __init__(self) -> None:
        super().__init__()
        self.child_fd = os.open(os.devnull, os.O_WRONLY)


class FileSink(Sink):
    kind = "file"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.child_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def finish(self) -> tuple[int | None, int | None]:
        self.close_child_end()
        size = lines = 0
        with open(self.path, "rb") as fh:
            while chunk := fh.read(READ_CHUNK):
                size += len(chunk)
                lines += chunk.count(b"\n")
        # Leave no large file behind between runs; the next run truncates anyway.
        self.path.unlink(missing_ok=True)
        return size, lines


class _DrainedSink(Sink):
    """Reads everything the program writes, as fast as it can, in a thread (like a judge or a container
    runtime collecting output). A pipe or pty nobody reads fills up and blocks the writer."""

    def __init__(self) -> None:
        super().__init__()
        self.read_fd = -1
        self.bytes = 0
        self.lines = 0
        self._thread = threading.Thread(target=self._drain, name=f"iolab-drain-{self.kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, READ_CHUNK)
            except OSError:
                break  # a pty master reads EIO once every slave descriptor is closed
            if not data:
                break
            self.bytes += len(data)
            self.lines += data.count(b"\n")

    def finish(self) -> tuple[int | None, int | None]:
        self.close_child_end()
        if self._thread.is_alive():
            self._thread.join(DRAIN_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            # A stray process still holds the write end; report what arrived and leave the thread
            # (daemon) blocked on a descriptor we keep open, rather than closing it under its feet.
            return self.bytes, self.lines
        os.close(self.read_fd)
        return self.bytes, self.lines


class PipeSink(_DrainedSink):
    kind = "pipe"

    def __init__(self) -> None:
        super().__init__()
        self.read_fd, self.child_fd = os.pipe()


class PtySink(_DrainedSink):
    """A real pseudo-terminal: ``isatty(1)`` is true for the program, so Python and C stdio line-buffer.

    The terminal settings are the kernel's defaults (ONLCR on: ``\\n`` leaves the master as ``\\r\\n``), as
    a terminal emulator sees them. It is drained by iolab, not drawn: a real terminal is slower still.
    """

    kind = "tty"

    def __init__(self) -> None:
        super().__init__()
        self.read_fd, self.child_fd = os.openpty()
        # Programs that ask for the terminal size get a classic 80x24 rather than 0x0.
        fcntl.ioctl(self.child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))


def make_sink(kind: str, workdir: Path) -> Sink:
    if kind == "pipe":
        return PipeSink()
    if kind == "tty":
        return PtySink()
    if kind == "file":
        return FileSink(workdir / "stdout")
    if kind == "null":
        return NullSink()
    raise ValueError(f"unknown stdout kind {kind!r}")
