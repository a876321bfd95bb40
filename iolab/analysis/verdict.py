"""Verdicts: turn ScenarioResults into Comparison records and sentences a reader can act on.

Everything here is pure: it reads result records and returns new ones or strings. The statistics are
in iolab/analysis/stats.py and explained in docs/statistics.md. What is known about the scenarios (which
is whose control, which pairs the seed compared) comes from the caller as a ScenarioKnowledge
(iolab/analysis/knowledge.py): the demo supplies its own, a user's app none.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, overload

from iolab.analysis.knowledge import NONE, ScenarioKnowledge
from iolab.analysis.latency import PERCENTILES, percentile_field
from iolab.analysis.stats import (
    METHOD_TOO_FEW,
    RATIO_UNBOUNDED,
    compare_samples,
    median,
    welch_contrast,
)
from iolab.results import Comparison, RoundRecord, ScenarioResult

DEFAULT_ALPHA = 0.05
# Differences under 1 % are not practically meaningful even when "significant": with many rounds a
# t-test detects a 0.3 % shift caused by the machine warming up. pyperf's compare_to has the same
# idea (--min-speed), and its predecessor perf called variations under 1 % insignificant.
MIN_EFFECT = 0.01

FASTER, SLOWER, NO_DIFFERENCE = "faster", "slower", "no significant difference"


# ---------------------------------------------------------------------------------- metric registry


@dataclass(frozen=True)
class Metric:
    """A number to compare scenarios on; also a name for ``iolab compare --fail-if`` gates.

    ``source`` is an attribute path that exists on both RoundRecord (one round) and ScenarioResult
    (the aggregate over rounds), so the same path reads both. ``speed`` says whether "faster/slower"
    reads naturally for it; counts get a phrase built from ``less``/``more`` and ``noun`` instead.
    """

    name: str
    source: str
    unit: str
    higher_is_better: bool
    noun: str
    less: str
    more: str
    speed: bool
    # What 0 means when it cannot be a measurement (no request takes 0 ms; a measured server spends CPU):
    # then 0 is "not measured" and a gate on it fails. None: 0 is a value (0 write syscalls per request).
    zero_means: str | None = None
    # Read from the server's process (/proc): absent when iolab did not sample the server (--url, no --pid).
    server_side: bool = False
    # How a scenario's rounds become one value: "median" (tables and gates), or "total" for event counts,
    # where one round's 5 failed requests must not vanish in a median of zeros.
    over_rounds: Literal["median", "total"] = "median"

    def round_value(self, record: RoundRecord) -> float:
        return float(operator.attrgetter(self.source)(record))

    # No scenario_value: a ScenarioResult's own fields are pooled aggregates (the p99 of every round's
    # requests merged). Comparisons and gates read a scenario through scenario_statistic() alone, so a
    # table and a gate cannot be given two different values.


_NO_REQUEST = "no request was measured"
_NO_SERVER_CPU = "the server's CPU time was not measured"


def _latency(name: str, source: str, noun: str) -> Metric:
    return Metric(name, source, "ms", False, noun, less="lower", more="higher", speed=True, zero_means=_NO_REQUEST)


def _count(name: str, source: str, noun: str, *, server_side: bool = True) -> Metric:
    return Metric(name, source, "", False, noun, less="fewer", more="more", speed=False, server_side=server_side)


_REGISTRY = (
    _latency("p50_ms", "latency_ms.p50", "p50 latency"),
    _latency("p99_ms", "latency_ms.p99", "p99 latency"),
    # Under a CPU quota the latency distribution is bimodal (served in the quota vs waiting out a
    # throttled period), so p50 can jump between the modes from round to round; the mean does not.
    _latency("mean_ms", "latency_ms.mean", "mean latency"),
    Metric("rps", "rps", "req/s", True, "throughput", less="lower", more="higher", speed=True,
           zero_means=_NO_REQUEST),
    Metric(
        "rps_per_server_cpu_s",
        "rps_per_server_cpu_s",
        "req/CPU-s",
        True,
        "requests per server CPU-second",
        less="fewer",
        more="more",
        speed=False,
        zero_means=_NO_SERVER_CPU,
        server_side=True,
    ),
    Metric(
        "cpu_ms_per_request",
        "per_request.cpu_ms",
        "ms",
        False,
        "server CPU time per request",
        less="less",
        more="more",
        speed=False,
        zero_means=_NO_SERVER_CPU,
        server_side=True,
    ),
    # syscw: write, writev, pwrite and sendfile calls; send/sendto/sendmsg are not counted (docs/measuring.md).
    _count("write_syscalls_per_request", "per_request.write_syscalls", "write syscalls (syscw) per request"),
    _count(
        "voluntary_ctx_switches_per_request",
        "per_request.voluntary_ctx_switches",
        "voluntary context switches per request",
    ),
    _count(
        "involuntary_ctx_switches_per_request",
        "per_request.involuntary_ctx_switches",
        "involuntary context switches per request",
    ),
)
# Readable by name (gates, `iolab compare`), but not compared in every report.
_EXTRA = (
    *(_latency(f"{percentile_field(q)}_ms", f"latency_ms.{percentile_field(q)}", f"p{q:g} latency")
      for q in PERCENTILES if q not in (50, 99)),
    _count("write_bytes_per_request", "per_request.write_bytes", "bytes written per request"),
    replace(_count("failed", "failed", "failed requests", server_side=False), over_rounds="total"),
    replace(_count("non_2xx", "non_2xx", "non-2xx responses", server_side=False), over_rounds="total"),
)
DEFAULT_METRICS: tuple[str, ...] = tuple(m.name for m in _REGISTRY)
METRICS: Mapping[str, Metric] = {m.name: m for m in (*_REGISTRY, *_EXTRA)}


def get_metric(name: str) -> Metric:
    """The registry entry; an unknown name raises KeyError listing the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None


