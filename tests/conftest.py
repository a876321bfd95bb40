"""Shared fixtures: the real CLI as a subprocess, and a check that nothing is left behind."""

from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

# Hypothesis fails an example that takes over 200 ms, and a test whose data takes too long to generate:
# wall-clock limits a slower, shared machine crosses. Our property tests assert results, never speed.
settings.register_profile("iolab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("iolab")


# ``python -m iolab`` with SIGINT's default restored first, for tests that press Ctrl-C: a job started in
# the background by a non-interactive shell (``make test &`` in a script, some CI runners) inherits SIGINT
# ignored, and Python then never installs its KeyboardInterrupt handler, so the Ctrl-C would be lost.
IOLAB_WITH_CTRL_C = (sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                     "os.execv(sys.executable, [sys.executable, '-m', 'iolab', *sys.argv[1:]])")


def iolab_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 240, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m iolab …`` exactly as a user would, with no standard input.

    ``iolab run`` gets ``--no-explain`` first (a test that wants the explain pass passes ``--explain``
    after it, and click keeps the last), so the suite does not pay for a traced round per scenario.
    """
    if args[:1] == ("run",):
        args = ("run", "--no-explain", *args[1:])
    return subprocess.run(
        [sys.executable, "-m", "iolab", *args], cwd=cwd or REPO, env=env or iolab_env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe's (read end, write end), both closed after the test unless the test closed them."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def running_http_server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``python -m http.server`` serving an index.html on 127.0.0.1, started apart from iolab: (port, pid)."""
    port = free_port()
    (tmp_path / "index.html").write_text("hello")
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                             str(tmp_path), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20  # a guard, not a timing
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def iolab_cgroups() -> list[str]:
    # v1 memory cgroups are created under our own (nested) memory cgroup: find_cgroups walks them all.
    from iolab.measure.limits import find_cgroups

    return sorted(find_cgroups())


def processes_matching(text: str) -> list[str]:
    out = []
    for d in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            cmd = Path(d).read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and str(os.getpid()) not in d:
            out.append(cmd)
    return out


def _orphaned_servers() -> list[str]:
    """iolab servers whose iolab parent is gone (other sessions' live runs are not ours to judge)."""
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline", "ppid"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "-m iolab.measure.server_child" not in cmd:
            continue
        try:
            parent = " ".join(psutil.Process(p.info["ppid"]).cmdline())
        except psutil.Error:
            parent = ""
        if "iolab" not in parent:
            out.append(cmd)
    return out


def _leaked_cgroups() -> list[str]:
    """iolab cgroups whose owner (the PID in the name) is dead: nobody will remove them."""
    import re

    import psutil

    out = []
    for path in iolab_cgroups():
        m = re.search(r"iolab-(\d+)-", path)
        if m and not psutil.pid_exists(int(m.group(1))):
            out.append(path)
    return out


@pytest.fixture
def nothing_left_behind() -> Iterator[None]:
    """Asserts, after the test, that no cgroup and no server of a finished iolab run is left."""
    before = set(_leaked_cgroups())
    yield
    left = [c for c in _leaked_cgroups() if c not in before]
    servers = _orphaned_servers()
    assert not left, f"cgroups left behind: {left}"
    assert not servers, f"servers left behind: {servers}"
