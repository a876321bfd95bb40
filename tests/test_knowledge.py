"""Scenario knowledge is data the caller passes: the demo supplies its own, a user's app none."""

from __future__ import annotations

import ast
from pathlib import Path

import click

from iolab.analysis import advice, verdict
from iolab.analysis.knowledge import NONE, ScenarioKnowledge
from iolab.cli.main import cli
from iolab.cli.run import build_config
from iolab.demo import scenarios
from tests.test_verdict import make, round_record, scenario

DEMO = ScenarioKnowledge(**scenarios.knowledge())
ANALYSIS = Path(__file__).resolve().parent.parent / "iolab" / "analysis"


def _results() -> dict:
    """A user's app whose paths happen to carry the demo's names, with a logging scenario that wrote nothing."""
    return {
        "noop-sync": make("noop-sync", [91.9, 92.1, 91.7]),
        "noop-async": make("noop-async", [73.0, 73.4, 72.6]),
        "sync": scenario("sync", [round_record(i, p50=92.4 + i, lines=0) for i in range(3)]),
        "async": make("async", [73.1, 73.6, 72.6]),
    }


def test_a_users_app_gets_no_demo_pairs_notes_or_attribution() -> None:
    res = _results()
    names = list(res)
    assert verdict.default_pairs(names) == [("noop-sync", n) for n in names[1:]]  # every one against the first
    assert {(c.a, c.b) for c in verdict.compare_all(res)} == {("noop-sync", n) for n in names[1:]}
    assert verdict.attribute(res) == [] and verdict.attribute(res, "mean_ms", NONE) == []
    assert verdict.stdout_notes(res) == []
    assert "no-handler" not in {w.kind for w in advice.scenario_warnings(res, None)}
    assert NONE == ScenarioKnowledge() and not NONE.controls and NONE.control_pair is None


def test_the_demo_supplies_its_controls_pairs_and_notes() -> None:
    res = _results()
    pairs = verdict.default_pairs(list(res), DEMO)
    assert pairs == [("noop-sync", "noop-async"), ("noop-sync", "sync"), ("noop-async", "async"), ("sync", "async")]
    lines = verdict.attribute(res, knowledge=DEMO)
    assert lines[0].startswith("/sync vs /async: p50 latency") and "Of that, `def` vs `async def`" in lines[0]
    assert verdict.stdout_notes(res, DEMO)[0].startswith("/sync wrote 0 lines: its logger has no handler")
    assert "no-handler" in {w.kind for w in advice.scenario_warnings(res, None, DEMO)}
    # Every catalog entry is known: its control, what it adds, its peers.
    assert set(scenarios.CATALOG_ORDER) <= set(DEMO.controls) <= set(DEMO.log_code)
    assert ("async-blocking-log", "queue-async") in DEMO.peer_pairs


def _config(*args: str):  # type: ignore[no-untyped-def]
    command = cli.get_command(click.Context(cli), "run")
    assert command is not None
    ctx = command.make_context("run", list(args))
    return build_config(ctx.params, Path("unused.json"))


def test_run_passes_the_demos_knowledge_only_for_the_demo() -> None:
    assert _config("--scenario", "sync,noop-sync").knowledge == DEMO
    assert _config("--url", "http://127.0.0.1:9/sync").knowledge is NONE
    assert _config("--app", "tests.test_targets:app", "--path", "/sync").knowledge is NONE


def test_the_analysis_imports_no_demo_cli_click_or_rich() -> None:
    banned = ("iolab.demo", "iolab.cli", "click", "rich")
    found = []
    for path in sorted(ANALYSIS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports included
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned or n.startswith(banned)]
    assert found == []
