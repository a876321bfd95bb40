"""Measuring the user's own service: an app in a temp folder, a server command, a running server, and
every stdout sink, each through the real CLI with a real server."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from iolab.errors import AccessDenied, NoSuchProcess, UsageError
from iolab.measure.targets import check_pid, check_url
from tests.conftest import free_port, run_cli

SMALL = ("-n", "200", "-c", "10", "--warmup", "20", "--interval", "0.2", "--rounds", "1", "-q")

USER_APP = '''
import logging
import sys

from fastapi import FastAPI, Request, Response

app = FastAPI()
log = logging.getLogger("myapp")
log.addHandler(logging.StreamHandler(sys.stdout))
log.setLevel(logging.INFO)


@app.get("/health")
async def health():
    return {"ok": True}


@app.post("/orders")
async def orders(request: Request, response: Response):
    body = await request.body()
    log.info("order of %d bytes", len(body))
    if request.headers.get("x-token") != "secret":
        response.status_code = 403
    return {"n": len(body)}


@app.get("/work")
def work():
    sum(range(2000))
    return {"ok": True}
'''


@pytest.fixture
def user_app(tmp_path: Path) -> Path:
    d = tmp_path / "svc"
    d.mkdir()
    (d / "myapp.py").write_text(USER_APP)
    (d / "body.json").write_text('{"item": 42}')
    return d


def _doc(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text())


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[-1]


def _assert_port_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # our own TIME_WAIT sockets are fine
        s.bind(("127.0.0.1", port))
        s.listen()


@pytest.mark.usefixtures("nothing_left_behind")
def test_user_app_with_post_body_and_headers(user_app: Path, tmp_path: Path) -> None:
    out = tmp_path / "u.json"
    proc = run_cli("run", "--app", "myapp:app", "--app-dir", str(user_app), "--path", "/health",
                   "--path", "create=POST:/orders", "--body", str(user_app / "body.json"),
                   "--header", "X-Token: secret", "--compare", "/health:create", *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = _doc(out)
    by = {s["name"]: s for s in doc["scenarios"]}
    assert set(by) == {"/health", "create"}
    assert by["create"]["non_2xx"] == 0 and by["create"]["requests"] == 200
    # One log line per POST reached the pipe, on top of uvicorn's access log.
    assert by["create"]["stdout"]["lines"] >= by["/health"]["stdout"]["lines"] + 200
    assert doc["target"]["kind"] == "app" and doc["target"]["app"] == "myapp:app"
    assert {(c["a"], c["b"]) for c in doc["comparisons"]} == {("/health", "create")}


@pytest.mark.usefixtures("nothing_left_behind")
def test_user_app_wrong_header_is_non_2xx(user_app: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    proc = run_cli("run", "--app", "myapp:app", "--app-dir", str(user_app), "--path", "POST:/orders",
                   "--path", "/nope", *SMALL, "-o", str(out))
    # Nothing succeeded in either scenario: exit 7, the first named with its reason, the other counted.
    assert proc.returncode == 7, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: nothing was measured for /orders") and "every response was 403" in line
    assert "/nope round 1 (nothing measured)" in line and str(out) in line
    by = {s["name"]: s for s in _doc(out)["scenarios"]}
    # Counted in the warm-up (20 requests), after which the measured load was not run: nothing succeeded.
    assert by["/orders"]["non_2xx"] == 20  # 403 without the token
    assert by["/nope"]["non_2xx"] == 20  # a path that 404s is reported, and the run goes on
    assert by["/nope"]["latency_ms"]["p50"] is None and by["/nope"]["status"] == "failed"


@pytest.mark.usefixtures("nothing_left_behind")
def test_workers_are_summed_over_the_process_tree(user_app: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    proc = run_cli("run", "--app", "myapp:app", "--app-dir", str(user_app), "--path", "/work", "--workers", "2",
                   *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    s = _doc(out)["scenarios"][0]
    mains = [t for t in s["threads"] if t["name"] == "main"]
    assert mains and mains[0]["threads"] >= 3  # the supervisor and two workers' main threads
    assert s["per_request"]["cpu_ms"] > 0


@pytest.mark.parametrize("server", ["hypercorn", "granian"])
@pytest.mark.usefixtures("nothing_left_behind")
def test_other_asgi_servers(server: str, user_app: Path, tmp_path: Path) -> None:
    pytest.importorskip(server, reason=f"{server} is not installed (pip install 'iolab[servers]')")
    out = tmp_path / f"{server}.json"
    proc = run_cli("run", "--app", "myapp:app", "--app-dir", str(user_app), "--path", "/health", "--server", server,
                   *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = _doc(out)
    assert doc["target"]["server"] == server and doc["scenarios"][0]["requests"] == 200


@pytest.mark.usefixtures("nothing_left_behind")
def test_cmd_server_started_and_stopped(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "index.html").write_text("hello")
    out = tmp_path / "c.json"
    cmd = f"{sys.executable} -m http.server --bind 127.0.0.1 --directory {tmp_path} {port}"
    proc = run_cli("run", "--cmd", cmd, "--url", f"http://127.0.0.1:{port}/index.html", *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = _doc(out)
    s = doc["scenarios"][0]
    assert doc["target"]["kind"] == "command" and s["path"] == "/index.html"
    assert s["requests"] == 200 and s["non_2xx"] == 0
    assert s["per_request"]["cpu_ms"] > 0 and s["stdout"]["lines"] >= 200  # http.server logs each request
    _assert_port_free(port)  # the command's server is gone


def test_running_http_server_with_pid_is_probed_not_stopped(running_http_server: tuple[int, int], tmp_path: Path) -> None:
    port, pid = running_http_server
    out = tmp_path / "p.json"
    proc = run_cli("run", "--url", f"http://127.0.0.1:{port}/index.html", "--pid", str(pid), *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = _doc(out)
    s = doc["scenarios"][0]
    assert doc["target"] == {"kind": "running", "url": f"http://127.0.0.1:{port}/index.html", "pid": pid,
                             "server_measured": True}
    assert s["per_request"]["cpu_ms"] > 0 and s["per_request"]["write_syscalls"] > 0
    assert doc["limits"]["method"] == "none"
    os.kill(pid, 0)  # still running: iolab never stops a server it did not start


def test_running_http_server_without_pid_is_latency_only(running_http_server: tuple[int, int], tmp_path: Path) -> None:
    port, _ = running_http_server
    out = tmp_path / "l.json"
    proc = run_cli("run", "--url", f"http://127.0.0.1:{port}/index.html", *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = _doc(out)
    assert doc["target"]["server_measured"] is False
    # The server's side was not sampled: its per-request figures are null, never 0.
    assert doc["scenarios"][0]["latency_ms"]["p50"] > 0 and doc["scenarios"][0]["per_request"]["cpu_ms"] is None
    assert doc["scenarios"][0]["rps_per_server_cpu_s"] is None
    assert any(w["kind"] == "server-not-measured" for w in doc["warnings"])


@pytest.mark.parametrize("kind", ["file", "null", "tty", "slow"])
@pytest.mark.usefixtures("nothing_left_behind")
def test_every_sink_with_a_real_server(kind: str, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = run_cli("run", "--scenario", "sync-raw", "--stdout", kind, "--sink-rate", "2MB/s", *SMALL,
                   "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = _doc(out)
    s = doc["scenarios"][0]
    assert s["stdout"]["kind"] == kind
    assert s["stdout"]["buffering"] == ("line" if kind == "tty" else "block")
    if kind == "null":
        assert s["stdout"]["lines"] == 0
    else:  # one raw line and one access-log line per request reached the sink
        assert s["stdout"]["lines"] >= 2 * (200 + 20)
    if kind == "file":
        logs = list(tmp_path.glob("s.sync-raw.r1.stdout.log"))
        assert logs and logs[0].read_text().count("Sync log:") == 220
    if kind == "tty":
        assert any(w["kind"] == "stdout-tty" for w in doc["warnings"])


def test_command_that_exits_at_once(tmp_path: Path) -> None:
    port = free_port()
    proc = run_cli("run", "--cmd", f"{sys.executable} -c 'import sys; print(\"boom\"); sys.exit(3)'",
                   "--url", f"http://127.0.0.1:{port}/", *SMALL, "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 3
    line = _error_line(proc.stderr)
    assert "exited with code 3" in line and "boom" in line


@pytest.mark.usefixtures("nothing_left_behind")
def test_url_that_never_becomes_ready(tmp_path: Path) -> None:
    port = free_port()
    other = free_port()
    cmd = f"{sys.executable} -m http.server --bind 127.0.0.1 {other}"  # listens elsewhere
    t0 = time.monotonic()
    proc = run_cli("run", "--cmd", cmd, "--url", f"http://127.0.0.1:{port}/", "--ready-timeout", "2", *SMALL,
                   "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 3
    assert "did not answer within 2 s" in _error_line(proc.stderr)
    assert time.monotonic() - t0 < 60
    _assert_port_free(other)  # the command was stopped


def test_pid_that_does_not_exist(tmp_path: Path) -> None:
    proc = run_cli("run", "--url", "http://127.0.0.1:9/", "--pid", "999999999", *SMALL, "-o", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "no such process" in _error_line(proc.stderr)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")
def test_pid_of_another_user_is_refused() -> None:
    """Real permissions: we become 'nobody' for a moment and look at a root-owned process."""
    os.seteuid(65534)
    try:
        with pytest.raises(AccessDenied, match="not readable"):
            check_pid(1)
    finally:
        os.seteuid(0)
    with pytest.raises(NoSuchProcess):
        check_pid(2**22 + 12345)


def test_remote_url_needs_allow_remote() -> None:
    with pytest.raises(UsageError, match="--allow-remote"):
        check_url("http://10.1.2.3:80/x", allow_remote=False)
    assert check_url("http://10.1.2.3:8080/x", allow_remote=True) == ("10.1.2.3", 8080)
    assert check_url("http://localhost:8000/", allow_remote=False) == ("localhost", 8000)
    with pytest.raises(UsageError, match="https"):
        check_url("https://127.0.0.1/", allow_remote=False)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--app", "myapp:app"), "needs at least one --path"),
        (("--cmd", "true"), "--cmd needs --url"),
        (("--pid", "1"), "--pid goes with --url"),
        (("--path", "/x"), "--path needs --app"),
        (("--app", "a:b", "--cmd", "x", "--url", "http://127.0.0.1:1/"), "choose one target"),
        (("--url", "http://127.0.0.1:1/", "--scenario", "sync"), "--scenario chooses demo scenarios"),
        (("--url", "http://example.com/"), "not on loopback"),
        (("--app", "noattr", "--path", "/"), "expected MODULE:ATTRIBUTE"),
    ],
)
def test_bad_target_options(args: tuple[str, ...], needle: str) -> None:
    proc = run_cli("run", *args, "-q")
    assert proc.returncode == 2
    assert needle in _error_line(proc.stderr)
