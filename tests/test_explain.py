"""The explain pass end to end: real servers, real tracers; counts per request with margins, never times."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from iolab.measure.explain.tracer import tracefs_ready
from iolab.measure.server import free_port
from tests.conftest import REPO, iolab_env, run_cli

# No CPU or memory limit: the explain pass traces the same server either way, and unlimited it is faster.
SMALL = ("-n", "100", "-c", "10", "--warmup", "20", "--rounds", "1", "-q", "--cpus", "0", "--memory", "0",
         "--explain", "--explain-requests", "200")

needs_bpftrace = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bpftrace") is None or tracefs_ready() is not None,
    reason="bpftrace needs root, bpftrace and tracefs (make test-deps installs and mounts them)")
needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")


def _tracers() -> int:
    return sum(1 for p in psutil.process_iter(["name"]) if p.info["name"] in ("bpftrace", "strace", "py-spy"))


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    before = _tracers()
    out = tmp_path / "r.json"
    proc = run_cli("run", *args, "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert _tracers() <= before, "a tracer outlived the run"
    return {s["path"]: s["explain"] for s in json.loads(out.read_text())["scenarios"]}


def _rows(e: dict[str, Any]) -> str:
    """The record's rows, for a failure message."""
    return "; ".join(f"{w['destination']} {w['syscall']} {w['thread']} {w['calls_per_request']:.3f}" for w in e["writes"]) \
        + f" | {({k: v for k, v in e.items() if k not in ('writes', 'blocked_sites')})}"


def _calls(e: dict[str, Any], destination: str, thread: str | None = None, syscall: str | None = None) -> float:
    return sum(w["calls_per_request"] for w in e["writes"] if w["destination"] == destination
               and (thread is None or thread in w["thread"]) and (syscall is None or w["syscall"] == syscall))


def _syscw_matches(e: dict[str, Any]) -> None:
    """The rows' write-family calls are what /proc/PID/io syscw counted, within 5 %."""
    assert e["syscw_per_request"] > 0
    assert abs(e["syscw_attributed_per_request"] - e["syscw_per_request"]) <= 0.05 * e["syscw_per_request"], _rows(e)


@needs_bpftrace
@pytest.mark.usefixtures("nothing_left_behind")
def test_demo_writes_by_thread_and_destination(tmp_path: Path) -> None:
    ex = _run(tmp_path, "--scenario", "noop-async,sync-handler", *SMALL, "--markdown", str(tmp_path / "r.md"),
              "--html", str(tmp_path / "r.html"))
    a = ex["/noop-async"]
    assert a["method"] == "bpftrace" and a["requests"] == 200
    # uvicorn sends headers and body in two writes from the event loop; the access log is one write.
    assert 1.9 <= _calls(a, "client-socket", "main", "write") <= 2.1, _rows(a)
    assert 0.9 <= _calls(a, "stdout", "main", "write") <= 1.1, _rows(a)
    assert _calls(a, "loop-wakeup") == 0  # an async def endpoint never wakes the loop from a thread
    assert 2.8 <= a["output_syscalls_per_request"] <= 3.2
    _syscw_matches(a)
    h = ex["/sync-handler"]
    assert 0.9 <= _calls(h, "stdout", "AnyIO worker", "write") <= 1.1, _rows(h)  # the handler's record
    assert 0.9 <= _calls(h, "stdout", "main", "write") <= 1.1, _rows(h)  # the access log
    assert 1.9 <= _calls(h, "client-socket", "main") <= 2.1, _rows(h)
    # The worker wakes the loop through its eventfd; uvloop skips the write while a wake-up is pending.
    assert 0.05 <= _calls(h, "loop-wakeup", "AnyIO worker") <= 1.1, _rows(h)
    assert any(w["threads"] > 1 for w in h["writes"] if "AnyIO worker" in w["thread"])  # a pool is one row
    _syscw_matches(h)
    # Who waits: py-spy sampled the server (a short round gives few samples: which sites show varies).
    assert a["sampler"] == "py-spy", a["sampler_reason"]
    for b in a["blocked_sites"] + h["blocked_sites"]:
        assert b["state"] in ("output-syscall", "gil-wait") and 0 < b["share_of_thread_wall"] <= 1
    for page in ((tmp_path / "r.md").read_text(), (tmp_path / "r.html").read_text()):
        assert "Where the writes go — /noop-async" in page and "Who waits" in page
    rep = run_cli("report", str(tmp_path / "r.json"))  # re-rendered from the results file
    assert rep.returncode == 0, rep.stderr
    assert "Where the writes go — /sync-handler" in rep.stdout and "loop-wakeup" in rep.stdout


@needs_bpftrace
@pytest.mark.usefixtures("nothing_left_behind")
def test_http_server_answers_with_sendto_which_syscw_leaves_out(tmp_path: Path) -> None:
    port = free_port()
    ex = _run(tmp_path, "--cmd", f"{sys.executable} -m http.server {port} --bind 127.0.0.1",
              "--url", f"http://127.0.0.1:{port}/", *SMALL)
    e = ex["/"]
    assert 1.8 <= _calls(e, "client-socket", syscall="sendto") <= 2.2, _rows(e)
    assert 0.9 <= _calls(e, "stderr", syscall="write") <= 1.1, _rows(e)  # its log line
    assert 0.9 <= e["syscw_per_request"] <= 1.1  # only the log line is in syscw
    assert 2.7 <= e["output_syscalls_per_request"] <= 3.3
    _syscw_matches(e)
    rep = run_cli("report", str(tmp_path / "r.json"))
    assert "syscw leaves out" in rep.stdout


