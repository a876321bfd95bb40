"""The demo app's two knobs: CPU work per request, and a log sink whose every write blocks.

They make the seed's closing argument measurable ("async is no silver bullet: it depends on how much of
the work is CPU and how long the I/O blocks"). iolab passes them to the server as environment variables
(``iolab run --work-us N --sink-latency MS`` → ``IOLAB_WORK_US``, ``IOLAB_SINK_LATENCY_MS``); with both at
0 (the default) this module changes nothing: endpoints are the undecorated functions and ``sys.stdout``
is Python's own.

**Work** (``IOLAB_WORK_US=N``): every endpoint runs a fixed pure-Python loop before its body, on the
thread that runs the body (the event loop for ``async def``, an AnyIO worker for ``def``), holding the
GIL as business logic would. The loop's iteration count is calibrated once at start-up with the thread's
own CPU clock (``time.thread_time_ns``), so a CPU quota's throttling does not distort it: N µs of work
is N µs of CPU per request. Fixed work, not "spin until N µs have passed": a real request does the same
computation however busy the machine is.

**Slow sink** (``IOLAB_SINK_LATENCY_MS=L``): ``sys.stdout`` is replaced, when the app is imported, by a
text stream whose *raw* layer sleeps L ms before every ``write(2)`` it makes to fd 1. The latency is per
system call, as on a slow device (a network filesystem, a synchronous log shipper), not per Python
``write()`` call, so buffering keeps its real effect:

- a ``StreamHandler`` (stdlib, picologging), loguru's stream sink and structlog's ``PrintLogger`` flush
  every record: one blocked write per record, on the thread that logs;
- ``print`` and ``sys.stdout.write`` on a block-buffered stdout reach fd 1 once per 8 KiB, so they pay
  L ms per ~100 lines; ``print(flush=True)`` pays it per call;
- the raw layer writes one call at a time: ``BufferedWriter`` holds its lock during the raw write, as it
  does for a real blocking write, so writers on several threads queue behind one another;
- ``time.sleep`` releases the GIL exactly as a blocking ``write(2)`` does, so other threads run meanwhile.

What the slow stream does not slow: uvicorn's access log (it bound the original ``sys.stdout`` when it
configured logging, before importing the app; slowing it would cap every scenario, controls included),
and writers that take the file descriptor and call ``os.write`` themselves (aiologger's pipe transport).
iolab's own ``BatchHandler`` would be such a writer; the catalog hands it :func:`without_fd` so that each
of its batches pays the latency once, as its writer thread's ``os.write`` would on a slow device.
"""

from __future__ import annotations

import functools
import inspect
import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

WORK_US_ENV = "IOLAB_WORK_US"
SINK_LATENCY_ENV = "IOLAB_SINK_LATENCY_MS"

# Calibration: time this many iterations, many times, and keep the minimum cost per iteration: the cost
# on an undisturbed core, the most repeatable estimate on a shared machine (a run that another process's
# cache traffic slowed down says nothing about the computation). Every server of a sweep then does about
# the same work per request; under load that work costs somewhat more CPU than calibrated.
_CALIBRATION_ITERATIONS = 5_000
_CALIBRATION_RUNS = 15


def _env_number(name: str, kind: type[int] | type[float]) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return 0
    try:
        value = kind(text)
    except ValueError:
        raise SystemExit(f"iolab demo: {name}={text!r} is not a number") from None
    if value < 0:
        raise SystemExit(f"iolab demo: {name}={text!r} must be >= 0")
    return value


# ------------------------------------------------------------------------------------------- work


def spin(iterations: int) -> int:
    """The busy loop: integer arithmetic the interpreter cannot skip, holding the GIL throughout."""
    acc = 0
    for i in range(iterations):
        acc = (acc + i * i) & 0xFFFFFFFF
    return acc


def ns_per_iteration(iterations: int = _CALIBRATION_ITERATIONS, runs: int = _CALIBRATION_RUNS) -> float:
    """CPU nanoseconds one iteration of :func:`spin` costs on this thread (the minimum of ``runs``)."""
    spin(iterations)  # warm the loop up once
    best = float("inf")
    for _ in range(runs):
        t0 = time.thread_time_ns()
        spin(iterations)
        best = min(best, (time.thread_time_ns() - t0) / iterations)
    return best


