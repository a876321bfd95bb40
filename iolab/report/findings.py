"""The findings block that opens every report: terminal, Markdown and HTML (iolab.analysis.findings)."""

from __future__ import annotations

import html as _html
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from iolab.analysis.findings import lines
from iolab.results import Finding

TITLE = "Findings"
EMPTY = "no findings: fewer than two successfully measured scenarios to compare"


def print_findings(found: Sequence[Finding], console: Console) -> None:
    console.print(f"[bold]{TITLE}[/]")
    if not found:
        console.print(f"  {EMPTY}", highlight=False)
    for f, text in zip(found, lines(found), strict=True):
        mark = "•" if f.significant else "·"
        console.print(f"{mark} {escape(text)}", highlight=False, soft_wrap=True)
    console.print()


def markdown(found: Sequence[Finding]) -> str:
    body = [f"- {t}" if f.significant else f"- *{t}*" for f, t in zip(found, lines(found), strict=True)]
    return "\n".join([f"## {TITLE}", "", *(body or [f"*{EMPTY}*"]), ""]) + "\n"


def html(found: Sequence[Finding]) -> str:
    items = "".join(f'<li data-significant="{str(f.significant).lower()}">{_html.escape(t)}</li>'
                    for f, t in zip(found, lines(found), strict=True))
    body = f'<ul data-list="findings">{items}</ul>' if items else f'<p class="note">{_html.escape(EMPTY)}</p>'
    return f'<section id="findings" aria-label="findings"><h2>{TITLE}</h2>{body}</section>'
