"""One self-contained HTML page per run (``iolab report --format html``) or per comparison of two runs.

No script, no stylesheet, font or image from elsewhere: charts are inline SVG (iolab/report/charts.py),
the style sheet is inline, and a Content-Security-Policy of ``default-src 'none'`` makes the browser
refuse any fetch, so the page opens offline and leaks nothing. The tables come from
iolab/report/tables.py, so the page shows the same numbers as the terminal and Markdown reports.
Every string from a results file (app paths, error messages, hostnames) is escaped: users write them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from iolab.analysis import latency
from iolab.analysis.compare import Gate, RunComparison
from iolab.analysis.stats import RATIO_UNBOUNDED
from iolab.report import about_server, charts, delivery, findings
from iolab.report.explain import explain_tables
from iolab.report.table import Table
from iolab.report.tables import (
    VERDICT_METRICS,
    all_tables,
    comparison_tables,
    context_switch_tables,
    facts_table,
    latency_table,
    noise_table,
    per_request_table,
    stability_table,
    threads_table,
    verdict_cell,
    verdict_table,
)
from iolab.results import Comparison, Finding, RoundRecord, RunResult, ScenarioResult

_CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2127;--muted:#5c6370;--border:#d5d9de;--stripe:#f5f7f9;
--warn-bg:#fff8e1;--warn:#b08000;--bad-bg:#fdecef;--bad:#c2255c;--good-bg:#ebf7ee;--good:#2b8a3e;--link:#1864ab}
@media (prefers-color-scheme:dark){:root{--bg:#181a1b;--fg:#e3e6ea;--muted:#a3a9b2;--border:#3a3f45;
--stripe:#1f2224;--warn-bg:#2b2410;--warn:#e0b000;--bad-bg:#341820;--bad:#f06595;--good-bg:#15291b;
--good:#51cf66;--link:#74c0fc}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0 0}h2{font-size:1.3rem;margin:2.2rem 0 .6rem;padding-top:.6rem;
border-top:1px solid var(--border)}h3{font-size:1.05rem;margin:1.4rem 0 .4rem}
a{color:var(--link)}.sub,.note,figcaption{color:var(--muted)}.note,figcaption{font-size:.88rem;margin:.3rem 0 1rem}
nav{margin:.6rem 0;font-size:.92rem}nav a{margin-right:1rem;white-space:nowrap}
.box{border-left:4px solid var(--warn);background:var(--warn-bg);padding:.6rem 1rem;margin:1rem 0;border-radius:4px}
.box.bad{border-color:var(--bad);background:var(--bad-bg)}.box.good{border-color:var(--good);background:var(--good-bg)}
.box h2,.box h3{border:0;margin:.2rem 0 .4rem;padding:0;font-size:1.05rem}.box ul{margin:.2rem 0;padding-left:1.2rem}
.box li{margin:.3rem 0}.kind{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-weight:bold}
.table-wrap{overflow-x:auto;margin:.4rem 0}
table{border-collapse:collapse;font-size:.88rem;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:bold;padding:.3rem 0;font-size:.95rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid var(--border);text-align:left;vertical-align:top}
thead th{border-bottom:2px solid var(--border);white-space:nowrap}tbody tr:nth-child(even){background:var(--stripe)}
.num{text-align:right;white-space:nowrap}
figure.chart{margin:1rem 0}figure.chart svg{display:block;width:100%;height:auto;color:var(--fg)}
figure.chart svg text{font-family:"DejaVu Sans",Verdana,Arial,sans-serif}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:-.1em;margin-right:.4em}
pre{overflow-x:auto;background:var(--stripe);padding:.6rem;font-size:.8rem;border-radius:4px}
details{margin:.6rem 0}summary{cursor:pointer;color:var(--link)}footer{margin-top:3rem;color:var(--muted);font-size:.85rem}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "-".join(p for p in out.split("-") if p)[:48]


def _texty(cell: str) -> bool:
    return bool(re.match(r"[A-Za-z`]", cell)) and not cell.startswith("n.s.")


def table_html(t: Table) -> str:
    """A Table (every report's) as an accessible <table>: caption = title, header cells scoped, numbers
    right-aligned. A number column whose cells are mostly words (a thread name, a verdict) is left-aligned
    too."""
    texty = [c.text or 2 * sum(_texty(r[i]) for r in t.rows if i < len(r)) > len(t.rows)
             for i, c in enumerate(t.columns)]

    def cls(i: int) -> str:
        return "" if i >= len(texty) or texty[i] else ' class="num"'

    head = "".join(f'<th scope="col"{cls(i)}>{_e(c.header)}</th>' for i, c in enumerate(t.columns))
    body = "".join(
        "<tr>" + "".join((f'<th scope="row">{_e(c)}</th>' if i == 0 else f"<td{cls(i)}>{_e(c)}</td>")
                         for i, c in enumerate(row)) + "</tr>"
        for row in t.rows
    )
    note = f'<p class="note">{_e(t.caption)}</p>' if t.caption else ""
    return (f'<div class="table-wrap"><table data-table="{_slug(t.title)}"><caption>{_e(t.title)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}")


def figure_html(c: charts.Chart) -> str:
    caption = f"<figcaption>{_e(c.caption)}</figcaption>" if c.caption else ""
    return f'<figure class="chart" data-figure="{_e(c.id)}">{c.svg}{caption}</figure>'


def _page(title: str, heading: str, sub: str, sections: Sequence[tuple[str, str, str]], top: str) -> str:
    """sections: (anchor, heading, body). ``top`` comes before the first section (facts, warnings)."""
    nav = "".join(f'<a href="#{a}">{_e(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{a}"><h2>{_e(h)}</h2>{b}</section>' for a, h, b in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="color-scheme" content="light dark"><title>{_e(title)}</title><style>{_CSS}</style></head>'
        f'<body><main><header><h1>{_e(heading)}</h1><p class="sub">{sub}</p><nav aria-label="sections">{nav}'
        f"</nav></header>{top}{body}<footer>Made by iolab. Self-contained: no script, no network.</footer>"
        "</main></body></html>\n"
    )


# --------------------------------------------------------------------------------- the run page


def _warnings_box(result: RunResult, label: str = "") -> str:
    if not result.warnings:
        return ""
    items = "".join(f'<li><span class="kind">{_e(w.kind)}</span>: {_e(w.message)}</li>' for w in result.warnings)
    return (f'<div class="box" role="note" data-box="warnings"><h2>{len(result.warnings)} warning(s){_e(label)}'
            f"</h2><ul>{items}</ul></div>")


def _failures_box(result: RunResult) -> str:
    failed = [(s, r) for s in result.scenarios for r in s.rounds if r.status != "ok"]
    if not failed:
        return ""
    items = "".join(
        f"<li><strong>{_e(s.path)}</strong>, round {r.round} ({_e(r.status)}): {_e(r.error or r.status)}"
        + (f"<details><summary>server output (last lines)</summary><pre>{_e(chr(10).join(r.server_log_tail))}"
           "</pre></details>" if r.server_log_tail else "") + "</li>"
        for s, r in failed
    )
    title = "Failed rounds" if all(r.status == "failed" for _, r in failed) else "Failed or degraded rounds"
    return (f'<div class="box bad" role="alert" data-box="failures"><h2>{title}</h2><p>A failed round '
            "measured nothing: its figures are shown as —. A degraded one measured, but too many of its requests did "
            f"not succeed.</p><ul>{items}</ul></div>")


def _scenario_list(result: RunResult) -> str:
    rows = "".join(
        f'<tr><th scope="row"><span class="swatch" style="background:{charts.color(i)}"></span>{_e(s.path)}</th>'
        f"<td>{_e(s.name)}</td><td>{_e(s.description)}</td><td>{_e(s.status)}</td>"
        f'<td class="num">{len(s.rounds)}</td><td class="num">{s.requests:,}</td></tr>'
        for i, s in enumerate(result.scenarios)
    )
    return ('<div class="table-wrap"><table data-table="scenarios"><caption>Scenarios (one fresh server each)'
            '</caption><thead><tr><th scope="col">path</th><th scope="col">name</th><th scope="col">what it '
            'isolates</th><th scope="col">status</th><th scope="col" class="num">rounds</th><th scope="col" '
            f'class="num">requests</th></tr></thead><tbody>{rows}</tbody></table></div>')


def _raw_facts(result: RunResult) -> str:
    doc = {k: getattr(result, k) for k in ("machine", "target", "load", "limits", "environment")}
    text = json.dumps(doc, indent=1, ensure_ascii=False, default=str)
    return f"<details><summary>Everything recorded about the run (JSON)</summary><pre>{_e(text)}</pre></details>"


def _spectrum_series(s: ScenarioResult, color: str, style: str = "-", label: str | None = None
                     ) -> charts.Series | None:
    if not s.latency_hdr:
        return None
    x, y = charts.spectrum_x(latency.spectrum(latency.decode(s.latency_hdr)))
    return charts.Series(label if label is not None else s.path, x, y, color, style)


def _round_values(s: ScenarioResult, pick: Callable[[ScenarioResult | RoundRecord], float | None]
                  ) -> tuple[float, ...]:
    """The figure of each successful round that has it (a null is not a 0: it is left out)."""
    return tuple(v for r in s.rounds if r.status == "ok" and (v := pick(r)) is not None)


def _bar(s: ScenarioResult, i: int,
         pick: Callable[[ScenarioResult | RoundRecord], float | None]) -> charts.BarRow:
    return charts.BarRow(s.path, (pick(s),), (_round_values(s, pick),), charts.color(i))


# Panel titles stay short: four panels share a 10-inch row. The figure's title says "per request".
_COST: tuple[tuple[str, Callable[[Any], float | None]], ...] = (
    ("write syscalls (syscw)", lambda x: x.per_request.write_syscalls),
    ("voluntary switches", lambda x: x.per_request.voluntary_ctx_switches),
    ("involuntary switches", lambda x: x.per_request.involuntary_ctx_switches),
    ("CPU ms", lambda x: x.per_request.cpu_ms),
)
_THROUGHPUT: tuple[tuple[str, Callable[[Any], float | None]], ...] = (
    ("requests / s", lambda x: x.rps),
    ("requests per server CPU-second", lambda x: x.rps_per_server_cpu_s),
)


def _series_rows(result: RunResult) -> list[tuple[str, list[list[charts.Series]]]]:
    interval = result.environment.get("interval_s")
    step = float(interval) if isinstance(interval, (int, float)) and interval > 0 else 1.0
    rows = []
    for i, s in enumerate(result.scenarios):
        cols: list[list[charts.Series]] = [[], [], []]
        for k, r in enumerate(x for x in s.rounds if x.samples):
            smp = r.samples[:: max(1, math.ceil(len(r.samples) / charts.MAX_POINTS))]
            t = tuple(round(p.t_s - r.samples[0].t_s + step, 3) for p in smp)
            alpha = 1.0 if k == 0 else 0.5
            c = charts.color(i)

            def line(ys: list[float], style: str) -> charts.Series:
                return charts.Series(f"round {r.round}", t, tuple(ys), c, style, alpha)  # noqa: B023

            cols[0] += [line([p.cswch_per_s for p in smp], "-"), line([p.main_cswch_per_s for p in smp], "--")]
            cols[1] += [line([p.nvcswch_per_s for p in smp], "-"), line([p.main_nvcswch_per_s for p in smp], "--")]
            cols[2] += [line([p.cpu_user_pct + p.cpu_sys_pct for p in smp], "-"),
                        line([p.cpu_sys_pct for p in smp], ":")]
        rows.append((s.path, cols))
    return rows


def _time_series_chart(result: RunResult) -> charts.Chart | None:
    rows = _series_rows(result)
    if not any(cols[0] for _, cols in rows):
        return None
    cpus = result.limits.get("cpus")
    quota = float(cpus) * 100 if isinstance(cpus, (int, float)) and cpus > 0 else None
    c = charts.time_series(
        rows, ("voluntary switches / s", "involuntary switches / s", "CPU % of one core"),
        (("-", "whole process (CPU: user + sys)"), ("--", "main thread only = pidstat -w"), (":", "CPU: sys")),
        quota_pct=quota)
    return charts.Chart(c.id, c.title, c.svg, "One row per scenario, every round overlaid (later rounds "
                        "lighter); x = seconds into the measured window" + ("; grey dash-dot line = the CPU quota"
                                                                              if quota else ""))


def _pidstat_note(result: RunResult) -> str:
    parts = [f"{_e(s.path)}: main thread {s.main_thread.cswch_per_s.mean:,.0f}/s, whole process "
             f"{s.cswch_per_s.mean:,.0f}/s" for s in result.scenarios if s.cswch_per_s.count]
    return ("<p><code>pidstat -w</code> reads <code>/proc/PID/status</code>, "
            f"{about_server.main_thread(result.target)} only: the dashed lines are what the seed's cswch/s "
            "column showed; the solid lines add every other thread. Mean voluntary switches per second — " + "; ".join(parts) + ".</p>") if parts else ""


def _verdict_kind(c: Comparison) -> str:
    return {"faster": "better", "slower": "worse"}.get(c.verdict, "n.s.")


_METRIC_LABEL = {**dict(VERDICT_METRICS), "involuntary_ctx_switches_per_request": "invol.sw/req"}


def _intervals(cs: Sequence[Comparison]) -> list[charts.Interval]:
    return [charts.Interval(_METRIC_LABEL.get(c.metric, c.metric), c.ratio, c.ci95[0], c.ci95[1],
                            _verdict_kind(c), unbounded=c.ratio >= RATIO_UNBOUNDED or c.a_value == 0)
            for c in cs]


def _ci_text(c: Comparison) -> str:
    def r(x: float) -> str:
        return "∞" if x >= RATIO_UNBOUNDED else ("−∞" if x <= -RATIO_UNBOUNDED else f"{x:.3g}")
    return "—" if c.ratio >= RATIO_UNBOUNDED else f"{r(c.ci95[0])}–{r(c.ci95[1])}"


def verdict_detail_table(comparisons: Sequence[Comparison], paths: dict[str, str]) -> Table:
    rows = tuple(
        (f"{paths.get(c.b, c.b)} vs {paths.get(c.a, c.a)}", c.metric, f"{c.a_value:,.4g}", f"{c.b_value:,.4g}",
         verdict_cell(c), _ci_text(c), f"{c.p_value:.3g}", c.verdict)
        for c in comparisons
    )
    return Table("Verdicts in detail", ("B vs A", "metric", "A", "B", "change", "95 % CI of ratio", "p", "verdict"),
                 rows, "A and B are medians over the successful rounds", left_columns=2)


def _verdict_section(result: RunResult, paths: dict[str, str], placed: list[Table]) -> str:
    parts = []
    pairs: dict[tuple[str, str], list[Comparison]] = {}
    for c in result.comparisons:
        pairs.setdefault((c.a, c.b), []).append(c)
    if pairs:
        panels = [(f"{paths.get(b, b)} vs {paths.get(a, a)}", _intervals(cs)) for (a, b), cs in pairs.items()]
        chart = charts.intervals(panels)
        parts.append(figure_html(charts.Chart(chart.id, chart.title, chart.svg,
                                              "B against A for each pair: the point is the ratio of medians, the bar its 95 % confidence "
                                              "interval, on a log scale; an arrow head = the interval goes on "
                                              "past the axis")))
    else:
        parts.append('<p class="note" data-empty="verdicts">This results file holds no verdicts (they need '
                     "at least two rounds and a pair of scenarios to compare).</p>")
    for t in (verdict_table(result), stability_table(result)):
        if t is not None:
            placed.append(t)
            parts.append(table_html(t))
    if result.comparisons:
        parts.append(table_html(verdict_detail_table(result.comparisons, paths)))
    if result.attribution:
        parts.append("<h3>What the differences come from</h3><ul data-list=\"attribution\">"
                     + "".join(f"<li>{_e(line)}</li>" for line in result.attribution) + "</ul>")
    return "".join(parts)


def render(result: RunResult) -> str:
    """The whole HTML document for one run."""
    placed: list[Table] = []

    def tab(t: Table) -> str:
        placed.append(t)
        return table_html(t)

    sc = result.scenarios
    paths = {s.name: s.path for s in sc}
    facts = tab(facts_table(result))
    top = ((findings.html(result.findings) if sc else "") + f'<section id="facts" aria-label="run facts">{facts}{_scenario_list(result) if sc else ""}'
           f"{_raw_facts(result)}</section>{_warnings_box(result)}{_failures_box(result)}")
    sections: list[tuple[str, str, str]] = []
    if sc:
        series = [x for i, s in enumerate(sc) if (x := _spectrum_series(s, charts.color(i), charts.line_style(i)))]
        lat = figure_html(charts.latency_spectrum(series)) if series else ""
        sections.append(("latency", "Latency", lat + tab(latency_table(result))))
        net = delivery.html_section(result, tab, figure_html)  # issue 20: None without a network
        if net:
            sections.append(net)
        cost = charts.bar_panels([(t, [_bar(s, i, f) for i, s in enumerate(sc)]) for t, f in _COST],
                                 "os-cost", "OS cost per request, server side")
        thr = charts.bar_panels([(t, [_bar(s, i, f) for i, s in enumerate(sc)]) for t, f in _THROUGHPUT],
                                "throughput", "Throughput", cols=2)
        sections.append(("os-cost", "OS cost per request", figure_html(cost) + figure_html(thr)
                         + tab(per_request_table(result)) + tab(threads_table(result))))
        ts = _time_series_chart(result)
        sections.append(("time-series", "Context switches and CPU over time",
                         (figure_html(ts) if ts else "") + _pidstat_note(result)
                         + "".join(tab(t) for t in context_switch_tables(result))))
    sections.append(("verdicts", "Verdicts", _verdict_section(result, paths, placed)))
    if sc:
        sections.append(("rounds", "Rounds and noise", tab(noise_table(result))))
    if explained := explain_tables(result):
        sections.append(("explain", "Where the writes go, who waits", "".join(tab(t) for t in explained)))
    rest = [t for t in all_tables(result) if t not in placed]  # a table added to tables.py later still shows
    if rest:
        sections.append(("more", "More tables", "".join(table_html(t) for t in rest)))
    status = "" if result.status == "complete" else f" · <strong>status: {_e(result.status)}</strong>"
    sub = f"{_e(result.created)} · iolab {_e(result.tool_version)} · {len(sc)} scenario(s){status}"
    return _page(f"iolab run {result.created}", "iolab run report", sub, sections, top)


# ------------------------------------------------------------------------------ the comparison page


def _side_by_side_facts(base: RunResult, new: RunResult, labels: tuple[str, str]) -> Table:
    b: dict[str, str] = {r[0]: r[1] for r in facts_table(base).rows}
    n: dict[str, str] = {r[0]: r[1] for r in facts_table(new).rows}
    rows = [("created", base.created, new.created), ("iolab", base.tool_version, new.tool_version)]
    rows += [(k, b.get(k, "—"), n.get(k, "—")) for k in dict.fromkeys([*b, *n])]
    return Table("Run facts", ("fact", *labels), tuple(rows), left_columns=3)


def _gates_box(rc: RunComparison, gates: Sequence[Gate]) -> str:
    if rc.failures:
        items = "".join(f"<li>{_e(f.describe())}</li>" for f in rc.failures)
        return (f'<div class="box bad" role="alert" data-box="gates"><h2>{len(rc.failures)} gate failure(s)</h2>'
                f"<ul>{items}</ul></div>")
    if gates:
        items = "".join(f"<li><code>{_e(g.text)}</code></li>" for g in gates)
        return (f'<div class="box good" data-box="gates"><h2>All {len(gates)} gate(s) passed</h2>'
                f"<ul>{items}</ul></div>")
    return ""


def render_comparison(rc: RunComparison, labels: tuple[str, str] = ("base", "new"),
                      gates: Sequence[Gate] = (), found: Sequence[Finding] = ()) -> str:
    """The whole HTML document for ``iolab compare``: base (A) against new (B), per scenario and metric.
    ``labels`` name the two runs (e.g. their file names); ``gates`` lets the page say that all passed."""
    base, new = rc.base, rc.new
    b_by, n_by = {s.name: s for s in base.scenarios}, {s.name: s for s in new.scenarios}
    paths = {s.name: s.path for s in (*base.scenarios, *new.scenarios)}
    common = list(dict.fromkeys(c.b for c in rc.comparisons))
    only = "".join(f'<p class="note">only in {_e(lab)}: {_e(", ".join(paths.get(n, n) for n in names))}</p>'
                   for lab, names in ((labels[0], rc.only_in_base), (labels[1], rc.only_in_new)) if names)
    top = (_gates_box(rc, gates) + findings.html(found) + only + table_html(_side_by_side_facts(base, new, labels))
           + _warnings_box(base, f" in {labels[0]}") + _warnings_box(new, f" in {labels[1]}"))
    sections: list[tuple[str, str, str]] = []
    if common:
        by_b: dict[str, list[Comparison]] = {}
        for c in rc.comparisons:
            by_b.setdefault(c.b, []).append(c)
        forest = charts.intervals([(paths.get(n, n), _intervals(cs)) for n, cs in by_b.items()],
                                  "compare-verdicts", f"Change of {labels[1]} against {labels[0]}, 95 % CI")
        sections.append(("verdicts", "Verdicts", figure_html(forest)))
        panels = []
        for name in common:
            pair = [_spectrum_series(s, col, style, lab) for s, col, style, lab in
                    ((b_by[name], charts.GROUP_COLORS[0], "--", labels[0]),
                     (n_by[name], charts.GROUP_COLORS[1], "-", labels[1]))]
            panels.append((paths.get(name, name), [p for p in pair if p is not None]))
        sections.append(("latency", "Latency", figure_html(charts.spectrum_grid(panels))))
        rows = [(t, [charts.BarRow(paths.get(n, n), (f(b_by[n]), f(n_by[n])),
                                   (_round_values(b_by[n], f), _round_values(n_by[n], f)))
                     for n in common]) for t, f in (*_COST, *_THROUGHPUT)]
        cost = charts.bar_panels(rows, "compare-cost", "OS cost per request, and throughput", groups=labels, cols=3)
        sections.append(("os-cost", "OS cost and throughput", figure_html(cost)))
        sections.append(("verdict-tables", "Verdicts per scenario", "".join(
            table_html(t) for t in comparison_tables(rc.comparisons, paths))))
    else:
        sections.append(("verdicts", "Verdicts", '<p class="note" data-empty="verdicts">The two runs have no '
                         "successful scenario in common.</p>"))
    full = "".join(f"<details><summary>Every table of {_e(lab)}</summary>"
                   + "".join(table_html(t) for t in all_tables(run)) + "</details>"
                   for lab, run in zip(labels, (base, new), strict=True))
    sections.append(("tables", "All tables", full))
    sub = f"{_e(labels[0])} ({_e(base.created)}) → {_e(labels[1])} ({_e(new.created)})"
    return _page(f"iolab compare {labels[0]} {labels[1]}", "iolab comparison", sub, sections, top)
