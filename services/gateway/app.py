"""Gateway wiring: FastAPI app, PostgreSQL pool, Kafka producer, outbox relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app

from services.common import kafka
from services.common.db import connect_pool
from services.common.settings import Settings, get_settings
from services.gateway.errors import Problem
from services.gateway.limits import RateLimiter
from services.gateway.relay import Relay
from services.gateway.routes import router

PROBLEM_JSON = "application/problem+json"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await connect_pool(settings.dsn, min_size=2, max_size=20)
        app.state.producer = kafka.producer(settings)
        await app.state.producer.start()
        app.state.relay = Relay(app.state.pool, app.state.producer)
        app.state.relay.start()
        try:
            yield
        finally:
            await app.state.relay.stop()
            await app.state.producer.stop()
            await app.state.pool.close()

    app = FastAPI(
        title="Kalo gateway",
        version="1",
        description="Tele-declaration of monthly salaries to INPS, CMSS and CANAM.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.limiter = RateLimiter(settings.gateway_rate_per_second, settings.gateway_rate_burst)
    app.include_router(router)
    app.mount("/metrics", make_asgi_app())

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> JSONResponse:
        headers = (
            {"Retry-After": str(max(1, round(exc.extra.get("retry_after", 1))))}
            if exc.status == 429
            else None
        )
        return JSONResponse(
            exc.body(request.url.path),
            status_code=exc.status,
            media_type=PROBLEM_JSON,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        body = Problem(422, "Invalid request", f"{len(errors)} error(s)", errors=errors)
        return JSONResponse(body.body(request.url.path), status_code=422, media_type=PROBLEM_JSON)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        await app.state.pool.fetchval("SELECT 1")
        return {"status": "ok"}

    return app
