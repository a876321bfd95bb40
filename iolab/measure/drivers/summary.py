"""From any driver's ``LoadResult`` to what a result record holds: percentiles, an HdrHistogram, facts.

Drivers give latency in one of three forms (``base.LoadResult``): per-request samples (builtin), an exact
histogram (wrk), or the tool's own percentile table (ab, hey). ``latency_summary`` turns each into the
same ``LatencyMs`` and encoded HdrHistogram. From a percentile table the percentiles the tool gave are
kept as given; one it did not give (hey has no 66th, ab and hey no 99.9th) is shown as the next higher
one it gave (an upper bound) and listed in ``filled``; and the histogram, which aggregation across rounds
merges, is rebuilt from the table (``approximate``: every sample is placed evenly between the two given
percentiles around it).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from hdrh.histogram import HdrHistogram

from iolab.analysis import latency
from iolab.measure.drivers.base import LoadResult
from iolab.results import NOTHING_MEASURED, TOO_MANY_ERRORS, LatencyMs, Status

_SPREAD = 32  # points an interval of a rebuilt histogram is spread over
LATE_WARN_PCT = 5.0  # open loop: warn when more than this share of requests left > 2 ms late
# A round whose requests did not succeed (no response, or a status outside 2xx/3xx) in more than this
# share is "degraded" (exit 8; --max-error-pct). Why 1 %: latency percentiles are computed over the
# responses that arrived, and a failed request has no latency (a refused one took no time, a timed-out
# one never ended), so once more than 1 % of requests are missing or are errors, everything above p99
# may describe them rather than the service: p99, the tail figure reports and gates lean on, no longer
# describes the requests that were made. A healthy server on loopback fails none.
MAX_ERROR_PCT = 1.0


@dataclass(frozen=True)
class LatencySummary:
    latency_ms: LatencyMs
    hdr: str  # encoded HdrHistogram ("" when nothing completed)
    source: str  # samples | histogram | percentiles | none
    approximate: bool  # the histogram was rebuilt from a percentile table
    filled: tuple[str, ...]  # LatencyMs fields the tool did not give (shown as the next higher it gave)
    resolution_us: int


def histogram_of(load: LoadResult) -> tuple[HdrHistogram, str, bool]:
    """(histogram, source, approximate) of the latencies as recorded (corrected, in an open loop)."""
    if load.latencies_us:
        return latency.histogram(load.latencies_us), "samples", False
    if load.latency_counts_us:
        return counts_histogram(load.latency_counts_us), "histogram", False
    if load.percentiles_us and load.completed:
        return rebuild(load.percentiles_us, load.completed), "percentiles", True
    return latency.new_histogram(), "none", False


def counts_histogram(pairs: tuple[tuple[int, int], ...]) -> HdrHistogram:
    h = latency.new_histogram()
    for value, count in pairs:
        h.record_value(max(latency.LOWEST_US, min(int(value), latency.HIGHEST_US)), int(count))
    return h


def rebuild(percentiles_us: dict[float, int], count: int) -> HdrHistogram:
    """A histogram of ``count`` samples whose percentiles match the given ones (approximately between)."""
    h = latency.new_histogram()
    points = sorted((float(p), max(latency.LOWEST_US, int(v))) for p, v in percentiles_us.items())
    if points[0][0] > 0:
        points.insert(0, (0.0, points[0][1]))
    h.record_value(points[0][1], 1)  # the fastest
    placed = 1
    for (_, v0), (p1, v1) in zip(points, points[1:], strict=False):
        target = count if p1 >= 100.0 else min(count, round(count * p1 / 100.0))
        share = max(0, target - placed)
        steps = max(1, min(_SPREAD, share))
        for i in range(steps):
            n = share // steps + (1 if i < share % steps else 0)
            if n > 0:
                h.record_value(round(v0 + (v1 - v0) * (i + 1) / steps), n)
        placed += share
    if placed < count:  # a table that stops short of 100 %: the rest at its last value
        h.record_value(points[-1][1], count - placed)
    return h


def latency_summary(load: LoadResult) -> LatencySummary:
    hist, source, approximate = histogram_of(load)
    ms = latency.latency_ms(hist)
    filled: list[str] = []
    if source == "percentiles":  # the tool's own figures where it gave them, exact at its resolution
        given = sorted(load.percentiles_us.items())
        values = {}
        for q in latency.PERCENTILES:
            name = latency.percentile_field(q)
            exact = load.percentiles_us.get(float(q))
            if exact is None:
                exact = next((v for p, v in given if p >= q), given[-1][1])
                filled.append(name)
            values[name] = round(exact / 1000.0, 3)
        ms = LatencyMs(**values, mean=ms.mean)
    if load.latency_mean_us is not None and source not in ("samples", "none"):
        ms = LatencyMs(**{**ms.__dict__, "mean": round(load.latency_mean_us / 1000.0, 3)})
    return LatencySummary(ms, latency.encode(hist), source, approximate, tuple(filled),
                          load.latency_resolution_us)


def uncorrected_summary(load: LoadResult) -> LatencySummary | None:
    """Open loop: latency from each request's actual send (what a closed-loop tool would have shown)."""
    if not load.latencies_uncorrected_us:
        return None
    hist = latency.histogram(load.latencies_uncorrected_us)
    return LatencySummary(latency.latency_ms(hist), latency.encode(hist), "samples", False, (), 1)


