"""``iolab compare``: gates parsed and evaluated, and the CLI's exit codes on real saved runs."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iolab import results
from iolab.analysis import verdict
from iolab.analysis.compare import parse_gate
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
    assert "all 2 gate(s) passed (median over rounds; failed: total over rounds)" in proc.stdout


def test_compare_gate_fails_with_exit_1(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    proc = run_cli("compare", str(a), str(b), "--fail-if", "write_syscalls_per_request > 0.5")
    assert proc.returncode == 1
    failing = [ln for ln in proc.stderr.splitlines() if ln.startswith("gate failed:")]
    assert len(failing) == 2 and "sync-handler: write_syscalls_per_request" in proc.stderr
    assert "error: 1 of 1 gate(s) failed" in proc.stderr


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


# ------------------------------------------------------------------------------ gates on edited runs
#
# One real small run; each case edits a copy of its JSON (a scenario deleted, a round failed, a status
# changed, a value nulled), the record-level equivalent of faking /proc bytes, then runs the real CLI.

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Doc:
    out = tmp_path_factory.mktemp("small") / "base.json"
    proc = run_cli("run", "--scenario", "noop-async,noop-sync", "-n", "200", "-c", "10", "--rounds", "2",
                   "--warmup", "0", "--cpus", "0", "--memory", "0", "-q", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc: Doc = json.loads(out.read_text())
    assert doc["status"] == "complete" and [s["status"] for s in doc["scenarios"]] == ["ok", "ok"]
    return doc


def _scenario(doc: Doc, name: str) -> Doc:
    return next(s for s in doc["scenarios"] if s["name"] == name)


def _compare(tmp_path: Path, base: Doc, new: Doc, *args: str) -> subprocess.CompletedProcess[str]:
    """``iolab compare base.json new.json ARGS`` in tmp_path, so the messages name the files as typed."""
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "new.json").write_text(json.dumps(new))
    return run_cli("compare", "base.json", "new.json", *args, cwd=tmp_path)


def _edited(doc: Doc, edit: Callable[[Doc], None]) -> Doc:
    out = copy.deepcopy(doc)
    edit(out)
    return out


def _gate_failed(proc: subprocess.CompletedProcess[str], *needles: str) -> list[str]:
    """Exit 1, every needle in a "gate failed:" line, the CLI's one error line last, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    failing = [ln for ln in lines if ln.startswith("gate failed: ")]
    for needle in needles:
        assert any(needle in ln for ln in failing), (needle, proc.stderr)
    assert re.fullmatch(r"error: \d+ of \d+ gate\(s\) failed", lines[-1]), proc.stderr
    assert len(failing) == len(lines) - 1, proc.stderr  # nothing else on stderr
    return failing


# A gate every scenario of the run passes against itself: what fails below is the fault, not the value.
EASY = "write_syscalls_per_request > 100"


