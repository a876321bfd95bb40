"""The sweep's records and its versioned JSON document, ``iolab.sweep/1``.

One document per sweep: the grid's axes, and per cell the strategies' medians, the winner, its margin
over the runner-up (a Comparison with its 95 % interval), every pairwise comparison, and the path of the
cell's full ``iolab.run/1`` results file (relative to the sweep document), which ``iolab report`` reads.

Schema history (the loader reads every version listed):

- ``iolab.sweep/1`` (0.1.0): first version.
- ``iolab.sweep/2`` (0.1.0): a strategy's figures are ``null`` when no round of it measured them (v1
  wrote 0.0); a cell's ``status`` can be ``"degraded"`` and it gains ``error_kind``. Its cell runs are
  ``iolab.run/2`` documents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iolab.results import (
    Comparison,
    dump_document,
    parse_document,
    read_document,
    save_document,
)

SCHEMA_NAME = "iolab.sweep"
SCHEMA_VERSION = 2
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"


@dataclass(frozen=True)
class StrategyValues:
    """One strategy in one cell: medians over its successful rounds."""

    scenario: str
    rounds_ok: int
    # None (null) when no successful round has the figure: nothing was measured.
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    cpu_ms_per_request: float | None
    voluntary_ctx_switches_per_request: float | None
    lines_per_request: float | None  # what the sink received (log lines, access log, start-up) per request


@dataclass(frozen=True)
class Cell:
    work_us: int
    sink_latency_ms: float
    requests: int
    warmup: int
    run_file: str  # the cell's iolab.run document, relative to the sweep document's directory
    # "ok"; "degraded": a strategy's requests failed too often (the winner stands, flagged); "failed": a
    # strategy measured nothing or its server died (no winner is shown)
    status: str
    error: str | None
    duration_s: float
    strategies: tuple[StrategyValues, ...] = ()
    winner: str | None = None
    runner_up: str | None = None
    # a = runner-up, b = winner, on the sweep's metric; verdict "no significant difference" = a tie.
    margin: Comparison | None = None
    # a = the best strategy that writes on the request's path, b = the best that defers the write
    # (``Scenario.defers``): how "async logging" fares in this cell; None without both kinds.
    deferred_vs_blocking: Comparison | None = None
    comparisons: tuple[Comparison, ...] = ()  # every pair, on p50, p99 and throughput
    # as RoundRecord.error_kind: server-died | nothing-measured | too-many-errors
    error_kind: str | None = None

    def value(self, scenario: str) -> StrategyValues | None:
        return next((s for s in self.strategies if s.scenario == scenario), None)


@dataclass(frozen=True)
class SweepResult:
    schema: str
    created: str
    tool_version: str
    status: str  # "complete" | "running" | "failed" | "interrupted"
    metric: str
    scenarios: tuple[str, ...]
    work_us: tuple[int, ...]
    sink_latency_ms: tuple[float, ...]
    load: dict[str, Any]
    limits: dict[str, Any]
    machine: dict[str, Any]
    cells: tuple[Cell, ...] = ()
    reading: str = ""
    wall_s: float = 0.0
    deferred: tuple[str, ...] = field(default_factory=tuple)  # the strategies that defer the write

    def cell(self, work_us: int, sink_latency_ms: float) -> Cell | None:
        return next((c for c in self.cells if c.work_us == work_us and c.sink_latency_ms == sink_latency_ms),
                    None)


def dumps(result: SweepResult) -> str:
    return dump_document(result)


def save(result: SweepResult, path: str | os.PathLike[str]) -> Path:
    return save_document(result, path)


def _upgrade(doc: dict[str, Any], version: int) -> dict[str, Any]:
    """v1 → v2: a strategy with no successful round held 0.0 for the figures it never measured."""
    if version < 2:
        doc = dict(doc)
        cells = []
        for cell in doc.get("cells") or []:
            if isinstance(cell, dict):
                cell = dict(cell)
                cell["strategies"] = [_v1_strategy(v) for v in cell.get("strategies") or []]
            cells.append(cell)
        doc["cells"] = cells
        doc["schema"] = SCHEMA
    return doc


def _v1_strategy(v: Any) -> Any:
    if isinstance(v, dict) and not v.get("rounds_ok"):
        return {**v, **{k: None for k in _FIGURES if k in v}}
    return v


_FIGURES = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request", "voluntary_ctx_switches_per_request",
            "lines_per_request")


def loads(text: str, source: str = "<string>") -> SweepResult:
    return parse_document(text, source, SweepResult, SCHEMA_NAME, SCHEMA_VERSION, _upgrade)


def load(path: str | os.PathLike[str]) -> SweepResult:
    return loads(*read_document(path))
