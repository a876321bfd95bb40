"""CPU and memory limits for the target server, as the seed's docker-compose set them (0.5 CPU, 256 MB).

Methods, best first: cgroup v2 (a writable subtree with the cpu/memory controllers), cgroup v1 (the
`cpu` and `memory` hierarchies), `systemd-run --scope` (wraps the command), else none. The layout is read
from mountinfo, so hybrid machines (a cgroup2 mount with no controllers next to v1) pick v1.
Every cgroup made here is named `iolab-<ownerpid>-<n>` so a later run can sweep what a crash left.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import logging
import math
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple

import psutil

from iolab.errors import LimitsError, ProbeError, UsageError
from iolab.measure import procfs, procs

log = logging.getLogger(__name__)

PERIOD_US = 100_000
_V1_CONTROLLERS = frozenset(
    "cpu cpuacct cpuset memory devices freezer net_cls blkio perf_event net_prio hugetlb pids rdma misc".split()
)
_NAME_RE = re.compile(r"^iolab-(\d+)-(\d+)(?:-[\w.]+)?$")
_counter = itertools.count()
_OPEN: set[LimitSession] = set()


@dataclass(frozen=True)
class LimitsRequest:
    cpus: float = 0.5  # 0 = no CPU limit
    memory_bytes: int | None = 256 * 1024 * 1024  # None (or 0) = no memory limit
    pin: bool = True  # pin server and load to different cores when >= 2 are available
    require: bool = False  # raise LimitsError instead of falling back to method "none"

    def __post_init__(self) -> None:
        # The CLI says so with the option's name (cli_options.limits_request); this catches the API.
        try:
            check_memory_limit(self.memory_bytes)
            if 0 < self.cpus < MIN_CPUS:
                raise ValueError(f"{self.cpus:g} CPU is below the smallest CPU limit, {MIN_CPUS:g}")
        except ValueError as exc:
            raise UsageError(str(exc)) from None


class _Final(NamedTuple):
    """What close() read from the cgroups before removing them."""

    cpu_stat: dict[str, int]
    memory_peak_bytes: int | None
    oom_kills: int | None
    v1_limit_hit: bool | None


@dataclass(frozen=True)
class AppliedLimits:
    method: str  # "cgroup2" | "cgroup1" | "systemd-run" | "none"
    cpus: float | None  # what is in force (None = unlimited)
    memory_bytes: int | None
    reason: str  # why this method (or why none could be applied), one sentence
    server_cpus: tuple[int, ...] | None  # cores the server is pinned to, None = not pinned
    load_cpus: tuple[int, ...] | None  # cores for the load driver
    cgroup_paths: tuple[str, ...] = ()
    asked_cpus: float | None = None
    asked_memory_bytes: int | None = None

    def warning(self) -> str | None:
        """The message for the results' warnings when limits were asked but not applied."""
        if self.method == "none" and (self.asked_cpus or self.asked_memory_bytes):
            return f"limits not applied, the server ran unconstrained: {self.reason}"
        return None

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "cpus": self.cpus,
            "memory_bytes": self.memory_bytes,
            "reason": self.reason,
            "server_cpus": None if self.server_cpus is None else list(self.server_cpus),
            "load_cpus": None if self.load_cpus is None else list(self.load_cpus),
            "cgroup_paths": list(self.cgroup_paths),
            "asked_cpus": self.asked_cpus,
            "asked_memory_bytes": self.asked_memory_bytes,
        }


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MiB = 1 << 20

# The smallest memory limit accepted. Measured here (Linux 6.18, Python 3.11): the demo server
# (`python -m iolab.measure.server_child … iolab.demo.app:app`, uvicorn with uvloop/httptools and FastAPI) holds 49 MB of
# RSS right after start-up, 32 MB of it anonymous (/proc/PID/status RssAnon 32,696 kB; the rest is file
# pages the kernel can reclaim). With `--memory 24M` it was killed before it was ready (exit -9); with 32M
# it started and served, slowly. A smaller limit measures the OOM killer, not the server.
MIN_MEMORY_BYTES = 32 * MiB
# The smallest CPU limit: the kernel's smallest quota, 1 ms per CFS period of 100 ms (cpu.cfs_quota_us and
# cpu.max refuse less than 1000 µs).
MIN_CPUS = 0.01


