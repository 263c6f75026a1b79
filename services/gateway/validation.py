"""Turn pydantic errors into one problem+json that names every bad field and line."""

from __future__ import annotations

from pydantic import ValidationError

from services.gateway.errors import Problem


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problem_from_validation(exc: ValidationError, *, status: int = 422) -> Problem:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        line = (
            loc[1] + 1 if len(loc) > 1 and loc[0] == "lines" and isinstance(loc[1], int) else None
        )
        errors.append(
            {
                "field": _path(loc) or "body",
                "line": line,
                "message": err["msg"],
                "type": err["type"],
            }
        )
    if any(e["type"] == "json_invalid" for e in errors):
        status = 400
    return Problem(
        status,
        "Invalid declaration" if status == 422 else "Malformed body",
        f"{len(errors)} error(s) in the request body",
        errors=errors,
    )
