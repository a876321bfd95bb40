"""Logging across a network (issue 20) in the reports: delivery next to latency, the findings, and (HTML)
latency second by second across a collector outage.

``tables(result)`` is [] for a run without a network, so every report of every other run is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from matplotlib.ticker import FuncFormatter

from iolab.report import charts
from iolab.report.table import Table
from iolab.report.tables import MISSING, scenario_label
from iolab.results import RunResult


def _n(v: int | None) -> str:
    return MISSING if v is None else f"{v:,}"


def _f(v: float | None, digits: int = 1) -> str:
    return MISSING if v is None else f"{v:,.{digits}f}"


def network_line(result: RunResult) -> str:
    net = result.network or {}
    parts = [str(net.get("method", "?")), f"delay {net.get('delay_ms', 0):g} ms"]
    if net.get("jitter_ms"):
        parts.append(f"jitter ±{net['jitter_ms']:g} ms")
    if net.get("loss_pct"):
        parts.append(f"loss {net['loss_pct']:g} %")
    outage = net.get("outage")
    if outage:
        parts.append(f"collector outage {outage['start_s']:g}s:{outage['duration_s']:g}s into each measured load")
    return ", ".join(parts)


def delivery_table(result: RunResult) -> Table | None:
    sc = [s for s in result.scenarios if s.delivery is not None]
    if result.network is None or not sc:
        return None
    rows = []
    for s in sc:
        d = s.delivery
        assert d is not None
        rows.append((scenario_label(s), _f(s.latency_ms.p50), _f(s.latency_ms.p99), _f(s.latency_ms.p100),
                     _f(s.rps, 0), d.collector, _n(d.sent), _n(d.received), _n(d.lost), _n(d.duplicated),
                     _n(d.dropped), _f(d.round_trips_per_record, 2), _f(d.max_delay_ms, 0)))
    return Table(
        f"Delivery to the log collector — {network_line(result)}",
        ("Scenario", "p50 ms", "p99 ms", "max ms", "req/s", "collector", "sent", "received", "lost", "dup.",
         "dropped", "round trips/record", "max delay ms"),
        tuple(rows),
        "sent: records the server logged (warm-up included); received: distinct records the collector got; "
        "lost = sent − received; dropped: counted by the handler itself (— where it keeps no count); round "
        "trips/record: TCP handshakes + HTTP exchanges the collector saw per record received (— for rsyslogd); max "
        "delay: log call to receipt. Every round summed.",
        left_columns=1,
        text_columns=(5,),  # the collector's kind
    )


def tables(result: RunResult) -> list[Table]:
    """The delivery table for the terminal and Markdown reports ([] without a network); what the network did
    opens the findings (iolab.analysis.findings)."""
    return [t for t in (delivery_table(result),) if t is not None]


def latency_over_time(result: RunResult, chart_id: str = "latency-over-time") -> charts.Chart | None:
    """p50 and max latency per second of each scenario's first round, the outage shaded."""
    rows = [(s, next((r for r in s.rounds if r.latency_per_s), None)) for s in result.scenarios]
    rows = [(s, r) for s, r in rows if r is not None]
    if not rows:
        return None
    outage = (result.network or {}).get("outage")
    title = "Latency second by second" + (" across the collector outage" if outage else "")
    with charts._style(chart_id):
        fig = charts._new_figure(10, 3.6)
        ax = fig.subplots()
        for i, (s, r) in enumerate(rows):
            assert r is not None
            # A second in which no response completed is a gap in the line (NaN), not a line across it.
            xs = tuple(float(p.second) + 0.5 for p in r.latency_per_s)
            ax.plot(xs, [p.max_ms if p.count else math.nan for p in r.latency_per_s], "-o", markersize=3,
                    color=charts.color(i), linewidth=1.5, label=charts._t(f"{s.path} max"))
            ax.plot(xs, [p.p50_ms if p.count else math.nan for p in r.latency_per_s], ":", color=charts.color(i),
                    linewidth=1.2, label=charts._t(f"{s.path} p50"))
        if outage:
            ax.axvspan(outage["start_s"], outage["start_s"] + outage["duration_s"], color=charts.NEUTRAL,
                       alpha=0.18, label="collector outage")
        longest = max(len(r.latency_per_s) for _, r in rows if r is not None)
        shown = longest
        if outage:  # around the outage: a long naive run would squeeze it into a sliver
            shown = min(longest, int(outage["start_s"] + outage["duration_s"]) * 2 + 10)
            ax.set_xlim(0, shown)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(charts._tick))
        ax.set_xlabel("seconds into the measured load (round 1)"
                      + (f"; the first {shown} s of {longest} s shown" if shown < longest else ""))
        ax.set_ylabel("ms")
        ax.grid(True)
        ax.legend(fontsize=8, ncols=2)
        return charts._to_chart(fig, chart_id, title, f"{title}: " + ", ".join(s.path for s, _ in rows))


def html_section(result: RunResult, tab: Callable[[Table], str],
                 figure: Callable[[charts.Chart], str]) -> tuple[str, str, str] | None:
    """The HTML report's "Network" section: the chart and the delivery table."""
    ts = tables(result)
    if not ts:
        return None
    chart = latency_over_time(result)
    return ("network", "Logging across the network",
            (figure(chart) if chart else "") + "".join(tab(t) for t in ts))
