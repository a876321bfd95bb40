"""What one ``iolab run`` is asked to do, as plain frozen dataclasses (the CLI only fills these in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from iolab.analysis.knowledge import NONE, ScenarioKnowledge
from iolab.measure.agent_client import AgentSpec
from iolab.measure.drivers.locust import LocustOptions
from iolab.measure.drivers.summary import MAX_ERROR_PCT
from iolab.measure.limits import LimitsRequest
from iolab.measure.netrun import NetRequest
from iolab.measure.targets import AppTarget, Target

DEMO_APP = "iolab.demo.app:app"


@dataclass(frozen=True)
class ScenarioSpec:
    """One path of the target, measured on a fresh server."""

    name: str
    path: str
    method: str = "GET"
    description: str = ""
    control: str | None = None
    variant: dict[str, str] | None = None  # --try: every knob's value (iolab.measure.trying)


@dataclass(frozen=True)
class RunConfig:
    scenarios: tuple[ScenarioSpec, ...]
    target: Target = field(default_factory=lambda: AppTarget(DEMO_APP, kind="demo"))
    requests: int = 10_000
    concurrency: int = 100
    warmup: int = 1_000
    keepalive: bool = False
    timeout_s: float = 30.0
    interval_s: float = 1.0
    rounds: int = 3
    limits: LimitsRequest = field(default_factory=LimitsRequest)
    stdout: str = "pipe"
    sink_rate_bytes_per_s: int = 400_000
    unbuffered: bool = False
    ready_timeout_s: float = 30.0
    output: Path = Path("iolab-results/run.json")
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    compare: tuple[tuple[str, str], ...] = ()
    # Load driver (issue 5): builtin | ab | wrk | hey; an open loop with rate + duration (builtin only); a
    # closed loop for a time with duration alone.
    driver: str = "builtin"
    rate: float | None = None
    duration_s: float | None = None
    arrival: str = "uniform"
    hdr_log: Path | None = None
    # Demo knobs (issue 8), passed to the demo app through its environment.
    work_us: int = 0
    sink_latency_ms: float = 0.0
    # A round whose requests did not succeed in more than this share (percent) is "degraded" (exit 8).
    max_error_pct: float = MAX_ERROR_PCT
    # The explain pass (issue 17, iolab.measure.explain): one traced round per scenario after the measured
    # ones. Off for a library caller; the CLI's `run` turns it on unless --no-explain.
    explain: bool = False
    explain_requests: int = 2000
    explain_method: str = "auto"  # auto | bpftrace | strace | none
    # What the analysis may know about the scenarios (controls, pairs): the demo's own for the demo
    # (iolab.demo.scenarios.knowledge()), nothing for a user's app.
    knowledge: ScenarioKnowledge = NONE
    # Issue 21: the probe served by an `iolab agent` on the server's host; Locust's fleet (--driver locust).
    agent: AgentSpec | None = None
    locust: LocustOptions | None = None
    # Logging across a network (issue 20): iolab's namespace, link impairment and collectors; None: none.
    network: NetRequest | None = None

    @property
    def is_demo(self) -> bool:
        return isinstance(self.target, AppTarget) and self.target.kind == "demo"
