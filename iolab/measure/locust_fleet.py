"""A Locust fleet, headless, as subprocesses: one master and N local workers (plus any remote ones).

Locust (gevent) is never imported here: its monkey-patching would break iolab's subprocess and SIGCHLD
handling, so the master and the workers are ``python -m locust`` processes running the shipped
locustfile (drivers/locustfile.py). The master binds ``127.0.0.1`` on a free port, or the address given
(``--locust-master HOST:PORT``) so that workers on other machines can join; it waits for every expected
worker (local and remote), runs the users for the duration, tells the workers to quit, and writes the
merged result (JSON) to a file this module reads.

Nothing left behind: every process has a parent-death signal (procs.die_with_parent), is reaped with
``wait4`` (whose rusage is the driver's CPU, as for every driver) and is SIGKILLed on any failure or
interruption. Remote workers are the user's to start (``python -m iolab.measure.locust_fleet worker
HOST:PORT``, a loop that rejoins each new master: iolab starts one per warm-up and per measured load).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iolab.errors import DriverError
from iolab.measure import procs, tmpdirs

LOCUSTFILE = str(Path(__file__).resolve().parent / "drivers" / "locustfile.py")
# Start-up of Python + Locust on a loaded 2-core machine, and the wait for remote workers.
JOIN_TIMEOUT_S = 60


@dataclass
class Finished:
    result: dict[str, Any]
    cpu_user_s: float  # master + local workers, wait4
    cpu_sys_s: float
    wall_s: float
    master_log: str
    command: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def locust_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("locust") is not None


def worker_argv(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host", host,
            "--master-port", str(port), "--loglevel", "WARNING"]


class _Proc:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        # cwd: the run's temporary directory, so no locust.conf or pyproject.toml [tool.locust] of the
        # user's current directory changes the run (the command line sets everything iolab relies on).
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, env=env, cwd=log.parent, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=out, preexec_fn=procs.die_with_parent())  # noqa: PLW1509
        self.rusage: tuple[float, float] | None = None

    def poll(self) -> int | None:
        if self.popen.returncode is not None:
            return self.popen.returncode
        pid, status, ru = os.wait4(self.popen.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._reaped(status, ru)
        return self.popen.returncode

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while (code := self.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return code

    def kill(self) -> None:
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
            _, status, ru = os.wait4(self.popen.pid, 0)
            self._reaped(status, ru)

    def _reaped(self, status: int, ru: object) -> None:
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = (getattr(ru, "ru_utime", 0.0), getattr(ru, "ru_stime", 0.0))

    def tail(self, n: int = 3) -> str:
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return " | ".join(lines[-n:])


def run_fleet(load_args: list[str], *, users: int, duration_s: float, local_workers: int,
              remote_workers: int, master: tuple[str, int] | None,
              progress: Callable[[int, int], None] | None = None) -> Finished:
    """Run one headless test; the master's merged result, or DriverError naming what went wrong."""
    if not locust_available():
        raise DriverError("--driver locust needs Locust: pip install 'iolab[scale]'")
    bind_host, port = master if master else ("127.0.0.1", free_port())
    if port == 0:
        port = free_port(bind_host)
    run_time = max(1, round(duration_s))
    expect = local_workers + remote_workers
    with tmpdirs.owned("locust") as tmp:
        result_path = Path(tmp) / "result.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        env["IOLAB_LOCUST_RESULT"] = str(result_path)
        env.pop("PYTHONUNBUFFERED", None)
        margv = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--master", "--master-bind-host", bind_host,
                 "--master-bind-port", str(port), "--headless", "-u", str(users), "-r", str(users),
                 "-t", f"{run_time}s", "--expect-workers", str(expect), "--expect-workers-max-wait",
                 str(JOIN_TIMEOUT_S), "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
                 *load_args]
        started = time.monotonic()
        procs_: list[_Proc] = []
        try:
            master_proc = _Proc(margv, env, Path(tmp) / "master.log")
            procs_.append(master_proc)
            connect = "127.0.0.1" if bind_host in ("0.0.0.0", "::") else bind_host
            for i in range(local_workers):
                procs_.append(_Proc(worker_argv(connect, port), env, Path(tmp) / f"worker{i}.log"))
            limit = JOIN_TIMEOUT_S + run_time + 30
            planned_ms = int(run_time * 1000)
            while master_proc.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > limit:
                    raise DriverError(f"Locust's master did not finish within {limit} s; last output: "
                                      f"{master_proc.tail()}")
                for w in procs_[1:]:
                    if w.poll() not in (None, 0):
                        raise DriverError(f"a Locust worker failed (exit {w.popen.returncode}): {w.tail()}")
                if progress is not None:
                    progress(min(int(elapsed * 1000), planned_ms), planned_ms)
                time.sleep(0.1)
            for w in procs_[1:]:
                if w.wait(15) is None:
                    w.kill()
            if not result_path.exists():
                raise DriverError(f"Locust's master wrote no result (exit {master_proc.popen.returncode}); "
                                  f"last output: {master_proc.tail()}")
            result = json.loads(result_path.read_text())
            log = master_proc.log.read_text(errors="replace")
        finally:
            for p in procs_:
                p.kill()
        cpu_u = sum(p.rusage[0] for p in procs_ if p.rusage)
        cpu_s = sum(p.rusage[1] for p in procs_ if p.rusage)
        return Finished(result, cpu_u, cpu_s, time.monotonic() - started, log[-4000:], tuple(margv))


def _worker_loop(host: str, port: int) -> None:
    """A remote worker that rejoins each new master until interrupted (KeyboardInterrupt)."""
    while True:
        proc = subprocess.Popen(worker_argv(host, port), preexec_fn=procs.die_with_parent())  # noqa: PLW1509
        try:
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        time.sleep(0.5)


def main(argv: list[str]) -> None:
    """``python -m iolab.measure.locust_fleet worker HOST:PORT``; Ctrl-C or SIGTERM ends it (exit 0)."""
    host, _, port = argv[1].rpartition(":") if len(argv) == 2 and argv[0] == "worker" else ("", "", "")
    if not host or not port.isdigit():
        sys.exit("usage: python -m iolab.measure.locust_fleet worker HOST:PORT")

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    with contextlib.suppress(KeyboardInterrupt):
        _worker_loop(host.strip("[]"), int(port))


if __name__ == "__main__":
    main(sys.argv[1:])
