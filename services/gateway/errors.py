"""Errors the gateway answers with, rendered as RFC 7807 problem+json."""

from __future__ import annotations

from typing import Any

from services.common.problems import Problem

__all__ = ["Problem", "conflict", "forbidden", "not_found"]


def conflict(detail: str, **extra: Any) -> Problem:
    return Problem(409, "Conflict", detail, **extra)


def not_found(detail: str) -> Problem:
    return Problem(404, "Not found", detail)


def forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail)
