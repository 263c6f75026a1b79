"""Gateway wiring: FastAPI app, PostgreSQL pool, outbox relay (with its Kafka producer)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.db import connect_pool
from services.common.http_metrics import HttpMetricsMiddleware
from services.common.limits import RateLimiter
from services.common.logs import RequestIds, logging_config
from services.common.outage import is_outage
from services.common.problems import RETRY_AFTER_S, install_error_handlers
from services.common.ready import Readiness, kafka_check, pool_check
from services.common.settings import Settings, get_settings
from services.gateway.adapters import PgStore
from services.gateway.auth import PrincipalCache
from services.gateway.errors import Problem
from services.gateway.metrics import HTTP, PROBLEMS
from services.gateway.openapi import build as build_openapi
from services.gateway.relay import Relay
from services.gateway.responses import ORJSONResponse, ProblemResponse
from services.gateway.routes import BODY_MEDIA_TYPES, router

log = logging.getLogger(__name__)


class NoNul:
    """400 for a NUL character in the path or the query: no id, period or filter holds one,
    and PostgreSQL text cannot store it (it would fail deep in a query as a 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"].lower()):
            problem = Problem(400, "Bad request", "the path or the query contains a NUL character")
            PROBLEMS.labels("400").inc()
            await ProblemResponse(problem.body(scope["path"].replace("\x00", "")), status_code=400)(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


class MediaTypes:
    """415 for a request body in a media type the route does not read (JSON is only JSON,
    an upload only multipart): nothing else is guessed at."""

    def __init__(self, app: ASGIApp, accepted: dict[tuple[str, str], tuple[str, ...]]) -> None:
        self.app = app
        self.accepted = accepted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = (
            self.accepted.get((scope.get("method", ""), scope.get("path", "")))
            if scope["type"] == "http"
            else None
        )
        if wanted is not None:
            header = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
            media = header.split(";", 1)[0].strip().lower()
            if media not in wanted:
                shown = media[:60] or "none"
                problem = Problem(
                    415,
                    "Unsupported media type",
                    f"this endpoint reads {' or '.join(wanted)}, not {shown}",
                    accepted=list(wanted),
                )
                PROBLEMS.labels("415").inc()
                await ProblemResponse(problem.body(scope["path"]), status_code=415)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a body over `limit` bytes, announced (Content-Length) or streamed (chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self._problem()
            return message

        await self.app(scope, counted, send)

    def _problem(self) -> Problem:
        return Problem(
            413, "Payload too large", f"the body exceeds {self.limit:,} bytes", max_bytes=self.limit
        )

    async def _too_large(self, scope: Scope, send: Send) -> None:
        PROBLEMS.labels("413").inc()
        response = ProblemResponse(self._problem().body(scope["path"]), status_code=413)
        await response(scope, lambda: _empty(), send)  # type: ignore[arg-type]


class LargeBodies:
    """At most `at_once` requests with a large body (over `threshold` bytes announced, or
    streamed without a length) handled at a time. A request's peak memory grows with its body
    (a 100,000-line declaration: about 140 MB while parsed, validated and receipted; three at
    once took the gateway to 490 MB), so this bounds the gateway's. The body is received
    first (at most `KALO_GATEWAY_MAX_BODY_BYTES`), then the request waits for its turn: a
    client sending slowly holds no turn. Small requests (almost every declaration) never wait.
    Bodies that wait are held whole, so at most `waiting` of them: beyond, a large request is
    answered 503 with Retry-After before its body is read."""

    def __init__(self, app: ASGIApp, threshold: int, at_once: int, waiting: int) -> None:
        self.app = app
        self.threshold = threshold
        self.gate = asyncio.Semaphore(at_once)
        self.admitted = 0
        self.most = at_once + waiting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) <= self.threshold:
            await self.app(scope, receive, send)
            return
        if self.admitted >= self.most:
            busy = Problem(
                503,
                "Busy",
                "too many large requests at once; send it again shortly",
                retry_after=RETRY_AFTER_S,
            )
            await self._answer(scope, send, busy)
            return
        self.admitted += 1
        try:
            try:
                received = await _whole_body(receive)
            except Problem as problem:  # streamed past the size limit (BodyLimit's receive)
                await self._answer(scope, send, problem)
                return
            messages = iter(received)

            async def replay() -> Message:
                return next(messages, None) or await receive()

            async with self.gate:
                await self.app(scope, replay, send)
        finally:
            self.admitted -= 1

    @staticmethod
    async def _answer(scope: Scope, send: Send, problem: Problem) -> None:
        PROBLEMS.labels(str(problem.status)).inc()
        response = ProblemResponse(
            problem.body(scope["path"]), status_code=problem.status, headers=problem.headers_out()
        )
        await response(scope, _empty, send)


async def _whole_body(receive: Receive) -> list[Message]:
    """The request's messages up to the end of its body (or the client's disconnect)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


async def _empty() -> Message:
    return {"type": "http.disconnect"}


async def _open_pool(settings: Settings) -> asyncpg.Pool:
    """The pool; with PostgreSQL away at start, an empty one that connects once it answers
    (the gateway starts anyway and answers 503 meanwhile)."""
    # asyncpg's own reset when a connection goes back to the pool (one round trip): a request
    # cancelled mid-query (a client gone during an outage) leaves its connection busy, and the
    # reset is what finds it and closes it instead of lending it to the next request.
    options: dict[str, Any] = {"max_size": settings.gateway_pool_size}
    try:
        return await connect_pool(
            service="gateway", settings=settings, min_size=settings.gateway_pool_size, timeout=5, **options
        )
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.warning("PostgreSQL away at start (%r): connections are opened once it answers", exc)
        return await connect_pool(service="gateway", settings=settings, min_size=0, timeout=5, **options)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await _open_pool(settings)
        app.state.store = PgStore(app.state.pool)
        app.state.relay = Relay(app.state.pool, settings)
        app.state.relay.start()
        try:
            yield
        finally:
            await app.state.relay.stop()
            try:  # bounded: a SIGTERM ends the gateway even with PostgreSQL away
                await asyncio.wait_for(app.state.pool.close(), timeout=3)
            except Exception:
                app.state.pool.terminate()

    app = FastAPI(
        title="Kalo gateway",
        version="1",
        description=(
            "Tele-declaration of monthly salaries to INPS, CMSS and CANAM. Authenticate with "
            "`Authorization: Bearer <API key>`. Errors are RFC 7807 `application/problem+json`."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.limiter = RateLimiter(settings.gateway_rate_per_second, settings.gateway_rate_burst)
    app.state.auth_failures = RateLimiter(
        settings.gateway_auth_failures_per_second, settings.gateway_auth_failures_burst
    )
    app.state.principals = PrincipalCache()
    # One careers file read at a time: a file of a million rows takes about 700 MB while it
    # is read and receipted, so two at once took the gateway past 1.2 GB. Others wait.
    app.state.career_imports = asyncio.Semaphore(1)
    app.include_router(router)
    # Large bodies wait their turn, each once wholly received (LargeBodies): the memory.
    app.add_middleware(
        LargeBodies,
        threshold=settings.gateway_large_body_bytes,
        at_once=settings.gateway_large_bodies_at_once,
        waiting=settings.gateway_large_bodies_waiting,
    )
    app.add_middleware(BodyLimit, limit=settings.gateway_max_body_bytes)
    app.add_middleware(MediaTypes, accepted=BODY_MEDIA_TYPES)
    app.add_middleware(NoNul)
    app.add_middleware(HttpMetricsMiddleware, metrics=HTTP, routes=app.router.routes)
    app.add_middleware(RequestIds)  # outermost: every line of a request carries its id
    readiness = Readiness(
        {"postgres": pool_check(lambda: getattr(app.state, "pool", None)), "kafka": kafka_check(settings)},
        informative=frozenset({"kafka"}),  # receipts wait in the outbox while Kafka is away
    )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus' text format, at /metrics itself (no redirect to /metrics/)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> ProblemResponse:
        PROBLEMS.labels(str(exc.status)).inc()
        return ProblemResponse(exc.body(request.url.path), status_code=exc.status, headers=exc.headers_out())

    install_error_handlers(app, count=lambda status: PROBLEMS.labels(str(status)).inc())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        # Unknown routes, wrong methods, unparsable forms: problem+json like every other error.
        title = HTTPStatus(exc.status_code).phrase
        PROBLEMS.labels(str(exc.status_code)).inc()
        body = Problem(exc.status_code, title, str(exc.detail)).body(request.url.path)
        return ProblemResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = [
            {
                # A form field is named as in the form (risk_class), like the JSON body's fields.
                "field": ".".join(str(p) for p in (e["loc"][1:] if e["loc"][:1] == ("body",) else e["loc"])),
                "line": None,
                "message": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors()
        ]
        body = Problem(422, "Invalid request", f"{len(errors)} error(s)", errors=errors)
        PROBLEMS.labels("422").inc()
        return ProblemResponse(body.body(request.url.path), status_code=422)

    @app.get("/health", include_in_schema=False)
    async def health() -> ORJSONResponse:
        """Alive: the process answers (nothing else is asked; /ready asks PostgreSQL and Kafka)."""
        return ORJSONResponse({"status": "ok", "relay_leader": app.state.relay.leading})

    @app.get("/ready", include_in_schema=False)
    async def ready() -> ORJSONResponse:
        """200 when PostgreSQL and Kafka answer; otherwise 503 naming what is not ready (with
        Retry-After). Receipts need PostgreSQL only; Kafka away delays their publication."""
        status, body = await readiness.report()
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status != 200 else None
        return ORJSONResponse(body, status_code=status, headers=headers)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def run(settings: Settings | None = None) -> None:
    """Serve the gateway in the foreground (`kalo run gateway`)."""
    import uvicorn

    s = settings or get_settings()
    # Several worker processes share the port; one of them relays the outbox (leader lock).
    uvicorn.run(
        "services.gateway.app:create_app",
        factory=True,
        workers=s.gateway_workers,
        host=s.gateway_host,
        port=s.gateway_port,
        log_config=logging_config("gateway", s),  # the workers' processes log as this one
        access_log=False,
        timeout_graceful_shutdown=5,  # SIGTERM ends the gateway within seconds
    )
