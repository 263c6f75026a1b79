"""CSV declarations: one header row, then one row per worker; UTF-8; comma or semicolon.

Columns (any order, names as below, case-insensitive):
    worker_id, category, days_worked, base_salary            required
    bonuses, benefits_in_kind, expense_reimbursements        optional (0 when absent or empty)

Every bad cell is reported at once, with its line (1 = the first worker row, the numbering
of the business report), its row in the file (1 = the header) and its column.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from contracts.declarations import LINE_FIELDS
from services.gateway.errors import Problem
from services.gateway.validation import too_many_lines
from services.rules.inputs import MAX_NUMBER_DIGITS

REQUIRED = ("worker_id", "category", "days_worked", "base_salary")
OPTIONAL = ("bonuses", "benefits_in_kind", "expense_reimbursements")
INTEGERS = frozenset(LINE_FIELDS[2:])
# ASCII digits only (`\d` would take ３０ or ٣٠), and few enough for any int() and for bigint.
_INT = re.compile(rf"-?[0-9]{{1,{MAX_NUMBER_DIGITS}}}")
# Errors reported at most; past that the file is hopeless and the answer would be huge.
MAX_ERRORS = 1000


def parse_number(cell: str) -> int | None:
    """A number cell or form field: an optional minus and 1-15 ASCII digits; else None."""
    return int(cell) if _INT.fullmatch(cell) else None


def shown(cell: str, width: int = 40) -> str:
    """A cell quoted in an error message, cut so that a huge cell does not make a huge answer."""
    return repr(cell) if len(cell) <= width else repr(cell[:width]) + f"… ({len(cell):,} characters)"


def _invalid(errors: list[dict[str, Any]], detail: str, status: int = 422) -> Problem:
    return Problem(status, "Invalid CSV", detail, errors=errors[:MAX_ERRORS], error_count=len(errors))


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = data[: exc.start].count(b"\n") + 1
        raise Problem(
            400,
            "Invalid CSV",
            f"the file is not UTF-8: byte {exc.start} (row {row}) cannot be decoded",
            errors=[{"row": row, "line": row - 1 or None, "column": None, "message": str(exc)}],
        ) from None


def delimiter_of(header: str) -> str:
    return ";" if header.count(";") > header.count(",") else ","


def parse_lines(data: bytes, max_lines: int) -> tuple[list[dict[str, Any]], list[int]]:
    """The worker lines of a CSV file (dicts of LINE_FIELDS) and the file row of each;
    a Problem names every bad cell."""
    text = decode(data)
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise _invalid(
            [{"row": 1, "line": None, "column": None, "message": "the header row is missing"}],
            "the file must start with a header row: " + ",".join(REQUIRED + OPTIONAL),
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter_of(first), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except csv.Error as exc:
        raise _invalid(
            [{"row": 1, "line": None, "column": None, "message": str(exc)}], "bad header row"
        ) from None
    errors: list[dict[str, Any]] = []
    known = set(REQUIRED + OPTIONAL)
    for name in header:
        if name not in known:
            errors.append({"row": 1, "line": None, "column": name, "message": f"unknown column {name!r}"})
    if len(set(header)) != len(header):
        errors.append({"row": 1, "line": None, "column": None, "message": "a column is named twice"})
    for name in REQUIRED:
        if name not in header:
            errors.append({"row": 1, "line": None, "column": name, "message": "required column is missing"})
    if errors:
        raise _invalid(errors, f"bad header row; the columns are {', '.join(REQUIRED + OPTIONAL)}")

    lines: list[dict[str, Any]] = []
    rows: list[int] = []
    row_no = 1
    try:
        for row_no, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue  # blank rows (a trailing newline) are not lines
            if len(lines) >= max_lines:
                raise too_many_lines(max_lines)
            line_no = len(lines) + 1
            rows.append(row_no)
            if len(cells) != len(header):
                errors.append(
                    {
                        "row": row_no,
                        "line": line_no,
                        "column": None,
                        "message": f"{len(cells)} cells, the header has {len(header)}",
                    }
                )
                lines.append({})
                continue
            line: dict[str, Any] = dict.fromkeys(OPTIONAL, 0)
            for name, raw in zip(header, cells, strict=True):
                cell = raw.strip()
                if name in INTEGERS:
                    if cell == "" and name in OPTIONAL:
                        continue
                    number = parse_number(cell)
                    if number is None:
                        unit = "days" if name == "days_worked" else "francs"
                        errors.append(
                            {
                                "row": row_no,
                                "line": line_no,
                                "column": name,
                                "message": f"{shown(cell)} is not a whole number of {unit} "
                                f"(digits 0-9, at most {MAX_NUMBER_DIGITS})",
                            }
                        )
                        continue
                    line[name] = number
                else:
                    line[name] = cell
            lines.append(line)
    except csv.Error as exc:
        errors.append({"row": row_no, "line": len(lines) + 1, "column": None, "message": str(exc)})
    if errors:
        raise _invalid(errors, f"{len(errors)} bad cell(s) in the file")
    return lines, rows
