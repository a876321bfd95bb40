"""The built-in load driver against a real uvicorn server and real sockets; no mocks.

Assertions are about counts and kinds of outcome, never about how fast anything was.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from iolab.errors import DriverError, UsageError
from iolab.measure.drivers.base import LoadResult, LoadSpec
from iolab.measure.drivers.builtin import BuiltinDriver, run_load, spec_from_json, spec_to_json
from tests.conftest import free_port

# Written to a temporary directory and served by uvicorn in its own process.
APP = """
import asyncio
import json

ports: dict[str, set[int]] = {}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    ports.setdefault(path, set()).add(scope["client"][1])  # one client port per TCP connection
    if path == "/ports":
        counts = {p: len(s) for p, s in ports.items() if p != "/ports"}
        await _reply(send, 200, json.dumps(counts).encode())
        ports.clear()
    elif path == "/ok":
        await _reply(send, 200, b"ok")
    elif path == "/missing":
        await _reply(send, 404, b"not found")
    elif path == "/close":
        await _reply(send, 200, b"bye", [(b"connection", b"close")])
    elif path == "/chunked":  # no content-length: uvicorn sends Transfer-Encoding: chunked
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(5):
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        await asyncio.sleep(3)
        await _reply(send, 200, b"late")
    elif path == "/broken":  # promises 1000 bytes, sends 10, fails: uvicorn closes the connection
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        raise RuntimeError("broken on purpose")
    else:
        await _reply(send, 404, b"")


async def _reply(send, status, body, headers=()):
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


