"""The cgroup filesystem as iolab uses it: where the hierarchies are mounted (v1 and v2, from mountinfo),
which cgroup a process is in, making iolab's own cgroups (named ``iolab-<ownerpid>-<n>`` so a later run
can sweep what a crash left, cgroup_sweep.py) and reading their files. limits.py puts limits with it."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from dataclasses import dataclass

from iolab.errors import ProbeError
from iolab.measure import procfs

V1_CONTROLLERS = frozenset(
    "cpu cpuacct cpuset memory devices freezer net_cls blkio perf_event net_prio hugetlb pids rdma misc".split()
)
NAME_RE = re.compile(r"^iolab-(\d+)-(\d+)(?:-[\w.]+)?$")
_counter = itertools.count()


@dataclass(frozen=True)
class Mount:
    point: str  # where it is mounted, already under `root`
    root: str  # which cgroup of the hierarchy is mounted there ("/" unless bind-mounted)
    v2: bool
    controllers: frozenset[str]  # v1 only; v2 lists them in cgroup.controllers


def under(root: str, path: str) -> str:
    return os.path.normpath(os.path.join(root, path.lstrip("/")))


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def mounts(root: str) -> list[Mount]:
    return [
        Mount(under(root, m.point), m.root, m.fstype == "cgroup2", frozenset(m.options & V1_CONTROLLERS))
        for m in procfs.mounts(under(root, "proc"))
        if m.fstype in ("cgroup", "cgroup2")
    ]


def proc_cgroups(root: str, pid: int | str = "self") -> list[tuple[frozenset[str], str]]:
    """(controllers, path) per line of /proc/PID/cgroup; the v2 line has no controllers."""
    try:
        return [(c.controllers, c.path) for c in procfs.cgroups(pid, under(root, "proc"))]
    except ProbeError:
        return []


def dir_of(mount: Mount, cgroups: list[tuple[frozenset[str], str]]) -> str | None:
    """The directory of the process's cgroup in this hierarchy, None if not listed or not visible."""
    for ctrls, path in cgroups:
        if (mount.v2 and not ctrls) or (not mount.v2 and ctrls & mount.controllers):
            if mount.root != "/" and (path + "/").startswith(mount.root.rstrip("/") + "/"):
                path = path[len(mount.root.rstrip("/")) :]
            d = under(mount.point, path)
            return d if os.path.isdir(d) else None
    return None


class Unavailable(Exception):
    """One method cannot be used; str() says why, to go into the reason."""


def mkdir_fresh(parents: list[str], suffix: str) -> list[str]:
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
            remove_all(made)
        except OSError as e:
            remove_all(made)
            raise Unavailable(f"cannot create a cgroup under {parent} ({e.strerror})") from None
    raise Unavailable("no free cgroup name")


def remove_all(paths: list[str]) -> None:
    for p in reversed(paths):
        with contextlib.suppress(OSError):
            os.rmdir(p)


def keyed(path: str) -> dict[str, int]:
    """"key value" lines (memory.events, memory.oom_control, cpu.stat) as a dict; {} if unreadable."""
    try:
        text = read(path)
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def keyed_value(path: str) -> int | None:
    """A file holding one number (memory.failcnt), None if unreadable."""
    try:
        return int(read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None
