"""A timer exact to a few microseconds for the open loop, below the event loop's millisecond timers.

asyncio's and uvloop's timers count whole milliseconds (uvloop's are libuv's ``uv_now``; the stdlib's
selector rounds its timeout up to 1 ms), so an open loop paced by ``asyncio.sleep`` or ``call_later``
sends its requests in bursts, one per millisecond tick: at 7,700 req/s that is ~8 requests at once,
queued behind each other at the server, and up to a millisecond off their due times. wrk2 has the same
limit (its ae timers count milliseconds).

A ``timerfd`` (``CLOCK_MONOTONIC``, absolute expiry) is an ordinary file descriptor to the event loop: it
becomes readable at the requested nanosecond, epoll returns, the callback runs. Python 3.13 has
``os.timerfd_create``; before that, libc's ``timerfd_create`` is called through ctypes. Where neither
works the timer falls back to the loop's own, and says so (``precise`` is False).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_FLAGS = os.O_NONBLOCK | os.O_CLOEXEC  # TFD_NONBLOCK and TFD_CLOEXEC have these values

perf_ns = time.perf_counter_ns


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def timerfd() -> tuple[int, Callable[[int], None]] | None:
    """A non-blocking timerfd on CLOCK_MONOTONIC and a function arming it at an absolute ns, or None."""
    if hasattr(os, "timerfd_create"):  # Python 3.13+
        try:
            fd: int = os.timerfd_create(time.CLOCK_MONOTONIC, flags=_FLAGS)
        except OSError:
            return None

        settime_ns, abstime = getattr(os, "timerfd_settime_ns"), getattr(os, "TFD_TIMER_ABSTIME")  # noqa: B009

        def arm_os(at_ns: int) -> None:
            settime_ns(fd, flags=abstime, initial=at_ns)

        return fd, arm_os
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
    fd = create(_CLOCK_MONOTONIC, _FLAGS)
    if fd < 0:
        return None
    spec = _Itimerspec()
    ref = ctypes.byref(spec)

    def arm_ctypes(at_ns: int) -> None:
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(at_ns, 1_000_000_000)
        if settime(fd, _TFD_TIMER_ABSTIME, ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")

    return fd, arm_ctypes


class PreciseTimer:
    """Calls ``callback()`` once at ``perf_counter_ns() >= at_ns`` after each ``arm(at_ns)``.

    Arming again replaces the previous time. One per event loop user; ``close()`` frees the descriptor.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None], precise: bool = True) -> None:
        self._loop, self._callback = loop, callback
        self._fallback: asyncio.TimerHandle | None = None
        # perf_counter_ns is CLOCK_MONOTONIC on Linux; the offset keeps this right wherever it is not.
        self._offset_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC) - perf_ns()
        made = timerfd() if precise else None
        self._fd = made[0] if made else -1
        self._arm: Callable[[int], None] | None = made[1] if made else None
        if self._fd >= 0:
            loop.add_reader(self._fd, self._fired)

    @property
    def precise(self) -> bool:
        return self._arm is not None

    def arm(self, at_ns: int) -> None:
        if self._arm is not None:
            self._arm(max(1, at_ns + self._offset_ns))
            return
        if self._fallback is not None:
            self._fallback.cancel()
        self._fallback = self._loop.call_later(max(0.0, (at_ns - perf_ns()) / 1e9), self._fired)

    def _fired(self) -> None:
        if self._fd >= 0:
            try:
                os.read(self._fd, 8)  # the expiry count; reading it clears readiness
            except BlockingIOError:
                return  # re-armed since it became readable: not yet
        self._callback()  # the loop's own timers may fire up to ~1 ms early: the caller allows for it

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.cancel()
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._arm = None
