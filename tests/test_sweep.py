"""``iolab sweep``: sizing, the analysis and its reading (unit, with synthetic runs), the CLI end to end.

The test whose name contains ``slow`` runs real servers; ``pytest -k "not slow"`` skips it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from iolab import results
from iolab.analysis.sweep import grid
from iolab.measure.config import RunConfig
from iolab.measure.sweep import MAX_REQUESTS, MIN_REQUESTS, Sweep, SweepSpec, expected_rate, plan_requests
from iolab.report.sweep import render_heatmap_svg, render_html, winner_table
from iolab.results import (
    DriverUsage,
    LatencyMs,
    MainThread,
    PerRequest,
    RoundRecord,
    RunResult,
    ScenarioResult,
    StdoutInfo,
    Summary,
)
from iolab.results.sweep import load
from tests.conftest import run_cli

STRATEGIES = ("sync-handler", "async-blocking-log", "queue-async")


def _record(i: int, rps: float, requests: int = 1000) -> RoundRecord:
    return RoundRecord(
        round=i, status="ok", error=None, started="2026-01-01T00:00:00Z", duration_s=requests / rps,
        requests=requests, failed=0, non_2xx=0, timeouts=0, connect_errors=0, rps=rps,
        server_cpu_s=requests * 0.0005, rps_per_server_cpu_s=2000.0,
        latency_ms=LatencyMs(p50=50_000 / rps, p99=90_000 / rps), latency_hdr="", cswch_per_s=Summary(),
        nvcswch_per_s=Summary(), main_thread=MainThread(),
        per_request=PerRequest(voluntary_ctx_switches=1.0, cpu_ms=0.5), stdout=StdoutInfo(lines=2 * requests),
        threads=(), samples=(), driver=DriverUsage(),
    )


def _scenario(name: str, rps: list[float]) -> ScenarioResult:
    rounds = tuple(_record(i + 1, r) for i, r in enumerate(rps))
    return ScenarioResult(
        name=name, path=f"/{name}", description="", status="ok", rounds=rounds,
        requests=sum(r.requests for r in rounds), failed=0, non_2xx=0, rps=sum(rps) / len(rps),
        rps_per_server_cpu_s=2000.0, latency_ms=LatencyMs(), latency_hdr="", cswch_per_s=Summary(),
        nvcswch_per_s=Summary(), main_thread=MainThread(), per_request=PerRequest(), stdout=StdoutInfo(),
        threads=(),
    )


def _rates(work_us: int, latency_ms: float) -> dict[str, float]:
    """A made-up world shaped like the seed's argument: blocking writers cap at 1000/latency req/s;
    the queue pays a hand-off but never waits; CPU work shrinks every difference."""
    cpu = 0.5 + work_us / 1000  # ms per request
    blocking = 1000 / (cpu + latency_ms)
    return {"sync-handler": blocking * 0.8, "async-blocking-log": blocking, "queue-async": 1000 / (cpu + 0.15)}


def _fake_experiment(cfg: RunConfig, reporter: Any) -> RunResult:
    wobble = (0.98, 1.0, 1.02)
    rates = _rates(cfg.work_us, cfg.sink_latency_ms)
    scenarios = tuple(_scenario(s.name, [rates[s.name] * w for w in wobble[: cfg.rounds]]) for s in cfg.scenarios)
    run = RunResult(schema=results.SCHEMA, created="2026-01-01T00:00:00Z", tool_version="test", machine={},
                    target={}, load={}, limits={"method": "none"}, environment={}, scenarios=scenarios)
    results.save(run, cfg.output)
    return run


def test_plan_requests_bounds_every_cell(tmp_path: Path) -> None:
    spec = SweepSpec(STRATEGIES, (0, 200, 1000), (0.0, 1.0, 5.0), tmp_path / "s.json")
    ns = {(w, lat): plan_requests(spec, w, lat)[0] for w in spec.work_us for lat in spec.sink_latency_ms}
    assert all(MIN_REQUESTS <= n <= MAX_REQUESTS for n in ns.values())
    assert ns[(0, 0.0)] > ns[(0, 5.0)] > ns[(1000, 5.0)]
    for (w, lat), n in ns.items():  # the slowest strategy's round lasts about --seconds
        assert n / expected_rate(w, lat, spec.limits.cpus) <= spec.seconds_per_round * 1.05 + 0.5
    fixed = SweepSpec(STRATEGIES, (0,), (5.0,), tmp_path / "s.json", requests=123, warmup=7)
    assert plan_requests(fixed, 0, 5.0) == (123, 7)


def test_sweep_finds_winners_and_reads_the_grid(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    spec = SweepSpec(STRATEGIES, (0, 1000), (0.0, 5.0), out, rounds=3)
    result = Sweep(spec, experiment=_fake_experiment).run()
    assert result.status == "complete" and len(result.cells) == 4 and result.deferred == ("queue-async",)
    again = load(out)
    assert again == result and json.loads(out.read_text())["schema"] == "iolab.sweep/2"
    fast = result.cell(0, 0.0)
    slow = result.cell(0, 5.0)
    assert fast is not None and slow is not None
    assert fast.winner == "async-blocking-log" and fast.runner_up == "sync-handler"
    assert slow.winner == "queue-async" and slow.margin is not None and slow.margin.verdict == "faster"
    assert slow.margin.ratio == pytest.approx(_rates(0, 5.0)["queue-async"] / _rates(0, 5.0)["async-blocking-log"])
    assert (tmp_path / fast.run_file).is_file() and results.load(tmp_path / fast.run_file).scenarios
    assert {(c.a, c.b) for c in slow.comparisons} == {
        ("sync-handler", "async-blocking-log"), ("sync-handler", "queue-async"),
        ("async-blocking-log", "queue-async")}
    # The reading comes from these numbers: helps with a slow sink, hurts with neither work nor latency.
    text = result.reading
    assert "helps at 0 µs · 5 ms, 1000 µs · 5 ms" in text
    assert "hurts at 0 µs · 0 ms, 1000 µs · 0 ms" in text and "async-blocking-log beats queue-async" in text
    assert "queue-async beats async-blocking-log 8.46× (CI " in text  # 1,538 vs 182 req/s
    assert "at most 200 lines a second" in text
    g = grid(result)
    assert [[c.winner if c else None for c in row] for row in g.cells] == [
        ["async-blocking-log", "queue-async"], ["async-blocking-log", "queue-async"]]
    svg = render_heatmap_svg(g)
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "queue-async" in svg and "8.46×" in svg
    page = render_html(result, svg)
    assert "Content-Security-Policy" in page and "helps at 0 µs" in page and "<svg" in page
    assert len(winner_table(result).rows) == 2


def _sweep_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_cli("sweep", *args, timeout=timeout)


@pytest.mark.parametrize(("args", "message"), [
    (("--scenario", "queue-async"), "at least two --scenario names"),
    (("--work-us", "0,x"), "--work-us '0,x': expected comma-separated numbers"),
    (("--scenario", "queue-async,nope"), "unknown scenario 'nope'"),
    (("-n", "lots"), "-n 'lots': a whole number or auto"),
])
def test_sweep_usage_errors(args: tuple[str, ...], message: str) -> None:
    proc = _sweep_cli(*args, "-q", timeout=60)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr
    assert "Traceback" not in proc.stderr


def test_slow_tiny_sweep_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    proc = _sweep_cli("--scenario", "async-blocking-log,queue-async", "--work-us", "0,200", "--sink-latency",
                      "0,2", "-n", "100", "--rounds", "2", "-c", "10", "-o", str(out), "--html",
                      str(tmp_path / "sweep.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = load(out)
    assert result.status == "complete" and result.scenarios == ("async-blocking-log", "queue-async")
    assert [(c.work_us, c.sink_latency_ms) for c in result.cells] == [(0, 0.0), (0, 2.0), (200, 0.0), (200, 2.0)]
    for cell in result.cells:
        assert cell.status == "ok" and cell.winner in result.scenarios and cell.requests == 100
        run = results.load(out.parent / cell.run_file)
        assert {s.name for s in run.scenarios} == set(result.scenarios)
        assert run.environment["demo_knobs"] == {"work_us": cell.work_us, "sink_latency_ms": cell.sink_latency_ms}
        assert all(len(s.rounds) == 2 for s in run.scenarios)
    assert result.reading.startswith("Reading (throughput, 2 rounds per cell")
    assert "<svg" in out.with_suffix(".svg").read_text()
    assert "When does async logging pay?" in (tmp_path / "sweep.html").read_text()
    assert "Which strategy wins, per cell" in proc.stdout and result.reading[:60] in proc.stdout


def _nothing(i: int) -> RoundRecord:
    """A round in which no request succeeded: what record.failed_round writes."""
    from iolab.measure.record import failed_round

    return failed_round(i, "2026-01-01T00:00:00Z", "no request succeeded: every response was 500 (1000 requests)",
                        StdoutInfo(), error_kind="nothing-measured")


def test_a_cell_that_measured_nothing_shows_no_figure(tmp_path: Path) -> None:
    from iolab.analysis.aggregate import aggregate
    from iolab.errors import DegradedRunError, NothingMeasuredError
    from iolab.report.sweep import values_table

    def experiment(cfg: RunConfig, reporter: Any) -> RunResult:
        run = _fake_experiment(cfg, reporter)
        if cfg.sink_latency_ms == 5.0:  # queue-async measured nothing in this column's cells
            broken = aggregate("queue-async", "/queue-async", "", [_nothing(i + 1) for i in range(cfg.rounds)])
            run = RunResult(**{**run.__dict__, "scenarios": (*run.scenarios[:2], broken)})
            results.save(run, cfg.output)
            raise NothingMeasuredError("nothing was measured for /queue-async (round 1): no request succeeded")
        if cfg.work_us == 1000:
            raise DegradedRunError("too many requests failed for /sync-handler (round 1): 5.0 % …")
        return run

    out = tmp_path / "sweep.json"
    sweep = Sweep(SweepSpec(STRATEGIES, (0, 1000), (0.0, 5.0), out, rounds=3), experiment=experiment)
    result = sweep.run()
    assert result.status == "failed"
    failed, degraded = result.cell(0, 5.0), result.cell(1000, 0.0)
    assert failed is not None and degraded is not None
    assert failed.status == "failed" and failed.error_kind == "nothing-measured" and failed.winner is None
    assert failed.margin is None and not failed.comparisons
    value = failed.value("queue-async")
    assert value is not None and value.rounds_ok == 0 and value.rps is None and value.p50_ms is None
    assert degraded.status == "degraded" and degraded.winner == "async-blocking-log"
    g = grid(result)
    assert g.cells[0][1] is not None and g.cells[0][1].winner is None and g.cells[0][1].label == "failed"
    assert g.cells[1][0] is not None and g.cells[1][0].degraded and "[degraded" in g.cells[1][0].label
    svg = render_heatmap_svg(g)
    assert "failed" in svg and "degraded" in svg
    row = [r[5] for r in values_table(result).rows]  # queue-async
    assert row[1] == "—" and row[3] == "—"  # work 0 · 5 ms and work 1000 · 5 ms
    json.loads(out.read_text())  # nulls, no NaN
    again = load(out)
    assert again == result
    error = sweep.outcome_error()
    assert isinstance(error, NothingMeasuredError) and "the sweep is in" in str(error)


def test_sweep_v1_document_nulls_strategies_without_a_successful_round(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    result = Sweep(SweepSpec(STRATEGIES, (0,), (0.0,), out, rounds=2), experiment=_fake_experiment).run()
    doc = json.loads(out.read_text())
    doc["schema"] = "iolab.sweep/1"
    v = doc["cells"][0]["strategies"][0]
    v.update(rounds_ok=0, rps=0.0, p50_ms=0.0, p99_ms=0.0, cpu_ms_per_request=0.0,
             voluntary_ctx_switches_per_request=0.0, lines_per_request=0.0)
    from iolab.results.sweep import loads

    old = loads(json.dumps(doc))
    assert old.schema == "iolab.sweep/2" and old.cells[0].strategies[0].rps is None
    assert old.cells[0].strategies[1] == result.cells[0].strategies[1]
