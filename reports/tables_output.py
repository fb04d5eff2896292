"""Rendering rows for people and scripts: terminal tables drawn by rich, CSV and JSON.

The one table renderer of refstream (reports, `sql`, `diff`, `dlq list`, `acls show`, ...).
CSV and JSON are for scripts and stay byte for byte as they were; a terminal table is for
people: colour and box lines only when stdout is a terminal, plain text otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "csv", "json")

# Outside a terminal: a dashed rule under the header and nothing else (no box characters).
_PLAIN_HEAD = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)
# Wide enough that no cell of a realistic table is wrapped when the output goes to a file.
_UNBOUNDED_WIDTH = 10_000


def render_rows(header: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """`rows` under `header` as CSV, JSON (a list of objects) or a terminal table."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue()
    if fmt == "json":
        return json.dumps([dict(zip(header, row, strict=True)) for row in rows], default=str,
                          indent=2)
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    right = [bool(column) and all(_numeric(c) for c in column if c)
             for column in zip(*cells, strict=True)] if cells else [False] * len(header)
    return draw_table([str(h) for h in header], cells, right_aligned=right)


def draw_table(header: Sequence[str], cells: Sequence[Sequence[str]],
               right_aligned: Sequence[bool]) -> str:
    """Already formatted `cells` as an aligned table: one header line, a rule, one line per
    row, columns flagged in `right_aligned` aligned on the right (numbers)."""
    terminal = sys.stdout.isatty()
    table = Table(box=box.SIMPLE_HEAD if terminal else _PLAIN_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1), header_style="bold" if terminal else "",
                  highlight=False)
    for name, right in zip(header, right_aligned, strict=True):
        table.add_column(name, justify="right" if right else "left", no_wrap=not terminal)
    for row in cells:
        table.add_row(*row)
    console = Console(file=io.StringIO(), force_terminal=terminal,
                      color_system="auto" if terminal else None,
                      width=None if terminal else _UNBOUNDED_WIDTH, highlight=False,
                      emoji=False, markup=False)
    console.print(table)
    text: str = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.rstrip("\n").split("\n"))


def _numeric(text: str) -> bool:
    return text.lstrip("-").replace(".", "", 1).replace(",", "").isdigit()
