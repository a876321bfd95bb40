"""The demo app's scenarios: one path each, what each isolates, and which control it pairs with."""

from __future__ import annotations

from dataclasses import dataclass

DEMO_APP = "iolab.demo.app:app"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    handler: str
    isolates: str
    control: str | None = None  # the scenario it differs from by one thing
    method: str = "GET"
    seed: bool = False  # one of the seed's four endpoints, verbatim


DEMO_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("noop-async", "/noop-async", "async def, no logging", "baseline on the event loop"),
    Scenario("noop-sync", "/noop-sync", "def, no logging", "the thread-pool hand-off alone", "noop-async"),
    Scenario(
        "sync", "/sync", "def + handler-less stdlib logger (seed)", "what the seed really measured",
        "noop-sync", seed=True,
    ),
    Scenario("async", "/async", "async def + aiologger (seed)", "aiologger's cost", "noop-async", seed=True),
    Scenario(
        "sync-raw", "/sync-raw", "def + sys.stdout.write (seed)", "a raw write from a worker thread",
        "noop-sync", seed=True,
    ),
    Scenario(
        "async-raw", "/async-raw", "async def + task that writes (seed)", "a deferred raw write on the loop",
        "noop-async", seed=True,
    ),
    Scenario(
        "sync-handler", "/sync-handler", "def + stdlib StreamHandler", "a real blocking log call in a worker",
        "noop-sync",
    ),
    Scenario(
        "async-blocking-log", "/async-blocking-log", "async def + the same StreamHandler",
        "a blocking write on the event loop", "noop-async",
    ),
)

# The order of the seed's table first, then the controls.
DEFAULT_ORDER = ("sync", "async", "sync-raw", "async-raw", "noop-sync", "noop-async", "sync-handler",
                 "async-blocking-log")

BY_NAME = {s.name: s for s in DEMO_SCENARIOS}


def select(names: str | None) -> tuple[Scenario, ...]:
    """Scenarios by comma-separated names ("all" or None = every demo scenario, in DEFAULT_ORDER)."""
    from iolab.errors import UsageError

    if not names or names.strip() == "all":
        return tuple(BY_NAME[n] for n in DEFAULT_ORDER)
    out: list[Scenario] = []
    for raw in names.split(","):
        name = raw.strip().lstrip("/")
        if not name:
            continue
        if name not in BY_NAME:
            known = ", ".join(DEFAULT_ORDER)
            raise UsageError(f"unknown scenario {raw.strip()!r} (known: {known}; see `iolab scenarios`)")
        if BY_NAME[name] not in out:
            out.append(BY_NAME[name])
    if not out:
        raise UsageError("no scenario selected")
    return tuple(out)
