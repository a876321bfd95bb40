"""GitHub Markdown: the same tables, ready to paste into an issue or a blog post."""

from __future__ import annotations

from iolab.report import findings
from iolab.report.table import Table
from iolab.report.tables import all_tables
from iolab.results import RunResult


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def table(t: Table) -> str:
    """The Markdown rendering of a Table (every report's)."""
    head = "| " + " | ".join(_escape(c.header) for c in t.columns) + " |"
    align = "|" + "|".join(":---" if c.text else "---:" for c in t.columns) + "|"
    body = ["| " + " | ".join(_escape(c) for c in row) + " |" for row in t.rows]
    out = [f"### {t.title}", "", head, align, *body]
    if t.caption:
        out += ["", f"*{t.caption}*"]
    return "\n".join(out)


def render(result: RunResult) -> str:
    parts = [f"# iolab run — {result.created}", ""]
    if result.scenarios:
        parts.append(findings.markdown(result.findings))  # the answer first
    for t in all_tables(result):
        parts += [table(t), ""]
    if result.attribution:
        parts += ["### What the differences come from", ""]
        parts += [f"- {line}" for line in result.attribution]
        parts.append("")
    if result.warnings:
        parts += ["### Warnings", ""]
        parts += [f"- **{w.kind}**: {_escape(w.message)}" for w in result.warnings]
        parts.append("")
    return "\n".join(parts)
