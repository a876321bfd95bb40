"""The explain pass's records (docs/explain.md): where each output syscall went, from which thread, and
which Python line waited. An optional part of a scenario: files without it load as before."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExplainWrite:
    """One row: the output calls of one thread group to one destination with one syscall."""

    destination: str  # client-socket | stdout | stderr | loop-wakeup | file | collector-socket | other
    target: str
    fd_kind: str
    syscall: str
    thread: str  # a thread name; a numbered pool reads as its name with the number taken out
    threads: int  # how many threads of that name made these calls
    calls_per_request: float
    bytes_per_request: float | None  # None for sendmmsg (it returns messages, not bytes)
    syscall_us_mean: float
    syscall_us_p99: float | None  # from a log2 histogram: the upper bound of the p99 call's bucket
    syscall_us_per_request: float
    in_syscw: bool  # counted by /proc/PID/io syscw (the write family, not send*)


@dataclass(frozen=True)
class BlockedSite:
    site: str  # the innermost Python frame, "function (file:line)"
    thread: str
    state: str  # output-syscall | gil-wait
    share_of_thread_wall: float  # of that thread group's samples


@dataclass(frozen=True)
class Explain:
    method: str  # bpftrace | strace | none
    requests: int
    slowdown: float | None  # tracer-only half's mean latency ÷ the measured rounds' mean latency
    syscw_per_request: float | None
    output_syscalls_per_request: float | None
    writes: tuple[ExplainWrite, ...] = ()
    blocked_sites: tuple[BlockedSite, ...] = ()
    reason: str | None = None  # why method is "none", or what could not be seen
    sampler: str = "none"  # py-spy | none
    sampler_slowdown: float | None = None  # the sampled half's mean latency ÷ the measured mean latency
    sampler_reason: str | None = None
    syscw_attributed_per_request: float | None = None  # the write-family calls of the rows, for syscw
