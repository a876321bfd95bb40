"""Outputs only to regular files (issue 15, cases 1 and 6): every output path of every command is checked
before anything is measured (exit 2, one ``error:`` line naming the option), files are written through a
temporary file and a rename that never replaces anything but a regular file, and a write that fails
anyway keeps the results in a fallback file (exit 9).

Devices are clones made with mknod in the test's directory (same major/minor as /dev/full), so a
regression replaces the clone, never the machine's /dev/full. Only commands that never renamed over their
output (report, compare) are pointed at the real /dev/full.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iolab import outputs, results
from iolab.errors import EXIT_OUTPUT, OutputWriteError, UsageError
from iolab.outputs import OutputKeeper, UnsafeOutputError, check_outputs, write_text_atomic
from tests.conftest import REPO, free_port, iolab_env, run_cli

TINY = ("--scenario", "noop-async", "-n", "200", "-c", "10", "--rounds", "1", "--warmup", "0",
        "--cpus", "0", "--memory", "0", "-q")
RULE = "results go only to regular files"


def _error_line(stderr: str) -> str:
    """The one ``error:`` line, last on stderr, with no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), stderr
    assert sum(ln.startswith("error: ") for ln in lines) == 1, stderr
    return lines[-1]


def _char_device(path: Path) -> Path:
    """A character device like /dev/full (1, 7) at ``path``; skips where mknod is not allowed."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    return path


def _run_refused(tmp_path: Path, *args: str) -> str:
    """``iolab run`` of a server command that would leave a marker file if it ever started: it must end
    with exit 2 and one error line, and the marker must not exist (nothing was started or measured)."""
    marker = tmp_path / "server-started"
    cmd = f"{sys.executable} -c \"open({str(marker)!r}, 'w').close()\""
    proc = run_cli("run", "--cmd", cmd, "--url", f"http://127.0.0.1:{free_port()}/", "--ready-timeout", "2",
                   "-n", "50", "-c", "2", "--rounds", "1", "--warmup", "0", "--cpus", "0", "--memory", "0", "-q",
                   *args, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert not marker.exists(), "a server was started before the outputs were checked"
    assert proc.stdout == ""
    return _error_line(proc.stderr)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("saved") / "r.json"
    proc = run_cli("run", *TINY, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


# ------------------------------------------------------------------------------------------ iolab run

def test_run_o_character_device_is_refused_and_stays_a_device(tmp_path: Path) -> None:
    dev = _char_device(tmp_path / "full")
    line = _run_refused(tmp_path, "-o", str(dev))
    assert line == f"error: -o {dev}: not a regular file (a character device); {RULE}"
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.lstat(dev).st_rdev == os.makedev(1, 7)


def test_run_o_fifo_is_refused_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    line = _run_refused(tmp_path, "-o", str(fifo))
    assert line == f"error: -o {fifo}: not a regular file (a FIFO); {RULE}"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_run_o_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    line = _run_refused(tmp_path, "-o", "d")
    assert line == f"error: -o d: not a regular file (a directory); {RULE}"
    assert (tmp_path / "d").is_dir() and not list((tmp_path / "d").iterdir())


def test_run_o_symlink_to_dev_null_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "link.json").symlink_to("/dev/null")
    line = _run_refused(tmp_path, "-o", "link.json")
    assert line == f"error: -o link.json (a symbolic link to /dev/null): not a regular file (a character device); {RULE}"
    assert os.readlink(tmp_path / "link.json") == "/dev/null" and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_run_o_dangling_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere" / "r.json")
    line = _run_refused(tmp_path, "-o", "dangling.json")
    assert "a symbolic link to" in line and "which does not exist" in line
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("path, where", [("/proc/version", "/proc"), ("/proc/self/r.json", "/proc"),
                                         ("/sys/r.json", "/sys"), ("/dev/stdout", "/dev"), ("/dev/r.json", "/dev")])
def test_run_o_kernel_interfaces_are_refused(tmp_path: Path, path: str, where: str) -> None:
    line = _run_refused(tmp_path, "-o", path)
    assert line.startswith(f"error: -o {path}") and RULE in line
    assert f"in {where}, a kernel interface" in line or "not a regular file" in line
    assert not Path("/dev/r.json").exists()


def test_run_o_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "somefile").write_text("mine\n")
    line = _run_refused(tmp_path, "-o", "somefile/x.json")
    assert line == f"error: -o somefile/x.json: {tmp_path / 'somefile'} is not a directory"
    assert (tmp_path / "somefile").read_text() == "mine\n"


def test_run_o_stdout_is_not_a_results_file(tmp_path: Path) -> None:
    line = _run_refused(tmp_path, "-o", "-")
    assert line == "error: -o -: this option writes a file, not standard output; give a file name"
    assert not (tmp_path / "-").exists()


def test_run_markdown_html_hdr_log_are_checked(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _run_refused(tmp_path, "--markdown", str(fifo)) == \
        f"error: --markdown {fifo}: not a regular file (a FIFO); {RULE}"
    dev = _char_device(tmp_path / "full")
    assert _run_refused(tmp_path, "--html", str(dev)) == \
        f"error: --html {dev}: not a regular file (a character device); {RULE}"
    (tmp_path / "d").mkdir()
    assert _run_refused(tmp_path, "--hdr-log", "d") == f"error: --hdr-log d: not a regular file (a directory); {RULE}"
    assert _run_refused(tmp_path, "-o", "same.json", "--html", "same.json") == \
        "error: --html same.json: also the file of -o; give each output its own file"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISCHR(os.lstat(dev).st_mode)


def test_run_stdout_file_logs_are_checked(tmp_path: Path) -> None:
    """--stdout file keeps each server's output next to the results: those files are outputs too."""
    log = tmp_path / "r.root.r1.stdout.log"  # the --url path "/" is the scenario "root"
    os.mkfifo(log)
    line = _run_refused(tmp_path, "-o", "r.json", "--stdout", "file")
    assert line == f"error: --stdout file {log.name}: not a regular file (a FIFO); {RULE}"


