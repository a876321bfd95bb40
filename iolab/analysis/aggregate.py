"""Pure functions that turn raw measurements into result records (no I/O, no clocks)."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from iolab.analysis import latency
from iolab.analysis.stats import coefficient_of_variation, median, summarize
from iolab.analysis.verdict import DEFAULT_METRICS, get_metric
from iolab.results import (
    MainThread,
    PerRequest,
    RoundRecord,
    Sample,
    ScenarioResult,
    Status,
    StdoutInfo,
    ThreadTotal,
)


def per_request(requests: int, write_syscalls: float, write_bytes: float, voluntary: float,
                involuntary: float, cpu_s: float) -> PerRequest:
    if requests <= 0:
        return PerRequest()
    return PerRequest(
        write_syscalls=round(write_syscalls / requests, 4),
        write_bytes=round(write_bytes / requests, 2),
        voluntary_ctx_switches=round(voluntary / requests, 4),
        involuntary_ctx_switches=round(involuntary / requests, 4),
        cpu_ms=round(1000.0 * cpu_s / requests, 5),
    )


def window_samples(samples: Sequence[Sample], start_s: float, end_s: float) -> tuple[Sample, ...]:
    """The per-second samples whose interval ended inside the measured window (pidstat's lines)."""
    return tuple(s for s in samples if start_s < s.t_s <= end_s + 1e-9)


def merge_threads(groups: Sequence[Sequence[ThreadTotal]]) -> tuple[ThreadTotal, ...]:
    by_name: dict[str, list[float]] = {}
    for group in groups:
        for t in group:
            acc = by_name.setdefault(t.name, [0, 0, 0, 0.0])
            acc[0] += t.threads
            acc[1] += t.voluntary_ctx_switches
            acc[2] += t.involuntary_ctx_switches
            acc[3] += t.cpu_ms
    out = [ThreadTotal(name, int(a[0]), int(a[1]), int(a[2]), round(a[3], 3)) for name, a in by_name.items()]
    return tuple(sorted(out, key=lambda t: -t.voluntary_ctx_switches))


def _status(rounds: Sequence[RoundRecord]) -> Status:
    if not rounds or any(r.status == "failed" for r in rounds):
        return "failed"
    return "degraded" if any(r.status == "degraded" for r in rounds) else "ok"


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(median(present), 2) if present else None


def aggregate(name: str, path: str, description: str, rounds: Sequence[RoundRecord]) -> ScenarioResult:
    """Aggregates over the rounds that measured something (ok or degraded): latency from the merged
    histograms, rates as the median of the rounds, per-request counts as totals over total requests,
    per-second summaries over every sample of every round (as if pidstat had run through all of them).
    A figure no round has stays null."""
    ok = [r for r in rounds if r.measured]
    hist = latency.merge(r.latency_hdr for r in ok)
    uncorrected = latency.merge(r.latency_uncorrected_hdr for r in ok)
    samples = [s for r in ok for s in r.samples]
    total_requests = sum(r.requests for r in ok)
    with_server = [r for r in ok if r.per_request.measured]
    server_requests = sum(r.requests for r in with_server)

    def weighted(attr: str, digits: int) -> float | None:
        if server_requests == 0:
            return None
        return round(sum(float(getattr(r.per_request, attr) or 0.0) * r.requests for r in with_server)
                     / server_requests, digits)

    pr = PerRequest(
        write_syscalls=weighted("write_syscalls", 4),
        write_bytes=weighted("write_bytes", 2),
        voluntary_ctx_switches=weighted("voluntary_ctx_switches", 4),
        involuntary_ctx_switches=weighted("involuntary_ctx_switches", 4),
        cpu_ms=weighted("cpu_ms", 5),
    )
    stdout = StdoutInfo(
        kind=ok[0].stdout.kind if ok else (rounds[0].stdout.kind if rounds else "pipe"),
        buffering=ok[0].stdout.buffering if ok else (rounds[0].stdout.buffering if rounds else "unknown"),
        bytes=sum(r.stdout.bytes for r in ok),
        lines=sum(r.stdout.lines for r in ok),
    )
    return ScenarioResult(
        name=name,
        path=path,
        description=description,
        status=_status(rounds),
        rounds=tuple(rounds),
        requests=total_requests,
        successful=sum(r.successful for r in ok),
        failed=sum(r.failed for r in rounds),
        non_2xx=sum(r.non_2xx for r in rounds),
        rps=_median_or_none([r.rps for r in ok]),
        rps_per_server_cpu_s=_median_or_none([r.rps_per_server_cpu_s for r in ok]),
        latency_ms=latency.latency_ms(hist),
        latency_hdr=latency.encode(hist),
        cswch_per_s=summarize([s.cswch_per_s for s in samples]),
        nvcswch_per_s=summarize([s.nvcswch_per_s for s in samples]),
        main_thread=MainThread(
            cswch_per_s=summarize([s.main_cswch_per_s for s in samples]),
            nvcswch_per_s=summarize([s.main_nvcswch_per_s for s in samples]),
        ),
        per_request=pr,
        stdout=stdout,
        threads=merge_threads([r.threads for r in ok]),
        stability_cv_pct=stability(ok),
        latency_uncorrected_ms=latency.latency_ms(uncorrected),
        latency_uncorrected_hdr=latency.encode(uncorrected),
    )


def stability(rounds: Sequence[RoundRecord]) -> dict[str, float]:
    """CV in percent of each verdict metric over the rounds (absent with fewer than 2 rounds)."""
    out: dict[str, float] = {}
    for name in DEFAULT_METRICS:
        source = operator.attrgetter(get_metric(name).source)
        values = [v for r in rounds if (v := source(r)) is not None]
        if len(values) < len(rounds):
            continue  # a figure some round lacks (not measured there): no CV over unlike rounds
        cv = coefficient_of_variation(values)
        if cv is not None:
            out[name] = round(100.0 * cv, 2)
    return out
