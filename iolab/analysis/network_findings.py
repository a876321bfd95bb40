"""What the network did to each logging strategy (issue 20), as sentences with their figures.

A pure function of a results file: ``network_finding_records(result)`` → Finding records that
iolab.analysis.findings puts first in a run's findings, ``network_findings(result)`` → their sentences;
``[]`` for a run without a network. A count has no sampling interval: ``ci95`` is the change itself. The figures are counts where counts exist (round trips counted at the collector, records counted
in the server and at the collector) and the run's own latency and memory otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from iolab.results import Finding, RunResult, ScenarioResult
from iolab.results.network import SecondLatency

# The naive handler and the batching one that replaces it, per transport: compared head to head.
PAIRS = (("http-per-record", "ours-http"), ("queue-http", "ours-http"), ("socket-tcp", "ours-tcp"),
         ("syslog-tcp", "ours-tcp"))


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} ms" if v >= 10 else f"{v:,.1f} ms"


def _mib(v: float | None) -> str:
    return "—" if v is None else f"{v / 2**20:,.0f} MiB"


def _peak_rss(s: ScenarioResult) -> float | None:
    values = [r.rusage.get("peak_rss_bytes_sampled") for r in s.rounds]
    found = [v for v in values if v is not None]
    return max(found) if found else None


def _record(text: str, metric: str, a: str, b: str, change: float) -> Finding:
    return Finding(text=text, metric=metric, scenario_a=a, scenario_b=b, change=change, ci95=(change, change),
                   significant=True)


def _round_trips(by: dict[str, ScenarioResult]) -> list[Finding]:
    out = []
    for naive, ours in PAIRS:
        a, b = by.get(naive), by.get(ours)
        if not (a and b and a.delivery and b.delivery):
            continue
        ta, tb = a.delivery.round_trips_per_record, b.delivery.round_trips_per_record
        if ta is None or tb is None or ta - tb < 0.1:  # no round trip worth a sentence
            continue
        out.append(_record(
            f"{naive} made {ta:.2f} round trips to the collector per record ({a.delivery.connections:,} "
            f"connection(s), {a.delivery.http_requests or 0:,} requests for {a.delivery.received:,} records delivered), "
            f"{ours} {tb:.2f} ({b.delivery.connections:,} connection(s), {b.delivery.http_requests or 0:,} "
            f"requests): {ta - tb:.2f} more per record, each paying the link's delay; p50 {_ms(a.latency_ms.p50)} "
            f"vs {_ms(b.latency_ms.p50)}, {a.rps or 0:,.0f} vs {b.rps or 0:,.0f} requests/s.",
            "round_trips_per_record", naive, ours, tb / ta - 1.0))
    return out


def _delivered(sc: Sequence[ScenarioResult]) -> list[Finding]:
    whole = [s for s in sc if s.delivery and s.delivery.sent and not s.delivery.lost and not s.delivery.duplicated]
    out = []
    if whole:
        out.append(_record("Every record reached the collector in " + ", ".join(
            f"{s.name} ({s.delivery.received:,}/{s.delivery.sent:,})" for s in whole if s.delivery) + ".",
            "records_lost", whole[0].name, whole[-1].name, 0.0))
    for s in sc:
        d = s.delivery
        if d is None or not (d.lost or d.duplicated):
            continue
        pct = 100.0 * d.lost / d.sent if d.sent else 0.0
        counted = ("the handler counted none of them" if d.dropped == 0 else
                   f"the handler counted {d.dropped:,} dropped" if d.dropped is not None else
                   "the handler keeps no count: the loss was silent in the server")
        dup = f", {d.duplicated:,} arrived twice" if d.duplicated else ""
        why = ("; the server was stopped before its handlers finished sending, so what they still held "
               "(a queue) was lost" if d.flushed is False else "")
        out.append(_record(f"{s.name} lost {d.lost:,} of {d.sent:,} records ({pct:.2f} %){dup}; {counted}{why}.",
                           "records_lost", s.name, s.name, -pct / 100.0))
    return out


def _window(per_s: Sequence[SecondLatency], start: float, duration: float) -> tuple[float | None, float | None]:
    """(p99 of the seconds before the outage, slowest response completed during it or the second after)."""
    before = [s.p99_ms for s in per_s if s.second < int(start) and s.count]
    during = [s.max_ms for s in per_s if int(start) <= s.second <= int(start + duration) + 1 and s.count]
    return (max(before) if before else None), (max(during) if during else None)


def _outage(result: RunResult, sc: Sequence[ScenarioResult]) -> list[Finding]:
    outage = (result.network or {}).get("outage")
    if not outage:
        return []
    start, duration = float(outage["start_s"]), float(outage["duration_s"])
    out = []
    for s in sc:
        d = s.delivery
        rounds = [r for r in s.rounds if r.latency_per_s]
        if d is None or not rounds:
            continue
        befores, durings = zip(*(_window(r.latency_per_s, start, duration) for r in rounds), strict=True)
        before = max((b for b in befores if b is not None), default=None)
        during = max((x for x in durings if x is not None), default=None)
        if d.outage_s is None:
            out.append(_record(f"{s.name}: the load ended before the outage began ({start:g} s in); nothing to say.",
                               "outage_max_ms", s.name, s.name, 0.0))
            continue
        stalled = during is not None and before is not None and during > max(2 * before, 1000 * d.outage_s / 2)
        what = ("requests stalled behind the collector" if stalled else "latency stayed bounded")
        drop = (f", the handler dropped and counted {d.dropped:,} records" if d.dropped else
                ", no record dropped" if d.dropped == 0 else "")
        if d.buffer_peak_bytes is not None and d.buffer_budget_bytes:
            drop += (f"; its buffer peaked at {d.buffer_peak_bytes / 1024:,.0f} KiB of its "
                     f"{d.buffer_budget_bytes / 1024:,.0f} KiB budget")
        cut = f" (of the {duration:g} s asked: the load ended first)" if d.outage_s < duration - 0.05 else ""
        change = during / before - 1.0 if during is not None and before else 0.0
        out.append(_record(
            f"Through the {d.outage_s:g} s collector outage{cut}, {s.name}: {what} (slowest response {_ms(during)} "
            f"vs p99 {_ms(before)} before it; p100 {_ms(s.latency_ms.p100)}); peak RSS {_mib(_peak_rss(s))}; "
            f"{d.received:,}/{d.sent:,} records delivered, the slowest {_ms(d.max_delay_ms)} after its log "
            f"call{drop}.", "outage_max_ms", s.name, s.name, change))
    return out


def network_finding_records(result: RunResult) -> list[Finding]:
    """Round trips, delivery and the outage, each with its figures; [] without a network."""
    sc = [s for s in result.scenarios if s.delivery is not None]
    if result.network is None or not sc:
        return []
    by = {s.name: s for s in sc}
    return _round_trips(by) + _delivered(sc) + _outage(result, sc)


def network_findings(result: RunResult) -> list[str]:
    """The sentences of network_finding_records."""
    return [f.text for f in network_finding_records(result)]
