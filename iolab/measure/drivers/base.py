"""What every load driver takes (``LoadSpec``) and gives back (``LoadResult``).

A driver is anything with a ``name`` and a ``run(spec, progress)``: the built-in one and the wrappers
around ab, wrk and hey (``iolab.measure.drivers.get_driver``). The experiment loop only sees these records, so a
driver can be swapped without touching it.

Closed loop (the default, like ``ab -n N -c C``): ``concurrency`` clients each send a request, wait for
the whole response, then send the next, until ``requests`` have been attempted, or for ``duration_s``
seconds when that is given without a rate (like ``wrk -d``). Open loop (like wrk2): ``rate`` requests per
second for ``duration_s`` seconds, each due at a fixed time (``arrival="uniform"``) or at Poisson
arrivals (``"poisson"``) whether or not the server kept up; latency is then counted from the time the
request was due, so a stalled server cannot hide its stall (coordinated omission).

Progress is ``(requests finished, requests expected)``; in a closed loop for a duration, where the count
is not known in advance, it is ``(milliseconds elapsed, milliseconds planned)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from iolab.errors import UsageError

# The one place that says how progress is reported: (requests finished, requests expected).
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class LoadSpec:
    """The load to apply. Invalid combinations raise ``UsageError`` on construction."""

    url: str  # http://127.0.0.1:PORT/path
    requests: int = 10_000  # closed loop: total requests (ab -n); open loop: rate × duration instead
    concurrency: int = 100  # requests in flight at most (ab -c); open loop: a due request waits for one
    keepalive: bool = False  # reuse connections (ab -k); the default opens one per request, as ab does
    timeout_s: float = 30.0  # per request, connect (or send) to last byte
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    rate: float | None = None  # open loop: requests per second …
    duration_s: float | None = None  # … for this long; without a rate: a closed loop for this long
    cpus: tuple[int, ...] | None = None  # pin the driver process to these CPUs
    arrival: str = "uniform"  # open loop: "uniform" (fixed intervals) or "poisson" (exponential gaps)
    seed: int = 0  # open loop, poisson: the same seed gives the same schedule
    # open loop: "timerfd" (each request sent within µs of its due time) or "loop" (the event loop's 1 ms
    # timers: requests leave in per-millisecond bursts, as wrk2's do; the benchmark uses it for comparison)
    pacing: str = "timerfd"

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise UsageError(f"load: {problem}")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def timed(self) -> bool:
        """A closed loop that runs for ``duration_s`` rather than for ``requests``."""
        return self.rate is None and self.duration_s is not None

    @property
    def expected_requests(self) -> int:
        """How many requests the run will attempt (what progress counts towards; 0 when timed)."""
        if self.rate is not None and self.duration_s is not None:
            return max(1, int(self.rate * self.duration_s))
        if self.duration_s is not None:
            return 0
        return self.requests


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'20s', '500ms', '2m', '1h' or a bare number of seconds → seconds. Raises ``UsageError``."""
    raw = text.strip().lower()
    number, unit = raw, "s"
    for suffix in ("ms", "s", "m", "h"):
        if raw.endswith(suffix):
            number, unit = raw[: -len(suffix)], suffix
            break
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise UsageError(f"cannot read the duration {text!r} (e.g. 20s, 500ms, 2m)") from None
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"a duration must be positive (got {text!r})")
    return seconds


def _problem(spec: LoadSpec) -> str | None:
    if not spec.url:
        return "a URL is required"
    if spec.requests < 1:
        return f"requests must be at least 1 (got {spec.requests})"
    if spec.concurrency < 1:
        return f"concurrency must be at least 1 (got {spec.concurrency})"
    if not spec.timeout_s > 0:
        return f"timeout must be positive (got {spec.timeout_s})"
    if spec.rate is not None and spec.duration_s is None:
        return "open loop needs both a rate and a duration"
    if spec.pacing not in ("timerfd", "loop"):
        return f"pacing must be timerfd or loop (got {spec.pacing!r})"
    if spec.arrival not in ("uniform", "poisson"):
        return f"arrival must be uniform or poisson (got {spec.arrival!r})"
    if spec.rate is not None and not spec.rate > 0:
        return f"rate must be positive (got {spec.rate})"
    if spec.duration_s is not None and not spec.duration_s > 0:
        return f"duration must be positive (got {spec.duration_s})"
    if not spec.method or not spec.method.isascii() or not spec.method.isalpha():
        return f"method must be a word such as GET or POST (got {spec.method!r})"
    for name, value in spec.headers:
        if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n"):
            return f"bad header {name!r}: {value!r}"
    if spec.cpus is not None and (not spec.cpus or any(c < 0 for c in spec.cpus)):
        return f"cpus must be a non-empty list of CPU numbers (got {spec.cpus})"
    return None