@dataclass(frozen=True)
class RoundsStatistic:
    """A scenario's value of one metric as ``iolab compare`` shows and gates it: the median (or, for
    event counts, the total) over its successful rounds. ``value`` is None when no successful round
    has the metric (a null latency: nothing was measured)."""

    value: float | None
    statistic: Literal["median", "total"]
    rounds: int

    def describe(self) -> str:
        """ "median over 3 rounds" """
        return f"{self.statistic} over {self.rounds} round{'s' if self.rounds != 1 else ''}"


def _read(record: RoundRecord | ScenarioResult, m: Metric) -> float | None:
    """The stored value, None when it is null or not a finite number (a field another version left out)."""
    value = operator.attrgetter(m.source)(record)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def scenario_statistic(s: ScenarioResult, name: str) -> RoundsStatistic:
    """The one value per scenario that comparison tables (``compare``) and ``--fail-if`` gates both use:
    the median of the successful rounds' values (the point estimate of ``stats.compare_samples`` is
    their ratio), or their total for event counts. Never the pooled aggregate of ``ScenarioResult``,
    which for p99 is the p99 of all rounds' requests merged and can differ from every round's."""
    m = get_metric(name)
    values = _ok_values(s, m)
    if not values:
        return RoundsStatistic(None, m.over_rounds, 0)
    value = math.fsum(values) if m.over_rounds == "total" else median(values)
    return RoundsStatistic(value, m.over_rounds, len(values))


@overload
def metric_value(record: RoundRecord, name: str) -> float: ...


@overload
def metric_value(record: ScenarioResult, name: str) -> float | None: ...


def metric_value(record: RoundRecord | ScenarioResult, name: str) -> float | None:
    """A metric of one round, or of a scenario as the comparison tables and gates show it (the median
    over its successful rounds, :func:`scenario_statistic`; None when none has it)."""
    if isinstance(record, ScenarioResult):
        return scenario_statistic(record, name).value
    return get_metric(name).round_value(record)


# ------------------------------------------------------------------------------------- formatting


def _num(x: float, sign: bool = False) -> str:
    """About 3 significant figures, no exponent for everyday sizes: 12,345  92.4  1.00  0.031."""
    plus = "+" if sign and x > 0 else ""
    a = abs(x)
    if a >= RATIO_UNBOUNDED:
        return plus + ("∞" if x > 0 else "-∞")
    if a >= 1000:
        return plus + f"{x:,.0f}"
    if a >= 10:
        return plus + f"{x:.1f}"
    if a >= 0.01 or a == 0:
        return plus + f"{x:.2f}"
    return plus + f"{x:.2g}"


def _r(x: float) -> str:
    """A ratio: 1.01, 0.97; 3 significant figures outside [0.01, 100)."""
    if abs(x) >= RATIO_UNBOUNDED:
        return "∞" if x > 0 else "-∞"
    return f"{x:.2f}" if 0.01 <= abs(x) < 100 else f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}"


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _label(name: str, scenarios: Mapping[str, ScenarioResult] | None = None) -> str:
    if scenarios is not None and name in scenarios and scenarios[name].path:
        return scenarios[name].path
    return name