def test_run_o_immutable_file_is_refused(tmp_path: Path) -> None:
    """As root, a read-only mode means nothing; an immutable file (chattr +i) refuses even root."""
    target = tmp_path / "imm.json"
    target.write_text("kept\n")
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(target)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here")
    try:
        line = _run_refused(tmp_path, "-o", str(target))
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=True)
    assert line == f"error: -o {target}: cannot be written (Operation not permitted)"
    assert target.read_text() == "kept\n"


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Runs iolab inside a private mount namespace (unshare -m) where tmp_path/ro is bound read-only:
    the mount ends with that namespace, so nothing is left mounted even if the test is killed."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "existing.json").write_text("kept\n")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {ro} {ro} && touch {ro}/x"],
                           capture_output=True, text=True) if shutil.which("unshare") else None
    if probe is None or "Read-only file system" not in probe.stderr:
        pytest.skip("cannot make a read-only bind mount in a private mount namespace here")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        script = f'mount --bind -o ro "{ro}" "{ro}" && exec "$0" -m iolab "$@"'
        return subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable, *args], cwd=REPO,
                              env=iolab_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    yield run
    assert (ro / "existing.json").read_text() == "kept\n" and not (ro / "x").exists()


def test_run_o_on_a_read_only_mount_is_refused(read_only_dir: Callable[..., subprocess.CompletedProcess[str]],
                                               tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    for path, expected in ((ro / "existing.json", f"-o {ro / 'existing.json'}: cannot be written "
                            "(Read-only file system)"),
                           (ro / "new" / "r.json", f"-o {ro / 'new' / 'r.json'}: cannot create files in {ro} "
                            "(Read-only file system)")):
        proc = read_only_dir("run", *TINY, "-o", str(path))
        assert proc.returncode == 2, proc.stderr
        assert _error_line(proc.stderr) == f"error: {expected}"
        assert proc.stdout == ""


# ------------------------------------------------------------------------------------------ report, compare

def test_report_html_to_dev_full_is_refused(saved_run: Path) -> None:
    proc = run_cli("report", str(saved_run), "--format", "html", "-o", "/dev/full", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == f"error: -o /dev/full: not a regular file (a character device); {RULE}"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_report_to_stdout_and_to_a_file_still_work(saved_run: Path, tmp_path: Path) -> None:
    proc = run_cli("report", str(saved_run), "--format", "json", "-o", "-", timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["schema"] == results.SCHEMA
    out = tmp_path / "new" / "dir" / "r.md"  # missing directories under a writable one are created
    proc = run_cli("report", str(saved_run), "-o", str(out), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("#") and stat.S_IMODE(out.stat().st_mode) & 0o044 == 0o044


@pytest.mark.parametrize("option, path, kind", [("--html", "/dev/full", "a character device"),
                                                ("--markdown", "{tmp}", "a directory")])
def test_compare_unwritable_output_is_bad_input_not_a_gate(saved_run: Path, tmp_path: Path, option: str,
                                                           path: str, kind: str) -> None:
    """Exit 2 before anything is compared, even with a gate that holds (it used to end in a traceback: 1)."""
    path = path.format(tmp=tmp_path)
    proc = run_cli("compare", str(saved_run), str(saved_run), "--fail-if", "p99_ms > -100%", option, path,
                   timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == f"error: {option} {path}: not a regular file ({kind}); {RULE}"
    assert "gate" not in proc.stderr + proc.stdout


def test_compare_html_under_proc_is_refused(saved_run: Path) -> None:
    proc = run_cli("compare", str(saved_run), str(saved_run), "--html", "/proc/version", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == \
        f"error: --html /proc/version: in /proc, a kernel interface, not a place for files; {RULE}"


# ------------------------------------------------------------------------------------------ micro, sweep

def test_micro_outputs_are_checked_before_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "s.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\nprint('hi')\n")
    dev = _char_device(tmp_path / "full")
    proc = run_cli("micro", str(script), "--runs", "1", "--warmup", "0", "--stdout", "pipe", "--mode", "default",
                   "-o", str(dev), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == f"error: -o {dev}: not a regular file (a character device); {RULE}"
    assert not marker.exists() and stat.S_ISCHR(os.lstat(dev).st_mode)
    (tmp_path / "d").mkdir()
    proc = run_cli("micro", str(script), "--runs", "1", "--warmup", "0", "--stdout", "pipe", "--mode", "default",
                   "--markdown", str(tmp_path / "d"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == f"error: --markdown {tmp_path / 'd'}: not a regular file (a directory); {RULE}"
    assert not marker.exists()


SWEEP = ("sweep", "--scenario", "noop-async,noop-sync", "--work-us", "0", "--sink-latency", "0", "-n", "50",
         "--warmup", "0", "--rounds", "2", "--cpus", "0", "--memory", "0", "-q")


def test_sweep_outputs_are_checked_before_measuring(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    proc = run_cli(*SWEEP, "-o", str(tmp_path / "s.json"), "--svg", str(tmp_path / "d"), timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == f"error: --svg {tmp_path / 'd'}: not a regular file (a directory); {RULE}"
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "s").exists()
    # The cells' runs go in a directory named after -o: a regular file there is refused too.
    (tmp_path / "t").write_text("mine\n")
    proc = run_cli(*SWEEP, "-o", str(tmp_path / "t.json"), timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == \
        f"error: -o (a cell's run) {tmp_path / 't' / 'w0us-l0ms.json'}: {tmp_path / 't'} is not a directory"
    assert not (tmp_path / "t.json").exists()


# ------------------------------------------------------------------------------------------ fallback, CLI

def test_run_whose_output_directory_goes_away_keeps_results_in_a_fallback(tmp_path: Path) -> None:
    """The -o directory is replaced by a regular file after the first save: the run goes on measuring,
    warns once, keeps every round in a fallback file in the current directory and exits 9 naming it."""
    out = tmp_path / "out" / "r.json"
    out.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "iolab", "run", "--scenario", "noop-async,noop-sync", "-n", "200", "-c", "10",
         "--rounds", "2", "--warmup", "0", "--cpus", "0", "--memory", "0", "-q", "--no-explain", "-o", str(out)],
        cwd=tmp_path, env=iolab_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert out.exists(), "the first save never happened"
        out.parent.rename(tmp_path / "out.moved")
        (tmp_path / "out").write_text("not a directory\n")
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_OUTPUT, stderr
    fallbacks = list(tmp_path.glob("iolab-results-fallback-*.json"))
    assert len(fallbacks) == 1, list(tmp_path.iterdir())
    fallback = fallbacks[0]
    line = _error_line(stderr)
    assert line == f"error: could not write -o {out} ({tmp_path / 'out'} is not a directory): it is in {fallback}"
    warnings = [ln for ln in stderr.splitlines() if ln.startswith("warning: ")]
    assert warnings == [f"warning: could not write -o {out} ({tmp_path / 'out'} is not a directory); "
                        f"keeping it in {fallback} instead"]
    kept = results.load(fallback)
    assert kept.status == "complete"
    assert {s.name: len(s.rounds) for s in kept.scenarios} == {"noop-async": 2, "noop-sync": 2}
    assert all(r.requests == 200 for s in kept.scenarios for r in s.rounds)
    assert f"results: {fallback}" in stdout
    assert (tmp_path / "out").read_text() == "not a directory\n"
    assert results.load(tmp_path / "out.moved" / "r.json").status == "running"  # the first save, untouched


# ------------------------------------------------------------------------------------------ units

def _write_racing(monkeypatch: pytest.MonkeyPatch, target: Path, race: Callable[[], None], match: str) -> None:
    """write_text_atomic(target) with ``race`` run after the temporary file is written, before the rename:
    it must refuse with ``match``."""
    real_write = outputs._write_temp

    def write_then_race(fd: int, text: str) -> None:
        real_write(fd, text)
        race()

    monkeypatch.setattr(outputs, "_write_temp", write_then_race)
    with pytest.raises(UnsafeOutputError, match=match):
        write_text_atomic(target, "{}\n")


def test_write_text_atomic_never_renames_over_a_fifo_that_appears_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO made at the target between the check and the rename (after the temporary file is written)
    is left alone, and the temporary file is removed."""
    target = tmp_path / "r.json"
    _write_racing(monkeypatch, target, lambda: os.mkfifo(target), "became a FIFO while being written")
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_write_text_atomic_never_renames_over_a_symlink_that_appears_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r.json"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    _write_racing(monkeypatch, target, lambda: target.symlink_to(victim), "became a symbolic link")
    assert target.is_symlink() and victim.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "victim"]


def test_save_never_replaces_a_device_or_fifo(tmp_path: Path) -> None:
    """results.save used to rename its temporary file over whatever was at the path."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    dev = _char_device(tmp_path / "full.json")
    doc = results.loads(json.dumps({"schema": "iolab.run/1", "created": "", "tool_version": "0", "machine": {},
                                    "target": {}, "load": {}, "limits": {}, "environment": {}, "scenarios": []}))
    for path in (fifo, dev):
        with pytest.raises(OSError):
            results.save(doc, path)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISCHR(os.lstat(dev).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.json", "full.json"]


def test_write_text_atomic_through_a_link_keeps_the_link_and_the_mode(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to("real.json")
    assert write_text_atomic(link, "new\n") == real
    assert link.is_symlink() and real.read_text() == "new\n" and stat.S_IMODE(real.stat().st_mode) == 0o640
    fresh = write_text_atomic(tmp_path / "a" / "b" / "new.json", "x\n")
    assert fresh.read_text() == "x\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_check_leaves_nothing_behind_and_allows_what_it_should(tmp_path: Path) -> None:
    (tmp_path / "exists.json").write_text("x\n")
    (tmp_path / "link.json").symlink_to("exists.json")
    check_outputs(("-o", tmp_path / "exists.json"), ("--html", tmp_path / "link2.html"),
                  ("--hdr-log", tmp_path / "new" / "deeper" / "h.hlog"), ("--markdown", "-"), ("--x", None),
                  stdout=("--markdown",))
    check_outputs(("-o", tmp_path / "link.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.json", "link.json"]
    with pytest.raises(UsageError, match="also the file of -o"):
        check_outputs(("-o", tmp_path / "exists.json"), ("--html", tmp_path / "link.json"))


def test_keeper_falls_back_once_and_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gone").write_text("a file where the directory was\n")
    warned: list[str] = []
    keeper = OutputKeeper(warn=warned.append)
    first = keeper.write("-o", tmp_path / "gone" / "r.json", "one\n")
    second = keeper.write("-o", tmp_path / "gone" / "r.json", "two\n")
    assert first == second == keeper.where(tmp_path / "gone" / "r.json")
    assert first.parent == tmp_path and first.name.startswith("iolab-results-fallback-")
    assert first.read_text() == "two\n" and len(warned) == 1 and str(first) in warned[0]
    assert keeper.write("--html", tmp_path / "fine.html", "<p>\n") == tmp_path / "fine.html"
    with pytest.raises(OutputWriteError) as err:
        keeper.raise_if_fell_back()
    assert err.value.exit_code == 9 and str(first) in str(err.value) and "fine.html" not in str(err.value)


def test_fallback_goes_to_tmpdir_when_the_current_directory_is_gone(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr("tempfile.tempdir", None)
    gone = tmp_path / "cwd"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # os.getcwd() now fails with ENOENT
    (tmp_path / "blocker").write_text("x\n")
    keeper = OutputKeeper(warn=lambda _: None)
    kept = keeper.write("--hdr-log", tmp_path / "blocker" / "h.hlog", "log\n")
    assert kept.parent == tmpdir and kept.name.startswith("iolab-hdr-log-fallback-") and kept.suffix == ".hlog"
    assert kept.read_text() == "log\n"
