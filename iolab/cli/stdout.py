"""Standard output as the CLI writes it: a failed write is a ``StdoutError`` (exit 11), never a traceback.

``iolab report r.json > /dev/full`` fails with ENOSPC, ``iolab report r.json | true`` with EPIPE, and
``iolab report r.json >&-`` starts with no fd 1 at all (Python then sets ``sys.stdout`` to None). Each
write to ``sys.stdout`` (rich, click, print, ``--markdown -``) goes through :class:`_Guarded`, which turns
the OSError into the error the one mapping in main.py reports. After a failure fd 1 is pointed at
/dev/null, as Python's documentation advises for EPIPE, so the interpreter's own flush at exit cannot
print "Exception ignored …" and change the exit code to 120.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from iolab.errors import StdoutError


def fill_closed_std_fds() -> None:
    """Open /dev/null on each of fds 0, 1 and 2 that is closed.

    Else the next file iolab opens takes that number, and a child started with the default stdout (a
    load tool, a script under ``iolab micro``) would write into a results file. ``sys.stdout`` stays
    None for a closed fd 1, so writing the report still fails as it should.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            # The lowest free number is ``fd`` itself: the lower ones are open by now.
            os.open(os.devnull, os.O_RDWR)


class _Guarded:
    """``sys.stdout`` with its OSErrors turned into StdoutError; everything else is the real stream's."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.failed = False

    def _failed(self, exc: OSError | None) -> StdoutError:
        self.failed = True
        why = "it is closed" if exc is None else (exc.strerror or str(exc))
        return StdoutError(f"could not write to standard output: {why}")

    def silence(self) -> None:
        """Point fd 1 at /dev/null: the interpreter's flush at exit then drops what is left, silently."""
        if self._stream is None:
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # a text stream, as click's probe with write(b"") must find
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            # click probes the stream with write("") and swallows what it raises: a real call here could
            # meet the failure (a flush of what is pending) and hide it from us.
            return 0
        if self._stream is None:
            raise self._failed(None)
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise self._failed(exc) from None

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def guarded_stdout() -> Iterator[None]:
    """``sys.stdout`` guarded while a command runs, flushed inside (so a late failure is reported too)."""
    real = sys.stdout
    guard = _Guarded(real)
    sys.stdout = guard  # type: ignore[assignment]
    try:
        yield
        guard.flush()
    finally:
        sys.stdout = real
        if guard.failed:
            guard.silence()
