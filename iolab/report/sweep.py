"""The sweep drawn three ways: tables (the Table model every report uses), a heat map (SVG, matplotlib),
a small HTML page.

The heat map: rows are CPU work per request, columns sink latency; each cell is coloured by the
strategy that won it, the stronger the colour the larger its margin over the runner-up (full colour at
4×), grey and hatched when the 95 % interval of that margin includes no difference (a tie). The text
in the cell gives the margin and its interval, so the picture never needs the legend to be read right.
"""

from __future__ import annotations

import io
import math
from html import escape

from iolab.analysis import verdict
from iolab.analysis.sweep import Grid, GridCell, amount, cell_label, flip, grid, significant
from iolab.report.html import table_html
from iolab.report.table import Table
from iolab.results.sweep import Cell, SweepResult

# Colours with ≥ 3:1 contrast on white (the same family as the run report's charts).
PALETTE = ("#1c7ed6", "#e67700", "#2f9e44", "#d6336c", "#7950f2", "#1098ad", "#9c755f", "#be4bdb")
TIE = "#868e96"
FULL_COLOUR_GAIN = 4.0


def _lat(x: float) -> str:
    return f"{x:g} ms"


def _work(x: float) -> str:
    return f"{x:g} µs"


# ----------------------------------------------------------------------------------------- tables


def winner_table(result: SweepResult) -> Table:
    m = verdict.get_metric(result.metric)
    rows = tuple(
        (_work(w), *("not measured" if (cell := result.cell(w, lat)) is None else cell_label(cell)
                     for lat in result.sink_latency_ms))
        for w in result.work_us
    )
    headers = ("work \\ sink latency", *(_lat(lat) for lat in result.sink_latency_ms))
    return Table(f"Which strategy wins, per cell ({m.noun}; margin over the runner-up, 95 % CI)", headers, rows,
                 "tie = the 95 % interval of the ratio includes 1 (or p ≥ 0.05, or under 1 %); "
                 "work = CPU per request, sink latency = per write(2) of a log line", left_columns=len(headers))


def _deferred_text(cell: Cell) -> str:
    d = cell.deferred_vs_blocking
    if d is None:
        return "—"
    if not significant(d):
        return f"neutral vs {d.a}"
    if d.verdict == verdict.FASTER:
        return f"helps: {amount(d)} over {d.a}"
    return f"hurts: {d.a} {amount(flip(d))}"


