"""Records of ``iolab micro`` and its versioned JSON document, ``iolab.micro/1``.

Every figure carries its unit in its name (``wall_ms``, ``rss_peak_bytes``). Records are frozen: a run is
never edited after it is taken; summaries and derived figures are computed from the runs.

Schema history (the loader reads every version listed here; bump the major number when a reader of the
old version would misread the new one):

- ``iolab.micro/1`` (0.1.0): first version.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from iolab.results import (
    RunWarning,
    dump_document,
    parse_document,
    read_document,
    save_document,
)

SCHEMA_NAME = "iolab.micro"
SCHEMA_VERSION = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"

StdoutKind = Literal["pipe", "file", "null", "tty"]
Mode = Literal["default", "unbuffered", "print-off", "program"]
RunStatus = Literal["ok", "failed", "timeout"]

COUNT_RUN = "print-count"  # the setting name of the untimed run that counts print calls
STDOUT_KINDS: tuple[str, ...] = ("pipe", "file", "null", "tty")
PYTHON_MODES: tuple[str, ...] = ("default", "unbuffered", "print-off")


@dataclass(frozen=True)
class Stat:
    """Median with min and max over the measured runs of one setting (few runs: no percentiles)."""

    median: float
    min: float
    max: float

    @staticmethod
    def of(values: Sequence[float]) -> Stat | None:
        if not values:
            return None
        return Stat(float(statistics.median(values)), float(min(values)), float(max(values)))


@dataclass(frozen=True)
class RunRecord:
    """One execution of the program in one setting.

    ``run`` is 0 for the warm-up, 1… for measured runs. ``write_syscalls`` and ``write_bytes`` are the
    kernel's ``syscw`` and ``wchar`` from ``/proc/PID/io`` of the exited process: every write-type call
    (write, writev, pwrite, sendfile; not send/sendto/sendmsg)
    on every descriptor (stdout, stderr, files), its threads and its reaped children included.
    ``stdout_bytes`` and ``stdout_lines`` are what arrived at the stdout target (None for /dev/null; on a
    pty the terminal turns each ``\\n`` into ``\\r\\n``, so bytes include the added ``\\r``).
    """

    setting: str
    run: int
    status: RunStatus
    pid: int
    exit_code: int | None
    wall_ms: float
    cpu_user_ms: float
    cpu_sys_ms: float
    write_syscalls: int | None
    write_bytes: int | None
    read_syscalls: int | None
    stdout_bytes: int | None
    stdout_lines: int | None
    voluntary_ctx_switches: int
    involuntary_ctx_switches: int
    rss_peak_bytes: int
    error: str | None = None
    stderr_tail: tuple[str, ...] = ()

    def label(self) -> str:
        if self.setting == COUNT_RUN:
            return "the untimed print-counting run"
        return f"{self.setting} {'warm-up' if self.run == 0 else f'run {self.run}'}"


@dataclass(frozen=True)
class SettingSummary:
    """Each metric over the setting's successful measured runs; None when no run gave it."""

    runs_ok: int
    runs_failed: int
    wall_ms: Stat | None = None
    cpu_user_ms: Stat | None = None
    cpu_sys_ms: Stat | None = None
    cpu_ms: Stat | None = None
    write_syscalls: Stat | None = None
    write_bytes: Stat | None = None
    stdout_bytes: Stat | None = None
    stdout_lines: Stat | None = None
    voluntary_ctx_switches: Stat | None = None
    involuntary_ctx_switches: Stat | None = None
    rss_peak_bytes: Stat | None = None


SUMMARY_METRICS: tuple[str, ...] = (
    "wall_ms", "cpu_user_ms", "cpu_sys_ms", "write_syscalls", "write_bytes", "stdout_bytes",
    "stdout_lines", "voluntary_ctx_switches", "involuntary_ctx_switches", "rss_peak_bytes",
)


def summarize(runs: Sequence[RunRecord]) -> SettingSummary:
    ok = [r for r in runs if r.status == "ok"]
    stats: dict[str, Stat | None] = {}
    for name in SUMMARY_METRICS:
        stats[name] = Stat.of([v for r in ok if (v := getattr(r, name)) is not None])
    stats["cpu_ms"] = Stat.of([r.cpu_user_ms + r.cpu_sys_ms for r in ok])
    return SettingSummary(runs_ok=len(ok), runs_failed=len(runs) - len(ok), **stats)


