"""``/metrics``: the probe's counters of every allowed process, in the Prometheus text format.

A custom collector (prometheus_client's documented way to export values read from elsewhere): each scrape
reads /proc afresh, so the figures are the kernel's cumulative counters at scrape time, usable by an
existing Prometheus with ``rate()``. Threads are summed per name (``main`` for the main thread): one
series per thread would multiply cardinality by the size of a thread pool. The cgroup's CPU throttling
comes from the process's cgroup v2 ``cpu.stat`` (absent where there is none, e.g. cgroup v1).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from iolab.errors import ProbeError
from iolab.measure import procfs
from iolab.measure.probe import Counters, Probe

PREFIX = "iolab_process"


def cgroup_cpu_stat(pid: int, proc: str = "/proc", root: str = "/sys/fs/cgroup") -> dict[str, int]:
    """nr_periods, nr_throttled, throttled_usec of the process's cgroup v2; {} when unknown."""
    try:
        path = next(line.path for line in procfs.cgroups(pid, proc) if not line.controllers)
        with open(os.path.join(root, path.lstrip("/"), "cpu.stat"), encoding="ascii") as fh:
            raw = {k: int(v) for k, _, v in (ln.partition(" ") for ln in fh.read().splitlines() if ln)}
    except (OSError, ProbeError, StopIteration, ValueError):
        return {}
    return {k: raw[k] for k in ("nr_periods", "nr_throttled", "throttled_usec") if k in raw}


class ProcessCollector(Collector):
    """One scrape = one fresh probe reading per allowed PID (children included, as the local probe)."""

    def __init__(self, pids: Callable[[], list[int]], agent_cost: Callable[[], tuple[float, int]]) -> None:
        self._pids = pids
        self._agent_cost = agent_cost

    def collect(self) -> Iterator[Metric]:
        labels = ["pid", "comm"]
        m = {
            "vol": CounterMetricFamily(f"{PREFIX}_voluntary_ctxt_switches", "Voluntary context switches, every "
                                       "thread seen (exited ones keep their last count)", labels=labels),
            "invol": CounterMetricFamily(f"{PREFIX}_involuntary_ctxt_switches", "Involuntary context switches",
                                         labels=labels),
            "main_vol": CounterMetricFamily(f"{PREFIX}_main_thread_voluntary_ctxt_switches",
                                            "Voluntary context switches of the main thread", labels=labels),
            "tvol": CounterMetricFamily(f"{PREFIX}_thread_voluntary_ctxt_switches",
                                        "Voluntary context switches of live threads, summed per thread name",
                                        labels=[*labels, "thread"]),
            "tinvol": CounterMetricFamily(f"{PREFIX}_thread_involuntary_ctxt_switches",
                                          "Involuntary context switches of live threads, per thread name",
                                          labels=[*labels, "thread"]),
            "threads_n": GaugeMetricFamily(f"{PREFIX}_threads_by_name", "Live threads per thread name",
                                           labels=[*labels, "thread"]),
            "syscw": CounterMetricFamily(f"{PREFIX}_write_syscalls", "write/writev/pwrite/sendfile calls "
                                         "(/proc/PID/io syscw; send* are not counted)", labels=labels),
            "wchar": CounterMetricFamily(f"{PREFIX}_write_bytes", "Bytes passed to write calls (wchar)",
                                         labels=labels),
            "cpu": CounterMetricFamily(f"{PREFIX}_cpu_seconds", "CPU time", labels=[*labels, "mode"]),
            "rss": GaugeMetricFamily(f"{PREFIX}_resident_memory_bytes", "RSS of the live processes of the tree",
                                     labels=labels),
            "threads": GaugeMetricFamily(f"{PREFIX}_threads", "Live threads of the tree", labels=labels),
            "thr": CounterMetricFamily(f"{PREFIX}_cgroup_cpu_throttled_periods", "cgroup cpu.stat nr_throttled",
                                       labels=labels),
            "thr_us": CounterMetricFamily(f"{PREFIX}_cgroup_cpu_throttled_seconds", "cgroup cpu.stat "
                                          "throttled_usec", labels=labels),
        }
        for pid in self._pids():
            try:
                c = Probe(pid).read()
            except ProbeError:
                continue  # exited (or became unreadable) since it was listed
            _add(m, pid, c)
        yield from m.values()
        cpu_s, readings = self._agent_cost()
        yield CounterMetricFamily("iolab_agent_reading_cpu_seconds", "CPU the agent spent reading /proc for "
                                  "sampling windows", value=cpu_s)
        yield CounterMetricFamily("iolab_agent_readings", "Readings taken for sampling windows", value=readings)


def _add(m: dict[str, Metric], pid: int, c: Counters) -> None:
    root = next((t for t in c.per_thread if t.is_main and t.pid == pid), None)
    lv = [str(pid), root.name if root else ""]
    _counter(m, "vol", lv, c.voluntary)
    _counter(m, "invol", lv, c.involuntary)
    _counter(m, "main_vol", lv, c.main_voluntary)
    _counter(m, "syscw", lv, c.write_syscalls)
    _counter(m, "wchar", lv, c.write_bytes)
    _counter(m, "cpu", [*lv, "user"], c.cpu_user_s)
    _counter(m, "cpu", [*lv, "system"], c.cpu_sys_s)
    _gauge(m, "rss", lv, c.rss_bytes)
    _gauge(m, "threads", lv, c.threads)
    by_name: dict[str, list[int]] = {}
    for t in c.per_thread:
        if t.alive:
            g = by_name.setdefault("main" if t.is_main else t.name, [0, 0, 0])
            g[0] += t.voluntary
            g[1] += t.involuntary
            g[2] += 1
    for name, (vol, invol, n) in sorted(by_name.items()):
        _counter(m, "tvol", [*lv, name], vol)
        _counter(m, "tinvol", [*lv, name], invol)
        _gauge(m, "threads_n", [*lv, name], n)
    cg = cgroup_cpu_stat(pid)
    if "nr_throttled" in cg:
        _counter(m, "thr", lv, cg["nr_throttled"])
    if "throttled_usec" in cg:
        _counter(m, "thr_us", lv, cg["throttled_usec"] / 1e6)


def _counter(m: dict[str, Metric], key: str, labels: list[str], value: float) -> None:
    fam = m[key]
    assert isinstance(fam, CounterMetricFamily)
    fam.add_metric(labels, value)


def _gauge(m: dict[str, Metric], key: str, labels: list[str], value: float) -> None:
    fam = m[key]
    assert isinstance(fam, GaugeMetricFamily)
    fam.add_metric(labels, value)
