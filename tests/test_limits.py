"""Limits, for real where we can: root on this machine gets cgroup v1 (the cgroup2 mount has no controllers).

Fake trees (tmp_path as `root`) only stand in for layouts this machine does not have.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from iolab.errors import LimitsError, UsageError
from iolab.measure import cgroup_sweep, limits
from iolab.measure.limits import (
    LimitSession,
    LimitsRequest,
    parse_cpus,
    parse_memory,
    sweep_stale,
    systemd_run_argv,
)

MiB = 1 << 20
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create cgroups")


def _ours() -> list[str]:
    return limits.find_cgroups(owner=os.getpid())


@pytest.fixture
def session() -> Iterator[Callable[..., LimitSession]]:
    """Sessions on the real cgroup tree; whatever a test leaves is removed, then reported as a failure."""
    made: list[LimitSession] = []

    def make(**kw: object) -> LimitSession:
        s = LimitSession(LimitsRequest(**kw), name="test")  # type: ignore[arg-type]
        made.append(s)
        if s.prepare().method == "none" and (s.request.cpus or s.request.memory_bytes):
            pytest.skip(f"no cgroup is writable here: {s.prepare().reason}")
        return s

    yield make
    for s in made:
        s.close()
    leaked = _ours()
    for path in leaked:
        cgroup_sweep.kill_and_remove(path)
    assert not leaked, f"cgroups left behind: {leaked}"


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(code: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.communicate()


def _cgroup_lines(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


@root_only
def test_quota_affinity_and_close_on_a_real_server(
    session: Callable[..., LimitSession], spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    # 0.1 CPU, not the default 0.5: on a busy machine the loop's fair share of its core can stay under 0.5
    # (three other loops on CPU 0 held it at ~0.25: never throttled), never under 0.1.
    s = session(cpus=0.1)
    applied = s.prepare()
    assert applied.method in ("cgroup1", "cgroup2")
    assert applied.cpus == 0.1 and applied.memory_bytes == 256 * MiB
    assert s.wrap_command(["uvicorn", "x:app"]) == ["uvicorn", "x:app"]
    child = spawn("while True: pass")
    s.attach(child.pid)

    name = os.path.basename(applied.cgroup_paths[0])
    assert name.startswith(f"iolab-{os.getpid()}-") and name in _cgroup_lines(child.pid)
    if len(os.sched_getaffinity(0)) >= 2:
        assert os.sched_getaffinity(child.pid) == set(applied.server_cpus or ())
        assert set(applied.load_cpus or ()).isdisjoint(applied.server_cpus or ())

    proc = psutil.Process(child.pid)
    t0, c0 = time.monotonic(), sum(proc.cpu_times()[:2])
    time.sleep(1.5)
    used = (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0)
    assert 0.02 < used < 0.3, f"a busy loop under a 0.1-CPU quota used {used:.2f} CPU"
    stat = s.read_cpu_stat()
    assert (
        stat["nr_throttled"] > 0 and stat["throttled_usec"] > 0 and stat["nr_periods"] >= stat["nr_throttled"]
    )
    # Pages the child touched before attach() stay charged where they were (v1 cannot move charges on
    # this kernel), so a child that finished starting up first can show 0 here.
    peak = s.read_memory_peak_bytes()
    assert peak is not None and 0 <= peak < 256 * MiB

    s.close()  # the server is still running: close must kill it
    assert child.wait(timeout=5) == -9
    assert not any(os.path.exists(p) for p in applied.cgroup_paths)
    s.close()  # idempotent
    assert s.read_cpu_stat()["nr_throttled"] >= stat["nr_throttled"]  # the snapshot taken before removal


@root_only
def test_memory_limit_kills_a_hog_and_only_memory_is_limited(
    session: Callable[..., LimitSession], spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    s = session(cpus=0, memory_bytes=64 * MiB, pin=False)
    applied = s.prepare()
    assert (applied.cpus, applied.memory_bytes, applied.server_cpus) == (None, 64 * MiB, None)
    assert "not pinned" in applied.reason
    hog = spawn("import sys; sys.stdin.readline(); b = b'x' * (200 << 20); print('survived', flush=True)")
    s.attach(hog.pid)
    assert hog.stdin is not None
    hog.stdin.write("go\n")
    hog.stdin.flush()
    assert hog.wait(timeout=10) == -9  # the OOM killer, inside the cgroup
    peak = s.read_memory_peak_bytes()
    assert peak is not None and 32 * MiB < peak <= 64 * MiB


@root_only
def test_close_kills_children_of_the_server_too(
    session: Callable[..., LimitSession], spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    s = session()
    parent = spawn("""
        import subprocess, sys, time
        g = subprocess.Popen(["sleep", "60"])
        print(g.pid, flush=True)
        time.sleep(60)
    """)
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    s.attach(parent.pid)
    name = os.path.basename(s.prepare().cgroup_paths[0])
    assert name in _cgroup_lines(grandchild)
    s.close()
    assert parent.wait(timeout=5) == -9
    deadline = time.monotonic() + 5
    while psutil.pid_exists(grandchild) and psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the server's child survived close()"
        time.sleep(0.02)


def test_nothing_asked_is_method_none_with_a_reason(session: Callable[..., LimitSession]) -> None:
    applied = session(cpus=0, memory_bytes=None, require=True).prepare()
    assert applied.method == "none" and applied.cpus is None and applied.memory_bytes is None
    assert "no CPU or memory limit was asked" in applied.reason
    assert applied.cgroup_paths == () and applied.warning() is None
    json.dumps(applied.to_dict())


def _fake(tmp_path: Path, mountinfo: str, cgroup: str = "0::/\n", systemd: bool = False) -> str:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(textwrap.dedent(mountinfo))
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    if systemd:
        (tmp_path / "run/systemd/system").mkdir(parents=True)
    return str(tmp_path)


NO_CGROUPS = "22 1 0:21 / /proc rw - proc proc rw\n"


def test_no_cgroup_mounts_falls_back_to_none_or_raises_when_required(tmp_path: Path) -> None:
    root = _fake(tmp_path, NO_CGROUPS)
    with LimitSession(LimitsRequest(), root=root) as s:
        applied = s.prepare()
    assert applied.method == "none" and applied.cpus is None
    assert applied.asked_cpus == 0.5 and applied.asked_memory_bytes == 256 * MiB
    for why in ("no cgroup2 mount", "no cgroup v1 cpu hierarchy", "systemd is not running"):
        assert why in applied.reason
    assert applied.warning() is not None
    with pytest.raises(LimitsError) as err:
        LimitSession(LimitsRequest(require=True), root=root).prepare()
    assert "\n" not in str(err.value) and "no limit could be applied" in str(err.value)


def test_hybrid_layout_skips_a_cgroup2_without_controllers(tmp_path: Path) -> None:
    root = _fake(
        tmp_path,
        """\
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    """,
        cgroup="4:memory:/\n1:cpu:/\n0::/\n",
    )
    for d in ("cpu", "memory", "unified"):
        (tmp_path / "sys/fs/cgroup" / d).mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/unified/cgroup.controllers").write_text("hugetlb\n")
    with LimitSession(LimitsRequest(), root=root) as s:  # close() cannot rmdir plain dirs; it only logs
        applied = s.prepare()
    assert applied.method == "cgroup1"
    assert "unified does not offer the cpu and memory controller" in applied.reason
    cpu_dir, mem_dir = (Path(p) for p in applied.cgroup_paths)
    assert (cpu_dir / "cpu.cfs_quota_us").read_text() == "50000"
    assert (mem_dir / "memory.limit_in_bytes").read_text() == str(256 * MiB)


def test_pure_v2_climbs_to_the_first_cgroup_that_delegates_controllers(tmp_path: Path) -> None:
    own = "/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope"
    root = _fake(
        tmp_path,
        r"""
        29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
        30 23 0:27 / /mnt/with\040space rw - tmpfs tmpfs rw
    """,
        cgroup=f"0::{own}\n",
    )
    top = tmp_path / "sys/fs/cgroup"
    (top / own.lstrip("/")).mkdir(parents=True)
    (top / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    app = top / "user.slice/user-1000.slice/user@1000.service/app.slice"
    (app / "cgroup.controllers").write_text("cpu memory pids\n")
    (app / "cgroup.subtree_control").write_text("pids\n")
    (app / "term.scope/cgroup.controllers").write_text("\n")  # nothing delegated below the scope
    with LimitSession(LimitsRequest(cpus=1.5, memory_bytes=512 * MiB), root=root) as s:
        applied = s.prepare()
    assert applied.method == "cgroup2" and applied.cpus == 1.5
    (path,) = (Path(p) for p in applied.cgroup_paths)
    assert path.parent == app
    assert (app / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (path / "cpu.max").read_text() == "150000 100000"
    assert (path / "memory.max").read_text() == str(512 * MiB)


@pytest.mark.skipif(shutil.which("systemd-run") is None, reason="systemd-run is not installed")
def test_systemd_run_is_the_fallback_and_wraps_the_command(tmp_path: Path) -> None:
    root = _fake(tmp_path, NO_CGROUPS, systemd=True)
    s = LimitSession(LimitsRequest(), root=root)
    assert s.prepare().method == "systemd-run"
    user = [] if os.geteuid() == 0 else ["--user"]
    assert s.wrap_command(["uvicorn", "app:app", "--port", "9000"]) == [
        "systemd-run",
        "--scope",
        "--quiet",
        *user,
        "-p",
        "CPUQuota=50%",
        "-p",
        f"MemoryMax={256 * MiB}",
        "--",
        "uvicorn",
        "app:app",
        "--port",
        "9000",
    ]
    s.close()


def test_systemd_run_argv_for_other_limits() -> None:
    assert systemd_run_argv(1.25, None, ["x"], user=True) == [
        "systemd-run",
        "--scope",
        "--quiet",
        "--user",
        "-p",
        "CPUQuota=125%",
        "--",
        "x",
    ]
    assert systemd_run_argv(None, MiB, ["x"]) == [
        "systemd-run",
        "--scope",
        "--quiet",
        "-p",
        f"MemoryMax={MiB}",
        "--",
        "x",
    ]


@root_only
def test_sweep_removes_only_cgroups_of_dead_owners(session: Callable[..., LimitSession]) -> None:
    applied = session(memory_bytes=None).prepare()  # proves a cpu hierarchy is writable here
    parent = os.path.dirname(applied.cgroup_paths[0])
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = (
        os.path.join(parent, f"iolab-{dead.pid}-0"),
        os.path.join(parent, f"iolab-{os.getpid()}-999"),
    )
    os.mkdir(stale)
    os.mkdir(live)
    try:
        assert stale in sweep_stale()
        assert not os.path.exists(stale) and os.path.isdir(live)
    finally:
        for d in (stale, live):
            if os.path.exists(d):
                os.rmdir(d)


@root_only
def test_sweep_kills_what_a_dead_run_left_and_removes_it(session: Callable[..., LimitSession]) -> None:
    # A run killed with SIGKILL: its cgroups stay, with a process in them (a server's worker, say).
    applied = session(memory_bytes=64 * MiB).prepare()  # the cpu and memory parents iolab uses here
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [os.path.join(os.path.dirname(p), f"iolab-{dead.pid}-0") for p in applied.cgroup_paths]
    worker = subprocess.Popen(["sleep", "60"])
    try:
        for d in stale:
            os.mkdir(d)
            Path(d, "cgroup.procs").write_text(str(worker.pid))
        removed = sweep_stale()
        assert worker.wait(timeout=5) == -9
        assert set(stale) <= set(removed) and not any(os.path.exists(d) for d in stale)
    finally:
        worker.kill()
        worker.wait()
        for d in stale:
            if os.path.exists(d):
                os.rmdir(d)


@root_only
def test_a_crashing_python_still_removes_its_cgroups(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text(
        textwrap.dedent("""
        import subprocess
        from iolab.measure.limits import LimitSession, LimitsRequest
        s = LimitSession(LimitsRequest())
        applied = s.prepare()
        child = subprocess.Popen(["sleep", "60"])
        s.attach(child.pid)
        print(child.pid, *applied.cgroup_paths, flush=True)
        raise RuntimeError("crash")
    """)
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=Path(limits.__file__).parents[1],
    )
    assert "RuntimeError: crash" in out.stderr
    pid, *paths = out.stdout.split()
    assert paths and not any(os.path.exists(p) for p in paths)
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256M", 256 * MiB),
        ("256MiB", 256 * MiB),
        ("256mb", 256 * MiB),
        ("1G", 1 << 30),
        ("512k", 512 << 10),
        ("1048576", MiB),
        ("1.5G", 3 << 29),
        (" 2g ", 2 << 30),
        ("0", 0),
    ],
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1M", "256X", "1.5", "twelve", "1e9", "256 M B"])
def test_parse_memory_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)


@pytest.mark.parametrize(("text", "expected"), [("0.5", 0.5), ("2", 2.0), ("0", 0.0), (" 1.25 ", 1.25)])
def test_parse_cpus(text: str, expected: float) -> None:
    assert parse_cpus(text) == expected


@pytest.mark.parametrize("text", ["", "half", "-1", "nan", "inf", "0.001"])
def test_parse_cpus_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpus(text)


def test_memory_below_the_minimum_is_refused() -> None:
    with pytest.raises(UsageError) as err:
        LimitsRequest(memory_bytes=1024)
    assert "1 KiB is below the smallest memory limit iolab accepts, 32 MiB" in str(err.value)
    with pytest.raises(UsageError):
        LimitsRequest(cpus=0.005)
    LimitsRequest(memory_bytes=limits.MIN_MEMORY_BYTES, cpus=limits.MIN_CPUS)  # the minimum itself is fine


def _fake_v2(tmp_path: Path) -> str:
    root = _fake(tmp_path, "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    top = tmp_path / "sys/fs/cgroup"
    top.mkdir(parents=True)
    (top / "cgroup.controllers").write_text("cpu memory\n")
    (top / "cgroup.subtree_control").write_text("cpu memory\n")
    return root


V2_EVENTS = "low 0\nhigh 0\nmax 1532\noom {oom}\noom_kill {kills}\noom_group_kill 0\n"


def test_v2_memory_events_name_the_oom_kill(tmp_path: Path) -> None:
    with LimitSession(LimitsRequest(cpus=0), root=_fake_v2(tmp_path)) as s:
        (path,) = s.prepare().cgroup_paths
        assert s.oom_kills() is None  # no memory.events: nothing to tell
        Path(path, "memory.events").write_text(V2_EVENTS.format(oom=1, kills=1))
        assert s.oom_kills() == 1
        assert s.memory_limit_kill(-9) == "the server was killed by the memory limit (256 MiB)"
        assert s.memory_limit_kill(3) == ("the server exited with code 3 after the memory limit (256 MiB) "
                                          "killed 1 of its processes")
        assert s.memory_limit_kill(None) is None  # still running
    assert s.oom_kills() == 1  # read before the cgroup was removed, kept


def test_v2_an_oom_kill_without_reaching_the_limit_is_not_the_limits(tmp_path: Path) -> None:
    # oom_kill counts machine-wide OOM kills too; `oom` says whether our limit was ever reached.
    with LimitSession(LimitsRequest(cpus=0), root=_fake_v2(tmp_path)) as s:
        (path,) = s.prepare().cgroup_paths
        Path(path, "memory.events").write_text(V2_EVENTS.format(oom=0, kills=1))
        assert s.oom_kills() == 0 and s.memory_limit_kill(-9) is None


def test_v1_oom_control_and_the_old_kernel_fallback(tmp_path: Path) -> None:
    root = _fake(tmp_path, "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
                 cgroup="4:memory:/\n")
    (tmp_path / "sys/fs/cgroup/memory").mkdir(parents=True)
    with LimitSession(LimitsRequest(cpus=0, memory_bytes=64 * MiB), root=root) as s:
        (path,) = (Path(p) for p in s.prepare().cgroup_paths)
        (path / "memory.failcnt").write_text("0\n")  # stayed 0 on Linux 6.18 at a real OOM kill
        (path / "memory.max_usage_in_bytes").write_text(f"{64 * MiB}\n")
        (path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
        assert s.oom_kills() == 2
        assert s.memory_limit_kill(-9) == "the server was killed by the memory limit (64 MiB)"
        # Before Linux 4.13 there is no oom_kill line: a SIGKILL with usage at the limit is taken for one.
        (path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
        assert s.oom_kills() is None
        assert s.memory_limit_kill(-9) == "the server was killed by the memory limit (64 MiB)"
        assert s.memory_limit_kill(1) is None
        (path / "memory.max_usage_in_bytes").write_text(f"{40 * MiB}\n")
        assert s.memory_limit_kill(-9) is None


def test_v2_sweep_looks_in_our_cgroup_and_its_ancestors_only(tmp_path: Path) -> None:
    own = "/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope"
    root = _fake(tmp_path, "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", cgroup=f"0::{own}\n")
    top = tmp_path / "sys/fs/cgroup"
    app = top / "user.slice/user-1000.slice/user@1000.service/app.slice"
    (top / own.lstrip("/")).mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = app / f"iolab-{dead.pid}-0", app / f"iolab-{os.getpid()}-0"
    elsewhere = top / "user.slice/other.scope" / f"iolab-{dead.pid}-1"  # not on our path up: not looked at
    for d in (stale, live, elsewhere):
        d.mkdir(parents=True)
    assert sweep_stale(root) == [str(stale)]
    assert not stale.exists() and live.exists() and elsewhere.exists()
