"""SIGKILL of iolab leaves nothing running: the real CLI as a subprocess, killed mid-measurement.

The server, the load driver (builtin, wrk, ab) and ``iolab micro``'s program die with iolab (a
parent-death signal; the guard for the program's and the server's groups); the cgroups of the killed
run are removed by the next one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from iolab.measure import limits, procs
from tests.conftest import REPO


class Launcher:
    """Starts ``python -m iolab ARGS``, remembers its descendants, and kills what a failing test left."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.family: list[psutil.Process] = []

    def __call__(self, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "iolab", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started.append(p)
        return p

    def wait_for(self, what: str, found: Callable[[list[str]], bool], timeout: float = 60) -> None:
        """Until ``found`` holds for the command lines of every process iolab has started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.started:
                with contextlib.suppress(psutil.Error):
                    self.family[:] = psutil.Process(p.pid).children(recursive=True)
            if found(_alive(self.family)):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def kill_and_expect_none_left(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while _alive(self.family) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(self.family), f"still running after iolab was SIGKILLed: {_alive(self.family)}"

    def close(self) -> None:
        for p in self.started:
            p.kill()
            p.wait()
        for child in self.family:
            with contextlib.suppress(psutil.Error):
                child.kill()


@pytest.fixture
def iolab_proc() -> Iterator[Launcher]:
    launcher = Launcher()
    yield launcher
    launcher.close()


def _alive(ps: list[psutil.Process]) -> list[str]:
    out = []
    for p in ps:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(" ".join(p.cmdline()))
    return out


def _has(*parts: str) -> Callable[[list[str]], bool]:
    return lambda cmds: all(any(part in c for c in cmds) for part in parts)


def test_sigkill_mid_run_kills_server_and_driver_and_the_next_run_removes_the_cgroups(
        iolab_proc: Launcher, tmp_path: Path) -> None:
    proc = iolab_proc("run", "--scenario", "noop-async", "-n", "200000", "-c", "10", "--rounds", "1",
                      "--warmup", "0", "-q", "-o", str(tmp_path / "r.json"))
    iolab_proc.wait_for("the server and the builtin driver", _has("iolab.measure.server_child", "builtin_child"))
    cgroups = limits.find_cgroups(owner=proc.pid)
    iolab_proc.kill_and_expect_none_left(proc)
    if os.geteuid() == 0:
        assert cgroups, "a root run on this machine makes cgroups"
        limits.sweep_stale()  # what the next `iolab run` does first (LimitSession.prepare)
        assert not [c for c in cgroups if os.path.exists(c)]


def test_sigkill_kills_the_servers_workers_even_without_a_cgroup(iolab_proc: Launcher, tmp_path: Path) -> None:
    # uvicorn's workers have no parent-death signal and, with no limits, no cgroup: the guard kills them.
    proc = iolab_proc("run", "--scenario", "noop-async", "--workers", "2", "-n", "300000", "-c", "10",
                      "--rounds", "1", "--warmup", "0", "--cpus", "0", "--memory", "0", "-q",
                      "-o", str(tmp_path / "r.json"))
    iolab_proc.wait_for("two workers and the driver", lambda cmds: sum("spawn_main" in c for c in cmds) == 2
                        and any("builtin_child" in c for c in cmds))
    iolab_proc.kill_and_expect_none_left(proc)


@pytest.mark.parametrize("tool", ["wrk", "ab"])
def test_sigkill_mid_run_kills_an_external_driver(iolab_proc: Launcher, tool: str, tmp_path: Path) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (make test-deps)")
    load = ["--duration", "60s"] if tool == "wrk" else ["-n", "5000000"]
    proc = iolab_proc("run", "--scenario", "noop-async", "--driver", tool, *load, "-c", "10", "--rounds", "1",
                      "--warmup", "0", "--cpus", "0", "--memory", "0", "-q", "-o", str(tmp_path / "r.json"))
    iolab_proc.wait_for(f"the server and {tool}", _has("iolab.measure.server_child", f"/{tool} "))
    iolab_proc.kill_and_expect_none_left(proc)


def test_sigkill_of_micro_kills_the_program_and_its_group(iolab_proc: Launcher, tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    # The program's own child is in its group: the guard kills the group, not only the program.
    script.write_text("import subprocess, time\nsubprocess.Popen(['sleep', '61'])\ntime.sleep(60)\n")
    proc = iolab_proc("micro", str(script), "--runs", "1", "--warmup", "0", "--stdout", "pipe",
                      "--mode", "default")
    iolab_proc.wait_for("the program and its child", _has(str(script), "sleep 61"))
    iolab_proc.kill_and_expect_none_left(proc)


def test_a_child_whose_parent_died_before_prctl_exits_at_once() -> None:
    # The check after PR_SET_PDEATHSIG, for real: the preexec function built here expects this process
    # as the parent; run in a grandchild, whose parent is another, it must exit with ORPHANED_EXIT.
    setup = procs.die_with_parent()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        grandchild = os.fork()
        if grandchild == 0:
            setup()
            os._exit(0)
        _, status = os.waitpid(grandchild, 0)
        os.write(w, str(os.waitstatus_to_exitcode(status)).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert int(os.read(r, 16)) == procs.ORPHANED_EXIT
    os.close(r)


def test_the_parent_death_signal_is_set_in_the_child() -> None:
    # /proc does not show it; the child reads it back with PR_GET_PDEATHSIG (2).
    code = ("import ctypes; v = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0); "
            "print(v.value)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=procs.die_with_parent())
    assert int(out.stdout) == signal.SIGKILL
