"""No success without a measurement: a round in which no request succeeded is "failed" with null figures
and exit 7, one with too many failed requests is "degraded" with exit 8, a stalled stdout sink is caught
and named. Real things: a closed port, a server that never answers, an app that answers 500, the demo
writing into a pipe read at 1 byte a second; the real CLI as a subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

# One small round, no warm-up, no limits: what each case needs to show and no more.
SMALL = ("-n", "200", "-c", "10", "--warmup", "0", "--rounds", "1", "--cpus", "0", "--memory", "0",
         "--interval", "0.2")

APP = '''
import os

from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()
count = {"flaky": 0, "die": 0}

@app.get("/ok")
async def ok():
    return {"ok": True}

@app.get("/broken")
async def broken():
    return JSONResponse({"error": "always"}, status_code=500)

@app.get("/flaky")
async def flaky():
    count["flaky"] += 1  # one event loop: the count is exact, every tenth response is a 500
    if count["flaky"] % 10 == 0:
        return JSONResponse({"error": "every tenth"}, status_code=500)
    return {"ok": True}

@app.get("/die")
async def die():
    count["die"] += 1
    if count["die"] > 100:
        os._exit(7)
    return {"ok": True}
'''

_LATENCY_KEYS = {"p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99", "p99_9", "p100", "mean"}


def _run_statuses(app_dir: Path, out: Path, paths: tuple[str, ...], *options: str
                  ) -> subprocess.CompletedProcess[str]:
    """``iolab run`` on the statuses app, a SMALL load on each of ``paths``, quiet, saved to ``out``."""
    return run_cli("run", "--app", "statuses:app", "--app-dir", str(app_dir),
                   *(arg for path in paths for arg in ("--path", path)), *SMALL, "-q", *options, "-o", str(out))


def _error_line(proc: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The one ``error: …`` line of a run that exited with ``exit_code`` (and no traceback)."""
    assert proc.returncode == exit_code, proc.stderr
    stderr = proc.stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), stderr
    assert "Traceback" not in stderr, stderr
    assert sum(ln.startswith("error: ") for ln in lines) == 1, stderr
    return lines[-1]


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _assert_nothing_measured(s: dict[str, Any]) -> None:
    """A scenario (or round) without a successful request: every figure null, none 0.0."""
    assert set(s["latency_ms"]) == _LATENCY_KEYS and all(v is None for v in s["latency_ms"].values())
    assert s["rps"] is None and s["rps_per_server_cpu_s"] is None
    assert all(v is None for v in s["per_request"].values())
    assert s["status"] == "failed"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    d.mkdir()
    (d / "statuses.py").write_text(APP)
    return d


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 but not listening: connect() is refused, and nobody else can take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts every connection and never answers a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()
        for c in accepted:
            c.close()


@pytest.mark.usefixtures("nothing_left_behind")
def test_closed_port_measured_nothing_exit_7(closed_port: int, tmp_path: Path) -> None:
    out, page = tmp_path / "c.json", tmp_path / "c.html"
    proc = run_cli("run", "--url", f"http://127.0.0.1:{closed_port}/x", *SMALL, "-o", str(out),
                   "--html", str(page))
    line = _error_line(proc, 7)
    assert line.startswith("error: nothing was measured for /x (round 1): no request succeeded: 200 connection "
                           f"errors to 127.0.0.1:{closed_port} (connect: Connection refused)"), line
    assert line.endswith(f"the results are in {out}")
    # The progress line of a failed round shows no latency figure.
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("round 1/1")]
    assert progress and "FAILED — no request succeeded" in progress[0] and "p50" not in proc.stderr
    doc = _doc(out)
    assert doc["schema"] == "iolab.run/2" and doc["status"] == "failed"
    s = doc["scenarios"][0]
    _assert_nothing_measured(s)
    _assert_nothing_measured(s["rounds"][0])
    r = s["rounds"][0]
    assert r["connect_errors"] == 200 and r["successful"] == 0 and r["error_kind"] == "nothing-measured"
    assert any(w["kind"] == "nothing-measured" for w in doc["warnings"])
    # The reports show a dash, never 0.0, and say why.
    table = proc.stdout[proc.stdout.index("Response time"):proc.stdout.index("cswch/s")]
    assert "/x (failed)" in table and "—" in table and "0.0" not in table
    html = page.read_text()
    assert "not measured" in html and 'data-box="failures"' in html


