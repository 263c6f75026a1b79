"""A gateway killed between receipt and publish neither loses a receipted declaration nor
publishes it twice: the topic holds each one exactly once, under its deterministic id."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import asyncpg
import httpx

from contracts.envelope import derived_id
from services.common import kafka
from services.common.db import connect_pool
from services.gateway.relay import RELAY_LOCK, publish_pending
from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import auth, declaration, inps_line, read_all, register_employer
from tests.support.sandbox import free_port


def start_gateway(stack: Stack, name: str) -> None:
    proc = stack.start("gateway", name=name)
    try:
        wait_http(f"{stack.gateway_url}/health", proc)
    except Exception:
        print(stack.log_tail(name))
        raise


async def submit_many(
    stack: Stack, keys: dict[str, str], count: int, *, stop_after: float | None = None
) -> list[str]:
    """Submit `count` declarations (round robin over the employers, one month each); returns
    the ids of the receipts received (a killed gateway answers the rest with an error)."""
    receipts: list[str] = []
    employers = list(keys)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        employer = employers[i % len(employers)]
        month = i // len(employers)
        doc = declaration(
            employer, [inps_line(f"W{i}", 100_000 + i)], period=f"{2024 + month // 12}-{month % 12 + 1:02d}"
        )
        try:
            r = await client.post("/v1/declarations", json=doc, headers=auth(keys[employer]))
        except httpx.HTTPError:
            return
        if r.status_code == 202:
            receipts.append(r.json()["declaration_id"])

    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        started = time.monotonic()
        for start in range(0, count, 10):
            if stop_after is not None and time.monotonic() - started > stop_after:
                break
            await asyncio.gather(*(one(client, i) for i in range(start, min(count, start + 10))))
    return receipts


# The outbox rows not yet published (a receipt writes its message and its audit event).
PENDING = "SELECT count(*) FROM gateway.outbox WHERE published_at IS NULL"


async def wait_outbox_empty(conn: asyncpg.Connection, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while await conn.fetchval("SELECT count(*) FROM gateway.outbox WHERE published_at IS NULL"):
        assert time.monotonic() < deadline, "the relay did not drain the outbox"
        await asyncio.sleep(0.2)


async def assert_published_exactly_once(stack: Stack, conn: asyncpg.Connection, receipts: list[str]) -> None:
    events = await read_all(stack.settings, "kalo.declarations.submitted", seconds=3)
    per_declaration = Counter(e["data"]["declaration_id"] for e in events)
    in_db = {r["declaration_id"] for r in await conn.fetch("SELECT declaration_id FROM gateway.declarations")}
    assert set(receipts) <= in_db  # every receipt the clients got is a committed declaration
    assert set(per_declaration) == in_db  # every committed declaration reached the topic …
    doubled = {d: n for d, n in per_declaration.items() if n > 1}
    assert not doubled, f"published more than once: {doubled}"  # … exactly once
    for e in events:
        assert e["id"] == str(derived_id(e["data"]["declaration_id"], "declaration.submitted"))


async def test_sigkill_with_receipts_unpublished_and_published_but_unmarked(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    stack, conn = fresh
    keys = dict([await register_employer(conn) for _ in range(12)])
    # Hold the relay's leadership: gateway A writes receipts but cannot publish them.
    blocker = await asyncpg.connect(stack.settings.dsn)
    await blocker.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK)
    start_gateway(stack, "gateway-a")
    receipts = await submit_many(stack, keys, 60)
    assert len(receipts) == 60
    assert await conn.fetchval(f"{PENDING} AND topic LIKE '%kalo.declarations.submitted'") == 60
    assert await conn.fetchval(f"{PENDING} AND topic LIKE '%kalo.audit'") == 60  # each receipt's audit event

    # The crash window: Kafka acknowledged 25 messages, the mark was never committed.
    pool = await connect_pool(service="gateway", settings=stack.settings, min_size=1, max_size=2)
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:
        assert await publish_pending(pool, producer, batch=25) == 25
    finally:
        await producer.stop()
    await pool.execute(
        "UPDATE outbox SET published_at = NULL WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT 25)"
    )
    stack.stop("gateway-a", sig=signal.SIGKILL)
    await blocker.close()

    start_gateway(stack, "gateway-b")
    await wait_outbox_empty(conn)
    await pool.close()
    await assert_published_exactly_once(stack, conn, receipts)
    assert "were already on Kafka" in stack.log_tail("gateway-b", 200)


async def test_sigkill_while_receiving_and_relaying(fresh: tuple[Stack, asyncpg.Connection]) -> None:
    stack, conn = fresh
    keys = dict([await register_employer(conn) for _ in range(20)])
    start_gateway(stack, "gateway-a")
    submitting = asyncio.create_task(submit_many(stack, keys, 4000, stop_after=6))
    # Kill the gateway while clients are submitting and the relay is publishing.
    deadline = time.monotonic() + 30
    while await conn.fetchval("SELECT count(*) FROM gateway.outbox WHERE published_at IS NOT NULL") < 100:
        assert time.monotonic() < deadline, stack.log_tail("gateway-a")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    stack.stop("gateway-a", sig=signal.SIGKILL)
    receipts = await submitting
    assert receipts, "no receipt before the kill"
    killed_at: dict[str, Any] = dict(
        await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE published_at IS NULL) AS pending, count(*) AS total"
            " FROM gateway.outbox"
        )
    )

    start_gateway(stack, "gateway-b")
    await wait_outbox_empty(conn)
    await assert_published_exactly_once(stack, conn, receipts)
    print(f"at the kill: {killed_at}; receipts seen by clients: {len(receipts)}")


async def test_receipts_keep_coming_while_kafka_is_unreachable(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    stack, conn = fresh
    keys = dict([await register_employer(conn) for _ in range(5)])
    proc = stack.start("gateway", name="gateway-no-kafka", KALO_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    try:
        wait_http(f"{stack.gateway_url}/health", proc)
    except Exception:
        print(stack.log_tail("gateway-no-kafka"))
        raise
    receipts = await submit_many(stack, keys, 20)
    assert len(receipts) == 20
    await asyncio.sleep(2)
    assert await conn.fetchval(f"{PENDING} AND topic LIKE '%kalo.declarations.submitted'") == 20
    assert await conn.fetchval(f"{PENDING} AND topic LIKE '%kalo.audit'") == 20  # each receipt's audit event
    stack.stop("gateway-no-kafka")  # a clean stop, relay still failing to reach Kafka
    assert "outbox relay failed" in stack.log_tail("gateway-no-kafka", 400)

    start_gateway(stack, "gateway-kafka-back")
    await wait_outbox_empty(conn)
    await assert_published_exactly_once(stack, conn, receipts)
