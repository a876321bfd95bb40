"""Probe against real processes; fake /proc bytes only for races and names a real process cannot stage."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from iolab.errors import AccessDenied, NoSuchProcess
from iolab.measure.probe import (
    Counters,
    Probe,
    ThreadCounters,
    delta,
    sample_between,
    thread_totals,
)
from iolab.measure.procfs import CLOCK_TICKS, PAGE_SIZE

GUARD_S = 10.0  # how long to wait for a child before failing; never asserted as a timing

# The start of both children below: sleeper() is a named thread that sleeps in a loop until ``stop``,
# ``ready`` once it has slept 20 times (enough context switches to count).
NAMED_SLEEPER = r"""
import ctypes, os, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)

def set_name(name):
    libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME, the calling thread only

def sleeper(name, stop, ready):
    set_name(name)
    n = 0
    while not stop.is_set():
        time.sleep(0.005)
        n += 1
        if n == 20:
            ready.set()
    ready.set()
"""

# A child with named threads: "keeper" threads sleep until exit, "shorty" threads until told to stop.
THREADS_CHILD = NAMED_SLEEPER + r"""
def writer(n):
    set_name("writer")
    r, w = os.pipe()
    for _ in range(n):
        os.write(w, b"x")
    os.close(r); os.close(w)

