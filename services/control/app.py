"""Control commission wiring: a tracked consumer of `kalo.pensions.liquidations`, the outbox
relay of its decisions, its HTTP API and page (uvicorn, in the same process), /health and
/ready on both its ports, /metrics on its metrics port.

Everything is built when `run()` starts; importing this module builds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import uvicorn
import uvloop
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.envelope import Envelope
from contracts.pensions import PensionLiquidated
from services.common.db import connect, connect_pool
from services.common.gc_tuning import tune_gc
from services.common.http_metrics import HttpMetricsMiddleware
from services.common.kafka import topic
from services.common.limits import RateLimiter
from services.common.ops_http import start_ops_server
from services.common.outage import Backoff, is_outage, retry_outages
from services.common.outbox import Outbox, Relay
from services.common.problems import RETRY_AFTER_S, install_error_handlers
from services.common.ready import Readiness, assigned_check, kafka_check, pool_check
from services.common.settings import Settings, get_settings
from services.common.shutdown import arm_stop_deadline, close_ops, close_pool
from services.common.tracking import TrackedConsumer
from services.control import handlers, metrics
from services.control.adapters import PgStore, PgTx, WebSessions, controller_of, escalated_count
from services.control.auth import ControllerCache
from services.control.errors import ORJSONResponse, Problem, ProblemResponse
from services.control.openapi import build as build_openapi
from services.control.routes import router
from services.control.web import SignIns, page_router, template_filters
from services.rules import Ruleset, load_ruleset

log = logging.getLogger(__name__)
NAME = "kalo-control"
TOPICS = ("kalo.pensions.liquidations",)
# pg_try_advisory_lock key of the control outbox relay's leader (the gateway's is 7_206_004).
RELAY_LOCK = 7_206_008
OUTBOX = Outbox(
    table="control.outbox",
    lock=RELAY_LOCK,
    name="control outbox relay",
    on_published=metrics.OUTBOX_PUBLISHED.inc,
    on_pending=metrics.OUTBOX_PENDING.set,
)
Clock = Callable[[], datetime]


def now_utc() -> datetime:
    return datetime.now(UTC)


LIQUIDATED = Envelope[PensionLiquidated]  # the parametrised model, looked up once


def decode(record: ConsumerRecord) -> Envelope[PensionLiquidated]:
    doc = orjson.loads(record.value)
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind != PensionLiquidated.TYPE:
        raise ValueError(f"unexpected event type {kind!r} on {record.topic}")
    return LIQUIDATED.model_validate(doc)


def receiver(
    settings: Settings, ruleset: Ruleset, clock: Clock, relay: Relay
) -> Callable[[asyncpg.Connection, Sequence[Envelope[PensionLiquidated]]], Any]:
    """The tracked consumer's callback: the batch's liquidations, in its transaction."""
    end_to_end = metrics.STREAM.end_to_end

    async def apply(conn: asyncpg.Connection, events: Sequence[Envelope[PensionLiquidated]]) -> None:
        tx = PgTx(conn, lambda name: topic(name, settings))
        now = clock()
        received = await handlers.receive(
            tx, events, ruleset=ruleset, now=now, auto_approve=settings.control_auto_approve
        )
        filed = {e.data.claim_id: e.data.filed_at for e in events}
        for r in received:
            if not r.already_stored:
                metrics.LIQUIDATIONS.labels(r.status).inc()
                for code in r.flags:
                    metrics.FLAGS.labels(code).inc()
                filed_at = filed.get(r.claim_id)
                # Decided on arrival (approved automatically, or rejected by the liquidation).
                if r.status != "pending" and filed_at is not None and end_to_end is not None:
                    end_to_end.observe(max((now - filed_at).total_seconds(), 0.0))
        relay.wake()

    return apply


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    relay: Relay,
    ruleset: Ruleset,
    clock: Clock = now_utc,
    readiness: Readiness | None = None,
) -> FastAPI:
    """The HTTP side: API (/v1), page (/), /health, /ready. Built by `run()` once the pool
    exists. `readiness`: what /ready checks (default: PostgreSQL through the pool)."""
    readiness = readiness or Readiness({"postgres": pool_check(lambda: pool)})
    app = FastAPI(
        title="Kalo control commission",
        version="1",
        description=(
            "A-priori control of pension liquidations (RULES.md §4): flags, four-eyes decisions, "
            "control sessions and their minutes. Controllers only: `Authorization: Bearer <API key>`. "
            "Errors are RFC 7807 `application/problem+json`."
        ),
    )
    templates = Environment(
        loader=PackageLoader("services.control", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(template_filters())
    state = app.state
    state.settings = settings
    state.pool = pool
    state.store = PgStore(pool, lambda name: topic(name, settings))
    state.relay = relay
    state.clock = clock
    state.ruleset = ruleset
    state.templates = templates
    state.controllers = ControllerCache(lambda key_hash: controller_of(pool, key_hash))
    state.auth_failures = RateLimiter(
        settings.gateway_auth_failures_per_second, settings.gateway_auth_failures_burst
    )
    state.signins = SignIns(WebSessions(pool), settings, clock)
    state.on_decided = lambda decision: metrics.DECISIONS.labels(decision).inc()
    state.on_refused = lambda rule: metrics.REFUSED.labels(rule).inc()
    app.include_router(router)
    app.include_router(page_router)

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> ProblemResponse:
        return ProblemResponse(exc.body(request.url.path), status_code=exc.status, headers=exc.headers_out())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        body = Problem(exc.status_code, "Error", str(exc.detail)).body(request.url.path)
        return ProblemResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        body = Problem(422, "Invalid request", f"{len(errors)} error(s)", errors=errors)
        return ProblemResponse(body.body(request.url.path), status_code=422)

    install_error_handlers(app)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics.HTTP, routes=app.router.routes)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/health", include_in_schema=False)
    async def health() -> ORJSONResponse:
        """Alive: the process answers (nothing else is asked)."""
        return ORJSONResponse({"status": "ok", "relay_leader": relay.leading})

    @app.get("/ready", include_in_schema=False)
    async def ready() -> ORJSONResponse:
        """200 when PostgreSQL and Kafka answer and the consumer has partitions; otherwise
        503 naming what is not ready (with Retry-After)."""
        status, body = await readiness.report()
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status != 200 else None
        return ORJSONResponse(body, status_code=status, headers=headers)

    return app


class _Server(uvicorn.Server):
    """uvicorn inside a process that handles its own signals (the consumer stops too)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _connect_pool(settings: Settings, stopping: asyncio.Event) -> asyncpg.Pool:
    return await retry_outages(
        lambda: connect_pool(
            service="control", settings=settings, min_size=1, max_size=settings.control_pool_size, timeout=5
        ),
        what=f"{NAME}: PostgreSQL",
        stop=stopping,
        backoff=Backoff(0.5, 5.0),
        logger=log,
    )


