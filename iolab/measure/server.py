"""Start a target server in its own process group, wait until it accepts connections, stop it, reap it.

The server is always a child process (pyperf's rule: measure in a separate process). Its rusage comes
from ``wait4()``, which covers every thread it ever had, exited ones included.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iolab.errors import ServerStartError, UsageError
from iolab.measure import procs
from iolab.measure.sinks import Sink

LOOPBACK = "127.0.0.1"
_STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class ExitInfo:
    returncode: int | None
    rusage: dict[str, float]


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, host: str = LOOPBACK) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise UsageError(f"port {port} on {host} cannot be bound ({exc.strerror}); "
                                 "choose another with --port or omit it") from None
            raise


def rusage_dict(ru: object) -> dict[str, float]:
    """wait4's rusage with units in the names.

    ru_maxrss is left out on purpose: at exec the kernel folds the old mm's high-water mark (a copy of
    iolab's own memory, from the fork) into the child's, so a server smaller than iolab would report
    iolab's RSS. The probe's sampled RSS is recorded instead.
    """
    return {
        "cpu_user_s": float(getattr(ru, "ru_utime", 0.0)),
        "cpu_sys_s": float(getattr(ru, "ru_stime", 0.0)),
        "voluntary_ctx_switches": float(getattr(ru, "ru_nvcsw", 0)),
        "involuntary_ctx_switches": float(getattr(ru, "ru_nivcsw", 0)),
        "block_output_ops": float(getattr(ru, "ru_oublock", 0)),
    }


class ServerProcess:
    """One server process. ``stop()`` is idempotent and always reaps it."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], sink: Sink, cwd: str | None = None,
                 attach: Callable[[int], None] | None = None) -> None:
        self.argv = list(argv)
        self.sink = sink
        fd = sink.child_fd()
        procs.guard().start()  # now, not after the spawn: attach() below should follow the spawn at once
        try:
            # Dies with us even on SIGKILL (procs.py); its workers, in its group, through the guard.
            self._popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env, cwd=cwd,
                start_new_session=True, close_fds=True, preexec_fn=procs.die_with_parent(),
            )
        except OSError as exc:
            sink.close()
            raise ServerStartError(f"cannot start {self.argv[0]!r}: {exc.strerror or exc}") from None
        self.pid = self._popen.pid
        self.pgid = self.pid  # start_new_session: the server leads its own group
        procs.guard().watch(self.pgid)
        sink.after_spawn()
        self._exit: ExitInfo | None = None
        if attach is not None:
            try:
                attach(self.pid)
            except BaseException:
                self.stop()
                raise

    def poll(self) -> int | None:
        if self._exit is not None:
            return self._exit.returncode
        pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._reaped(status, ru)
        return self._exit.returncode if self._exit else None

    def alive(self) -> bool:
        return self.poll() is None

    def _reaped(self, status: int, ru: object) -> None:
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code  # tell Popen it is reaped, so it never waits on a reused PID
        self._exit = ExitInfo(code, rusage_dict(ru))

    def wait_ready(self, host: str, port: int, timeout_s: float,
                   failure_detail: Callable[[], str] | None = None) -> float:
        """Poll until the port accepts a TCP connection; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            code = self.poll()
            if code is not None:
                detail = failure_detail() if failure_detail else ""
                raise ServerStartError(f"the server exited with code {code} before it was ready{detail}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return time.monotonic() - start
            except OSError:
                pass
            if time.monotonic() > deadline:
                detail = failure_detail() if failure_detail else ""
                raise ServerStartError(f"the server did not accept connections on {host}:{port} within "
                                       f"{timeout_s:g} s (--ready-timeout){detail}")
            time.sleep(0.05)

    def stop(self, grace_s: float = _STOP_GRACE_S) -> ExitInfo:
        """SIGTERM to the whole group, SIGKILL after ``grace_s``; reap with wait4 for the rusage."""
        if self._exit is None:
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self._exit is None:
                self._signal_group(signal.SIGKILL)
                _, status, ru = os.wait4(self.pid, 0)
                self._reaped(status, ru)
        # Whatever the server left in its group (a worker, a forked helper) goes too.
        self._signal_group(signal.SIGKILL)
        procs.guard().forget(self.pgid)
        assert self._exit is not None
        return self._exit

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