def behind_schedule(load: LoadResult) -> str | None:
    """The warning text when an open-loop driver did not keep its schedule, else None."""
    s = load.schedule
    if s is None or s.sent == 0:
        return None
    short = s.achieved_rate < 0.95 * s.target_rate
    late_pct = 100.0 * s.late / s.sent
    # A few late sends are timer and scheduler noise on a busy machine; 5 % is a pattern.
    if not short and late_pct <= LATE_WARN_PCT:
        return None
    cause = (f"{s.late_no_connection} of them because all connections were busy (the server's queue: the "
             "corrected latency includes it; raise -c if the server could go faster)"
             if s.late_no_connection else "")
    by_driver = s.late_by_driver
    if by_driver:
        cause += ("; " if cause else "") + (
            f"{by_driver} because the driver itself could not send on time (its own CPU or timers: "
            "lower --rate, or give the driver a core of its own)")
    return (f"the load driver fell behind its schedule: {s.achieved_rate:,.0f} req/s sent of "
            f"{s.target_rate:,.0f} asked; {s.late:,} of {s.sent:,} requests ({late_pct:.1f} %) left more "
            f"than 2 ms after they were due (worst {s.lag_max_us / 1000:,.1f} ms){': ' + cause if cause else ''}.")


def load_facts(load: LoadResult) -> dict[str, object]:
    """What a round's record should say about how the load was applied (driver, mode, rates, precision)."""
    _, summary_source, approximate = histogram_of(load)
    facts: dict[str, object] = {
        "driver": load.driver,
        "command": list(load.command),
        "latency_source": summary_source,
        "latency_approximate": approximate,
        "latency_resolution_us": load.latency_resolution_us,
        "driver_cpu_load_s": round(load.cpu_load_s, 4),
        "driver_cpu_total_s": round(load.cpu_s, 4),
        **load.facts,
    }
    if load.schedule is not None:
        s = load.schedule
        facts.update(mode="open", target_rate=s.target_rate, achieved_rate=s.achieved_rate,
                     arrival=s.arrival, late_requests=s.late, late_no_connection=s.late_no_connection,
                     send_lag_p50_us=s.lag_p50_us, send_lag_p99_us=s.lag_p99_us, send_lag_max_us=s.lag_max_us,
                     pacing_timer=s.timer)
    return facts


# ------------------------------------------------------------------------------------ success or not


def successful(load: LoadResult) -> int:
    """Completed responses with a 2xx or 3xx status: what "a request succeeded" means everywhere.

    From the status counts where the driver gives them (builtin, hey); else from its own 2xx count (wrk's
    counts 3xx as successful too; ab's counts only 2xx, as ab says nothing finer than "Non-2xx").
    """
    if load.status_counts:
        return sum(n for code, n in load.status_counts.items() if 200 <= code < 400)
    return max(0, load.ok_2xx)