def _amount(ratio: float, low: float, high: float, a_value: float, b_value: float) -> tuple[str, str]:
    """(how much, interval) of a significant change: ("by 21 %", "18–24 %"), ("3.1×", "2.9–3.3×"),
    or ("from 0.00 to 1.00", "") when a is 0 and no ratio exists."""
    if abs(ratio) >= RATIO_UNBOUNDED:
        return f"from {_num(a_value)} to {_num(b_value)}", ""
    hi_ratio = "∞" if high >= RATIO_UNBOUNDED else f"{high:.3g}"
    if ratio >= 2.0:
        return f"{ratio:.3g}×", f"{low:.3g}–{hi_ratio}×"
    if ratio < 1.0:  # a decrease in percent of a: the lowest ratio is the largest cut
        return f"by {_pct((1 - ratio) * 100)} %", f"{_pct((1 - high) * 100)}–{_pct((1 - low) * 100)} %"
    hi_pct = "∞" if high >= RATIO_UNBOUNDED else _pct((high - 1) * 100)
    return f"by {_pct((ratio - 1) * 100)} %", f"{_pct((low - 1) * 100)}–{hi_pct} %"


def _change_phrase(m: Metric | None, c: Comparison, *, as_speed: bool, ci_label: str, p_text: str) -> str:
    """ "faster by 21 % (95 % CI 18–24 %, p=0.002)" or, for counts,
    "fewer write syscalls (syscw) per request by 98 % (CI 97–99 %)"."""
    amount, ci = _amount(c.ratio, c.ci95[0], c.ci95[1], c.a_value, c.b_value)
    if m is None or as_speed:
        words = c.verdict
    else:
        words = f"{m.more if c.ratio > 1 else m.less} {m.noun}"
    if amount.endswith("×"):
        head = f"{amount} {words}"
    else:
        head = f"{words}, {amount}" if amount.startswith("from") else f"{words} {amount}"
    extras = ([f"{ci_label} {ci}"] if ci else []) + ([p_text] if p_text else [])
    return head + (f" ({', '.join(extras)})" if extras else "")


# ---------------------------------------------------------------------------------------- verdicts


def _ok_values(s: ScenarioResult, m: Metric) -> list[float]:
    """The metric of each successful round; a round where it is null (nothing measured) has none."""
    return [v for r in s.rounds if r.status == "ok" and (v := _read(r, m)) is not None]


def _judge(m: Metric, c: Comparison, alpha: float) -> tuple[str, str]:
    """(verdict, note). Significant = p < alpha, the CI excludes 1, the median ratio lies on the same
    side of 1 as the CI, and |ratio − 1| ≥ MIN_EFFECT."""
    low, high = c.ci95
    summary = f"ratio {_r(c.ratio)}, CI {_r(low)}–{_r(high)}, {_p(c.p_value)}"
    if c.method == METHOD_TOO_FEW:
        return NO_DIFFERENCE, f"too few successful rounds to test ({summary}): run at least 3 rounds"
    if c.p_value >= alpha or low <= 1.0 <= high:
        return NO_DIFFERENCE, f"no significant difference in {m.noun} ({summary})"
    if (c.ratio > 1) != (low > 1):
        return NO_DIFFERENCE, f"the median ratio and the interval disagree on the direction ({summary})"
    if abs(c.ratio - 1.0) < MIN_EFFECT:
        return NO_DIFFERENCE, (
            f"{m.noun} differs by {_pct(abs(c.ratio - 1) * 100)} %, below the "
            f"{_pct(MIN_EFFECT * 100)} % minimum effect ({summary})"
        )
    b_better = (c.ratio > 1) == m.higher_is_better
    verdict = FASTER if b_better else SLOWER
    return verdict, _change_phrase(m, replace(c, verdict=verdict), as_speed=False, ci_label="CI", p_text="")


def compare(
    a: ScenarioResult,
    b: ScenarioResult,
    metrics: Sequence[str] = DEFAULT_METRICS,
    alpha: float = DEFAULT_ALPHA,
) -> list[Comparison]:
    """One Comparison of b against a per metric, from the rounds with status "ok"; none for a metric
    that one of the two has in no such round (null: not measured).

    a_value/b_value are :func:`scenario_statistic` (the median of the round values), the values gates
    judge; ratio, ci95 and p_value come from :func:`iolab.analysis.stats.compare_samples`. A metric that no
    successful round of a or of b has (null: nothing measured) gets no Comparison: a stand-in value
    would read as a measurement.
    """
    out: list[Comparison] = []
    for name in metrics:
        m = get_metric(name)
        sa, sb = scenario_statistic(a, name), scenario_statistic(b, name)
        if sa.value is None or sb.value is None:
            continue
        va, vb = _ok_values(a, m), _ok_values(b, m)
        if not va or not vb:
            continue  # no measurement on one side (nothing succeeded, or not sampled): no verdict
        est = compare_samples(va, vb, alpha=alpha)
        draft = Comparison(a=a.name, b=b.name, metric=name, a_value=sa.value, b_value=sb.value, ratio=est.ratio,
                           ci95=est.ci95, p_value=est.p_value, verdict=NO_DIFFERENCE, method=est.method)
        verdict, note = _judge(m, draft, alpha)
        out.append(replace(draft, verdict=verdict, note=note))
    return out


