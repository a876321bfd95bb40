"""Start one program, wait for it with a timeout, and read what the kernel counted for it.

Two kernel facts shape this module (both checked on Linux 6.x, see docs/micro.md):

* ``/proc/PID/io`` of a zombie is still readable and final: after ``waitid(WEXITED | WNOWAIT)`` the
  process has exited but is not reaped, and ``syscw``/``wchar`` include its threads and the children it
  reaped. ``wait4`` then reaps it and returns its rusage (threads and reaped children included).
* ``ru_maxrss`` of a child includes the memory of the process it was forked from: at ``execve`` the
  kernel folds the old address space's high-water mark into the new program's peak. A program spawned
  straight from iolab (tens of MB of Python) would report iolab's RSS as its own. So the program is
  forked by util-linux ``setsid`` (about 1 MB) instead: we spawn ``setsid PROG…`` as a process-group
  leader, which makes ``setsid`` fork, start a new session in the child and exec the program, while
  the parent exits at once. iolab is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so the program is
  re-parented to iolab, which can then wait for it itself. Without ``setsid`` we spawn directly and warn.

The program cannot be given a parent-death signal (``PR_SET_PDEATHSIG`` is cleared by ``setsid``'s fork,
and a wrapper exec'd in the program to set it, such as ``setpriv --pdeathsig``, measured 0.8 ms of CPU
here, more than ``/bin/true`` itself, and would be counted as the program's). Its process group is given
to iolab's guard instead (procs.py), which kills it if iolab dies, SIGKILL included.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from iolab.errors import ProbeError
from iolab.measure import procfs, procs

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
FIND_CHILD_ATTEMPTS = 200
FIND_CHILD_SLEEP_S = 0.001
STRAY_ATTEMPTS = 500  # x 10 ms: a process stuck in the kernel (D state) is given up on after 5 s

FileActions = list[tuple[int, int, int]]


@dataclass(frozen=True)
class Exit:
    """What the kernel said about one finished program."""

    pid: int
    timed_out: bool
    exit_code: int | None  # negative: killed by that signal (as subprocess reports it)
    wall_ns: int
    cpu_user_s: float
    cpu_sys_s: float
    maxrss_kib: int
    nvcsw: int
    nivcsw: int
    io: procfs.IoCounters | None


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def read_proc_io(pid: int) -> procfs.IoCounters | None:
    """``/proc/PID/io``, or None when the kernel does not let us read it."""
    try:
        return procfs.io(pid)
    except ProbeError:
        return None


def _is_our_session_leader(pid: int, me: int) -> bool:
    try:
        st = procfs.stat(pid)
    except ProbeError:
        return False
    # The program is the leader of the session setsid made, and our child.
    return st.ppid == me and st.session == pid


def _parent(pid: int) -> int | None:
    try:
        return procfs.stat(pid).ppid
    except ProbeError:
        return None


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Spawner:
    """Starts programs so that their rusage is their own and iolab can reap them."""

    def __init__(self) -> None:
        self.me = os.getpid()
        setsid = shutil.which("setsid")
        self.setsid = setsid if setsid and _become_subreaper() else None
        self.method = "setsid-fork" if self.setsid else "direct"
        # Started now, before anything is measured: its start-up is not other processes' load in a window.
        procs.guard().start()

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], actions: FileActions) -> int:
        """Start ``argv`` (argv[0] an absolute path) as the leader of a new session; return its pid.

        The program's group is registered with the guard at once (abandon() forgets it)."""
        if self.setsid is None:
            pid = os.posix_spawn(argv[0], list(argv), env, file_actions=actions, setsid=True)
        else:
            helper = os.posix_spawn(self.setsid, ["setsid", *argv], env, file_actions=actions, setpgroup=0)
            _, status, _ = os.wait4(helper, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise OSError(f"setsid could not start {argv[0]} (status {status})")
            pid = self._find_program(helper)
        procs.guard().watch(pid)
        return pid

    def _find_program(self, helper: int) -> int:
        # setsid's parent has exited, so the program is now our child (we are its subreaper). If it has
        # exited too it waits as our zombie; else find it in /proc, usually at the next pid.
        guard = procs.guard().pid  # a child and a session leader of ours too, never the program
        for _ in range(FIND_CHILD_ATTEMPTS):
            with contextlib.suppress(ChildProcessError):
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if info is not None and info.si_pid != guard:
                    return info.si_pid
            for pid in range(helper + 1, helper + 9):
                if pid != guard and _is_our_session_leader(pid, self.me):
                    return pid
            for pid in procfs.pids():
                if pid != guard and _is_our_session_leader(pid, self.me):
                    return pid
            time.sleep(FIND_CHILD_SLEEP_S)
        raise OSError("setsid started the program but it cannot be found in /proc")


def _wait_exit(pid: int, deadline_ns: int) -> bool:
    """Block until ``pid`` exits (True) or the deadline passes (False), without reaping it."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    if pidfd >= 0:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while True:
                left_ms = (deadline_ns - time.perf_counter_ns()) // 1_000_000
                if left_ms <= 0:
                    return False
                if poller.poll(min(left_ms, 1 << 30)):
                    return True
        finally:
            os.close(pidfd)
    # Kernels before 5.3 have no pidfd: poll the process state (costs iolab a little CPU).
    while time.perf_counter_ns() < deadline_ns:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.001)
    return False


def reap(pid: int, t0_ns: int, deadline_ns: int) -> Exit:
    """Wait for the program, kill its process group on timeout, read /proc/PID/io, then reap it."""
    exited = _wait_exit(pid, deadline_ns)
    t1 = time.perf_counter_ns()
    if not exited:
        kill_group(pid)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    io = read_proc_io(pid)  # the zombie's counters are final and still readable
    _, status, ru = os.wait4(pid, 0)
    return Exit(
        pid=pid,
        timed_out=not exited,
        exit_code=None if not exited else os.waitstatus_to_exitcode(status),
        wall_ns=t1 - t0_ns,
        cpu_user_s=ru.ru_utime,
        cpu_sys_s=ru.ru_stime,
        maxrss_kib=ru.ru_maxrss,
        nvcsw=ru.ru_nvcsw,
        nivcsw=ru.ru_nivcsw,
        io=io,
    )


def abandon(pid: int) -> None:
    """Kill the program's process group and reap it (Ctrl-C, or an error of ours mid-run)."""
    kill_group(pid)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    procs.guard().forget(pid)


def _children() -> set[int]:
    """Our live children: the kernel's per-thread lists where it has them (cheap), else a /proc scan."""
    me = os.getpid()
    try:
        return {c for tid in procfs.task_ids(me) for c in procfs.children(me, tid)}
    except (ProbeError, ValueError):  # a kernel without CONFIG_PROC_CHILDREN, or a thread that just exited
        pass
    return {pid for pid in procfs.pids() if _parent(pid) == me}


def reap_strays() -> None:
    """Kill and reap anything left that was re-parented to us (a program's children that escaped its
    process group with their own setsid), so no process outlives the measurement."""
    guard = procs.guard().pid  # our child too, and it has to stay
    for _ in range(STRAY_ATTEMPTS):
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return  # no children at all
        if info is not None:
            continue
        live = _children() - {guard}
        if not live:
            return
        for pid in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
