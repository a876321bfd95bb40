"""Small shared helpers: a setting's median figures and how numbers are written in reports."""

from __future__ import annotations

from iolab.results.micro import SettingResult

PER_LINE = 0.9  # write syscalls per line at or above which output is written line by line
BUFFERED = 0.2  # at or below which it is buffered
PLACE = {"pipe": "a pipe", "file": "a file", "null": "/dev/null", "tty": "a pty"}


def med(s: SettingResult | None, metric: str) -> float | None:
    """The median of ``metric`` over the setting's successful runs, None when it has none."""
    if s is None:
        return None
    stat = getattr(s.summary, metric)
    return None if stat is None else float(stat.median)


def spread(s: SettingResult, metric: str) -> float:
    stat = getattr(s.summary, metric)
    return 0.0 if stat is None else float(stat.max - stat.min)


def count(x: float | None) -> str:
    return "?" if x is None else f"{round(x):,}"


def plural(x: float | None, word: str) -> str:
    """``1 print``, ``2 prints``, ``? prints``."""
    return f"{count(x)} {word}" + ("" if x is not None and round(x) == 1 else "s")


def ms(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}"


def size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"
