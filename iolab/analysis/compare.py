"""``iolab compare``: two saved runs side by side, verdicts per scenario and metric, and CI gates.

A gate is ``[SCENARIO:]METRIC OP VALUE``: ``p99_ms > +10%`` (relative to the base run), ``rps < -5%``, or
an absolute bound, ``write_syscalls_per_request > 4``; per-request counts are the steadiest gates on a
noisy runner (docs/statistics.md).

What a gate judges is the value the comparison tables show, from the same function
(:func:`iolab.analysis.verdict.scenario_statistic`): the median over the successful rounds, the total for the
event counts ``failed`` and ``non_2xx``. Never the pooled aggregate of a run's own report.

A gate covers every scenario of the **base** run (or the one it names; names are checked against the base
run, the reference the gates are written for). It fails, besides when its condition holds, whenever it
cannot be judged, because a gate that passes on a measurement that does not exist is worse than none:

- either run is not complete (interrupted, failed, or never finished),
- a covered scenario is missing from the new run, or is not ``ok`` in either run,
- the metric is missing there: null, not measured (server-side counts of a server iolab did not
  sample), or 0 where 0 cannot be a measurement (latency, rps, server CPU).

A scenario only in the new run is listed, not gated: there is nothing to compare it against.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iolab.analysis import verdict
from iolab.errors import UsageError
from iolab.results import Comparison, RunResult, ScenarioResult

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}
_GATE_RE = re.compile(
    r"^\s*(?:(?P<scenario>[^\s:<>=]+):)?(?P<metric>[a-z0-9_]+)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<value>[+-]?\d+(?:\.\d+)?)\s*(?P<pct>%)?\s*$"
)
# Why a run that is not "complete" cannot pass a gate, by RunResult.status.
_INCOMPLETE = {
    "interrupted": "was interrupted",
    "failed": "ended with a failure",
    "running": "never finished (killed, or still running)",
}


@dataclass(frozen=True)
class Gate:
    """``metric op value``; ``relative`` means value is a change in percent of the base run's value."""

    text: str
    metric: str
    op: str
    value: float
    relative: bool
    scenario: str | None = None

    def threshold(self, base: float) -> float:
        return base * (1.0 + self.value / 100.0) if self.relative else self.value

    def fails(self, base: float, new: float) -> bool:
        return _OPS[self.op](new, self.threshold(base))

    def covers(self, s: ScenarioResult) -> bool:
        """Whether this gate applies to scenario ``s`` (matched by name or by path)."""
        return self.scenario is None or self.scenario in (s.name, s.path)


def parse_gate(text: str) -> Gate:
    m = _GATE_RE.match(text)
    if not m:
        raise UsageError(f"cannot read --fail-if {text!r}: expected METRIC OP VALUE, e.g. \"p99_ms > +10%\" "
                         "or \"write_syscalls_per_request > 4\"")
    metric = m["metric"]
    try:
        verdict.get_metric(metric)
    except KeyError:
        known = ", ".join(verdict.METRICS)
        raise UsageError(f"--fail-if {text!r}: unknown metric {metric!r} (known: {known})") from None
    relative = m["pct"] is not None
    if relative and not m["value"].startswith(("+", "-")):
        raise UsageError(f"--fail-if {text!r}: a relative bound needs a sign, e.g. +10% or -5%")
    return Gate(text=text.strip(), metric=metric, op=m["op"], value=float(m["value"]), relative=relative,
                scenario=m["scenario"])


def check_gate_scenarios(gates: Sequence[Gate], base: RunResult, new: RunResult,
                         labels: tuple[str, str] = ("base", "new")) -> None:
    """A scenario a gate names must be a scenario of the base run, else the gate is a typo: UsageError.

    A name in the base run but not in the new one is not an error here: it is a regression, and
    :func:`compare_runs` fails the gate for it."""
    base_names = [s.name for s in base.scenarios]
    for g in gates:
        if g.scenario is None or any(g.covers(s) for s in base.scenarios):
            continue
        where = (f"; it is only in {labels[1]}, and a gate needs it in the base run to compare against"
                 if any(g.covers(s) for s in new.scenarios) else "")
        raise UsageError(f"--fail-if {g.text!r}: no scenario {g.scenario!r} in {labels[0]}{where} "
                         f"(its scenarios: {', '.join(base_names) or 'none'})")


