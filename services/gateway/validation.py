"""Turn pydantic errors into one problem+json that names every bad field and line."""

from __future__ import annotations

from pydantic import ValidationError

from services.gateway.errors import Problem
from services.gateway.schemas import MAX_LINES


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problem_from_validation(
    exc: ValidationError, *, status: int = 422, rows: list[int] | None = None, what: str = "declaration"
) -> Problem:
    """`rows`: for a CSV upload, the file row of each line (adds `row` and `column`)."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if loc == ("lines",) and err["type"] == "too_long":
            return too_many_lines()
        line = loc[1] + 1 if len(loc) > 1 and loc[0] == "lines" and isinstance(loc[1], int) else None
        error: dict[str, object] = {
            "field": _path(loc) or "body",
            "line": line,
            "message": err["msg"],
            "type": err["type"],
        }
        if rows is not None and line is not None:
            error["row"] = rows[line - 1]
            error["column"] = loc[2] if len(loc) > 2 else None
        errors.append(error)
    if any(e["type"] == "json_invalid" for e in errors):
        status = 400
    return Problem(
        status,
        f"Invalid {what}" if status == 422 else "Malformed body",
        f"{len(errors)} error(s) in the request body",
        errors=errors,
    )


def too_many_lines(max_lines: int = MAX_LINES) -> Problem:
    return Problem(
        413,
        "Too many lines",
        f"a declaration has at most {max_lines:,} lines; split it or contact the institution",
        max_lines=max_lines,
    )
