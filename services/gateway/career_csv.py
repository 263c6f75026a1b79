"""Careers from before Kalo as CSV: one header row, then one row per worker, month and employer.

Columns (any order, case-insensitive, all required): worker_id, period, employer_id, base.
The conventions of the declaration upload (services/gateway/csv_upload.py): UTF-8 with or
without BOM, comma or semicolon, ASCII digits only in `base` (at most 15), every bad cell
reported at once with its row in the file (1 = the header) and its column. The same
worker, month and employer twice in one file is an error (which one would count?).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from services.gateway.csv_upload import _invalid, decode, delimiter_of, parse_number, shown
from services.gateway.errors import Problem
from services.rules.inputs import MAX_AMOUNT, MAX_ID_LENGTH, MAX_NUMBER_DIGITS, period_problem, text_problem

COLUMNS = ("worker_id", "period", "employer_id", "base")
# Rows per file: a 32 MiB body holds about a million; beyond, split the file.
MAX_ROWS = 1_000_000

CareerRow = tuple[str, str, str, int]  # worker_id, period, employer_id, base


def parse_careers(data: bytes, max_rows: int = MAX_ROWS) -> tuple[list[CareerRow], list[int]]:
    """The rows of a careers file and the file row of each; a Problem names every bad cell."""
    text = decode(data)
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise _invalid(
            [{"row": 1, "column": None, "message": "the header row is missing"}],
            "the file must start with a header row: " + ",".join(COLUMNS),
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter_of(first), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except csv.Error as exc:
        raise _invalid([{"row": 1, "column": None, "message": str(exc)}], "bad header row") from None
    errors: list[dict[str, Any]] = []
    for name in header:
        if name not in COLUMNS:
            errors.append({"row": 1, "column": name[:64], "message": f"unknown column {shown(name)}"})
    if len(set(header)) != len(header):
        errors.append({"row": 1, "column": None, "message": "a column is named twice"})
    for name in COLUMNS:
        if name not in header:
            errors.append({"row": 1, "column": name, "message": "required column is missing"})
    if errors:
        raise _invalid(errors, f"bad header row; the columns are {', '.join(COLUMNS)}")

    where = [header.index(name) for name in COLUMNS]
    out: list[CareerRow] = []
    rows: list[int] = []
    seen: dict[tuple[str, str, str], int] = {}
    row_no = 1
    try:
        for row_no, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue  # blank rows (a trailing newline) are not entries
            if len(out) >= max_rows:
                raise Problem(
                    413,
                    "Too many rows",
                    f"a careers file has at most {max_rows:,} rows; split it",
                    max_rows=max_rows,
                )
            if len(cells) != len(header):
                errors.append(
                    {
                        "row": row_no,
                        "column": None,
                        "message": f"{len(cells)} cells, the header has {len(header)}",
                    }
                )
                continue
            worker_id, period, employer_id, raw_base = (cells[i].strip() for i in where)
            bad = False
            for column, value in (("worker_id", worker_id), ("employer_id", employer_id)):
                problem = text_problem(value, MAX_ID_LENGTH)
                if problem is not None:
                    errors.append({"row": row_no, "column": column, "message": f"{shown(value)} {problem}"})
                    bad = True
            problem = period_problem(period)
            if problem is not None:
                errors.append({"row": row_no, "column": "period", "message": problem})
                bad = True
            base = parse_number(raw_base)
            if base is None or base < 0 or base > MAX_AMOUNT:
                errors.append(
                    {
                        "row": row_no,
                        "column": "base",
                        "message": f"{shown(raw_base)} is not a whole number of francs from 0 to "
                        f"{MAX_AMOUNT:,} (digits 0-9, at most {MAX_NUMBER_DIGITS})",
                    }
                )
                bad = True
            if bad:
                continue
            assert base is not None
            key = (worker_id, period, employer_id)
            earlier = seen.get(key)
            if earlier is not None:
                errors.append(
                    {
                        "row": row_no,
                        "column": None,
                        "message": f"worker {shown(worker_id)}, {period}, employer {shown(employer_id)} "
                        f"is already on row {earlier}",
                    }
                )
                continue
            seen[key] = row_no
            out.append((worker_id, period, employer_id, base))
            rows.append(row_no)
    except csv.Error as exc:
        errors.append({"row": row_no, "column": None, "message": str(exc)})
    if errors:
        raise _invalid(errors, f"{len(errors)} bad cell(s) in the file")
    if not out:
        raise _invalid([{"row": 2, "column": None, "message": "no rows"}], "the file has no rows")
    return out, rows
