"""Errors the gateway answers with, rendered as RFC 7807 problem+json."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException


class Problem(HTTPException):
    """An RFC 7807 problem. An HTTPException, so that FastAPI lets it through unchanged
    even from inside its own body parsing (a streamed upload over the size limit)."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(status_code=status, detail=detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        slug = self.title.lower().replace(" ", "-")
        doc: dict[str, Any] = {
            "type": f"https://kalo.dev/problems/{slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc


def conflict(detail: str, **extra: Any) -> Problem:
    return Problem(409, "Conflict", detail, **extra)


def not_found(detail: str) -> Problem:
    return Problem(404, "Not found", detail)


def forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail)
