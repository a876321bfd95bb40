"""``iolab run`` end to end, as a subprocess: a real uvicorn, real sockets, real /proc, real cgroups."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import IOLAB_WITH_CTRL_C, REPO, iolab_cgroups, run_cli

SMALL = ("-n", "300", "-c", "10", "--warmup", "30", "--interval", "0.2", "--rounds", "1", "-q")

DYING_APP = '''
import os

from fastapi import FastAPI

app = FastAPI()
count = 0

@app.get("/ok")
async def ok():
    return {"ok": True}

@app.get("/die")
async def die():
    global count
    count += 1
    if count > 150:
        os._exit(7)
    return {"ok": True}

@app.get("/missing-is-404")
async def missing():
    from fastapi import HTTPException
    raise HTTPException(404)
'''


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines, "no error message"
    assert lines[-1].startswith("error: "), stderr
    assert "Traceback" not in stderr, stderr
    return lines[-1]


@pytest.mark.usefixtures("nothing_left_behind")
def test_run_three_scenarios_writes_every_key(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    proc = run_cli("run", "--scenario", "sync,sync-raw,noop-async", *SMALL, "-o", str(out),
                   "--markdown", str(md))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "iolab.run/2"
    for key in ("created", "tool_version", "machine", "target", "load", "limits", "environment",
                "scenarios", "comparisons", "warnings"):
        assert key in doc
    assert [s["name"] for s in doc["scenarios"]] == ["sync", "sync-raw", "noop-async"]
    by = {s["name"]: s for s in doc["scenarios"]}
    for s in doc["scenarios"]:
        assert s["requests"] == 300 and s["failed"] == 0 and s["non_2xx"] == 0
        assert set(s["latency_ms"]) == {"p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99", "p99_9",
                                        "p100", "mean"}
        assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p99"] <= s["latency_ms"]["p100"]
        for k in ("count", "min", "p50", "p90", "p95", "p99", "max", "mean"):
            assert k in s["cswch_per_s"] and k in s["main_thread"]["nvcswch_per_s"]
        assert set(s["per_request"]) >= {"write_syscalls", "voluntary_ctx_switches",
                                          "involuntary_ctx_switches", "cpu_ms"}
        assert s["per_request"]["cpu_ms"] > 0
        assert s["rps"] > 0 and s["rps_per_server_cpu_s"] > 0
        assert s["stdout"]["kind"] == "pipe" and s["stdout"]["buffering"] == "block"
        assert s["threads"] and any(t["name"] == "main" for t in s["threads"])
        assert len(s["rounds"]) == 1
    # The seed's /sync logger has no handler: only uvicorn's access log lines reach stdout; /sync-raw
    # writes one more line per request.
    assert by["sync-raw"]["stdout"]["lines"] >= by["sync"]["stdout"]["lines"] + 300
    # A def endpoint runs in AnyIO's worker threads: they show up by name.
    assert any(t["name"].startswith("AnyIO") for t in by["sync"]["threads"])
    assert doc["limits"]["method"] in ("cgroup1", "cgroup2", "systemd-run", "none")
    assert doc["environment"]["stdout"]["pythonunbuffered_in_server_env"] is False
    text = md.read_text()
    assert "| Percentile | /sync | /sync-raw | /noop-async |" in text
    assert "cswch/s" in text and "nvcswch/s" in text
    assert "Response time (ms)" in proc.stdout


@pytest.mark.usefixtures("nothing_left_behind")
def test_unbuffered_is_recorded_and_costs_syscalls(tmp_path: Path) -> None:
    out = tmp_path / "u.json"
    proc = run_cli("run", "--scenario", "sync-raw", *SMALL, "--unbuffered", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    s = doc["scenarios"][0]
    assert s["stdout"]["buffering"] == "unbuffered"
    assert doc["environment"]["stdout"]["pythonunbuffered_in_server_env"] is True
    # A raw write per request plus the access log line plus the response: at least 2 writes/request.
    assert s["per_request"]["write_syscalls"] >= 2.0


def test_unknown_scenario() -> None:
    proc = run_cli("run", "--scenario", "sync,nope", "-q")
    assert proc.returncode == 2
    assert "unknown scenario 'nope'" in _one_error_line(proc.stderr)


def test_taken_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli("run", "--scenario", "sync", *SMALL, "--port", str(port), "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 2
    assert f"port {port}" in _one_error_line(proc.stderr)


@pytest.mark.usefixtures("nothing_left_behind")
def test_unimportable_app(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_xyz\n")
    proc = run_cli("run", "--app", "broken:app", "--app-dir", str(tmp_path), "--path", "/x", *SMALL,
                   "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 3
    line = _one_error_line(proc.stderr)
    assert "No module named 'no_such_module_xyz'" in line


@pytest.mark.usefixtures("nothing_left_behind")
def test_server_dies_mid_run_keeps_results(tmp_path: Path) -> None:
    (tmp_path / "dying.py").write_text(DYING_APP)
    out = tmp_path / "d.json"
    proc = run_cli("run", "--app", "dying:app", "--app-dir", str(tmp_path), "--path", "/ok", "--path", "/die",
                   *SMALL, "-o", str(out))
    assert proc.returncode == 4, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "died mid-run" in line and "/die" in line
    doc = json.loads(out.read_text())
    by = {s["name"]: s for s in doc["scenarios"]}
    assert by["/ok"]["status"] == "ok" and by["/ok"]["requests"] == 300
    assert by["/die"]["status"] == "failed"
    assert "exit code 7" in by["/die"]["rounds"][0]["error"]


@pytest.mark.usefixtures("nothing_left_behind")
def test_non_2xx_is_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "dying.py").write_text(DYING_APP)
    out = tmp_path / "n.json"
    proc = run_cli("run", "--app", "dying:app", "--app-dir", str(tmp_path), "--path", "/missing-is-404",
                   "--path", "/ok", *SMALL, "-o", str(out))
    # Every response of /missing-is-404 was a 404: nothing succeeded there (exit 7), /ok still measured.
    # Nothing succeeded in its warm-up already, so its measured load was not run: 30 requests counted.
    assert proc.returncode == 7, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "no request succeeded in the warm-up" in line and "every response was 404 (30 requests)" in line
    by = {s["name"]: s for s in json.loads(out.read_text())["scenarios"]}
    assert by["/missing-is-404"]["non_2xx"] == 30 and by["/missing-is-404"]["status"] == "failed"
    assert by["/ok"]["non_2xx"] == 0 and by["/ok"]["status"] == "ok"


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # exited in the meantime
        return ""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_ctrl_c_kills_servers_removes_cgroups_keeps_results(tmp_path: Path) -> None:
    out = tmp_path / "i.json"
    proc = subprocess.Popen(
        [*IOLAB_WITH_CTRL_C, "run", "--scenario", "noop-async,noop-sync", "-n", "200000", "-c", "10",
         "--warmup", "0", "-q", "-o", str(out)],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Until the server and the driver both run (mid-measurement), however long a slow machine takes to
        # get there: a guard, not a timing.
        deadline = time.monotonic() + 60
        started: list[psutil.Process] = []
        while time.monotonic() < deadline:
            started = psutil.Process(proc.pid).children(recursive=True)
            cmds = [_cmdline(c) for c in started]
            if any("iolab.measure.server_child" in c for c in cmds) and any("iolab.measure.drivers.builtin" in c for c in cmds):
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.1)
        assert any("iolab.measure.server_child" in _cmdline(c) for c in started)
        assert any("iolab.measure.drivers.builtin" in _cmdline(c) for c in started)
        time.sleep(0.5)  # a moment of load: the interrupt lands mid-measurement, not during the driver's start
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert _one_error_line(stderr).startswith("error: interrupted")
    assert json.loads(out.read_text())["status"] == "interrupted"
    gone_by = time.monotonic() + 10  # a guard: what iolab killed may take a moment to be reaped
    while (alive := [c for c in started if _alive(c)]) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not alive, f"left behind: {alive}"
    # Its own cgroups (named after its PID: the wrapper execs iolab in place): another iolab running on
    # the machine meanwhile (a second session, a CI job) creates and removes cgroups of its own.
    left = [c for c in iolab_cgroups() if f"iolab-{proc.pid}-" in c]
    assert not left, f"cgroups left behind: {left}"


def test_help_shows_defaults_and_examples() -> None:
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    assert "default: 10000" in proc.stdout and "iolab run --scenario sync,async" in proc.stdout
