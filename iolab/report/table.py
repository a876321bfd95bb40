"""The one table model of every report: run, compare, micro and sweep tables are built as a Table of
strings, and rendered by one function per format (terminal.rich_table, markdown.table, html.table_html),
so a figure reads the same wherever it is shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Align = Literal["left", "right"]


@dataclass(frozen=True)
class Column:
    header: str
    # Text is left-aligned and may wrap (a long fact must not squeeze the labels out); numbers are
    # right-aligned and never wrap.
    align: Align = "right"

    @property
    def text(self) -> bool:
        return self.align == "left"


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    left_columns: int = 1  # how many leading columns hold text (left-aligned); the rest are numbers
    text_columns: tuple[int, ...] = ()  # other columns that hold text (a sentence at the end of a row)

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(Column(h, "left" if i < self.left_columns or i in self.text_columns else "right")
                     for i, h in enumerate(self.headers))
