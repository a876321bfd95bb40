"""The demo app's scenarios: one path each, what each isolates, and which control it pairs with.

This module is the one source of truth about the demo's structure: :func:`knowledge` hands the controls,
the log-code phrases and the peer pairs to the analysis, which imports nothing of the demo. It imports
nothing heavy (no FastAPI, no loggers).

Groups for ``--scenario``: ``default`` — the seed's four endpoints, the two no-logging controls and the
StreamHandler pair, what ``iolab run`` measures when given no ``--scenario``; ``all`` — every scenario
whose packages are installed (the catalog); ``catalog`` — the entries beyond the default eight, with the
controls they are compared with. Groups and names mix: ``--scenario default,queue-async``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

DEMO_APP = "iolab.demo.app:app"
LOGGERS_EXTRA = "pip install 'iolab[loggers]'"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    handler: str
    isolates: str
    control: str | None = None  # the scenario it differs from by one thing
    method: str = "GET"
    seed: bool = False  # one of the seed's four endpoints, verbatim
    catalog: bool = False  # beyond the default eight (issue 8)
    log_code: str = ""  # what it adds to its control, for verdict sentences; "" for the controls
    writes: bool = True  # meant to write one stdout line per request
    # The request does not wait for its write: another thread writes it later, or a non-blocking transport
    # (aiologger). Not async-raw (its task blocks the loop a moment later) nor structlog's ainfo (the loop
    # is free, but the request awaits the executor thread's blocking write, as a `def` endpoint would).
    defers: bool = False
    needs: str | None = None  # a module of the `loggers` extra
    peers: tuple[str, ...] = ()  # other scenarios it is compared with head to head (peer → this)
    network: bool = False  # logs to a collector across iolab's network namespace (issue 20; needs root)


_A, _S = "noop-async", "noop-sync"

DEMO_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("noop-async", "/noop-async", "async def, no logging", "baseline on the event loop",
             writes=False),
    Scenario("noop-sync", "/noop-sync", "def, no logging", "the thread-pool hand-off alone", _A,
             writes=False),
    Scenario("sync", "/sync", "def + handler-less stdlib logger (seed)", "what the seed really measured", _S,
             seed=True, log_code="the handler-less logger.info call"),
    Scenario("async", "/async", "async def + aiologger (seed)", "aiologger's cost", _A, seed=True,
             log_code="aiologger's info call", defers=True),
    Scenario("sync-raw", "/sync-raw", "def + sys.stdout.write (seed)", "a raw write from a worker thread", _S,
             seed=True, log_code="sys.stdout.write"),
    Scenario("async-raw", "/async-raw", "async def + task that writes (seed)",
             "a deferred raw write on the loop", _A, seed=True, log_code="the write task"),
    Scenario("sync-handler", "/sync-handler", "def + stdlib StreamHandler", "a real blocking log call in a worker",
             _S, log_code="logger.info through a StreamHandler"),
    Scenario("async-blocking-log", "/async-blocking-log", "async def + the same StreamHandler",
             "a blocking write on the event loop", _A,
             log_code="a blocking StreamHandler call on the event loop"),
    # --- the catalog -----------------------------------------------------------------------------------
    Scenario("cpu-only", "/cpu-only", "async def + a handler that formats and drops the line",
             "a log call's CPU (record, formatting) without the write; the better control for the "
             "async def stdlib strategies (its peers)", _A, catalog=True,
             log_code="formatting a log record without writing it", writes=False),
    Scenario("queue-sync", "/queue-sync", "def + stdlib QueueHandler → QueueListener thread",
             "handing the record to a listener thread, from a worker", _S, catalog=True,
             log_code="a QueueHandler put (a listener thread writes)", defers=True, peers=("sync-handler",)),
    Scenario("queue-async", "/queue-async", "async def + the same QueueHandler",
             "taking the write off the event loop with the stdlib", _A, catalog=True,
             log_code="a QueueHandler put on the event loop (a listener thread writes)", defers=True,
             peers=("async-blocking-log", "cpu-only")),
    Scenario("loguru", "/loguru", "async def + loguru's default handler (on stdout)",
             "loguru formatting and writing in the caller", _A, catalog=True,
             log_code="loguru's info call (default handler)", needs="loguru", peers=("async-blocking-log",)),
    Scenario("loguru-enqueue", "/loguru-enqueue", "async def + loguru enqueue=True",
             "loguru's queue: pickled into a multiprocessing pipe, written by a thread", _A, catalog=True,
             log_code="loguru's info call with enqueue=True", defers=True, needs="loguru", peers=("loguru",)),
    Scenario("structlog", "/structlog", "async def + structlog PrintLogger (JSON), info",
             "structlog's processors and print in the caller", _A, catalog=True,
             log_code="structlog's info call (PrintLogger)", needs="structlog", peers=("async-blocking-log",)),
    Scenario("structlog-ainfo", "/structlog-ainfo", "async def + structlog await ainfo",
             "running the whole log call in the default executor", _A, catalog=True,
             log_code="structlog's ainfo (the call in the executor)", needs="structlog", peers=("structlog",)),
    Scenario("picologging", "/picologging", "async def + picologging StreamHandler",
             "the logging API in C, same blocking write", _A, catalog=True,
             log_code="picologging's info call (StreamHandler)", needs="picologging",
             peers=("async-blocking-log",)),
    Scenario("print", "/print", "async def + print (block-buffered)", "print on the loop, buffered", _A,
             catalog=True, log_code="print"),
    Scenario("print-flush", "/print-flush", "async def + print(flush=True)", "a write(2) per print", _A,
             catalog=True, log_code="print(flush=True)", peers=("print",)),
    Scenario("ours-sync", "/ours-sync", "def + iolab.logging.BatchHandler",
             "iolab's batching handler from a worker", _S, catalog=True,
             log_code="iolab.logging's BatchHandler", defers=True, peers=("sync-handler", "queue-sync")),
    Scenario("ours-async", "/ours-async", "async def + iolab.logging.BatchHandler",
             "iolab's batching handler on the event loop", _A, catalog=True,
             log_code="iolab.logging's BatchHandler on the event loop", defers=True,
             peers=("async-blocking-log", "queue-async")),
    Scenario("deferred-sync", "/deferred-sync", "def + iolab.logging.install(defer=True)",
             "capturing a tuple from a worker; the writer thread formats and writes", _S, catalog=True,
             log_code="iolab.logging's deferred capture", defers=True, peers=("ours-sync", "sync-handler")),
    Scenario("deferred-async", "/deferred-async", "async def + iolab.logging.install(defer=True)",
             "capturing a tuple on the event loop; the writer thread formats and writes", _A, catalog=True,
             log_code="iolab.logging's deferred capture on the event loop", defers=True,
             peers=("ours-async", "async-blocking-log")),
)

# Logging across a network (issue 20, iolab/demo/remote.py): only in the "network" group, since they need
# iolab's namespace and collectors (root); selecting one builds them.
_NETWORK_PEERS = {"queue-http": ("http-per-record",), "ours-http": ("http-per-record", "queue-http"),
                  "ours-tcp": ("socket-tcp", "syslog-tcp")}
NETWORK_SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(name, f"/{name}", handler, isolates, writes=False, network=True, defers=defers,
             peers=_NETWORK_PEERS.get(name, ()))
    for name, handler, isolates, defers in (
        ("syslog-udp", "async def + stdlib SysLogHandler (UDP)", "a datagram per record", False),
        ("syslog-tcp", "async def + stdlib SysLogHandler (TCP)", "a send per record on a kept connection", False),
        ("socket-tcp", "async def + stdlib SocketHandler, JSON lines", "a send per record, silent drops", False),
        ("http-per-record", "async def + one HTTP request per record (as HTTPHandler)",
         "the naive 'log to Elasticsearch': a connection and a request per record", False),
        ("queue-http", "async def + QueueHandler → listener → one request per record",
         "the same requests off the event loop, behind an unbounded queue", True),
        ("ours-tcp", "async def + iolab.logging.BatchHandler(TCPSink)", "batches on a kept TCP connection", True),
        ("ours-http", "async def + iolab.logging.BatchHandler(BulkHTTPSink)", "a _bulk request per batch", True),
    ))
NETWORK_ORDER = tuple(s.name for s in NETWORK_SCENARIOS)
DEMO_SCENARIOS = DEMO_SCENARIOS + NETWORK_SCENARIOS

BY_NAME = {s.name: s for s in DEMO_SCENARIOS}
# The order of the seed's table first, then the controls: what `iolab run` measures by default.
DEFAULT_EIGHT = ("sync", "async", "sync-raw", "async-raw", "noop-sync", "noop-async", "sync-handler",
                 "async-blocking-log")
CATALOG_ORDER = tuple(s.name for s in DEMO_SCENARIOS if s.catalog)
# Every scenario, for listings (`iolab scenarios`) and `--scenario all`.
ALL_ORDER = DEFAULT_EIGHT + CATALOG_ORDER

GROUPS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT_EIGHT,
    "all": ALL_ORDER,
    "catalog": ("noop-sync", "noop-async", "sync-handler", "async-blocking-log", *CATALOG_ORDER),
    "network": NETWORK_ORDER,
}


@cache
def unavailable(name: str) -> str | None:
    """Why scenario ``name`` cannot run here (its optional logger is missing), or None."""
    s = BY_NAME[name]
    if s.needs is None:
        return None
    try:
        importlib.import_module(s.needs)
    except Exception as exc:  # not installed, or an extension that does not load on this Python
        return f"needs {s.needs} ({type(exc).__name__}: {exc}); {LOGGERS_EXTRA}"
    return None


class ScenarioChoiceError(ValueError):
    """An unknown scenario, or one whose package is missing; the CLI reports it as a usage error (exit 2).
    Not an iolab.errors class: the demo runs inside the server under test and imports nothing of the lab."""


def _resolve(names: str | None) -> tuple[list[Scenario], list[tuple[str, str]]]:
    out: list[Scenario] = []
    skipped: list[tuple[str, str]] = []
    items = [n.strip().lstrip("/") for n in (names or "default").split(",")]
    for item in filter(None, items):
        explicit = item not in GROUPS
        if explicit and item not in BY_NAME:
            known = ", ".join((*GROUPS, *ALL_ORDER))
            raise ScenarioChoiceError(f"unknown scenario {item!r} (known: {known}; see `iolab scenarios`)")
        for name in (item,) if explicit else GROUPS[item]:
            reason = unavailable(name)
            if reason is not None:
                if explicit:
                    raise ScenarioChoiceError(f"scenario {name!r} {reason}")
                skipped.append((name, reason))
            elif BY_NAME[name] not in out:
                out.append(BY_NAME[name])
    if not out:
        raise ScenarioChoiceError("no scenario selected")
    return out, skipped


def select(names: str | None) -> tuple[Scenario, ...]:
    """Scenarios by comma-separated names and groups (None = "default", the eight).

    A named scenario whose optional logger is missing is a ScenarioChoiceError naming the extra; inside a group
    it is skipped (see :func:`skipped`).
    """
    return tuple(_resolve(names)[0])


def skipped(names: str | None) -> list[tuple[str, str]]:
    """(name, reason) of the scenarios a selection's groups left out because a package is missing."""
    return _resolve(names)[1]