@needs_bpftrace
@pytest.mark.usefixtures("nothing_left_behind")
def test_public_app_httpbin_on_gunicorn_sync_workers(tmp_path: Path) -> None:
    # A public app nobody here wrote, from PyPI (the test extra): Flask's httpbin on gunicorn, whose sync
    # worker is a child of the process iolab started and answers with sendall (sendto), outside syscw.
    port = free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    ex = _run(tmp_path, "--cmd", f"{gunicorn} -w 1 -b 127.0.0.1:{port} --access-logfile - httpbin:app",
              "--url", f"http://127.0.0.1:{port}/get", *SMALL)
    e = ex["/get"]
    assert _calls(e, "client-socket", syscall="sendto") >= 0.9, _rows(e)  # the worker's answer
    assert 0.9 <= _calls(e, "stdout", syscall="write") <= 1.1, _rows(e)  # its access-log line
    assert e["output_syscalls_per_request"] >= e["syscw_per_request"] + 0.9  # what syscw leaves out
    _syscw_matches(e)


@needs_strace
@pytest.mark.usefixtures("nothing_left_behind")
def test_without_bpftrace_auto_falls_back_to_strace_and_says_so(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with strace and Python, and no bpftrace
    bin_dir.mkdir()
    (bin_dir / "strace").symlink_to(shutil.which("strace") or "strace")
    env = iolab_env(PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}")
    ex = _run(tmp_path, "--scenario", "noop-async", *SMALL[:-1], "60", env=env)  # strace: ×5–×30 slower
    e = ex["/noop-async"]
    assert e["method"] == "strace"
    assert "bpftrace is not installed" in e["reason"]
    assert 1.9 <= _calls(e, "client-socket") <= 2.1 and 0.9 <= _calls(e, "stdout") <= 1.1, _rows(e)
    assert e["sampler"] == "none" and "strace" in e["sampler_reason"]
    _syscw_matches(e)
    rep = run_cli("report", str(tmp_path / "r.json"))
    assert "strace, 60 requests" in rep.stdout


_DYING = """import os, sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
n = [0]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        n[0] += 1
        if n[0] > int(sys.argv[2]):
            os._exit(1)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@needs_bpftrace
@pytest.mark.usefixtures("nothing_left_behind")
def test_a_server_that_dies_in_the_explain_round_gives_no_slowdown_and_says_so(tmp_path: Path) -> None:
    # It answers the measured round (20 + 100 requests), then dies in the explain round's first half (its own
    # fresh server: 20 warm-up + 200): the failed requests are fast, a "slowdown" from them would be a lie.
    script = tmp_path / "dying.py"
    script.write_text(_DYING)
    port = free_port()
    ex = _run(tmp_path, "--cmd", f"{sys.executable} {script} {port} 150", "--url", f"http://127.0.0.1:{port}/",
              *SMALL[:6], "--rounds", "1", "-q", "--explain", "--explain-requests", "400")
    e = ex["/"]
    assert e["slowdown"] is None and e["sampler_slowdown"] is None, _rows(e)
    assert "failed" in e["reason"] and "server exited" in e["reason"], _rows(e)


def test_a_named_tracer_that_cannot_run_stops_the_run_before_any_load(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with Python and no bpftrace
    bin_dir.mkdir()
    env = iolab_env(PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}")
    out = run_cli("run", "--scenario", "noop-async", *SMALL, "--explain-method", "bpftrace",
                  "-o", str(tmp_path / "r.json"), env=env)
    assert out.returncode == 5 and out.stderr.startswith("error: --explain-method bpftrace"), out.stderr
    assert "bpftrace is not installed" in out.stderr and not (tmp_path / "r.json").exists()


@pytest.mark.usefixtures("nothing_left_behind")
def test_explain_method_none_says_why(tmp_path: Path) -> None:
    ex = _run(tmp_path, "--scenario", "noop-async", *SMALL, "--explain-method", "none")
    e = ex["/noop-async"]
    assert e["method"] == "none" and e["writes"] == [] and "--explain-method none" in e["reason"]
    rep = run_cli("report", str(tmp_path / "r.json"))
    assert "not traced: --explain-method none" in rep.stdout


def test_no_explain_leaves_no_explain_record(tmp_path: Path) -> None:
    ex = _run(tmp_path, "--scenario", "noop-async", "-n", "100", "-c", "5", "--warmup", "0", "--rounds", "1",
              "-q")
    assert ex["/noop-async"] is None


@needs_bpftrace
@pytest.mark.usefixtures("nothing_left_behind")
def test_a_sigkill_of_iolab_takes_the_tracer_with_it(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "iolab", "run", "--scenario", "noop-async", *SMALL[:-1], "1000000",
         "-o", str(tmp_path / "r.json")], cwd=REPO, env=iolab_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tracer = None
    try:
        deadline = time.monotonic() + 120
        while tracer is None and proc.poll() is None and time.monotonic() < deadline:
            tracer = next((c for c in psutil.Process(proc.pid).children() if c.name() == "bpftrace"), None)
            time.sleep(0.1)
        assert tracer is not None, "the explain round never started bpftrace"
    finally:
        proc.kill()
        proc.wait()
    assert tracer.wait(timeout=30) is not None or not tracer.is_running()
