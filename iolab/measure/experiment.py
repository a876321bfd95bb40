"""The experiment loop: for each round, for each scenario (interleaved), a fresh measured server.

Server → warm-up → measured load while the probe samples → stop → wait4 → a RoundRecord, and the
results file is rewritten at once, so a crash or Ctrl-C later loses nothing already measured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from iolab import __version__, results
from iolab.analysis import advice, verdict
from iolab.analysis.aggregate import aggregate, window_samples
from iolab.analysis.findings import with_findings
from iolab.errors import IolabError, NoSuchProcess, ProbeError
from iolab.measure import facts, hdrlog, netrun, procfs, procs, trying
from iolab.measure.agent_client import AgentClient, AgentProbe, make_probe
from iolab.measure.config import RunConfig, ScenarioSpec
from iolab.measure.drivers import get_driver
from iolab.measure.drivers.base import LoadResult, LoadSpec
from iolab.measure.drivers.summary import behind_schedule, failure_breakdown, outcome, successful
from iolab.measure.limits import AppliedLimits, LimitSession
from iolab.measure.probe import Counters, delta, thread_totals
from iolab.measure.record import ServerSide, failed_round, measured_round, noise_figures, run_error
from iolab.measure.server import ServerProcess
from iolab.measure.serving import serve
from iolab.measure.sinks import Sink, SinkWatch, make_sink, python_buffering
from iolab.measure.targets import AppTarget, RunningTarget, url_for
from iolab.outputs import OutputKeeper, OutputPath, check_outputs
from iolab.results import (
    NOTHING_MEASURED,
    SINK_STALLED,
    RoundRecord,
    RunResult,
    RunWarning,
    ScenarioResult,
    StdoutInfo,
)


class Reporter(Protocol):
    """What the experiment tells its caller as it goes (the CLI draws a progress bar from it)."""

    def scenario_started(self, round_no: int, rounds: int, name: str, index: int, total: int) -> None: ...
    def phase(self, text: str) -> None: ...
    def progress(self, done: int, total: int) -> None: ...
    def scenario_finished(self, record: RoundRecord) -> None: ...


class SilentReporter:
    """Tells nothing; a reporter that has something to say of some news only overrides those."""

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
    warnings: list[RunWarning] = field(default_factory=list)
    hdr_entries: list[hdrlog.Entry] = field(default_factory=list)
    explains: dict[str, results.Explain] = field(default_factory=dict)
    try_applied: dict[str, dict[str, object]] = field(default_factory=dict)  # --try: per scenario


def server_env(config: RunConfig) -> dict[str, str]:
    """The server's environment: ours, with stdout buffering set explicitly, never inherited."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if config.unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    app_dir = config.target.app_dir if isinstance(config.target, AppTarget) else None
    paths = [app_dir or os.getcwd()]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["IOLAB_WORK_US"] = str(config.work_us)
    env["IOLAB_SINK_LATENCY_MS"] = str(config.sink_latency_ms)
    return env


def _fd_nonblocking(pid: int, fd: int = 1) -> bool | None:
    """Is the server's fd 1 in O_NONBLOCK mode? (aiologger switches it for the whole process.)"""
    try:
        return bool(procfs.fd_flags(pid, fd) & os.O_NONBLOCK)
    except ProbeError:
        return None


@contextlib.contextmanager
def saved_on_error(save: Callable[[str], object]) -> Iterator[None]:
    """Partial results reach the disk before an exception propagates: "interrupted" on Ctrl-C, else
    "failed"."""
    try:
        yield
    except KeyboardInterrupt:
        save("interrupted")
        raise
    except BaseException:
        save("failed")
        raise


def probe_failed(scenario: str, round_no: int, error: BaseException) -> RunWarning:
    """The probe's sampler stopped on an error: the samples after it (rates, peak RSS) are missing."""
    return RunWarning("probe-failed", f"{scenario}, round {round_no}: sampling the server's /proc stopped "
                      f"early ({type(error).__name__}: {error}); the per-second samples and the sampled peak "
                      "RSS end there")


