"""The experiment loop: for each round, for each scenario (interleaved), a fresh measured server.

Server → warm-up → measured load while the probe samples → stop → wait4 → a RoundRecord, and the
results file is rewritten at once, so a crash or Ctrl-C later loses nothing already measured.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from iolab import __version__, advice, facts, latency, results, verdict
from iolab.aggregate import aggregate, per_request, window_samples
from iolab.config import RunConfig, ScenarioSpec
from iolab.drivers.base import LoadResult, LoadSpec
from iolab.drivers.builtin import BuiltinDriver
from iolab.errors import NoSuchProcess, ServerDiedError
from iolab.limits import AppliedLimits, LimitSession
from iolab.probe import Counters, Probe, delta, thread_totals
from iolab.results import (
    DriverUsage,
    LatencyMs,
    MainThread,
    PerRequest,
    RoundRecord,
    RunResult,
    ScenarioResult,
    StdoutInfo,
    Warning,
)
from iolab.server import LOOPBACK, ServerProcess, check_port_free, free_port
from iolab.sinks import make_sink, python_buffering
from iolab.stats import summarize


class Reporter(Protocol):
    """What the experiment tells its caller as it goes (the CLI draws a progress bar from it)."""

    def scenario_started(self, round_no: int, rounds: int, name: str, index: int, total: int) -> None: ...
    def phase(self, text: str) -> None: ...
    def progress(self, done: int, total: int) -> None: ...
    def scenario_finished(self, record: RoundRecord) -> None: ...


class SilentReporter:
    def scenario_started(self, round_no: int, rounds: int, name: str, index: int, total: int) -> None:
        pass

    def phase(self, text: str) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        pass

    def scenario_finished(self, record: RoundRecord) -> None:
        pass


@dataclass
class _State:
    """Everything measured so far; ``snapshot()`` is what goes to disk after every scenario."""

    config: RunConfig
    created: str
    environment: dict[str, object]
    limits: dict[str, object] = field(default_factory=dict)
    rounds: dict[str, list[RoundRecord]] = field(default_factory=dict)
    warnings: list[Warning] = field(default_factory=list)


def server_env(config: RunConfig) -> dict[str, str]:
    """The server's environment: ours, with stdout buffering set explicitly, never inherited."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if config.unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    paths = [config.app_dir or os.getcwd()]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["IOLAB_WORK_US"] = str(config.work_us)
    env["IOLAB_SINK_LATENCY_MS"] = str(config.sink_latency_ms)
    return env


def server_argv(config: RunConfig, port: int) -> list[str]:
    argv = [sys.executable, "-m", "iolab.serve", "--host", LOOPBACK, "--port", str(port)]
    if config.app_dir:
        argv += ["--app-dir", config.app_dir]
    return [*argv, config.app]


