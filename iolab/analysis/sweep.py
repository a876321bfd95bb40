"""From measured runs to the sweep's answers: per cell the winner and its margin, the grid as data for
the heat map, and a reading written from the numbers (never canned).

Pure functions of result records; the statistics are iolab.analysis.verdict's (ratio of medians over rounds,
Welch's t on log round values for the 95 % interval, docs/statistics.md).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace

from iolab.analysis import verdict
from iolab.analysis.stats import RATIO_UNBOUNDED, median
from iolab.results import Comparison, RunResult, ScenarioResult
from iolab.results.sweep import Cell, StrategyValues, SweepResult

# Every pair is compared on these, whatever metric picks the winner.
PAIR_METRICS = ("p50_ms", "p99_ms", "rps")
WINNER_METRICS = ("rps", "p50_ms", "p99_ms", "rps_per_server_cpu_s", "cpu_ms_per_request")


def _median_of(s: ScenarioResult, metric: str) -> float | None:
    """The median over the successful rounds; None when none has the figure (nothing measured)."""
    read = operator.attrgetter(verdict.get_metric(metric).source)
    vals = [float(v) for r in s.rounds if r.status == "ok" and (v := read(r)) is not None]
    return median(vals) if vals else None


def strategy_values(s: ScenarioResult) -> StrategyValues:
    ok = [r for r in s.rounds if r.status == "ok"]
    lines = [r.stdout.lines / r.requests for r in ok if r.requests]
    return StrategyValues(
        scenario=s.name, rounds_ok=len(ok), rps=_median_of(s, "rps"), p50_ms=_median_of(s, "p50_ms"),
        p99_ms=_median_of(s, "p99_ms"), cpu_ms_per_request=_median_of(s, "cpu_ms_per_request"),
        voluntary_ctx_switches_per_request=_median_of(s, "voluntary_ctx_switches_per_request"),
        lines_per_request=round(median(lines), 4) if lines else None,
    )


def _ranked(scenarios: Sequence[ScenarioResult], metric: str) -> list[ScenarioResult]:
    m = verdict.get_metric(metric)
    return sorted(scenarios, key=lambda s: _median_of(s, metric) or 0.0, reverse=m.higher_is_better)


def analyse(run: RunResult, metric: str, deferred: frozenset[str]) -> dict[str, object]:
    """The analysed fields of a Cell, from one cell's run (only scenarios whose successful rounds have
    the metric: a strategy that measured nothing neither wins nor loses)."""
    ok = [s for s in run.scenarios if _median_of(s, metric) is not None]
    out: dict[str, object] = {"strategies": tuple(strategy_values(s) for s in run.scenarios)}
    if not ok:
        return out
    ranked = _ranked(ok, metric)
    out["winner"] = ranked[0].name
    if len(ranked) >= 2:
        out["runner_up"] = ranked[1].name
        out["margin"] = verdict.compare(ranked[1], ranked[0], [metric])[0]
    later = [s for s in ranked if s.name in deferred]
    blocking = [s for s in ranked if s.name not in deferred]
    if later and blocking:
        out["deferred_vs_blocking"] = verdict.compare(blocking[0], later[0], [metric])[0]
    out["comparisons"] = tuple(c for i, a in enumerate(ok) for b in ok[i + 1:]
                               for c in verdict.compare(a, b, PAIR_METRICS))
    return out


# ------------------------------------------------------------------------------------------- text


def gain(c: Comparison) -> tuple[float, float, float]:
    """How much better b is than a, as a factor ≥ 1 when b is better, with its interval (low, high)."""
    m = verdict.get_metric(c.metric)
    r, lo, hi = c.ratio, c.ci95[0], c.ci95[1]
    if m.higher_is_better:
        return r, lo, hi

    return _inv(r), _inv(hi), _inv(lo)


def _pct(x: float) -> str:
    v = (x - 1.0) * 100.0
    return f"{v:.0f} %" if abs(v) >= 10 else f"{v:.1f} %"


def amount(c: Comparison) -> str:
    """ "by 83 % (CI 70–95 %)" or "3.1× (CI 2.8–3.4×)": how much b beats a."""
    g, lo, hi = gain(c)
    if g >= 2.0:
        return f"{g:.3g}× (CI {lo:.3g}–{hi:.3g}×)"
    return f"by {_pct(g)} (CI {_pct(lo)} to {_pct(hi)})"


def significant(c: Comparison | None) -> bool:
    return c is not None and c.verdict != verdict.NO_DIFFERENCE


def cell_label(cell: Cell) -> str:
    """Terminal/heat-map text of a cell: "queue-async +83 % (CI 70–95 %)" or "tie: a ≈ b"; "failed" when a
    strategy measured nothing (no figure is shown for it), "… [degraded]" when too many requests failed."""
    if cell.status == "failed" or cell.winner is None:
        return "failed" if cell.status != "ok" else "—"
    label = _winner_label(cell)
    return f"{label} [degraded: too many failed requests]" if cell.status == "degraded" else label


def _winner_label(cell: Cell) -> str:
    c = cell.margin
    if c is None:
        return cell.winner or "—"
    if not significant(c):
        return f"tie: {cell.winner} ≈ {cell.runner_up} (n.s.)"
    return f"{cell.winner} {amount(c)} over {cell.runner_up}"


def where(cells: Sequence[Cell]) -> str:
    """ "0 µs · 5 ms, 200 µs · 5 ms" (work · sink latency)."""
    return ", ".join(f"{c.work_us:g} µs · {c.sink_latency_ms:g} ms" for c in cells)


# ----------------------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class GridCell:
    work_us: int
    sink_latency_ms: float
    winner: str | None
    runner_up: str | None
    gain: float  # winner over runner-up, ≥ 1 (1.0 for a tie or a failed cell)
    ci95: tuple[float, float]
    significant: bool
    label: str
    degraded: bool = False  # the cell's run had a strategy with too many failed requests


@dataclass(frozen=True)
class Grid:
    """The heat map as data: rows = work (µs of CPU per request), columns = sink latency (ms)."""

    metric: str
    work_us: tuple[int, ...]
    sink_latency_ms: tuple[float, ...]
    strategies: tuple[str, ...]
    cells: tuple[tuple[GridCell | None, ...], ...]  # [row][column]; None = not measured (yet)


def grid(result: SweepResult) -> Grid:
    rows = []
    for w in result.work_us:
        row: list[GridCell | None] = []
        for lat in result.sink_latency_ms:
            cell = result.cell(w, lat)
            if cell is None:
                row.append(None)
                continue
            g, lo, hi = gain(cell.margin) if cell.margin else (1.0, 1.0, 1.0)
            winner = cell.winner if cell.status != "failed" else None  # a failed cell shows no figure
            row.append(GridCell(w, lat, winner, cell.runner_up, g, (lo, hi), significant(cell.margin),
                                cell_label(cell), cell.status == "degraded"))
        rows.append(tuple(row))
    return Grid(result.metric, result.work_us, result.sink_latency_ms, result.scenarios, tuple(rows))


# -------------------------------------------------------------------------------------- reading


def _effect(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    out: dict[str, list[Cell]] = {"helps": [], "neutral": [], "hurts": []}
    for c in cells:
        d = c.deferred_vs_blocking
        if c.status != "ok" or d is None:
            continue
        key = "neutral" if not significant(d) else ("helps" if d.verdict == verdict.FASTER else "hurts")
        out[key].append(c)
    return out


def _size(c: Cell) -> float:
    d = c.deferred_vs_blocking
    return abs(math.log(max(gain(d)[0], 1e-12))) if d else 0.0


def _inv(x: float) -> float:
    return RATIO_UNBOUNDED if x == 0 else 1.0 / x


def flip(c: Comparison) -> Comparison:
    """The same comparison seen from the other side: a against b."""
    return replace(c, a=c.b, b=c.a, a_value=c.b_value, b_value=c.a_value, ratio=_inv(c.ratio),
                   ci95=(_inv(c.ci95[1]), _inv(c.ci95[0])))


def _example(c: Cell, noun: str) -> str:
    d = c.deferred_vs_blocking
    assert d is not None
    d = d if gain(d)[0] >= 1 else flip(d)  # told from the better one's side
    return (f"with {c.work_us:g} µs of work and {c.sink_latency_ms:g} ms sink latency, {d.b} beats {d.a} "
            f"{amount(d)} in {noun} ({_fmt(d.b_value)} vs {_fmt(d.a_value)})")


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _trend(result: SweepResult) -> str:
    """Does async logging's log-gain grow with sink latency (per work row) and shrink with work?"""
    def g(w: int, lat: float) -> float | None:
        c = result.cell(w, lat)
        d = c.deferred_vs_blocking if c and c.status == "ok" else None
        return math.log(gain(d)[0]) if d else None

    rows_up = rows = 0
    for w in result.work_us:
        vals = [v for v in (g(w, lat) for lat in result.sink_latency_ms) if v is not None]
        if len(vals) >= 2:
            rows += 1
            rows_up += vals[-1] > vals[0]
    cols_down = cols = 0
    for lat in result.sink_latency_ms:
        vals = [v for v in (g(w, lat) for w in result.work_us) if v is not None]
        if len(vals) >= 2:
            cols += 1
            cols_down += abs(vals[-1]) < abs(vals[0])
    parts = []
    if rows:
        parts.append(f"its gain is larger at the highest sink latency than at the lowest in {rows_up} of {rows} "
                     "rows of work")
    if cols:
        parts.append(f"the difference either way is smaller at the most work than at the least in {cols_down} "
                     f"of {cols} columns of latency")
    return ("Across the grid, " + "; ".join(parts) + ".") if parts else ""


