"""Rendering rows for people and scripts: aligned terminal tables, CSV and JSON, for the
listings that are not reports (DLQ entries, ACLs, the review queue, SQL results, diffs)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any


def render_rows(header: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue()
    if fmt == "json":
        return json.dumps([dict(zip(header, row, strict=True)) for row in rows], default=str,
                          indent=2)
    cells = [[str(h) for h in header]] + [["" if v is None else str(v) for v in row]
                                          for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths,
                                                                                 strict=True))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return text.lstrip("-").replace(".", "", 1).replace(",", "").isdigit()
