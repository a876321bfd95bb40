"""The results document: round trip, atomic save, and every way a file can be wrong."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from iolab import results
from iolab.errors import ResultsFileError
from iolab.results import (
    Comparison,
    DriverUsage,
    LatencyMs,
    MainThread,
    PerRequest,
    RoundRecord,
    RunResult,
    RunWarning,
    ScenarioResult,
    StdoutInfo,
    Summary,
    ThreadTotal,
)


def _round() -> RoundRecord:
    return RoundRecord(
        round=1, status="ok", error=None, started="2026-01-01T00:00:00+00:00", duration_s=1.5,
        requests=100, failed=0, non_2xx=0, timeouts=0, connect_errors=0, rps=66.7, server_cpu_s=0.1,
        rps_per_server_cpu_s=1000.0, latency_ms=LatencyMs(p50=1.0, p100=2.0), latency_hdr="",
        cswch_per_s=Summary(count=2, min=1.0, max=3.0), nvcswch_per_s=Summary(), main_thread=MainThread(),
        per_request=PerRequest(write_syscalls=1.0), stdout=StdoutInfo(bytes=10, lines=1),
        threads=(ThreadTotal("main", 1, 5, 1, 2.0),), samples=(), driver=DriverUsage(),
    )


def _result() -> RunResult:
    r = _round()
    sc = ScenarioResult(
        name="sync", path="/sync", description="d", status="ok", rounds=(r,), requests=100, failed=0,
        non_2xx=0, rps=66.7, rps_per_server_cpu_s=1000.0, latency_ms=r.latency_ms, latency_hdr="",
        cswch_per_s=r.cswch_per_s, nvcswch_per_s=r.nvcswch_per_s, main_thread=r.main_thread,
        per_request=r.per_request, stdout=r.stdout, threads=r.threads,
    )
    return RunResult(
        schema=results.SCHEMA, created="2026-01-01T00:00:00+00:00", tool_version="0.1.0", machine={},
        target={"kind": "demo"}, load={}, limits={}, environment={}, scenarios=(sc,),
        comparisons=(Comparison("a", "b", "p50_ms", 1.0, 2.0, 2.0, (1.5, 2.5), 0.01, "slower"),),
        warnings=(RunWarning("x", "do y"),),
    )


def test_round_trip(tmp_path: Path) -> None:
    original = _result()
    path = results.save(original, tmp_path / "r.json")
    loaded = results.load(path)
    assert loaded == original
    doc = json.loads(path.read_text())
    for key in ("schema", "created", "tool_version", "machine", "target", "load", "limits", "environment",
                "scenarios", "comparisons", "warnings"):
        assert key in doc
    assert doc["schema"] == "iolab.run/2"


def test_missing_optional_fields_take_defaults(tmp_path: Path) -> None:
    doc = results.to_dict(_result())
    del doc["comparisons"], doc["warnings"]
    del doc["scenarios"][0]["rounds"][0]["noise"]
    loaded = results.loads(json.dumps(doc))
    assert loaded.comparisons == () and loaded.scenarios[0].rounds[0].noise == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "not an iolab results file"),
        ('{"schema": "other/1"}', "expected iolab.run"),
        ('{"schema": "iolab.run/99"}', "newer iolab"),
        ('{"schema": 3}', "not an iolab results file"),
        ('{"schema": "iolab.run/1"}', "lacks the field"),
    ],
)
def test_bad_documents(text: str, fragment: str) -> None:
    with pytest.raises(ResultsFileError, match=fragment):
        results.loads(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsFileError, match="no such file"):
        results.load(tmp_path / "absent.json")


def test_save_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    results.save(_result(), tmp_path / "a.json")
    results.save(_result(), tmp_path / "a.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


# ------------------------------------------------------------------------- older versions, nulls

OLD = Path(__file__).parent / "fixtures" / "results"


def test_null_figures_round_trip_as_null(tmp_path: Path) -> None:
    """A round that measured nothing: JSON holds null, never 0.0, and reads back the same."""
    r = dataclasses.replace(_round(), status="failed", error="no request succeeded: …", error_kind=results.NOTHING_MEASURED,
                            rps=None, rps_per_server_cpu_s=None, latency_ms=LatencyMs(), per_request=PerRequest())
    original = dataclasses.replace(_result(), scenarios=(dataclasses.replace(_result().scenarios[0], rounds=(r,)),))
    path = results.save(original, tmp_path / "n.json")
    doc = json.loads(path.read_text())
    rec = doc["scenarios"][0]["rounds"][0]
    assert rec["latency_ms"]["p50"] is None and rec["rps"] is None and rec["per_request"]["cpu_ms"] is None
    assert "NaN" not in path.read_text()
    assert results.load(path) == original


def test_v1_closed_port_run_reads_as_failed_with_null_latency() -> None:
    """iolab.run/1 called a run against a closed port ok, at 0.0 ms: read today, it measured nothing."""
    run = results.load(OLD / "v1_closed_port.json")
    assert run.schema == results.SCHEMA and run.status == "failed"
    s = run.scenarios[0]
    assert s.status == "failed" and s.rps is None and s.rps_per_server_cpu_s is None
    assert all(v is None for v in dataclasses.asdict(s.latency_ms).values())
    assert all(v is None for v in dataclasses.asdict(s.per_request).values())
    r = s.rounds[0]
    assert r.status == "failed" and r.error_kind == results.NOTHING_MEASURED and r.error
    assert r.connect_errors == 20 and r.latency_ms.p50 is None and r.rps is None


def test_v1_run_without_pid_keeps_its_latency_and_nulls_the_server_side() -> None:
    run = results.load(OLD / "v1_url_without_pid.json")
    s = run.scenarios[0]
    assert s.status == "ok" and run.status == "complete"
    assert s.latency_ms.p50 is not None and s.latency_ms.p50 > 0 and s.rps is not None and s.rps > 0
    assert s.per_request.cpu_ms is None and s.rps_per_server_cpu_s is None  # v1 wrote 0.0: not measured
    assert s.latency_uncorrected_ms.p50 is None  # a closed loop has no uncorrected latency
    assert s.successful == 50


def test_v1_server_died_round_keeps_its_error_and_loses_its_zeros() -> None:
    run = results.load(OLD / "v1_server_died.json")
    by = {s.name: s for s in run.scenarios}
    assert run.status == "failed"
    assert by["/ok"].status == "ok" and by["/ok"].per_request.cpu_ms is not None and by["/ok"].per_request.cpu_ms > 0
    die = by["/die"]
    assert die.status == "failed" and die.latency_ms.p50 is None and die.rps is None
    assert die.rounds[0].error_kind == results.SERVER_DIED and "died mid-run" in (die.rounds[0].error or "")


def test_report_of_a_v1_file_shows_a_dash_not_zero(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    proc = run_cli("report", str(OLD / "v1_closed_port.json"), "--format", "md")
    assert proc.returncode == 0, proc.stderr
    latency = proc.stdout[proc.stdout.index("### Response time"):proc.stdout.index("### cswch/s")]
    assert "| 50% | — |" in latency and "0.0" not in latency and "(failed)" in latency
