"""``iolab compare``: gates parsed and evaluated, and the CLI's exit codes on real saved runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iolab import results
from iolab.compare import parse_gate
from iolab.errors import UsageError
from tests.conftest import run_cli


def test_parse_relative_and_absolute_gates() -> None:
    g = parse_gate("p99_ms > +10%")
    assert (g.metric, g.op, g.value, g.relative) == ("p99_ms", ">", 10.0, True)
    assert g.fails(100.0, 111.0) and not g.fails(100.0, 109.0)
    g = parse_gate("rps < -5%")
    assert g.fails(1000.0, 940.0) and not g.fails(1000.0, 960.0)
    g = parse_gate("write_syscalls_per_request>4")
    assert not g.relative and g.fails(0.0, 4.5) and not g.fails(100.0, 4.0)
    g = parse_gate("sync:p50_ms >= 2.5")
    assert g.scenario == "sync" and g.fails(0, 2.5)


@pytest.mark.parametrize("text", ["p99_ms >", "p99 > 10", "p99_ms ~ 10", "p99_ms > 10%", "> 3", "rps < -5%%"])
def test_malformed_or_unknown_gates(text: str) -> None:
    with pytest.raises(UsageError):
        parse_gate(text)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real runs of the same scenarios, small."""
    d = tmp_path_factory.mktemp("runs")
    paths = []
    for name in ("a.json", "b.json"):
        out = d / name
        proc = run_cli("run", "--scenario", "noop-async,sync-handler", "-n", "400", "-c", "10", "--warmup", "50",
                       "--rounds", "2", "--interval", "0.2", "-q", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        paths.append(out)
    return paths[0], paths[1]


def test_per_request_counts_agree_between_two_runs(two_runs: tuple[Path, Path]) -> None:
    """Per-request syscall and context-switch counts are nearly deterministic: the CI gates to use."""
    a, b = (json.loads(p.read_text()) for p in two_runs)
    for sa, sb in zip(a["scenarios"], b["scenarios"], strict=True):
        pa, pb = sa["per_request"], sb["per_request"]
        assert abs(pa["write_syscalls"] - pb["write_syscalls"]) <= 0.15 * max(pa["write_syscalls"], 1.0)
        assert abs(pa["voluntary_ctx_switches"] - pb["voluntary_ctx_switches"]) <= \
            0.25 * max(pa["voluntary_ctx_switches"], 1.0)
    by = {s["name"]: s for s in a["scenarios"]}
    # A StreamHandler log line from a worker thread costs at least one more write than the baseline.
    assert by["sync-handler"]["per_request"]["write_syscalls"] >= by["noop-async"]["per_request"]["write_syscalls"] + 0.9


def test_compare_prints_verdicts_and_passes_gates(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    proc = run_cli("compare", str(a), str(b), "--fail-if", "write_syscalls_per_request > 100",
                   "--fail-if", "failed > 0")
    assert proc.returncode == 0, proc.stderr
    assert "/noop-async: new vs base" in proc.stdout and "/sync-handler: new vs base" in proc.stdout
    assert "voluntary_ctx_switches_per_request" in proc.stdout
    assert "all 2 gate(s) passed" in proc.stdout


def test_compare_gate_fails_with_exit_1(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    proc = run_cli("compare", str(a), str(b), "--fail-if", "write_syscalls_per_request > 0.5")
    assert proc.returncode == 1
    failing = [ln for ln in proc.stderr.splitlines() if ln.startswith("gate failed:")]
    assert len(failing) == 2 and "/sync-handler" in proc.stderr


def test_compare_markdown(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_runs
    md = tmp_path / "c.md"
    assert run_cli("compare", str(a), str(b), "--markdown", str(md)).returncode == 0
    assert "| metric | base | new |" in md.read_text()


def test_report_formats(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_runs
    for name, needle in (("r.md", "### Response time (ms)"), ("r.json", f'"schema": "{results.SCHEMA}"'),
                         ("r.txt", "Response time (ms)")):
        proc = run_cli("report", str(a), "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        assert needle in (tmp_path / name).read_text()


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_compare_bad_inputs(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_runs
    (tmp_path / "text.json").write_text("hello")
    (tmp_path / "other.json").write_text('{"schema": "iolab.micro/1"}')
    doc = json.loads(a.read_text())
    doc["schema"] = f"iolab.run/{results.SCHEMA_VERSION + 1}"
    (tmp_path / "newer.json").write_text(json.dumps(doc))
    cases = [
        ((str(tmp_path / "absent.json"), str(a)), "no such file"),
        ((str(tmp_path / "text.json"), str(a)), "is not JSON"),
        ((str(a), str(tmp_path / "other.json")), "expected iolab.run"),
        ((str(a), str(tmp_path / "newer.json")), "newer iolab"),
        ((str(a), str(a), "--fail-if", "latency > 3"), "unknown metric 'latency'"),
        ((str(a), str(a), "--fail-if", "p99_ms bigger 3"), "cannot read --fail-if"),
    ]
    for args, needle in cases:
        proc = run_cli("compare", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in _error_line(proc.stderr)
