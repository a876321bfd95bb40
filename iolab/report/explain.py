"""The explain pass in every report format: "Where the writes go" and "Who waits", per scenario.

Plain tables (report.tables.Table), so the terminal, Markdown and HTML exporters render them as they
render every other table, and ``iolab report`` re-renders them from a results file.
"""

from __future__ import annotations

from iolab.report.table import Table
from iolab.report.tables import MISSING
from iolab.results import RunResult, ScenarioResult
from iolab.results.explain import Explain

WRITES_HEADERS = ("Destination", "Target", "Thread", "Syscall", "Calls/req", "Bytes/req", "µs blocked/req",
                  "µs mean", "µs p99 ≤")


def _n(v: float | None, digits: int = 2) -> str:
    return MISSING if v is None else f"{v:,.{digits}f}"


def _x(v: float | None) -> str:
    return MISSING if v is None else f"×{v:.2f}"


def how(e: Explain) -> str:
    """One line: the method, the requests, and what it cost."""
    if e.method == "none":
        return f"not traced: {e.reason or 'no tracer'}"
    text = f"{e.method}, {e.requests:,} requests, latency {_x(e.slowdown)} of the measured rounds"
    if e.sampler != "none":
        text += f"; with {e.sampler} sampling {_x(e.sampler_slowdown)}"
    elif e.sampler_reason:
        text += f"; no Python stacks ({e.sampler_reason})"
    if e.reason:
        text += f"; {e.reason}"
    return text


def writes_table(s: ScenarioResult) -> Table | None:
    e = s.explain
    if e is None:
        return None
    rows = tuple(
        (w.destination, w.target, w.thread if w.threads <= 1 else f"{w.thread} (×{w.threads})", w.syscall,
         _n(w.calls_per_request, 3), _n(w.bytes_per_request, 0), _n(w.syscall_us_per_request, 1),
         _n(w.syscall_us_mean, 1), _n(w.syscall_us_p99, 0))
        for w in e.writes)
    caption = how(e)
    if e.method != "none":
        left_out = (e.output_syscalls_per_request or 0.0) - (e.syscw_attributed_per_request or 0.0)
        caption += (f". All output syscalls: {_n(e.output_syscalls_per_request, 3)}/request; syscw counted "
                    f"{_n(e.syscw_per_request, 3)}/request (the rows' write-family calls: "
                    f"{_n(e.syscw_attributed_per_request, 3)})")
        if left_out > 0.0005:
            caption += f"; syscw leaves out {left_out:.3f}/request of send, sendto, sendmsg and sendmmsg"
        caption += ". p99 is the upper bound of a log2 bucket"
    return Table(title=f"Where the writes go — {s.path}", headers=WRITES_HEADERS, rows=rows, caption=caption,
                 left_columns=4)


def waits_table(s: ScenarioResult) -> Table | None:
    e = s.explain
    if e is None or (not e.blocked_sites and e.sampler == "none"):
        return None
    rows = tuple((b.site, b.thread, "in an output syscall" if b.state == "output-syscall" else "waiting for the GIL",
                  f"{100 * b.share_of_thread_wall:.1f}%") for b in e.blocked_sites)
    return Table(title=f"Who waits — {s.path}", headers=("Python line", "Thread", "State", "Share of thread's time"),
                 rows=rows, left_columns=3,
                 caption=f"{e.sampler} samples (idle threads included, so shares are of wall time) during the "
                         "second half of the explain round; sites under 0.5% are left out")


def explain_tables(result: RunResult) -> list[Table]:
    out: list[Table] = []
    for s in result.scenarios:
        out += [t for t in (writes_table(s), waits_table(s)) if t is not None]
    return out
