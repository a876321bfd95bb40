"""The explain record from raw per-call data: pure functions, no /proc, no processes.

Rows are per (destination, target, syscall, thread group); a thread group is a thread name with its
number taken out, so a pool of 40 workers reads as one row with ``threads: 40``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from iolab.results.explain import BlockedSite, ExplainWrite

# The syscalls /proc/PID/io syscw counts (vfs_write, vfs_writev and do_sendfile increment it; the
# socket calls send* do not).
SYSCW_SYSCALLS = frozenset({"write", "writev", "pwrite64", "pwritev", "sendfile64"})
_NUMBERED = re.compile(r"[\s_\-#]\d+")


@dataclass(frozen=True)
class Call:
    """The calls of one thread on one destination with one syscall, as traced."""

    destination: str
    target: str
    fd_kind: str
    syscall: str
    thread: str
    tid: int
    calls: int
    bytes: int | None
    total_ns: int
    hist: tuple[tuple[int, int, int], ...]  # (lowest ns, highest ns, calls) log2 buckets


@dataclass(frozen=True)
class Sampled:
    """py-spy samples of one thread at one Python site in one state."""

    thread: str
    state: str
    site: str | None
    count: int


def thread_group(name: str) -> str:
    """'AnyIO worker 12' → 'AnyIO worker'; 'ThreadPoolExecutor-0_3' → 'ThreadPoolExecutor';
    'Thread-463 (process_request_thread)' → 'Thread (process_request_thread)'; 'python3' stays."""
    return _NUMBERED.sub("", name.strip()) or name


def p99_us(hist: Iterable[tuple[int, int, int]]) -> float | None:
    """The upper bound (µs) of the log2 bucket that holds the 99th percentile call."""
    buckets = sorted(hist)
    total = sum(n for _, _, n in buckets)
    if total == 0:
        return None
    need, seen = 0.99 * total, 0
    for _, hi, n in buckets:
        seen += n
        if seen >= need:
            return (hi + 1) / 1000.0
    return (buckets[-1][1] + 1) / 1000.0


def write_rows(calls: Iterable[Call], requests: int) -> tuple[ExplainWrite, ...]:
    """Rows per (destination, target, fd kind, syscall, thread group), most calls per request first."""
    groups: dict[tuple[str, str, str, str, str], list[Call]] = defaultdict(list)
    for c in calls:
        groups[(c.destination, c.target, c.fd_kind, c.syscall, thread_group(c.thread))].append(c)
    rows = []
    per = max(requests, 1)
    for (dest, target, kind, syscall, thread), cs in groups.items():
        n = sum(c.calls for c in cs)
        if n == 0:
            continue
        ns = sum(c.total_ns for c in cs)
        byts = None if any(c.bytes is None for c in cs) else sum(c.bytes or 0 for c in cs)
        merged: dict[tuple[int, int], int] = defaultdict(int)
        for c in cs:
            for lo, hi, k in c.hist:
                merged[(lo, hi)] += k
        rows.append(ExplainWrite(
            destination=dest, target=target, fd_kind=kind, syscall=syscall, thread=thread,
            threads=len({c.tid for c in cs}), calls_per_request=n / per,
            bytes_per_request=None if byts is None else byts / per,
            syscall_us_mean=ns / n / 1000.0, syscall_us_p99=p99_us((lo, hi, k) for (lo, hi), k in merged.items()),
            syscall_us_per_request=ns / 1000.0 / per, in_syscw=syscall in SYSCW_SYSCALLS))
    return tuple(sorted(rows, key=lambda r: (-r.calls_per_request, r.destination, r.thread, r.syscall)))


def output_calls_per_request(rows: Iterable[ExplainWrite]) -> float:
    return sum(r.calls_per_request for r in rows)


def syscw_calls_per_request(rows: Iterable[ExplainWrite]) -> float:
    """The rows' calls that /proc/PID/io syscw counts too: these must match the measured syscw."""
    return sum(r.calls_per_request for r in rows if r.in_syscw)


def blocked_sites(samples: Iterable[Sampled], top: int = 12, min_share: float = 0.005) -> tuple[BlockedSite, ...]:
    """Python sites where a thread group sat in an output syscall or waited for the GIL, with their share
    of that group's samples (py-spy samples idle threads too, so samples stand for wall time)."""
    total: dict[str, int] = defaultdict(int)
    hits: dict[tuple[str, str, str], int] = defaultdict(int)
    for s in samples:
        group = thread_group(s.thread)
        total[group] += s.count
        if s.state in ("output-syscall", "gil-wait"):
            hits[(s.site or "(no Python frame)", group, s.state)] += s.count
    sites = [BlockedSite(site, group, state, n / total[group]) for (site, group, state), n in hits.items()
             if total[group] and n / total[group] >= min_share]
    return tuple(sorted(sites, key=lambda b: -b.share_of_thread_wall)[:top])


def slowdown(explain_mean_ms: float | None, measured_mean_ms: float | None) -> float | None:
    if not explain_mean_ms or not measured_mean_ms:
        return None
    return explain_mean_ms / measured_mean_ms
