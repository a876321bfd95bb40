"""measure/procfs.py: real /proc of real processes, fake /proc bytes for what a real process cannot stage
(kernels without a line, a thread gone between listing and reading), and a probe that fails mid-window
surfacing as a warning in the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iolab.errors import AccessDenied, IolabError, NoSuchProcess, ProbeError
from iolab.measure import procfs
from iolab.measure.procfs import Vanished
from tests.conftest import run_cli

# Three named threads and a non-blocking pipe on fd 5; writes 100 times on request.
CHILD = r"""
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
os.dup2(r, 5)
os.set_blocking(5, False)
stop = threading.Event()
def named(name):
    libc.prctl(15, name.encode(), 0, 0, 0)
    stop.wait()
threads = [threading.Thread(target=named, args=(f"w) (x {i}",)) for i in range(3)]
for t in threads:
    t.start()
print("up", flush=True)
for line in sys.stdin:
    if line.strip() == "write":
        for _ in range(100):
            os.write(w, b"x")
            os.read(r, 1)
        print("wrote", flush=True)
stop.set()
"""


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen([sys.executable, "-c", CHILD, "arg one"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None and p.stdout.readline().strip() == "up"
        try:
            yield p
        finally:
            p.kill()


# ------------------------------------------------------------------------------------------ real /proc


def test_a_live_process_and_its_threads(child: subprocess.Popen[str]) -> None:
    pid = child.pid
    st = procfs.stat(pid)
    assert st.ppid == os.getpid() and not st.gone and st.start_ticks > 0
    tids = procfs.task_ids(pid)
    assert pid in tids and len(tids) >= 4
    names = {procfs.stat(pid, tid).name for tid in tids}
    assert {"w) (x 0", "w) (x 1", "w) (x 2"} <= names  # comm with a ')' and spaces, taken from stat
    main = procfs.ctx_switches(pid, pid)
    assert main.voluntary >= 0 and main.involuntary >= 0
    assert procfs.rss_bytes(pid) > 1 << 20
    assert procfs.cmdline(pid) == [sys.executable, "-c", CHILD, "arg one"]
    assert os.path.realpath(procfs.exe(pid)) == os.path.realpath(sys.executable)
    assert procfs.fd_flags(pid, 5) & os.O_NONBLOCK and not procfs.fd_flags(pid, 0) & os.O_NONBLOCK
    assert any(tid for tid in procfs.task_ids(os.getpid())
               if pid in procfs.children(os.getpid(), tid))
    assert pid in procfs.pids()


def test_io_counts_the_writes(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None and child.stdout is not None
    before = procfs.io(child.pid)
    child.stdin.write("write\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "wrote"
    after = procfs.io(child.pid)
    assert after.write_syscalls - before.write_syscalls >= 100  # plus the "wrote" line
    assert after.wchar_bytes - before.wchar_bytes >= 100
    assert after.read_syscalls is not None and before.read_syscalls is not None
    assert after.read_syscalls - before.read_syscalls >= 100


def test_the_machine_and_our_own_cgroup_and_mounts() -> None:
    cpu = procfs.cpu_times()
    assert cpu.busy_ticks > 0 and cpu.idle_ticks > 0
    assert procfs.cgroups() and all(line.path.startswith("/") for line in procfs.cgroups())
    assert any(m.point == "/proc" and m.fstype == "proc" for m in procfs.mounts())
    assert procfs.has_schedstat() == os.path.exists("/proc/self/schedstat")


def test_a_zombie_is_gone_and_a_reaped_process_vanished() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: /proc still has it
    assert procfs.stat(p.pid).gone
    assert procfs.io(p.pid).write_syscalls >= 0  # a zombie's counters are final and readable
    assert procfs.cmdline(p.pid) == []
    p.wait()
    for read in (procfs.stat, procfs.io, procfs.task_ids, procfs.rss_bytes, procfs.exe):
        with pytest.raises(Vanished):
            read(p.pid)
    assert issubclass(Vanished, NoSuchProcess) and issubclass(Vanished, IolabError)


def test_another_users_process_is_access_denied(child: subprocess.Popen[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to read as another user")
    os.seteuid(65534)  # /proc/PID/io is 0400 and ptrace-checked
    try:
        with pytest.raises(AccessDenied, match="/io"):
            procfs.io(child.pid)
        with pytest.raises(AccessDenied, match="/exe"):
            procfs.exe(child.pid)
    finally:
        os.seteuid(0)


# ------------------------------------------------------------------------------------------ fake /proc

STAT = "100 (a) (b c) S 1 100 100 0 -1 4194560 0 0 0 0 250 50 0 0 20 0 3 0 1234 1000000 250" + " 0" * 30


def _fake(tmp_path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        f = tmp_path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return str(tmp_path)


def test_fake_stat_fields_and_truncated_lines(tmp_path: Path) -> None:
    root = _fake(tmp_path, {"100/stat": STAT + "\n", "101/stat": "101 (x) S 1 101\n"})
    st = procfs.stat(100, root=root)
    assert (st.name, st.state, st.ppid, st.session, st.utime_ticks, st.stime_ticks, st.start_ticks) == (
        "a) (b c", "S", 1, 100, 250, 50, 1234)
    with pytest.raises(ProbeError, match="101/stat: unexpected content"):
        procfs.stat(101, root=root)


def test_fake_kernels_without_some_lines(tmp_path: Path) -> None:
    root = _fake(tmp_path, {
        "100/task/100/status": "Name:\tsrv\nState:\tS\n",  # before 2.6.23: no ctxt switch lines
        "100/io": "wchar: 70\nsyscw: 7\n",  # only the two lines the probe needs
        "101/io": "rchar: 1\nsyscr: 1\n",
        "stat": "cpu  10 20 30 40\ncpu0 10 20 30 40\n",  # an old kernel: no iowait … steal
        "cpuinfo": "processor\t: 0\nCPU implementer\t: 0x41\n",  # ARM names no "model name"
        "100/fdinfo/1": "pos:\t0\n",
        "100/statm": "1000\n",
    })
    with pytest.raises(ProbeError, match="older than 2.6.23"):
        procfs.ctx_switches(100, 100, root)
    assert procfs.io(100, root) == procfs.IoCounters(write_syscalls=7, wchar_bytes=70, read_syscalls=None,
                                                     rchar_bytes=None)
    with pytest.raises(ProbeError, match="no syscw/wchar"):
        procfs.io(101, root)
    cpu = procfs.cpu_times(root)
    assert (cpu.busy_ticks, cpu.idle_ticks, cpu.steal_ticks) == (60, 40, 0)
    assert procfs.cpu_model(root) is None
    with pytest.raises(ProbeError, match="no flags line"):
        procfs.fd_flags(100, 1, root)
    with pytest.raises(ProbeError, match="statm"):
        procfs.rss_bytes(100, root)
    assert not procfs.has_schedstat(root) and not procfs.has_children_files(100, root)


def test_fake_thread_vanished_between_listing_and_reading(tmp_path: Path) -> None:
    root = _fake(tmp_path, {
        "100/task/100/stat": STAT,
        "100/task/101/status": "x",  # its stat went first
        "100/task/102/stat": "",  # opened, then the thread exited: an empty read
        "100/task/100/children": "",  # no children: empty is an answer here
    })
    (tmp_path / "100" / "task" / "103").mkdir()  # listed, nothing left to read
    assert sorted(procfs.task_ids(100, root)) == [100, 101, 102, 103]
    for tid in (101, 102, 103):
        with pytest.raises(Vanished):
            procfs.stat(100, tid, root)
    assert procfs.children(100, 100, root) == []
    with pytest.raises(Vanished):
        procfs.children(100, 103, root)
    with pytest.raises(Vanished):
        procfs.task_ids(999, root)


def test_fake_cgroups_and_mounts_with_and_without_mountinfo(tmp_path: Path) -> None:
    root = _fake(tmp_path, {
        "self/cgroup": "12:cpu,cpuacct:/user.slice\n0::/user.slice/session-1.scope\n",
        "self/mountinfo": "30 25 0:26 / /sys/fs/cgroup/my\\040dir rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        "mounts": "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu,cpuacct 0 0\n",
    })
    assert procfs.cgroups(root=root) == [
        procfs.CgroupLine(frozenset({"cpu", "cpuacct"}), "/user.slice"),
        procfs.CgroupLine(frozenset(), "/user.slice/session-1.scope"),
    ]
    (m,) = procfs.mounts(root)
    assert (m.point, m.root, m.fstype) == ("/sys/fs/cgroup/my dir", "/", "cgroup2")
    assert {"rw", "nosuid", "nsdelegate"} <= m.options
    os.unlink(tmp_path / "self" / "mountinfo")  # an odd chroot: /proc/mounts only
    (m,) = procfs.mounts(root)
    assert (m.point, m.root, m.fstype, "cpu" in m.options) == ("/sys/fs/cgroup/cpu", "/", "cgroup", True)
    os.unlink(tmp_path / "mounts")
    assert procfs.mounts(root) == []


# ------------------------------------------------------------------------------ a probe that fails


# Answers 50 requests, then the whole process exits (os._exit from the event loop).
DIES = (
    "import os\n"
    "from fastapi import FastAPI\n"
    "app, answered = FastAPI(), []\n"
    "@app.get('/die')\n"
    "async def die():\n"
    "    answered.append(1)\n"
    "    return os._exit(7) if len(answered) > 50 else {'ok': True}\n"
)


@pytest.mark.usefixtures("nothing_left_behind")
def test_a_probe_that_fails_mid_window_is_a_warning_in_the_results(tmp_path: Path) -> None:
    """The server exits after 50 requests; the timed load goes on, so the sampler meets its zombie."""
    (tmp_path / "dies.py").write_text(DIES)
    out = tmp_path / "d.json"
    proc = run_cli("run", "--app", "dies:app", "--app-dir", str(tmp_path), "--path", "/die", "--duration", "1.5",
                   "-c", "2", "--warmup", "0", "--rounds", "1", "--cpus", "0", "--memory", "0", "--interval",
                   "0.1", "-q", "-o", str(out))
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [w for w in json.loads(out.read_text())["warnings"] if w["kind"] == "probe-failed"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["message"].startswith("/die, round 1: sampling the server's /proc stopped early")
    assert "NoSuchProcess" in warnings[0]["message"]