@contextmanager
def uvicorn_serving(tmp: Path, module: str, app: str) -> Iterator[int]:
    """uvicorn serving ``app`` (a module's text, written to tmp/<module>.py) on 127.0.0.1: its port."""
    (tmp / f"{module}.py").write_text(app)
    log_path = tmp / "server.log"
    # Port 0 and the port read back from uvicorn's log, not --fd: uvicorn wraps an inherited socket as
    # AF_UNIX, so uvloop leaves Nagle on and keep-alive responses stall 40 ms on delayed ACKs.
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"{module}:app", "--app-dir", str(tmp), "--host", "127.0.0.1",
             "--port", "0", "--log-level", "info", "--no-access-log"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield _wait_for_port(log_path, proc)
    finally:
        # SIGKILL, not SIGTERM: uvicorn would wait for the handlers still sleeping (/slow, /stall).
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a uvicorn server serving APP on an ephemeral port."""
    with uvicorn_serving(tmp_path_factory.mktemp("driver_app"), "driver_app", APP) as port:
        assert _get(port, "/ok") == "ok"
        yield f"http://127.0.0.1:{port}"


def _wait_for_port(log_path: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", log_path.read_bytes())
        if found:
            return int(found.group(1))
        assert proc.poll() is None, log_path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"uvicorn did not start: {log_path.read_text()}")


def _get(port: int, path: str, timeout: float = 5) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _connections(server: str) -> dict[str, int]:
    """Distinct TCP connections the server saw per path since the last call."""
    counts: dict[str, int] = json.loads(_get(int(server.rsplit(":", 1)[1]), "/ports"))
    return counts


def _assert_consistent(r: LoadResult) -> None:
    assert r.driver == "builtin"
    assert r.completed == r.ok_2xx + r.non_2xx == sum(r.status_counts.values())
    assert r.requests == r.completed + r.connect_errors + r.timeouts + r.other_errors
    assert len(r.latencies_us) == r.completed
    assert all(isinstance(v, int) and v > 0 for v in r.latencies_us)
    # The child's own CPU, from wait4. This kernel splits user/sys by sampling 250 Hz ticks, so a short
    # run can show no sys time at all; test_ok_responses_are_counted_and_timed asks for some.
    assert r.cpu_user_s > 0 and r.cpu_sys_s >= 0


def test_ok_responses_are_counted_and_timed(server: str) -> None:
    _connections(server)
    seen: list[tuple[int, int]] = []
    r = run_load(
        LoadSpec(url=f"{server}/ok", requests=300, concurrency=10), progress=lambda d, t: seen.append((d, t))
    )
    _assert_consistent(r)
    assert (r.completed, r.ok_2xx, r.non_2xx, r.status_counts) == (300, 300, 0, {200: 300})
    assert r.failed == 0 and r.errors_sample == ()
    assert r.bytes_received > 300 * len("HTTP/1.1 200 OK\r\n\r\nok")
    assert r.duration_s > 0
    assert r.cpu_sys_s > 0  # 300 connections opened and closed: the most kernel work of any test here
    assert seen and seen[-1] == (300, 300) and seen == sorted(seen)
    # Without keep-alive every request has a connection of its own, as with ab.
    assert _connections(server)["/ok"] > 200  # not == 300: the kernel may reuse a port in TIME_WAIT


def test_keepalive_reuses_connections(server: str) -> None:
    _connections(server)
    r = run_load(LoadSpec(url=f"{server}/ok", requests=300, concurrency=5, keepalive=True))
    _assert_consistent(r)
    assert r.ok_2xx == 300
    assert _connections(server)["/ok"] == 5


def test_keepalive_reconnects_when_the_server_says_close(server: str) -> None:
    _connections(server)
    r = run_load(LoadSpec(url=f"{server}/close", requests=50, concurrency=2, keepalive=True))
    _assert_consistent(r)
    assert r.ok_2xx == 50 and r.failed == 0
    assert _connections(server)["/close"] > 40


def test_non_2xx_counted_apart(server: str) -> None:
    r = run_load(LoadSpec(url=f"{server}/missing", requests=40, concurrency=4))
    _assert_consistent(r)
    assert (r.completed, r.ok_2xx, r.non_2xx, r.status_counts) == (40, 0, 40, {404: 40})


def test_chunked_responses_complete(server: str) -> None:
    r = run_load(LoadSpec(url=f"{server}/chunked", requests=30, concurrency=3, keepalive=True))
    _assert_consistent(r)
    assert r.ok_2xx == 30 and r.failed == 0
    assert r.bytes_received > 30 * 5000


def test_timeouts(server: str) -> None:
    r = run_load(LoadSpec(url=f"{server}/slow", requests=4, concurrency=4, timeout_s=0.3))
    assert (r.requests, r.timeouts, r.completed, r.latencies_us) == (4, 4, 0, ())
    assert any("0.3 s" in e for e in r.errors_sample)


def test_connection_closed_mid_response(server: str) -> None:
    r = run_load(LoadSpec(url=f"{server}/broken", requests=10, concurrency=2))
    assert (r.other_errors, r.completed, r.connect_errors, r.timeouts) == (10, 0, 0, 0)
    assert any("mid-response" in e for e in r.errors_sample)


def test_refused_connections_are_counted_not_raised() -> None:
    r = run_load(LoadSpec(url=f"http://127.0.0.1:{free_port()}/", requests=20, concurrency=5))
    assert (r.requests, r.connect_errors, r.completed) == (20, 20, 0)
    assert len(r.errors_sample) == 1 and "refused" in r.errors_sample[0].lower()


def test_open_loop_keeps_both_latencies(server: str) -> None:
    r = run_load(LoadSpec(url=f"{server}/ok", rate=200, duration_s=0.5, concurrency=4, keepalive=True))
    _assert_consistent(r)
    assert r.requests == r.ok_2xx == 100
    assert len(r.latencies_uncorrected_us) == r.completed
    # Counted from when it was due, a request can only look slower than counted from when it was sent.
    assert all(c >= u for c, u in zip(r.latencies_us, r.latencies_uncorrected_us, strict=True))


class _RawServer:
    """Answers every connection with fixed bytes, then closes: responses uvicorn would never send."""

    concurrent = False  # one connection at a time, in the order they come

    def __init__(self, reply: bytes | tuple[bytes, ...]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        # A tuple is sent a part at a time, 20 ms apart, so the driver reads it in as many chunks.
        self.parts = reply if isinstance(reply, tuple) else (reply,)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.concurrent:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()
            else:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            for i, part in enumerate(self.parts):
                if i:
                    time.sleep(0.02)
                conn.sendall(part)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends when the connection does", "ok"),
        # The same, its head in three reads, and a body that only looks like a header.
        ((b"HTTP/1.0 200 OK\r\nContent-", b"Type: text/plain\r\n", b"\r\nbody\r\nContent-Length: 1\r\n"), "ok"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "other_errors"),  # ends mid-body
        ((b"HTTP/1.1 200 OK\r\n", b"Server: x\r\n"), "other_errors"),  # ends mid-head
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "non_2xx"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "other_errors"),
        (b"", "connect_errors"),  # accepted, then closed before any byte
    ],
)
@pytest.mark.parametrize("keepalive", [False, True], ids=["new-connection", "keep-alive"])
def test_raw_responses(reply: bytes | tuple[bytes, ...], outcome: str, keepalive: bool) -> None:
    # Both ways a connection ends its request: a new connection per request, and keep-alive (where the server
    # closing after each response makes every request open a connection again).
    raw = _RawServer(reply)
    try:
        r = run_load(LoadSpec(url=f"http://127.0.0.1:{raw.port}/", requests=5, concurrency=1, keepalive=keepalive))
    finally:
        raw.close()
    counts = {
        "ok": r.ok_2xx,
        "non_2xx": r.non_2xx,
        "other_errors": r.other_errors,
        "connect_errors": r.connect_errors,
    }
    assert counts[outcome] == 5 and sum(counts.values()) == 5, r.errors_sample


class _CyclingServer(_RawServer):
    """Keeps each connection open and answers its requests with the replies in turn, over and over."""

    concurrent = True  # each connection stays open: answered on a thread of its own

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data, i = b"", 0
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                data = data.split(b"\r\n\r\n", 1)[1]
                conn.sendall(self.parts[i % len(self.parts)])
                i += 1


def test_identical_responses_are_not_parsed_again_but_a_different_one_is() -> None:
    # The keep-alive closed loop skips parsing a response byte-identical to the last one it parsed whole.
    # Replies of the same length that differ in their status alone must still be told apart.
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    bad = b"HTTP/1.1 503 No\r\nContent-Length: 2\r\n\r\nok"
    close = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    raw = _CyclingServer((ok, ok, ok, bad, ok, close))
    try:
        r = run_load(LoadSpec(url=f"http://127.0.0.1:{raw.port}/", requests=600, concurrency=1, keepalive=True))
    finally:
        raw.close()
    assert r.failed == 0, r.errors_sample
    assert r.status_counts == {200: 500, 503: 100}
    assert r.bytes_received == 400 * len(ok) + 100 * len(bad) + 100 * len(close)


def test_a_spec_the_child_rejects_raises_driver_error(server: str) -> None:
    with pytest.raises(DriverError, match="exited with 2"):
        run_load(LoadSpec(url=f"{server}/ok", requests=1, cpus=(100_000,)))  # no such CPU


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("print('hello')", "not a result"),
        ("import sys; sys.exit('boom')", "boom"),
        ("import os; os.kill(os.getpid(), 9)", "signal 9"),
    ],
)
def test_a_broken_child_raises_driver_error(code: str, message: str) -> None:
    with pytest.raises(DriverError, match=message) as info:
        BuiltinDriver(command=[sys.executable, "-c", code]).run(LoadSpec(url="http://127.0.0.1:1/"))
    assert "\n" not in str(info.value)


def test_the_child_is_killed_when_the_caller_fails(server: str) -> None:
    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_load(LoadSpec(url=f"{server}/slow", requests=2, concurrency=2, timeout_s=10), progress=stop)
    drivers = [
        p
        for p in psutil.Process().children(recursive=True)
        if "iolab.measure.drivers.builtin" in " ".join(p.cmdline())
    ]
    assert drivers == []


def test_what_the_driver_cannot_send_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="http://"):
        run_load(LoadSpec(url="https://127.0.0.1:1/"))
    with pytest.raises(UsageError, match="HEAD"):
        run_load(LoadSpec(url="http://127.0.0.1:1/", method="HEAD"))
    with pytest.raises(UsageError):
        LoadSpec(url="http://127.0.0.1:1/", requests=0)
    with pytest.raises(UsageError):
        LoadSpec(url="http://127.0.0.1:1/", rate=100)  # open loop needs a duration too


def test_spec_round_trips_through_json() -> None:
    spec = LoadSpec(
        url="http://127.0.0.1:1/x?y=1",
        method="POST",
        headers=(("X-A", "b"),),
        body=b"\x00\xff",
        keepalive=True,
        cpus=(1,),
        rate=10.0,
        duration_s=2.0,
    )
    assert spec_from_json(json.loads(json.dumps(spec_to_json(spec)))) == spec


def test_the_request_is_sent_as_given() -> None:
    # What the server receives: headers, body, and Connection: close without keep-alive.
    received: list[bytes] = []
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            data = b""
            while not data.endswith(b"\r\n\r\nhello"):
                data += conn.recv(4096)
            received.append(data)
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    try:
        r = run_load(
            LoadSpec(
                url=f"http://127.0.0.1:{port}/p?q=1",
                requests=1,
                concurrency=1,
                method="POST",
                headers=(("X-Test", "yes"),),
                body=b"hello",
            )
        )
    finally:
        thread.join(5)
        sock.close()
    assert r.status_counts == {201: 1}
    head = received[0].split(b"\r\n\r\n")[0].decode().lower().split("\r\n")
    assert head[0] == "post /p?q=1 http/1.1"
    assert {"x-test: yes", "content-length: 5", "connection: close", f"host: 127.0.0.1:{port}"} <= set(head)
