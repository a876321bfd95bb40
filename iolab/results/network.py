"""Result records of logging across a network (issue 20): what reached the collector, latency per second.

Optional everywhere (``None`` / empty): a run without ``--net-*`` and every older file have none.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Delivery:
    """A scenario's records from the server to its collector, over one round or summed over rounds.

    ``sent``: records the server logged (counted in the server, warm-up included); ``received``: distinct
    records the collector got; ``lost`` = sent − received (never negative); ``duplicated``: records the
    collector got more than once; ``dropped``: what the logging handler itself dropped and counted
    (iolab.logging's handlers; ``None`` where the handler keeps no count, as the stdlib's); ``max_delay_ms``:
    the longest time from the log call to the collector's receipt. ``round_trips_per_record``: TCP handshakes
    plus HTTP request/answer exchanges the collector saw, per record it received (``None`` for rsyslogd,
    which keeps its connections to itself). ``outage_s``: how long the collector was stopped during the
    load. ``flushed``: the server's handlers finished closing before it exited (False: it was stopped
    first, and what they still held was lost; None: unknown, not the demo's scenarios).
    ``buffer_peak_bytes`` / ``buffer_budget_bytes``: iolab.logging's handler, the most it held in memory
    and its budget (``max_bytes``); None for the other handlers.
    """

    collector: str
    sent: int
    received: int
    lost: int
    duplicated: int
    max_delay_ms: float | None
    dropped: int | None = None
    connections: int | None = None
    http_requests: int | None = None
    round_trips_per_record: float | None = None
    outage_s: float | None = None
    flushed: bool | None = None
    buffer_peak_bytes: int | None = None
    buffer_budget_bytes: int | None = None


@dataclass(frozen=True)
class SecondLatency:
    """The responses that completed in one second of the measured load (second 0 = the load's start)."""

    second: int
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
