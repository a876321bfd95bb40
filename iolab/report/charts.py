"""The HTML report's charts: matplotlib figures rendered to inline SVG strings.

Why matplotlib → SVG rather than a JavaScript library: the page then needs no script at all (it works
with JavaScript off and under a ``default-src 'none'`` content policy), text stays text (searchable,
selectable, read by screen readers), and it is one well-kept Python dependency instead of a minified
bundle vendored into every report.

Every function takes plain data and returns a :class:`Chart`. The SVG is post-processed so that
- axes, ticks and text are drawn in ``currentColor`` (they follow the page's light or dark theme),
- backgrounds are transparent and the series colours have ≥ 3:1 contrast on white and on near-black,
- ids are unique per chart (several SVGs share one HTML document) and unreferenced ids are dropped,
- coordinates are cut to 2 decimals and fonts are not embedded (a smaller file).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from iolab.analysis.findings import figure

# Relative luminance 0.14–0.30: contrast ≥ 3:1 (WCAG for graphics) against #fff and against #181a1b.
PALETTE = ("#1c7ed6", "#e67700", "#2f9e44", "#d6336c", "#7950f2", "#1098ad", "#9c755f", "#be4bdb",
           "#d9480f", "#868e96")
BETTER, WORSE, NEUTRAL = "#2f9e44", "#d6336c", "#868e96"
GROUP_COLORS = ("#868e96", "#1c7ed6")  # comparison page: base, new
# Drawn as this colour, then rewritten to currentColor: axes and text take the page's text colour.
_INK = "#010203"
_RC: dict[str, Any] = {
    "svg.fonttype": "none", "font.size": 10, "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
    "text.color": _INK, "axes.labelcolor": _INK, "axes.edgecolor": _INK, "xtick.color": _INK,
    "ytick.color": _INK, "axes.titlesize": 11, "axes.titleweight": "bold", "axes.facecolor": "none",
    "figure.facecolor": "none", "savefig.facecolor": "none", "legend.frameon": False,
    "grid.color": "#8a8f98", "grid.alpha": 0.35, "grid.linewidth": 0.6, "axes.spines.top": False,
    "axes.spines.right": False,
}
MAX_LABEL = 36  # characters of a scenario path shown in a chart
MAX_POINTS = 240  # per time-series line: a screen is ~1000 px wide, more points only add bytes


@dataclass(frozen=True)
class Chart:
    """One figure: ``id`` is the ``data-chart`` value (the element's id is ``chart-<id>``), ``svg`` an
    inline <svg> element."""

    id: str
    title: str
    svg: str
    caption: str = ""


@dataclass(frozen=True)
class Series:
    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    color: str
    style: str = "-"
    alpha: float = 1.0


@dataclass(frozen=True)
class BarRow:
    """One scenario on one bar panel: a value per group (one group = one run) and its per-round values."""

    label: str
    values: tuple[float | None, ...]  # None: not measured (no bar is drawn, the panel says so)
    rounds: tuple[tuple[float, ...], ...] = ()
    color: str = PALETTE[0]


@dataclass(frozen=True)
class Interval:
    """One row of a confidence-interval chart: the ratio B / A with its 95 % interval."""

    label: str
    ratio: float
    low: float
    high: float
    verdict: str  # "better" | "worse" | "n.s."
    unbounded: bool = False  # a change from zero: no ratio exists


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def line_style(i: int) -> str:
    # Past the palette, colours repeat: a different dash tells the lines apart (and helps colour-blind readers).
    return ("-", "--", ":", "-.")[(i // len(PALETTE)) % 4]


@contextmanager
def _style(salt: str) -> Iterator[None]:
    # rc_context restores every setting afterwards: the caller's matplotlib state is left as it was.
    rc: Any = {**_RC, "svg.hashsalt": salt}  # a fixed salt per chart: unique ids, identical output per run
    with matplotlib.rc_context(rc):
        yield


# ------------------------------------------------------------------------------------ SVG clean-up

_SVG_OPEN = re.compile(r"<svg\b[^>]*\bviewBox=\"([^\"]+)\"[^>]*>")
_NUM_ATTR = re.compile(r'(\s(?:d|x|y|x1|x2|y1|y2|width|height|transform|points)=")([^"]*)"')
_LONG_FLOAT = re.compile(r"(-?\d+\.\d\d)\d+")
_ID_ATTR = re.compile(r'\sid="([^"]+)"')


def _shorten(m: re.Match[str]) -> str:
    return m.group(1) + _LONG_FLOAT.sub(r"\1", m.group(2).replace("\n", " ")) + '"'


def clean_svg(raw: str, chart_id: str, title: str, description: str) -> str:
    """matplotlib's SVG document → an element for inline use (see the module docstring)."""
    svg = raw[raw.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = svg.replace("xlink:href=", "href=").replace(_INK, "currentColor")
    svg = re.sub(r' transform="rotate\(-0 [^"]*\)"', "", svg)
    svg = re.sub(r"font-family:[^;\"]*;?\s*", "", svg)  # the page's CSS names the font once
    svg = _NUM_ATTR.sub(_shorten, svg)
    referenced = set(re.findall(r"#([\w.-]+)", svg))
    svg = _ID_ATTR.sub(lambda m: m.group(0) if m.group(1) in referenced else "", svg)
    svg = re.sub(r">\s+<", "><", svg)
    m = _SVG_OPEN.search(svg)
    assert m is not None, "matplotlib wrote an SVG without a viewBox"
    width_px = float(m.group(1).split()[2]) * 4 / 3  # pt → CSS px
    t = escape(chart_id)
    head = (f'<svg viewBox="{m.group(1)}" id="chart-{t}" data-chart="{t}" role="img" '
            f'aria-labelledby="chart-{t}-title chart-{t}-desc" style="max-width:{width_px:.0f}px">'
            f'<title id="chart-{t}-title">{escape(title)}</title>'
            f'<desc id="chart-{t}-desc">{escape(description)}</desc>')
    return head + svg[m.end():]


def _to_chart(fig: Figure, chart_id: str, title: str, description: str, caption: str = "") -> Chart:
    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    return Chart(chart_id, title, clean_svg(buf.getvalue(), chart_id, title, description), caption)


def _new_figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), layout="constrained")