def parse_memory(text: str) -> int:
    """Bytes in "256M", "256MiB", "1G", "512k" or "1048576"; units are binary, as Docker and systemd read them."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not m or (m.group(2) == "" and "." in m.group(1)):
        raise ValueError(f"not a memory size: {text!r} (try 256M, 1G, 512k or a byte count)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def check_memory_limit(value: int | None) -> None:
    """ValueError for a limit below MIN_MEMORY_BYTES (None or 0: no limit)."""
    if value and value < MIN_MEMORY_BYTES:
        raise ValueError(f"{format_bytes(value)} is below the smallest memory limit iolab accepts, "
                         f"{format_bytes(MIN_MEMORY_BYTES)} (a Python server does not start in less; 0 = no limit)")


def format_bytes(n: int) -> str:
    """256 MiB, 1 GiB, 1.5 GiB, 512 KiB or 1000 bytes: binary units, exact where they can be."""
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:g} {unit}" if value == round(value, 2) else f"{value:.2f} {unit}"
    return f"{n} bytes"


def parse_cpus(text: str) -> float:
    """CPUs in "0.5", "2" or "0" (no limit); the kernel's smallest quota is 1 ms per 100 ms period."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a CPU count: {text!r} (try 0.5, 2, or 0 for no limit)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a CPU count: {text!r} (try 0.5, 2, or 0 for no limit)")
    if 0 < value < MIN_CPUS:
        raise ValueError(f"{text.strip()} CPU is below the smallest CPU limit, {MIN_CPUS:g} (1 ms per 100 ms "
                         "period, the kernel's smallest quota; 0 = no limit)")
    return value


# ------------------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class _Mount:
    point: str  # where it is mounted, already under `root`
    root: str  # which cgroup of the hierarchy is mounted there ("/" unless bind-mounted)
    v2: bool
    controllers: frozenset[str]  # v1 only; v2 lists them in cgroup.controllers


def _under(root: str, path: str) -> str:
    return os.path.normpath(os.path.join(root, path.lstrip("/")))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _mounts(root: str) -> list[_Mount]:
    return [
        _Mount(_under(root, m.point), m.root, m.fstype == "cgroup2", frozenset(m.options & _V1_CONTROLLERS))
        for m in procfs.mounts(_under(root, "proc"))
        if m.fstype in ("cgroup", "cgroup2")
    ]


def _proc_cgroups(root: str, pid: int | str = "self") -> list[tuple[frozenset[str], str]]:
    """(controllers, path) per line of /proc/PID/cgroup; the v2 line has no controllers."""
    try:
        return [(c.controllers, c.path) for c in procfs.cgroups(pid, _under(root, "proc"))]
    except ProbeError:
        return []


def _dir_of(mount: _Mount, cgroups: list[tuple[frozenset[str], str]]) -> str | None:
    """The directory of the process's cgroup in this hierarchy, None if not listed or not visible."""
    for ctrls, path in cgroups:
        if (mount.v2 and not ctrls) or (not mount.v2 and ctrls & mount.controllers):
            if mount.root != "/" and (path + "/").startswith(mount.root.rstrip("/") + "/"):
                path = path[len(mount.root.rstrip("/")) :]
            d = _under(mount.point, path)
            return d if os.path.isdir(d) else None
    return None


class _Unavailable(Exception):
    """One method cannot be used; str() says why, to go into the reason."""


