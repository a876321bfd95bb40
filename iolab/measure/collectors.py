"""The log collectors in iolab's namespace, seen from iolab: start, count, pause (an outage), stop.

The collectors themselves are collector_child.py, one process inside the namespace (``ip netns exec``
execs it, so its PID is ours to signal) plus the ``rsyslogd`` it starts. What a server under test needs
to reach them is in :meth:`Collectors.env`, passed in its environment (documented in docs/network.md)::

    IOLAB_COLLECTOR_HOST   the collector's address (10.234.x.y, across the link)
    IOLAB_SYSLOG_PORT      rsyslogd, UDP and TCP
    IOLAB_JSONL_PORT       a TCP receiver of JSON lines
    IOLAB_BULK_URL         http://HOST:PORT/_bulk, an Elasticsearch/OpenSearch-style bulk endpoint

An outage is the collectors stopped (SIGSTOP, then SIGCONT): the kernel still completes TCP handshakes
into their listen queues and buffers what is sent, but nothing is read or answered, as with a collector
that hangs (a GC pause, a full disk, an overloaded Elasticsearch). See netns.py for why not a link down.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from iolab.errors import NetworkError
from iolab.measure import procs
from iolab.measure.collector_child import HTTP_PORT, JSONL_PORT, SYSLOG_PORT
from iolab.measure.netns import Network

ENV_HOST = "IOLAB_COLLECTOR_HOST"
ENV_SYSLOG_PORT = "IOLAB_SYSLOG_PORT"
ENV_JSONL_PORT = "IOLAB_JSONL_PORT"
ENV_BULK_URL = "IOLAB_BULK_URL"


def rsyslogd_missing() -> str | None:
    """Why the syslog collector cannot run here, or None."""
    if any(os.path.exists(p) for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd")):
        return None
    return "rsyslogd is not installed (apt-get install rsyslog, or `make test-deps` as root)"


class Collectors:
    """collector_child.py in ``net``'s namespace. A context manager; ``close()`` is idempotent."""

    def __init__(self, net: Network, workdir_parent: str | None = None) -> None:
        self.net = net
        self._parent = workdir_parent  # where rsyslogd's files go (a directory of the run's, else $TMPDIR)
        self.host = net.collector_addr
        self._proc: subprocess.Popen[str] | None = None
        self._workdir: str | None = None
        self.rsyslogd_pid: int | None = None
        self.paused = False

    def __enter__(self) -> Collectors:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._workdir = tempfile.mkdtemp(prefix="iolab-collect-", dir=self._parent)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "collector_child.py")
        self._proc = subprocess.Popen(
            self.net.exec_argv([sys.executable, "-I", "-S", script, self.host, self._workdir]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=procs.die_with_parent())  # noqa: PLW1509 - the parent-death signal is the point
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("ready "):
            self._proc.kill()
            _, err = self._proc.communicate()
            self._proc = None
            self.close()
            why = line or (err.strip().splitlines() or ["no output"])[-1]
            raise NetworkError(f"the log collectors did not start in the namespace: {why}")
        self.rsyslogd_pid = json.loads(line[len("ready "):]).get("rsyslogd")

    def env(self) -> dict[str, str]:
        return {ENV_HOST: self.host, ENV_SYSLOG_PORT: str(SYSLOG_PORT), ENV_JSONL_PORT: str(JSONL_PORT),
                ENV_BULK_URL: f"http://{self.host}:{HTTP_PORT}/_bulk"}

    def stats(self) -> dict[str, Any]:
        """Counts so far: ``tags`` → {received, duplicated, max_delay_ms}, ``connections``, ``http_requests``."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise NetworkError("the log collectors are not running")
        self.resume()
        try:
            proc.stdin.write("stats\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            return dict(json.loads(line))
        except (OSError, ValueError) as exc:
            raise NetworkError(f"the log collectors stopped answering ({exc})") from None

    def _signal(self, sig: int) -> None:
        for pid in (self._proc.pid if self._proc else None, self.rsyslogd_pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def pause(self) -> None:
        """The outage begins: every collector stops reading and answering."""
        self.paused = True
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._signal(signal.SIGCONT)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            self.paused = True
            self.resume()
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.write("quit\n")
                proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if self.rsyslogd_pid is not None:  # it dies with its parent; make sure of it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.rsyslogd_pid, signal.SIGKILL)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