@pytest.mark.usefixtures("nothing_left_behind")
def test_server_that_never_answers_times_out_exit_7(silent_server: int, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    proc = run_cli("run", "--url", f"http://127.0.0.1:{silent_server}/slow", "--timeout", "0.5", "-n", "20",
                   "-c", "5", "--warmup", "0", "--rounds", "1", "-q", "-o", str(out))
    line = _error_line(proc, 7)
    assert "no request succeeded: every request timed out after 0.5 s (--timeout)" in line, line
    s = _doc(out)["scenarios"][0]
    _assert_nothing_measured(s)
    assert s["rounds"][0]["timeouts"] == 20 and s["requests"] == 0


@pytest.mark.usefixtures("nothing_left_behind")
def test_every_response_500_is_nothing_measured(app_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    proc = _run_statuses(app_dir, out, ("/ok", "/broken"))
    line = _error_line(proc, 7)
    assert line.startswith("error: nothing was measured for /broken (round 1): no request succeeded: every "
                           "response was 500 (200 requests)"), line
    by = {s["name"]: s for s in _doc(out)["scenarios"]}
    _assert_nothing_measured(by["/broken"])
    assert by["/broken"]["non_2xx"] == 200 and by["/broken"]["requests"] == 0
    assert by["/ok"]["status"] == "ok" and by["/ok"]["latency_ms"]["p50"] > 0 and by["/ok"]["rps"] > 0


@pytest.mark.usefixtures("nothing_left_behind")
def test_one_response_in_ten_500_is_degraded_exit_8(app_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.json"
    proc = _run_statuses(app_dir, out, ("/flaky",))
    line = _error_line(proc, 8)
    assert line.startswith("error: too many requests failed for /flaky (round 1): 10.0 % of 200 requests did "
                           "not succeed (the limit is 1 %, --max-error-pct): 20 error responses (500 × 20)"), line
    doc = _doc(out)
    s = doc["scenarios"][0]
    assert s["status"] == "degraded" and s["rounds"][0]["status"] == "degraded"
    assert s["rounds"][0]["error_kind"] == "too-many-errors"
    assert s["successful"] == 180 and s["non_2xx"] == 20
    assert s["latency_ms"]["p50"] > 0 and s["rps"] > 0  # measured: the figures exist, flagged
    assert doc["status"] == "complete"
    warning = next(w for w in doc["warnings"] if w["kind"] == "too-many-errors")
    assert "/flaky" in warning["message"] and "--max-error-pct" in warning["message"]
    # The share is an option: 10 % failed is within a 20 % limit.
    again = _run_statuses(app_dir, tmp_path / "g.json", ("/flaky",), "--max-error-pct", "20")
    assert again.returncode == 0, again.stderr
    assert _doc(tmp_path / "g.json")["scenarios"][0]["status"] == "ok"


@pytest.mark.usefixtures("nothing_left_behind")
def test_server_died_takes_precedence_over_nothing_measured(app_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    proc = _run_statuses(app_dir, out, ("/broken", "/die"))
    line = _error_line(proc, 4)
    assert line.startswith("error: the server died mid-run (exit code 7) during /die"), line
    assert "1 more round(s) not ok: /broken round 1 (nothing measured)" in line and str(out) in line
    by = {s["name"]: s for s in _doc(out)["scenarios"]}
    assert by["/die"]["rounds"][0]["error_kind"] == "server-died"
    assert by["/broken"]["rounds"][0]["error_kind"] == "nothing-measured"
    _assert_nothing_measured(by["/die"])
    _assert_nothing_measured(by["/broken"])


@pytest.mark.usefixtures("nothing_left_behind")
def test_stalled_stdout_sink_is_detected_and_named(tmp_path: Path) -> None:
    # sync-raw writes a line per request plus uvicorn's access line: the 64 KiB pipe fills after a few
    # hundred requests, and a reader at 1 byte a second never frees a page of it again.
    out = tmp_path / "s.json"
    proc = run_cli("run", "--scenario", "sync-raw", "--stdout", "slow", "--sink-rate", "1B/s", "-n", "3000",
                   "-c", "10", "--warmup", "0", "--rounds", "1", "--cpus", "0", "--memory", "0", "-q",
                   "-o", str(out), timeout=180)
    line = _error_line(proc, 7)
    assert line.startswith("error: nothing was measured for /sync-raw (round 1): the server's stdout sink "
                           "(--stdout slow at 1 B/s) made no progress for 10 s: its pipe stayed full"), line
    assert "so the server was blocked writing its log (during /sync-raw); the round was stopped" in line
    s = _doc(out)["scenarios"][0]
    r = s["rounds"][0]
    assert r["error_kind"] == "sink-stalled" and r["status"] == "failed"
    _assert_nothing_measured(s)
    # Stopped long before its 3000 requests could each wait out the 30 s --timeout: the server was
    # killed, so the requests still to come failed at once.
    assert r["requests"] + r["failed"] == 3000 and r["failed"] > 0
    assert r["stdout"]["bytes"] >= 60_000  # what filled the pipe reached the sink in the end


# ------------------------------------------------------------------ the external tools' own outputs

DRIVER_FIXTURES = Path(__file__).parent / "fixtures" / "drivers"


def _read(name: str) -> str:
    path = DRIVER_FIXTURES / name
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _parsed(tool: str, case: str) -> Any:
    from iolab.measure.drivers import ab, hey, wrk

    if tool == "ab":
        return ab.parse(_read(f"ab_{case}.stdout.txt"), _read(f"ab_{case}.stderr.txt"),
                        _read(f"ab_{case}.e.csv") or None)
    if tool == "wrk":
        return wrk.parse(_read(f"wrk_{case}.stdout.txt"), _read(f"wrk_{case}.stderr.txt"))
    return hey.parse(_read(f"hey_{case}.stdout.txt"))


@pytest.mark.parametrize(("tool", "case", "reason"), [
    # Each tool ran and found nothing listening, or nothing answering: it worked, the target did not, so
    # the round measured nothing (exit 7), not a driver failure (exit 6).
    ("ab", "refused", "20 connection errors to 127.0.0.1:18099 (ab saw 10 socket exceptions (poll errors) "
                      "and retried those connections; ab: 20 connections failed on receive (refused or reset"),
    ("ab", "timeout", "ab aborted the run: apr_pollset_poll: The timeout specified has expired"),
    ("wrk", "refused", "wrk: unable to connect to 127.0.0.1:18099: Connection refused"),
    ("hey", "refused", "20 connection errors to 127.0.0.1:18099 (Get \"http://127.0.0.1:18099/\": dial tcp"),
    ("hey", "timeout", "every request timed out after 1 s (--timeout)"),
    ("hey", "404", "every response was 404 (100 requests)"),
    ("ab", "keepalive_404", "every response was non-2xx (300 responses; ab does not say which status)"),
    ("wrk", "404_close", "every response was non-2xx (6,031 responses; wrk does not say which status)"),
])
def test_tools_that_measured_nothing_fail_the_round(tool: str, case: str, reason: str) -> None:
    from iolab.measure.drivers.summary import outcome

    o = outcome(_parsed(tool, case), timeout_s=1.0, url="http://127.0.0.1:18099/")
    assert o.status == "failed" and o.error_kind == "nothing-measured" and o.successful == 0
    assert o.error is not None and o.error.startswith("no request succeeded: " + reason), o.error


def test_a_tool_with_some_failures_is_degraded_or_ok() -> None:
    from iolab.measure.drivers.summary import outcome

    # wrk's timeout figure: 2 connections found waiting past --timeout, 2 responses that did arrive.
    o = outcome(_parsed("wrk", "timeout"), timeout_s=1.0)
    assert o.status == "degraded" and o.successful == 2 and o.error is not None
    assert "2 timeouts (no response within 1 s, --timeout)" in o.error
    ok = outcome(_parsed("ab", "ok"), timeout_s=1.0)
    assert ok.status == "ok" and ok.error is None and ok.successful == 500


def test_a_failed_round_has_null_figures_even_with_a_server_sampled() -> None:
    """record.measured_round on a load where nothing succeeded: counts kept, no figure invented."""
    from iolab.measure.drivers.summary import outcome
    from iolab.measure.probe import Window
    from iolab.measure.record import ServerSide, measured_round
    from iolab.results import StdoutInfo

    load = _parsed("hey", "404")
    window = Window(duration_s=1.0, voluntary=500, involuntary=20, main_voluntary=400, main_involuntary=10,
                    cpu_user_s=0.2, cpu_sys_s=0.1, write_syscalls=300, write_bytes=30_000)
    r = measured_round(1, "2026-01-01T00:00:00Z", load, ServerSide(window, (), ()), StdoutInfo(), {}, {}, (),
                       outcome(load, 1.0))
    assert r.status == "failed" and r.latency_ms.p50 is None and r.latency_hdr == ""
    assert r.rps is None and r.rps_per_server_cpu_s is None and r.per_request.cpu_ms is None
    assert r.requests == 100 and r.non_2xx == 100 and r.server_cpu_s == pytest.approx(0.3)


# ------------------------------------------------------------------------------ the stalled sink


def test_stall_detector_needs_a_full_pipe_and_less_than_a_page_read() -> None:
    from iolab.measure.sinks import PIPE_PAGE, StallDetector

    cap = 65_536
    d = StallDetector(limit_s=10.0)
    # A pipe that is not full: the server can write, whatever the reader does.
    assert not any(d.observe(t, cap - 3 * PIPE_PAGE, cap, 0) for t in range(0, 30))
    # Full, and a page read every 5 s (a slow but draining sink): never stuck.
    d = StallDetector(limit_s=10.0)
    assert not any(d.observe(t, cap - 10, cap, (t // 5) * PIPE_PAGE) for t in range(0, 60))
    # Full, and a byte a second: no page freed in 10 s, stuck at the 10th second.
    d = StallDetector(limit_s=10.0)
    seen = [d.observe(t, cap - 10, cap, t) for t in range(0, 12)]
    assert seen.index(True) == 10


def test_slow_sink_close_does_not_wait_out_its_throttle() -> None:
    """At 1 B/s the reader sleeps between reads; close() wakes it and drains the rest at once (it used to
    read 4 KiB and sleep for 4096 s, so close() gave up after 5 s with the rest unread)."""
    import os
    import time

    from iolab.measure.sinks import SlowSink

    sink = SlowSink(1)
    fd = sink.child_fd()
    writer = os.dup(fd)
    sink.after_spawn()
    os.write(writer, b"x" * 5000 + b"\n")
    time.sleep(0.3)
    os.close(writer)  # the "server" is gone
    counts = sink.close()
    # Everything written was read (a reader still asleep would have left most of it in the pipe).
    assert counts.bytes == 5001 and counts.lines == 1


@pytest.mark.parametrize("tool", ["ab", "hey", "wrk"])
@pytest.mark.usefixtures("nothing_left_behind")
def test_each_load_tool_against_a_closed_port_measured_nothing(tool: str, closed_port: int,
                                                               tmp_path: Path) -> None:
    """The tool runs, finds nothing listening and says so: exit 7 with its own words, not exit 6."""
    import shutil

    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (make test-deps installs it on Debian as root)")
    out = tmp_path / f"{tool}.json"
    timed = ("--duration", "1s") if tool == "wrk" else ()
    proc = run_cli("run", "--driver", tool, *timed, "--url", f"http://127.0.0.1:{closed_port}/x", "-n", "20",
                   "-c", "5", "--warmup", "0", "--rounds", "1", "-q", "-o", str(out))
    line = _error_line(proc, 7)
    assert line.startswith("error: nothing was measured for /x (round 1): no request succeeded: "), line
    assert "refused" in line.lower() or "unable to connect" in line, line
    s = _doc(out)["scenarios"][0]
    _assert_nothing_measured(s)
    assert s["rounds"][0]["connect_errors"] >= 1 and s["rounds"][0]["driver"]["name"] == tool
