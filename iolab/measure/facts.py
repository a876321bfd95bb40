"""Run facts recorded every time: the machine, the software, and what else was using the CPU.

What is recorded about the server under test is only what iolab knows (issue 15): for the demo and
``--app``, which iolab serves itself from its own interpreter, the server, its version, loop, parser and
access log are iolab's own choices; for ``--cmd``, the command iolab ran; for ``--url --pid``, what
``/proc/PID`` shows; for ``--url`` alone, nothing. No version, event loop or thread pool is ever guessed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shlex
import shutil
import sys

from iolab.errors import ProbeError
from iolab.measure import procfs
from iolab.measure.targets import AppTarget, CommandTarget, Target

_PACKAGES = ("fastapi", "starlette", "uvicorn", "anyio", "uvloop", "httptools", "h11", "aiologger",
             "psutil", "hdrhistogram")


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU as /proc/cpuinfo names it (its first "model name")."""
    with contextlib.suppress(ProbeError):
        if (name := procfs.cpu_model()) is not None:
            return name
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "clock_ticks_per_s": os.sysconf("SC_CLK_TCK"),
    }


def uvicorn_implementations(loop: str = "auto") -> dict[str, str]:
    """What uvicorn's loop and http settings resolve to in this environment (its own rules: "auto" takes
    uvloop and httptools when they are installed); ``loop`` is iolab's --loop."""
    versions = package_versions(("uvloop", "httptools"))
    return {
        "loop": loop if loop != "auto" else "uvloop" if versions["uvloop"] else "asyncio",
        "http": "httptools" if versions["httptools"] else "h11",
    }


# How a server iolab serves sends its responses, where that is known: libuv (uvloop) writes to a socket
# with write/writev, which /proc/PID/io syscw counts; asyncio's socket transport calls send(), which it
# does not (docs/measuring.md).
RESPONSES_BY_LOOP = {"uvloop": "write/writev", "asyncio": "send"}


def server_facts(target: Target) -> dict[str, object]:
    """What is known about the server under test, and how (``known_from``); never more."""
    if isinstance(target, AppTarget):
        out: dict[str, object] = {
            "known_from": "iolab serves the app", "name": target.server,
            "version": package_versions((target.server,))[target.server], "workers": target.workers,
            "access_log": True,  # iolab.measure.server_child keeps uvicorn's default; hypercorn and granian are asked for it
        }
        if target.server == "uvicorn":
            impl = uvicorn_implementations(target.loop)
            out |= {**impl, "responses_sent_with": RESPONSES_BY_LOOP.get(impl["loop"])}
        elif target.server == "hypercorn":  # asyncio unless iolab asked for its uvloop worker class
            loop = "uvloop" if target.loop == "uvloop" else "asyncio"
            out |= {"loop": loop, "responses_sent_with": RESPONSES_BY_LOOP[loop]}
        else:  # granian: its own I/O, in Rust
            out |= {"loop": target.loop, "responses_sent_with": None}
        return out
    if isinstance(target, CommandTarget):
        try:
            argv = shlex.split(target.command)
        except ValueError:
            argv = []
        # Resolved as the server's exec will resolve it: iolab passes its own PATH on.
        return {"known_from": "the command iolab ran (--cmd)", "command": argv,
                "executable": shutil.which(argv[0]) if argv else None, "responses_sent_with": None}
    if target.pid is None:
        return {"known_from": "nothing: iolab did not start this server and was given no --pid"}
    return {"known_from": f"/proc/{target.pid}", "pid": target.pid, **process_facts(target.pid),
            "responses_sent_with": None}


def process_facts(pid: int) -> dict[str, object]:
    """A running process's command line and executable, as /proc shows them (None where it does not)."""
    try:
        cmdline: list[str] | None = procfs.cmdline(pid)
    except ProbeError:
        cmdline = None
    try:
        executable: str | None = procfs.exe(pid)
    except ProbeError:  # another user's process: the link is not readable
        executable = None
    return {"cmdline": cmdline, "executable": executable}


def python() -> dict[str, object]:
    return {
        "implementation": platform.python_implementation(),
        "version": platform.python_version(),
        "executable": sys.executable,
    }


def noise(before: procfs.CpuTimes, after: procfs.CpuTimes, ours_cpu_s: float, wall_s: float) -> dict[str, float]:
    """CPU that others used while we measured, in percent of one core (ours = server + driver)."""
    hz = os.sysconf("SC_CLK_TCK")
    busy_s = (after.busy_ticks - before.busy_ticks) / hz
    steal_s = (after.steal_ticks - before.steal_ticks) / hz
    if wall_s <= 0:
        return {}
    return {
        "machine_busy_pct_of_core": round(100.0 * busy_s / wall_s, 1),
        "other_processes_pct_of_core": round(max(0.0, 100.0 * (busy_s - ours_cpu_s) / wall_s), 1),
        "steal_pct_of_core": round(100.0 * steal_s / wall_s, 1),
    }