def _backlog(result: SweepResult, helps: Sequence[Cell]) -> str:
    """Deferral is not free: a sink that takes L ms per write takes at most 1000/L lines a second."""
    for c in sorted(helps, key=lambda c: -c.sink_latency_ms):
        d = c.deferred_vs_blocking
        if d is None or c.sink_latency_ms <= 0:
            continue
        v = c.value(d.b)
        capacity = 1000.0 / c.sink_latency_ms
        if v is not None and v.rps is not None and v.rps > 1.2 * capacity:
            return (f" That win is deferral, not speed: at {c.sink_latency_ms:g} ms per write the sink takes at "
                    f"most {capacity:,.0f} lines a second, yet {d.b} served {v.rps:,.0f} requests a second, so "
                    "its records waited in an unbounded queue and were written after the load (at shutdown); "
                    "it holds for bursts, not for a sustained rate above the sink's.")
    return ""


def reading(result: SweepResult) -> str:
    """One paragraph, from the measured grid: where async logging helps, is neutral, and hurts."""
    m = verdict.get_metric(result.metric)
    cells = [c for c in result.cells if c.status == "ok"]
    if not cells:
        return "No cell of the sweep was measured successfully, so there is nothing to read."
    rounds = result.load.get("rounds")
    head = (f"Reading ({m.noun}, {rounds} rounds per cell, 95 % intervals of the ratio of medians; cells are "
            "named CPU work · sink latency). ")
    effect = _effect(cells)
    if not any(effect.values()):
        winners: dict[str, list[Cell]] = {}
        for c in cells:
            winners.setdefault(c.winner or "?", []).append(c)
        return head + "; ".join(f"{w} wins at {where(cs)}" for w, cs in winners.items()) + "."
    names = ", ".join(result.deferred)
    text = [head + f"Async logging ({names}: the write handed to another thread) "]
    helps, neutral, hurts = effect["helps"], effect["neutral"], effect["hurts"]
    if helps:
        best = max(helps, key=_size)
        text.append(f"helps at {where(helps)}: the largest gain is {_example(best, m.noun)}.")
    else:
        text.append("never wins significantly on this grid.")
    if neutral:
        text.append(f" It is neutral (no significant difference from the best blocking strategy) at "
                    f"{where(neutral)}.")
    if hurts:
        worst = max(hurts, key=_size)
        text.append(f" Its overhead hurts at {where(hurts)}: {_example(worst, m.noun)}, where the hand-off to "
                    "another thread costs more than the write it takes off the request's path.")
    else:
        text.append(" Its overhead never costs significantly on this grid.")
    text.append(_backlog(result, helps))
    trend = _trend(result)
    if trend:
        text.append(" " + trend)
    return "".join(text)
