"""What ``iolab run`` (and ``iolab sweep``) show while they measure: a progress bar or one line per round."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape  # a --try variant's name, '/x [logging=off]', is not markup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from iolab.results import RoundRecord


class ProgressReporter:
    """A rich progress bar on stderr: one line per scenario-round, showing the requests sent."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self._task: Any = None
        self._label = ""

    def __enter__(self) -> ProgressReporter:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def scenario_started(self, round_no: int, rounds: int, name: str, index: int, total: int) -> None:
        self._label = f"round {round_no}/{rounds} · {escape(name)}"
        self._task = self._bar.add_task(self._label, total=None)

    def phase(self, text: str) -> None:
        if self._task is not None:
            self._bar.update(self._task, description=f"{self._label} · {text}", completed=0, total=None)

    def progress(self, done: int, total: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done, total=total)

    def scenario_finished(self, record: RoundRecord) -> None:
        if self._task is not None:
            state = {"ok": "done", "degraded": "DEGRADED"}.get(record.status, "FAILED")
            self._bar.update(self._task, description=f"{self._label} · {state}")


class LineReporter:
    """Without a terminal (CI, a pipe): one line per scenario-round on stderr."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._label = ""

    def scenario_started(self, round_no: int, rounds: int, name: str, index: int, total: int) -> None:
        self._label = f"round {round_no}/{rounds} · {escape(name)} ({index}/{total})"

    def phase(self, text: str) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        pass

    def scenario_finished(self, record: RoundRecord) -> None:
        self._console.print(f"{self._label}: {round_line(record)}", highlight=False)


def round_line(record: RoundRecord) -> str:
    """One round in a few words; figures only for a round that measured them (a failed one has none)."""
    if record.status == "failed":
        return f"FAILED — {record.error}"
    rps = "— req/s" if record.rps is None else f"{record.rps:,.0f} req/s"
    p50 = "p50 —" if record.latency_ms.p50 is None else f"p50 {record.latency_ms.p50:.1f} ms"
    text = f"{record.requests:,} requests, {rps}, {p50}"
    return text if record.status == "ok" else f"{text}; DEGRADED — {record.error}"

