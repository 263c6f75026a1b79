"""Outbox relay: publishes what the gateway committed to PostgreSQL, in commit order.

A row is marked published only after Kafka acknowledged it (acks=all). A crash in
between republishes the row on restart with the same event id, and every consumer drops
the duplicate by that id: no receipted declaration is lost, none is counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)


async def publish_pending(pool: asyncpg.Pool, producer: AIOKafkaProducer, batch: int = 500) -> int:
    """Publish one batch of pending outbox rows; returns how many were published."""
    async with pool.acquire() as conn, conn.transaction():
        # SKIP LOCKED lets several gateway instances relay side by side.
        rows = await conn.fetch(
            """SELECT seq, topic, key, value FROM outbox WHERE published_at IS NULL
               ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED""",
            batch,
        )
        if not rows:
            return 0
        futures = [await producer.send(r["topic"], r["value"], key=r["key"]) for r in rows]
        await asyncio.gather(*futures)
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])",
            [r["seq"] for r in rows],
        )
        return len(rows)


class Relay:
    """Background task: publish as soon as woken, and poll in case a wake-up was missed."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, poll_s: float = 0.5):
        self.pool = pool
        self.producer = producer
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                while await publish_pending(self.pool, self.producer):
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:  # Kafka or PostgreSQL away: keep the rows, try again
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(1)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