stop_all, stop_short = threading.Event(), threading.Event()
keepers, shorties = [], []
print("up", flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "start":
        readies = []
        for group, stop, name, count in ((keepers, stop_all, "keeper", 2), (shorties, stop_short, "shorty", 3)):
            for _ in range(count):
                ready = threading.Event()
                t = threading.Thread(target=sleeper, args=(name, stop, ready))
                t.start()
                group.append(t)
                readies.append(ready)
        for ready in readies:
            ready.wait()
        print("started", flush=True)
    elif cmd == "stop-short":
        stop_short.set()
        for t in shorties:
            t.join()
        print("joined", flush=True)
    elif cmd == "write":
        r, w = os.pipe()
        for _ in range(int(args[0])):
            os.write(w, b"x")
        os.close(r); os.close(w)
        print("wrote", flush=True)
    elif cmd == "thread-write":
        t = threading.Thread(target=writer, args=(int(args[0]),))
        t.start(); t.join()
        print("wrote", flush=True)
stop_all.set(); stop_short.set()
"""

# A grandchild that writes, keeps a named sleeping thread, and exits when its stdin closes.
GRANDCHILD = NAMED_SLEEPER + r"""
stop, ready = threading.Event(), threading.Event()
t = threading.Thread(target=sleeper, args=("gc-sleeper", stop, ready)); t.start()
r, w = os.pipe()
for _ in range(250):
    os.write(w, b"y")
ready.wait()
print("gc-ready", flush=True)
sys.stdin.read()
stop.set(); t.join()
"""

TREE_CHILD = r"""
import subprocess, sys
gc = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert gc.stdout.readline().strip() == "gc-ready"
print("ready", gc.pid, flush=True)
for line in sys.stdin:
    if line.strip() == "reap":
        gc.stdin.close(); gc.wait()
        print("reaped", flush=True)
if gc.poll() is None:
    gc.stdin.close(); gc.wait()
"""

SLEEPER = 'import sys\nprint("up", flush=True)\nsys.stdin.read()\n'


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        try:
            kids = psutil.Process(p.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        assert p.stdin is not None and p.stdout is not None
        p.stdin.close()  # the children exit on EOF and reap their own children
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for k in kids:
            try:
                k.kill()
            except psutil.Error:
                pass
        p.kill()
        p.wait(timeout=GUARD_S)
        p.stdout.close()


def send(p: subprocess.Popen[bytes], line: str) -> None:
    assert p.stdin is not None
    p.stdin.write(line.encode() + b"\n")


def ask(p: subprocess.Popen[bytes], line: str, word: str) -> str:
    """Send the child ``line`` and wait for its answer, the next line starting with ``word``."""
    send(p, line)
    return expect(p, word)


def expect(p: subprocess.Popen[bytes], word: str) -> str:
    """The child's next line starting with ``word`` (fails instead of hanging)."""
    assert p.stdout is not None
    deadline = time.monotonic() + GUARD_S
    buf = b""
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([p.stdout], [], [], max(0.0, left))
        if not ready:
            raise AssertionError(f"child {p.pid} did not say {word!r}; got {buf!r}")
        ch = p.stdout.read(1)
        if not ch:
            raise AssertionError(f"child {p.pid} exited (rc={p.poll()}) before saying {word!r}")
        buf += ch
        if ch == b"\n":
            line, buf = buf.decode().strip(), b""
            if line.startswith(word):
                return line


def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def child(spawn: Callable[..., subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """THREADS_CHILD, up and waiting for its commands."""
    p = spawn(THREADS_CHILD)
    expect(p, "up")
    return p


CUMULATIVE = (
    "voluntary",
    "involuntary",
    "main_voluntary",
    "main_involuntary",
    "cpu_user_s",
    "cpu_sys_s",
    "write_syscalls",
    "write_bytes",
)


def assert_not_backwards(readings: list[Counters]) -> None:
    for a, b in zip(readings, readings[1:], strict=False):
        for f in CUMULATIVE:
            assert getattr(b, f) >= getattr(a, f), f
        assert b.t_s >= a.t_s


def by_name(c: Counters, name: str) -> dict[tuple[int, int], ThreadCounters]:
    return {(t.tid, t.start_ticks): t for t in c.per_thread if t.name == name}


# ------------------------------------------------------------------------------------- real processes


def test_exited_threads_keep_their_counts_and_totals_never_decrease(child: subprocess.Popen[bytes]) -> None:
    probe = Probe(child.pid)
    c0 = probe.read()
    ask(child, "start", "started")
    c1 = probe.read()
    shorties1 = by_name(c1, "shorty")
    assert len(shorties1) == 3 and all(t.alive and t.voluntary >= 20 for t in shorties1.values())
    assert len(by_name(c1, "keeper")) == 2
    assert c1.threads == c0.threads + 5

    ask(child, "stop-short", "joined")
    # A joined Python thread can still be in /proc for a moment (it finishes exiting after join returns).
    wait_until(lambda: len(os.listdir(f"/proc/{child.pid}/task")) == c1.threads - 3, "the shorties to exit")
    c2 = probe.read()
    shorties2 = by_name(c2, "shorty")
    assert shorties2.keys() == shorties1.keys()
    for key, t in shorties2.items():
        assert not t.alive
        assert t.voluntary >= shorties1[key].voluntary
    assert c2.threads == c1.threads - 3
    # The kernel forgot the shorties; the totals did not.
    live_sum = sum(
        int(line.split()[1])
        for tid in os.listdir(f"/proc/{child.pid}/task")
        for line in Path(f"/proc/{child.pid}/task/{tid}/status").read_text().splitlines()
        if line.startswith("voluntary_ctxt_switches")
    )
    assert c2.voluntary >= sum(t.voluntary for t in shorties2.values()) + c2.main_voluntary
    c3 = probe.read()
    assert live_sum < c3.voluntary
    assert by_name(c3, "shorty") == shorties2  # dead threads are frozen at their last values
    assert c3.voluntary == sum(t.voluntary for t in c3.per_thread)
    assert_not_backwards([c0, c1, c2, c3])

    totals = {t.name: t for t in thread_totals(c0, c2)}
    assert totals["shorty"].threads == 3
    # They were born after c0, so they count from 0.
    assert totals["shorty"].voluntary_ctx_switches == sum(t.voluntary for t in shorties2.values())
    assert totals["keeper"].threads == 2 and totals["main"].threads == 1
    assert totals["main"].voluntary_ctx_switches == c2.main_voluntary - c0.main_voluntary
    ordered = [t.voluntary_ctx_switches for t in thread_totals(c0, c2)]
    assert ordered == sorted(ordered, reverse=True)
    assert sum(t.voluntary_ctx_switches for t in thread_totals(c0, c2)) == delta(c0, c2).voluntary
    # Threads already dead at the window's start did nothing in it.
    assert "shorty" not in {t.name for t in thread_totals(c2, c3)}

    main = [t for t in c3.per_thread if t.is_main]
    assert len(main) == 1 and main[0].tid == child.pid
    assert main[0].name == Path(f"/proc/{child.pid}/comm").read_text().rstrip("\n")


def test_main_thread_matches_proc_status_and_whole_process_is_larger(child: subprocess.Popen[bytes]) -> None:
    ask(child, "start", "started")
    ps = psutil.Process(child.pid)  # num_ctx_switches() reads /proc/PID/status, as pidstat -w does
    before = ps.num_ctx_switches()
    c = Probe(child.pid).read()
    after = ps.num_ctx_switches()
    assert before.voluntary <= c.main_voluntary <= after.voluntary
    assert before.involuntary <= c.main_involuntary <= after.involuntary
    assert c.voluntary > c.main_voluntary and c.involuntary >= c.main_involuntary
    assert c.threads == ps.num_threads()
    assert c.rss_bytes == pytest.approx(ps.memory_info().rss, rel=0.1)
    cpu_before = ps.cpu_times()
    c = Probe(child.pid).read()
    cpu_after = ps.cpu_times()
    assert cpu_before.user <= c.cpu_user_s <= cpu_after.user
    assert cpu_before.system <= c.cpu_sys_s <= cpu_after.system


def test_write_syscalls_and_bytes_include_threads_the_probe_never_saw(child: subprocess.Popen[bytes]) -> None:
    probe = Probe(child.pid)
    a = probe.read()
    ask(child, "write 300", "wrote")
    b = probe.read()
    assert b.write_syscalls - a.write_syscalls >= 300
    assert b.write_bytes - a.write_bytes >= 300
    ask(child, "thread-write 200", "wrote")  # a thread that is born, writes and exits between two readings
    c = probe.read()
    assert c.write_syscalls - b.write_syscalls >= 200
    w = delta(a, c)
    assert w.write_syscalls == c.write_syscalls - a.write_syscalls and w.duration_s == c.t_s - a.t_s


def test_sampling_thread_produces_samples_and_stops(child: subprocess.Popen[bytes]) -> None:
    ask(child, "start", "started")
    probe = Probe(child.pid, interval_s=0.05)
    t0 = time.monotonic()
    probe.start()
    wait_until(lambda: len(probe.samples) >= 4, "4 samples")
    probe.stop()
    elapsed = time.monotonic() - t0
    samples = probe.samples
    # Ticks are scheduled on interval boundaries after start(), so there cannot be more than this.
    assert 4 <= len(samples) <= elapsed / 0.05 + 1
    assert all(s.t_s > 0 for s in samples)
    assert [s.t_s for s in samples] == sorted({s.t_s for s in samples})
    assert all(s.threads == 6 and s.rss_bytes > 0 for s in samples)
    assert all(s.cswch_per_s >= 0 and s.cpu_user_pct >= 0 and s.write_syscalls_per_s >= 0 for s in samples)
    assert any(s.cswch_per_s > 0 for s in samples)  # five threads sleep in a loop
    later = probe.read()
    assert probe.started_t_s < later.t_s and later.t_s - probe.started_t_s >= samples[-1].t_s
    probe.stop()
    time.sleep(0.2)
    assert len(probe.samples) == len(samples) and probe.error is None
    with pytest.raises(RuntimeError):
        probe.start()


def test_process_that_dies_mid_run_sets_error(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    p = spawn(SLEEPER)
    expect(p, "up")
    probe = Probe(p.pid, interval_s=0.05)
    probe.start()
    wait_until(lambda: len(probe.samples) >= 1, "a sample")
    p.kill()  # not reaped yet: a zombie, which has /proc entries but is gone
    wait_until(lambda: probe.error is not None, "the probe to notice")
    assert isinstance(probe.error, NoSuchProcess)
    probe.stop()
    probe.stop()
    assert f"iolab-probe-{p.pid}" not in {t.name for t in threading.enumerate()}
    assert len(probe.samples) >= 1
    with pytest.raises(NoSuchProcess):
        probe.read()
    p.wait()
    with pytest.raises(NoSuchProcess):
        probe.read()


def test_probe_of_a_missing_pid_raises() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())  # pids are below pid_max
    probe = Probe(pid_max)
    with pytest.raises(NoSuchProcess):
        probe.start()
    probe.stop()
    with pytest.raises(RuntimeError):
        _ = probe.started_t_s


def test_process_tree_is_summed_and_exited_children_keep_counts(
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    p = spawn(TREE_CHILD, GRANDCHILD)
    gc_pid = int(expect(p, "ready").split()[1])
    probe = Probe(p.pid)
    full = probe.read()
    alone = Probe(p.pid, include_children=False).read()
    assert {t.pid for t in full.per_thread} == {p.pid, gc_pid}
    assert {t.pid for t in alone.per_thread} == {p.pid}
    assert full.write_syscalls >= alone.write_syscalls + 250
    assert full.threads >= alone.threads + 2 and full.voluntary > alone.voluntary
    assert full.rss_bytes > alone.rss_bytes
    # The root's main thread only, as pidstat would show for the root pid.
    assert (full.main_voluntary, full.main_involuntary) == (alone.main_voluntary, alone.main_involuntary)
    totals = {t.name: t for t in thread_totals(alone, full)}
    assert totals["main"].threads == 2 and totals["gc-sleeper"].threads == 1

    ask(p, "reap", "reaped")
    after = probe.read()
    assert_not_backwards([full, after])
    assert psutil.Process(p.pid).children() == []
    gone = [t for t in after.per_thread if t.pid == gc_pid]
    assert gone and not any(t.alive for t in gone)
    assert after.threads == alone.threads


def test_unreadable_io_is_access_denied(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to read as another user")
    p = spawn(SLEEPER)
    expect(p, "up")
    os.seteuid(65534)  # /proc/PID/io is 0400 and ptrace-checked: another user cannot read it
    try:
        with pytest.raises(AccessDenied, match="/io"):
            Probe(p.pid).read()
    finally:
        os.seteuid(0)


# ------------------------------------------------------------------------------------------ fake /proc


def stat_line(
    pid: int, comm: str, state: str = "S", utime: int = 0, stime: int = 0, start: int = 1000
) -> str:
    """A /proc/PID/stat line as Linux 6.x prints it (52 fields); only state, utime, stime, start vary."""
    head = f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start}"
    return head + " 1000000 250" + " 0" * 30 + "\n"


def write_task(proc: Path, pid: int, tid: int, comm: str, vol: int, invol: int, *, utime: int = 0,
               start: int = 1000, state: str = "S") -> None:
    d = proc / str(pid) / "task" / str(tid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(stat_line(tid, comm, state, utime, 0, start))
    (d / "status").write_text(
        f"Name:\t{comm}\nvoluntary_ctxt_switches:\t{vol}\nnonvoluntary_ctxt_switches:\t{invol}\n"
    )


def write_process(proc: Path, pid: int, comm: str, *, utime: int, stime: int, start: int = 1000,
                  syscw: int = 7, wchar: int = 70, state: str = "S") -> None:
    d = proc / str(pid)
    (d / "task").mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(stat_line(pid, comm, state, utime, stime, start))
    (d / "io").write_text(
        f"rchar: 1\nwchar: {wchar}\nsyscr: 1\nsyscw: {syscw}\nread_bytes: 0\nwrite_bytes: 0\n"
    )
    (d / "statm").write_text("1000 250 100 1 0 100 0\n")


def test_fake_comm_with_spaces_and_parens(tmp_path: Path) -> None:
    write_process(tmp_path, 100, "a) (b c", utime=250, stime=50)
    write_task(tmp_path, 100, 100, "a) (b c", 5, 1, utime=200)
    write_task(tmp_path, 100, 101, ") S 1 (x)", 9, 2, utime=40, start=1200)
    c = Probe(100, proc_root=str(tmp_path), include_children=False).read()
    names = {t.tid: (t.name, t.is_main) for t in c.per_thread}
    assert names == {100: ("a) (b c", True), 101: (") S 1 (x)", False)}
    assert c.cpu_user_s == pytest.approx(250 / CLOCK_TICKS) and c.cpu_sys_s == pytest.approx(50 / CLOCK_TICKS)
    assert [t.cpu_s for t in c.per_thread] == pytest.approx([200 / CLOCK_TICKS, 40 / CLOCK_TICKS])
    assert (c.voluntary, c.involuntary, c.main_voluntary, c.main_involuntary) == (14, 3, 5, 1)
    assert (c.write_syscalls, c.write_bytes, c.rss_bytes, c.threads) == (7, 70, 250 * PAGE_SIZE, 2)


def test_fake_vanished_tasks_are_skipped_then_kept(tmp_path: Path) -> None:
    write_process(tmp_path, 100, "srv", utime=1, stime=1)
    write_task(tmp_path, 100, 100, "srv", 5, 0)
    write_task(tmp_path, 100, 101, "worker", 30, 3)
    (tmp_path / "100" / "task" / "102").mkdir()  # listed, gone before its stat was opened
    write_task(tmp_path, 100, 103, "worker", 4, 0)
    (tmp_path / "100" / "task" / "103" / "status").unlink()  # gone between stat and status
    probe = Probe(100, proc_root=str(tmp_path), include_children=False)
    c1 = probe.read()
    assert {t.tid for t in c1.per_thread} == {100, 101} and c1.threads == 2

    shutil.rmtree(tmp_path / "100" / "task" / "101")  # the worker exits
    c2 = probe.read()
    assert c2.voluntary == c1.voluntary and c2.threads == 1
    assert [t.alive for t in c2.per_thread] == [True, False]

    # The tid comes back as a new thread (pid_max wraps): a new start time, counted from 0.
    write_task(tmp_path, 100, 101, "worker", 2, 0, start=5000)
    c3 = probe.read()
    workers = [t for t in c3.per_thread if t.tid == 101]
    assert [(t.alive, t.voluntary) for t in workers] == [(False, 30), (True, 2)]
    assert c3.voluntary == 5 + 30 + 2
    totals = {t.name: t for t in thread_totals(c2, c3)}
    assert (totals["worker"].threads, totals["worker"].voluntary_ctx_switches) == (1, 2)
    assert totals["main"].voluntary_ctx_switches == 0


def test_fake_root_zombie_or_reused_pid_is_gone(tmp_path: Path) -> None:
    write_process(tmp_path, 100, "srv", utime=1, stime=1)
    write_task(tmp_path, 100, 100, "srv", 5, 0)
    write_task(tmp_path, 100, 101, "worker", 5, 0)
    probe = Probe(100, proc_root=str(tmp_path), include_children=False)
    probe.read()
    # A zombie leader with a live thread is a running process (main called pthread_exit).
    write_process(tmp_path, 100, "srv", utime=2, stime=1, state="Z")
    assert probe.read().threads == 2
    shutil.rmtree(tmp_path / "100" / "task" / "101")
    with pytest.raises(NoSuchProcess):
        probe.read()
    write_process(tmp_path, 100, "other", utime=0, stime=0, start=9999)
    with pytest.raises(NoSuchProcess, match="another process"):
        probe.read()


def test_sample_rates_use_the_elapsed_time() -> None:
    def counters(t_s: float, k: int) -> Counters:
        return Counters(
            t_s=t_s,
            voluntary=100 * k,
            involuntary=10 * k,
            main_voluntary=20 * k,
            main_involuntary=2 * k,
            cpu_user_s=0.5 * k,
            cpu_sys_s=0.25 * k,
            write_syscalls=40 * k,
            write_bytes=4000 * k,
            rss_bytes=1 << 20,
            threads=3,
            per_thread=(),
        )

    s = sample_between(counters(10.0, 1), counters(12.0, 2), t0_s=9.0)  # 2 s elapsed, not the nominal 1 s
    assert (s.t_s, s.cswch_per_s, s.nvcswch_per_s, s.main_cswch_per_s, s.main_nvcswch_per_s) == (
        3.0,
        50,
        5,
        10,
        1,
    )
    assert (s.cpu_user_pct, s.cpu_sys_pct) == pytest.approx((25.0, 12.5))
    assert (s.write_syscalls_per_s, s.write_bytes_per_s, s.rss_bytes, s.threads) == (20, 2000, 1 << 20, 3)
    with pytest.raises(ValueError):
        sample_between(counters(12.0, 2), counters(12.0, 2), t0_s=0.0)


def test_injected_clock_stamps_readings(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    p = spawn(SLEEPER)
    expect(p, "up")
    ticks = iter([100.0, 101.5])
    probe = Probe(p.pid, clock=lambda: next(ticks))
    assert (probe.read().t_s, probe.read().t_s) == (100.0, 101.5)
