"""Every sink with a real child process writing into it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from iolab.errors import UsageError
from iolab.measure.sinks import make_sink, parse_rate, python_buffering

# Flushes stdout before the stderr line so the order is the same with and without PYTHONUNBUFFERED.
WRITER = ("import sys\nfor i in range(500):\n    print('line', i)\nsys.stdout.flush()\n"
          "print('to stderr', file=sys.stderr)\n")
EXPECTED_LINES = 501


@pytest.mark.parametrize("kind", ["pipe", "file", "tty", "slow"])
def test_counts_what_a_real_child_wrote(kind: str) -> None:
    sink = make_sink(kind, rate_bytes_per_s=200_000)
    fd = sink.child_fd()
    proc = subprocess.Popen([sys.executable, "-c", WRITER], stdout=fd, stderr=fd, stdin=subprocess.DEVNULL)
    sink.after_spawn()
    assert proc.wait(timeout=30) == 0
    counts = sink.close()
    assert counts.lines == EXPECTED_LINES
    assert counts.bytes >= sum(len(f"line {i}\n") for i in range(500))
    assert counts.tail[-1].strip() == "to stderr"
    assert sink.close() == counts  # idempotent


def test_null_sink_accepts_output() -> None:
    sink = make_sink("null")
    fd = sink.child_fd()
    proc = subprocess.Popen([sys.executable, "-c", WRITER], stdout=fd, stderr=fd)
    sink.after_spawn()
    assert proc.wait(timeout=30) == 0
    assert sink.close().bytes == 0


def test_child_sees_a_tty_only_on_the_tty_sink() -> None:
    for kind, expected in (("tty", "True"), ("pipe", "False")):
        sink = make_sink(kind)
        fd = sink.child_fd()
        proc = subprocess.Popen([sys.executable, "-c", "import sys; print(sys.stdout.isatty())"],
                                stdout=fd, stderr=fd)
        sink.after_spawn()
        proc.wait(timeout=30)
        assert sink.close().tail[-1].strip() == expected


def test_parse_rate() -> None:
    assert parse_rate("400KB/s") == 400_000
    assert parse_rate("1MiB/s") == 1024 * 1024
    assert parse_rate("4096") == 4096
    for bad in ("fast", "-1KB/s", "10XB/s"):
        with pytest.raises(UsageError):
            parse_rate(bad)


def test_python_buffering_rules() -> None:
    assert python_buffering("pipe", False) == "block"
    assert python_buffering("file", False) == "block"
    assert python_buffering("tty", False) == "line"
    assert python_buffering("pipe", True) == "unbuffered"
