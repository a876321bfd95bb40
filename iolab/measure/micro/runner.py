"""The measurement loop of ``iolab micro``: one untimed counting run, a warm-up of every setting, then the
measured runs interleaved (run 1 of every setting, run 2 …) so that drift on the machine hits all alike.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import signal
import struct
import termios
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from iolab import __version__
from iolab.analysis.micro.derive import derive_all, explain
from iolab.errors import EXIT_FAILURE, IolabError, UsageError
from iolab.measure import tmpdirs
from iolab.measure.micro.machine import CpuTimes, load_warning, machine_facts, other_load
from iolab.measure.micro.printoff import COUNT_FILE_ENV, launcher_argv, read_count
from iolab.measure.micro.spawn import Spawner, abandon, reap, reap_strays
from iolab.measure.micro.target import (
    UNBUFFERED_VAR,
    SettingSpec,
    Target,
    build_settings,
    describe,
    interpreter_version,
    python_env,
    resolve_target,
)
from iolab.measure.sinks import Sink, TtySink, make_sink
from iolab.results import RunWarning
from iolab.results.micro import (
    COUNT_RUN,
    SCHEMA,
    Derived,
    MicroConfig,
    MicroResult,
    PrintCount,
    RunRecord,
    SettingResult,
    TargetInfo,
    summarize,
)

STDERR_TAIL_BYTES = 4096
STDERR_TAIL_LINES = 12

Progress = Callable[[str, int, int], None]


class MicroRunFailed(IolabError):
    """The program failed, crashed or timed out in at least one run."""

    exit_code = EXIT_FAILURE


@dataclass(frozen=True)
class MicroOptions:
    tokens: tuple[str, ...]
    input: str | None = None
    runs: int = 5
    warmup: int = 1
    timeout_s: float = 60.0
    keep_going: bool = False
    python: str | None = None
    stdout_kinds: tuple[str, ...] = ("pipe", "file", "null", "tty")
    modes: tuple[str, ...] = ("default", "unbuffered", "print-off")


class _Stop(Exception):
    """The first failed run, when --keep-going is off."""


def _stderr_tail(path: Path) -> tuple[str, ...]:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - STDERR_TAIL_BYTES))
            data = fh.read()
    except OSError:
        return ()
    lines = data.decode("utf-8", "replace").splitlines()
    return tuple(lines[-STDERR_TAIL_LINES:])


def _failure(code: int | None, timed_out: bool, timeout_s: float) -> str | None:
    if timed_out:
        return f"timed out after {timeout_s:g} s; its process group was killed"
    if code is None or code == 0:
        return None
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _sink(kind: str) -> Sink:
    """measure/sinks.py's sink of that kind (a file one is a temporary file, removed on close), counting
    bytes and lines only; a pty says 80x24 to programs that ask for the terminal size, not 0x0."""
    sink = make_sink(kind)
    sink.keep_tail = False
    if isinstance(sink, TtySink):
        fcntl.ioctl(sink.child_fd(), termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    return sink


class Executor:
    """Runs one program once in one setting and turns the kernel's figures into a RunRecord."""

    def __init__(self, stdin_path: str | None, timeout_s: float, workdir: Path) -> None:
        self.spawner = Spawner()
        self.stdin_path = stdin_path
        self.timeout_s = timeout_s
        self.workdir = workdir

    def run(self, setting: str, index: int, stdout: str, argv: tuple[str, ...],
            env: Mapping[str, str]) -> RunRecord:
        sink = _sink(stdout)
        stderr_path = self.workdir / "stderr"
        child_fds = [os.open(self.stdin_path or os.devnull, os.O_RDONLY),
                     os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
        actions = [(os.POSIX_SPAWN_DUP2, child_fds[0], 0), (os.POSIX_SPAWN_DUP2, sink.child_fd(), 1),
                   (os.POSIX_SPAWN_DUP2, child_fds[1], 2)]
        pid: int | None = None
        try:
            sink.start()
            t0 = time.perf_counter_ns()
            pid = self.spawner.spawn(argv, env, actions)
            for fd in child_fds:
                os.close(fd)
            child_fds.clear()
            sink.after_spawn()  # our copy of the child's end closed, so EOF can arrive
            ex = reap(pid, t0, t0 + int(self.timeout_s * 1e9))
        finally:
            for fd in child_fds:
                os.close(fd)
            # The program's leftovers (the rest of its process group, orphans re-parented to us) die with
            # it; on Ctrl-C or an error of ours the program itself is killed and reaped here.
            if pid is not None:
                abandon(pid)
            reap_strays()
            counts = sink.close()  # after the program and its process group are gone
        error = _failure(ex.exit_code, ex.timed_out, self.timeout_s)
        io = ex.io
        return RunRecord(
            setting=setting, run=index, status="timeout" if ex.timed_out else ("failed" if error else "ok"),
            pid=ex.pid, exit_code=ex.exit_code, wall_ms=ex.wall_ns / 1e6,
            cpu_user_ms=ex.cpu_user_s * 1e3, cpu_sys_ms=ex.cpu_sys_s * 1e3,
            write_syscalls=io.write_syscalls if io else None, write_bytes=io.wchar_bytes if io else None,
            read_syscalls=io.read_syscalls if io else None,
            stdout_bytes=None if stdout == "null" else counts.bytes,
            stdout_lines=None if stdout == "null" else counts.lines,
            voluntary_ctx_switches=ex.nvcsw, involuntary_ctx_switches=ex.nivcsw,
            rss_peak_bytes=ex.maxrss_kib * 1024, error=error,
            stderr_tail=_stderr_tail(stderr_path) if error else (),
        )


def measure(opts: MicroOptions, progress: Progress | None = None) -> MicroResult:
    if opts.runs < 1:
        raise UsageError("--runs must be at least 1")
    if opts.warmup < 0 or opts.timeout_s <= 0:
        raise UsageError("--warmup must be 0 or more and --timeout more than 0")
    if opts.input is not None and not Path(opts.input).is_file():
        raise UsageError(f"--input {opts.input}: no such file")
    target = resolve_target(opts.tokens, opts.python)
    parent_env = dict(os.environ)
    clean_env = {k: v for k, v in parent_env.items() if k != UNBUFFERED_VAR}
    version = interpreter_version(target.interpreter, clean_env) if target.interpreter else None
    specs = build_settings(target, opts.stdout_kinds, opts.modes, parent_env)
    info = describe(target, opts.input, version)
    workdir = Path(tmpdirs.make("micro"))
    try:
        executor = Executor(opts.input, opts.timeout_s, workdir)
        machine = machine_facts(
            lambda true: executor.run("calibration", 0, "null", (true,), {"PATH": os.defpath}).wall_ms)
        machine["spawn_method"] = executor.spawner.method
        loop = _Loop(opts, target, specs, executor, parent_env, progress)
        before = CpuTimes.now()
        loop.execute()
        load = other_load(before, CpuTimes.now())
        machine.update(load)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    derived = derive_all(loop.settings(), loop.prints, target.kind)
    settings = tuple(dataclasses.replace(s, derived=derived[s.name]) for s in loop.settings())
    notices = _notices(target, parent_env, executor, loop, info)
    busy = load_warning(load["other_load_cpus"], load["steal_cpus"], len(os.sched_getaffinity(0)))
    if busy is not None:
        notices = (*notices, RunWarning("machine-load", busy))
    failed = any(r.status != "ok" for r in loop.every_run())
    return MicroResult(
        schema=SCHEMA, created=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__, machine=machine, target=info,
        config=MicroConfig(opts.runs, opts.warmup, opts.timeout_s, opts.keep_going, opts.stdout_kinds,
                           opts.modes if target.kind == "python" else ()),
        environment={
            "stdin": opts.input or os.devnull,
            "cwd": os.getcwd(),
            "parent_PYTHONUNBUFFERED": parent_env.get(UNBUFFERED_VAR),
            "python_env_default": python_env(clean_env),
        },
        settings=settings, prints=loop.prints, count_run=loop.count_run,
        explanation=explain(settings, loop.prints, target.kind),
        warnings=notices,
        status=("interrupted" if loop.interrupted else "stopped" if loop.stopped
                else "failed" if failed else "complete"),
    )


class _Loop:
    def __init__(self, opts: MicroOptions, target: Target, specs: tuple[SettingSpec, ...],
                 executor: Executor, parent_env: Mapping[str, str], progress: Progress | None) -> None:
        self.opts, self.target, self.specs, self.ex = opts, target, specs, executor
        self.parent_env = parent_env
        self.progress = progress
        self.warm: dict[str, list[RunRecord]] = {s.name: [] for s in specs}
        self.runs: dict[str, list[RunRecord]] = {s.name: [] for s in specs}
        self.prints: PrintCount | None = None
        self.count_run: RunRecord | None = None
        self.stopped = False
        self.interrupted = False
        self.done = 0
        self.total = (1 if target.kind == "python" else 0) + len(specs) * (opts.warmup + opts.runs)

    def _tick(self, label: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(label, self.done, self.total)

    def _one(self, spec: SettingSpec, index: int) -> RunRecord:
        rec = self.ex.run(spec.name, index, spec.stdout, spec.argv, spec.env(self.parent_env))
        self._tick(f"{spec.name} {'warm-up' if index == 0 else f'run {index}'}")
        return rec

    def _check(self, rec: RunRecord) -> None:
        if rec.status != "ok" and not self.opts.keep_going:
            raise _Stop()

    def _count_prints(self) -> None:
        t = self.target
        assert t.script is not None and t.interpreter is not None
        count_file = self.ex.workdir / "print-count"
        env = {k: v for k, v in self.parent_env.items() if k != UNBUFFERED_VAR}
        env[COUNT_FILE_ENV] = str(count_file)
        argv = launcher_argv(t.interpreter, "count", t.script, t.script_args)
        rec = self.ex.run(COUNT_RUN, 0, "pipe", argv, env)
        self._tick("counting prints")
        self.count_run = rec
        counted = read_count(count_file)
        if counted is not None:
            self.prints = PrintCount(*counted)
        self._check(rec)

    def execute(self) -> None:
        try:
            if self.target.kind == "python":
                self._count_prints()
            for _ in range(self.opts.warmup):
                for spec in self.specs:
                    rec = self._one(spec, 0)
                    self.warm[spec.name].append(rec)
                    self._check(rec)
            for i in range(1, self.opts.runs + 1):
                for spec in self.specs:
                    rec = self._one(spec, i)
                    self.runs[spec.name].append(rec)
                    self._check(rec)
        except _Stop:
            self.stopped = True
        except KeyboardInterrupt:
            # The executor has already killed the program's process group; keep what was measured.
            self.interrupted = True

    def settings(self) -> tuple[SettingResult, ...]:
        return tuple(
            SettingResult(
                name=s.name, stdout=s.stdout, mode=s.mode, buffering=s.buffering,  # type: ignore[arg-type]
                argv=s.argv, python_env=python_env(s.env(self.parent_env)), env_removed=s.env_removed,
                summary=summarize(self.runs[s.name]), derived=Derived(), runs=tuple(self.runs[s.name]),
                warmup=tuple(self.warm[s.name]),
            )
            for s in self.specs
        )

    def every_run(self) -> list[RunRecord]:
        counting = [self.count_run] if self.count_run is not None else []
        return counting + [r for s in self.specs for r in (*self.warm[s.name], *self.runs[s.name])]


def _notices(target: Target, parent_env: Mapping[str, str], ex: Executor, loop: _Loop,
             before: TargetInfo) -> tuple[RunWarning, ...]:
    out: list[RunWarning] = []
    if UNBUFFERED_VAR in parent_env:
        out.append(RunWarning("environment", f"iolab's own environment sets {UNBUFFERED_VAR}="
                          f"{parent_env[UNBUFFERED_VAR]}; it was removed for every setting but the "
                          "unbuffered ones (each setting records its PYTHON* variables). Nothing to do "
                          "unless every run was meant to be unbuffered."))
    if ex.spawner.method == "direct":
        out.append(RunWarning("rss", "util-linux setsid was not found, so programs were spawned from iolab and "
                          "their peak RSS includes iolab's own memory (the kernel counts the parent's at "
                          "exec); install util-linux for a true peak RSS."))
    every = [r for rs in loop.runs.values() for r in rs]
    if any(r.status == "ok" and r.write_syscalls is None for r in every):
        out.append(RunWarning("proc-io", "/proc/PID/io could not be read, so write syscalls and bytes are "
                          "missing; run iolab as the user that owns the program and without a "
                          "restrictive hidepid= mount of /proc."))
    if target.kind == "python" and loop.prints is None and not loop.stopped:
        out.append(RunWarning("prints", "the script's print calls could not be counted (it left through "
                          "os._exit or a signal, so the counting launcher never wrote its figure); "
                          "per-print costs are missing."))
    bad = [r for r in loop.every_run() if r.status != "ok"]
    if bad:
        out.append(RunWarning("failures", f"{len(bad)} run(s) failed, first: {bad[0].label()}: {bad[0].error}; "
                          "failed runs are left out of the figures. Fix the program, or raise --timeout."))
    if target.script is not None and describe(target, None, None).script_sha256 != before.script_sha256:
        out.append(RunWarning("script-changed", f"{target.script} changed while it was measured; "
                          "re-run on a file that stays put."))
    return tuple(out)