def iterations_for(work_us: float, cost_ns: float) -> int:
    return 0 if work_us <= 0 else max(1, round(work_us * 1000.0 / cost_ns))


def with_work(fn: F, iterations: int | None = None) -> F:
    """``fn`` preceded by the calibrated busy loop, on the thread that runs ``fn``; ``fn`` itself at 0.

    The wrapper keeps ``fn``'s kind (``async def`` stays a coroutine function, so FastAPI still runs it
    on the event loop; ``def`` stays in the thread pool) and its signature (``functools.wraps``).
    """
    n = ITERATIONS if iterations is None else iterations
    if n <= 0:
        return fn
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            spin(n)
            return await fn(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        spin(n)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# -------------------------------------------------------------------------------------- slow sink


class SlowRawWriter(io.RawIOBase):
    """fd writes that each block ``latency_s`` first (``time.sleep``, which releases the GIL)."""

    def __init__(self, fd: int, latency_s: float) -> None:
        super().__init__()
        self._fd = fd
        self.latency_s = latency_s
        self.writes = 0  # how many blocked writes (tests read it)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, b: Any) -> int:  # type: ignore[override]
        time.sleep(self.latency_s)
        self.writes += 1
        return os.write(self._fd, b)


def slow_text_stream(original: TextIO, latency_s: float) -> io.TextIOWrapper:
    """A text stream on ``original``'s fd, buffered like it, whose every raw write blocks."""
    raw = SlowRawWriter(original.fileno(), latency_s)
    buffered = isinstance(getattr(original, "buffer", None), io.BufferedIOBase)
    # Unbuffered (python -u, PYTHONUNBUFFERED): Python gives stdout no BufferedWriter, only the raw
    # FileIO with write_through; mirror that so every write reaches the raw layer at once.
    binary: Any = io.BufferedWriter(raw) if buffered else raw
    return io.TextIOWrapper(
        binary,
        encoding=original.encoding,
        errors=original.errors,
        line_buffering=original.line_buffering,
        write_through=getattr(original, "write_through", False) or not buffered,
    )


class _WithoutFd:
    """write/flush of a stream, but no ``fileno()``: writers that prefer the fd must use the stream."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


def without_fd(stream: TextIO) -> Any:
    return _WithoutFd(stream)


def install_slow_stdout(latency_ms: float) -> TextIO:
    """Replace ``sys.stdout`` by a slow stream (latency_ms > 0); return the stream log code should use."""
    if latency_ms <= 0:
        return sys.stdout
    original = sys.stdout
    original.flush()
    slow = slow_text_stream(original, latency_ms / 1000.0)
    sys.stdout = slow
    return slow


def log_stream() -> TextIO:
    """Where the catalog's loggers write: ``sys.stdout`` (slow when the knob is set)."""
    return sys.stdout


def fd_writer_stream() -> Any:
    """For writers that would write to the fd directly (iolab.logging.BatchHandler): sys.stdout as is
    when the sink is fast, else a view without ``fileno()`` so their writes go through the slow layer."""
    return sys.stdout if SINK_LATENCY_MS <= 0 else without_fd(sys.stdout)


# ------------------------------------------------------------------------------------- start-up

WORK_US = float(_env_number(WORK_US_ENV, float))
SINK_LATENCY_MS = float(_env_number(SINK_LATENCY_ENV, float))
COST_NS = ns_per_iteration() if WORK_US > 0 else 0.0
ITERATIONS = iterations_for(WORK_US, COST_NS) if WORK_US > 0 else 0


def describe() -> str:
    """One start-up line for the server's log (only printed when a knob is set)."""
    parts = []
    if WORK_US > 0:
        parts.append(f"work {WORK_US:g} µs = {ITERATIONS} iterations at {COST_NS:.1f} ns each")
    if SINK_LATENCY_MS > 0:
        parts.append(f"every write(2) to stdout blocks {SINK_LATENCY_MS:g} ms")
    return "iolab demo knobs: " + "; ".join(parts)
