"""CPU and memory limits for the target server, as the seed's docker-compose set them (0.5 CPU, 256 MB).

Methods, best first: cgroup v2 (a writable subtree with the cpu/memory controllers), cgroup v1 (the
`cpu` and `memory` hierarchies), `systemd-run --scope` (wraps the command), else none. The layout is read
from mountinfo, so hybrid machines (a cgroup2 mount with no controllers next to v1) pick v1.
Every cgroup made here is named `iolab-<ownerpid>-<n>` so a later run can sweep what a crash left.
The cgroup filesystem itself (mounts, making and reading cgroups) is cgroupfs.py; removing them, and the
sweep of what dead runs left, cgroup_sweep.py.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import time
from types import TracebackType
from typing import NamedTuple

import psutil

from iolab.errors import LimitsError, ProbeError
from iolab.measure import cgroup_sweep, cgroupfs, procfs
from iolab.measure.cgroup_sweep import find_cgroups, sweep_stale
from iolab.measure.limit_values import (
    MIN_CPUS,
    MIN_MEMORY_BYTES,
    AppliedLimits,
    LimitsRequest,
    MiB,
    check_memory_limit,
    format_bytes,
    parse_cpus,
    parse_memory,
)

# The names callers have always imported from here, those of limit_values.py and cgroup_sweep.py included.
__all__ = [
    "MIN_CPUS", "MIN_MEMORY_BYTES", "PERIOD_US", "AppliedLimits", "LimitSession", "LimitsRequest", "MiB",
    "check_memory_limit", "find_cgroups", "format_bytes", "parse_cpus", "parse_memory", "pin_process",
    "sweep_stale", "systemd_run_argv",
]

log = logging.getLogger(__name__)

PERIOD_US = 100_000
_OPEN: set[LimitSession] = set()


class _Final(NamedTuple):
    """What close() read from the cgroups before removing them."""

    cpu_stat: dict[str, int]
    memory_peak_bytes: int | None
    oom_kills: int | None
    v1_limit_hit: bool | None


# ------------------------------------------------------------------------------------------- session


class LimitSession:
    """One server's limits: create before the server starts, attach right after spawn, remove after it is dead."""

    def __init__(self, request: LimitsRequest, name: str = "iolab", root: str = "/") -> None:
        self.request = request
        self.root = root
        self._suffix = "" if name == "iolab" else "-" + re.sub(r"[^\w.]", "_", name)[:40]
        self._applied: AppliedLimits | None = None
        self._paths: list[str] = []
        self._cpu_dir: str | None = None
        self._mem_dir: str | None = None
        self._pids: list[int] = []
        self._closed = False
        self._final: _Final | None = None

    # -- choosing and creating
    def prepare(self) -> AppliedLimits:
        if self._applied is not None:
            return self._applied
        req = self.request
        cpus = req.cpus or None
        mem = req.memory_bytes or None
        sweep_stale(self.root)
        method, reason, failures = "none", "no CPU or memory limit was asked", []
        if cpus or mem:
            mounts = cgroupfs.mounts(self.root)
            for name, attempt in (
                ("cgroup2", self._try_v2),
                ("cgroup1", self._try_v1),
                ("systemd-run", self._try_systemd),
            ):
                try:
                    reason = attempt(mounts, cpus, mem)
                    method = name
                    break
                except cgroupfs.Unavailable as e:
                    failures.append(f"{name}: {e}")
            if method == "none":
                reason = "no limit could be applied (" + "; ".join(failures) + ")"
                if req.require:
                    raise LimitsError(f"--require-limits: {reason}")
                log.warning("iolab: %s; the server runs unconstrained", reason)
            elif failures:
                reason += " (" + "; ".join(failures) + ")"
        if method != "none":
            _OPEN.add(self)
        server, load, pin_note = _choose_cores(req.pin)
        self._applied = AppliedLimits(
            method=method,
            cpus=cpus if method != "none" else None,
            memory_bytes=mem if method != "none" else None,
            reason=reason + pin_note,
            server_cpus=server,
            load_cpus=load,
            cgroup_paths=tuple(self._paths),
            asked_cpus=cpus,
            asked_memory_bytes=mem,
        )
        return self._applied

    def _try_v2(self, mounts: list[cgroupfs.Mount], cpus: float | None, mem: int | None) -> str:
        mount = next((m for m in mounts if m.v2), None)
        if mount is None:
            raise cgroupfs.Unavailable("no cgroup2 mount")
        need = {"cpu"} if cpus else set()
        need |= {"memory"} if mem else set()
        try:
            have = set(cgroupfs.read(os.path.join(mount.point, "cgroup.controllers")).split())
        except OSError as e:
            raise cgroupfs.Unavailable(f"cannot read {mount.point}/cgroup.controllers ({e.strerror})") from None
        if need - have:
            missing = " and ".join(sorted(need - have))
            raise cgroupfs.Unavailable(
                f"{mount.point} does not offer the {missing} controller(s) (held by cgroup v1, or disabled)"
            )
        # The no-internal-process rule: controllers can only be handed to children of a cgroup without
        # processes (or the root), so climb from our own cgroup until one accepts them: on a delegated
        # user@UID.service tree that is the first empty slice, as root often the top.
        cand = cgroupfs.dir_of(mount, cgroupfs.proc_cgroups(self.root)) or mount.point
        top = os.path.normpath(mount.point)
        while True:
            if os.access(cand, os.W_OK) and self._enable_v2(cand, need):
                (path,) = cgroupfs.mkdir_fresh([cand], self._suffix)
                try:
                    if cpus:
                        cgroupfs.write(os.path.join(path, "cpu.max"), f"{round(cpus * PERIOD_US)} {PERIOD_US}")
                    if mem:
                        cgroupfs.write(os.path.join(path, "memory.max"), str(mem))
                        if os.path.exists(os.path.join(path, "memory.swap.max")):
                            cgroupfs.write(os.path.join(path, "memory.swap.max"), "0")
                except OSError as e:
                    cgroupfs.remove_all([path])
                    raise cgroupfs.Unavailable(f"cannot set limits in {path} ({e.strerror})") from None
                self._paths = [path]
                self._cpu_dir = self._mem_dir = path
                return f"cgroup v2 with the {' and '.join(sorted(need))} controllers under {cand}"
            if os.path.normpath(cand) == top:
                raise cgroupfs.Unavailable(f"no cgroup under {mount.point} lets us enable {', '.join(sorted(need))}")
            cand = os.path.dirname(os.path.normpath(cand))

    @staticmethod
    def _enable_v2(cgroup: str, need: set[str]) -> bool:
        try:
            if not need <= set(cgroupfs.read(os.path.join(cgroup, "cgroup.controllers")).split()):
                return False
            enabled = set(cgroupfs.read(os.path.join(cgroup, "cgroup.subtree_control")).split())
            if need - enabled:
                cgroupfs.write(
                    os.path.join(cgroup, "cgroup.subtree_control"),
                    " ".join(f"+{c}" for c in sorted(need - enabled)),
                )
            return True
        except OSError:  # EBUSY: it has processes; EACCES: not delegated to us
            return False

    def _try_v1(self, mounts: list[cgroupfs.Mount], cpus: float | None, mem: int | None) -> str:
        own = cgroupfs.proc_cgroups(self.root)
        parents: dict[str, str] = {}
        for ctrl in [c for c, asked in (("cpu", cpus), ("memory", mem)) if asked]:
            mount = next((m for m in mounts if not m.v2 and ctrl in m.controllers), None)
            if mount is None:
                raise cgroupfs.Unavailable(f"no cgroup v1 {ctrl} hierarchy is mounted")
            # Nest under our own cgroup so whatever limits it and accounts for us still does.
            mine = cgroupfs.dir_of(mount, own)
            parent = next((d for d in (mine, mount.point) if d and os.access(d, os.W_OK)), None)
            if parent is None:
                raise cgroupfs.Unavailable(f"{mount.point} is not writable")
            parents[ctrl] = parent
        made = cgroupfs.mkdir_fresh(list(dict.fromkeys(parents.values())), self._suffix)  # co-mounted: one dir
        by_parent = {os.path.dirname(p): p for p in made}
        self._cpu_dir = by_parent.get(parents.get("cpu", ""))
        self._mem_dir = by_parent.get(parents.get("memory", ""))
        try:
            if cpus and self._cpu_dir:
                cgroupfs.write(os.path.join(self._cpu_dir, "cpu.cfs_period_us"), str(PERIOD_US))
                cgroupfs.write(os.path.join(self._cpu_dir, "cpu.cfs_quota_us"), str(round(cpus * PERIOD_US)))
            if mem and self._mem_dir:
                cgroupfs.write(os.path.join(self._mem_dir, "memory.limit_in_bytes"), str(mem))
                # Without this the cgroup may spill past its limit into swap.
                memsw = os.path.join(self._mem_dir, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):
                    cgroupfs.write(memsw, str(mem))
        except OSError as e:
            cgroupfs.remove_all(made)
            self._cpu_dir = self._mem_dir = None
            raise cgroupfs.Unavailable(f"cannot set cgroup v1 limits ({e.strerror})") from None
        self._paths = made
        return f"cgroup v1 {' and '.join(parents)} controllers under {', '.join(dict.fromkeys(parents.values()))}"

    def _try_systemd(self, mounts: list[cgroupfs.Mount], cpus: float | None, mem: int | None) -> str:
        if not os.path.isdir(cgroupfs.under(self.root, "run/systemd/system")):
            raise cgroupfs.Unavailable("systemd is not running")
        if not shutil.which("systemd-run"):
            raise cgroupfs.Unavailable("systemd-run is not on PATH")
        return "systemd-run --scope (no cgroup was writable directly)"

    # -- running
    def wrap_command(self, argv: list[str]) -> list[str]:
        applied = self.prepare()
        if applied.method != "systemd-run":
            return list(argv)
        return systemd_run_argv(applied.cpus, applied.memory_bytes, argv, user=os.geteuid() != 0)

    def attach(self, pid: int) -> None:
        applied = self.prepare()
        self._pids.append(pid)
        try:
            family = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return  # died already; the caller's start-up check reports it
        for path in self._paths:
            for p in family:
                try:
                    cgroupfs.write(os.path.join(path, "cgroup.procs"), str(p))  # moves every thread of p
                except ProcessLookupError:
                    pass
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        raise LimitsError(f"cannot move pid {p} into {path}: {e.strerror}") from None
        if applied.server_cpus:
            for p in family:
                pin_process(p, applied.server_cpus)

    def read_cpu_stat(self) -> dict[str, int]:
        """nr_periods, nr_throttled, throttled_usec (v1's throttled_time is ns); {} when there is no cgroup."""
        if self._final is not None:
            return dict(self._final.cpu_stat)
        cpu_dir = self._cpu_dir or self._systemd_dir("cpu")
        if cpu_dir is None:
            return {}
        try:
            raw = {
                k: int(v)
                for k, _, v in (
                    ln.partition(" ") for ln in cgroupfs.read(os.path.join(cpu_dir, "cpu.stat")).splitlines()
                )
            }
        except (OSError, ValueError):
            return {}
        usec = raw["throttled_usec"] if "throttled_usec" in raw else raw.get("throttled_time", 0) // 1000
        return {
            "nr_periods": raw.get("nr_periods", 0),
            "nr_throttled": raw.get("nr_throttled", 0),
            "throttled_usec": usec,
        }

    def read_memory_peak_bytes(self) -> int | None:
        if self._final is not None:
            return self._final.memory_peak_bytes
        mem_dir = self._mem_dir or self._systemd_dir("memory")
        if mem_dir is None:
            return None
        for fname in ("memory.peak", "memory.max_usage_in_bytes"):
            with contextlib.suppress(OSError, ValueError):
                return int(cgroupfs.read(os.path.join(mem_dir, fname)).split()[0])
        return None

    def oom_kills(self) -> int | None:
        """Processes the OOM killer killed in the server's cgroup because of its memory limit.

        v2: ``memory.events`` ``oom_kill`` (the cgroup and those below it); v1: ``memory.oom_control``
        ``oom_kill`` (Linux 4.13+). ``oom_kill`` also counts kills by a machine-wide OOM, so it is taken
        as the limit's only when the limit was reached (v2 ``oom``; v1 ``memory.max_usage_in_bytes`` at
        the limit, as v1 ``memory.failcnt`` stayed 0 on Linux 6.18 while a hog was OOM-killed at it).
        None when there is no counter: no memory cgroup, an older v1 kernel, or a systemd scope already
        removed. Read it before close() removes the cgroup; close() keeps the last value.
        """
        if self._final is not None:
            return self._final.oom_kills
        mem_dir = self._mem_dir or self._systemd_dir("memory")
        if mem_dir is None:
            return None
        events = cgroupfs.keyed(os.path.join(mem_dir, "memory.events"))
        if "oom_kill" in events:
            return events["oom_kill"] if events.get("oom", 1) > 0 else 0
        oom = cgroupfs.keyed(os.path.join(mem_dir, "memory.oom_control"))
        if "oom_kill" in oom:
            return oom["oom_kill"] if self._v1_limit_hit(mem_dir) is not False else 0
        return None

    def _v1_limit_hit(self, mem_dir: str | None = None) -> bool | None:
        """v1: did usage reach the limit? failcnt > 0, or the peak within 3 % of it; None: cannot tell."""
        limit = self._applied.memory_bytes if self._applied else None
        mem_dir = mem_dir or self._mem_dir
        if mem_dir is None or not limit:
            return None
        failcnt = cgroupfs.keyed_value(os.path.join(mem_dir, "memory.failcnt"))
        peak = cgroupfs.keyed_value(os.path.join(mem_dir, "memory.max_usage_in_bytes"))
        if failcnt is None and peak is None:
            return None
        return bool(failcnt) or (peak is not None and peak >= 0.97 * limit)

    def memory_limit_kill(self, returncode: int | None) -> str | None:
        """"the server was killed by the memory limit (256 MiB)" when the cgroup says its OOM killer acted.

        ``returncode`` is the server's, as subprocess reports it (-9: SIGKILL); None (still running) gives
        None. Without a counter (v1 before 4.13) a SIGKILL exit with the limit reached counts as one kill.
        """
        limit = self._applied.memory_bytes if self._applied else None
        if not limit or returncode is None:
            return None
        kills = self.oom_kills()
        if kills is None:  # v1 before Linux 4.13: a SIGKILL with usage at the limit
            hit = self._final.v1_limit_hit if self._final is not None else self._v1_limit_hit()
            kills = 1 if hit and returncode == -signal.SIGKILL else 0
        if kills == 0:
            return None
        where = f"the memory limit ({format_bytes(limit)})"
        if returncode == -signal.SIGKILL:
            return f"the server was killed by {where}"
        return f"the server exited with code {returncode} after {where} killed {kills} of its processes"

    def _systemd_dir(self, ctrl: str) -> str | None:
        """The transient scope systemd-run made for our server, found through the server's /proc."""
        if self._applied is None or self._applied.method != "systemd-run" or not self._pids:
            return None
        mounts = cgroupfs.mounts(self.root)
        cg = cgroupfs.proc_cgroups(self.root, self._pids[0])
        v2 = next((m for m in mounts if m.v2), None)
        v2_has = False
        if v2 is not None:
            with contextlib.suppress(OSError):
                v2_has = ctrl in cgroupfs.read(os.path.join(v2.point, "cgroup.controllers")).split()
        mount = v2 if v2_has else next((m for m in mounts if not m.v2 and ctrl in m.controllers), None)
        d = cgroupfs.dir_of(mount, cg) if mount else None
        # Until systemd-run has moved itself, the pid is still in our cgroup: never mistake that for the scope.
        return d if d and re.fullmatch(r"run-.+\.scope", os.path.basename(d)) else None

    # -- cleaning up
    def close(self) -> None:
        """Kill whatever is still inside, remove the cgroups. Idempotent; never raises."""
        if self._closed:
            return
        try:
            self._final = _Final(self.read_cpu_stat(), self.read_memory_peak_bytes(), self.oom_kills(),
                                 self._v1_limit_hit())
            scope = self._systemd_dir("cpu") or self._systemd_dir("memory")
            if scope:
                cgroup_sweep.kill_members(scope, deadline=time.monotonic() + 2)  # systemd removes the empty scope
            for path in reversed(self._paths):
                cgroup_sweep.kill_and_remove(path)
        except Exception:  # close runs in finally/atexit: it must not mask the error that got us here
            log.exception("iolab: cleaning up limits failed")
        # Not in a finally: a second Ctrl-C halfway through leaves the session open for the atexit retry.
        self._closed = True
        _OPEN.discard(self)

    def __enter__(self) -> LimitSession:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def systemd_run_argv(
    cpus: float | None, memory_bytes: int | None, argv: list[str], user: bool = False
) -> list[str]:
    cmd = ["systemd-run", "--scope", "--quiet"] + ["--user"] * user
    if cpus:
        cmd += ["-p", f"CPUQuota={round(cpus * 100, 2):g}%"]
    if memory_bytes:
        cmd += ["-p", f"MemoryMax={memory_bytes}"]
    return cmd + ["--", *argv]


def pin_process(pid: int, cpus: tuple[int, ...]) -> None:
    """Pin every thread of pid (sched_setaffinity on the pid alone moves only its main thread)."""
    try:
        tids = procfs.task_ids(pid)
    except ProbeError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)


def _choose_cores(pin: bool) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None, str]:
    if not pin:
        return None, None, "; not pinned (pinning off)"
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None, None, f"; not pinned: only {len(usable)} usable CPU"
    return (usable[0],), tuple(usable[1:]), f"; server pinned to CPU {usable[0]}, load to the rest"


@atexit.register
def _close_open_sessions() -> None:
    # A crash of the Python process (an exception out of main) still runs atexit; SIGKILL does not,
    # which is what sweep_stale on the next run is for.
    for session in list(_OPEN):
        session.close()
