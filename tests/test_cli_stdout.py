"""A standard output that fails (a full disk, a closed pipe, a closed fd 1) is one `error:` line and exit 11."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iolab.errors import EXIT_STDOUT
from tests.conftest import REPO, run_cli

RESULTS = REPO / "tests" / "fixtures" / "results" / "v1_server_died.json"


def _iolab(*args: str, stdout: int | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iolab", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)


def _one_error(stderr: str) -> str:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("args", [("report", str(RESULTS)), ("report", str(RESULTS), "-o", "-", "--format", "md"),
                                  ("--help",), ("scenarios",)])
def test_a_full_stdout(args: tuple[str, ...]) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        proc = _iolab(*args, stdout=full.fileno())
    assert proc.returncode == EXIT_STDOUT == 11
    assert _one_error(proc.stderr) == "error: could not write to standard output: No space left on device"


def test_a_pipe_closed_by_its_reader() -> None:
    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write gets EPIPE
    try:
        proc = _iolab("report", str(RESULTS), stdout=write)
    finally:
        os.close(write)
    assert proc.returncode == EXIT_STDOUT
    assert _one_error(proc.stderr) == "error: could not write to standard output: Broken pipe"


def test_a_closed_fd_1() -> None:
    # A shell's `>&-`: iolab starts without fd 1, and its report has nowhere to go.
    proc = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m iolab report "{RESULTS}" >&-'], cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_STDOUT
    assert _one_error(proc.stderr) == "error: could not write to standard output: it is closed"


def test_files_are_written_before_stdout_fails(tmp_path: Path) -> None:
    """`report -o FILE` does not touch stdout: a full one does not matter."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        proc = _iolab("report", str(RESULTS), "-o", str(tmp_path / "r.md"), stdout=full.fileno())
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r.md").read_text().startswith("#") or (tmp_path / "r.md").stat().st_size > 0


def test_click_usage_errors_keep_their_code() -> None:
    proc = run_cli("--no-such-option")
    assert proc.returncode == 2 and "No such option" in proc.stderr and "Traceback" not in proc.stderr
