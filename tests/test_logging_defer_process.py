"""defer=True across process boundaries: exit, SIGTERM, fork, multiprocessing, the root logger, and the
write syscalls a record costs. Each scenario is a fresh child interpreter (its own root logger, exit
hooks and fork)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

from tests import logging_children as children
from tests.conftest import REPO

# A format that needs the clock, the thread and the caller's frame, so every capture path is exercised.
FMT = "%(asctime)s %(threadName)s %(funcName)s %(message)s"
SETUP = """
import logging, os, sys, time
import iolab.logging
h = iolab.logging.install(stream=sys.stdout, fmt={fmt!r}, defer=True, {kwargs})
assert isinstance(h, iolab.logging.DeferredHandler) and h.deferred_loggers() == ["root"], h.deferred_loggers()
log = logging.getLogger("child")
"""


def run_child(body: str, kwargs: str = "", timeout: float = 60, fmt: str = FMT) -> subprocess.CompletedProcess[bytes]:
    return children.run_python(SETUP.format(fmt=fmt, kwargs=kwargs) + textwrap.dedent(body), timeout)


def lines_of(out: bytes, prefix: str) -> list[int]:
    return children.numbers(out, prefix, line_start=False)  # FMT puts the time, thread and function first


def test_normal_exit_delivers_every_record_captured_on_the_fast_path() -> None:
    proc = run_child("""
        for i in range(20000):
            log.info("rec %d", i)
        assert h.deferred_loggers() == ["child", "root"]
        sys.stderr.write(f"{h.stats()['formatted_on_caller']}\\n")
    """, "deadline=5.0")  # a long deadline: only the exit flush can deliver them
    assert proc.returncode == 0, proc.stderr
    assert lines_of(proc.stdout, "rec") == list(range(20000))
    assert proc.stderr == b"1\n", "only the first record of 'child' took the stdlib path (it promoted it)"
    assert b" MainThread <module> rec 0\n" in proc.stdout


def test_module_level_functions_report_the_callers_frame() -> None:
    proc = run_child("""
        def handler():
            logging.info("via the module %d", 1)
            logging.getLogger().warning("via the root %d", 2)
        handler()
    """, fmt="%(funcName)s:%(lineno)d %(message)s")
    assert proc.returncode == 0, proc.stderr
    # the child's body starts after SETUP (6 lines + 1), so handler()'s two calls are lines 9 and 10
    assert proc.stdout.splitlines() == [b"handler:9 via the module 1", b"handler:10 via the root 2"]


def test_sigterm_flushes_then_dies_of_sigterm() -> None:
    setup = SETUP.format(fmt=FMT, kwargs="deadline=30.0")
    returncode, out = children.sigterm_when_ready(setup + children.READY_AFTER_3000)
    assert returncode == -signal.SIGTERM, "the default action still happens, after the flush"
    assert lines_of(out, "rec") == list(range(3000))


def test_fork_child_and_parent_both_deliver_without_duplicates() -> None:
    proc = run_child(children.FORK_CHILD_AND_PARENT, "deadline=1.0", fmt="%(process)d %(message)s")
    assert proc.returncode == 0, proc.stderr
    for prefix in ("pre", "child", "parent"):
        assert sorted(lines_of(proc.stdout, prefix)) == list(range(100)), prefix
    pids: dict[bytes, set[bytes]] = {b"pre": set(), b"child": set(), b"parent": set()}
    for m in re.finditer(rb"^(\d+) (pre|child|parent) ", proc.stdout, re.M):
        pids[m.group(2)].add(m.group(1))
    assert len(pids[b"child"]) == 1 and pids[b"pre"] == pids[b"parent"] != pids[b"child"], pids


def test_fork_while_other_threads_log_does_not_deadlock() -> None:
    proc = run_child(children.FORK_WHILE_THREADS_LOG, "max_records=2000, policy='drop_oldest'", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(lines_of(proc.stdout, "forked")) == list(range(20))


def test_multiprocessing_fork_child_is_flushed() -> None:
    proc = run_child(children.MULTIPROCESSING_FORK, "deadline=5.0", fmt="%(processName)s %(message)s")
    assert proc.returncode == 0, proc.stderr
    assert lines_of(proc.stdout, "mp") == list(range(1000))
    assert proc.stdout.startswith(b"ForkProcess-1 mp 0\n"), "processName captured in the child, at the call"


def test_os_exit_loses_at_most_the_buffer() -> None:
    proc = run_child("""
        for i in range(20000):
            log.info("rec %d", i)
        os._exit(0)
    """, "max_records=1000, policy='block', block_timeout=30")
    assert proc.returncode == 0, proc.stderr
    got = lines_of(proc.stdout, "rec")
    assert got == list(range(len(got))), "what arrives is an unbroken prefix"
    assert 20000 - len(got) <= 1000 + 1


def test_many_threads_at_exit_neither_lost_nor_duplicated() -> None:
    proc = run_child(children.MANY_THREADS)
    assert proc.returncode == 0, proc.stderr
    children.assert_many_threads_once_each(proc.stdout, rb" w(\d) work t\1 (\d+)$")


def test_write_syscalls_per_record_stay_below_one_in_a_hundred() -> None:
    r, w = os.pipe()
    try:
        code = textwrap.dedent(f"""
            import logging, os
            import iolab.logging
            def syscw():
                with open("/proc/self/io") as f:
                    return next(int(line.split()[1]) for line in f if line.startswith("syscw:"))
            h = iolab.logging.install(stream={w}, fmt="%(asctime)s %(levelname)s %(name)s: %(message)s",
                                      defer=True)
            log = logging.getLogger("app")
            log.info("warm-up")
            assert h.flush(10)
            before = syscw()
            for i in range(100000):
                log.info("record %06d: the quick brown fox jumps", i)
            assert h.flush(30)
            print(syscw() - before, h.stats()["deferred_records"], h.stats()["write_syscalls"])
        """)
        p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(w,))
        os.close(w)
        w = -1
        received = 0
        while chunk := os.read(r, 1 << 20):
            received += chunk.count(b"\n")
        out, err = p.communicate(timeout=120)
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
    assert p.returncode == 0, err
    writes, deferred, _handler_writes = (int(x) for x in out.split())
    assert received == 100001
    assert deferred >= 100000, "the fast path made them"
    assert writes / 100000 <= 0.01, f"{writes} write syscalls for 100,000 records"
