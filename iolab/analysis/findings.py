"""Findings: the answer first, in plain sentences, each with its figure and 95 % interval (docs/try.md).

A pure function of the record: the same rounds always give the same findings, so ``iolab report`` and
``iolab compare`` regenerate them from a saved file. Which pairs are judged:

- a ``--try`` variant (its name is ``<base> [knob=value …]``) against its as-is scenario ``<base>``;
- the built-in demo (the caller passes its ScenarioKnowledge): the seed's question, /sync against /async, split into `def` vs `async def` and the
  log calls (the controls /noop-sync and /noop-async);
- otherwise the pairs the run compared (``--compare``, or every scenario against the first);
- across a network (``--net-*``, issue 20), first: round trips per record, records lost, what an outage did
  (iolab.analysis.network_findings; counts, so their interval is the figure itself).

Only a significant difference (iolab.analysis.verdict's rule: p < 0.05, the interval excludes no change, at
least 1 %) is stated as a claim; a pair without one gets one "no measurable difference (CI …)" sentence.
Claims are ranked by effect size, |ln(b / a)|, largest first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from iolab.analysis import verdict
from iolab.analysis.knowledge import NONE, ScenarioKnowledge
from iolab.analysis.network_findings import network_finding_records
from iolab.analysis.stats import METHOD_TOO_FEW, RATIO_UNBOUNDED, compare_samples, median, welch_contrast
from iolab.results import Comparison, Finding, RunResult, ScenarioResult

# What a finding may claim, in the order a tie is broken.
METRICS: tuple[str, ...] = ("write_syscalls_per_request", "cpu_ms_per_request", "mean_ms", "p99_ms",
                            "rps", "voluntary_ctx_switches_per_request")
DEMO_METRICS: tuple[str, ...] = ("mean_ms", "cpu_ms_per_request", "voluntary_ctx_switches_per_request",
                                 "write_syscalls_per_request")
# The metrics a pair is ranked by (context switches and p99 are stated, but a large relative change of a
# tiny count must not outrank a change in what the user pays: writes, CPU, latency, throughput).
PRIMARY = frozenset({"write_syscalls_per_request", "cpu_ms_per_request", "mean_ms", "rps",
                     "stdout_lines_per_request"})
_SHORT = {"write_syscalls_per_request": "write syscalls per request", "cpu_ms_per_request": "server CPU per "
          "request", "voluntary_ctx_switches_per_request": "voluntary context switches per request",
          "rps": "throughput", "mean_ms": "mean latency", "p99_ms": "p99 latency"}
_COUNTS = frozenset({"write_syscalls_per_request", "voluntary_ctx_switches_per_request", "stdout_lines_per_request"})
# What the sink received per request sent (warm-up included: a round's line count covers the server's whole
# life); not a gate metric, so it is judged here with the same rule (verdict._judge) as the others.
LINES = verdict.Metric("stdout_lines_per_request", "stdout.lines", "", False, "stdout lines per request",
                       less="fewer", more="more", speed=False)
_SHORT_LINES = {"stdout_lines_per_request": "stdout lines per request"}


def _fig(x: float) -> str:
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if a >= 0.01 or a == 0 else f"{x:.2g}"


def _pct(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}"


def _unit(metric: str) -> str:
    unit = verdict.get_metric(metric).unit
    return f" {unit}" if unit and unit != "req/s" else (" req/s" if unit == "req/s" else "")


def _interval(c: Comparison) -> str:
    """The change's 95 % interval in percent: 'CI −30 to −12 %'."""
    lo, hi = c.ci95
    if max(abs(lo), abs(hi)) >= RATIO_UNBOUNDED:
        return "CI unbounded (from zero)"
    return f"CI {(lo - 1) * 100:+.0f} to {(hi - 1) * 100:+.0f} %".replace("-", "−")


def claim(c: Comparison) -> str:
    """'removes 2.9 of 3.9 write syscalls per request (−74 %, CI −78 to −70 %)'."""
    name = _SHORT.get(c.metric) or _SHORT_LINES.get(c.metric, c.metric)
    unit = "" if c.metric == LINES.name else _unit(c.metric)
    a, b = c.a_value, c.b_value
    ci = _interval(c)
    if a == 0:
        return f"raises {name} from 0 to {_fig(b)}{unit} ({ci})"
    pct = (b / a - 1) * 100
    if c.metric in _COUNTS and b < a:
        return f"removes {_fig(a - b)} of {_fig(a)} {name} (−{_pct(-pct)} %, {ci})"
    if c.metric in _COUNTS:
        return f"adds {_fig(b - a)} {name} to {_fig(a)} (+{_pct(pct)} %, {ci})"
    verb = "cuts" if b < a else "raises"
    return f"{verb} {name} by {_pct(abs(pct))} % ({_fig(a)} → {_fig(b)}{unit}, {ci})"


def no_difference(subject: str, cs: Sequence[Comparison]) -> str:
    parts = [f"{_SHORT.get(c.metric) or _SHORT_LINES.get(c.metric, c.metric)} {_interval(c)}" for c in cs[:3]]
    return f"{subject}: no measurable difference ({'; '.join(parts)})"


