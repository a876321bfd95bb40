"""Run facts recorded every time: the machine, the software, and what else was using the CPU."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass

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


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "clock_ticks_per_s": os.sysconf("SC_CLK_TCK"),
    }


def uvicorn_implementations() -> dict[str, str]:
    """What uvicorn's "auto" loop and http settings resolve to in this environment (its own rules)."""
    versions = package_versions(("uvloop", "httptools"))
    return {
        "loop": "uvloop" if versions["uvloop"] else "asyncio",
        "http": "httptools" if versions["httptools"] else "h11",
    }


def python() -> dict[str, object]:
    return {
        "implementation": platform.python_implementation(),
        "version": platform.python_version(),
        "executable": sys.executable,
    }


@dataclass(frozen=True)
class CpuTimes:
    """/proc/stat's first line, in clock ticks: all CPUs together."""

    busy: int
    idle: int
    steal: int

    @property
    def total(self) -> int:
        return self.busy + self.idle


def read_cpu_times(path: str = "/proc/stat") -> CpuTimes:
    with open(path, "rb") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    fields += [0] * (8 - len(fields))
    idle = fields[3] + fields[4]
    steal = fields[7]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return CpuTimes(busy=busy, idle=idle, steal=steal)


def noise(before: CpuTimes, after: CpuTimes, ours_cpu_s: float, wall_s: float) -> dict[str, float]:
    """CPU that others used while we measured, in percent of one core (ours = server + driver)."""
    hz = os.sysconf("SC_CLK_TCK")
    busy_s = (after.busy - before.busy) / hz
    steal_s = (after.steal - before.steal) / hz
    if wall_s <= 0:
        return {}
    return {
        "machine_busy_pct_of_core": round(100.0 * busy_s / wall_s, 1),
        "other_processes_pct_of_core": round(max(0.0, 100.0 * (busy_s - ours_cpu_s) / wall_s), 1),
        "steal_pct_of_core": round(100.0 * steal_s / wall_s, 1),
    }