def _mkdir_fresh(parents: list[str], suffix: str) -> list[str]:
    """The same new `iolab-<pid>-<n>` under every parent (a pid's earlier cgroup may still exist)."""
    for _ in range(100):
        name = f"iolab-{os.getpid()}-{next(_counter)}{suffix}"
        made: list[str] = []
        try:
            for parent in parents:
                os.mkdir(os.path.join(parent, name))
                made.append(os.path.join(parent, name))
            return made
        except FileExistsError:
            _remove_all(made)
        except OSError as e:
            _remove_all(made)
            raise _Unavailable(f"cannot create a cgroup under {parent} ({e.strerror})") from None
    raise _Unavailable("no free cgroup name")


def _remove_all(paths: list[str]) -> None:
    for p in reversed(paths):
        with contextlib.suppress(OSError):
            os.rmdir(p)


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
            mounts = _mounts(self.root)
            for name, attempt in (
                ("cgroup2", self._try_v2),
                ("cgroup1", self._try_v1),
                ("systemd-run", self._try_systemd),
            ):
                try:
                    reason = attempt(mounts, cpus, mem)
                    method = name
                    break
                except _Unavailable as e:
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

    def _try_v2(self, mounts: list[_Mount], cpus: float | None, mem: int | None) -> str:
        mount = next((m for m in mounts if m.v2), None)
        if mount is None:
            raise _Unavailable("no cgroup2 mount")
        need = {"cpu"} if cpus else set()
        need |= {"memory"} if mem else set()
        try:
            have = set(_read(os.path.join(mount.point, "cgroup.controllers")).split())
        except OSError as e:
            raise _Unavailable(f"cannot read {mount.point}/cgroup.controllers ({e.strerror})") from None
        if need - have:
            missing = " and ".join(sorted(need - have))
            raise _Unavailable(
                f"{mount.point} does not offer the {missing} controller(s) (held by cgroup v1, or disabled)"
            )
        # The no-internal-process rule: controllers can only be handed to children of a cgroup without
        # processes (or the root), so climb from our own cgroup until one accepts them: on a delegated
        # user@UID.service tree that is the first empty slice, as root often the top.
        cand = _dir_of(mount, _proc_cgroups(self.root)) or mount.point
        top = os.path.normpath(mount.point)
        while True:
            if os.access(cand, os.W_OK) and self._enable_v2(cand, need):
                (path,) = _mkdir_fresh([cand], self._suffix)
                try:
                    if cpus:
                        _write(os.path.join(path, "cpu.max"), f"{round(cpus * PERIOD_US)} {PERIOD_US}")
                    if mem:
                        _write(os.path.join(path, "memory.max"), str(mem))
                        if os.path.exists(os.path.join(path, "memory.swap.max")):
                            _write(os.path.join(path, "memory.swap.max"), "0")
                except OSError as e:
                    _remove_all([path])
                    raise _Unavailable(f"cannot set limits in {path} ({e.strerror})") from None
                self._paths = [path]
                self._cpu_dir = self._mem_dir = path
                return f"cgroup v2 with the {' and '.join(sorted(need))} controllers under {cand}"
            if os.path.normpath(cand) == top:
                raise _Unavailable(f"no cgroup under {mount.point} lets us enable {', '.join(sorted(need))}")
            cand = os.path.dirname(os.path.normpath(cand))

    @staticmethod
    def _enable_v2(cgroup: str, need: set[str]) -> bool:
        try:
            if not need <= set(_read(os.path.join(cgroup, "cgroup.controllers")).split()):
                return False
            enabled = set(_read(os.path.join(cgroup, "cgroup.subtree_control")).split())
            if need - enabled:
                _write(
                    os.path.join(cgroup, "cgroup.subtree_control"),
                    " ".join(f"+{c}" for c in sorted(need - enabled)),
                )
            return True
        except OSError:  # EBUSY: it has processes; EACCES: not delegated to us
            return False

    def _try_v1(self, mounts: list[_Mount], cpus: float | None, mem: int | None) -> str:
        own = _proc_cgroups(self.root)
        parents: dict[str, str] = {}
        for ctrl in [c for c, asked in (("cpu", cpus), ("memory", mem)) if asked]:
            mount = next((m for m in mounts if not m.v2 and ctrl in m.controllers), None)
            if mount is None:
                raise _Unavailable(f"no cgroup v1 {ctrl} hierarchy is mounted")
            # Nest under our own cgroup so whatever limits it and accounts for us still does.
            mine = _dir_of(mount, own)
            parent = next((d for d in (mine, mount.point) if d and os.access(d, os.W_OK)), None)
            if parent is None:
                raise _Unavailable(f"{mount.point} is not writable")
            parents[ctrl] = parent
        made = _mkdir_fresh(list(dict.fromkeys(parents.values())), self._suffix)  # co-mounted: one dir
        by_parent = {os.path.dirname(p): p for p in made}
        self._cpu_dir = by_parent.get(parents.get("cpu", ""))
        self._mem_dir = by_parent.get(parents.get("memory", ""))
        try:
            if cpus and self._cpu_dir:
                _write(os.path.join(self._cpu_dir, "cpu.cfs_period_us"), str(PERIOD_US))
                _write(os.path.join(self._cpu_dir, "cpu.cfs_quota_us"), str(round(cpus * PERIOD_US)))
            if mem and self._mem_dir:
                _write(os.path.join(self._mem_dir, "memory.limit_in_bytes"), str(mem))
                # Without this the cgroup may spill past its limit into swap.
                memsw = os.path.join(self._mem_dir, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):
                    _write(memsw, str(mem))
        except OSError as e:
            _remove_all(made)
            self._cpu_dir = self._mem_dir = None
            raise _Unavailable(f"cannot set cgroup v1 limits ({e.strerror})") from None
        self._paths = made
        return f"cgroup v1 {' and '.join(parents)} controllers under {', '.join(dict.fromkeys(parents.values()))}"

    def _try_systemd(self, mounts: list[_Mount], cpus: float | None, mem: int | None) -> str:
        if not os.path.isdir(_under(self.root, "run/systemd/system")):
            raise _Unavailable("systemd is not running")
        if not shutil.which("systemd-run"):
            raise _Unavailable("systemd-run is not on PATH")
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
                    _write(os.path.join(path, "cgroup.procs"), str(p))  # moves every thread of p
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
                    ln.partition(" ") for ln in _read(os.path.join(cpu_dir, "cpu.stat")).splitlines()
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
                return int(_read(os.path.join(mem_dir, fname)).split()[0])
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
        events = _keyed(os.path.join(mem_dir, "memory.events"))
        if "oom_kill" in events:
            return events["oom_kill"] if events.get("oom", 1) > 0 else 0
        oom = _keyed(os.path.join(mem_dir, "memory.oom_control"))
        if "oom_kill" in oom:
            return oom["oom_kill"] if self._v1_limit_hit(mem_dir) is not False else 0
        return None

    def _v1_limit_hit(self, mem_dir: str | None = None) -> bool | None:
        """v1: did usage reach the limit? failcnt > 0, or the peak within 3 % of it; None: cannot tell."""
        limit = self._applied.memory_bytes if self._applied else None
        mem_dir = mem_dir or self._mem_dir
        if mem_dir is None or not limit:
            return None
        failcnt = _keyed_value(os.path.join(mem_dir, "memory.failcnt"))
        peak = _keyed_value(os.path.join(mem_dir, "memory.max_usage_in_bytes"))
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
        mounts = _mounts(self.root)
        cg = _proc_cgroups(self.root, self._pids[0])
        v2 = next((m for m in mounts if m.v2), None)
        v2_has = False
        if v2 is not None:
            with contextlib.suppress(OSError):
                v2_has = ctrl in _read(os.path.join(v2.point, "cgroup.controllers")).split()
        mount = v2 if v2_has else next((m for m in mounts if not m.v2 and ctrl in m.controllers), None)
        d = _dir_of(mount, cg) if mount else None
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
                _kill_members(scope, deadline=time.monotonic() + 2)  # systemd removes the empty scope
            for path in reversed(self._paths):
                _kill_and_remove(path)
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


