"""/ready: whether a service can do its work now — its PostgreSQL and Kafka answer and, for
a consumer, partitions are assigned to it. /health only says the process answers.

Each check is an async function that returns when its part is ready and raises (with what
is wrong) when not. Every check runs at once, each bounded by `timeout`: a stalled
PostgreSQL makes /ready answer 503 within that time, never hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from services.common.metrics import internal_topic
from services.common.settings import Settings

Check = Callable[[], Awaitable[None]]
TIMEOUT_S = 1.5
RETRY_AFTER_S = 2


class NotReady(RuntimeError):
    """A part that answers but cannot work yet (e.g. no partition assigned)."""


class Readiness:
    def __init__(
        self,
        checks: Mapping[str, Check],
        timeout: float = TIMEOUT_S,
        *,
        informative: frozenset[str] = frozenset(),
    ) -> None:
        self.checks = dict(checks)
        self.timeout = timeout
        # Reported, but not a condition of readiness (e.g. the gateway's Kafka: its outbox
        # keeps receipting while Kafka is away).
        self.informative = informative

    async def report(self) -> tuple[int, dict[str, Any]]:
        """(200 or 503, the body): `checks` names each part, "ok" or what is wrong."""
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        failing = [n for n in names if checks[n] != "ok" and n not in self.informative]
        ready = not failing
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        if not ready:
            body["not_ready"] = failing
        return (200 if ready else 503), body

    async def _run(self, check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout=self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except NotReady as exc:
            return str(exc)
        except Exception as exc:
            return f"down: {exc!r}"[:300]
        return "ok"


def pool_check(pool: Callable[[], asyncpg.Pool | None], timeout: float = TIMEOUT_S) -> Check:
    """PostgreSQL through the service's own pool (`pool()`: None until it is open)."""

    async def check() -> None:
        p = pool()
        if p is None:
            raise NotReady("not connected yet")
        async with p.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout)

    return check


def connect_check(service: str, settings: Settings, timeout: float = TIMEOUT_S) -> Check:
    """PostgreSQL with a connection of the service's role, opened and closed (for a service
    whose pool opens with its first batch)."""
    from services.common.db import connect

    async def check() -> None:
        conn = await connect(service, settings, timeout=timeout)
        try:
            await conn.fetchval("SELECT 1", timeout=timeout)
        finally:
            conn.terminate()

    return check


def kafka_check(settings: Settings, timeout: float = TIMEOUT_S) -> Check:
    """Kafka answers a metadata request."""

    async def check() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap, request_timeout_ms=int(timeout * 1000)
        )
        try:
            await admin.start()
            await admin.describe_cluster()
        finally:
            await admin.close()

    return check


def assigned_check(consumer: Callable[[], Any]) -> Check:
    """The consumer (aiokafka's or faust's; `consumer()`: None before it exists) has
    partitions of its topics assigned (internal topics do not count)."""

    async def check() -> None:
        c = consumer()
        if c is None:
            raise NotReady("consumer not started")
        if not [tp for tp in c.assignment() if not internal_topic(tp.topic)]:
            raise NotReady("no partitions assigned")

    return check
