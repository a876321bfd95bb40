"""Child interpreters for the logging tests (BatchHandler and defer=True alike): exit hooks, fork and
signals only show their behaviour in a process of their own. The scenarios both handlers must pass are
written once here; each test file supplies its own set-up (``h`` the handler, ``log`` a logger)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.conftest import REPO

# For i < 100: "pre i" before the fork, then "child i" in the forked child and "parent i" in the parent.
FORK_CHILD_AND_PARENT = """
for i in range(100):
    log.info("pre %d", i)          # still held at fork time (deadline 1 s)
pid = os.fork()
if pid == 0:
    for i in range(100):
        log.info("child %d", i)
    sys.exit(0)                    # normal exit in the child: its atexit flush
for i in range(100):
    log.info("parent %d", i)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
"""

# Twenty forks while two threads log without pause; each forked child logs "forked k" and flushes.
FORK_WHILE_THREADS_LOG = """
import threading
stop = False
def spam(t):
    i = 0
    while not stop:
        log.info("spam %d %d", t, i)
        i += 1
threads = [threading.Thread(target=spam, args=(t,)) for t in range(2)]
for t in threads:
    t.start()
for k in range(20):
    pid = os.fork()
    if pid == 0:
        log.info("forked %d", k)
        h.flush(5)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
stop = True
for t in threads:
    t.join()
"""

# "mp i" for i < 1000, logged in a multiprocessing child started by fork (which ends with os._exit).
MULTIPROCESSING_FORK = """
import multiprocessing as mp
def work():
    for i in range(1000):
        log.info("mp %d", i)
if __name__ == "__main__":
    p = mp.get_context("fork").Process(target=work)
    p.start()
    p.join()
    assert p.exitcode == 0
"""

# "t<t> <i>" for t < 8, i < 2500, from eight threads named w0 … w7, then a normal exit.
MANY_THREADS = """
import threading
def work(t):
    for i in range(2500):
        log.info("t%d %d", t, i)
threads = [threading.Thread(target=work, args=(t,), name=f"w{t}") for t in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""

# "rec i" for i < 3000, then "ready" on stderr and a long sleep, for SIGTERM to end (sigterm_when_ready).
READY_AFTER_3000 = """
for i in range(3000):
    log.info("rec %d", i)
sys.stderr.write("ready\\n"); sys.stderr.flush()
time.sleep(60)
"""


def assert_many_threads_once_each(out: bytes, line: bytes) -> None:
    """MANY_THREADS' output: every record exactly once (``line``'s groups: thread, number), no line split."""
    counts = Counter(re.findall(line, out, re.M))
    assert len(counts) == 8 * 2500 and set(counts.values()) == {1}
    assert out.count(b"\n") == 8 * 2500, "no line split or merged"


def run_python(code: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, **kwargs)


def numbers(out: bytes, prefix: str, line_start: bool = True) -> list[int]:
    """The ``n`` of every line that ends in ``<prefix> <n>`` (and starts with the prefix if line_start)."""
    before = "^" if line_start else " "
    return [int(m.group(1)) for m in re.finditer(rf"{before}{prefix} (\d+)$".encode(), out, re.M)]


@contextmanager
def child(args: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A child with its output piped, killed on the way out if it still runs."""
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def sigterm_when_ready(code: str) -> tuple[int, bytes]:
    """Run ``code``, send SIGTERM once it writes "ready" to stderr; its exit status and standard output."""
    with child([sys.executable, "-c", code], cwd=REPO) as p:
        assert p.stderr is not None
        assert p.stderr.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        out, _err = p.communicate(timeout=30)
    return p.returncode, out