def _fmt(x: float) -> str:
    """As the comparison tables print a value (iolab/report/tables.py), so the two read the same."""
    return f"{x:,.4g}"


@dataclass(frozen=True)
class GateCheck:
    """One gate judged on one scenario, with the values the comparison table shows."""

    gate: Gate
    scenario: str
    base: verdict.RoundsStatistic
    new: verdict.RoundsStatistic
    failed: bool

    def describe(self) -> str:
        """ 'sync: p99_ms 12.3 ms (median over 3 rounds), base 10.1 ms (median over 3 rounds), limit
        11.11 ms: "p99_ms > +10%" holds' (the gate failed) or '… does not hold' (it passed)."""
        m = verdict.get_metric(self.gate.metric)
        unit = f" {m.unit}" if m.unit else ""
        assert self.new.value is not None  # a check is made only on values that exist
        head = f"{self.scenario}: {m.name} {_fmt(self.new.value)}{unit} ({self.new.describe()})"
        if self.gate.relative:
            assert self.base.value is not None
            limit = self.gate.threshold(self.base.value)
            head += f", base {_fmt(self.base.value)}{unit} ({self.base.describe()}), limit {_fmt(limit)}{unit}"
        return f'{head}: "{self.gate.text}" {"holds" if self.failed else "does not hold"}'


@dataclass(frozen=True)
class GateFailure:
    """Why gates failed: a check whose condition held, or a reason no value could be judged.
    ``describe()`` is the text after "gate failed: "; ``gates`` are the gates it fails."""

    message: str
    gates: tuple[Gate, ...]

    def describe(self) -> str:
        return self.message


@dataclass(frozen=True)
class RunComparison:
    base: RunResult
    new: RunResult
    comparisons: tuple[Comparison, ...]
    only_in_base: tuple[str, ...]
    only_in_new: tuple[str, ...]
    failures: tuple[GateFailure, ...]
    passed: tuple[GateCheck, ...] = ()
    gates: tuple[Gate, ...] = ()

    def gate_summary(self) -> str:
        """ "all 3 gate(s) passed (median over rounds)" or "2 of 3 gate(s) failed"."""
        failed = {id(g) for f in self.failures for g in f.gates}  # by identity: a gate given twice counts twice
        if failed:
            return f"{len(failed)} of {len(self.gates)} gate(s) failed"
        totals = list(dict.fromkeys(g.metric for g in self.gates
                                    if verdict.get_metric(g.metric).over_rounds == "total"))
        stats = (["median over rounds"] if len(totals) < len(self.gates) else []) + (
            [f"{', '.join(totals)}: total over rounds"] if totals else [])
        return f"all {len(self.gates)} gate(s) passed ({'; '.join(stats)})"


def _ok(s: ScenarioResult) -> bool:
    return any(r.status == "ok" for r in s.rounds)


def _scenario_problem(name: str, b: ScenarioResult, n: ScenarioResult | None, labels: tuple[str, str]) -> str:
    """Why a covered scenario cannot be judged at all ("" when it can)."""
    if n is None:
        return f"{name}: missing in {labels[1]} (measured in {labels[0]})"
    for s, label in ((n, labels[1]), (b, labels[0])):
        if s.status != "ok":  # failed, degraded, or any status a later iolab adds
            bad = [r for r in s.rounds if r.status != "ok"]
            first = next((r.error for r in bad if r.error), None)
            detail = f" ({len(bad)} of {len(s.rounds)} round(s) not ok{': ' + first if first else ''})" if bad else ""
            return f"{name}: status {s.status!r} in {label}, not 'ok'{detail}"
    return ""