def _fig(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def values_table(result: SweepResult) -> Table:
    headers = ("work", "sink", "-n", *result.scenarios)
    if result.deferred:
        headers += ("async logging (deferred write) vs the best blocking strategy",)
    rows = []
    for cell in result.cells:
        row = [_work(cell.work_us), _lat(cell.sink_latency_ms), f"{cell.requests:,}"]
        for name in result.scenarios:
            v = cell.value(name)
            row.append("—" if v is None or not v.rounds_ok else f"{_fig(v.rps, ',.0f')} · "
                       f"{_fig(v.p50_ms, '.3g')} · {_fig(v.cpu_ms_per_request, '.2f')}")
        if result.deferred:
            row.append(_deferred_text(cell))
        rows.append(tuple(row))
    return Table("Medians per cell: req/s · p50 ms · CPU ms per request", headers, tuple(rows), left_columns=2,
                 text_columns=(len(headers) - 1,) if result.deferred else ())


# --------------------------------------------------------------------------------------- heat map


def _cell_style(gc: GridCell | None, strategies: tuple[str, ...]) -> tuple[str, float, str]:
    """(colour, alpha, hatch) of a heat-map cell."""
    if gc is None or gc.winner is None:
        return "#ffffff", 1.0, "xx"
    if not gc.significant:
        return TIE, 0.25, "//"
    i = strategies.index(gc.winner) if gc.winner in strategies else 0
    strength = min(1.0, math.log(max(gc.gain, 1.0)) / math.log(FULL_COLOUR_GAIN))
    return PALETTE[i % len(PALETTE)], 0.3 + 0.7 * strength, ""


def _cell_text(gc: GridCell | None) -> str:
    if gc is None:
        return "not measured"
    if gc.winner is None:
        return "failed"
    if gc.degraded:
        return f"{_winner_text(gc)}\n(degraded: errors)"
    return _winner_text(gc)


def _winner_text(gc: GridCell) -> str:
    if gc.runner_up is None:
        return gc.winner or "—"
    if not gc.significant:
        return f"tie (n.s.)\n{gc.winner}\n≈ {gc.runner_up}"
    lo, hi = gc.ci95
    if gc.gain >= 2:
        margin, ci = f"{gc.gain:.3g}×", f"CI {lo:.3g}–{hi:.3g}×"
    else:
        margin, ci = f"+{(gc.gain - 1) * 100:.0f} %", f"CI {(lo - 1) * 100:.0f}–{(hi - 1) * 100:.0f} %"
    return f"{gc.winner}\n{margin} over {gc.runner_up}\n{ci}"


def render_heatmap_svg(g: Grid) -> str:
    """The heat map of a :class:`Grid` as a standalone SVG document (inline it in HTML as is)."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    rows, cols = len(g.work_us), len(g.sink_latency_ms)
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "iolab-sweep"}):
        fig = Figure(figsize=(1.5 + 2.3 * cols, 1.6 + 1.05 * rows), layout="constrained")
        ax = fig.add_subplot()
        for r in range(rows):
            for c in range(cols):
                gc = g.cells[r][c] if r < len(g.cells) and c < len(g.cells[r]) else None
                colour, alpha, hatch = _cell_style(gc, g.strategies)
                ax.add_patch(Rectangle((c, r), 1, 1, facecolor=colour, alpha=alpha, hatch=hatch,
                                       edgecolor="white", linewidth=2))
                ink = "white" if alpha > 0.65 and not hatch else "#1d2127"
                ax.text(c + 0.5, r + 0.5, _cell_text(gc), ha="center", va="center", color=ink, fontsize=8.5)
        ax.set_xlim(0, cols)
        ax.set_ylim(rows, 0)  # first work value on top, as in the terminal table
        ax.set_xticks([c + 0.5 for c in range(cols)], [_lat(x) for x in g.sink_latency_ms])
        ax.set_yticks([r + 0.5 for r in range(rows)], [_work(x) for x in g.work_us])
        ax.set_xlabel("sink latency per write(2)")
        ax.set_ylabel("CPU work per request")
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        noun = verdict.get_metric(g.metric).noun
        ax.set_title(f"Which logging strategy wins ({noun})\ncolour strength = margin over the runner-up",
                     loc="left", fontsize=10)
        handles = [Patch(facecolor=PALETTE[i % len(PALETTE)], label=name) for i, name in enumerate(g.strategies)]
        handles.append(Patch(facecolor=TIE, alpha=0.25, hatch="//", label="tie (95 % CI includes 1)"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), frameon=False)
        buf = io.StringIO()
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ HTML


_CSS = ("body{font:15px/1.5 system-ui,sans-serif;max-width:1180px;margin:1rem auto;padding:0 1.5rem;color:#1d2127}"
        "table{border-collapse:collapse;font-size:.88rem;margin:1rem 0}caption{text-align:left;font-weight:bold}"
        "th,td{padding:.25rem .6rem;border-bottom:1px solid #d5d9de;text-align:left;vertical-align:top}"
        ".num{text-align:right;white-space:nowrap}.note{color:#5c6370;font-size:.88rem}"
        "svg{max-width:100%;height:auto}.reading{background:#f5f7f9;padding:.8rem 1rem;border-radius:4px}")


def render_html(result: SweepResult, svg: str | None = None) -> str:
    """A self-contained page: the reading, the heat map, the tables (no script, nothing fetched)."""
    svg = svg if svg is not None else render_heatmap_svg(grid(result))
    inline = svg[svg.index("<svg"):]
    files = "".join(f"<li>{escape(_work(c.work_us))}, {escape(_lat(c.sink_latency_ms))}: "
                    f"<code>{escape(c.run_file)}</code></li>" for c in result.cells)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>iolab sweep {escape(result.created)}</title><style>{_CSS}</style></head><body>"
        f"<h1>When does async logging pay? (iolab sweep)</h1><p>{escape(result.created)} · "
        f"{escape(', '.join(result.scenarios))} · status {escape(result.status)} · {result.wall_s:.0f} s</p>"
        f'<p class="reading">{escape(result.reading)}</p><figure>{inline}</figure>'
        f"{table_html(winner_table(result))}{table_html(values_table(result))}"
        f"<h2>Each cell's full results (iolab report FILE)</h2><ul>{files}</ul></body></html>\n"
    )
