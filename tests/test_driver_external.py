"""ab, wrk and hey as drivers, run for real against the uvicorn server of test_driver_builtin.

Each tool's tests skip, saying why, when its binary is missing (``make test-deps`` installs them).
Assertions are about counts and kinds of outcome, never about speed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil
import pytest

from iolab.errors import DriverError, UsageError
from iolab.measure.drivers import get_driver
from iolab.measure.drivers.base import LoadResult, LoadSpec
from iolab.measure.drivers.summary import latency_summary
from tests.conftest import free_port
from tests.test_driver_builtin import server  # noqa: F401 - the fixture, shared

TOOLS = ("ab", "wrk", "hey")


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (make test-deps installs it on Debian as root)")


def spec(tool: str, url: str, **kw: object) -> LoadSpec:
    """wrk runs for a time only; ab and hey are given a count, as users most often do."""
    base: dict[str, object] = {"url": url, "concurrency": 4, "keepalive": True, "cpus": (0,)}
    base.update(kw)
    if tool == "wrk":
        base.pop("requests", None)
        base.setdefault("duration_s", 1.0)
    return LoadSpec(**base)  # type: ignore[arg-type]


def check(r: LoadResult, tool: str) -> None:
    assert r.driver == tool
    assert r.completed == r.ok_2xx + r.non_2xx
    assert r.requests >= r.completed + r.connect_errors
    assert r.cpu_user_s + r.cpu_sys_s > 0  # from wait4: the tool's own CPU
    assert r.raw_output and any(part.endswith(tool) for part in r.command)


@pytest.mark.parametrize("tool", TOOLS)
def test_ok_responses(tool: str, server: str) -> None:  # noqa: F811
    need(tool)
    r = get_driver(tool).run(spec(tool, f"{server}/ok", requests=200))
    check(r, tool)
    assert r.ok_2xx == r.completed > 0 and r.failed == 0
    if tool != "wrk":
        assert r.completed == 200
    s = latency_summary(r)
    assert 0 < s.latency_ms.p50 <= s.latency_ms.p99 <= s.latency_ms.p100
    assert s.hdr  # an HdrHistogram for aggregation across rounds, whichever the tool


@pytest.mark.parametrize("tool", TOOLS)
def test_non_2xx(tool: str, server: str) -> None:  # noqa: F811
    need(tool)
    r = get_driver(tool).run(spec(tool, f"{server}/missing", requests=50, keepalive=False))
    check(r, tool)
    assert r.non_2xx == r.completed > 0 and r.ok_2xx == 0
    if tool == "hey":  # each of hey's 4 workers sends 50 // 4 requests
        assert r.status_counts == {404: 48} and r.facts["requests_rounded_down_to"] == 48


@pytest.mark.parametrize("tool", TOOLS)
def test_refused_connections(tool: str) -> None:
    need(tool)
    r = get_driver(tool).run(spec(tool, f"http://127.0.0.1:{free_port()}/", requests=10))
    assert r.completed == 0 and r.connect_errors > 0
    assert r.errors_sample


@pytest.mark.parametrize("tool", ["ab", "hey"])
def test_timeouts(tool: str, server: str) -> None:  # noqa: F811
    need(tool)
    r = get_driver(tool).run(spec(tool, f"{server}/slow", requests=2, concurrency=2, timeout_s=1))
    assert r.timeouts >= 1 and r.completed == 0


def test_a_missing_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for tool, package in (("wrk", "wrk"), ("ab", "apache2-utils"), ("hey", "hey")):
        with pytest.raises(DriverError) as info:
            get_driver(tool)
        assert str(info.value) == f"{tool} not found — install it (Debian/Ubuntu: apt-get install {package})"


def test_what_a_tool_cannot_do_is_a_usage_error() -> None:
    need("wrk")
    with pytest.raises(UsageError, match="open loop"):
        get_driver("hey").run(LoadSpec(url="http://127.0.0.1:1/", rate=10, duration_s=1))
    with pytest.raises(UsageError, match="duration"):
        get_driver("wrk").run(LoadSpec(url="http://127.0.0.1:1/", requests=10))
    with pytest.raises(UsageError, match="unknown driver"):
        get_driver("siege")


@pytest.mark.parametrize("tool", ["ab", "hey"])
def test_the_tool_is_killed_when_the_caller_fails(tool: str, server: str) -> None:  # noqa: F811
    need(tool)

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        # A timed run reports progress by the clock, so the callback fires while the tool runs.
        get_driver(tool).run(spec(tool, f"{server}/ok", duration_s=5.0, concurrency=2), progress=stop)
    left = [p for p in psutil.Process().children(recursive=True) if p.name() == tool]
    assert left == []


def test_the_tool_runs_pinned(server: str) -> None:  # noqa: F811
    need("hey")
    cpu = sorted(os.sched_getaffinity(0))[-1]
    r = get_driver("hey").run(spec("hey", f"{server}/ok", requests=20, cpus=(cpu,)))
    assert r.command[:3] == (shutil.which("taskset"), "-c", str(cpu))
    assert r.completed == 20
