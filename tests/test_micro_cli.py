"""``iolab micro`` end to end: the real CLI as a subprocess on real scripts and commands, real pipes, ptys,
files and /proc. Assertions are about behaviour (syscall counts' direction, bytes, exit codes, processes
gone), never about timings."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from iolab.results.micro import load
from tests.conftest import IOLAB_WITH_CTRL_C, REPO, iolab_env, run_cli

LINES = 3000
QUICK = ("--runs", "2", "--timeout", "60")
MiB = 1 << 20

PRINTS = f"""
import sys
for i in range({LINES}):
    print(i)
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runs(doc: dict[str, Any], setting: str) -> list[dict[str, Any]]:
    s = next(s for s in doc["settings"] if s["name"] == setting)
    assert s["runs"], f"{setting} has no measured runs"
    return list(s["runs"])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie that is not ours (killed, not yet reaped by init) still answers; /proc says whether it is one.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def python_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full run of a printing script in every setting, shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("micro")
    script = tmp / "prints.py"
    script.write_text(PRINTS)
    before = _sha(script)
    # The machine exports PYTHONUNBUFFERED=1: iolab must not let it leak into the default settings.
    proc = run_cli("micro", str(script), *QUICK, "-o", str(tmp / "r.json"), "--markdown", str(tmp / "r.md"),
                   env=iolab_env(PYTHONUNBUFFERED="1"), timeout=180)
    return {"proc": proc, "doc": json.loads((tmp / "r.json").read_text()), "script": script,
            "before": before, "json": tmp / "r.json", "md": tmp / "r.md"}


def test_python_run_completes_with_schema(python_run: dict[str, Any]) -> None:
    proc, doc = python_run["proc"], python_run["doc"]
    assert proc.returncode == 0, proc.stderr
    assert doc["schema"] == "iolab.micro/1" and doc["status"] == "complete"
    assert load(python_run["json"]).target.kind == "python"
    assert doc["prints"] == {"calls": LINES, "to_stdout": LINES}
    names = {s["name"] for s in doc["settings"]}
    assert names == {"pipe/default", "pipe/unbuffered", "pipe/print-off", "file/default", "file/unbuffered",
                     "null/default", "null/unbuffered", "tty/default", "tty/unbuffered"}
    assert all(len(s["runs"]) == 2 and len(s["warmup"]) == 1 for s in doc["settings"])


def test_unbuffered_writes_at_least_a_syscall_per_line(python_run: dict[str, Any]) -> None:
    for kind in ("pipe", "file", "null", "tty"):
        for run in _runs(python_run["doc"], f"{kind}/unbuffered"):
            assert run["write_syscalls"] >= LINES, (kind, run)


def test_block_buffered_writes_far_fewer_syscalls_than_lines(python_run: dict[str, Any]) -> None:
    for kind in ("pipe", "file", "null"):
        for run in _runs(python_run["doc"], f"{kind}/default"):
            assert run["write_syscalls"] <= LINES / 20, (kind, run)
    for run in _runs(python_run["doc"], "pipe/default"):
        assert run["stdout_lines"] == LINES


def test_tty_default_is_line_buffered(python_run: dict[str, Any]) -> None:
    for run in _runs(python_run["doc"], "tty/default"):
        assert run["write_syscalls"] >= LINES
        assert run["stdout_lines"] == LINES  # a real pty, drained: every line arrived


def test_print_off_writes_nothing_and_leaves_the_file_alone(python_run: dict[str, Any]) -> None:
    for run in _runs(python_run["doc"], "pipe/print-off"):
        assert run["stdout_bytes"] == 0
        assert run["write_syscalls"] < 10
    assert _sha(python_run["script"]) == python_run["before"] == python_run["doc"]["target"]["script_sha256"]


def test_environment_is_explicit_per_setting(python_run: dict[str, Any]) -> None:
    doc = python_run["doc"]
    by = {s["name"]: s for s in doc["settings"]}
    assert "PYTHONUNBUFFERED" not in by["pipe/default"]["python_env"]
    assert by["pipe/default"]["env_removed"] == ["PYTHONUNBUFFERED"]
    assert by["pipe/unbuffered"]["python_env"]["PYTHONUNBUFFERED"] == "1"
    assert by["tty/default"]["buffering"] == "line" and by["pipe/default"]["buffering"] == "block"
    assert any(w["kind"] == "environment" for w in doc["warnings"])


def test_report_explains_with_the_figures(python_run: dict[str, Any]) -> None:
    out = python_run["proc"].stdout
    assert f"line-buffered on a tty: {LINES:,} write syscalls for {LINES:,} prints" in out
    assert "block-buffered:" in out and "PYTHONUNBUFFERED=1" in out
    md = python_run["md"].read_text()
    assert "| stdout | python | buffering | wall ms" in md and "### What this means" in md


