"""Pure functions that turn raw measurements into result records (no I/O, no clocks)."""

from __future__ import annotations

from collections.abc import Sequence

from iolab import latency
from iolab.results import (
    MainThread,
    PerRequest,
    RoundRecord,
    Sample,
    ScenarioResult,
    StdoutInfo,
    ThreadTotal,
)
from iolab.stats import coefficient_of_variation, median, summarize
from iolab.verdict import DEFAULT_METRICS, metric_value


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


def aggregate(name: str, path: str, description: str, rounds: Sequence[RoundRecord]) -> ScenarioResult:
    """Aggregates over the rounds that completed: latency from the merged histograms, rates as the median
    of the rounds, per-request counts as totals over total requests, per-second summaries over every
    sample of every round (as if pidstat had run through all of them)."""
    ok = [r for r in rounds if r.status == "ok"]
    hist = latency.merge(r.latency_hdr for r in ok)
    uncorrected = latency.merge(r.latency_uncorrected_hdr for r in ok)
    samples = [s for r in ok for s in r.samples]
    total_requests = sum(r.requests for r in ok)

    def weighted(attr: str) -> float:
        if total_requests == 0:
            return 0.0
        return sum(getattr(r.per_request, attr) * r.requests for r in ok) / total_requests

    pr = PerRequest(
        write_syscalls=round(weighted("write_syscalls"), 4),
        write_bytes=round(weighted("write_bytes"), 2),
        voluntary_ctx_switches=round(weighted("voluntary_ctx_switches"), 4),
        involuntary_ctx_switches=round(weighted("involuntary_ctx_switches"), 4),
        cpu_ms=round(weighted("cpu_ms"), 5),
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
        status="ok" if ok and len(ok) == len(rounds) else "failed",
        rounds=tuple(rounds),
        requests=total_requests,
        failed=sum(r.failed for r in rounds),
        non_2xx=sum(r.non_2xx for r in rounds),
        rps=round(median([r.rps for r in ok]), 2) if ok else 0.0,
        rps_per_server_cpu_s=round(median([r.rps_per_server_cpu_s for r in ok]), 2) if ok else 0.0,
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
        cv = coefficient_of_variation([metric_value(r, name) for r in rounds])
        if cv is not None:
            out[name] = round(100.0 * cv, 2)
    return out