@dataclass(frozen=True)
class Derived:
    """What one setting's output cost per call, computed from the medians (see ``derive.py``).

    ``calls`` are the script's print calls (Python) or the lines the program wrote (any command).
    ``stdout_write_syscalls`` are the setting's write syscalls minus those of ``baseline`` (print disabled)
    when there is one, else all of them. ``extra_*_per_call`` compare with ``baseline``;
    ``extra_wall_us_per_write_syscall`` compares with ``write_baseline``, a setting with fewer writes.
    ``sys_us_per_write_syscall`` is all kernel CPU time divided by the write syscalls: an upper bound.
    """

    calls: int | None = None
    calls_unit: str = "print"
    stdout_write_syscalls: float | None = None
    write_syscalls_per_call: float | None = None
    baseline: str | None = None
    extra_wall_ms: float | None = None
    extra_wall_us_per_call: float | None = None
    extra_cpu_us_per_call: float | None = None
    write_baseline: str | None = None
    extra_wall_us_per_write_syscall: float | None = None
    sys_us_per_write_syscall: float | None = None
    why: str = ""


@dataclass(frozen=True)
class SettingResult:
    """One output setting: where stdout went, how the program buffered it, and its runs.

    ``buffering`` is block | line | unbuffered for Python (its documented rule for that stdout), or
    ``program`` for any other command (its own choice; ``derived.write_syscalls_per_call`` shows it).
    ``python_env`` holds every ``PYTHON*`` variable of the child's environment as it was set for this
    setting; ``env_removed`` the variables iolab took out of its own environment for it.
    """

    name: str
    stdout: StdoutKind
    mode: Mode
    buffering: str
    argv: tuple[str, ...]
    python_env: dict[str, str]
    env_removed: tuple[str, ...]
    summary: SettingSummary
    derived: Derived
    runs: tuple[RunRecord, ...]
    warmup: tuple[RunRecord, ...] = ()


@dataclass(frozen=True)
class PrintCount:
    """The script's ``print`` calls, counted by a launcher in one extra, untimed run (stdout: a pipe;
    the run itself is ``MicroResult.count_run``)."""

    calls: int
    to_stdout: int


@dataclass(frozen=True)
class TargetInfo:
    kind: Literal["python", "command"]
    argv: tuple[str, ...]
    script: str | None = None
    script_sha256: str | None = None
    script_bytes: int | None = None
    interpreter: str | None = None
    interpreter_version: str | None = None
    input: str | None = None
    input_bytes: int | None = None


@dataclass(frozen=True)
class MicroConfig:
    runs: int
    warmup: int
    timeout_s: float
    keep_going: bool
    stdout_kinds: tuple[str, ...]
    modes: tuple[str, ...]
    order: str = "interleaved: warm-up of every setting, then run 1 of every setting, run 2 …"


@dataclass(frozen=True)
class MicroResult:
    schema: str
    created: str
    tool_version: str
    machine: dict[str, Any]
    target: TargetInfo
    config: MicroConfig
    environment: dict[str, Any]
    settings: tuple[SettingResult, ...]
    prints: PrintCount | None = None
    count_run: RunRecord | None = None
    explanation: tuple[str, ...] = ()
    warnings: tuple[RunWarning, ...] = field(default_factory=tuple)
    # complete | failed (--keep-going, some runs failed) | stopped (the first failure ended it) |
    # interrupted (Ctrl-C or SIGTERM; the runs so far are kept)
    status: Literal["complete", "failed", "stopped", "interrupted"] = "complete"

    def setting(self, name: str) -> SettingResult | None:
        return next((s for s in self.settings if s.name == name), None)


# ---------------------------------------------------------------------------------------------- JSON


def dumps(result: MicroResult) -> str:
    return dump_document(result)


def save(result: MicroResult, path: str | os.PathLike[str]) -> Path:
    return save_document(result, path)


def loads(text: str, source: str = "<string>") -> MicroResult:
    return parse_document(text, source, MicroResult, SCHEMA_NAME, SCHEMA_VERSION)


def load(path: str | os.PathLike[str]) -> MicroResult:
    return loads(*read_document(path))
