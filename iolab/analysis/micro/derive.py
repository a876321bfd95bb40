"""Per-call costs and the closing explanation, computed from the medians. Pure functions, no I/O.

Write syscalls come from ``/proc/PID/io``, which counts every descriptor. A Python script's writes to
stdout are therefore taken as the setting's writes minus those of the print-disabled run (what the
interpreter and the script write elsewhere); for any other command they are all its writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from iolab.analysis.micro.explain import command_paragraphs, python_paragraphs
from iolab.analysis.micro.figures import BUFFERED, PER_LINE, med, plural, spread
from iolab.results.micro import Derived, PrintCount, SettingResult

# A difference in write syscalls is worth a per-syscall figure only when it is large, so that noise in
# the wall time is spread over many calls.
MIN_EXTRA_WRITES = 100
# Per-call costs from fewer calls than this are start-up noise divided by a small number.
MIN_CALLS = 100
MIN_WRITE_RATIO = 2.0
# Below this many writes, start-up dominates the kernel time and "sys µs per write" would mislead.
MIN_WRITES_FOR_SYS = 1000
# The kernel splits CPU time into user and system by sampling at timer ticks (their sum is exact): a
# system time of a few ticks is too coarse to divide.
MIN_SYS_MS = 20.0


def _write_baseline(s: SettingResult, candidates: Sequence[SettingResult]) -> SettingResult | None:
    """A setting with far fewer writes, on the same stdout if possible, else on a pipe."""
    mine = med(s, "write_syscalls")
    if mine is None:
        return None

    def fewer(c: SettingResult) -> bool:
        theirs = med(c, "write_syscalls")
        return (c is not s and theirs is not None and med(c, "wall_ms") is not None
                and mine - theirs >= MIN_EXTRA_WRITES and mine >= MIN_WRITE_RATIO * max(theirs, 1.0))

    for pool in ([c for c in candidates if c.stdout == s.stdout], [c for c in candidates if c.stdout == "pipe"]):
        found = [c for c in pool if fewer(c)]
        if found:
            return min(found, key=lambda c: med(c, "write_syscalls") or 0.0)
    return None


def _beyond_noise(s: SettingResult, base: SettingResult, metric: str) -> float | None:
    """The difference of the medians, or None when it is within the runs' own spread (min to max)."""
    a, b = med(s, metric), med(base, metric)
    if a is None or b is None or abs(a - b) <= max(spread(s, metric), spread(base, metric)):
        return None
    return a - b


def _python_why(s: SettingResult, writes: float | None, prints: PrintCount | None) -> str:
    if s.mode == "print-off":
        return (f"print disabled: {plural(med(s, 'write_syscalls'), 'write syscall')}, "
                f"{plural(med(s, 'stdout_bytes'), 'byte')} to stdout")
    what = plural(prints.to_stdout, "print") if prints else plural(med(s, "stdout_lines"), "line")
    if s.mode == "unbuffered":
        text = f"unbuffered (PYTHONUNBUFFERED=1): {plural(writes, 'write syscall')} for {what}"
        if prints and prints.to_stdout and writes and 1.8 <= writes / prints.to_stdout:
            text += " — each argument, separator and end='\\n' a write of its own"
        return text
    if s.buffering == "line":
        return f"line-buffered on a tty: {plural(writes, 'write syscall')} for {what}"
    return f"block-buffered: {plural(writes, 'write syscall')} for {what}"


def _command_why(s: SettingResult, writes: float | None, lines: float | None) -> str:
    text = f"{plural(writes, 'write syscall')} for {plural(lines, 'line')}"
    if writes is None or not lines:
        return text
    ratio = writes / lines
    if ratio >= PER_LINE:
        return f"a write per line: {text}" + (" (line-buffered on a tty, or flushed)" if s.stdout == "tty"
                                              else " (flushed every line)")
    if ratio <= BUFFERED:
        return f"block-buffered: {text}"
    return text


def _lines(settings: Sequence[SettingResult]) -> float | None:
    for kind in ("pipe", "file", "tty"):
        for s in settings:
            if s.stdout == kind and s.mode != "print-off" and (v := med(s, "stdout_lines")) is not None:
                return v
    return None


def derive_all(settings: Sequence[SettingResult], prints: PrintCount | None, kind: str) -> dict[str, Derived]:
    off = next((s for s in settings if s.mode == "print-off" and s.summary.runs_ok), None)
    active = [s for s in settings if s.mode != "print-off"]
    lines = _lines(settings)
    out: dict[str, Derived] = {}
    for s in settings:
        writes = med(s, "write_syscalls")
        base = off if (kind == "python" and s is not off) else None
        if base is not None and writes is not None and (bw := med(base, "write_syscalls")) is not None:
            writes = max(0.0, writes - bw)
        calls: float | None = (prints.calls if prints else None) if kind == "python" else lines
        per_call_base = (prints.to_stdout if prints else None) if kind == "python" else lines
        extra_wall = extra_cpu = None
        if base is not None:
            extra_wall, extra_cpu = _beyond_noise(s, base, "wall_ms"), _beyond_noise(s, base, "cpu_ms")
        wb = _write_baseline(s, active) if s.mode != "print-off" else None
        per_write = None
        if wb is not None and (dwall := _beyond_noise(s, wb, "wall_ms")) is not None:
            dw = (med(s, "write_syscalls") or 0.0) - (med(wb, "write_syscalls") or 0.0)
            per_write = dwall * 1000 / dw
        if calls is not None and calls < MIN_CALLS:
            extra_wall = extra_cpu = None
        total_writes, sys_ms = med(s, "write_syscalls"), med(s, "cpu_sys_ms")
        out[s.name] = Derived(
            calls=None if calls is None else round(calls),
            calls_unit="print" if kind == "python" else "line",
            stdout_write_syscalls=writes,
            write_syscalls_per_call=writes / per_call_base if writes is not None and per_call_base else None,
            baseline=base.name if base is not None else None,
            extra_wall_ms=extra_wall,
            extra_wall_us_per_call=extra_wall * 1000 / calls if extra_wall is not None and calls else None,
            extra_cpu_us_per_call=extra_cpu * 1000 / calls if extra_cpu is not None and calls else None,
            write_baseline=wb.name if wb is not None else None,
            extra_wall_us_per_write_syscall=per_write,
            sys_us_per_write_syscall=(sys_ms * 1000 / total_writes if sys_ms is not None and total_writes
                                      and total_writes >= MIN_WRITES_FOR_SYS and sys_ms >= MIN_SYS_MS
                                      else None),
            why=_python_why(s, writes, prints) if kind == "python" else _command_why(s, writes, lines),
        )
    return out


def explain(settings: Sequence[SettingResult], prints: PrintCount | None, kind: str) -> tuple[str, ...]:
    """Plain-words paragraphs, each built only from figures that were measured."""
    if not any(s.summary.runs_ok for s in settings):
        return ("No run succeeded, so there is nothing to explain: see the failures above.",)
    if kind == "python":
        return python_paragraphs(settings, prints)
    return command_paragraphs(settings)