def _effect(f: Finding) -> float:
    return _log_effect(1.0 + f.change)


def _finding(text: str, c: Comparison, significant: bool) -> Finding:
    return Finding(text=text, metric=c.metric, scenario_a=c.a, scenario_b=c.b, change=c.ratio - 1.0,
                   ci95=(c.ci95[0] - 1.0, c.ci95[1] - 1.0), significant=significant)


def _headline(cs: Sequence[Comparison]) -> Comparison:
    """The claim a pair is ranked by: the largest effect among the primary metrics, else among all."""
    primary = [c for c in cs if c.metric in PRIMARY] or list(cs)
    return max(primary, key=lambda c: _log_effect(c.ratio))


def _log_effect(ratio: float) -> float:
    return math.inf if ratio <= 0 or ratio >= RATIO_UNBOUNDED else abs(math.log(ratio))


def _lines(s: ScenarioResult, warmup: int) -> list[float]:
    return [r.stdout.lines / (r.requests + warmup) for r in s.rounds if r.status == "ok" and r.requests + warmup]


def lines_comparison(a: ScenarioResult, b: ScenarioResult, warmup: int) -> Comparison | None:
    """b against a on stdout lines per request sent, judged like every verdict metric."""
    va, vb = _lines(a, warmup), _lines(b, warmup)
    if not va or not vb:
        return None
    est = compare_samples(va, vb)
    draft = Comparison(a=a.name, b=b.name, metric=LINES.name, a_value=median(va), b_value=median(vb),
                       ratio=est.ratio, ci95=est.ci95, p_value=est.p_value, verdict=verdict.NO_DIFFERENCE,
                       method=est.method)
    word, note = verdict._judge(LINES, draft, verdict.DEFAULT_ALPHA)
    return replace(draft, verdict=word, note=note)


def judge(subject: str, a: ScenarioResult, b: ScenarioResult, metrics: Sequence[str],
          warmup: int | None = None) -> list[Finding]:
    """One finding for b against a: its significant metrics as claims in one sentence (the headline metric
    in the record), else one sentence saying none is, with the intervals. With ``warmup`` (the requests sent
    before each round's measured load), stdout lines per request are judged too."""
    cs = [c for c in verdict.compare(a, b, metrics)]
    if warmup is not None and (lc := lines_comparison(a, b, warmup)) is not None:
        cs.append(lc)
    significant = [c for c in cs if c.verdict in (verdict.FASTER, verdict.SLOWER)]
    if significant:
        return [_finding(f"{subject} " + "; ".join(claim(c) for c in significant), _headline(significant), True)]
    if not cs:
        return []
    head = next((c for c in cs if c.metric == "mean_ms"), cs[0])
    if all(c.method == METHOD_TOO_FEW for c in cs):  # one round a side: no variance, so nothing is tested
        figures = "; ".join(f"{_SHORT.get(c.metric) or _SHORT_LINES.get(c.metric, c.metric)} {_fig(c.a_value)} → "
                            f"{_fig(c.b_value)}" for c in cs[:3])
        return [_finding(f"{subject}: not tested, too few rounds ({figures}); run --rounds 3 or more", head,
                         False)]
    return [_finding(no_difference(subject, [head, *(c for c in cs if c is not head)]), head, False)]


def _variant_pairs(by_name: Mapping[str, ScenarioResult]) -> list[tuple[str, str, str]]:
    """(base, variant, knobs) for every --try variant whose as-is scenario is in the record."""
    out = []
    bases = {n for n, s in by_name.items() if s.variant is not None}
    multi = len({n for n in bases if " [" not in n}) > 1
    for name, s in by_name.items():
        if s.variant is None or not name.endswith("]") or " [" not in name:
            continue
        base, _, knobs = name[:-1].rpartition(" [")
        if base in by_name:
            out.append((base, name, f"{knobs} (on {by_name[base].path})" if multi else knobs))
    return out


def _ms_term(groups: Sequence[list[float]], weights: Sequence[float]) -> str:
    c = welch_contrast(groups, weights)
    return f"{c.estimate:+.2f} ms (CI {c.low:+.2f} to {c.high:+.2f})".replace("-", "−")


def _split(ok: Mapping[str, ScenarioResult], metric: str, k: ScenarioKnowledge, x: str, y: str
           ) -> Finding | None:
    """x − y = (the controls' difference, e.g. `def` − `async def`) + (the log calls), each a Welch contrast
    of round means with its interval (verdict.attribute's decomposition, as one finding)."""
    cx, cy = k.controls[x], k.controls[y]
    m = verdict.get_metric(metric)
    vals = {n: verdict._ok_values(ok[n], m) for n in (x, y, cx, cy)}
    if not all(len(v) >= 2 for v in vals.values()):
        return None
    total = welch_contrast([vals[x], vals[y]], [1, -1])
    significant = total.low > 0 or total.high < 0
    noun = _SHORT.get(metric, metric)
    head = (f"{ok[x].path} − {ok[y].path} in {noun}: {_ms_term([vals[x], vals[y]], [1, -1])}"
            + ("" if significant else ", not significant"))
    dx, dy = k.control_pair_differs_by
    text = (f"{head}; of that, {dx} vs {dy} ({ok[cx].path} vs {ok[cy].path}) accounts for "
            f"{_ms_term([vals[cx], vals[cy]], [1, -1])} and the log calls "
            f"({k.log_code.get(x, x)} vs {k.log_code.get(y, y)}) for "
            f"{_ms_term([vals[x], vals[cx], vals[y], vals[cy]], [1, -1, -1, 1])}")
    base = sum(vals[x]) / len(vals[x])
    return Finding(text=text, metric=metric, scenario_a=x, scenario_b=y,
                   change=-total.estimate / base if base else 0.0,
                   ci95=(-total.high / base, -total.low / base) if base else (0.0, 0.0), significant=significant)


