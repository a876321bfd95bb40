"""``iolab compare``: two saved runs side by side, verdicts per scenario and metric, and CI gates.

A gate is ``METRIC OP VALUE``: ``p99_ms > +10%`` (relative to the base run), ``rps < -5%``, or an
absolute bound, ``write_syscalls_per_request > 4``. It fails for every scenario of the new run where the
condition holds; per-request counts are the steadiest gates on a noisy runner (docs/statistics.md).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iolab import verdict
from iolab.errors import UsageError
from iolab.results import Comparison, RunResult, ScenarioResult

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}
_GATE_RE = re.compile(
    r"^\s*(?:(?P<scenario>[^\s:<>=]+):)?(?P<metric>[a-z0-9_]+)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<value>[+-]?\d+(?:\.\d+)?)\s*(?P<pct>%)?\s*$"
)


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


@dataclass(frozen=True)
class GateFailure:
    gate: Gate
    scenario: str
    base: float
    new: float

    def describe(self) -> str:
        bound = self.gate.threshold(self.base)
        rel = f" (base {self.base:.4g}, limit {bound:.4g})" if self.gate.relative else ""
        return f"{self.scenario}: {self.gate.metric} = {self.new:.4g}{rel} fails \"{self.gate.text}\""


@dataclass(frozen=True)
class RunComparison:
    base: RunResult
    new: RunResult
    comparisons: tuple[Comparison, ...]
    only_in_base: tuple[str, ...]
    only_in_new: tuple[str, ...]
    failures: tuple[GateFailure, ...]


def _ok(s: ScenarioResult) -> bool:
    return any(r.status == "ok" for r in s.rounds)


def compare_runs(base: RunResult, new: RunResult, gates: Sequence[Gate] = (),
                 metrics: Sequence[str] = verdict.DEFAULT_METRICS) -> RunComparison:
    """Verdicts for each scenario in both runs (matched by name): base is A, new is B."""
    b_by = {s.name: s for s in base.scenarios}
    n_by = {s.name: s for s in new.scenarios}
    common = [name for name in n_by if name in b_by and _ok(b_by[name]) and _ok(n_by[name])]
    comparisons: list[Comparison] = []
    for name in common:
        comparisons += verdict.compare(b_by[name], n_by[name], metrics)
    failures: list[GateFailure] = []
    for gate in gates:
        for name in common:
            if gate.scenario and gate.scenario not in (name, n_by[name].path):
                continue
            b_val = verdict.metric_value(b_by[name], gate.metric)
            n_val = verdict.metric_value(n_by[name], gate.metric)
            if gate.fails(b_val, n_val):
                failures.append(GateFailure(gate, n_by[name].path, b_val, n_val))
    return RunComparison(
        base=base, new=new, comparisons=tuple(comparisons),
        only_in_base=tuple(n for n in b_by if n not in n_by),
        only_in_new=tuple(n for n in n_by if n not in b_by),
        failures=tuple(failures),
    )
