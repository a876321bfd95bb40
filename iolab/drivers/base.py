"""What every load driver takes (``LoadSpec``) and gives back (``LoadResult``).

A driver is anything with a ``name`` and a ``run(spec, progress)``: the built-in one, and later wrappers
around ab, wrk and hey. The experiment loop only sees these records, so a driver can be swapped without
touching it.

Closed loop (the default, like ``ab -n N -c C``): ``concurrency`` clients each send a request, wait for
the whole response, then send the next, until ``requests`` have been attempted. Open loop (like wrk2):
``rate`` requests per second for ``duration_s`` seconds, each due at a fixed time whether or not the
server kept up; latency is then counted from the time the request was due, so a stalled server cannot
hide its stall (coordinated omission).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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
    duration_s: float | None = None  # … for this long
    cpus: tuple[int, ...] | None = None  # pin the driver process to these CPUs

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise UsageError(f"load: {problem}")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def expected_requests(self) -> int:
        """How many requests the run will attempt (what progress counts towards)."""
        if self.rate is not None and self.duration_s is not None:
            return max(1, int(self.rate * self.duration_s))
        return self.requests


def _problem(spec: LoadSpec) -> str | None:
    if not spec.url:
        return "a URL is required"
    if spec.requests < 1:
        return f"requests must be at least 1 (got {spec.requests})"
    if spec.concurrency < 1:
        return f"concurrency must be at least 1 (got {spec.concurrency})"
    if not spec.timeout_s > 0:
        return f"timeout must be positive (got {spec.timeout_s})"
    if (spec.rate is None) != (spec.duration_s is None):
        return "open loop needs both a rate and a duration"
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

    @property
    def failed(self) -> int:
        return self.connect_errors + self.timeouts + self.other_errors

    @property
    def rps(self) -> float:
        """Completed responses per second of wall time."""
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0


class Driver(Protocol):
    name: str

    def run(self, spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult: ...