def _seed_answer(ok: Mapping[str, ScenarioResult], k: ScenarioKnowledge) -> list[Finding]:
    """The seed's question, from the measured pairs: /sync vs /async = `def` vs `async def` + the log calls
    (the first seed pair of ``k``, its scenarios' controls and what tells the controls apart)."""
    out: list[Finding] = []
    for x, y in k.seed_pairs[:1]:
        if not {x, y} <= set(ok):
            continue
        out += judge(f"{ok[y].path} instead of {ok[x].path}", ok[x], ok[y], DEMO_METRICS)
        cx, cy = k.controls.get(x), k.controls.get(y)
        if cx is not None and cy is not None and {cx, cy} <= set(ok) and k.control_pair == (cx, cy):
            dx, dy = k.control_pair_differs_by
            out += judge(f"{dy} instead of {dx} ({ok[cy].path} vs {ok[cx].path})", ok[cx], ok[cy], DEMO_METRICS)
            out += [f for name in ("cpu_ms_per_request", "mean_ms") if (f := _split(ok, name, k, x, y)) is not None]
        for s_, ctrl in ((x, cx), (y, cy)):
            if ctrl is not None and ctrl in ok:
                out += judge(f"{k.log_code.get(s_, s_)} ({ok[s_].path} vs {ok[ctrl].path})", ok[ctrl], ok[s_],
                             DEMO_METRICS)
    return out


def rank(found: Sequence[Finding]) -> list[Finding]:
    """Claims first, largest effect first; then the 'no measurable difference' sentences, in order."""
    claims = sorted((f for f in found if f.significant), key=_effect, reverse=True)
    return claims + [f for f in found if not f.significant]


def findings(result: RunResult, knowledge: ScenarioKnowledge = NONE) -> list[Finding]:
    """The findings of a run; ``knowledge`` is what the caller knows of its scenarios (the demo's, else
    none: iolab.analysis.knowledge)."""
    by_name = {s.name: s for s in result.scenarios}
    ok = {n: s for n, s in by_name.items() if any(r.status == "ok" for r in s.rounds)}
    found: list[Finding] = []
    variants = [(a, b, k) for a, b, k in _variant_pairs(by_name) if a in ok and b in ok]
    for a, b, knobs in variants:
        found += judge(knobs, ok[a], ok[b], METRICS, warmup=int(result.load.get("warmup_requests") or 0))
    seed = _seed_answer(ok, knowledge) if not variants else []
    found += seed
    if not variants and not seed:
        pairs = list(dict.fromkeys((c.a, c.b) for c in result.comparisons))
        for a, b in pairs:
            if a in ok and b in ok:
                found += judge(f"{ok[b].path} instead of {ok[a].path}", ok[a], ok[b], METRICS)
    # A run across a network (issue 20) opens with what the network did: counted, not sampled.
    return network_finding_records(result) + rank(found)


def with_findings(result: RunResult, knowledge: ScenarioKnowledge = NONE) -> RunResult:
    """The record with its findings (re)computed from its rounds."""
    return replace(result, findings=tuple(findings(result, knowledge)))


def comparison_findings(comparisons: Sequence[Comparison], paths: Mapping[str, str],
                        labels: tuple[str, str]) -> list[Finding]:
    """``iolab compare``: per scenario, the new run against the base run, from the comparisons' verdicts."""
    found: list[Finding] = []
    by_scenario: dict[str, list[Comparison]] = {}
    for c in comparisons:
        if c.metric in METRICS:
            by_scenario.setdefault(c.b, []).append(c)
    for name, cs in by_scenario.items():
        subject = f"{paths.get(name, name)}: {labels[1]} against {labels[0]}"
        significant = [c for c in cs if c.verdict in (verdict.FASTER, verdict.SLOWER)]
        if significant:
            found.append(_finding(f"{subject}: " + "; ".join(claim(c) for c in significant),
                                  _headline(significant), True))
        else:
            head = next((c for c in cs if c.metric == "mean_ms"), cs[0])
            found.append(_finding(no_difference(subject, [head, *(c for c in cs if c is not head)]), head, False))
    return rank(found)


def lines(found: Sequence[Finding]) -> list[str]:
    """The sentences, claims first, as every report prints them."""
    return [f.text + "." if not f.text.endswith(".") else f.text for f in found]