def test_any_command_and_its_rss_is_its_own(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    loop = f"i=0; while [ $i -lt {LINES} ]; do echo x; i=$((i+1)); done"
    proc = run_cli("micro", *QUICK, "--stdout", "pipe,null", "-o", str(out), "--", "/bin/sh", "-c", loop)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["target"]["kind"] == "command" and doc["prints"] is None
    for kind in ("pipe", "null"):
        for run in _runs(doc, kind):
            assert run["write_syscalls"] >= LINES  # the shell's echo writes each line
    assert all(r["stdout_lines"] == LINES for r in _runs(doc, "pipe"))
    if doc["machine"]["spawn_method"] == "setsid-fork":
        # Spawned straight from iolab the shell would report iolab's own tens of MB (docs/micro.md).
        assert all(r["rss_peak_bytes"] < 16 * MiB for r in _runs(doc, "pipe"))


def test_command_gets_a_clean_environment(tmp_path: Path) -> None:
    """A Python program run as a command block-buffers on a pipe although iolab's own environment has
    PYTHONUNBUFFERED=1, and line-buffers on the pty."""
    out = tmp_path / "c.json"
    proc = run_cli("micro", *QUICK, "--stdout", "pipe,tty", "-o", str(out), "--", sys.executable, "-c",
                   PRINTS, env=iolab_env(PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["target"]["kind"] == "command"
    assert all(r["write_syscalls"] <= LINES / 20 for r in _runs(doc, "pipe"))
    assert all(r["write_syscalls"] >= LINES for r in _runs(doc, "tty"))


def test_missing_script_is_one_error_line(tmp_path: Path) -> None:
    proc = run_cli("micro", str(tmp_path / "nope.py"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: {tmp_path / 'nope.py'}: no such file"]
    proc = run_cli("micro", "--", "no-such-command-iolab")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("error: ")


FAILING = """
import sys
print("partial output")
sys.stderr.write("Traceback: something went wrong at line 3\\n")
sys.exit(1)
"""


def test_failing_script_stops_with_its_stderr_tail(tmp_path: Path) -> None:
    script = tmp_path / "fails.py"
    script.write_text(FAILING)
    proc = run_cli("micro", str(script), *QUICK)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert any("something went wrong at line 3" in line for line in lines)
    assert lines[-1].startswith("error: ") and "exited with status 1" in lines[-1]
    assert "--keep-going" in lines[-1]


def test_failing_script_keep_going_reports_every_run(tmp_path: Path) -> None:
    script, out = tmp_path / "fails.py", tmp_path / "f.json"
    script.write_text(FAILING)
    proc = run_cli("micro", str(script), *QUICK, "--keep-going", "--stdout", "pipe,file", "-o", str(out))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "something went wrong at line 3" in proc.stdout  # the report shows the tail
    doc = json.loads(out.read_text())
    assert doc["status"] == "failed"
    every = [r for s in doc["settings"] for r in (*s["warmup"], *s["runs"])]
    assert len(every) == len(doc["settings"]) * 3  # nothing stopped early
    assert all(r["status"] == "failed" and r["exit_code"] == 1 for r in every)
    assert all("something went wrong at line 3" in r["stderr_tail"][-1] for r in every)


RUNAWAY = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
with open(sys.argv[1], "a") as fh:
    fh.write("%d\\n" % child.pid)
while True:
    pass
"""


def test_runaway_is_killed_with_its_process_group(tmp_path: Path) -> None:
    script, pids, out = tmp_path / "runaway.py", tmp_path / "pids", tmp_path / "t.json"
    script.write_text(RUNAWAY)
    proc = run_cli("micro", str(script), str(pids), "--timeout", "1", "--runs", "1", "--warmup", "0",
                   "--stdout", "pipe", "--mode", "default", "--keep-going", "-o", str(out))
    assert proc.returncode == 1
    assert "timed out after 1 s" in proc.stderr + proc.stdout
    doc = json.loads(out.read_text())
    runs = [doc["count_run"], *_runs(doc, "pipe/default")]
    assert [r["status"] for r in runs] == ["timeout", "timeout"]
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    for pid in [r["pid"] for r in runs] + children:
        assert _gone(pid), f"process {pid} outlived its run"
    for r in runs:
        assert _group_gone(r["pid"]), f"process group {r['pid']} outlived its run"


STDIN_PROBE = """
import sys
data = sys.stdin.read()
with open(sys.argv[1], "w") as fh:
    fh.write("%r %r" % (len(data), sys.stdin.isatty()))
"""


def test_stdin_is_dev_null_without_input(tmp_path: Path) -> None:
    script, seen = tmp_path / "reads.py", tmp_path / "seen"
    script.write_text(STDIN_PROBE)
    one = ("--runs", "1", "--warmup", "0", "--stdout", "tty", "--mode", "default", "--timeout", "30")
    proc = run_cli("micro", str(script), str(seen), *one)
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text() == "0 False"  # EOF at once, and not the terminal even when stdout is a pty
    data = tmp_path / "in.txt"
    data.write_text("12345\n")
    proc = run_cli("micro", str(script), str(seen), *one, "--input", str(data))
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text() == "6 False"


def test_ctrl_c_kills_the_program_and_keeps_partial_results(tmp_path: Path) -> None:
    script, pids, out = tmp_path / "runaway.py", tmp_path / "pids", tmp_path / "i.json"
    script.write_text(RUNAWAY)
    proc = subprocess.Popen(
        [*IOLAB_WITH_CTRL_C, "micro", str(script), str(pids), "--timeout", "60",
         "--stdout", "pipe", "--mode", "default", "-o", str(out)],
        cwd=REPO, env=iolab_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("error: interrupted")
    assert json.loads(out.read_text())["status"] == "interrupted"
    for pid in (int(p) for p in pids.read_text().split()):
        assert _gone(pid)