def _missing(m: verdict.Metric, value: verdict.RoundsStatistic, run: RunResult, label: str) -> str:
    """Why a value cannot be judged ("" when it can)."""
    if m.server_side and run.target.get("server_measured") is False:
        return (f"{m.name} is missing in {label} (iolab did not sample the server's process: "
                "a --url run without --pid)")
    if value.value is None:
        return f"{m.name} is missing in {label} (the scenario measured nothing)"
    if value.value == 0.0 and m.zero_means is not None:
        return f"{m.name} is missing in {label} (it is 0: {m.zero_means})"
    return ""


def _judge(gates: Sequence[Gate], name: str, b: ScenarioResult, n: ScenarioResult, base: RunResult,
           new: RunResult, labels: tuple[str, str]) -> tuple[list[GateFailure], list[GateCheck]]:
    failures: list[GateFailure] = []
    passed: list[GateCheck] = []
    for g in gates:
        m = verdict.get_metric(g.metric)
        b_val, n_val = verdict.scenario_statistic(b, g.metric), verdict.scenario_statistic(n, g.metric)
        # An absolute bound needs only the new value; a relative one needs the base value too.
        why = _missing(m, n_val, new, labels[1]) or (_missing(m, b_val, base, labels[0]) if g.relative else "")
        if why:
            failures.append(GateFailure(f'{name}: {why}: "{g.text}" cannot be judged', (g,)))
            continue
        assert n_val.value is not None and (b_val.value is not None or not g.relative)
        failed = g.fails(b_val.value if b_val.value is not None else 0.0, n_val.value)
        check = GateCheck(g, name, b_val, n_val, failed)
        if failed:
            failures.append(GateFailure(check.describe(), (g,)))
        else:
            passed.append(check)
    return failures, passed


def compare_runs(base: RunResult, new: RunResult, gates: Sequence[Gate] = (),
                 metrics: Sequence[str] = verdict.DEFAULT_METRICS,
                 labels: tuple[str, str] = ("base", "new")) -> RunComparison:
    """Verdicts for each scenario in both runs (matched by name): base is A, new is B; and the gates.

    ``labels`` name the two runs in the gates' messages (their file names). A gate naming a scenario
    that is not in the base run raises UsageError (:func:`check_gate_scenarios`)."""
    check_gate_scenarios(gates, base, new, labels)
    b_by = {s.name: s for s in base.scenarios}
    n_by = {s.name: s for s in new.scenarios}
    common = [name for name in n_by if name in b_by and _ok(b_by[name]) and _ok(n_by[name])]
    comparisons: list[Comparison] = []
    for name in common:
        comparisons += verdict.compare(b_by[name], n_by[name], metrics)
    failures: list[GateFailure] = []
    passed: list[GateCheck] = []
    if gates:
        for run, label in ((base, labels[0]), (new, labels[1])):
            if run.status != "complete":
                why = _INCOMPLETE.get(run.status, f"has status {run.status!r}")
                failures.append(GateFailure(f"{label}: the run {why}, it is not complete: its figures cannot "
                                            "pass a gate", tuple(gates)))
        for name, b in b_by.items():
            covering = [g for g in gates if g.covers(b)]
            if not covering:
                continue
            problem = _scenario_problem(name, b, n_by.get(name), labels)
            if problem:
                failures.append(GateFailure(problem, tuple(covering)))
                continue
            f, p = _judge(covering, name, b, n_by[name], base, new, labels)
            failures += f
            passed += p
    return RunComparison(
        base=base, new=new, comparisons=tuple(comparisons),
        only_in_base=tuple(n for n in b_by if n not in n_by),
        only_in_new=tuple(n for n in n_by if n not in b_by),
        failures=tuple(failures), passed=tuple(passed), gates=tuple(gates),
    )