def test_identical_runs_pass_and_say_which_statistic(small_run: Doc, tmp_path: Path) -> None:
    proc = _compare(tmp_path, small_run, small_run, "--fail-if", "p99_ms > +10%", "--fail-if", EASY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "all 2 gate(s) passed (median over rounds)" in proc.stdout
    passed = [ln for ln in proc.stdout.splitlines() if ln.startswith("gate passed: ")]
    assert len(passed) == 4 and all("(median over 2 rounds)" in ln and "does not hold" in ln for ln in passed)


def test_scenario_missing_in_new_fails_and_outputs_are_still_written(small_run: Doc, tmp_path: Path) -> None:
    new = _edited(small_run, lambda d: d["scenarios"].pop())  # noop-sync is gone
    proc = _compare(tmp_path, small_run, new, "--fail-if", EASY, "--markdown", "c.md", "--html", "c.html")
    _gate_failed(proc, "gate failed: noop-sync: missing in new.json (measured in base.json)")
    assert proc.stderr.splitlines()[-1] == "error: 1 of 1 gate(s) failed"
    assert "only in base: noop-sync" in proc.stdout
    assert "| metric | base | new |" in (tmp_path / "c.md").read_text()
    assert "noop-sync: missing in new.json" in (tmp_path / "c.html").read_text()


def test_gate_naming_a_scenario_missing_in_new_fails(small_run: Doc, tmp_path: Path) -> None:
    new = _edited(small_run, lambda d: d["scenarios"].pop())
    proc = _compare(tmp_path, small_run, new, "--fail-if", f"noop-sync:{EASY}")
    _gate_failed(proc, "noop-sync: missing in new.json")


def test_every_scenario_missing_in_new_is_a_gate_failure_not_bad_input(small_run: Doc, tmp_path: Path) -> None:
    new = _edited(small_run, lambda d: d["scenarios"].clear())
    _gate_failed(_compare(tmp_path, small_run, new, "--fail-if", EASY),
                 "noop-async: missing in new.json", "noop-sync: missing in new.json")


def _fail_round(doc: Doc) -> None:
    s = _scenario(doc, "noop-sync")
    s["status"] = "failed"
    s["rounds"][1].update(status="failed", error="the server died (exit code 1)")


@pytest.mark.parametrize("which", ["new", "base"])
def test_failed_scenario_fails(small_run: Doc, tmp_path: Path, which: str) -> None:
    bad = _edited(small_run, _fail_round)
    base, new = (small_run, bad) if which == "new" else (bad, small_run)
    _gate_failed(_compare(tmp_path, base, new, "--fail-if", EASY),
                 f"noop-sync: status 'failed' in {which}.json, not 'ok' (1 of 2 round(s) not ok: "
                 "the server died (exit code 1))")


def test_any_status_other_than_ok_fails(small_run: Doc, tmp_path: Path) -> None:
    """A status this iolab does not know yet (another branch adds "degraded") is not ok either."""
    new = _edited(small_run, lambda d: _scenario(d, "noop-async").update(status="degraded"))
    _gate_failed(_compare(tmp_path, small_run, new, "--fail-if", EASY),
                 "noop-async: status 'degraded' in new.json, not 'ok'")


@pytest.mark.parametrize(("which", "status", "why"), [
    ("new", "interrupted", "was interrupted"),
    ("base", "interrupted", "was interrupted"),
    ("new", "failed", "ended with a failure"),
    ("new", "running", "never finished (killed, or still running)"),
])
def test_incomplete_run_fails(small_run: Doc, tmp_path: Path, which: str, status: str, why: str) -> None:
    bad = _edited(small_run, lambda d: d.update(status=status))
    base, new = (small_run, bad) if which == "new" else (bad, small_run)
    _gate_failed(_compare(tmp_path, base, new, "--fail-if", EASY),
                 f"gate failed: {which}.json: the run {why}, it is not complete")


def test_unknown_scenario_in_gate_is_bad_input(small_run: Doc, tmp_path: Path) -> None:
    proc = _compare(tmp_path, small_run, small_run, "--fail-if", "nosuch:p99_ms > +10%")
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == ("error: --fail-if 'nosuch:p99_ms > +10%': no scenario 'nosuch' in "
                                        "base.json (its scenarios: noop-async, noop-sync)")


def test_scenario_only_in_new_is_bad_input(small_run: Doc, tmp_path: Path) -> None:
    """Gate names are checked against the base run: a scenario only in new.json has no base to compare."""
    base = _edited(small_run, lambda d: d["scenarios"].pop())
    proc = _compare(tmp_path, base, small_run, "--fail-if", "noop-sync:p99_ms > +10%")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc.stderr)
    assert "no scenario 'noop-sync' in base.json; it is only in new.json" in line
    assert line.endswith("(its scenarios: noop-async)")


def test_unknown_metric_is_bad_input_listing_the_known_ones(small_run: Doc, tmp_path: Path) -> None:
    proc = _compare(tmp_path, small_run, small_run, "--fail-if", "noop-sync:p42_ms > +10%")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc.stderr)
    assert "unknown metric 'p42_ms' (known: p50_ms, p99_ms," in line and "write_syscalls_per_request" in line


def _set_p99(value: float | None) -> Callable[[Doc], None]:
    def edit(d: Doc) -> None:
        s = _scenario(d, "noop-sync")
        for record in (s, *s["rounds"]):
            record["latency_ms"]["p99"] = value
    return edit


@pytest.mark.parametrize("value", [0.0, None])
def test_p99_zero_or_null_fails(small_run: Doc, tmp_path: Path, value: float | None) -> None:
    new = _edited(small_run, _set_p99(value))
    why = "it is 0: no request was measured" if value == 0.0 else "the scenario measured nothing"
    _gate_failed(_compare(tmp_path, small_run, new, "--fail-if", "p99_ms > +10%"),
                 f"gate failed: noop-sync: p99_ms is missing in new.json ({why})")
    # In the base, it fails a relative gate (no base value) but not an absolute one (none needed).
    _gate_failed(_compare(tmp_path, new, small_run, "--fail-if", "p99_ms > +10%"),
                 "noop-sync: p99_ms is missing in base.json")
    assert _compare(tmp_path, new, small_run, "--fail-if", "p99_ms > 10000").returncode == 0


