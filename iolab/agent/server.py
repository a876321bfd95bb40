"""The agent's HTTP server: ``/metrics`` and the sampling-window API, behind the bearer token.

Routes (every one needs ``Authorization: Bearer <token>``; 401 without it, 403 for a PID not allowed):

- ``GET /metrics``: the Prometheus text format (metrics.py);
- ``POST /v1/windows`` ``{"pid": P, "interval_s": 1.0}`` → 201 ``{"id", "pid", "started_t_s", "reading"}``;
- ``GET /v1/windows/ID`` → ``{"reading"}`` (a fresh reading of the window's process tree);
- ``GET /v1/windows/ID/samples`` → ``{"samples", "error", "cost"}``;
- ``DELETE /v1/windows/ID`` → the same, and the window is closed;
- ``GET /v1/processes/P`` → ``{"pid", "alive", "cmdline", "executable"}``.

Errors are JSON ``{"error": "…"}``: 404 for a process that does not exist (or exited) or an unknown window,
409 when too many windows are open, 400 for a malformed request. Threads, one per connection
(``ThreadingHTTPServer``): a window's reading never waits for a scrape. With TLS the handshake is done in
the connection's thread, not in the accept loop, so a stalled client cannot block the others.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from iolab.agent.access import FORBIDDEN, UNAUTHORIZED, Access
from iolab.agent.metrics import ProcessCollector
from iolab.agent.windows import TooManyWindows, UnknownWindow, Window, Windows
from iolab.errors import AccessDenied, NoSuchProcess, ProbeError
from iolab.measure import facts, procfs
from iolab.measure.probe_wire import counters_to_json, samples_to_json

_WINDOW = re.compile(r"^/v1/windows/([0-9a-f]{16})(/samples)?$")
_PROCESS = re.compile(r"^/v1/processes/(\d{1,10})$")
MAX_BODY = 4096


class AgentState:
    def __init__(self, access: Access) -> None:
        self.access = access
        self._cost_lock = threading.Lock()
        self.cpu_s = 0.0
        self.readings = 0
        self.windows = Windows(on_reading=self._count)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ProcessCollector(access.allowed_pids, self.cost))

    def _count(self, spent_s: float) -> None:
        with self._cost_lock:
            self.cpu_s += spent_s
            self.readings += 1

    def cost(self) -> tuple[float, int]:
        with self._cost_lock:
            return self.cpu_s, self.readings


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"
    server_version = "iolab-agent"
    timeout = 30  # seconds a connection may sit idle (StreamRequestHandler sets it on the socket)

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # here, in the connection's thread (see the module's docstring)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # no access log: the agent's stderr is for its own events

    # --------------------------------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if status == UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="iolab-agent"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode())

    def _error(self, status: int, msg: str) -> None:
        self._json(status, {"error": msg})

    def _authorized(self) -> bool:
        if self.server.state.access.authorized(self.headers.get("Authorization")):
            return True
        self._error(UNAUTHORIZED, "a valid bearer token is required")
        return False

    def _allowed(self, pid: int) -> bool:
        if self.server.state.access.allowed(pid):
            return True
        self._error(FORBIDDEN, f"PID {pid} is not allowed by this agent (--allow-pid, --allow-cmdline)")
        return False

    def _body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._error(400, f"a body of at most {MAX_BODY} bytes is expected")
            return None
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._error(400, "the body is not JSON")
            return None
        if not isinstance(data, dict):
            self._error(400, "the body must be a JSON object")
            return None
        return data

    def _probe_error(self, exc: ProbeError) -> None:
        status = 404 if isinstance(exc, NoSuchProcess) else 500
        if isinstance(exc, AccessDenied):
            exc = AccessDenied(f"the agent cannot read it: {exc}")
        self._error(status, str(exc))

    # ----------------------------------------------------------------------------------------- routes
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.server.state.registry), CONTENT_TYPE_LATEST)
            return
        if m := _PROCESS.match(path):
            pid = int(m[1])
            if self._allowed(pid):
                alive = facts.process_facts(pid) if _exists(pid) else None
                self._json(200, {"pid": pid, "alive": alive is not None, **(alive or {})})
            return
        if m := _WINDOW.match(path):
            window = self._window(m[1])
            if window is None:
                return
            if m[2]:
                self._json(200, _samples(window))
                return
            try:
                self._json(200, {"reading": counters_to_json(window.probe.read())})
            except ProbeError as exc:
                self._probe_error(exc)
            return
        self._error(404, f"no such route: {path}")

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        if self.path != "/v1/windows":
            self._error(404, f"no such route: {self.path}")
            return
        body = self._body()
        if body is None:
            return
        pid, interval = body.get("pid"), body.get("interval_s", 1.0)
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            self._error(400, "pid must be a positive integer")
            return
        if not isinstance(interval, (int, float)) or not 0.05 <= interval <= 60:
            self._error(400, "interval_s must be between 0.05 and 60")
            return
        if not self._allowed(pid):
            return
        try:
            window, reading = self.server.state.windows.open(pid, float(interval))
        except TooManyWindows as exc:
            self._error(409, str(exc))
            return
        except ProbeError as exc:
            self._probe_error(exc)
            return
        self._json(201, {"id": window.id, "pid": pid, "started_t_s": window.probe.started_t_s,
                         "reading": counters_to_json(reading)})

    def do_DELETE(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        m = _WINDOW.match(self.path)
        if not m or m[2]:
            self._error(404, f"no such route: {self.path}")
            return
        try:
            window = self.server.state.windows.close(m[1])
        except UnknownWindow:
            self._error(404, f"no window {m[1]}")
            return
        out = _samples(window)
        cost = out["cost"]
        print(f"iolab agent: window on PID {window.pid} closed: {cost['readings']} readings, "
              f"{cost['cpu_ms_per_reading']} ms CPU each", file=sys.stderr, flush=True)
        self._json(200, out)

    def _window(self, window_id: str) -> Window | None:
        try:
            return self.server.state.windows.get(window_id)
        except UnknownWindow:
            self._error(404, f"no window {window_id} (closed, or idle too long)")
            return None


def _exists(pid: int) -> bool:
    try:
        return not procfs.stat(pid).gone
    except ProbeError:
        return False


def _samples(window: Window) -> dict[str, Any]:
    error = window.probe.error
    return {"samples": samples_to_json(window.probe.samples), "error": str(error) if error else None,
            "cost": window.cost()}


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, state: AgentState, tls: ssl.SSLContext | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Before the bind: a bind that fails calls server_close(), which needs the state.
        self.state = state
        self.tls = tls
        super().__init__((host, port), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{shown}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError)):  # a client that went away, a failed TLS handshake
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.state.windows.close_all()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx
