"""Sample a server's process tree from /proc while the load runs: ``pidstat -w -u 1``, but for every thread.

What the kernel gives, and why this module reads it the way it does:

- ``/proc/PID/status`` ``voluntary_ctxt_switches`` covers the thread-group leader only (what ``pidstat -w``
  shows). Whole-process switches are the sum over ``/proc/PID/task/TID/status``; the kernel keeps no
  per-process sum, so a thread that exits takes its switches with it. The probe therefore remembers the last
  counters of every thread it has seen, keyed by (tid, start time) because tids are recycled (``pid_max`` is
  often 32768). A thread born and dead between two readings is never seen: its switches are lost (its CPU
  time and I/O are not, see below); ``wait4`` on the server's exit gives the exact whole-run figure.
- ``/proc/PID/stat`` utime/stime and ``/proc/PID/io`` syscw/wchar of the leader cover the whole process,
  exited threads included. Children reaped by the process go to cutime/cstime, which are not used, so a
  process tree is summed without double counting.
- The thread name is taken from ``/proc/PID/task/TID/stat`` (see procfs.py, which reads every file here).
- A process that has exited but is not reaped yet (a zombie) still has /proc entries; it counts as gone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import psutil

from iolab.errors import AccessDenied, NoSuchProcess, ProbeError
from iolab.measure import procfs
from iolab.measure.procfs import CLOCK_TICKS, Vanished
from iolab.results import Sample, ThreadTotal


@dataclass(frozen=True)
class ThreadCounters:
    tid: int
    name: str  # comm, 15 bytes at most
    is_main: bool  # tid == pid of its process (the event loop of a uvicorn worker)
    alive: bool
    voluntary: int
    involuntary: int
    cpu_s: float  # the thread's own stat utime+stime
    pid: int = 0  # the process of the tree the thread belongs to
    start_ticks: int = 0  # start time in clock ticks after boot: with tid, identifies the thread


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of the process tree at one instant; exited threads keep their last values."""

    t_s: float  # clock() when taken
    voluntary: int  # all threads ever seen, all processes of the tree
    involuntary: int
    main_voluntary: int  # main thread of the root process only (pidstat-compatible)
    main_involuntary: int
    cpu_user_s: float  # from /proc/PID/stat of each process (whole process)
    cpu_sys_s: float
    write_syscalls: int  # /proc/PID/io syscw, wchar (summed over the tree)
    write_bytes: int
    rss_bytes: int  # live processes; pages shared by forked workers are counted once per process
    threads: int  # live tasks
    per_thread: tuple[ThreadCounters, ...]


@dataclass(frozen=True)
class Window:
    """What the tree did between two readings."""

    duration_s: float
    voluntary: int
    involuntary: int
    main_voluntary: int
    main_involuntary: int
    cpu_user_s: float
    cpu_sys_s: float
    write_syscalls: int
    write_bytes: int


@dataclass
class _ProcTotals:
    """Last whole-process counters of one process of the tree, in kernel units."""

    user_ticks: int
    sys_ticks: int
    syscw: int
    wchar: int


class SamplingWindow:
    """What every probe (this host's /proc, or a remote agent's) keeps alike: when its sampling began and
    the error that ended it."""

    _started_t_s: float | None = None
    _error: BaseException | None = None

    @property
    def started_t_s(self) -> float:
        """clock() of the reading start() took: Sample.t_s == reading.t_s - started_t_s."""
        if self._started_t_s is None:
            raise RuntimeError(f"{type(self).__name__}.start() has not taken its first reading")
        return self._started_t_s

    @property
    def error(self) -> BaseException | None:
        return self._error


