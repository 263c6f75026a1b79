"""RFC 7807 problem+json for every HTTP service (the gateway, the control commission): the
problem itself, its responses, and how a request that meets an outage or a bug is answered —
503 with Retry-After for PostgreSQL or Kafka away, a 500 problem with an incident id for a bug,
never a bare text page."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.common.outage import is_outage

log = logging.getLogger(__name__)
# Seconds a client is asked to wait while PostgreSQL is away (a restart takes a few).
RETRY_AFTER_S = 2
# What an outage surfaces as; each is answered 503 only if `is_outage` says so.
OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions._base.InternalClientError,
    KafkaError,
)


class Problem(HTTPException):
    """An RFC 7807 problem. An HTTPException, so that FastAPI lets it through unchanged
    even from inside its own body parsing (a streamed upload over the size limit)."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(status_code=status, detail=detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra

    def headers_out(self) -> dict[str, str] | None:
        """`Retry-After` in whole seconds (at least 1) when the problem says when to retry."""
        after = self.extra.get("retry_after")
        if after is None:
            return None
        return {"Retry-After": str(max(1, math.ceil(float(after))))}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": f"https://kalo.dev/problems/{self.title.lower().replace(' ', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc


class ORJSONResponse(JSONResponse):
    """JSON rendered by orjson (the documents are plain dicts; no second validation)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemResponse(ORJSONResponse):
    media_type = "application/problem+json"


def install_error_handlers(app: FastAPI, *, count: Callable[[int], None] = lambda status: None) -> None:
    """Answer an outage met while handling a request with 503 and Retry-After (nothing was
    committed: the client sends the same request again), a value PostgreSQL refuses with 422,
    and anything else unexpected with a 500 problem whose incident id finds the traceback in
    the log. `count(status)` is called
    for each (a service's problems metric)."""

    async def internal_error(request: Request, exc: Exception) -> ProblemResponse:
        incident = uuid.uuid4().hex[:12]
        log.error("%s %s: 500 (incident %s)", request.method, request.url.path, incident, exc_info=exc)
        count(500)
        body = Problem(
            500, "Internal error", f"an unexpected error occurred (incident {incident})", incident=incident
        ).body(request.url.path)
        return ProblemResponse(body, status_code=500)

    async def unavailable(request: Request, exc: Exception) -> ProblemResponse:
        if not is_outage(exc):
            return await internal_error(request, exc)
        log.warning("%s %s: 503, PostgreSQL or Kafka away: %r", request.method, request.url.path, exc)
        count(503)
        body = Problem(
            503,
            "Service unavailable",
            "the database is unavailable for a moment; send the same request again",
            retry_after=RETRY_AFTER_S,
        ).body(request.url.path)
        return ProblemResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    async def invalid_value(request: Request, exc: Exception) -> ProblemResponse:
        # SQLSTATE class 22 (data exception): a value of the request PostgreSQL cannot take —
        # a NUL in a text, a number out of range — is the client's to correct, not a bug.
        count(422)
        detail = f"a value of the request cannot be stored: {str(exc)[:200]}"
        body = Problem(422, "Invalid value", detail, errors=[{"field": None, "message": detail}])
        return ProblemResponse(body.body(request.url.path), status_code=422)

    app.add_exception_handler(asyncpg.DataError, invalid_value)
    for outage_type in OUTAGE_TYPES:
        app.add_exception_handler(outage_type, unavailable)
    app.add_exception_handler(Exception, unavailable)  # an outage wrapped in another error too
