"""The results document: round trip, atomic save, and every way a file can be wrong."""

from __future__ import annotations

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
    ScenarioResult,
    StdoutInfo,
    Summary,
    ThreadTotal,
    Warning,
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
        warnings=(Warning("x", "do y"),),
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
    assert doc["schema"] == "iolab.run/1"


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