class Probe(SamplingWindow):
    """Reads the counters of a process (and, by default, its descendants) on demand or every interval."""

    def __init__(
        self,
        pid: int,
        *,
        interval_s: float = 1.0,
        include_children: bool = True,
        clock: Callable[[], float] = time.monotonic,
        proc_root: str = procfs.ROOT,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.pid = pid
        self.interval_s = interval_s
        self.include_children = include_children
        self._clock = clock
        self._proc = proc_root.rstrip("/") or "/"
        self._lock = threading.Lock()  # one reading at a time: they update the remembered counters
        self._root_start: int | None = None
        self._children_files: bool | None = None
        # Kernels without CONFIG_SCHEDSTATS/SCHED_INFO have no schedstat: use stat's ticks then.
        self._schedstat = procfs.has_schedstat(self._proc)
        self._threads: dict[tuple[int, int], ThreadCounters] = {}
        self._procs: dict[tuple[int, int], _ProcTotals] = {}
        self._samples: list[Sample] = []
        self._samples_lock = threading.Lock()
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._started_t_s: float | None = None

    # ------------------------------------------------------------------------------------------ public

    def start(self) -> None:
        if self._sampler is not None:
            raise RuntimeError("Probe.start() called twice")
        first = self.read()  # errors (no such process, access denied) surface here, in the caller
        self._started_t_s = first.t_s
        self._sampler = threading.Thread(
            target=self._run, args=(first, first.t_s), name=f"iolab-probe-{self.pid}", daemon=True
        )
        self._sampler.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None and self._sampler is not threading.current_thread():
            self._sampler.join()

    def read(self) -> Counters:
        with self._lock:
            return self._read_tree()

    @property
    def samples(self) -> tuple[Sample, ...]:
        with self._samples_lock:
            return tuple(self._samples)

    # ---------------------------------------------------------------------------------------- sampling

    def _run(self, prev: Counters, t0_s: float) -> None:
        deadline = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            try:
                cur = self.read()
            except Exception as exc:  # the caller learns of it through .error; the thread just ends
                self._error = exc
                return
            if cur.t_s > prev.t_s:
                with self._samples_lock:
                    self._samples.append(sample_between(prev, cur, t0_s))
                prev = cur
            deadline += self.interval_s
            now = time.monotonic()
            if deadline < now:  # fell behind (suspended VM, huge tree): skip ticks rather than burst
                deadline = now + self.interval_s

    # ----------------------------------------------------------------------------------------- reading

    def _read_tree(self) -> Counters:
        t_s = self._clock()
        live: set[tuple[int, int]] = set()
        rss_bytes = 0
        pending = [self.pid]
        visited: set[int] = set()
        while pending:
            pid = pending.pop()
            if pid in visited:
                continue
            visited.add(pid)
            try:
                children, rss = self._read_process(pid, live)
            except Vanished:
                if pid == self.pid:
                    raise NoSuchProcess(f"process {pid} does not exist (it exited)") from None
                continue  # a child of the tree exited: its remembered counters stay
            rss_bytes += rss
            pending.extend(children)
        for key, tc in self._threads.items():
            if tc.alive and key not in live:
                self._threads[key] = replace(tc, alive=False)

        vol = invol = 0
        for tc in self._threads.values():
            vol += tc.voluntary
            invol += tc.involuntary
        assert self._root_start is not None
        main = self._threads.get((self.pid, self._root_start))
        procs = self._procs.values()
        return Counters(
            t_s=t_s,
            voluntary=vol,
            involuntary=invol,
            main_voluntary=main.voluntary if main else 0,
            main_involuntary=main.involuntary if main else 0,
            cpu_user_s=sum(p.user_ticks for p in procs) / CLOCK_TICKS,
            cpu_sys_s=sum(p.sys_ticks for p in procs) / CLOCK_TICKS,
            write_syscalls=sum(p.syscw for p in procs),
            write_bytes=sum(p.wchar for p in procs),
            rss_bytes=rss_bytes,
            threads=len(live),
            per_thread=tuple(sorted(self._threads.values(), key=lambda t: (t.pid, t.tid, t.start_ticks))),
        )

    def _read_process(self, pid: int, live: set[tuple[int, int]]) -> tuple[list[int], int]:
        """Update the remembered counters of one process and its threads; return (child pids, rss)."""
        root = self._proc
        st = procfs.stat(pid, root=root)
        if pid == self.pid:
            if self._root_start is None:
                self._root_start = st.start_ticks
            elif st.start_ticks != self._root_start:
                raise NoSuchProcess(f"process {pid} exited (its pid now belongs to another process)")
        tids = procfs.task_ids(pid, root)
        # A zombie leader with live threads is a running process (its main thread called pthread_exit).
        if st.gone and len(tids) <= 1:
            raise Vanished(f"{root}/{pid}: a zombie")
        io = procfs.io(pid, root)
        rss = procfs.rss_bytes(pid, root)

        for tid in tids:
            try:
                tst, ctx = procfs.stat(pid, tid, root), procfs.ctx_switches(pid, tid, root)
            except Vanished:
                continue  # the thread exited after listdir
            # schedstat's run time is in ns; stat's ticks (10 ms) round a worker thread's share to 0.
            cpu_s = (tst.utime_ticks + tst.stime_ticks) / CLOCK_TICKS
            if self._schedstat:
                try:
                    cpu_s = procfs.run_time_ns(pid, tid, root) / 1e9
                except AccessDenied:
                    raise
                except ProbeError:
                    pass  # the thread just exited: its tick-based figure stands
            key = (tid, tst.start_ticks)
            self._threads[key] = ThreadCounters(
                tid=tid,
                name=tst.name,
                is_main=tid == pid,
                alive=True,
                voluntary=ctx.voluntary,
                involuntary=ctx.involuntary,
                cpu_s=cpu_s,
                pid=pid,
                start_ticks=tst.start_ticks,
            )
            live.add(key)
        self._procs[(pid, st.start_ticks)] = _ProcTotals(st.utime_ticks, st.stime_ticks, io.write_syscalls,
                                                         io.wchar_bytes)
        return (self._children(pid, tids) if self.include_children else []), rss

    def _children(self, pid: int, tids: Iterable[int]) -> list[int]:
        if self._children_files is None:
            self._children_files = procfs.has_children_files(pid, self._proc)
        if self._children_files:
            # Each thread lists the children it forked, so every thread of the tree is asked.
            found: list[int] = []
            for tid in tids:
                try:
                    found.extend(procfs.children(pid, tid, self._proc))
                except Vanished:
                    continue  # thread gone
            return found
        if pid != self.pid or self._proc != procfs.ROOT:
            return []
        # Kernel without CONFIG_PROC_CHILDREN: psutil scans every process's ppid, once per reading.
        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []


# ----------------------------------------------------------------------------------- pure functions


def sample_between(a: Counters, b: Counters, t0_s: float) -> Sample:
    """One Sample from two readings; rates are per second of the time that really elapsed between them."""
    dt = b.t_s - a.t_s
    if dt <= 0:
        raise ValueError(f"readings are not in time order ({a.t_s} then {b.t_s})")
    return Sample(
        t_s=b.t_s - t0_s,
        cswch_per_s=(b.voluntary - a.voluntary) / dt,
        nvcswch_per_s=(b.involuntary - a.involuntary) / dt,
        main_cswch_per_s=(b.main_voluntary - a.main_voluntary) / dt,
        main_nvcswch_per_s=(b.main_involuntary - a.main_involuntary) / dt,
        cpu_user_pct=100.0 * (b.cpu_user_s - a.cpu_user_s) / dt,
        cpu_sys_pct=100.0 * (b.cpu_sys_s - a.cpu_sys_s) / dt,
        write_syscalls_per_s=(b.write_syscalls - a.write_syscalls) / dt,
        write_bytes_per_s=(b.write_bytes - a.write_bytes) / dt,
        rss_bytes=b.rss_bytes,
        threads=b.threads,
    )


def delta(a: Counters, b: Counters) -> Window:
    return Window(
        duration_s=b.t_s - a.t_s,
        voluntary=b.voluntary - a.voluntary,
        involuntary=b.involuntary - a.involuntary,
        main_voluntary=b.main_voluntary - a.main_voluntary,
        main_involuntary=b.main_involuntary - a.main_involuntary,
        cpu_user_s=b.cpu_user_s - a.cpu_user_s,
        cpu_sys_s=b.cpu_sys_s - a.cpu_sys_s,
        write_syscalls=b.write_syscalls - a.write_syscalls,
        write_bytes=b.write_bytes - a.write_bytes,
    )


def thread_totals(a: Counters, b: Counters) -> tuple[ThreadTotal, ...]:
    """Per-name deltas b−a ("main" for each process's main thread), busiest first.

    A thread first seen in b counts from 0; a thread already dead in a did nothing in the window and is
    not counted in ``threads``.
    """
    before = {(t.tid, t.start_ticks): t for t in a.per_thread}
    groups: dict[str, list[float]] = {}  # name -> [threads, voluntary, involuntary, cpu_s]
    for t in b.per_thread:
        prev = before.get((t.tid, t.start_ticks))
        if prev is not None and not prev.alive:
            continue
        g = groups.setdefault("main" if t.is_main else t.name, [0, 0, 0, 0.0])
        g[0] += 1
        g[1] += t.voluntary - (prev.voluntary if prev else 0)
        g[2] += t.involuntary - (prev.involuntary if prev else 0)
        g[3] += t.cpu_s - (prev.cpu_s if prev else 0.0)
    totals = [
        ThreadTotal(
            name=name,
            threads=int(g[0]),
            voluntary_ctx_switches=int(g[1]),
            involuntary_ctx_switches=int(g[2]),
            cpu_ms=round(g[3] * 1000.0, 3),
        )
        for name, g in groups.items()
    ]
    return tuple(sorted(totals, key=lambda t: (-t.voluntary_ctx_switches, t.name)))
