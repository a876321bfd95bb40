"""What ab, wrk and hey have in common: find the binary, run it pinned, in its own session, and reap it.

Each tool's module builds its command line from a ``LoadSpec`` and parses what the tool printed; this one
runs the command: pinned with ``taskset`` (the tool then starts on the given CPUs, every thread of it;
setting the affinity after the start would miss the threads a Go program has already made), in a session
of its own (a Ctrl-C in the terminal reaches iolab, which then kills the tool's whole group; iolab's
guard kills it if iolab is killed, procs.py), its CPU read from ``wait4``. Progress is the time elapsed,
as none of the three says how far it got until it ends (ab prints "Completed N requests" every 10 %,
which is used where it comes).
"""

from __future__ import annotations

import math
import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from iolab.errors import DriverError, UsageError
from iolab.measure import procs
from iolab.measure.drivers.base import LoadSpec, ProgressCallback

# The Debian/Ubuntu package that has each tool.
PACKAGES = {"ab": "apache2-utils", "wrk": "wrk", "hey": "hey"}
_READ_SIZE = 65536
_OUTPUT_LIMIT = 64 * 1024 * 1024  # a tool that prints more than this is not printing a summary
# Time a tool may run past its planned duration (start-up, the last timeouts, writing its report) before
# it is taken for hung and killed.
_GRACE_S = 30.0


def find_binary(name: str) -> str:
    """The tool's path, or ``DriverError`` saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise DriverError(f"{name} not found — install it (Debian/Ubuntu: apt-get install {PACKAGES[name]})")
    return path


def check_url(tool: str, spec: LoadSpec) -> None:
    parts = urlsplit(spec.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{tool} needs an http:// or https:// URL (got {spec.url!r})")


def refuse_open_loop(tool: str, spec: LoadSpec, why: str) -> None:
    if spec.open_loop:
        raise UsageError(
            f"--rate (open loop) is not available with {tool}: {why}. A closed loop hides server stalls "
            "(coordinated omission); use --driver builtin for an open loop.")


def duration_arg(seconds: float) -> str:
    """A duration for wrk's -d and hey's -z: whole seconds where exact, else milliseconds."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def whole_seconds(seconds: float) -> int:
    """For tools whose timeout is a whole number of seconds: round up, never to 0 (= no timeout)."""
    return max(1, math.ceil(seconds - 1e-9))


def body_args(flag: str, tmp: str, body: bytes | None) -> list[str]:
    """``[flag, path]`` of a file in ``tmp`` holding the request body; none without a body."""
    if body is None:
        return []
    path = os.path.join(tmp, "body")
    with open(path, "wb") as fh:
        fh.write(body)
    return [flag, path]


@dataclass(frozen=True)
class Finished:
    """What the tool left: its output (stdout then stderr), exit code and CPU."""

    stdout: str
    stderr: str
    returncode: int
    cpu_user_s: float
    cpu_sys_s: float
    wall_s: float
    command: tuple[str, ...]  # as run, taskset included

    @property
    def output(self) -> str:
        return self.stdout + (("\n" + self.stderr) if self.stderr.strip() else "")


_AB_PROGRESS = re.compile(r"Completed (\d+) requests")


def run_tool(argv: Sequence[str], spec: LoadSpec, progress: ProgressCallback | None,
             expected_s: float | None) -> Finished:
    """Runs ``argv`` pinned to ``spec.cpus``; kills its process group on any exception (Ctrl-C included).

    ``expected_s``: how long the run is planned to take (a duration run), for progress and for a guard
    that kills a tool hung ``_GRACE_S`` past it. None for a run of N requests (bounded by the timeouts).
    """
    command = list(argv)
    if spec.cpus:
        taskset = shutil.which("taskset")
        if taskset is None:
            raise DriverError("taskset not found (util-linux): needed to pin the load tool to its CPUs")
        command = [taskset, "-c", ",".join(str(c) for c in spec.cpus), *command]
    # The guard, not a preexec_fn with a parent-death signal: a preexec_fn makes subprocess fork iolab
    # instead of vfork, and the child then pays for the copied address space: +2.2 ms of CPU for
    # `taskset … /bin/true` from a 26 MB iolab, +3.4 ms from a 98 MB one (50-run means, this machine).
    # That lands in the tool's wait4 CPU, which is its reported figure (start-up included).
    guard = procs.guard()
    guard.start()
    started = time.monotonic()
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise DriverError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    guard.watch(proc.pid)
    try:
        out, err = _collect(proc, spec, progress, started, expected_s)
        rusage = procs.reap(proc)  # the tool's own CPU, every thread of it
    finally:
        procs.leave_nothing(proc)
        guard.forget(proc.pid)
    return Finished(out.decode(errors="replace"), err.decode(errors="replace"), proc.returncode,
                    rusage.ru_utime, rusage.ru_stime, time.monotonic() - started, tuple(command))


def _collect(proc: subprocess.Popen[bytes], spec: LoadSpec, progress: ProgressCallback | None,
             started: float, expected_s: float | None) -> tuple[bytes, bytes]:
    """Reads both pipes to EOF on this thread (so Ctrl-C lands here), reporting progress as it goes."""
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray()}
    report = _progress_reporter(spec, progress, started, expected_s)
    deadline = started + expected_s + spec.timeout_s + _GRACE_S if expected_s is not None else None
    with selectors.DefaultSelector() as sel:
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select(timeout=0.1):
                chunk = os.read(key.fd, _READ_SIZE)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buffers[key.fd] += chunk
                if len(buffers[key.fd]) > _OUTPUT_LIMIT:
                    raise DriverError(f"the load tool printed more than {_OUTPUT_LIMIT >> 20} MiB; stopped it")
            report(bytes(buffers[err_fd][-200:]))
            if deadline is not None and time.monotonic() > deadline:
                raise DriverError(f"the load tool was still running {_GRACE_S:g} s after its planned end; "
                                  "killed it")
    return bytes(buffers[out_fd]), bytes(buffers[err_fd])


def _progress_reporter(spec: LoadSpec, progress: ProgressCallback | None, started: float,
                       expected_s: float | None) -> Callable[[bytes], None]:
    last = [-1]

    def report(stderr_tail: bytes) -> None:
        if progress is None:
            return
        if expected_s is not None:  # a duration run: time is the only measure of progress
            total = int(expected_s * 1000)
            done = min(total, int((time.monotonic() - started) * 1000))
        else:  # ab's "Completed N requests" lines, if any
            found = _AB_PROGRESS.findall(stderr_tail.decode(errors="replace"))
            if not found:
                return
            done, total = int(found[-1]), spec.requests
        if done != last[0]:
            last[0] = done
            progress(done, total)

    return report
