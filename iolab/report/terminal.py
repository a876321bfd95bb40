"""Terminal report (rich): the same tables as every other format, then warnings."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from iolab.report import findings
from iolab.report.tables import Table, all_tables
from iolab.results import RunResult


def rich_table(t: Table) -> RichTable:
    rt = RichTable(title=t.title, caption=t.caption or None, box=box.SIMPLE_HEAD, title_justify="left",
                   caption_justify="left", title_style="bold")
    for i, h in enumerate(t.headers):
        # Text columns wrap (a long fact must not squeeze the labels out); numbers never do.
        rt.add_column(escape(h), justify="left" if i < t.left_columns else "right", no_wrap=i >= t.left_columns)
    for row in t.rows:
        rt.add_row(*(escape(c) for c in row))  # a --try variant's name, '/x [logging=off]', is not markup
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
