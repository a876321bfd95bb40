"""BatchHandler across process boundaries: exit, os._exit, fork, multiprocessing, SIGTERM, dead sinks.

Each scenario runs in a fresh child interpreter, because exit hooks and fork only show their behaviour
in a process of their own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests import logging_children as children
from tests.conftest import REPO

SETUP = """
import logging, os, sys, time
import iolab.logging
h = iolab.logging.install(stream=sys.stdout, fmt="%(message)s", {kwargs})
log = logging.getLogger("child")
"""


def run_child(body: str, kwargs: str = "", timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return children.run_python(SETUP.format(kwargs=kwargs) + textwrap.dedent(body), timeout)


def test_normal_exit_delivers_every_record() -> None:
    proc = run_child("""
        for i in range(20000):
            log.info("rec %d", i)
    """, "deadline=5.0")  # a long deadline: only the exit flush can deliver them
    assert proc.returncode == 0, proc.stderr
    assert children.numbers(proc.stdout, "rec") == list(range(20000))


def test_logging_shutdown_flushes() -> None:
    proc = run_child("""
        for i in range(5000):
            log.info("rec %d", i)
        logging.shutdown()
        os._exit(0)
    """, "deadline=5.0")
    assert proc.returncode == 0, proc.stderr
    assert children.numbers(proc.stdout, "rec") == list(range(5000))


def test_os_exit_loses_at_most_the_buffer() -> None:
    budget = 64 * 1024
    proc = run_child("""
        for i in range(20000):
            log.info("rec %06d: the quick brown fox jumps", i)
        os._exit(0)
    """, f"max_bytes={budget}, policy='block', block_timeout=30")
    assert proc.returncode == 0, proc.stderr
    got = [int(m) for m in re.findall(rb"^rec (\d{6}):", proc.stdout, re.M)]
    assert got == list(range(len(got))), "what arrives is an unbroken prefix"
    record = len("rec 000000: the quick brown fox jumps\n")
    # Lost: what sat in the buffer (the budget) plus the record that may overshoot it.
    assert 20000 - len(got) <= budget // record + 1


def test_fork_child_and_parent_both_deliver_without_duplicates() -> None:
    proc = run_child(children.FORK_CHILD_AND_PARENT, "deadline=1.0")
    assert proc.returncode == 0, proc.stderr
    for prefix in ("pre", "child", "parent"):
        assert sorted(children.numbers(proc.stdout, prefix)) == list(range(100)), prefix


def test_fork_while_other_threads_log_does_not_deadlock() -> None:
    proc = run_child(children.FORK_WHILE_THREADS_LOG, "max_bytes=1 << 16, policy='drop_oldest'", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(children.numbers(proc.stdout, "forked")) == list(range(20))


def test_multiprocessing_fork_child_is_flushed() -> None:
    proc = run_child(children.MULTIPROCESSING_FORK, "deadline=5.0")
    assert proc.returncode == 0, proc.stderr
    # multiprocessing ends its children with os._exit; threading's exit hook flushes them first.
    assert children.numbers(proc.stdout, "mp") == list(range(1000))


def test_sigterm_flush_then_default_action() -> None:
    setup = SETUP.format(kwargs="deadline=30.0") + "iolab.logging.install_sigterm_flush()"
    returncode, out = children.sigterm_when_ready(setup + children.READY_AFTER_3000)
    assert returncode == -signal.SIGTERM, "the default action still happens, after the flush"
    assert children.numbers(out, "rec") == list(range(3000))


def test_exit_with_a_dead_sink_gives_up_instead_of_hanging() -> None:
    r, w = os.pipe()  # nobody ever reads r: the sink is stuck for good
    try:
        code = textwrap.dedent(f"""
            import logging, os
            import iolab.logging
            h = iolab.logging.install(stream={w}, flush_timeout=0.5)
            for i in range(20000):
                logging.info("rec %06d: the quick brown fox jumps", i)
        """)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.DEVNULL,
                              capture_output=True, pass_fds=(w,), timeout=60)
        elapsed = time.monotonic() - start
    finally:
        os.close(w)
        os.close(r)
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 30, "exit gave up on the stuck sink"


def test_records_neither_lost_nor_duplicated_across_many_threads_at_exit() -> None:
    proc = run_child(children.MANY_THREADS)
    assert proc.returncode == 0, proc.stderr
    children.assert_many_threads_once_each(proc.stdout, rb"^t(\d) (\d+)$")


def test_uvicorn_app_two_lines_and_sigterm(tmp_path: Path) -> None:
    """The FastAPI set-up from the docs: uvicorn re-raises SIGTERM after its graceful shutdown, which would
    kill the process before an atexit flush; install() chains a flush in front of that."""
    import socket

    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import logging, sys
        import iolab.logging
        from fastapi import FastAPI

        iolab.logging.install(logger=["", "uvicorn", "uvicorn.access"], stream=sys.stdout)
        app = FastAPI()

        @app.get("/x")
        def x() -> dict[str, int]:
            logging.getLogger("app").info("handled /x")
            return {"ok": 1}
    """))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with children.child([sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)], cwd=tmp_path,
               env={**os.environ, "PYTHONPATH": str(REPO)}) as p:
        import urllib.request

        end = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=5) as resp:
                    assert resp.read() == b'{"ok":1}'
                break
            except OSError:
                assert time.monotonic() < end and p.poll() is None, "uvicorn did not start"
                time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    text = out.decode()
    assert "INFO:app:handled /x" in text
    assert '"GET /x HTTP/1.1" 200' in text, "uvicorn's access log goes through the handler too"
    assert "Finished server process" in text, "the last records, logged during shutdown, arrive"
    assert err == b""
