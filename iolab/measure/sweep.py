"""Run the grid: one ``Experiment`` per cell (work_us × sink latency), every strategy in every cell.

Each cell is an ordinary ``iolab run`` of the chosen demo scenarios with the two knobs set, its rounds
interleaved as always, its results in its own ``iolab.run/1`` file; the sweep document is rewritten
after every cell, so an interrupted sweep keeps what it measured.

Sizing (``requests=None``): the closed-loop driver runs a fixed number of requests, and a 5 ms sink
written on the event loop caps that server near 200 req/s while the same server does 1,500 with no
latency. A fixed -n would make the slowest cell last 8× longer than the fastest, so each cell's -n is
chosen from the rate its slowest strategy can reach, a write in series with the CPU work:

    rate ≈ 1 / ((BASE_CPU_MS + work) / cpus + latency)

times ``seconds_per_round``; faster strategies in the cell finish sooner. The model is rough on
purpose: it bounds a cell's duration, it does not need to predict the result.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from iolab import __version__
from iolab.analysis import sweep as analysis
from iolab.analysis.knowledge import ScenarioKnowledge
from iolab.demo.scenarios import BY_NAME, knowledge, select
from iolab.errors import DegradedRunError, IolabError, NothingMeasuredError, ServerDiedError, UsageError
from iolab.measure import facts
from iolab.measure.config import RunConfig, ScenarioSpec
from iolab.measure.experiment import Experiment, Reporter, SilentReporter, saved_on_error
from iolab.measure.limits import LimitsRequest
from iolab.outputs import OutputKeeper
from iolab.results import NOTHING_MEASURED, SERVER_DIED, TOO_MANY_ERRORS, RoundRecord, RunResult
from iolab.results import load as load_run
from iolab.results.sweep import SCHEMA, Cell, SweepResult, dumps

_KINDS: dict[type[IolabError], str] = {ServerDiedError: SERVER_DIED, NothingMeasuredError: NOTHING_MEASURED,
                                       DegradedRunError: TOO_MANY_ERRORS}

# Server CPU per request of the demo's logging endpoints with no knob, measured here (2-core VM):
# 0.3–0.8 ms; the upper end keeps the slow cells from running long.
BASE_CPU_MS = 0.7
MIN_REQUESTS = 200
MAX_REQUESTS = 20_000


@dataclass(frozen=True)
class SweepSpec:
    scenarios: tuple[str, ...]
    work_us: tuple[int, ...]
    sink_latency_ms: tuple[float, ...]
    output: Path
    metric: str = "rps"
    requests: int | None = None  # None: sized per cell (see the module docstring)
    warmup: int | None = None  # None: a tenth of the cell's requests, at least 20
    seconds_per_round: float = 2.0
    concurrency: int = 50
    rounds: int = 4
    interval_s: float = 0.25
    limits: LimitsRequest = LimitsRequest()

    def __post_init__(self) -> None:
        if len(self.scenarios) < 2:
            raise UsageError("a sweep compares strategies: give at least two --scenario names")
        if not self.work_us or not self.sink_latency_ms:
            raise UsageError("a sweep needs at least one --work-us and one --sink-latency value")
        if self.metric not in analysis.WINNER_METRICS:
            raise UsageError(f"--metric {self.metric!r}: choose one of {', '.join(analysis.WINNER_METRICS)}")
        if self.rounds < 2:
            raise UsageError("a sweep needs --rounds 2 or more for its confidence intervals (3+ recommended)")


def expected_rate(work_us: float, latency_ms: float, cpus: float | None) -> float:
    """Requests per second of a strategy that writes in series with its work (the slowest kind)."""
    share = min(cpus, 1.0) if cpus else 1.0  # one event loop and one GIL use one core at most
    return 1.0 / ((BASE_CPU_MS / 1000.0 + work_us / 1e6) / share + latency_ms / 1000.0)


def plan_requests(spec: SweepSpec, work_us: float, latency_ms: float) -> tuple[int, int]:
    """(requests, warm-up requests) for one cell."""
    if spec.requests is not None:
        n = spec.requests
    else:
        rate = expected_rate(work_us, latency_ms, spec.limits.cpus)
        n = int(min(MAX_REQUESTS, max(MIN_REQUESTS, 10 * round(rate * spec.seconds_per_round / 10))))
    warmup = spec.warmup if spec.warmup is not None else max(20, n // 10)
    return n, warmup


def cell_file(output: Path, work_us: int, latency_ms: float) -> Path:
    return output.with_suffix("") / f"w{work_us:g}us-l{latency_ms:g}ms.json"


def cell_config(spec: SweepSpec, work_us: int, latency_ms: float) -> RunConfig:
    n, warmup = plan_requests(spec, work_us, latency_ms)
    chosen = select(",".join(spec.scenarios))
    scenarios = tuple(ScenarioSpec(s.name, s.path, s.method, s.isolates, s.control) for s in chosen)
    # No explicit compare pairs: Experiment.snapshot (before every strategy has run once) would look
    # them up among the measured ones and fail; the cell's pairwise comparisons are the sweep's own.
    return RunConfig(scenarios=scenarios, requests=n, warmup=warmup, concurrency=spec.concurrency,
                     rounds=spec.rounds, interval_s=spec.interval_s, limits=spec.limits,
                     output=cell_file(spec.output, work_us, latency_ms),
                     work_us=work_us, sink_latency_ms=latency_ms,
                     knowledge=ScenarioKnowledge(**knowledge()))


class SweepReporter(Protocol):
    def cell_started(self, index: int, total: int, work_us: int, latency_ms: float, requests: int) -> None: ...
    def round_finished(self, record: RoundRecord, name: str) -> None: ...
    def cell_finished(self, cell: Cell) -> None: ...


class _CellReporter(SilentReporter):
    """Forwards the Experiment's per-round news to the sweep's reporter."""

    def __init__(self, outer: SweepReporter | None) -> None:
        self._outer = outer
        self._name = ""

    def scenario_started(self, round_no: int, rounds: int, name: str, index: int, total: int) -> None:
        self._name = f"round {round_no}/{rounds} · {name}"

    def scenario_finished(self, record: RoundRecord) -> None:
        if self._outer is not None:
            self._outer.round_finished(record, self._name)


class Sweep:
    def __init__(self, spec: SweepSpec, reporter: SweepReporter | None = None,
                 experiment: Callable[[RunConfig, Reporter], RunResult] | None = None,
                 keeper: OutputKeeper | None = None) -> None:
        select(",".join(spec.scenarios))  # unknown or not installed: the ScenarioChoiceError that says so (exit 2)
        if any(name not in BY_NAME for name in spec.scenarios):
            raise UsageError("a sweep takes scenario names (expand groups with iolab.demo.scenarios.select)")
        self.spec = spec
        self.reporter = reporter
        # The sweep document and every cell's run: one that cannot be written goes on in a fallback file.
        self.keeper = keeper or OutputKeeper()
        self._experiment = experiment or (lambda cfg, rep: Experiment(cfg, rep, keeper=self.keeper).run())
        self.cells: list[Cell] = []
        self.limits: dict[str, object] = {}
        self.created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._t0 = time.monotonic()

    def snapshot(self, status: str) -> SweepResult:
        s = self.spec
        result = SweepResult(
            schema=SCHEMA, created=self.created, tool_version=__version__, status=status, metric=s.metric,
            scenarios=s.scenarios, work_us=s.work_us, sink_latency_ms=s.sink_latency_ms,
            load={"driver": "builtin", "mode": "closed", "concurrency": s.concurrency, "rounds": s.rounds,
                  "requests": s.requests if s.requests is not None else "auto",
                  "seconds_per_round": s.seconds_per_round, "interval_s": s.interval_s,
                  "sizing": f"rate ≈ 1 / (({BASE_CPU_MS} ms + work) / cpus + latency) × seconds, "
                            f"clamped to {MIN_REQUESTS}–{MAX_REQUESTS}"},
            limits=self.limits, machine=facts.machine(), cells=tuple(self.cells),
            wall_s=round(time.monotonic() - self._t0, 1),
            deferred=tuple(n for n in s.scenarios if BY_NAME[n].defers),
        )
        return replace(result, reading=analysis.reading(result))

    def save(self, status: str) -> SweepResult:
        result = self.snapshot(status)
        self.keeper.write("-o", self.spec.output, dumps(result))
        return result

    def run(self) -> SweepResult:
        grid = [(w, lat) for w in self.spec.work_us for lat in self.spec.sink_latency_ms]
        with saved_on_error(self.save):
            for i, (w, lat) in enumerate(grid):
                cell = self._cell(i, len(grid), w, lat)
                self.cells.append(cell)
                if self.reporter is not None:
                    self.reporter.cell_finished(cell)
                self.save("running")
        return self.save("failed" if any(c.status == "failed" for c in self.cells) else "complete")

    def outcome_error(self) -> IolabError | None:
        """After run(): the error the sweep ends with when a cell is not ok (the same precedence as a
        run's: a server that died, then nothing measured, then too many errors), naming the cells."""
        bad = [c for c in self.cells if c.status != "ok"]
        if not bad:
            return None
        for kind, cls in ((SERVER_DIED, ServerDiedError), (NOTHING_MEASURED, NothingMeasuredError),
                          (TOO_MANY_ERRORS, DegradedRunError)):
            cells = [c for c in bad if c.error_kind == kind] or (
                [c for c in bad if c.error_kind is None] if kind == NOTHING_MEASURED else [])
            if cells:
                first = cells[0]
                more = f"; {len(bad) - 1} more cell(s) not ok" if len(bad) > 1 else ""
                return cls(f"sweep cell work {first.work_us:g} µs, sink {first.sink_latency_ms:g} ms: "
                           f"{first.error or 'no strategy measured anything'}{more}; the sweep is in "
                           f"{self.spec.output}")
        return None

    def _cell(self, index: int, total: int, work_us: int, latency_ms: float) -> Cell:
        cfg = cell_config(self.spec, work_us, latency_ms)
        if self.reporter is not None:
            self.reporter.cell_started(index + 1, total, work_us, latency_ms, cfg.requests)
        t0 = time.monotonic()
        error: str | None = None
        kind: str | None = None
        try:
            run = self._experiment(cfg, _CellReporter(self.reporter))
        except (ServerDiedError, NothingMeasuredError, DegradedRunError) as exc:
            # Some round is not ok: the cell's file holds every round, the cell says which kind.
            error, kind = str(exc), _KINDS[type(exc)]
            run = load_run(self.keeper.where(cfg.output))
        self.limits = dict(run.limits)
        where = self.keeper.where(cfg.output)
        rel = where.relative_to(self.spec.output.parent) if where.is_relative_to(self.spec.output.parent) else where
        deferred = frozenset(n for n in self.spec.scenarios if BY_NAME[n].defers)
        fields = analysis.analyse(run, self.spec.metric, deferred)
        if "winner" not in fields or kind in (SERVER_DIED, NOTHING_MEASURED):
            status = "failed"  # a strategy measured nothing: no winner to show over it
            fields = {"strategies": fields["strategies"]}
        else:
            status = "degraded" if kind == TOO_MANY_ERRORS else "ok"
        return Cell(work_us=work_us, sink_latency_ms=latency_ms, requests=cfg.requests, warmup=cfg.warmup,
                    run_file=str(rel), status=status, error=error, error_kind=kind,
                    duration_s=round(time.monotonic() - t0, 1), **fields)  # type: ignore[arg-type]
