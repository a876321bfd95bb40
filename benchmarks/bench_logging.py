"""What a log call costs the caller, logger by logger, and what iolab.logging.BatchHandler saves.

    .venv/bin/python benchmarks/bench_logging.py            # full run (~10 min on 2 cores)
    .venv/bin/python benchmarks/bench_logging.py --quick    # smoke run (~1 min)

Every measurement is a fresh child process (benchmarks/logging/child.py) whose stdout is the sink: a pipe
the parent drains, a regular file, or a pty the parent drains; the slow sink is a pipe read 4 KB every
10 ms. Children run with an explicit environment (no PYTHONUNBUFFERED, whatever this shell exports).
Reported per logger: median over the runs of caller ns/record (the logging loop, timed in the child;
wall clock, and the calling thread's own CPU time, which leaves out waiting for a CPU or the GIL),
total process CPU ns/record (getrusage of the whole child, every thread, from the loop's start until
everything was written: what the caller's thread and any writer thread spent), time until flushed (loop
start to the last line received by the parent; for a file, until the logger's own flush returned),
write syscalls/record (/proc/self/io syscw) and voluntary context switches/record (getrusage: every
thread of the child, finished ones included).

The deferred path (iolab.logging.install(defer=True)) is checked against issue 19's targets: caller time
<= 0.5x picologging's, total CPU <= 0.5x the stdlib StreamHandler's and <= picologging's, <= 0.01 write
syscalls per record, and 100,000 records identical to the stdlib's rendering (tests/fixtures/defer_identity.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHILD = HERE / "logging" / "child.py"
RECORD_BYTES = 41

LOGGERS = ["floor", "print", "stdlib", "queue", "loguru", "loguru_enqueue", "aiologger", "structlog",
           "picologging", "ours", "deferred"]
ALWAYS = {"floor", "ours", "deferred"}
LABELS = {
    "floor": "floor (Logger + no-op handler)", "print": "print()", "stdlib": "stdlib StreamHandler",
    "queue": "QueueHandler+QueueListener", "loguru": "loguru", "loguru_enqueue": "loguru enqueue=True",
    "aiologger": "aiologger", "structlog": "structlog (WriteLogger)", "picologging": "picologging",
    "ours": "iolab BatchHandler", "ours_drop": "iolab BatchHandler drop_newest 256K",
    "deferred": "iolab defer=True", "deferred_drop": "iolab defer=True drop_newest 6K rec",
}
NEEDS = {"loguru": "loguru", "loguru_enqueue": "loguru", "aiologger": "aiologger", "structlog": "structlog",
         "picologging": "picologging"}


def child_env() -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/tmp")}
    return env  # deliberately without PYTHONUNBUFFERED / PYTHONIOENCODING: the defaults of a deployment


class Drain:
    """Reads a pipe or pty master on a thread, counting lines and noting when the last one arrived."""

    def __init__(self, fd: int, expected: int, slow: bool = False) -> None:
        self.fd, self.expected, self.slow = fd, expected, slow
        self.lines = 0
        self.t_all: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                b = os.read(self.fd, 4096 if self.slow else 1 << 20)
            except OSError:  # EIO from a pty master once the child is gone
                b = b""
            if not b:
                return
            self.lines += b.count(b"\n")
            if self.t_all is None and self.lines >= self.expected:
                self.t_all = time.monotonic_ns()
            if self.slow:
                time.sleep(0.01)


def run_child(logger: str, mode: str, sink: str, records: int, exit_kind: str = "normal",
              ours_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    name = "ours" if logger.startswith("ours") else "deferred" if logger.startswith("deferred") else logger
    cfg = {"logger": name, "records": records, "mode": mode, "exit": exit_kind, "ours_kwargs": ours_kwargs}
    res_r, res_w = os.pipe()
    expected = records + (0 if name in ("floor", "aiologger") else 1)
    drain: Drain | None = None
    tmp = None
    if sink in ("pipe", "slow"):
        out_r, out_w = os.pipe()
    elif sink == "pty":
        out_r, out_w = os.openpty()
    else:
        tmp = tempfile.NamedTemporaryFile(prefix="iolab-bench-", suffix=".log", delete=False)
        out_r, out_w = -1, tmp.fileno()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, str(CHILD), json.dumps(cfg), str(res_w)], env=child_env(),
                                cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=out_w, stderr=err,
                                pass_fds=(res_w,))
        os.close(res_w)
        if out_r >= 0:
            os.close(out_w)
            drain = Drain(out_r, expected, slow=sink == "slow")
        raw = b""
        while chunk := os.read(res_r, 1 << 16):
            raw += chunk
        os.close(res_r)
        proc.wait(timeout=600)
        if drain is not None:
            drain.thread.join(timeout=120)
            os.close(out_r)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    try:
        res: dict[str, Any] = json.loads(raw) if raw else {"error": f"no result (exit {proc.returncode})"}
    except json.JSONDecodeError:
        res = {"error": f"bad result (exit {proc.returncode})"}
    if "error" in res and stderr.strip():
        res["error"] += " | " + stderr.strip().splitlines()[-1][:200]
    if tmp is not None:
        tmp.close()
        lines = Path(tmp.name).read_bytes().count(b"\n")
        os.unlink(tmp.name)
        res["delivered"] = lines - res.get("warmup_lines", 0)
        if "t_done" in res:
            res["flushed_ms"] = (res["t_done"] - res["t_start"]) / 1e6
    elif drain is not None:
        res["delivered"] = drain.lines - res.get("warmup_lines", 0)
        if drain.t_all is not None and "t_start" in res:
            res["flushed_ms"] = (drain.t_all - res["t_start"]) / 1e6
        elif name == "floor" and "loop_ns" in res:
            res["flushed_ms"] = res["loop_ns"] / 1e6
    res["returncode"] = proc.returncode
    if "after" in res:
        a, b = res["after"], res["before"]
        res["caller_ns"] = res["loop_ns"] / records
        res["caller_cpu_ns"] = res["loop_cpu_ns"] / records
        res["writes_per_rec"] = (a["syscw"] - b["syscw"]) / records
        res["vcsw_per_rec"] = (a["vcsw"] - b["vcsw"]) / records
        res["main_vcsw_per_rec"] = (a["main_vcsw"] - b["main_vcsw"]) / records
        res["rss_growth_mb"] = max(0, res["maxrss_kb"] - res["rss0"]) / 1024
        res["total_cpu_ns"] = (a["cpu_ns"] - b["cpu_ns"]) / records
    return res


@dataclass
class Cell:
    runs: list[dict[str, Any]] = field(default_factory=list)

    def med(self, key: str, sub: str | None = None) -> float | None:
        vals = [(r[key][sub] if sub else r[key]) for r in self.runs
                if "error" not in r and key in r and (sub is None or sub in r[key])]
        return statistics.median(vals) if vals else None

    def low(self, key: str) -> float | None:
        vals = [r[key] for r in self.runs if "error" not in r and key in r]
        return min(vals) if vals else None

    @property
    def error(self) -> str | None:
        errs = [r["error"] for r in self.runs if "error" in r]
        return errs[0] if errs and len(errs) == len(self.runs) else None


def fmt(v: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v / scale, spec)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


def progress(msg: str) -> None:
    sys.stderr.write(f"\r{msg[:100]:<100}")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------- benches
def bench_throughput(loggers: list[str], sinks: list[str], records: int, reps: int
                     ) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {(lg, s): Cell() for lg in loggers for s in sinks}
    for rep in range(reps):  # interleaved, so drift on a shared machine spreads over every logger
        for sink in sinks:
            for lg in loggers:
                progress(f"throughput: run {rep + 1}/{reps}, {sink}, {lg}")
                cells[(lg, sink)].runs.append(run_child(lg, "throughput", sink, records))
    return cells


def report_throughput(cells: dict[tuple[str, str], Cell], loggers: list[str], sinks: list[str],
                      records: int, reps: int) -> str:
    out = []
    for sink in sinks:
        floor = cells[("floor", sink)].med("caller_ns")
        stdlib = cells.get(("stdlib", sink), Cell()).med("caller_ns")
        rows = []
        for lg in loggers:
            c = cells[(lg, sink)]
            if c.error:
                rows.append([LABELS[lg], "error: " + c.error[:70]] + [""] * 9)
                continue
            ns = c.med("caller_ns")
            rows.append([
                LABELS[lg], fmt(ns, ".2f", 1e3), fmt(c.med("caller_cpu_ns"), ".2f", 1e3),
                fmt(c.med("total_cpu_ns"), ".2f", 1e3),
                fmt(ns / floor if ns and floor else None, ".2f") + "x",
                fmt(ns / stdlib if ns and stdlib else None, ".2f") + "x",
                fmt(c.med("flushed_ms"), ".0f"), fmt(c.med("writes_per_rec"), ".4f"),
                fmt(c.med("vcsw_per_rec"), ".4f"), fmt(c.med("main_vcsw_per_rec"), ".4f"),
                f"{fmt(c.low('delivered'), '.0f')}/{records}",
            ])
        out.append(f"\n== {records:,} records of {RECORD_BYTES} bytes, stdout = {sink}; median of {reps} "
                   f"fresh processes ==\n")
        out.append(table(["logger", "caller us/rec", "its CPU us", "total CPU us", "/floor", "/stdlib", "flushed ms",
                          "writes/rec",
                          "vcsw/rec", "main vcsw/rec", "delivered"], rows))
    return "\n".join(out)


def bench_slow(loggers: list[str], records: int, reps: int) -> dict[str, Cell]:
    cells = {lg: Cell() for lg in loggers}
    for rep in range(reps):
        for lg in loggers:
            progress(f"slow sink: run {rep + 1}/{reps}, {lg}")
            kwargs = ({"policy": "drop_newest", "max_bytes": 256 * 1024} if lg == "ours_drop" else
                      {"policy": "drop_newest", "max_records": 6 * 1024} if lg == "deferred_drop" else None)
            cells[lg].runs.append(run_child(lg, "slow", "slow", records, ours_kwargs=kwargs))
    return cells


def report_slow(cells: dict[str, Cell], records: int, reps: int) -> str:
    rows = []
    for lg, c in cells.items():
        if c.error:
            rows.append([LABELS[lg], "error: " + c.error[:70]] + [""] * 7)
            continue
        budget, peak = c.med("max_bytes"), c.med("handler", "peak_bytes")
        if c.med("max_records") is not None:
            budget, peak = c.med("max_records"), c.med("handler", "peak_records")
            buffer = f"{peak:.0f} of {budget:.0f} rec" if peak is not None and budget else "-"
        else:
            buffer = f"{peak / 1024:.0f}K of {budget / 1024:.0f}K" if peak is not None and budget else "-"
        rows.append([
            LABELS[lg], fmt(c.med("per_call", "total"), ".3f", 1e9),
            fmt(c.med("per_call", "p50"), ".1f", 1e3), fmt(c.med("per_call", "p99"), ".1f", 1e3),
            fmt(c.med("per_call", "max"), ".2f", 1e6), fmt(c.med("flushed_ms"), ".2f", 1e3),
            fmt(c.med("rss_growth_mb"), ".1f"),
            buffer,
            f"{fmt(c.low('delivered'), '.0f')}/{records}",
        ])
    head = (f"\n== slow sink: {records:,} records into a pipe read 4 KB every 10 ms; median of {reps} "
            f"fresh processes ==\n")
    return head + table(["logger", "in calls s", "p50 us", "p99 us", "max ms", "flushed s", "RSS +MB",
                         "buffer peak", "delivered"], rows)


def bench_exit(loggers: list[str], records: int, reps: int) -> dict[tuple[str, str], Cell]:
    cells = {(lg, k): Cell() for lg in loggers for k in ("normal", "os_exit")}
    for rep in range(reps):
        for kind in ("normal", "os_exit"):
            for lg in loggers:
                progress(f"exit: run {rep + 1}/{reps}, {kind}, {lg}")
                cells[(lg, kind)].runs.append(run_child(lg, "exit", "pipe", records, exit_kind=kind))
    return cells


def report_exit(cells: dict[tuple[str, str], Cell], loggers: list[str], records: int, reps: int) -> str:
    rows = []
    for lg in loggers:
        row = [LABELS[lg]]
        for kind in ("normal", "os_exit"):
            c = cells[(lg, kind)]
            row.append("error" if c.error else f"{fmt(c.low('delivered'), '.0f')}/{records}")
        rows.append(row)
    head = (f"\n== exit: {records:,} records, then the program ends without calling any flush/stop; "
            f"fewest delivered of {reps} runs ==\n")
    return head + table(["logger", "normal exit", "os._exit(0)"], rows)


# ---------------------------------------------------------------------------------------------- targets
class Checks:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, ok: bool | None, text: str) -> None:
        self.lines.append(f"[{'n/a ' if ok is None else 'PASS' if ok else 'MISS'}] {text}")

    def note(self, text: str) -> None:
        self.lines.append(f"[ref ] {text}")


def throughput_targets(ck: Checks, tp: dict[tuple[str, str], Cell], sinks: list[str]) -> None:
    for sink in sinks:
        def med(lg: str, key: str = "caller_ns", sink: str = sink) -> float | None:
            return tp[(lg, sink)].med(key) if (lg, sink) in tp else None
        ours, floor, stdlib, queue, pico = (med(lg) for lg in ("ours", "floor", "stdlib", "queue", "picologging"))
        writes = med("ours", "writes_per_rec")
        if ours is None or floor is None:
            ck.check(None, f"{sink}: no figure for ours or the floor")
            continue
        ck.check(ours - floor <= 1000, f"{sink}: caller within 1 us of the floor: ours {ours / 1e3:.2f} us, "
                 f"floor {floor / 1e3:.2f} us, difference {(ours - floor) / 1e3:+.2f} us")
        ours_cpu, floor_cpu = med("ours", "caller_cpu_ns"), med("floor", "caller_cpu_ns")
        if ours_cpu is not None and floor_cpu is not None:
            ck.note(f"{sink}: the same in the calling thread's CPU time (no waiting for a CPU or the GIL): "
                    f"ours {ours_cpu / 1e3:.2f} us, floor {floor_cpu / 1e3:.2f} us, "
                    f"difference {(ours_cpu - floor_cpu) / 1e3:+.2f} us")
        if stdlib:
            ck.check(ours <= 0.7 * stdlib, f"{sink}: <= 0.7x stdlib StreamHandler: {ours / stdlib:.2f}x "
                     f"(StreamHandler {stdlib / 1e3:.2f} us here; anchor ~6.6 us)")
        if queue:
            ck.check(ours <= 0.6 * queue, f"{sink}: <= 0.6x QueueHandler: {ours / queue:.2f}x "
                     f"(QueueHandler {queue / 1e3:.2f} us here; anchor ~7.5 us)")
        if writes is not None:
            ck.check(writes <= 0.01, f"{sink}: <= 0.01 write syscalls/record: {writes:.4f} "
                     "(every other logger ~1.0, loguru enqueue ~2.0)")
        if pico:
            ck.note(f"{sink}: picologging {pico / 1e3:.2f} us/record; ours is {ours / pico:.2f}x it")


def slow_targets(ck: Checks, slow: dict[str, Cell], records: int) -> None:
    c, floor_c = slow["ours"], slow.get("floor")
    total, p99, mx = c.med("per_call", "total"), c.med("per_call", "p99"), c.med("per_call", "max")
    floor_total = floor_c.med("per_call", "total") if floor_c else None
    if total is not None:
        ck.check(total < 0.1e9, f"slow sink: time inside log calls < 0.1 s: {total / 1e9:.3f} s "
                 "(anchors: QueueHandler 0.40 s, aiologger 0.54 s, synchronous loggers 5-12 s)")
        if floor_total is not None:
            ck.check(total - floor_total < 0.1e9, "slow sink: time beyond the floor's own cost (the stdlib "
                     f"Logger with a no-op handler: {floor_total / 1e9:.3f} s) < 0.1 s: {(total - floor_total) / 1e9:.3f} s")
    fp99 = floor_c.med("per_call", "p99") if floor_c else None
    fmax = floor_c.med("per_call", "max") if floor_c else None
    if p99 is not None:
        ck.check(p99 < 20_000, f"slow sink: per-call p99 < 20 us: {p99 / 1e3:.1f} us "
                 f"(the floor's: {fmt(fp99, '.1f', 1e3)} us)")
    if mx is not None:
        ck.check(mx < 1_000_000, f"slow sink: per-call max < 1 ms: {mx / 1e6:.2f} ms, median of the runs' max "
                 f"(the floor's: {fmt(fmax, '.2f', 1e6)} ms: a longer pause there is the machine, not the logger)")
    peak, budget = c.med("handler", "peak_bytes"), c.med("max_bytes")
    if peak is not None and budget is not None:
        ck.check(peak <= budget, f"slow sink: buffer bounded by the budget: peak {peak / 1024:.0f} KiB "
                 f"<= {budget / 1024:.0f} KiB")
    delivered = c.low("delivered")
    ck.check(delivered == records if delivered is not None else None,
             f"slow sink: block policy delivers every record: {fmt(delivered, '.0f')}/{records} (fewest of runs)")
    if "ours_drop" in slow:
        d = slow["ours_drop"]
        peak, budget = d.med("handler", "peak_bytes"), d.med("max_bytes")
        if peak is not None and budget is not None:
            ck.check(peak <= budget + 4096, f"slow sink, drop_newest 256 KiB: peak {peak / 1024:.0f} KiB, "
                     f"dropped {fmt(d.med('handler', 'dropped'), '.0f')} records, counted and reported")


def exit_targets(ck: Checks, ex: dict[tuple[str, str], Cell], records: int) -> None:
    normal, dead = ex.get(("ours", "normal")), ex.get(("ours", "os_exit"))
    if normal is not None:
        got = normal.low("delivered")
        ck.check(got == records if got is not None else None,
                 f"exit: normal exit delivers all: {fmt(got, '.0f')}/{records} (fewest of runs)")
    if dead is not None:
        got, budget = dead.low("delivered"), dead.med("max_bytes")
        if got is not None and budget is not None:
            lost = records - got
            ck.check(lost * RECORD_BYTES <= budget, f"exit: os._exit loses at most the buffer: lost {lost:.0f} "
                     f"records ({lost * RECORD_BYTES / 1024:.0f} KiB) <= budget {budget / 1024:.0f} KiB")


def deferred_targets(ck: Checks, tp: dict[tuple[str, str], Cell], sinks: list[str], records: int) -> None:
    """Issue 19: the deferred path against picologging and the stdlib, sink by sink, as ratios."""
    for sink in sinks:
        def med(lg: str, key: str, sink: str = sink) -> float | None:
            return tp[(lg, sink)].med(key) if (lg, sink) in tp else None
        d_caller, d_total = med("deferred", "caller_ns"), med("deferred", "total_cpu_ns")
        if d_caller is None or d_total is None:
            ck.check(None, f"{sink}: no figure for the deferred path")
            continue
        p_caller, p_total = med("picologging", "caller_ns"), med("picologging", "total_cpu_ns")
        s_total = med("stdlib", "total_cpu_ns")
        if p_caller:
            ck.check(d_caller <= 0.5 * p_caller, f"{sink}: deferred caller <= 0.5x picologging's: "
                     f"{d_caller / p_caller:.2f}x ({d_caller / 1e3:.2f} us vs {p_caller / 1e3:.2f} us, wall clock)")
            d_cpu, p_cpu = med("deferred", "caller_cpu_ns"), med("picologging", "caller_cpu_ns")
            if d_cpu and p_cpu:
                ck.note(f"{sink}: the same in the calling thread's own CPU time: {d_cpu / p_cpu:.2f}x "
                        f"({d_cpu / 1e3:.2f} us vs {p_cpu / 1e3:.2f} us)")
        else:
            ck.check(None, f"{sink}: caller vs picologging: picologging not measured")
        if s_total:
            ck.check(d_total <= 0.5 * s_total, f"{sink}: deferred total CPU (caller + writer) <= 0.5x the stdlib "
                     f"StreamHandler's: {d_total / s_total:.2f}x ({d_total / 1e3:.2f} us vs {s_total / 1e3:.2f} us)")
        if p_total:
            ck.check(d_total <= p_total, f"{sink}: deferred total CPU <= picologging's: {d_total / p_total:.2f}x "
                     f"({d_total / 1e3:.2f} us vs {p_total / 1e3:.2f} us)")
        writes = med("deferred", "writes_per_rec")
        if writes is not None:
            ck.check(writes <= 0.01, f"{sink}: deferred <= 0.01 write syscalls/record: {writes:.4f}")
        got = tp[("deferred", sink)].low("delivered")
        ck.check(got == records if got is not None else None,
                 f"{sink}: deferred delivers every record: {fmt(got, '.0f')}/{records} (fewest of runs)")


def deferred_side_targets(ck: Checks, slow: dict[str, Cell] | None, ex: dict[tuple[str, str], Cell] | None,
                          slow_records: int, exit_records: int) -> None:
    if slow and "deferred" in slow:
        c = slow["deferred"]
        peak, budget, got = c.med("handler", "peak_records"), c.med("max_records"), c.low("delivered")
        if peak is not None and budget is not None:
            ck.check(peak <= budget + 3, f"slow sink, deferred: buffer bounded: peak {peak:.0f} <= {budget:.0f} "
                     "records (+1 over the check, +1 drop notice, +1 newest kept)")
        ck.check(got == slow_records if got is not None else None,
                 f"slow sink, deferred: block policy delivers every record: {fmt(got, '.0f')}/{slow_records}")
    if ex:
        normal, dead = ex.get(("deferred", "normal")), ex.get(("deferred", "os_exit"))
        if normal is not None:
            got = normal.low("delivered")
            ck.check(got == exit_records if got is not None else None,
                     f"exit, deferred: normal exit delivers all: {fmt(got, '.0f')}/{exit_records}")
        if dead is not None:
            got, budget = dead.low("delivered"), dead.med("max_records")
            if got is not None and budget is not None:
                ck.check(exit_records - got <= budget + 1, f"exit, deferred: os._exit loses at most the buffer: "
                         f"lost {exit_records - got:.0f} <= {budget:.0f} records")


def bench_costs(calls: int, reps: int) -> dict[str, Any]:
    """What each part of a deferred record costs (benchmarks/logging/defer_costs.py, a fresh process)."""
    proc = subprocess.run([sys.executable, str(HERE / "logging" / "defer_costs.py"), str(calls), str(reps)],
                          env=child_env(), cwd=str(REPO), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:] or f"exit {proc.returncode}"}
    res: dict[str, Any] = json.loads(proc.stdout)
    return res


def report_costs(costs: dict[str, Any], calls: int, reps: int) -> str:
    head = (f"\n== defer=True: what each part costs (calling thread's CPU per call, {calls:,} calls; writer "
            f"thread's CPU per record; min of {reps}) ==\n")
    if "error" in costs:
        return head + "error: " + costs["error"]
    base = costs["caller"][0]["caller_ns"]
    rows = [[c["label"], fmt(c["caller_ns"], ".0f"), f"{c['caller_ns'] - base:+.0f}" if i else "",
             "stdlib path" if c["on_caller"] else "deferred" if c["deferred"] else "not made"]
            for i, c in enumerate(costs["caller"])]
    out = head + table(["the call, or the format's extra field", "caller ns", "vs baseline", "path"], rows)
    wbase = costs["writer"][0]["writer_ns"]
    rows = [[w["format"], fmt(w["writer_ns"], ".0f"), f"{w['writer_ns'] - wbase:+.0f}" if i else ""]
            for i, w in enumerate(costs["writer"])]
    return out + "\n\n" + table(["format", "writer ns/record", "vs %(message)s"], rows)


IDENTITY_FORMATS = ["message", "asctime", "everything"]


def bench_identity(records: int) -> list[tuple[str, bool, int, str]]:
    """The deferred path's bytes against the stdlib's, for the same calls (the test suite's fixture)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="iolab-identity-") as tmp:
        proc = subprocess.run([sys.executable, str(REPO / "tests" / "fixtures" / "defer_identity.py"), tmp,
                               str(records), *IDENTITY_FORMATS], env=child_env(), cwd=str(REPO),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return [(name, False, 0, f"fixture failed: {proc.stderr.strip()[-200:]}") for name in IDENTITY_FORMATS]
        counts = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()}
        for name in IDENTITY_FORMATS:
            a, b = Path(tmp, f"{name}.stdlib").read_bytes(), Path(tmp, f"{name}.deferred").read_bytes()
            out.append((name, a == b and len(a) > 0, a.count(b"\n"), f"{counts.get(name, '?')} records deferred"))
    return out


def identity_targets(ck: Checks, results: list[tuple[str, bool, int, str]], records: int) -> None:
    fmts = {"message": "%(message)s", "asctime": "%(asctime)s %(levelname)-8s %(name)s: %(message)s",
            "everything": "every LogRecord field"}
    for name, same, lines, note in results:
        ck.check(same, f"identity: {records:,} calls rendered by defer=True == the stdlib's bytes, format "
                 f"{fmts.get(name, name)}: {'identical' if same else 'DIFFERENT'} ({lines:,} lines; {note})")


# ---------------------------------------------------------------------------------------------- main
def machine() -> str:
    """The CPU model, as the targets are per CPU type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions() -> str:
    parts = [f"Python {platform.python_version()}", f"Linux {platform.release()}", f"{os.cpu_count()} CPUs"]
    for pkg in ("loguru", "structlog", "picologging", "aiologger"):
        try:
            parts.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer records and one run each")
    ap.add_argument("--reps", type=int, help="fresh processes per logger and sink (default 5, quick 1)")
    ap.add_argument("--only", help="comma-separated loggers (floor, ours and deferred are always included)")
    ap.add_argument("--sinks", default="pipe,file,pty")
    ap.add_argument("--skip-slow", action="store_true")
    ap.add_argument("--skip-exit", action="store_true")
    ap.add_argument("--skip-identity", action="store_true", help="skip the byte-identity check of defer=True")
    ap.add_argument("--skip-costs", action="store_true", help="skip the per-field cost table of defer=True")
    ap.add_argument("--json", type=Path, help="also write every run's raw figures here")
    args = ap.parse_args(argv)
    records, slow_records, exit_records = (20_000, 10_000, 20_000) if args.quick else (100_000, 50_000, 20_000)
    reps = args.reps or (1 if args.quick else 5)
    side_reps = args.reps or (1 if args.quick else 3)
    wanted = LOGGERS if not args.only else [lg for lg in LOGGERS if lg in {*ALWAYS, *args.only.split(",")}]
    loggers: list[str] = []
    skipped: list[str] = []
    for lg in wanted:
        mod = NEEDS.get(lg)
        (loggers if mod is None or importlib.util.find_spec(mod) else skipped).append(lg)
    sinks = args.sinks.split(",")
    print(f"iolab logging benchmark on {machine()}: {versions()}; load average {loadavg()} at start")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    for lg in skipped:
        print(f"note: {LABELS[lg]} skipped: package {NEEDS[lg]!r} is not installed (pip install {NEEDS[lg]})")
    t0 = time.monotonic()
    tp = bench_throughput(loggers, sinks, records, reps)
    slow = None if args.skip_slow else bench_slow(loggers + ["ours_drop", "deferred_drop"], slow_records, side_reps)
    ex = None if args.skip_exit else bench_exit(loggers, exit_records, side_reps)
    identity_records = 100_000
    identity = None
    if not args.skip_identity:
        progress(f"identity: {identity_records:,} records through the stdlib and through defer=True")
        identity = bench_identity(identity_records)
    cost_calls, cost_reps = (20_000, 3) if args.quick else (100_000, 5)
    costs = None
    if not args.skip_costs:
        progress("defer=True: what each part costs")
        costs = bench_costs(cost_calls, cost_reps)
    progress("")
    sys.stderr.write("\r")
    print(report_throughput(tp, loggers, sinks, records, reps))
    if slow:
        print(report_slow(slow, slow_records, side_reps))
    if ex:
        print(report_exit(ex, loggers, exit_records, side_reps))
    if costs is not None:
        print(report_costs(costs, cost_calls, cost_reps))
    print("\n== targets (ours = iolab.logging.BatchHandler with its defaults: 50 ms deadline, 4 MiB, block) ==")
    ck = Checks()
    throughput_targets(ck, tp, sinks)
    if slow and "ours" in slow:
        slow_targets(ck, slow, slow_records)
    if ex:
        exit_targets(ck, ex, exit_records)
    print("\n".join(ck.lines))
    print(f"\n== targets of the deferred path (iolab.logging.install(defer=True), issue 19) on {machine()} ==")
    ck = Checks()
    deferred_targets(ck, tp, sinks, records)
    deferred_side_targets(ck, slow, ex, slow_records, exit_records)
    if identity is not None:
        identity_targets(ck, identity, identity_records)
    print("\n".join(ck.lines))
    print(f"\n{time.monotonic() - t0:.0f} s; load average {loadavg()} at the end")
    if args.json:
        raw = {"throughput": {f"{lg}/{s}": c.runs for (lg, s), c in tp.items()},
               "slow": {lg: c.runs for lg, c in (slow or {}).items()},
               "exit": {f"{lg}/{k}": c.runs for (lg, k), c in (ex or {}).items()},
               "defer_costs": costs, "identity": identity}
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
