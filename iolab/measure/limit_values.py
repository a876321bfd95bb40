"""The limits' values: what was asked (LimitsRequest), what was applied (AppliedLimits), and reading and
writing sizes and CPU counts as the command line takes them. limits.py applies them with cgroups."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from iolab.errors import UsageError


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
