"""What is measured: an ASGI app that iolab serves, a server command it starts, or a running server.

Each kind answers two questions for the experiment loop: how to get a server up for one scenario (and
down again), and which process tree to probe. A running server is never started, stopped or limited.
"""

from __future__ import annotations

import http.client
import importlib.util
import ipaddress
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psutil

from iolab.errors import AccessDenied, NoSuchProcess, ServerStartError, UsageError
from iolab.measure import procfs
from iolab.measure.server import LOOPBACK, ServerProcess, check_port_free, free_port

SERVERS = ("uvicorn", "hypercorn", "granian")


@dataclass(frozen=True)
class AppTarget:
    """An ASGI app served by iolab, a fresh server per scenario (the demo is one of these)."""

    app: str
    app_dir: str | None = None
    server: str = "uvicorn"
    loop: str = "auto"
    workers: int = 1
    port: int | None = None
    kind: str = "app"

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "app": self.app, "app_dir": self.app_dir, "server": self.server,
                "loop": self.loop, "workers": self.workers, "host": LOOPBACK, "server_measured": True}

    def argv(self, port: int) -> list[str]:
        host_port = ["--host", LOOPBACK, "--port", str(port)]
        if self.server == "uvicorn":
            argv = [sys.executable, "-m", "iolab.measure.server_child", *host_port, "--loop", self.loop]
            if self.workers > 1:
                argv += ["--workers", str(self.workers)]
            if self.app_dir:
                argv += ["--app-dir", self.app_dir]
            return [*argv, self.app]
        if self.server == "hypercorn":
            argv = [sys.executable, "-m", "hypercorn", "--bind", f"{LOOPBACK}:{port}", "--access-logfile", "-",
                    "--workers", str(self.workers)]
            if self.loop == "uvloop":
                argv += ["--worker-class", "uvloop"]
            return [*argv, self.app]
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", LOOPBACK, "--port", str(port),
                "--workers", str(self.workers), "--access-log"]
        if self.loop in ("asyncio", "uvloop"):
            argv += ["--loop", self.loop]
        if self.app_dir:
            argv += ["--working-dir", self.app_dir]
        return [*argv, self.app]

    def check(self) -> None:
        if self.server not in SERVERS:
            raise UsageError(f"unknown --server {self.server!r} (one of: {', '.join(SERVERS)})")
        if self.server != "uvicorn" and importlib.util.find_spec(self.server) is None:
            raise UsageError(f"--server {self.server}: {self.server} is not installed "
                             f"(pip install {self.server}, or pip install 'iolab[servers]')")
        if ":" not in self.app:
            raise UsageError(f"--app {self.app!r}: expected MODULE:ATTRIBUTE, e.g. main:app")


@dataclass(frozen=True)
class CommandTarget:
    """Any server command (split with shlex, no shell), started per scenario, ready when URL answers."""

    command: str
    url: str

    def describe(self) -> dict[str, object]:
        return {"kind": "command", "command": self.command, "url": self.url, "server_measured": True}

    def argv(self) -> list[str]:
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise UsageError(f"--cmd: cannot split {self.command!r} ({exc})") from None
        if not argv:
            raise UsageError("--cmd is empty")
        return argv


@dataclass(frozen=True)
class RunningTarget:
    """A server that is already running: sampled (with --pid) but never started, stopped or limited."""

    url: str
    pid: int | None = None

    def describe(self) -> dict[str, object]:
        return {"kind": "running", "url": self.url, "pid": self.pid, "server_measured": self.pid is not None}


Target = AppTarget | CommandTarget | RunningTarget


def url_for(base_url: str, path: str) -> str:
    parts = urlsplit(base_url)
    if not path:
        return base_url
    path, _, query = path.partition("?")
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def check_url(url: str, allow_remote: bool) -> tuple[str, int]:
    """Host and port of an http:// URL; load goes to loopback unless --allow-remote."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"--url {url!r}: expected http://HOST:PORT/path (https is not supported)")
    host = parts.hostname
    try:
        port = parts.port or 80
    except ValueError:
        raise UsageError(f"--url {url!r}: bad port") from None
    if not allow_remote and not _is_loopback(host):
        raise UsageError(f"--url {url!r} is not on loopback; iolab only loads 127.0.0.1 unless you pass "
                         "--allow-remote (and then measures the server only with --pid on this host)")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def check_pid(pid: int) -> None:
    """The PID exists and its /proc is readable by us (a probe needs /proc/PID/io)."""
    if not psutil.pid_exists(pid):
        raise NoSuchProcess(f"--pid {pid}: no such process")
    try:
        procfs.io(pid)
    except AccessDenied:
        raise AccessDenied(f"--pid {pid}: its /proc is not readable by this user (another user's process?); "
                           "run iolab as that user or as root") from None
    except procfs.Vanished:
        raise NoSuchProcess(f"--pid {pid}: no such process") from None


def wait_http_ready(url: str, server: ServerProcess | None, timeout_s: float,
                    detail: Callable[[], str]) -> float:
    """Poll ``url`` with GET until the server answers anything at all (any status is "up")."""
    parts = urlsplit(url)
    host, port = parts.hostname or LOOPBACK, parts.port or 80
    start = time.monotonic()
    while True:
        if server is not None and (code := server.poll()) is not None:
            raise ServerStartError(f"the server command exited with code {code} before {url} answered"
                                   f"{detail()}")
        conn = http.client.HTTPConnection(host, port, timeout=1.0)
        try:
            conn.request("GET", parts.path or "/")
            conn.getresponse().read()
            return time.monotonic() - start
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        if time.monotonic() - start > timeout_s:
            raise ServerStartError(f"{url} did not answer within {timeout_s:g} s (--ready-timeout){detail()}")
        time.sleep(0.1)


def app_port(target: AppTarget) -> int:
    if target.port is not None:
        check_port_free(target.port)
        return target.port
    return free_port()


def command_port(target: CommandTarget) -> None:
    """A started command binds the URL's port itself: it must be free before we start it."""
    parts = urlsplit(target.url)
    check_port_free(parts.port or 80, parts.hostname or LOOPBACK)