def describe(c: Comparison) -> str:
    """One line, b first: "/async vs /sync: p50_ms 73.1 vs 92.4 ms — faster by 21 % (95 % CI 18–24 %,
    p=0.002)" or "… — no significant difference (ratio 1.01, CI 0.97–1.05, p=0.41)"."""
    m = METRICS.get(c.metric)
    unit = f" {m.unit}" if m and m.unit else ""
    head = f"{c.b} vs {c.a}: {c.metric} {_num(c.b_value)} vs {_num(c.a_value)}{unit}"
    if c.verdict in (FASTER, SLOWER):
        speed = m is None or m.speed
        return f"{head} — {_change_phrase(m, c, as_speed=speed, ci_label='95 % CI', p_text=_p(c.p_value))}"
    low, high = c.ci95
    detail = f"ratio {_r(c.ratio)}, CI {_r(low)}–{_r(high)}, {_p(c.p_value)}"
    if c.method == METHOD_TOO_FEW:
        detail += "; too few rounds to test"
    elif (low > 1 or high < 1) and abs(c.ratio - 1) < MIN_EFFECT:
        detail += f"; below the {_pct(MIN_EFFECT * 100)} % minimum effect"
    return f"{head} — {NO_DIFFERENCE} ({detail})"


# --------------------------------------------------------------------------------------- pairs

NO_OUTPUT_GENERIC = "its log calls produced no output (no handler, a level filter, or lost at shutdown)"
# Less than this many extra stdout lines per request than the control: the log records are not arriving.
LOGGED_LINES_PER_REQUEST = 0.5


def default_pairs(names: Sequence[str], knowledge: ScenarioKnowledge = NONE) -> list[tuple[str, str]]:
    """(a, b) pairs the report should show: the controls against each other, each scenario against its
    control, catalog scenarios against their peers, then the seed's pairs (all from ``knowledge``). When
    none of those is present (a user's app), every scenario against the first one."""
    k = knowledge
    present = set(names)
    pairs: list[tuple[str, str]] = []
    if k.control_pair is not None and set(k.control_pair) <= present:
        pairs.append(k.control_pair)
    pairs += [(ctrl, s) for s, ctrl in k.controls.items() if s in present and ctrl in present]
    pairs += [(x, y) for x, y in k.peer_pairs if x in present and y in present and (x, y) not in pairs]
    pairs += [(x, y) for x, y in k.seed_pairs if x in present and y in present]
    if not pairs and len(names) >= 2:
        pairs = [(names[0], n) for n in names[1:]]
    return pairs


def compare_all(
    scenarios: Mapping[str, ScenarioResult],
    pairs: Sequence[tuple[str, str]] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    alpha: float = DEFAULT_ALPHA,
    knowledge: ScenarioKnowledge = NONE,
) -> list[Comparison]:
    """:func:`compare` over ``pairs`` (default: :func:`default_pairs` of the scenario names)."""
    chosen = default_pairs(list(scenarios), knowledge) if pairs is None else pairs
    return [c for x, y in chosen for c in compare(scenarios[x], scenarios[y], metrics, alpha)]


# ------------------------------------------------------------------------------------- attribution


def _term(groups: Sequence[list[float]], weights: Sequence[float], unit: str) -> str:
    """ "+18.9 ms (95 % CI 16.8 to 21.0)", with ", not significant" when the interval includes 0."""
    estimate = math.fsum(w * (math.fsum(g) / len(g)) for w, g in zip(weights, groups, strict=True))
    if any(len(g) < 2 for g in groups):
        return f"{_num(estimate, sign=True)}{unit} (too few rounds for an interval)"
    c = welch_contrast(groups, weights)
    significant = c.low > 0 or c.high < 0 or (c.se == 0 and c.estimate != 0)
    tail = "" if significant else ", not significant"
    return f"{_num(c.estimate, sign=True)}{unit} (95 % CI {_num(c.low)} to {_num(c.high)}{tail})"


def attribute(scenarios: Mapping[str, ScenarioResult], metric: str = "p50_ms",
              knowledge: ScenarioKnowledge = NONE) -> list[str]:
    """Sentences that split differences into their causes, using only scenarios present; none without
    ``knowledge`` of the scenarios' controls and seed pairs.

    For a seed pair X vs Y with controls cX, cY (round means, so the terms add up exactly):
    X − Y = (cX − cY) + [(X − cX) − (Y − cY)], i.e. `def` vs `async def`, plus the logging code.
    Every term is a contrast of independent round means with a Welch–Satterthwaite interval.
    """
    m = get_metric(metric)
    unit = f" {m.unit}" if m.unit else ""
    vals = {n: _ok_values(s, m) for n, s in scenarios.items() if _ok_values(s, m)}

    def lab(n: str) -> str:
        return _label(n, scenarios)

    k = knowledge
    out: list[str] = []
    cs, ca = k.control_pair or ("", "")
    ds, da = k.control_pair_differs_by
    have_controls = k.control_pair is not None and cs in vals and ca in vals
    decomposed = False
    for x, y in k.seed_pairs:
        if x not in vals or y not in vals:
            continue
        total = _term([vals[x], vals[y]], [1, -1], unit)
        sentence = f"{lab(x)} vs {lab(y)}: {m.noun} {total}."
        if have_controls and k.controls.get(x) == cs and k.controls.get(y) == ca:
            cx, cy = vals[cs], vals[ca]
            sentence += (
                f" Of that, {ds} vs {da} ({lab(cs)} vs {lab(ca)}) accounts "
                f"for {_term([cx, cy], [1, -1], unit)}; the logging code ({k.log_code[x]} vs {k.log_code[y]}) "
                f"accounts for {_term([vals[x], cx, vals[y], cy], [1, -1, -1, 1], unit)}."
            )
            decomposed = True
        out.append(sentence)
    if have_controls and not decomposed:
        out.append(
            f"{lab(cs)} vs {lab(ca)}: {ds} instead of {da} changes "
            f"{m.noun} by {_term([vals[cs], vals[ca]], [1, -1], unit)}."
        )
    for s, ctrl in k.controls.items():
        if s in vals and ctrl in vals:
            out.append(
                f"{lab(s)} vs {lab(ctrl)}: {k.log_code[s]} changes {m.noun} by "
                f"{_term([vals[s], vals[ctrl]], [1, -1], unit)}."
            )
    if out:
        out.append(
            "Method: differences of the means of successful rounds; 95 % intervals from Welch's t with "
            "Welch–Satterthwaite degrees of freedom (docs/statistics.md)."
        )
    return out


def _lines_per_request(s: ScenarioResult) -> float:
    return s.stdout.lines / s.requests if s.requests else 0.0


def stdout_notes(scenarios: Mapping[str, ScenarioResult], knowledge: ScenarioKnowledge = NONE) -> list[str]:
    """Notes on logging scenarios whose log records never reached stdout (none without ``knowledge``).

    A logging scenario of ``knowledge.expects_output`` writes one line per request. It is flagged when it wrote 0 lines, or when
    it wrote less than LOGGED_LINES_PER_REQUEST more lines per request than its control (which may
    write start-up lines and an access log of its own). Per request, not in total, because the
    scenarios' request counts differ a little from round to round.
    """
    notes: list[str] = []
    for name, ctrl_name in knowledge.controls.items():
        s = scenarios.get(name)
        if s is None or s.requests == 0 or name not in knowledge.expects_output:
            continue
        ctrl = scenarios.get(ctrl_name)
        extra = _lines_per_request(s) - (_lines_per_request(ctrl) if ctrl else 0.0)
        if s.stdout.lines > 0 and extra >= LOGGED_LINES_PER_REQUEST:
            continue
        reason = knowledge.no_output_reasons.get(name, NO_OUTPUT_GENERIC)
        label, lines = _label(name, scenarios), s.stdout.lines
        if lines == 0:
            notes.append(f"{label} wrote 0 lines: {reason}")
        elif ctrl is not None:
            notes.append(
                f"{label} wrote no more stdout lines than {_label(ctrl_name, scenarios)} "
                f"({_num(_lines_per_request(s))} vs {_num(_lines_per_request(ctrl))} per request): {reason}"
            )
        else:
            notes.append(f"{label} wrote {lines} lines for {s.requests} requests: {reason}")
    return notes