@dataclass(frozen=True)
class Schedule:
    """Open loop: the schedule asked for and how well the driver kept it.

    A request leaves late when no connection is free at its due time (all ``concurrency`` are waiting on
    the server: the corrected latency counts that wait, as it should) or when the driver itself is too
    slow to send on time (then the driver, not the server, is the bottleneck and the run says little).
    """

    target_rate: float  # requests per second asked for
    achieved_rate: float  # requests sent ÷ (last send − first due)
    arrival: str  # uniform | poisson
    sent: int
    late: int  # sent more than LATE_US after due
    late_no_connection: int  # … of which: every connection was busy at the due time
    lag_p50_us: int  # send time − due time, over every request
    lag_p99_us: int
    lag_max_us: int
    timer: str = ""  # what woke the driver at due times: "timerfd" (µs) or "event loop (1 ms)"

    @property
    def late_by_driver(self) -> int:
        return self.late - self.late_no_connection


# A request sent this much after its due time counts as late: a little over the event loop's timer grain.
LATE_US = 2_000


@dataclass(frozen=True)
class LoadResult:
    """What a run did. Failures are counted, never raised: the caller decides what a failed run means."""

    driver: str  # "builtin", "ab", "wrk", …
    requests: int  # attempted
    completed: int  # responses fully received (any status)
    ok_2xx: int
    non_2xx: int
    connect_errors: int  # refused / reset / closed before any byte of a response
    timeouts: int
    other_errors: int  # malformed response, connection closed mid-response, …
    status_counts: dict[int, int]
    duration_s: float  # first send to last completion (wall)
    latencies_us: tuple[int, ...]  # one per completed response, µs, in completion order
    bytes_received: int  # headers and bodies
    cpu_user_s: float  # the driver process's own CPU, from wait4 (start-up included)
    cpu_sys_s: float
    errors_sample: tuple[str, ...]  # the first few distinct error messages, for the report
    raw_output: str = ""  # external drivers keep their own output here
    # Open loop only: from the moment each request was actually sent. ``latencies_us`` then counts from
    # the moment it was due (corrected for coordinated omission); the gap between them is queueing.
    latencies_uncorrected_us: tuple[int, ...] = ()
    # --- Latency where a tool gives no per-request samples (``latencies_us`` is then empty) ---------------
    # An exact distribution as (µs, count) pairs, no order (wrk, read out of its own histogram).
    latency_counts_us: tuple[tuple[int, int], ...] = ()
    # Else the tool's own percentile table, percent → µs (ab -e: 0…100; hey: 10…99 plus fastest/slowest).
    percentiles_us: dict[float, int] = field(default_factory=dict)
    latency_mean_us: float | None = None  # the tool's own mean, where the samples are not here
    latency_resolution_us: int = 1  # what the tool prints: ab 1 (its -e table), hey 100, wrk 1
    # CPU of the load window alone, measured inside the driver (getrusage around the load), so start-up
    # and result encoding stay out of ``driver_cpu_pct_of_core``. None where the tool cannot tell (the
    # external tools: use cpu_user_s/cpu_sys_s, whose start-up is a few ms of a C or Go program).
    cpu_load_user_s: float | None = None
    cpu_load_sys_s: float | None = None
    # Open loop: how well the schedule was kept.
    schedule: Schedule | None = None
    # The builtin driver: when each latency sample completed, ms after the first request was due (open
    # loop) or sent (closed loop), in the order of latencies_us; what per-second HdrHistogram log intervals
    # and latency second by second (issue 20) are cut from.
    timeline_ms: tuple[int, ...] = ()
    command: tuple[str, ...] = ()  # the external tool's command line, as run
    # Anything else worth keeping, per driver: its version, wrk's own coordinated-omission-adjusted
    # percentiles, hey's timeout rounded up to whole seconds, ab's "Length" failures …
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.connect_errors + self.timeouts + self.other_errors

    @property
    def cpu_s(self) -> float:
        """The driver process's whole CPU (wait4)."""
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def cpu_load_s(self) -> float:
        """CPU of the load window where the driver measured it, else the whole process's."""
        if self.cpu_load_user_s is None or self.cpu_load_sys_s is None:
            return self.cpu_s
        return self.cpu_load_user_s + self.cpu_load_sys_s

    @property
    def rps(self) -> float:
        """Completed responses per second of wall time."""
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0


class Driver(Protocol):
    name: str

    def run(self, spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult: ...
