"""The memory limit, end to end: a server it kills is named as such (exit 4, or 3 at start-up); a limit
below the documented minimum is refused before anything starts (exit 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create cgroups")
SMALL = ("-n", "50", "-c", "2", "--rounds", "1", "--interval", "0.2", "-q")

# Plain ASGI, no framework: /hog keeps 200 MB (every page touched by bytearray's zeroing), far past 64 MiB.
HOG_APP = '''
hoard = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/hog":
        hoard.append(bytearray(200 << 20))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[-1]


@root_only
@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("warmup", ["0", "5"])  # killed while measuring; killed in the warm-up (was exit 2)
def test_a_server_killed_by_the_memory_limit_is_named(tmp_path: Path, warmup: str) -> None:
    (tmp_path / "hog.py").write_text(HOG_APP)
    out = tmp_path / "r.json"
    proc = run_cli("run", "--app", "hog:app", "--app-dir", str(tmp_path), "--path", "/hog", "--memory", "64M",
                   "--warmup", warmup, *SMALL, "-o", str(out))
    assert proc.returncode == 4, proc.stderr
    line = _error_line(proc.stderr)
    assert "the server was killed by the memory limit (64 MiB) during /hog" in line
    (scenario,) = json.loads(out.read_text())["scenarios"]
    assert scenario["rounds"][0]["status"] == "failed"
    assert "killed by the memory limit (64 MiB)" in scenario["rounds"][0]["error"]


@root_only
@pytest.mark.usefixtures("nothing_left_behind")
def test_a_server_killed_by_the_memory_limit_at_start_up_is_exit_3(tmp_path: Path) -> None:
    (tmp_path / "fat.py").write_text("ballast = bytearray(200 << 20)\n\n\nasync def app(scope, receive, send):\n"
                                     "    pass\n")
    proc = run_cli("run", "--app", "fat:app", "--app-dir", str(tmp_path), "--path", "/x", "--memory", "64M",
                   *SMALL, "-o", str(tmp_path / "r.json"))
    assert proc.returncode == 3, proc.stderr
    assert "the server was killed by the memory limit (64 MiB) before it was ready" in _error_line(proc.stderr)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize(("command", "option", "message"), [
    ("run", ("--memory", "1K"), "--memory 1K: 1 KiB is below the smallest memory limit iolab accepts, 32 MiB"),
    ("sweep", ("--memory", "16M"), "--memory 16M: 16 MiB is below the smallest memory limit iolab accepts, 32 MiB"),
    ("run", ("--cpus", "0.001"), "--cpus 0.001: 0.001 CPU is below the smallest CPU limit, 0.01"),
])
def test_limits_below_the_minimum_are_refused_before_anything_starts(
        tmp_path: Path, command: str, option: tuple[str, str], message: str) -> None:
    out = tmp_path / "r.json"
    proc = run_cli(command, *option, "-o", str(out), timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert message in _error_line(proc.stderr)
    assert not out.exists()
