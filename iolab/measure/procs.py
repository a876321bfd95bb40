"""Every process iolab starts dies with iolab, even when iolab itself is killed with SIGKILL.

Two mechanisms:

- ``die_with_parent()``, a ``preexec_fn`` for ``subprocess``: between fork and exec the child asks the
  kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), then checks that its parent is still the
  process that forked it: had the parent died before the ``prctl``, the signal would never come, so the
  child exits at once instead. The signal survives ``execve`` (``systemd-run --scope`` execs the server in
  the same process) but not ``fork``: the child's own children are not covered. Used for the server, the
  builtin driver's process and micro's interpreter probe.
- ``guard()``, a watchdog process told the process groups to kill when iolab goes: the kernel closes
  iolab's end of the guard's stdin however iolab exits, and at EOF the guard SIGKILLs what is still
  registered. It covers what the first cannot, at no cost to the child: the server's whole group (uvicorn
  or gunicorn workers, a ``--cmd`` shell's children), ``ab``/``wrk``/``hey`` (a ``preexec_fn`` makes
  subprocess fork iolab instead of vfork, and the copied address space costs the child 2–3 ms of CPU, which
  would land in the tool's reported CPU; see drivers/external.py) and ``iolab micro``'s program (forked by
  util-linux ``setsid``; see micro/spawn.py). A process that starts a session or group of its own escapes
  both; the server's cgroup (limits.py) still holds it, and the next run's sweep kills it.

The kernel's trap: the parent-death signal fires when the *thread* that forked the child exits, not the
process. Every child of iolab is started and reaped within one call on one thread (``ServerProcess`` is
stopped in the ``_measure`` that started it, the drivers ``wait4`` in ``run_tool``/``_run_child``, micro
reaps in ``Executor.run``), so the forking thread always outlives its child; iolab's commands start all
of them on the main thread (no thread of iolab's, the probe's sampler or a sink's drain, starts one). A
library caller who runs an experiment on a short-lived thread is safe for the same reason. Do not start a
child with ``die_with_parent`` and hand it to another thread to wait for.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The exit status of a child whose parent was gone before it could ask for the signal; nobody reads it.
ORPHANED_EXIT = 125


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not Linux/glibc: children get no parent-death signal
        return None


_PRCTL = _prctl()


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: SIGKILL this child when the calling thread dies; exit now if it already has.

    Build it in the parent right before ``Popen`` (it captures the parent's PID). The function runs in the
    forked child, so it does as little as possible: one ``prctl`` through a ctypes function resolved
    here, in the parent, and one ``getppid``.
    """
    parent = os.getpid()
    prctl = _PRCTL

    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: no signal will come
            os._exit(ORPHANED_EXIT)

    return setup


class Guard:
    """One watchdog process per iolab process, started on first use; ``watch(pid)`` after each spawn."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        # This file as a script (_guard_main). -I keeps the script's directory off sys.path (else
        # iolab/logging would shadow the stdlib's) and user paths out; -S skips site: ~15 ms to start. Its own session, so a Ctrl-C in the terminal does not stop it
        # before iolab has cleaned up. No parent-death signal: it has to outlive iolab, and ends at EOF.
        self._proc = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), "--guard"],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.close)  # a normal exit reaps it (a SIGKILL leaves that to the kernel: EOF)

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` if iolab dies before ``forget(pgid)``. One pipe write: in iolab
        micro it falls inside the program's measured wall time."""
        self._send(f"+ {pgid}\n")

    def forget(self, pgid: int) -> None:
        if self._proc is not None:
            self._send(f"- {pgid}\n")

    def _send(self, line: str) -> None:
        for _ in range(2):  # someone killed the guard: start another and tell it again, once
            self.start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(line.encode())
                self._proc.stdin.flush()
                return
            except BrokenPipeError:
                self._proc.wait()
                self._proc = None

    def close(self) -> None:
        """Stop the guard (it kills whatever is still registered) and reap it."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        proc.wait()


def alive(pid: int) -> bool:
    """The process exists (maybe as another user's, maybe a zombie): kill(pid, 0), as psutil.pid_exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str | None:
    # Read here, not through procfs.py: this runs in the guard, started as ``python -I -S`` on this file,
    # which cannot import iolab (no site-packages) and should load nothing it does not need.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()[19].decode()


_GUARD = Guard()


def reap(proc: subprocess.Popen[bytes]) -> Any:
    """Wait for ``proc``, set its returncode and return its ``wait4`` rusage: the child's own CPU, every
    thread of it (a ``resource.struct_rusage``)."""
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return rusage


def leave_nothing(proc: subprocess.Popen[bytes]) -> None:
    """After ``proc``'s run, in a ``finally``: unless :func:`reap` got to it (an exception came first,
    KeyboardInterrupt included), SIGKILL its session's group and wait; then close its pipes."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def guard() -> Guard:
    """The process-wide guard."""
    return _GUARD


def _guard_main() -> None:
    """The guard process: "+ PGID" / "- PGID" lines on stdin; at EOF (iolab gone) kill what is left.

    The leader's start time (field 22 of /proc/PID/stat) is noted when its line arrives. A group is killed
    when its leader is alive with that start time, or gone: a group's ID stays reserved while it has
    members, so if the PID now belongs to a process born at another time, the kernel has reused it and no
    member of ours is left.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched: dict[int, str | None] = {}
    for line in sys.stdin:
        op, pgid = line.split()
        if op == "+":
            watched[int(pgid)] = _start_time(int(pgid))
        else:
            watched.pop(int(pgid), None)
    for pgid, born in watched.items():
        if _start_time(pgid) in (None, born):
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__" and sys.argv[1:] == ["--guard"]:
    _guard_main()