def _tick(v: float, _pos: object = None) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 or v == 0 else f"{v:g}"


def _t(label: str) -> str:
    """Text for matplotlib: a literal $ (a path like /price$) must not start mathtext; a leading _
    would hide a legend entry."""
    if len(label) > MAX_LABEL:  # a long path would squeeze the plot to nothing; the tables keep it whole
        half = (MAX_LABEL - 1) // 2
        label = label[:half] + "…" + label[-half:]
    label = label.replace("$", r"\$")
    return " " + label if label.startswith("_") else label


# ---------------------------------------------------------------------------------- the charts


def _percentile_label(x: float, _pos: object = None) -> str:
    digits = round(math.log10(x))
    if digits <= 0:
        return "0 %"
    pct = 100.0 - 100.0 / x
    return f"{pct:.{max(0, digits - 2)}f} %"


def _spectrum_axes(ax: Axes, x_max: float) -> None:
    ax.set_xscale("log")
    top = 10.0 ** max(4, math.ceil(math.log10(max(x_max, 10.0))))
    ax.set_xlim(1.0, top)
    ax.xaxis.set_major_locator(FixedLocator([10.0 ** k for k in range(round(math.log10(top)) + 1)]))
    ax.xaxis.set_major_formatter(FuncFormatter(_percentile_label))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(bottom=0)
    ax.grid(True)


