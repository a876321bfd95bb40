"""Sampling windows: the local probe, run by the agent on behalf of a remote ``iolab run``.

A window is one ``Probe`` of one PID: opened (first reading), read on demand (the readings around the
measured load), sampled every interval in its own thread, closed. The client gets the same readings and
per-second samples the local probe would give, so per-request counts are computed the same way.

The agent's own cost: each reading's CPU is measured with ``time.thread_time()`` in the thread that takes
it (a reading is done in one thread, under the probe's lock), summed per window and for the agent.
A window nobody asks about for ``idle_s`` is closed (its client died); at most ``max_windows`` are open.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from iolab.measure.probe import Counters, Probe


class TimedProbe(Probe):
    """A Probe that measures the CPU each of its readings costs the agent."""

    def __init__(self, pid: int, *, interval_s: float, on_reading: Callable[[float], None]) -> None:
        super().__init__(pid, interval_s=interval_s)
        self.cpu_s = 0.0
        self.readings = 0
        self._on_reading = on_reading

    def read(self) -> Counters:
        t0 = time.thread_time()
        try:
            return super().read()
        finally:
            spent = time.thread_time() - t0
            self.cpu_s += spent
            self.readings += 1
            self._on_reading(spent)


@dataclass
class Window:
    id: str
    pid: int
    probe: TimedProbe
    touched: float

    def cost(self) -> dict[str, float | int]:
        n = self.probe.readings
        return {"readings": n, "cpu_s": round(self.probe.cpu_s, 6),
                "cpu_ms_per_reading": round(1000.0 * self.probe.cpu_s / n, 4) if n else 0.0}


class TooManyWindows(Exception):
    pass


class UnknownWindow(Exception):
    pass


class Windows:
    def __init__(self, *, max_windows: int = 16, idle_s: float = 600.0,
                 on_reading: Callable[[float], None] = lambda _s: None) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Window] = {}
        self.max_windows = max_windows
        self.idle_s = idle_s
        self._on_reading = on_reading

    def open(self, pid: int, interval_s: float) -> tuple[Window, Counters]:
        """Start sampling ``pid``; NoSuchProcess/AccessDenied from the first reading propagate."""
        self.expire()
        with self._lock:
            if len(self._open) >= self.max_windows:
                raise TooManyWindows(f"{self.max_windows} windows are open already")
        probe = TimedProbe(pid, interval_s=interval_s, on_reading=self._on_reading)
        probe.start()
        window = Window(secrets.token_hex(8), pid, probe, time.monotonic())
        with self._lock:
            self._open[window.id] = window
        return window, probe.read()

    def get(self, window_id: str) -> Window:
        with self._lock:
            window = self._open.get(window_id)
            if window is None:
                raise UnknownWindow(window_id)
            window.touched = time.monotonic()
            return window

    def close(self, window_id: str) -> Window:
        with self._lock:
            window = self._open.pop(window_id, None)
        if window is None:
            raise UnknownWindow(window_id)
        window.probe.stop()
        return window

    def close_all(self) -> None:
        with self._lock:
            windows, self._open = list(self._open.values()), {}
        for w in windows:
            w.probe.stop()

    def expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [w for w in self._open.values() if now - w.touched > self.idle_s]
            for w in stale:
                del self._open[w.id]
        for w in stale:
            w.probe.stop()

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

