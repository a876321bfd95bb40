"""The two servers the driver benchmark loads: nginx (one worker, a tiny static file) and a uvicorn
hello-world, each pinned to one core, started in the foreground in a session of its own and killed with
its whole process group whatever happens (Ctrl-C included)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

NGINX_CONF = """\
worker_processes 1;
worker_cpu_affinity {mask};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 10000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location / {{ }}
    }}
}}
"""

HELLO_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def ensure_nginx() -> str:
    """nginx's path, installing nginx-light with apt-get when missing and we are root."""
    found = find_nginx()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit("nginx is not installed and this is not root on a Debian/Ubuntu machine: install it "
                 "(apt-get install nginx-light) and run again")
    print("installing nginx-light (apt-get) …", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, stdin=subprocess.DEVNULL, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx-light"], env=env,
                   stdin=subprocess.DEVNULL, check=True)
    found = find_nginx()
    if not found:
        sys.exit("apt-get installed nginx-light but no nginx binary was found")
    return found


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode} before it answered")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.05)
    sys.exit(f"{what} did not answer on port {port} within {timeout_s:g} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def nginx(tmp: Path, cpu: int) -> Iterator[str]:
    """Base URL of nginx serving /hello.txt (6 bytes), one worker pinned to ``cpu``."""
    binary = ensure_nginx()
    (tmp / "www").mkdir(parents=True, exist_ok=True)
    # Started as root, nginx's worker runs as nobody: it must be able to reach the file through a
    # mkdtemp directory (mode 0700).
    for path in (tmp.parent, tmp, tmp / "www"):
        os.chmod(path, 0o755)
    (tmp / "www" / "hello.txt").write_text("hello\n")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, mask=format(1 << cpu, "b")))
    # taskset too: the master then shares the core, not the driver's.
    proc = subprocess.Popen(["taskset", "-c", str(cpu), binary, "-c", str(conf), "-p", str(tmp)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "nginx.out", "wb"), start_new_session=True)
    try:
        wait_http(port, "/hello.txt", proc, "nginx")
        yield f"http://127.0.0.1:{port}/hello.txt"
    finally:
        _stop(proc)


@contextlib.contextmanager
def uvicorn_hello(tmp: Path, cpu: int) -> Iterator[str]:
    """Base URL of a uvicorn hello-world (uvloop, httptools, no access log) pinned to ``cpu``."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "hello_app.py").write_text(HELLO_APP)
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), sys.executable, "-m", "uvicorn", "hello_app:app", "--app-dir", str(tmp),
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(tmp / "uvicorn.out", "wb"),
        start_new_session=True)
    try:
        wait_http(port, "/", proc, "uvicorn")
        yield f"http://127.0.0.1:{port}/"
    finally:
        _stop(proc)


def exit_with(main: Callable[[], int]) -> None:
    """A benchmark's entry point: exits with ``main()``'s code, or 130 after Ctrl-C (the servers' finally
    blocks have stopped them by then)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
