"""Terminal report (rich): the same tables as every other format, then warnings."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable
from rich.text import Text

from iolab.report import findings
from iolab.report.table import Table
from iolab.report.tables import all_tables
from iolab.results import RunResult


def rich_table(t: Table) -> RichTable:
    """The terminal's rendering of a Table (every report's). Cells are plain text, never rich markup:
    a path, a program's argument or a sentence may hold [brackets]."""
    rt = RichTable(title=Text(t.title, style="bold"), caption=Text(t.caption, style="table.caption") or None,
                   box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left")
    for c in t.columns:
        rt.add_column(Text(c.header), justify=c.align, no_wrap=not c.text)
    for row in t.rows:
        rt.add_row(*(Text(cell) for cell in row))
    return rt


def print_report(result: RunResult, console: Console | None = None) -> None:
    console = console or Console()
    if result.scenarios:
        findings.print_findings(result.findings, console)  # the answer first, before the latency table
    for t in all_tables(result):
        console.print(rich_table(t))
    for line in result.attribution:
        console.print(f"• {line}")
    if result.warnings:
        console.print("[bold yellow]Warnings[/]")
        for w in result.warnings:
            console.print(f"[yellow]![/] [bold]{w.kind}[/]: {escape(w.message)}")


def render(result: RunResult, width: int = 140) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    print_report(result, console)
    text = console.export_text()
    console.file.close()
    return text
