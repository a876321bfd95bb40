"""The public API is small and pinned (httpx's test_exported_members), and works with public names alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import iolab

PUBLIC = ["AppTarget", "CommandTarget", "IolabError", "LimitsRequest", "RunConfig", "RunResult", "RunningTarget",
          "ScenarioSpec", "__version__", "load_results", "run_experiment"]


def test_exported_members() -> None:
    assert sorted(iolab.__all__) == sorted(PUBLIC)
    for name in iolab.__all__:
        assert hasattr(iolab, name)
    assert sorted(dir(iolab)) == sorted(PUBLIC)


def test_logging_exported_members() -> None:
    import iolab.logging

    assert sorted(iolab.logging.__all__) == sorted(
        ["POLICIES", "BatchHandler", "DeferredHandler", "Policy", "flush_all", "install", "install_sigterm_flush"]
    )
    for name in iolab.logging.__all__:
        assert hasattr(iolab.logging, name)


def test_logging_does_not_import_the_lab() -> None:
    """A service that installs the cure gets none of the measuring machinery (nor click, rich, matplotlib)."""
    code = ("import sys, iolab.logging; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('iolab', 'click', 'rich', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)  # a printed list of module names
    assert all(m == "iolab" or m.startswith("iolab.logging") for m in loaded), loaded


def test_run_experiment_with_public_names_alone(tmp_path: Path) -> None:
    """docs/architecture.md's example, for real: the demo app served by uvicorn, one scenario, a tiny load."""
    config = iolab.RunConfig(
        scenarios=(iolab.ScenarioSpec("sync", "/sync"),),
        requests=200, concurrency=4, warmup=20, rounds=1, interval_s=0.1,
        limits=iolab.LimitsRequest(cpus=0, memory_bytes=None, pin=False),
        output=tmp_path / "run.json",
    )
    result = iolab.run_experiment(config)
    assert isinstance(result, iolab.RunResult)
    assert result.status == "complete"
    (scenario,) = result.scenarios
    assert (scenario.name, scenario.status, scenario.requests, scenario.failed) == ("sync", "ok", 200, 0)
    assert scenario.rps is not None and scenario.rps > 0
    assert len(scenario.rounds) == 1
    saved = iolab.load_results(tmp_path / "run.json")
    assert saved.status == "complete" and [s.name for s in saved.scenarios] == ["sync"]
    assert saved.scenarios[0].requests == 200
