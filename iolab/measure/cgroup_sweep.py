"""Removing iolab's cgroups: the ones a session made (kill what is in them, then rmdir, children first)
and the ones a run killed with SIGKILL left behind (``sweep_stale``, at the start of the next run)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time

from iolab.measure import cgroupfs, procs

log = logging.getLogger("iolab.measure.limits")


def kill_members(path: str, deadline: float) -> bool:
    """SIGKILL every process in the cgroup until it is empty; False when it still is not by the deadline."""
    with contextlib.suppress(OSError):  # v2, kernel 5.14+: the whole subtree at once. Never created.
        fd = os.open(os.path.join(path, "cgroup.kill"), os.O_WRONLY)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
    while True:
        try:
            pids = {int(p) for p in cgroupfs.read(os.path.join(path, "cgroup.procs")).split()} - {os.getpid()}
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


def kill_and_remove(path: str) -> bool:
    """Kill the cgroup's processes and remove it, cgroups below it first; True when it is gone."""
    deadline = time.monotonic() + 2
    below = [d for d, _, _ in os.walk(path, topdown=False)] or [path]  # children first, `path` last
    for d in below:
        kill_members(d, deadline)
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
                kill_members(d, deadline)
                time.sleep(0.02)
    return True


def find_cgroups(root: str = "/", owner: int | None = None) -> list[str]:
    """Every iolab-* cgroup in every hierarchy (v1 ones sit under our own cgroup, not only at the top)."""
    found: list[str] = []
    for mount in cgroupfs.mounts(root):
        base_depth = mount.point.rstrip("/").count("/")
        for dirpath, dirnames, _ in os.walk(mount.point):
            if dirpath.count("/") - base_depth >= 8:  # ours sit a few levels down at most
                dirnames[:] = []
            for d in list(dirnames):
                m = cgroupfs.NAME_RE.match(d)
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
            m = cgroupfs.NAME_RE.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and not procs.alive(int(m.group(1))):
                if kill_and_remove(entry.path):
                    removed.append(entry.path)
    return removed


def _sweep_dirs(root: str) -> list[str]:
    """Our own cgroup and its ancestors in every hierarchy iolab makes cgroups in (v2, v1 cpu and memory)."""
    own = cgroupfs.proc_cgroups(root)
    dirs: list[str] = []
    for mount in cgroupfs.mounts(root):
        if not (mount.v2 or mount.controllers & {"cpu", "memory"}):
            continue
        top = os.path.normpath(mount.point)
        d = os.path.normpath(cgroupfs.dir_of(mount, own) or top)
        while d.startswith(top + "/"):
            dirs.append(d)
            d = os.path.dirname(d)
        dirs.append(top)
    return list(dict.fromkeys(dirs))
