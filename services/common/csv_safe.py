"""CSV for spreadsheets: a text cell that a spreadsheet would run as a formula is neutralised.

A cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with an
apostrophe (OWASP, "CSV injection"), so an employer's worker id `=HYPERLINK(…)` is shown as
text. Numbers are written as numbers: a negative amount stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: object) -> object:
    if isinstance(cell, str) and cell.startswith(FORMULA_START):
        return "'" + cell
    return cell


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralise(h) for h in header])
    for row in rows:
        writer.writerow(["" if c is None else neutralise(c) for c in row])
    return out.getvalue()
