"""Warnings fire on the conditions they name (numbers made up; only /proc-free data here)."""

from __future__ import annotations

from dataclasses import replace

from iolab.analysis import advice
from iolab.analysis.aggregate import aggregate
from iolab.results import DriverUsage, LatencyMs, MainThread, PerRequest, RoundRecord, StdoutInfo, Summary


def _round(n: int, **kw: object) -> RoundRecord:
    base = RoundRecord(
        round=n, status="ok", error=None, started="", duration_s=10.0, requests=10_000, failed=0, non_2xx=0,
        timeouts=0, connect_errors=0, rps=1000.0, server_cpu_s=4.9, rps_per_server_cpu_s=2000.0,
        latency_ms=LatencyMs(p50=10.0), latency_hdr="", cswch_per_s=Summary(count=10),
        nvcswch_per_s=Summary(count=10), main_thread=MainThread(), per_request=PerRequest(cpu_ms=0.5),
        stdout=StdoutInfo(lines=10_000), threads=(), samples=(), driver=DriverUsage(cpu_pct_of_core=20.0),
        noise={"other_processes_pct_of_core": 1.0, "cgroup_throttled_pct": 10.0},
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _kinds(rounds: list[RoundRecord], cpus: float | None = 0.5) -> set[str]:
    s = aggregate("x", "/x", "", rounds)
    return {w.kind for w in advice.scenario_warnings({"x": s}, cpus)}


def test_quiet_run_has_no_warning() -> None:
    assert _kinds([_round(1), _round(2)]) == set()


def test_each_condition_fires() -> None:
    assert "driver-saturated" in _kinds([_round(1, driver=DriverUsage(cpu_pct_of_core=95.0))])
    assert "other-load" in _kinds([_round(1, noise={"other_processes_pct_of_core": 60.0})])
    assert "cpu-steal" in _kinds([_round(1, noise={"steal_pct_of_core": 9.0})])
    assert "throttled" in _kinds([_round(1, noise={"cgroup_throttled_pct": 80.0})])
    assert "quota-not-reached" in _kinds([_round(1, server_cpu_s=1.0)])
    assert "quota-not-reached" not in _kinds([_round(1, server_cpu_s=1.0)], cpus=None)
    assert "stdout-nonblocking" in _kinds([_round(1, noise={"stdout_nonblocking": 1.0})])
    assert "few-requests" in _kinds([_round(1, requests=500)])
    rounds = [_round(i, rps=1000.0 + i) for i in range(1, 6)] + [_round(6, rps=400.0)]
    assert "disturbed-round" in _kinds(rounds)
    assert "disturbed-round" not in _kinds(rounds[3:])  # too few rounds to call one an outlier


def test_one_warning_per_kind_names_every_scenario() -> None:
    a = aggregate("a", "/a", "", [_round(1, noise={"other_processes_pct_of_core": 60.0})])
    b = aggregate("b", "/b", "", [_round(1, noise={"other_processes_pct_of_core": 60.0})])
    ws = [w for w in advice.scenario_warnings({"a": a, "b": b}, 0.5) if w.kind == "other-load"]
    assert len(ws) == 1 and "/a (round 1)" in ws[0].message and "/b (round 1)" in ws[0].message


def test_buffering_warnings_end_with_a_fix() -> None:
    ws = advice.buffering_warnings("tty", "unbuffered")
    assert {w.kind for w in ws} == {"stdout-unbuffered", "stdout-tty"}
    assert advice.buffering_warnings("pipe", "block") == []


def test_unstable_p50_under_a_quota() -> None:
    rounds = [_round(i, latency_ms=LatencyMs(p50=p50, mean=50.0 + i)) for i, p50 in enumerate((45.0, 27.0, 75.0), 1)]
    s = aggregate("x", "/x", "", rounds)
    ws = [w for w in advice.scenario_warnings({"x": s}, 0.5) if w.kind == "unstable-p50"]
    assert len(ws) == 1 and "/x: p50" in ws[0].message
    steady = [_round(i, latency_ms=LatencyMs(p50=50.0 + i, mean=50.0 + i)) for i in (1, 2, 3)]
    assert "unstable-p50" not in _kinds(steady)