def _keyed(path: str) -> dict[str, int]:
    """"key value" lines (memory.events, memory.oom_control, cpu.stat) as a dict; {} if unreadable."""
    try:
        text = _read(path)
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def _keyed_value(path: str) -> int | None:
    """A file holding one number (memory.failcnt), None if unreadable."""
    try:
        return int(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None


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


def _kill_members(path: str, deadline: float) -> bool:
    """SIGKILL every process in the cgroup until it is empty; False when it still is not by the deadline."""
    with contextlib.suppress(OSError):  # v2, kernel 5.14+: the whole subtree at once. Never created.
        fd = os.open(os.path.join(path, "cgroup.kill"), os.O_WRONLY)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
    while True:
        try:
            pids = {int(p) for p in _read(os.path.join(path, "cgroup.procs")).split()} - {os.getpid()}
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            pids = set()
        for p in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _kill_and_remove(path: str) -> bool:
    """Kill the cgroup's processes and remove it, cgroups below it first; True when it is gone."""
    deadline = time.monotonic() + 2
    below = [d for d, _, _ in os.walk(path, topdown=False)] or [path]  # children first, `path` last
    for d in below:
        _kill_members(d, deadline)
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("iolab: could not remove cgroup %s (%s)", d, e.strerror)
                    return False
                _kill_members(d, deadline)
                time.sleep(0.02)
    return True


def find_cgroups(root: str = "/", owner: int | None = None) -> list[str]:
    """Every iolab-* cgroup in every hierarchy (v1 ones sit under our own cgroup, not only at the top)."""
    found: list[str] = []
    for mount in _mounts(root):
        base_depth = mount.point.rstrip("/").count("/")
        for dirpath, dirnames, _ in os.walk(mount.point):
            if dirpath.count("/") - base_depth >= 8:  # ours sit a few levels down at most
                dirnames[:] = []
            for d in list(dirnames):
                m = _NAME_RE.match(d)
                if m:
                    dirnames.remove(d)  # never descend into ours
                    if owner is None or int(m.group(1)) == owner:
                        found.append(os.path.join(dirpath, d))
    return found


def sweep_stale(root: str = "/") -> list[str]:
    """Kill what is left in the iolab-* cgroups of dead owners (the PID in the name) and remove them.

    What a run killed with SIGKILL left: its cgroups, and in them any process that outlived it (a worker
    of the server; the server itself has a parent-death signal, procs.py). Only the places where iolab
    makes cgroups are listed, so this costs a few directory reads, not a walk of every hierarchy: in v2
    and in the v1 cpu and memory hierarchies, our own cgroup and each of its ancestors up to the mount
    (v1 nests under our own cgroup or uses the top; v2 climbs to the first ancestor that delegates). A
    run started from another cgroup (another login session) is swept by the next run started there.
    """
    removed: list[str] = []
    for parent in _sweep_dirs(root):
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            m = _NAME_RE.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and not procs.alive(int(m.group(1))):
                if _kill_and_remove(entry.path):
                    removed.append(entry.path)
    return removed


def _sweep_dirs(root: str) -> list[str]:
    """Our own cgroup and its ancestors in every hierarchy iolab makes cgroups in (v2, v1 cpu and memory)."""
    own = _proc_cgroups(root)
    dirs: list[str] = []
    for mount in _mounts(root):
        if not (mount.v2 or mount.controllers & {"cpu", "memory"}):
            continue
        top = os.path.normpath(mount.point)
        d = os.path.normpath(_dir_of(mount, own) or top)
        while d.startswith(top + "/"):
            dirs.append(d)
            d = os.path.dirname(d)
        dirs.append(top)
    return list(dict.fromkeys(dirs))


@atexit.register
def _close_open_sessions() -> None:
    # A crash of the Python process (an exception out of main) still runs atexit; SIGKILL does not,
    # which is what sweep_stale on the next run is for.
    for session in list(_OPEN):
        session.close()