def spectrum_x(points: Sequence[tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """HdrHistogram's plotter convention: x = 1 / (1 − percentile), so 90 %, 99 %, 99.9 % are equidistant.
    100 % has no place on that axis; the iterator reaches the maximum value just before it."""
    kept = [(1.0 / (1.0 - p / 100.0), ms) for p, ms in points if p < 100.0]
    return tuple(x for x, _ in kept), tuple(y for _, y in kept)


def latency_spectrum(series: Sequence[Series], chart_id: str = "latency-spectrum") -> Chart:
    title = "Response time by percentile"
    with _style(chart_id):
        fig = _new_figure(10, 4.6)
        ax = fig.add_subplot()
        x_max = 10.0
        for s in series:
            ax.plot(s.x, s.y, s.style, color=s.color, label=_t(s.label), linewidth=1.8, alpha=s.alpha)
            x_max = max([x_max, *s.x])
        _spectrum_axes(ax, x_max)
        ax.set_title(title + " (every round pooled)", loc="left")
        ax.set_xlabel("percentile (log scale of 1 / (1 − p))")
        ax.set_ylabel("response time (ms)")
        if len(series) > 8:  # inside the axes they would hide the lines
            fig.legend(loc="outside lower left", ncols=3, fontsize=9)
        elif series:
            ax.legend(loc="upper left", ncols=2 if len(series) > 5 else 1)
        return _to_chart(fig, chart_id, title, "Percentile spectrum of response times, one line per scenario: "
                         + ", ".join(s.label for s in series))


def spectrum_grid(panels: Sequence[tuple[str, Sequence[Series]]], chart_id: str = "compare-spectrum") -> Chart:
    """Small multiples: one percentile spectrum per scenario (the comparison page: base vs new)."""
    title = "Response time by percentile, per scenario"
    cols = 2 if len(panels) > 1 else 1
    rows = max(1, math.ceil(len(panels) / cols))
    x_max = max([10.0, *(x for _, series in panels for s in series for x in s.x)])  # one x scale for all
    with _style(chart_id):
        fig = _new_figure(10, 0.4 + 2.6 * rows)
        axes = fig.subplots(rows, cols, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i >= len(panels):
                ax.set_visible(False)
                continue
            name, series = panels[i]
            for s in series:
                ax.plot(s.x, s.y, s.style, color=s.color, label=_t(s.label), linewidth=1.6)
            _spectrum_axes(ax, x_max)
            ax.set_title(_t(name), loc="left")
            ax.set_ylabel("ms")
            if i == 0:
                ax.legend(loc="upper left")
        return _to_chart(fig, chart_id, title, "Percentile spectra of response times, base run against new run, "
                         "one panel per scenario: " + ", ".join(n for n, _ in panels))


def bar_panels(panels: Sequence[tuple[str, Sequence[BarRow]]], chart_id: str, title: str,
               groups: Sequence[str] = (), cols: int = 4) -> Chart:
    """Horizontal bars, one panel per metric, one row per scenario (a bar per group when comparing runs);
    a dot for each round shows how much the rounds agreed."""
    n_rows = max((len(rows) for _, rows in panels), default=1)
    grid_rows = math.ceil(len(panels) / cols)
    per_row = 0.34 * max(1, len(groups))
    with _style(chart_id):
        fig = _new_figure(10, 0.5 + grid_rows * (0.55 + per_row * n_rows))
        axes = fig.subplots(grid_rows, cols, squeeze=False, sharey=True)
        for i, ax in enumerate(axes.flat):
            if i >= len(panels):
                ax.set_visible(False)
                continue
            _bar_panel(ax, *panels[i], groups)
        fig.suptitle(f"{title} (bars: the scenario over all rounds; dots: each round)", x=0.01, ha="left",
                     fontsize=11, fontweight="bold")
        if len(groups) > 1:
            handles = [Line2D([], [], color=GROUP_COLORS[g % 2], linewidth=8, label=_t(name))
                       for g, name in enumerate(groups)]
            fig.legend(handles=handles, loc="outside lower left", ncols=len(groups))
        labels = [r.label for r in panels[0][1]] if panels else []
        return _to_chart(fig, chart_id, title, f"{title}: horizontal bars per scenario ({', '.join(labels)}), "
                         f"one panel per metric: {', '.join(t for t, _ in panels)}")


def _bar_panel(ax: Axes, metric: str, rows: Sequence[BarRow], groups: Sequence[str]) -> None:
    n_groups = max(1, len(groups))
    height = 0.8 / n_groups
    top = max([v for r in rows for v in (*r.values, *(x for rr in r.rounds for x in rr)) if v is not None]
              or [0.0])
    for y, row in enumerate(rows):
        for g, value in enumerate(row.values):
            pos = y + (g - (n_groups - 1) / 2) * height
            if value is None:  # never a zero-length bar that reads as "0": no bar, and the reason
                ax.text(top * 0.02, pos, "not measured", va="center", fontsize=8, color=_INK, alpha=0.7)
                continue
            bar_color = row.color if n_groups == 1 else GROUP_COLORS[g % 2]
            ax.barh(pos, value, height=height * 0.9, color=bar_color)
            dots = row.rounds[g] if g < len(row.rounds) and len(row.rounds[g]) > 1 else ()
            if dots:
                ax.plot(dots, [pos] * len(dots), "o", markersize=3, color=_INK, alpha=0.7)
            ax.text(max((value, *dots)) + top * 0.03, pos, figure(value), va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [_t(r.label) for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, top * 1.3 if top > 0 else 1)
    ax.set_title(_t(metric), loc="left", fontsize=10)
    ax.grid(True, axis="x")
    ax.tick_params(axis="x", labelsize=8)


def time_series(rows: Sequence[tuple[str, Sequence[Sequence[Series]]]], panel_titles: Sequence[str],
                legend: Sequence[tuple[str, str]], quota_pct: float | None = None,
                chart_id: str = "time-series") -> Chart:
    """Small multiples: a row per scenario, a column per measure; every round overlaid."""
    title = "Per-second samples over the measured window"
    cols = len(panel_titles)
    with _style(chart_id):
        fig = _new_figure(10, 0.7 + 1.45 * max(1, len(rows)))
        axes = fig.subplots(max(1, len(rows)), cols, squeeze=False, sharex=True, sharey="col")
        for r, (name, columns) in enumerate(rows):
            for c, series in enumerate(columns):
                ax = axes[r][c]
                for s in series:
                    ax.plot(s.x, s.y, s.style, color=s.color, alpha=s.alpha, linewidth=1.4)
                ax.grid(True)
                ax.yaxis.set_major_formatter(FuncFormatter(_tick))
                ax.tick_params(labelsize=8)
                if c == cols - 1 and quota_pct:
                    ax.axhline(quota_pct, color=NEUTRAL, linewidth=1.2, linestyle="-.")
                    ax.text(1.0, quota_pct, "quota", transform=ax.get_yaxis_transform(), ha="right",
                            va="bottom", fontsize=7)
                if r == 0:
                    ax.set_title(panel_titles[c], fontsize=10)
            axes[r][0].set_ylabel(_t(name), fontsize=9, fontweight="bold")
        for c in range(cols):
            axes[-1][c].set_xlabel("seconds", fontsize=9)
            # One y scale per column (shared), from 0 to the highest value of any scenario: set once,
            # after every line is drawn, or the first panel's range would clip the others.
            top = max([y for _, columns in rows if c < len(columns) for s in columns[c] for y in s.y]
                      + ([quota_pct] if c == cols - 1 and quota_pct else []) + [1.0])
            axes[0][c].set_ylim(0, top * 1.08)
        handles = [Line2D([], [], color=_INK, linestyle=style, label=label)  # type: ignore[arg-type]
                   for style, label in legend]
        fig.legend(handles=handles, loc="outside upper left", ncols=len(handles), fontsize=9)
        return _to_chart(fig, chart_id, title, f"{title}: {', '.join(panel_titles)}; one row per scenario: "
                         + ", ".join(n for n, _ in rows))


_VERDICT_LOOK = {"better": (BETTER, "o", "B better"), "worse": (WORSE, "s", "B worse"),
                 "n.s.": (NEUTRAL, "D", "no significant difference")}
# The axis spans at most ÷4 … ×4 (−75 % … +300 %): wider, and the changes a reader cares about (±5 %)
# shrink to a dot next to a −100 % one. A point beyond is drawn as an arrow head with its value written.
RATIO_CLIP = 4.0


def _change_label(r: float, _pos: object = None) -> str:
    """A ratio as a reader says it: −50 %, 0, +50 % near 1; ÷4 and ×4 further out."""
    if r >= 2.0:
        return f"×{r:g}"
    if r <= 0.5:
        return f"÷{1 / r:g}"
    pct = (r - 1.0) * 100.0
    return "0" if abs(pct) < 0.5 else f"{pct:+.0f} %".replace("-", "−")


def _ratio_ticks(lo: float, hi: float) -> list[float]:
    k0, k1 = round(math.log2(lo)), round(math.log2(hi))
    step = max(1, math.ceil((k1 - k0) / 6))  # at most ~7 labels in a half-width panel
    return [2.0 ** k for k in range(k0, k1 + 1) if k % step == 0]


def _ratio_limits(rows: Sequence[Interval]) -> tuple[float, float]:
    finite = [x for r in rows if not r.unbounded for x in (r.ratio, r.low, r.high) if x > 0]
    lo = max(1 / RATIO_CLIP, min([0.5, *finite]) / 1.25)
    hi = min(RATIO_CLIP, max([2.0, *finite]) * 1.25)
    return 2.0 ** math.floor(math.log2(lo)), 2.0 ** math.ceil(math.log2(hi))


def intervals(panels: Sequence[tuple[str, Sequence[Interval]]], chart_id: str = "verdicts",
              title: str = "Change of B against A with 95 % confidence intervals") -> Chart:
    """A forest plot per pair: B / A on a log axis (the intervals come from logs, so they are symmetric
    there), labelled as a change in percent, no change marked; clipped ends are drawn as arrow heads."""
    cols = 2 if len(panels) > 1 else 1
    grid_rows = max(1, math.ceil(len(panels) / cols))
    n = max((len(rows) for _, rows in panels), default=1)
    lo_lim, hi_lim = _ratio_limits([r for _, rows in panels for r in rows])
    with _style(chart_id):
        fig = _new_figure(10, 0.7 + grid_rows * (0.6 + 0.24 * n))
        axes = fig.subplots(grid_rows, cols, squeeze=False, sharex=True)
        for i, ax in enumerate(axes.flat):
            if i >= len(panels):
                ax.set_visible(False)
                continue
            name, rows = panels[i]
            for y, row in enumerate(rows):
                _interval_row(ax, y, row, lo_lim, hi_lim)
            ax.axvline(1.0, color=_INK, linewidth=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xlim(lo_lim, hi_lim)
            ax.xaxis.set_major_locator(FixedLocator(_ratio_ticks(lo_lim, hi_lim)))
            ax.xaxis.set_major_formatter(FuncFormatter(_change_label))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_yticks(range(len(rows)), [_t(r.label) for r in rows], fontsize=8)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.tick_params(axis="x", labelsize=8, labelbottom=True)  # every panel has its scale
            ax.grid(True, axis="x")
            ax.set_title(_t(name), loc="left", fontsize=10)
        fig.suptitle(title, x=0.01, ha="left", fontsize=11, fontweight="bold")
        handles = [Line2D([], [], color=c, marker=m, linestyle="-", label=label)
                   for c, m, label in _VERDICT_LOOK.values()]
        fig.legend(handles=handles, loc="outside lower left", ncols=3, fontsize=9)
        return _to_chart(fig, chart_id, title, f"{title}, one panel per comparison: "
                         + ", ".join(n for n, _ in panels))


def _interval_row(ax: Axes, y: int, row: Interval, lo_lim: float, hi_lim: float) -> None:
    colour, marker, _ = _VERDICT_LOOK.get(row.verdict, _VERDICT_LOOK["n.s."])
    if row.unbounded:  # from zero: no ratio, mark it at the right edge
        ax.plot([hi_lim], [y], ">", color=colour, markersize=6, clip_on=False)
        ax.text(hi_lim / 1.15, y, "from 0", va="center", ha="right", fontsize=7)
        return
    # A raw-value interval can reach below 0 (ratio ≤ 0): on a log axis that is the left edge.
    low = min(hi_lim, max(lo_lim, row.low)) if row.low > 0 else lo_lim
    high = min(hi_lim, max(lo_lim, row.high))
    ax.plot([low, high], [y, y], "-", color=colour, linewidth=2, solid_capstyle="butt")
    if row.high > hi_lim:
        ax.plot([hi_lim], [y], ">", color=colour, markersize=5, clip_on=False)
    if row.low < lo_lim:
        ax.plot([lo_lim], [y], "<", color=colour, markersize=5, clip_on=False)
    point = min(hi_lim, max(lo_lim, row.ratio))
    ax.plot([point], [y], marker, color=colour, markersize=5,
            markerfacecolor=colour if row.verdict != "n.s." else "none", clip_on=False)
    if point != row.ratio:  # the point itself is off the axis: say where it is
        text = f"{(row.ratio - 1) * 100:+.1f} %".replace("-", "−") if row.ratio < 1 else f"×{row.ratio:.3g}"
        left = point == lo_lim
        ax.text(point * (1.12 if left else 1 / 1.12), y - 0.1, text, fontsize=7, va="bottom",
                ha="left" if left else "right")
