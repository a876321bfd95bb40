"""The report's closing paragraphs: why the output cost what it did, in plain words, every claim tied to
a figure measured in this run (a paragraph whose figures are missing is left out, not guessed)."""

from __future__ import annotations

from collections.abc import Sequence

from iolab.analysis.micro.figures import BUFFERED, PER_LINE, PLACE, count, med, ms, plural, size, spread
from iolab.results.micro import PrintCount, SettingResult

# Buffers of the usual writers: glibc stdio uses st_blksize (4 KiB for a pipe), Python and libstdc++ 8 KiB.
SMALL_BUFFER, LARGE_BUFFER = 4096, 8192
MIN_CSW_RISE = 50
FEW_PRINTS = 100  # below this, per-print figures are start-up noise


def _pick(ok: Sequence[SettingResult], mode: str, prefer: str = "pipe") -> SettingResult | None:
    same = [s for s in ok if s.mode == mode]
    return next((s for s in same if s.stdout == prefer), same[0] if same else None)


def _writes(s: SettingResult) -> str:
    return plural(s.derived.stdout_write_syscalls, "write syscall")


def _headline(d: SettingResult, off: SettingResult, prints: PrintCount) -> str:
    wd, wo = med(d, "wall_ms") or 0.0, med(off, "wall_ms") or 0.0
    delta, noise = wd - wo, max(spread(d, "wall_ms"), spread(off, "wall_ms"))
    where = f"stdout to {PLACE[d.stdout]} and Python's default buffering"
    calls = plural(prints.calls, "print call")
    if delta <= noise:
        return (f"With {where}, disabling the {calls} changed the run time by {ms(delta)} ms ({ms(wd)} "
                f"against {ms(wo)} ms), within the spread of the runs ({ms(noise)} ms): here the prints cost "
                "next to nothing.")
    text = (f"Removing the prints would save {ms(delta)} ms of {ms(wd)} ms ({100 * delta / wd:.0f}%) with "
            f"{where}, as a judge or a container collects output")
    us, cpu = d.derived.extra_wall_us_per_call, d.derived.extra_cpu_us_per_call
    if us is not None:
        text += f": the {calls} cost ≈{us:.2f} µs each"
        text += f" (≈{cpu:.2f} µs of CPU)" if cpu is not None else ""
    return text + "."


def _buffering(ok: Sequence[SettingResult], d: SettingResult | None, prints: PrintCount) -> str:
    parts: list[str] = []
    blk = [s for s in ok if s.mode == "default" and s.buffering == "block"]
    if blk:
        b = d if d in blk else blk[0]
        writes, out = b.derived.stdout_write_syscalls, med(b, "stdout_bytes") or med(b, "write_bytes")
        text = (f"Python block-buffers stdout when it is a pipe, a file or /dev/null: the "
                f"{plural(prints.to_stdout, 'print')} became {_writes(b)} on {PLACE[b.stdout]}")
        if writes and out:
            text += f", about {size(out / writes)} each (the buffer is written when full)"
        parts.append(text + ".")
    tty = next((s for s in ok if s.mode == "default" and s.stdout == "tty"), None)
    if tty is not None:
        text = f"On a terminal it flushes at every newline: {_writes(tty)} on the pty and {ms(med(tty, 'wall_ms'))} ms"
        if d is not None and d is not tty:
            text += f", against {ms(med(d, 'wall_ms'))} ms on {PLACE[d.stdout]}"
        parts.append(text + ".")
    unb = _pick(ok, "unbuffered", d.stdout if d else "pipe")
    if unb is not None:
        text = (f"With PYTHONUNBUFFERED=1 or python -u (common in Docker images) nothing is buffered: "
                f"{_writes(unb)} on {PLACE[unb.stdout]}")
        r = unb.derived.write_syscalls_per_call
        if r is not None:
            text += f", {r:.1f} per print" + (" (each argument, separator and end='\\n' is a write of its own)"
                                               if r >= 1.8 else "")
        text += f", and {ms(med(unb, 'wall_ms'))} ms"
        if (per := unb.derived.extra_wall_us_per_write_syscall) is not None:
            text += (f"; each extra write syscall cost ≈{per:.1f} µs of wall time, Python's work per write "
                     f"included (against {unb.derived.write_baseline})")
        parts.append(text + ".")
    return " ".join(parts)


def _csw(s: SettingResult) -> float:
    return (med(s, "voluntary_ctx_switches") or 0.0) + (med(s, "involuntary_ctx_switches") or 0.0)


def _switches(ok: Sequence[SettingResult], d: SettingResult) -> str:
    worst = max((s for s in ok if s.mode != "print-off"), key=_csw)
    cd, cw = _csw(d), _csw(worst)
    if cw < 2 * max(cd, 1.0) or cw - cd < MIN_CSW_RISE:
        return ""
    return (f"Each write into a pipe or a pty may wake the reader, and the writer sleeps when the reader "
            f"falls behind or is preempted for it: context switches (voluntary + involuntary) went from "
            f"{count(cd)} ({d.name}) to {count(cw)} ({worst.name}), and system CPU from "
            f"{ms(med(d, 'cpu_sys_ms'))} to {ms(med(worst, 'cpu_sys_ms'))} ms.")


def _print_vs_write(d: SettingResult | None) -> str:
    text = ("print() does more than a write: it converts each argument with str(), hands each argument, "
            "separator and end to sys.stdout.write one by one, and checks flush=.")
    us = d.derived.extra_wall_us_per_call if d is not None else None
    if us is not None and us > 0 and d is not None and d.buffering == "block":
        text += f" Even block-buffered, a print cost ≈{us:.2f} µs here."
    return text + (" Collecting lines and writing once — sys.stdout.write('\\n'.join(lines) + '\\n') — "
                   "pays that once; deleting debug prints, or printing them to stderr only under a DEBUG "
                   "flag, removes it.")


