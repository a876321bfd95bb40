"""Facts about the machine a measurement ran on, and how busy other processes kept it meanwhile.

Wall time is only as good as the machine is quiet: on a shared box the program waits for a CPU, while
its CPU time, syscalls and context switches barely change. So the busy time of every CPU
(``/proc/stat``) is read before and after, and what iolab and its programs used is taken off; what is
left is other processes' load, reported in CPUs.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from iolab.measure import procfs
from iolab.measure.procfs import CLOCK_TICKS

# An idle machine shows a few hundredths of a CPU of background work; above these, say so.
OTHER_LOAD_WARN_CPUS = 0.25
STEAL_WARN_CPUS = 0.05
CALIBRATION_RUNS = 5


@dataclass(frozen=True)
class CpuTimes:
    busy_s: float
    steal_s: float
    wall_s: float
    own_s: float  # iolab's own CPU (its drain threads) plus that of its reaped children

    @staticmethod
    def now() -> CpuTimes:
        cpu = procfs.cpu_times()
        t = os.times()
        return CpuTimes(busy_s=cpu.busy_ticks / CLOCK_TICKS, steal_s=cpu.steal_ticks / CLOCK_TICKS,
                        wall_s=time.monotonic(),
                        own_s=t.user + t.system + t.children_user + t.children_system)


def other_load(start: CpuTimes, end: CpuTimes) -> dict[str, float]:
    """CPUs kept busy by other processes, and stolen by the hypervisor, on average over the window."""
    wall = max(end.wall_s - start.wall_s, 1e-9)
    others = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
    return {
        "window_s": round(wall, 3),
        "other_load_cpus": round(max(0.0, others / wall), 2),
        "steal_cpus": round(max(0.0, (end.steal_s - start.steal_s) / wall), 2),
    }


def load_warning(other: float, steal: float, cpus: int) -> str | None:
    if other < OTHER_LOAD_WARN_CPUS and steal < STEAL_WARN_CPUS:
        return None
    parts = []
    if other >= OTHER_LOAD_WARN_CPUS:
        parts.append(f"other processes kept ≈{other:.2f} of {cpus} CPUs busy")
    if steal >= STEAL_WARN_CPUS:
        parts.append(f"the hypervisor stole ≈{steal:.2f} CPUs")
    return (" and ".join(parts) + " while iolab measured: wall times are inflated and noisy (CPU times, "
            "syscalls and context switches far less); re-run on a quiet machine, or compare CPU rather "
            "than wall time.")


def machine_facts(run_true: Callable[[str], float]) -> dict[str, object]:
    """``run_true(path)`` runs a do-nothing program the way every measured program is run and returns
    its wall time in ms: part of every wall time in the report."""
    true = shutil.which("true") or "/bin/true"
    walls = [run_true(true) for _ in range(CALIBRATION_RUNS)]
    return {
        "kernel": platform.release(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
        "iolab_python": platform.python_version(),
        "spawn_overhead_ms": round(statistics.median(walls), 2),
    }
