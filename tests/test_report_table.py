"""One table model, three renderers that show the same cells; one percentile list."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

from rich.console import Console

from iolab.analysis import latency
from iolab.analysis.verdict import METRICS
from iolab.report import markdown, terminal
from iolab.report.html import table_html
from iolab.report.table import Column, Table
from iolab.report.tables import LATENCY_ROWS
from iolab.results import LatencyMs

TABLE = Table(
    "Costs [per request] <b>",
    ("scenario", "what", "CPU ms", "req/s", "note"),
    (("/sync", "a | pipe", "0.512", "1,234", "faster by 21 %"),
     ("/[bold]x[/]", "<script>", "—", "12", "n.s. (+0.3 %)")),
    "— = not measured",
    left_columns=2,
    text_columns=(4,),
)


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.classes: list[list[str]] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
            self.classes.append([])
        elif tag in ("td", "th"):
            self._in = True
            self.rows[-1].append("")
            self.classes[-1].append(dict(attrs).get("class") or "")

    def handle_endtag(self, tag: str) -> None:
        self._in = self._in and tag not in ("td", "th")

    def handle_data(self, data: str) -> None:
        if self._in:
            self.rows[-1][-1] += data


def _markdown_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip().replace("\\|", "|") for c in line[2:-2].split(" | ")] for line in lines]


def test_one_table_renders_the_same_cells_in_every_format() -> None:
    want = [list(TABLE.headers), *map(list, TABLE.rows)]
    page = _Cells()
    page.feed(table_html(TABLE))
    assert page.rows == want
    md = _markdown_rows(markdown.table(TABLE))
    assert [md[0], *md[2:]] == want  # md[1] is the alignment row
    console = Console(width=200, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(terminal.rich_table(TABLE))
    shown = console.export_text().splitlines()
    console.file.close()
    for cells in want:  # every cell on one line, in order, markup shown as text
        line = next(line for line in shown if cells[0] in line)
        at = 0
        for cell in cells:
            at = line.index(cell, at) + len(cell)
    assert TABLE.title in shown[0] and any(TABLE.caption in line for line in shown)


def test_columns_carry_the_alignment_every_renderer_uses() -> None:
    assert TABLE.columns == (Column("scenario", "left"), Column("what", "left"), Column("CPU ms"),
                             Column("req/s"), Column("note", "left"))
    assert markdown.table(TABLE).splitlines()[3] == "|:---|:---|---:|---:|:---|"
    page = _Cells()
    page.feed(table_html(TABLE))
    assert page.classes[1] == ["", "", "num", "num", ""]
    rich = terminal.rich_table(TABLE)
    assert [c.justify for c in rich.columns] == ["left", "left", "right", "right", "left"]
    assert [c.no_wrap for c in rich.columns] == [False, False, True, True, False]


def test_one_percentile_list() -> None:
    fields = [latency.percentile_field(q) for q in latency.PERCENTILES]
    assert fields == ["p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99", "p99_9", "p100"]
    assert [f.name for f in dataclasses.fields(LatencyMs)] == [*fields, "mean"]
    assert [label for label, _ in LATENCY_ROWS] == [*(f"{q:g}%" for q in latency.PERCENTILES), "mean"]
    assert all(f"{f}_ms" in METRICS for f in fields)  # every percentile is a gate metric
    ms = latency.latency_ms(latency.histogram([1000, 2000, 3000, 40_000]))
    assert all(getattr(ms, f) is not None for f in fields) and abs(ms.p100 - 40.0) <= 0.04  # 3 digits