def stdout_log_path(output: Path, scenario: str, round_no: int) -> Path:
    """Where ``--stdout file`` keeps one server's output: next to the results, one file per server."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in scenario.strip("/")) or "root"
    return output.parent / f"{output.stem}.{safe}.r{round_no}.stdout.log"


def experiment_outputs(config: RunConfig) -> list[tuple[str, OutputPath | None]]:
    """Every file a run writes, as (option, path), for iolab.outputs.check_outputs."""
    items: list[tuple[str, OutputPath | None]] = [("-o", config.output), ("--hdr-log", config.hdr_log)]
    if config.stdout == "file" and not isinstance(config.target, RunningTarget):
        items += [("--stdout file", stdout_log_path(config.output, spec.name, r + 1))
                  for spec in config.scenarios for r in range(config.rounds)]
    return items


def _kill_group(server: ServerProcess | None) -> None:
    """SIGKILL the server's process group from the sink watcher's thread; the loop reaps it (stop())."""
    if server is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.pgid, signal.SIGKILL)


def _worth_measuring(warm: LoadResult | None, watch: SinkWatch | None, server: ServerProcess | None) -> bool:
    """Can the measured load measure anything after this warm-up?"""
    if warm is not None and successful(warm) == 0:
        return False
    if watch is not None and watch.stalled:
        return False
    return server is None or server.poll() is None


def _tail_text(tail: tuple[str, ...], n: int = 3) -> str:
    lines = [t.strip() for t in tail if t.strip()][-n:]
    return ("; last output: " + " | ".join(lines)) if lines else ""


class Experiment:
    def __init__(self, config: RunConfig, reporter: Reporter | None = None,
                 keeper: OutputKeeper | None = None) -> None:
        self.config = config
        self.reporter: Reporter = reporter or SilentReporter()
        # Writes the results and the HdrHistogram log; one that fails mid-run goes on in a fallback file.
        self.keeper = keeper or OutputKeeper()
        # Pairs to compare: the user's (--compare a:b), else the demo's controls and seed pairs.
        self.pairs: list[tuple[str, str]] | None = list(config.compare) or None
        # The run's last saved result once every round has run (also when run() then raises for a round
        # that is not ok), for a report of what was measured; None before that.
        self.finished: RunResult | None = None
        # get_driver fails now, before any server starts, when an external tool is not installed.
        self._drive = get_driver(config.driver, config.locust).run
        self.net: netrun.NetSession | None = None  # the run's network (issue 20), while run() runs
        self.state = _State(
            config=config,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            environment=self._environment(),
        )
        if os.environ.get("PYTHONUNBUFFERED") and not config.unbuffered and \
                not isinstance(config.target, RunningTarget):
            self.state.warnings.append(RunWarning(
                "pythonunbuffered-removed",
                "PYTHONUNBUFFERED was set in your environment; iolab removed it from the server's, so a "
                "Python server's stdout is block-buffered, Python's default on a pipe. To measure unbuffered "
                "output, pass --unbuffered.",
            ))

    # ------------------------------------------------------------------------------------ public
    def run(self) -> RunResult:
        """Run every round; on any exception the partial results are on disk before it propagates.

        Results that could not be written to ``config.output`` are in ``self.keeper.where(config.output)``
        (a fallback file); ``self.keeper.raise_if_fell_back()`` turns that into OutputWriteError.
        """
        # Before any network or server starts (and before a save can fail).
        check_outputs(*experiment_outputs(self.config))
        with netrun.session(self.config.network) as self.net:
            return self._run()

    def _run(self) -> RunResult:
        cfg = self.config
        specs = cfg.scenarios
        status = "complete"
        with saved_on_error(self.save):
            for r in range(cfg.rounds):
                # Rotate the order each round so slow drift on a shared machine hits all scenarios alike.
                order = specs[r % len(specs):] + specs[: r % len(specs)]
                for i, spec in enumerate(order):
                    self.reporter.scenario_started(r + 1, cfg.rounds, spec.name, i + 1, len(order))
                    record = self._measure(spec, r + 1)
                    if self.net is not None:
                        record = self.net.finish_round(record, spec.name)
                    self.state.rounds.setdefault(spec.name, []).append(record)
                    self.reporter.scenario_finished(record)
                    self.save("running")
            if cfg.explain:
                self._explain()
        failed = any(rec.status == "failed" for rs in self.state.rounds.values() for rec in rs)
        result = self.save("failed" if failed else status)
        self.finished = result
        error = self.outcome_error()
        if error is not None:
            raise error
        return result

    def outcome_error(self) -> IolabError | None:
        """The error a finished run ends with (record.run_error), None when every round is ok."""
        paths = {s.name: s.path for s in self.config.scenarios}
        rounds = [(paths.get(name, name), rec) for name, rs in self.state.rounds.items() for rec in rs]
        return run_error(rounds, self.keeper.where(self.config.output))

    def snapshot(self, status: str) -> RunResult:
        cfg = self.config
        scenarios: list[ScenarioResult] = []
        for spec in cfg.scenarios:
            rounds = self.state.rounds.get(spec.name)
            if rounds:
                scenarios.append(trying.labelled(netrun.scenario_delivery(replace(
                    aggregate(spec.name, spec.path, spec.description, rounds),
                    explain=self.state.explains.get(spec.name))), spec, self.state.try_applied))
        by_name = {s.name: s for s in scenarios}
        ok = {n: s for n, s in by_name.items() if any(r.status == "ok" for r in s.rounds)}
        measured = {n: s for n, s in by_name.items() if any(r.measured for r in s.rounds)}
        # Only pairs whose two scenarios have been measured (a snapshot is also taken mid-run).
        pairs = None if self.pairs is None else [(a, b) for a, b in self.pairs if a in ok and b in ok]
        known = cfg.knowledge
        comparisons = verdict.compare_all(ok, pairs, knowledge=known) if len(ok) >= 2 else []
        attribution: list[str] = []
        if len(ok) >= 2:  # none without knowledge of the scenarios' controls (a user's app)
            # The mean, not p50: under the quota p50 jumps between the distribution's two modes (advice.py).
            attribution = (verdict.attribute(ok, "mean_ms", known)[:-1]
                           + verdict.attribute(ok, "cpu_ms_per_request", known))
        return with_findings(RunResult(
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
            warnings=tuple(self._warnings(measured, scenarios)),
            attribution=tuple(attribution),
            status=status,
            network=self.net.describe() if self.net is not None else None,
        ), known)

    def save(self, status: str) -> RunResult:
        result = self.snapshot(status)
        self.keeper.write("-o", self.config.output, results.dumps(result))
        return result

    def _explain(self) -> None:
        """The explain pass: one traced round per measured scenario, after every measured round."""
        from iolab.measure.explain import explain_scenario

        done = {s.name: s for s in self.snapshot("running").scenarios}
        for i, spec in enumerate(self.config.scenarios):
            measured = done.get(spec.name)
            if measured is None or not any(r.measured for r in measured.rounds):
                continue
            self.reporter.scenario_started(0, self.config.rounds, f"{spec.name} · explain", i + 1,
                                           len(self.config.scenarios))
            env = {**server_env(self.config), **(self.net.server_env(spec.name, 0) if self.net else {})}
            with trying.knobs_for(spec, env, self.state.try_applied):  # a --try variant is explained as run
                self.state.explains[spec.name] = explain_scenario(
                    self.config, spec, env, self._drive, measured.latency_ms.mean,
                    self.reporter.phase, self.reporter.progress)
            self.save("running")

    # ------------------------------------------------------------------------------------ facts
    def _environment(self) -> dict[str, object]:
        cfg = self.config
        target = cfg.target
        env: dict[str, object] = {}
        # Only a server iolab serves runs iolab's interpreter and packages (and uvicorn, by default): for
        # --cmd and --url those would describe iolab, not the server (facts.server_facts says what is known).
        served = isinstance(target, AppTarget)
        if isinstance(target, AppTarget):
            env["python"] = facts.python()
            env["packages"] = facts.package_versions()
            if target.server == "uvicorn":
                env["uvicorn"] = {**facts.uvicorn_implementations(target.loop), "access_log": True}
        env["server"] = facts.server_facts(target)
        env["probe"] = cfg.agent.describe() if cfg.agent else {"kind": "local"}
        if cfg.agent and isinstance(target, RunningTarget) and target.pid is not None:
            # The PID is on the agent's host: what is known of it comes from there (and fails now if the
            # agent is unreachable or refuses the token or the PID, before any load).
            seen = AgentClient(cfg.agent).call("GET", f"/v1/processes/{target.pid}")
            if not seen.get("alive", True):  # allowed by the agent, but gone (or never there) on its host
                raise NoSuchProcess(f"--pid {target.pid}: no such process on the agent's host ({cfg.agent.url})")
            env["server"] = {"known_from": f"agent {cfg.agent.url}", "pid": target.pid,
                             **{k: seen.get(k) for k in ("cmdline", "executable")}}
        running = isinstance(target, RunningTarget)
        env["stdout"] = {
            "kind": "unknown" if running else cfg.stdout,
            # Python's rules hold for a Python server iolab serves; another server buffers its own way.
            "buffering": python_buffering(cfg.stdout, cfg.unbuffered) if served else "unknown",
            "pythonunbuffered_in_server_env": None if running else cfg.unbuffered,
            "pythonunbuffered_in_our_env": os.environ.get("PYTHONUNBUFFERED")}
        env["interval_s"] = cfg.interval_s
        env["demo_knobs"] = {"work_us": cfg.work_us, "sink_latency_ms": cfg.sink_latency_ms}
        return env

    def _target(self) -> dict[str, object]:
        return self.config.target.describe()

    def _load(self) -> dict[str, object]:
        cfg = self.config
        mode = "open" if cfg.rate is not None else "closed, timed" if cfg.duration_s is not None else "closed"
        return {"driver": cfg.driver, "mode": mode, "requests": None if cfg.duration_s else cfg.requests,
                "duration_s": cfg.duration_s, "rate": cfg.rate, "arrival": cfg.arrival if cfg.rate else None,
                "concurrency": cfg.concurrency, "warmup_requests": cfg.warmup, "keepalive": cfg.keepalive,
                "timeout_s": cfg.timeout_s, "rounds": cfg.rounds,
                "hdr_log": str(cfg.hdr_log) if cfg.hdr_log else None}

    def _warnings(self, scenarios: dict[str, ScenarioResult], every: list[ScenarioResult]) -> list[RunWarning]:
        cfg = self.config
        out = list(self.state.warnings) + advice.outcome_warnings(every) + trying.warnings(every)
        out += advice.buffering_warnings(cfg.stdout, python_buffering(cfg.stdout, cfg.unbuffered))
        applied_cpus = self.state.limits.get("cpus") if self.state.limits else None
        out += advice.scenario_warnings(
            scenarios, float(applied_cpus) if isinstance(applied_cpus, (int, float)) and applied_cpus else None,
            cfg.knowledge)
        server = self.state.environment.get("server")
        out += advice.write_syscalls_scope(server if isinstance(server, dict) else {},
                                           bool(cfg.target.describe().get("server_measured")))
        if isinstance(cfg.target, RunningTarget):
            if cfg.target.pid is None:
                out.append(RunWarning("server-not-measured",
                                   "Only latency was measured: iolab did not start this server and was given no "
                                   "PID, so the server-side tables are empty. Pass --pid PID to sample its "
                                   "process tree."))
            return advice.dedupe(out)
        lim = self.state.limits
        if lim and lim.get("method") == "none" and (self.config.limits.cpus or self.config.limits.memory_bytes):
            out.append(RunWarning("limits-not-applied",
                               f"The CPU/memory limits were not applied ({lim.get('reason')}); figures are for "
                               "an unlimited server. Run as root on a machine with cgroups, or pass "
                               "--require-limits to refuse to run without them."))
        return advice.dedupe(out)

    # ------------------------------------------------------------------------------------ one scenario
    def _sink(self, spec: ScenarioSpec, round_no: int) -> Sink:
        cfg = self.config
        path = stdout_log_path(cfg.output, spec.name, round_no) if cfg.stdout == "file" else None
        return make_sink(cfg.stdout, rate_bytes_per_s=cfg.sink_rate_bytes_per_s, file_path=path)

    def _measure(self, spec: ScenarioSpec, round_no: int) -> RoundRecord:
        cfg = self.config
        target = cfg.target
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if isinstance(target, RunningTarget):
            self.state.limits = {"method": "none", "reason": "a running server is never limited by iolab",
                                 "cpus": None, "memory_bytes": None}
            url = url_for(target.url, spec.path)
            return self._load_and_probe(spec, round_no, started, url, target.pid, None, None, None,
                                        StdoutInfo(kind="unknown", buffering="unknown"))
        sink = self._sink(spec, round_no)
        stdout_info = StdoutInfo(kind=cfg.stdout, buffering=python_buffering(cfg.stdout, cfg.unbuffered))
        env = {**server_env(cfg), **(self.net.server_env(spec.name, round_no) if self.net else {})}
        with LimitSession(cfg.limits, name="iolab") as session, trying.knobs_for(spec, env, self.state.try_applied):
            applied = session.prepare()
            self.state.limits = {**applied.to_dict()}
            self.reporter.phase("starting server")
            detail = lambda: _tail_text(sink.counts().tail)  # noqa: E731 - read at failure time
            with serve(target, spec.path, session, env, sink, cfg.ready_timeout_s, detail) as (server, url):
                return self._load_and_probe(spec, round_no, started, url, server.pid, server, session, applied,
                                            stdout_info)

    def _load_and_probe(self, spec: ScenarioSpec, round_no: int, started: str, url: str, pid: int | None,
                        server: ServerProcess | None, session: LimitSession | None,
                        applied: AppliedLimits | None, stdout_info: StdoutInfo) -> RoundRecord:
        cfg = self.config
        base = LoadSpec(url=url, requests=cfg.requests, concurrency=cfg.concurrency, keepalive=cfg.keepalive,
                        timeout_s=cfg.timeout_s, method=spec.method, headers=cfg.headers, body=cfg.body,
                        cpus=applied.load_cpus if applied else None, rate=cfg.rate, duration_s=cfg.duration_s,
                        arrival=cfg.arrival)
        probe = make_probe(cfg.agent, pid, cfg.interval_s) if pid is not None else None
        # A server blocked writing to a stalled sink answers nothing more: stop it, so the driver's
        # requests fail at once instead of each waiting out --timeout, and say why the round ended.
        watch = SinkWatch(server.sink, lambda _msg: _kill_group(server)) if server is not None else None
        c1: Counters | None = None
        warm: LoadResult | None = None
        load: LoadResult | None = None
        vanished = False  # the server's /proc went away before the sampling began (died at once, OOM)
        try:
            if probe is not None:
                try:
                    probe.start()
                except NoSuchProcess:
                    vanished, probe = True, None
            with watch or contextlib.nullcontext():
                if cfg.warmup > 0:
                    self.reporter.phase("warm-up")
                    warm = self._drive(self._warmup_spec(base), self.reporter.progress)
                # Nothing to measure after the warm-up when nothing in it succeeded (the measured load
                # would only repeat its failures, each waiting out --timeout), its sink stalled, or the
                # server is gone (its /proc cannot be read): the round fails below, saying which.
                try:
                    c0 = probe.read() if probe and _worth_measuring(warm, watch, server) else None
                except NoSuchProcess:
                    c0 = None
                if not vanished and _worth_measuring(warm, watch, server) and (probe is None or c0 is not None):
                    self.reporter.phase("measuring")
                    cpu0 = procfs.cpu_times()
                    throttle0 = session.read_cpu_stat() if session else {}
                    t0, started_epoch_s = time.monotonic(), time.time()
                    with self.net.during_load() if self.net else contextlib.nullcontext():
                        load = self._drive(base, self.reporter.progress)
                    wall = time.monotonic() - t0
                    try:
                        c1 = probe.read() if probe else None
                    except NoSuchProcess:
                        c1 = None
                    cpu1 = procfs.cpu_times()
                    throttle1 = session.read_cpu_stat() if session else {}
                    nonblocking = _fd_nonblocking(pid) if pid is not None and cfg.agent is None else None
        finally:
            if probe is not None:
                probe.stop()
                if probe.error is not None:
                    self.state.warnings.append(probe_failed(spec.name, round_no, probe.error))
                self._agent_cost(probe)
        lost = vanished or (probe is not None and load is not None and c1 is None)  # /proc went away
        cut = self._cut_short(spec, round_no, started, url, pid, server, session, stdout_info, watch, warm, load,
                              lost)
        if cut is not None:
            return cut
        if load is None:  # /proc/PID unreadable before the load, yet the process is there
            stdout, tail = self._stop_server(server, stdout_info)
            return failed_round(round_no, started, f"the server's /proc/{pid} could not be read before the load "
                                f"of {spec.path}", stdout, tail, warm)
        side = None
        if probe is not None and c0 is not None and c1 is not None:
            side = ServerSide(delta(c0, c1),
                              window_samples(probe.samples, c0.t_s - probe.started_t_s, c1.t_s - probe.started_t_s),
                              thread_totals(c0, c1))
        rusage: dict[str, float] = {}
        stdout, tail = stdout_info, ()
        if server is not None:
            rusage = dict(server.stop().rusage)
            stdout, tail = self._stop_server(server, stdout_info)
        if probe is not None and probe.samples:
            rusage["peak_rss_bytes_sampled"] = float(max(smp.rss_bytes for smp in probe.samples))
        server_cpu_s = (side.window.cpu_user_s + side.window.cpu_sys_s) if side else 0.0
        noise = noise_figures(facts.noise(cpu0, cpu1, 0.0, wall), wall, server_cpu_s, load, throttle0, throttle1,
                              nonblocking)
        verdict_of_load = outcome(load, cfg.timeout_s, cfg.max_error_pct, url)
        if verdict_of_load.status != "failed":
            self._after_load(spec, round_no, started_epoch_s, load)
        return measured_round(round_no, started, load, side, stdout, rusage, noise, tail, verdict_of_load)

    def _agent_cost(self, window: object) -> None:
        """The agent's CPU per /proc reading, summed over the run's windows, into environment.probe."""
        if not isinstance(window, AgentProbe):
            return
        cost = window.cost
        probe = self.state.environment.get("probe")
        n, cpu = cost.get("readings"), cost.get("cpu_s")
        if isinstance(probe, dict) and isinstance(n, int) and isinstance(cpu, (int, float)) and n > 0:
            probe["readings"] = int(probe.get("readings", 0)) + n
            probe["agent_cpu_s"] = round(float(probe.get("agent_cpu_s", 0.0)) + cpu, 6)
            probe["agent_cpu_ms_per_reading"] = round(1000.0 * probe["agent_cpu_s"] / probe["readings"], 4)

    def _warmup_spec(self, base: LoadSpec) -> LoadSpec:
        cfg = self.config
        if cfg.driver in ("wrk", "locust"):  # they count time, not requests: a short closed loop
            return replace(base, rate=None, duration_s=1.0)
        return replace(base, requests=cfg.warmup, rate=None, duration_s=None,
                       concurrency=min(cfg.concurrency, cfg.warmup))

    def _cut_short(self, spec: ScenarioSpec, round_no: int, started: str, url: str, pid: int | None,
                   server: ServerProcess | None, session: LimitSession | None, stdout_info: StdoutInfo,
                   watch: SinkWatch | None, warm: LoadResult | None, load: LoadResult | None,
                   lost: bool) -> RoundRecord | None:
        """The failed record of a round whose load could not measure: its sink stalled, the server died,
        or nothing succeeded in its warm-up (so the measured load never ran). None when it measured."""
        ran = load or warm
        if watch is not None and watch.stalled:
            stdout, tail = self._stop_server(server, stdout_info)
            msg = f"{watch.stalled} (during {spec.path}); the round was stopped"
            return failed_round(round_no, started, msg, stdout, tail, ran, SINK_STALLED)
        if server is not None:
            died = lost or server.poll() is not None
        else:
            died = lost or (pid is not None and self.config.agent is None and not procs.alive(pid))
        if died:
            code = server.stop().returncode if server else None
            stdout, tail = self._stop_server(server, stdout_info)
            what = f"exit code {code}" if server else f"PID {pid} is gone"
            oom = session.memory_limit_kill(code) if session else None  # read before the cgroup goes
            msg = (f"{oom} during {spec.path}" if oom else
                   f"the server died mid-run ({what}) during {spec.path}") + _tail_text(tail)
            return failed_round(round_no, started, msg, stdout, tail, ran)
        if load is None and warm is not None:
            stdout, tail = self._stop_server(server, stdout_info)
            # wrk and Locust warm up for a second (_warmup_spec), not for --warmup requests.
            size = (f"{warm.requests:,} requests in 1 s" if self.config.driver in ("wrk", "locust")
                    else f"{self.config.warmup:,} requests, --warmup")
            msg = (f"no request succeeded in the warm-up ({size}), so the "
                   f"measured load was not run: {failure_breakdown(warm, self.config.timeout_s, url)}")
            return failed_round(round_no, started, msg, stdout, tail, warm, NOTHING_MEASURED)
        return None

    @staticmethod
    def _stop_server(server: ServerProcess | None,
                     stdout_info: StdoutInfo) -> tuple[StdoutInfo, tuple[str, ...]]:
        """Stop and reap the server (idempotent); what its sink received."""
        if server is None:
            return stdout_info, ()
        server.stop()
        counts = server.sink.close()
        return replace(stdout_info, bytes=counts.bytes, lines=counts.lines), counts.tail

    def _after_load(self, spec: ScenarioSpec, round_no: int, started_epoch_s: float, load: LoadResult) -> None:
        """The open loop's schedule warning, and the HdrHistogram log rewritten with this round added."""
        if self.net is not None:
            self.net.note_load(load)
        late = behind_schedule(load)
        if late:
            self.state.warnings.append(RunWarning("driver-behind-schedule", f"{spec.name}, round {round_no}: {late}"))
        if self.config.hdr_log is not None:
            self.state.hdr_entries.append(
                hdrlog.Entry(hdrlog.tag_for(spec.name, f"r{round_no}"), started_epoch_s, load))
            self.keeper.write("--hdr-log", self.config.hdr_log, hdrlog.render_log(self.state.hdr_entries))


def run_experiment(config: RunConfig, reporter: Reporter | None = None) -> RunResult:
    """Run ``config``; OutputWriteError if its results had to go to a fallback file (the error names it)."""
    keeper = OutputKeeper()
    result = Experiment(config, reporter, keeper=keeper).run()
    keeper.raise_if_fell_back()
    return result