async def _watch_escalations(store: PgStore, relay: Relay, clock: Clock, stopping: asyncio.Event) -> None:
    """Every few seconds: escalate the liquidations past the legal delay (each once, with its
    audit event), and set the escalated and pending gauges."""
    pool = store.pool
    while not stopping.is_set():
        try:
            if await handlers.escalate(store, now=clock()):
                relay.wake()
            metrics.ESCALATED.set(await escalated_count(pool, clock()))
            metrics.PENDING.set(
                await pool.fetchval("SELECT count(*) FROM control.liquidations WHERE status = 'pending'")
            )
        except Exception as exc:
            log.warning("%s: escalations and gauges not updated: %r", NAME, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=5)


async def serve(settings: Settings | None = None, clock: Clock = now_utc) -> None:
    """Consume, relay and answer until SIGTERM; PostgreSQL or Kafka away pauses the work."""
    s = settings or get_settings()
    stopping = asyncio.Event()
    consumer: TrackedConsumer | None = None
    server: _Server | None = None
    pool: asyncpg.Pool | None = None
    readiness = Readiness(
        {
            "postgres": pool_check(lambda: pool),
            "kafka": kafka_check(s),
            "consumer": assigned_check(lambda: consumer.consumer if consumer else None),
        }
    )
    ops = await start_ops_server(s.metrics_host, s.control_metrics_port, readiness)

    def on_signal() -> None:
        arm_stop_deadline(NAME, stopping)
        stopping.set()
        if consumer is not None:
            consumer.stop()
        if server is not None:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    relay: Relay | None = None
    try:
        pool = await _connect_pool(s, stopping)
        ruleset = load_ruleset()
        relay = Relay(pool, s, OUTBOX, connect=lambda: connect("control", s))
        consumer = TrackedConsumer(
            name=NAME,
            topics=[topic(name, s) for name in TOPICS],
            pool=pool,
            decode=decode,
            apply=receiver(s, ruleset, clock, relay),
            settings=s,
            metrics=metrics.STREAM,
            max_records=500,
        )
        app = create_app(s, pool=pool, relay=relay, ruleset=ruleset, clock=clock, readiness=readiness)
        config = uvicorn.Config(
            app,
            host=s.control_host,
            port=s.control_port,
            log_config=None,  # `kalo run` set logging up; uvicorn's own would replace it
            access_log=False,
            lifespan="off",
        )
        server = _Server(config)
        if stopping.is_set():
            return
        relay.start()
        watcher = asyncio.create_task(_watch_escalations(app.state.store, relay, clock, stopping))
        web = asyncio.create_task(server.serve(), name="control-http")
        web.add_done_callback(lambda _task: None if stopping.is_set() else consumer.stop())
        try:
            await consumer.run()
        finally:
            server.should_exit = True
            await asyncio.wait([web], timeout=5)
            watcher.cancel()
        if web.done() and not stopping.is_set():  # the HTTP server ended on its own (port taken?)
            raise RuntimeError(f"{NAME}: the HTTP server on {s.control_host}:{s.control_port} stopped")
    except Exception as exc:
        if not (stopping.is_set() and is_outage(exc)):
            raise
        log.warning("%s: stopped while PostgreSQL was away: %r", NAME, exc)
    finally:
        if relay is not None:
            await relay.stop()
        await close_pool(pool)
        await close_ops(ops)


def run() -> None:
    """`kalo run control`."""
    tune_gc()  # each liquidation parses a 35-year career: see services/common/gc_tuning
    # uvloop, as the ledger and the stream processors: the event loop's own cost per callback.
    uvloop.run(serve())