def attempted(load: LoadResult) -> int:
    """Requests that got a response or failed for want of one (wrk counts timeouts per connection found
    waiting, not per request, so with wrk this is approximate)."""
    return load.completed + load.failed


def error_pct(load: LoadResult) -> float | None:
    """Share of the attempted requests, in percent, that did not succeed (None when none was attempted)."""
    total = attempted(load)
    if total <= 0:
        return None
    return 100.0 * min(total, max(0, total - successful(load))) / total


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _statuses(load: LoadResult) -> str:
    bad = sorted(((n, code) for code, n in load.status_counts.items() if not 200 <= code < 400), reverse=True)
    return ", ".join(f"{code} × {n:,}" for n, code in bad)


def failure_breakdown(load: LoadResult, timeout_s: float, url: str = "") -> str:
    """What went wrong with the requests that did not succeed, in words, e.g. "200 connection errors to
    127.0.0.1:9 (connect: Connection refused)", "every request timed out after 0.5 s (--timeout)",
    "every response was 500"."""
    total = attempted(load)
    bad_responses = max(0, load.completed - successful(load))
    where = urlsplit(url).netloc if url else ""
    # The tool's first two distinct messages (ab's second one says what its first one only hints at).
    sample = "; ".join(load.errors_sample[:2])
    if load.facts.get("aborted") and sample:
        return sample  # the tool stopped at its first error and says why (ab, wrk)
    if total == 0:  # wrk, say, against a server that never answers: it counts only what it checks for
        return f"no response arrived, and {load.driver} counted no failed request either" + (
            f" ({sample})" if sample else "")
    if not load.completed and load.timeouts and not load.connect_errors and not load.other_errors:
        return f"every request timed out after {timeout_s:g} s (--timeout)"
    if bad_responses and bad_responses == total:
        codes = _statuses(load)
        if len(load.status_counts) == 1:
            return f"every response was {next(iter(load.status_counts))} ({_plural(total, 'request')})"
        if codes:
            return f"every response was an error status ({codes})"
        return (f"every response was non-2xx ({_plural(total, 'response')}; {load.driver} does not say "
                "which status)")
    parts = []
    if load.connect_errors:
        parts.append(_plural(load.connect_errors, "connection error") + (f" to {where}" if where else ""))
    if load.timeouts:
        parts.append(_plural(load.timeouts, "timeout") + f" (no response within {timeout_s:g} s, --timeout)")
    if load.other_errors:
        parts.append(_plural(load.other_errors, "other error"))
    if bad_responses:
        codes = _statuses(load)
        parts.append(_plural(bad_responses, "error response") + (f" ({codes})" if codes else " (non-2xx)"))
    text = ", ".join(parts)
    if sample and load.failed:
        text += f" ({sample})"
    return text


@dataclass(frozen=True)
class Outcome:
    """A round's verdict on its own load: ok, degraded (too many errors) or failed (nothing succeeded)."""

    status: Status
    error_kind: str | None
    error: str | None
    successful: int


def outcome(load: LoadResult, timeout_s: float, max_error_pct: float = MAX_ERROR_PCT,
            url: str = "") -> Outcome:
    """``failed`` when no request succeeded (whatever the driver's exit code: a driver that ran and
    found nothing listening worked, the target did not); ``degraded`` when more than ``max_error_pct``
    percent of the attempted requests did not succeed; else ``ok``."""
    ok = successful(load)
    if ok == 0:
        return Outcome("failed", NOTHING_MEASURED,
                       "no request succeeded: " + failure_breakdown(load, timeout_s, url), 0)
    share = error_pct(load)
    if share is not None and share > max_error_pct:
        why = failure_breakdown(load, timeout_s, url)
        return Outcome("degraded", TOO_MANY_ERRORS,
                       f"{share:.1f} % of {attempted(load):,} requests did not succeed (the limit is "
                       f"{max_error_pct:g} %, --max-error-pct): {why}", ok)
    return Outcome("ok", None, None, ok)
