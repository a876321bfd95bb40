"""The ``iolab micro`` report: the same Table model as every report, for the terminal and as Markdown."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from iolab.analysis.micro.figures import count, ms
from iolab.report.markdown import table as markdown_table
from iolab.report.table import Table
from iolab.report.terminal import rich_table
from iolab.results.micro import MicroResult, SettingResult, Stat

FAILED = "failed"

def _range(stat: Stat | None, unit: str = "ms") -> str:
    """``median (min–max)``, the unit written once; just the median when every run gave the same."""
    if stat is None:
        return "–"
    if unit == "size":
        scale, suffix = next(((f, u) for u, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
                              if abs(stat.median) >= f), (1.0, "B"))
        lo, mid, hi = (f"{v / scale:.1f}" if scale > 1 else f"{v:.0f}" for v in (stat.min, stat.median, stat.max))
        return f"{mid} {suffix}" if lo == hi else f"{mid} {suffix} ({lo}–{hi})"
    f = count if unit == "count" else ms
    lo, mid, hi = f(stat.min), f(stat.median), f(stat.max)
    return mid if lo == hi else f"{mid} ({lo}–{hi})"


def _label(s: SettingResult) -> tuple[str, ...]:
    failed = f" ({s.summary.runs_failed} failed)" if s.summary.runs_failed else ""
    if s.mode == "program":
        return (s.stdout + failed,)
    return (s.stdout + failed, s.mode, s.buffering)


def _lead(result: MicroResult) -> tuple[str, ...]:
    return ("stdout", "python", "buffering") if result.target.kind == "python" else ("stdout",)


def _measured(result: MicroResult, title: str, columns: tuple[tuple[str, str, str], ...],
              caption: str) -> Table:
    lead = _lead(result)
    rows = []
    for s in result.settings:
        if not s.summary.runs_ok:
            rows.append((*_label(s), *([FAILED] * len(columns))))
        else:
            rows.append((*_label(s), *(_range(getattr(s.summary, m), unit) for _, m, unit in columns)))
    return Table(title, (*lead, *(h for h, _, _ in columns)), tuple(rows), caption, left_columns=len(lead))


def time_table(result: MicroResult) -> Table:
    c = result.config
    return _measured(result, "Time — median (min–max)", (
        ("wall ms", "wall_ms", "ms"), ("CPU user ms", "cpu_user_ms", "ms"), ("CPU sys ms", "cpu_sys_ms", "ms"),
    ), f"{c.runs} measured run(s) per setting after {c.warmup} warm-up, settings interleaved; wall: from "
       f"spawn to exit (start-up included, ≈{result.machine.get('spawn_overhead_ms', '?')} ms for a program "
       "that does nothing); CPU: wait4()")


def os_table(result: MicroResult) -> Table:
    return _measured(result, "Operating-system evidence — median (min–max)", (
        ("write syscalls (syscw)", "write_syscalls", "count"), ("bytes written", "write_bytes", "size"),
        ("vol. cs", "voluntary_ctx_switches", "count"), ("invol. cs", "involuntary_ctx_switches", "count"),
        ("peak RSS", "rss_peak_bytes", "size"),
    ), "write syscalls (syscw) and bytes (wchar): /proc/PID/io of the exited process, every descriptor: "
       "write, writev, pwrite and sendfile calls (send/sendto/sendmsg are not counted); voluntary and "
       "involuntary context switches, peak RSS: wait4()")


def _us(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def per_call_table(result: MicroResult) -> Table:
    python = result.target.kind == "python"
    unit = "print" if python else "line"
    headers = ("setting", f"{unit}s", "stdout writes", f"writes per {unit}",
               *((f"µs per {unit}", f"CPU µs per {unit}") if python else ()), "µs per extra write",
               "sys µs per write")
    rows = []
    for s in result.settings:
        d = s.derived
        extra = "–" if d.extra_wall_us_per_write_syscall is None else \
            f"{d.extra_wall_us_per_write_syscall:.2f} (vs {d.write_baseline})"
        rows.append((
            s.name, count(d.calls), count(d.stdout_write_syscalls),
            "–" if d.write_syscalls_per_call is None else f"{d.write_syscalls_per_call:.3f}",
            *((_us(d.extra_wall_us_per_call), _us(d.extra_cpu_us_per_call)) if python else ()),
            extra, _us(d.sys_us_per_write_syscall),
        ))
    if python:
        caption = ("prints: counted by a launcher in one untimed run; stdout writes, µs and CPU µs per print: "
                   "against the print-disabled run")
    else:
        caption = "lines: newlines that reached the pipe (or the file, or the pty)"
    caption += ("; extra write: wall time against a setting with far fewer writes; sys µs per write: all "
                "kernel time over all writes (an upper bound; shown from 1,000 writes and 20 ms)")
    return Table(f"Per {unit}", headers, tuple(rows), caption)


def tables(result: MicroResult) -> tuple[Table, ...]:
    return time_table(result), os_table(result), per_call_table(result)


def _header(result: MicroResult) -> str:
    t = result.target
    what = " ".join(t.argv)
    if t.kind == "python":
        what += f" (Python {t.interpreter_version}, {t.interpreter})"
    stdin = f" < {t.input}" if t.input else " < /dev/null"
    return f"iolab micro: {what}{stdin}"


def _failures(result: MicroResult) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    if result.count_run is not None and result.count_run.status != "ok":
        r = result.count_run
        out.append((f"{r.label()}: {r.error}", r.stderr_tail))
    for s in result.settings:
        bad = [r for r in (*s.warmup, *s.runs) if r.status != "ok"]
        if bad:
            out.append((f"{s.name}: {len(bad)} failed run(s), first ({bad[0].label()}): {bad[0].error}",
                        bad[0].stderr_tail))
    return out


def print_report(result: MicroResult, console: Console) -> None:
    # Program arguments, stderr and our own sentences may hold [brackets]: never read them as markup.
    console.print(f"[bold]{escape(_header(result))}[/]")
    for t in tables(result):
        console.print(rich_table(t))
    console.print("[bold]Why[/]")
    for s in result.settings:
        if s.derived.why:
            console.print(f"  {s.name}: {s.derived.why}", highlight=False, markup=False)
    console.print()
    for para in result.explanation:
        console.print(para, highlight=False, markup=False)
        console.print()
    for line, tail in _failures(result):
        console.print(f"[bold red]✗[/] {escape(line)}", highlight=False)
        for t_line in tail:
            console.print(f"    | {t_line}", highlight=False, markup=False)
    for w in result.warnings:
        console.print(f"[yellow]![/] [bold]{w.kind}[/]: {escape(w.message)}", highlight=False)


def render_markdown(result: MicroResult) -> str:
    lines = [f"## {_header(result)}", ""]
    for t in tables(result):
        lines += [markdown_table(t), ""]
    lines += ["### Why", ""] + [f"- `{s.name}`: {s.derived.why}" for s in result.settings if s.derived.why]
    lines += ["", "### What this means", ""]
    for para in result.explanation:
        lines += [para, ""]
    failures = _failures(result)
    if failures:
        lines += ["### Failures", ""]
        for line, tail in failures:
            lines += [f"- {line}"] + (["", "  ```", *(f"  {t}" for t in tail), "  ```"] if tail else [])
        lines.append("")
    if result.warnings:
        lines += ["### Warnings", ""] + [f"- **{w.kind}**: {w.message}" for w in result.warnings] + [""]
    return "\n".join(lines)