def _fd_nonblocking(pid: int, fd: int = 1) -> bool | None:
    """Is the server's fd 1 in O_NONBLOCK mode? (aiologger switches it for the whole process.)"""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("flags:"):
                    return bool(int(line.split()[1], 8) & os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    return None


def _failed_round(round_no: int, started: str, error: str, stdout: StdoutInfo,
                  tail: tuple[str, ...] = (), load: LoadResult | None = None) -> RoundRecord:
    return RoundRecord(
        round=round_no, status="failed", error=error, started=started, duration_s=0.0,
        requests=load.completed if load else 0,
        failed=(load.connect_errors + load.timeouts + load.other_errors) if load else 0,
        non_2xx=load.non_2xx if load else 0, timeouts=load.timeouts if load else 0,
        connect_errors=load.connect_errors if load else 0, rps=0.0, server_cpu_s=0.0,
        rps_per_server_cpu_s=0.0, latency_ms=LatencyMs(), latency_hdr="", cswch_per_s=summarize([]),
        nvcswch_per_s=summarize([]), main_thread=MainThread(), per_request=PerRequest(), stdout=stdout,
        threads=(), samples=(), driver=DriverUsage(), server_log_tail=tail,
    )


def _tail_text(tail: tuple[str, ...], n: int = 3) -> str:
    lines = [t.strip() for t in tail if t.strip()][-n:]
    return ("; last output: " + " | ".join(lines)) if lines else ""


class Experiment:
    def __init__(self, config: RunConfig, reporter: Reporter | None = None,
                 driver: Callable[[LoadSpec, Callable[[int, int], None] | None], LoadResult] | None = None
                 ) -> None:
        self.config = config
        self.reporter: Reporter = reporter or SilentReporter()
        # Pairs to compare: the user's (--compare a:b), else the demo's controls and seed pairs.
        self.pairs: list[tuple[str, str]] | None = list(config.compare) or None
        self._drive = driver or BuiltinDriver().run
        self.state = _State(
            config=config,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            environment=self._environment(),
        )
        if os.environ.get("PYTHONUNBUFFERED") and not config.unbuffered:
            self.state.warnings.append(Warning(
                "pythonunbuffered-removed",
                "PYTHONUNBUFFERED was set in your environment; iolab removed it from the server's so its "
                "stdout is block-buffered as Python's default on a pipe. To measure unbuffered output, "
                "pass --unbuffered.",
            ))

    # ------------------------------------------------------------------------------------ public
    def run(self) -> RunResult:
        """Run every round; on any exception the partial results are on disk before it propagates."""
        cfg = self.config
        specs = cfg.scenarios
        status = "complete"
        try:
            for r in range(cfg.rounds):
                # Rotate the order each round so slow drift on a shared machine hits all scenarios alike.
                order = specs[r % len(specs):] + specs[: r % len(specs)]
                for i, spec in enumerate(order):
                    self.reporter.scenario_started(r + 1, cfg.rounds, spec.name, i + 1, len(order))
                    record = self._measure(spec, r + 1)
                    self.state.rounds.setdefault(spec.name, []).append(record)
                    self.reporter.scenario_finished(record)
                    self.save("running")
        except KeyboardInterrupt:
            self.save("interrupted")
            raise
        except BaseException:
            self.save("failed")
            raise
        errors = [rec.error for rs in self.state.rounds.values() for rec in rs if rec.status == "failed"]
        result = self.save("failed" if errors else status)
        if errors:
            more = f" (and {len(errors) - 1} more failed rounds)" if len(errors) > 1 else ""
            raise ServerDiedError(f"{errors[0]}{more}; results so far are in {cfg.output}")
        return result

    def snapshot(self, status: str) -> RunResult:
        cfg = self.config
        scenarios: list[ScenarioResult] = []
        for spec in cfg.scenarios:
            rounds = self.state.rounds.get(spec.name)
            if rounds:
                scenarios.append(aggregate(spec.name, spec.path, spec.description, rounds))
        by_name = {s.name: s for s in scenarios}
        ok = {n: s for n, s in by_name.items() if any(r.status == "ok" for r in s.rounds)}
        comparisons = verdict.compare_all(ok, self.pairs) if len(ok) >= 2 else []
        attribution: list[str] = []
        if cfg.is_demo and len(ok) >= 2:
            attribution = verdict.attribute(ok, "p50_ms")[:-1] + verdict.attribute(ok, "cpu_ms_per_request")
        return RunResult(
            schema=results.SCHEMA,
            created=self.state.created,
            tool_version=__version__,
            machine=facts.machine(),
            target=self._target(),
            load=self._load(),
            limits=self.state.limits,
            environment=self.state.environment,
            scenarios=tuple(scenarios),
            comparisons=tuple(comparisons),
            warnings=tuple(self._warnings(ok)),
            attribution=tuple(attribution),
            status=status,
        )

    def save(self, status: str) -> RunResult:
        result = self.snapshot(status)
        results.save(result, self.config.output)
        return result

    # ------------------------------------------------------------------------------------ facts
    def _environment(self) -> dict[str, object]:
        cfg = self.config
        return {
            "python": facts.python(),
            "packages": facts.package_versions(),
            "uvicorn": {**facts.uvicorn_implementations(), "workers": 1, "access_log": True},
            "stdout": {"kind": cfg.stdout, "buffering": python_buffering(cfg.stdout, cfg.unbuffered),
                       "pythonunbuffered_in_server_env": cfg.unbuffered,
                       "pythonunbuffered_in_our_env": os.environ.get("PYTHONUNBUFFERED")},
            "interval_s": cfg.interval_s,
            "demo_knobs": {"work_us": cfg.work_us, "sink_latency_ms": cfg.sink_latency_ms},
        }

    def _target(self) -> dict[str, object]:
        cfg = self.config
        return {"kind": "demo" if cfg.is_demo else "app", "app": cfg.app, "app_dir": cfg.app_dir,
                "server": "uvicorn", "host": LOOPBACK}

    def _load(self) -> dict[str, object]:
        cfg = self.config
        return {"driver": "builtin", "mode": "closed", "requests": cfg.requests,
                "concurrency": cfg.concurrency, "warmup_requests": cfg.warmup, "keepalive": cfg.keepalive,
                "timeout_s": cfg.timeout_s, "rounds": cfg.rounds}

    def _warnings(self, scenarios: dict[str, ScenarioResult]) -> list[Warning]:
        cfg = self.config
        out = list(self.state.warnings)
        out += advice.buffering_warnings(cfg.stdout, python_buffering(cfg.stdout, cfg.unbuffered))
        applied_cpus = self.state.limits.get("cpus") if self.state.limits else None
        out += advice.scenario_warnings(
            scenarios, float(applied_cpus) if isinstance(applied_cpus, (int, float)) and applied_cpus else None)
        lim = self.state.limits
        if lim and lim.get("method") == "none" and (self.config.limits.cpus or self.config.limits.memory_bytes):
            out.append(Warning("limits-not-applied",
                               f"The CPU/memory limits were not applied ({lim.get('reason')}); figures are for "
                               "an unlimited server. Run as root on a machine with cgroups, or pass "
                               "--require-limits to refuse to run without them."))
        return advice.dedupe(out)

    # ------------------------------------------------------------------------------------ one scenario
    def _measure(self, spec: ScenarioSpec, round_no: int) -> RoundRecord:
        cfg = self.config
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if cfg.port is not None:
            check_port_free(cfg.port)
        port = cfg.port or free_port()
        sink = make_sink(cfg.stdout, rate_bytes_per_s=cfg.sink_rate_bytes_per_s)
        stdout_info = StdoutInfo(kind=cfg.stdout, buffering=python_buffering(cfg.stdout, cfg.unbuffered))
        with LimitSession(cfg.limits, name="iolab") as session:
            applied = session.prepare()
            self.state.limits = {**applied.to_dict()}
            argv = session.wrap_command(server_argv(cfg, port))
            self.reporter.phase("starting server")
            server = ServerProcess(argv, env=server_env(cfg), sink=sink, attach=session.attach)
            try:
                server.wait_ready(LOOPBACK, port, cfg.ready_timeout_s,
                                  failure_detail=lambda: _tail_text(sink.counts().tail))
                return self._load_and_probe(spec, round_no, started, port, server, session, applied,
                                            stdout_info)
            finally:
                server.stop()
                sink.close()

    def _load_and_probe(self, spec: ScenarioSpec, round_no: int, started: str, port: int,
                        server: ServerProcess, session: LimitSession, applied: AppliedLimits,
                        stdout_info: StdoutInfo) -> RoundRecord:
        cfg = self.config
        url = f"http://{LOOPBACK}:{port}{spec.path}"
        base = LoadSpec(url=url, requests=cfg.requests, concurrency=cfg.concurrency, keepalive=cfg.keepalive,
                        timeout_s=cfg.timeout_s, method=spec.method, headers=cfg.headers, body=cfg.body,
                        cpus=applied.load_cpus)
        probe = Probe(server.pid, interval_s=cfg.interval_s)
        probe.start()
        try:
            if cfg.warmup > 0:
                self.reporter.phase("warm-up")
                self._drive(replace(base, requests=cfg.warmup, concurrency=min(cfg.concurrency, cfg.warmup)),
                            self.reporter.progress)
            self.reporter.phase("measuring")
            cpu0 = facts.read_cpu_times()
            throttle0 = session.read_cpu_stat()
            c0 = probe.read()
            t0 = time.monotonic()
            load = self._drive(base, self.reporter.progress)
            wall = time.monotonic() - t0
            try:
                c1: Counters | None = probe.read()
            except NoSuchProcess:
                c1 = None
            cpu1 = facts.read_cpu_times()
            throttle1 = session.read_cpu_stat()
            nonblocking = _fd_nonblocking(server.pid)
        finally:
            probe.stop()
        exited = server.poll()
        if c1 is None or exited is not None:
            info = server.stop()
            counts = server.sink.close()
            tail = counts.tail
            msg = (f"the server died mid-run (exit code {info.returncode}) during {spec.path}"
                   f"{_tail_text(tail)}")
            return _failed_round(round_no, started, msg, replace(stdout_info, bytes=counts.bytes,
                                 lines=counts.lines), tail, load)
        exit_info = server.stop()
        counts = server.sink.close()
        return self._record(spec, round_no, started, load, wall, probe, c0, c1, exit_info.rusage,
                            replace(stdout_info, bytes=counts.bytes, lines=counts.lines), counts.tail,
                            facts.noise(cpu0, cpu1, 0.0, wall), throttle0, throttle1, nonblocking)

    def _record(self, spec: ScenarioSpec, round_no: int, started: str, load: LoadResult, wall: float,
                probe: Probe, c0: Counters, c1: Counters, rusage: dict[str, float], stdout: StdoutInfo,
                tail: tuple[str, ...], noise: dict[str, float], throttle0: dict[str, int],
                throttle1: dict[str, int], nonblocking: bool | None) -> RoundRecord:
        w = delta(c0, c1)
        server_cpu_s = w.cpu_user_s + w.cpu_sys_s
        driver_cpu_s = load.cpu_user_s + load.cpu_sys_s
        # Others' CPU = the machine's busy time minus the server's and the driver's.
        ours = server_cpu_s + driver_cpu_s
        if noise:
            busy_s = noise["machine_busy_pct_of_core"] * wall / 100.0
            noise["other_processes_pct_of_core"] = round(max(0.0, 100.0 * (busy_s - ours) / wall), 1)
        if throttle0 and throttle1:
            periods = throttle1.get("nr_periods", 0) - throttle0.get("nr_periods", 0)
            throttled = throttle1.get("nr_throttled", 0) - throttle0.get("nr_throttled", 0)
            noise["cgroup_periods"] = float(periods)
            noise["cgroup_throttled_periods"] = float(throttled)
            noise["cgroup_throttled_pct"] = round(100.0 * throttled / periods, 1) if periods else 0.0
        noise["driver_cpu_pct_of_core"] = round(100.0 * driver_cpu_s / load.duration_s, 1) if load.duration_s else 0.0
        if nonblocking is not None:
            noise["stdout_nonblocking"] = 1.0 if nonblocking else 0.0
        samples = window_samples(probe.samples, c0.t_s - probe.started_t_s, c1.t_s - probe.started_t_s)
        hist = latency.histogram(load.latencies_us)
        completed = load.completed
        failed = load.connect_errors + load.timeouts + load.other_errors
        return RoundRecord(
            round=round_no, status="ok", error=None, started=started, duration_s=round(load.duration_s, 4),
            requests=completed, failed=failed, non_2xx=load.non_2xx, timeouts=load.timeouts,
            connect_errors=load.connect_errors,
            rps=round(completed / load.duration_s, 2) if load.duration_s else 0.0,
            server_cpu_s=round(server_cpu_s, 4),
            rps_per_server_cpu_s=round(completed / server_cpu_s, 2) if server_cpu_s else 0.0,
            latency_ms=latency.latency_ms(hist), latency_hdr=latency.encode(hist),
            cswch_per_s=summarize([s.cswch_per_s for s in samples]),
            nvcswch_per_s=summarize([s.nvcswch_per_s for s in samples]),
            main_thread=MainThread(summarize([s.main_cswch_per_s for s in samples]),
                                   summarize([s.main_nvcswch_per_s for s in samples])),
            per_request=per_request(completed, w.write_syscalls, w.write_bytes, w.voluntary, w.involuntary,
                                    server_cpu_s),
            stdout=stdout, threads=thread_totals(c0, c1), samples=samples,
            driver=DriverUsage(name=load.driver, cpu_user_s=round(load.cpu_user_s, 4),
                               cpu_sys_s=round(load.cpu_sys_s, 4),
                               cpu_pct_of_core=noise["driver_cpu_pct_of_core"]),
            rusage=rusage, noise=noise, server_log_tail=tail[-5:],
        )


def run_experiment(config: RunConfig, reporter: Reporter | None = None) -> RunResult:
    return Experiment(config, reporter).run()

