"""The strategy catalog: selection rules (unit) and every endpoint logging what it should (real servers).

Tests whose name contains ``slow`` start real servers through ``iolab run``; ``pytest -k "not slow"``
skips them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iolab.analysis import verdict
from iolab.analysis.knowledge import ScenarioKnowledge
from iolab.demo import scenarios
from tests.conftest import run_cli

N, WARMUP = 200, 20


def test_default_is_the_eight_and_all_is_the_catalog() -> None:
    assert [s.name for s in scenarios.select(None)] == list(scenarios.DEFAULT_EIGHT)
    assert [s.name for s in scenarios.select("default")] == list(scenarios.DEFAULT_EIGHT)
    everything = [s.name for s in scenarios.select("all")]
    installed = [n for n in scenarios.ALL_ORDER if scenarios.unavailable(n) is None]
    assert everything == installed and len(everything) > len(scenarios.DEFAULT_EIGHT)
    mixed = [s.name for s in scenarios.select("default,queue-async,/sync")]
    assert mixed == [*scenarios.DEFAULT_EIGHT, "queue-async"]
    with pytest.raises(scenarios.ScenarioChoiceError, match="unknown scenario 'nope'"):
        scenarios.select("queue-async,nope")


def test_a_missing_logger_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(name: str) -> str | None:
        return "needs loguru (ModuleNotFoundError: no module named 'loguru'); " + scenarios.LOGGERS_EXTRA \
            if scenarios.BY_NAME[name].needs == "loguru" else None

    monkeypatch.setattr(scenarios, "unavailable", fake)
    with pytest.raises(scenarios.ScenarioChoiceError, match=r"scenario 'loguru' needs loguru .*pip install 'iolab\[loggers\]'"):
        scenarios.select("loguru")
    names = [s.name for s in scenarios.select("all")]
    assert "loguru" not in names and "loguru-enqueue" not in names and "queue-async" in names
    assert [n for n, _ in scenarios.skipped("all")] == ["loguru", "loguru-enqueue"]


def test_every_catalog_entry_has_a_control_and_a_phrase() -> None:
    controls = scenarios.knowledge()["controls"]
    for name in scenarios.CATALOG_ORDER:
        s = scenarios.BY_NAME[name]
        assert controls[name] in ("noop-sync", "noop-async"), name
        assert s.handler.startswith("def") == (controls[name] == "noop-sync"), name
        assert scenarios.knowledge()["log_code"][name] and s.isolates, name
        assert all(p in scenarios.BY_NAME for p in s.peers), name
    pairs = verdict.default_pairs(["async-blocking-log", "queue-async", "noop-async"], ScenarioKnowledge(**scenarios.knowledge()))
    assert ("noop-async", "queue-async") in pairs and ("async-blocking-log", "queue-async") in pairs
    assert "cpu-only" not in scenarios.knowledge()["expects_output"] and "queue-async" in scenarios.knowledge()["expects_output"]


def test_slow_each_strategy_writes_one_line_per_request(tmp_path: Path) -> None:
    """The lines the sink received, against the control's: one more per request (warm-up included),
    none more for the CPU-only control; the queues' backlogs are written before the server exits."""
    out = tmp_path / "catalog.json"
    proc = run_cli("run", "--scenario", "catalog", "-n", str(N), "-c", "10", "--warmup", str(WARMUP),
                   "--rounds", "1", "--interval", "0.25", "-q", "-o", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    by = {s["name"]: s for s in doc["scenarios"]}
    expected = [n for n in scenarios.CATALOG_ORDER if scenarios.unavailable(n) is None]
    assert set(expected) <= set(by)
    sent = N + WARMUP
    for name in expected:
        s, ctrl = by[name], by[scenarios.knowledge()["controls"][name]]
        assert s["requests"] == N and s["failed"] == 0 and s["non_2xx"] == 0, name
        extra = (s["stdout"]["lines"] - ctrl["stdout"]["lines"]) / sent
        want = 1.0 if scenarios.BY_NAME[name].writes else 0.0
        assert abs(extra - want) <= 0.02, f"{name}: {extra:.3f} extra lines per request, expected {want}"
    # Verdicts against each entry's control are in the results.
    pairs = {(c["a"], c["b"]) for c in doc["comparisons"]}
    assert all((scenarios.knowledge()["controls"][n], n) in pairs for n in expected)