# ------------------------------------------------------------------------------ verdict structure


# The blog's comparisons (design.md): the `def` scenario first, as the blog put it.
SEED_PAIRS: tuple[tuple[str, str], ...] = (("sync", "async"), ("sync-raw", "async-raw"))
# Why a scenario may write nothing to stdout, when we know.
NO_OUTPUT_REASONS = {
    "sync": "its logger has no handler, so its INFO records are dropped: it measures a `def` endpoint, not logging",
}


def knowledge() -> dict[str, Any]:
    """What the analysis should know about the demo's scenarios, as the fields of
    ``iolab.analysis.knowledge.ScenarioKnowledge`` (plain data: the demo imports nothing of the lab):
    each logging scenario's control (it differs only by its logging code), what that code is, the peer
    and seed pairs, who writes."""
    return dict(
        controls={s.name: s.control for s in DEMO_SCENARIOS if s.control and s.log_code},
        log_code={s.name: s.log_code for s in DEMO_SCENARIOS if s.log_code},
        control_pair=(_S, _A),
        control_pair_differs_by=("`def`", "`async def`"),
        seed_pairs=SEED_PAIRS,
        # (peer, scenario) pairs worth a head-to-head verdict, e.g. (async-blocking-log, queue-async).
        peer_pairs=tuple((p, s.name) for s in DEMO_SCENARIOS for p in s.peers),
        expects_output=frozenset(s.name for s in DEMO_SCENARIOS if s.writes),
        no_output_reasons=NO_OUTPUT_REASONS,
    )


def table() -> Any:
    """A rich Table of every scenario (for `iolab scenarios`), marking the ones not installed here."""
    from rich.table import Table

    t = Table(title="Demo scenarios (one fresh server each)", title_justify="left")
    for col in ("name", "path", "handler", "isolates", "control", "group"):
        t.add_column(col)
    for name in ALL_ORDER + NETWORK_ORDER:
        s = BY_NAME[name]
        reason = unavailable(name)
        group = "default" if name in DEFAULT_EIGHT else "network" if s.network else "catalog"
        if reason:
            group += f" — not available: {reason}"
        t.add_row(s.name, s.path, s.handler, s.isolates, s.control or "—", group)
    t.caption = ("--scenario default (no option) runs the first eight; --scenario all the first two groups; "
                 "--scenario network logs across iolab's network (root, docs/network.md); "
                 "cpu-only is the better control for the async def stdlib strategies")
    return t