def test_zero_write_syscalls_is_a_value_not_a_missing_one(small_run: Doc, tmp_path: Path) -> None:
    """A server that answers with send() makes 0 write syscalls per request: a gate judges that 0."""
    def no_writes(d: Doc) -> None:
        for s in d["scenarios"]:
            for record in (s, *s["rounds"]):
                record["per_request"]["write_syscalls"] = 0.0
    new = _edited(small_run, no_writes)
    proc = _compare(tmp_path, small_run, new, "--fail-if", "write_syscalls_per_request > 1")
    assert proc.returncode == 0, proc.stderr
    assert "gate passed: noop-sync: write_syscalls_per_request 0 (median over 2 rounds)" in proc.stdout


def test_server_side_metric_of_an_unsampled_server_fails(small_run: Doc, tmp_path: Path) -> None:
    """--url without --pid: the per-request counts are 0 because nothing was read, not because the
    server made no syscall."""
    new = _edited(small_run, lambda d: d["target"].update(kind="running", server_measured=False))
    _gate_failed(_compare(tmp_path, small_run, new, "--fail-if", "write_syscalls_per_request > 4"),
                 "noop-sync: write_syscalls_per_request is missing in new.json (iolab did not sample")
    # Latency was measured all the same.
    assert _compare(tmp_path, small_run, new, "--fail-if", "p99_ms > +10%").returncode == 0


def _p99_rounds(new_rounds: tuple[float, float], pooled: float) -> Callable[[Doc], None]:
    """noop-async's p99 as 10 ms in every base round; the new rounds and pooled value as given."""
    def edit(d: Doc) -> None:
        s = _scenario(d, "noop-async")
        s["latency_ms"]["p99"] = pooled
        for r, v in zip(s["rounds"], new_rounds, strict=True):
            r["latency_ms"]["p99"] = v
    return edit


@pytest.mark.parametrize(("new_rounds", "pooled", "fails"), [
    ((10.4, 10.6), 20.0, False),  # median +5 % passes although the pooled p99 doubled
    ((14.0, 16.0), 10.5, True),   # median +50 % fails although the pooled p99 moved 5 %
])
def test_gate_judges_the_tables_median_not_the_pooled_value(
        small_run: Doc, tmp_path: Path, new_rounds: tuple[float, float], pooled: float, fails: bool) -> None:
    base = _edited(small_run, _p99_rounds((10.0, 10.0), 10.0))
    new = _edited(small_run, _p99_rounds(new_rounds, pooled))
    proc = _compare(tmp_path, base, new, "--fail-if", "noop-async:p99_ms > +10%")
    median = f"{sum(new_rounds) / 2:,.4g}"
    expected = (f"noop-async: p99_ms {median} ms (median over 2 rounds), base 10 ms (median over 2 rounds), "
                f'limit 11 ms: "noop-async:p99_ms > +10%"')
    if fails:
        assert f"gate failed: {expected} holds" in _gate_failed(proc)
    else:
        assert proc.returncode == 0, proc.stderr
        assert f"gate passed: {expected} does not hold" in proc.stdout
        assert "all 1 gate(s) passed (median over rounds)" in proc.stdout
    # The table's p99_ms row shows the very values the gate judged.
    row = re.search(r"^\s*p99_ms\s+(\S+)\s+(\S+)\s", proc.stdout.split("/noop-async: new vs base")[1], re.M)
    assert row is not None and row.groups() == ("10", median), proc.stdout


def test_statistic_is_one_function_for_tables_and_gates(small_run: Doc) -> None:
    """compare() puts scenario_statistic() in the table, and metric_value() of a scenario is the same
    median, not the pooled aggregate stored in the record."""
    run = results.loads(json.dumps(_edited(small_run, _p99_rounds((14.0, 16.0), 10.5))))
    s = next(x for x in run.scenarios if x.name == "noop-async")
    assert s.latency_ms.p99 == 10.5
    assert verdict.scenario_statistic(s, "p99_ms") == verdict.RoundsStatistic(15.0, "median", 2)
    assert verdict.metric_value(s, "p99_ms") == 15.0
    c = next(c for c in verdict.compare(s, s) if c.metric == "p99_ms")
    assert (c.a_value, c.b_value) == (15.0, 15.0)


def test_help_names_the_statistic() -> None:
    proc = run_cli("compare", "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "median over the successful rounds" in text and "not complete" in text