def python_paragraphs(settings: Sequence[SettingResult], prints: PrintCount | None) -> tuple[str, ...]:
    ok = [s for s in settings if s.summary.runs_ok]
    d, off = _pick(ok, "default"), _pick(ok, "print-off")
    if prints is not None and prints.calls < FEW_PRINTS:
        return (f"The script made only {plural(prints.calls, 'print call')}: its output costs next to "
                "nothing in any setting, and the rows differ by start-up and machine noise. The cost of "
                "printing shows with many calls — one per line of a loop, as a debug print left in.",)
    paras: list[str] = []
    if d is not None and off is not None and prints is not None:
        paras.append(_headline(d, off, prints))
    if prints is not None:
        paras.append(_buffering(ok, d, prints))
    if d is not None:
        paras.append(_switches(ok, d))
    paras.append(_print_vs_write(d))
    text = ("print(..., flush=True), sys.stdout.flush() in a loop and C++'s std::endl ('\\n' plus a flush) "
            "write every line at once on every target")
    unb, blk = _pick(ok, "unbuffered"), _pick(ok, "default")
    if unb is not None and blk is not None and blk.buffering == "block":
        text += f", as the unbuffered rows here do ({_writes(unb)} instead of {count(blk.derived.stdout_write_syscalls)})"
    paras.append(text + "; end lines with '\\n' and let the buffer be written when it is full and at exit.")
    return tuple(p for p in paras if p)


def _ratio(s: SettingResult | None) -> float | None:
    return None if s is None else s.derived.write_syscalls_per_call


def _diagnosis(by: dict[str, SettingResult], lines: int | None, out_bytes: float | None) -> str:
    quiet = [r for k in ("pipe", "file", "null") if (r := _ratio(by.get(k))) is not None]
    tty_r = _ratio(by.get("tty"))
    if quiet and min(quiet) >= PER_LINE:
        text = ("It writes every line even when nobody watches (pipe, file, /dev/null): it flushes each line — "
                "std::endl (which is '\\n' plus a flush), fflush(stdout), print(..., flush=True) — or its "
                "output is unbuffered.")
        if out_bytes:
            text += (f" Ending lines with '\\n' and leaving the flushing to the stream's buffer would turn those "
                     f"{plural(lines, 'write')} into {count(out_bytes / LARGE_BUFFER)} to "
                     f"{count(out_bytes / SMALL_BUFFER)} (a 4 or 8 KiB buffer).")
        return text
    if quiet and max(quiet) <= BUFFERED and tty_r is not None and tty_r >= PER_LINE:
        return ("It buffers its output when stdout is a pipe, a file or /dev/null and writes every line on a "
                "terminal: C stdio's rule (line-buffered on a tty, fully buffered otherwise), which Python "
                "follows too.")
    if quiet and max(quiet) <= BUFFERED:
        return ("It buffers its output on every target, terminal included (C++ iostreams do so after "
                "ios::sync_with_stdio(false), for example): few write syscalls, whatever stdout is.")
    return ""


def _tty_wait(by: dict[str, SettingResult]) -> str:
    tty, pipe = by.get("tty"), by.get("pipe") or by.get("file")
    if tty is None or pipe is None:
        return ""
    vt, vp = med(tty, "voluntary_ctx_switches") or 0.0, med(pipe, "voluntary_ctx_switches") or 0.0
    if vt < 2 * max(vp, 1.0) or vt - vp < MIN_CSW_RISE:
        return ""
    return (f"A pty holds only a few kB and turns each '\\n' into '\\r\\n' on the way: the writer slept "
            f"{count(vt)} times waiting for the reader (against {count(vp)} on {PLACE[pipe.stdout]}), and took "
            f"{ms(med(tty, 'wall_ms'))} ms against {ms(med(pipe, 'wall_ms'))} ms.")


def command_paragraphs(settings: Sequence[SettingResult]) -> tuple[str, ...]:
    ok = [s for s in settings if s.summary.runs_ok]
    lines = next((s.derived.calls for s in ok if s.derived.calls is not None), None)
    out_bytes = next((v for s in ok if s.stdout != "tty" and (v := med(s, "stdout_bytes")) is not None), None)
    per = "; ".join(
        f"to {PLACE[s.stdout]} {plural(med(s, 'write_syscalls'), 'write syscall')}"
        + (f" ({r:.2f} per line)" if (r := _ratio(s)) is not None else "") + f" in {ms(med(s, 'wall_ms'))} ms"
        for s in ok
    )
    by: dict[str, SettingResult] = {s.stdout: s for s in ok}
    paras = [f"The program wrote {plural(lines, 'line')} ({size(out_bytes)}): {per}.",
             _diagnosis(by, lines, out_bytes), _tty_wait(by)]
    ref = by.get("pipe") or (ok[0] if ok else None)
    if ref is not None and (sys_us := ref.derived.sys_us_per_write_syscall) is not None:
        text = (f"On {PLACE[ref.stdout]} its system CPU was {ms(med(ref, 'cpu_sys_ms'))} ms, ≈{sys_us:.1f} µs "
                "per write syscall (all kernel time divided by the writes: an upper bound).")
        worse = [s for s in ok if s.derived.extra_wall_us_per_write_syscall is not None]
        if worse:
            w = max(worse, key=lambda s: med(s, "write_syscalls") or 0.0)
            text += (f" Against {w.derived.write_baseline}, each extra write syscall on {PLACE[w.stdout]} "
                     f"cost ≈{w.derived.extra_wall_us_per_write_syscall:.1f} µs of wall time.")
        paras.append(text)
    return tuple(p for p in paras if p)
