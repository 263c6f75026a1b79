"""Transactional outbox relay: publishes what a service committed to its outbox table, in
commit order, once.

A service writes its messages into its outbox table in the same transaction as the decision
they announce. The relay (one leader per database and outbox, by an advisory lock) marks a
row published only after Kafka acknowledged it (acks=all). A crash in between leaves rows
that may already be on the topic; so whoever takes the relay over first reads the topics
back from the oldest pending row's time and marks the rows it finds there as published,
then publishes the rest. A row is never lost and is published once. Every message carries
its event id (deterministic) in a header and in the envelope, so any duplicate that still
slipped through is dropped by the consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from services.common.kafka import BatchSender, consumer, partitions_of
from services.common.kafka import producer as kafka_producer
from services.common.outage import Backoff, is_outage
from services.common.settings import Settings

log = logging.getLogger(__name__)
# Producer timestamps of a row's message are later than the row's created_at; the margin
# covers clock adjustments.
RECONCILE_MARGIN = timedelta(seconds=30)
OUTBOX_KEEP = timedelta(days=7)


@dataclass(frozen=True)
class Outbox:
    """One outbox: its table (schema-qualified or found through the search path), the
    advisory lock its relay leader holds, and the metrics the relay keeps."""

    table: str
    lock: int
    name: str = "outbox relay"
    on_published: Callable[[int], None] = lambda n: None
    on_pending: Callable[[int], None] = lambda n: None


async def publish_pending(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, outbox: Outbox, batch: int = 200
) -> int:
    """Publish one batch of pending outbox rows; returns how many were published."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"""SELECT seq, event_id, topic, key, value FROM {outbox.table} WHERE published_at IS NULL
                ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED""",
            batch,
        )
        if not rows:
            return 0
        # Keyed rows go out as a record batch per partition (the partition the default
        # partitioner picks for the key, in commit order): `producer.send` cost tens of µs a
        # message, and the control relays three per liquidation.
        sender = BatchSender(producer)
        keyless = []
        for r in rows:
            headers = [("event_id", str(r["event_id"]).encode())]
            if r["key"] is None:
                keyless.append(await producer.send(r["topic"], r["value"], headers=headers))
            else:
                await sender.send(r["topic"], r["key"], r["value"], headers)
        await sender.flush()
        await asyncio.gather(*keyless)
        await conn.execute(
            f"UPDATE {outbox.table} SET published_at = now() WHERE seq = ANY($1::bigint[])",
            [r["seq"] for r in rows],
        )
    outbox.on_published(len(rows))
    return len(rows)


def _event_id(headers: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]], value: bytes) -> str:
    for name, raw in headers or ():
        if name == "event_id":
            return raw.decode()
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(orjson.loads(value)["id"])
    return ""


async def reconcile(pool: asyncpg.Pool, settings: Settings, outbox: Outbox) -> int:
    """Mark the pending rows already on their topic as published; returns how many."""
    pending = await pool.fetch(
        f"SELECT event_id, topic, created_at FROM {outbox.table} WHERE published_at IS NULL"
    )
    if not pending:
        return 0
    wanted = {str(r["event_id"]) for r in pending}
    since_ms = int((min(r["created_at"] for r in pending) - RECONCILE_MARGIN).timestamp() * 1000)
    found: list[uuid.UUID] = []
    reader = consumer(group_id=None, settings=settings)
    await reader.start()
    try:
        for name in sorted({r["topic"] for r in pending}):
            tps = [TopicPartition(name, p) for p in await partitions_of(name, settings)]
            reader.assign(tps)
            ends = await reader.end_offsets(tps)
            starts = await reader.offsets_for_times(dict.fromkeys(tps, since_ms))
            todo = {}
            for tp in tps:
                start = starts[tp].offset if starts.get(tp) else ends[tp]
                if start < ends[tp]:
                    reader.seek(tp, start)
                    todo[tp] = ends[tp]
            while todo:
                batches = await reader.getmany(*todo, timeout_ms=1000)
                for records in batches.values():
                    for rec in records:
                        event_id = _event_id(rec.headers, rec.value)
                        if event_id in wanted:
                            found.append(uuid.UUID(event_id))
                for tp in list(todo):
                    if await reader.position(tp) >= todo[tp]:
                        del todo[tp]
    finally:
        await reader.stop()
    if found:
        await pool.execute(
            f"""UPDATE {outbox.table} SET published_at = now()
                WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL""",
            found,
        )
        log.warning("%s: %d pending row(s) were already on Kafka; marked published", outbox.name, len(found))
    return len(found)


class Relay:
    """Background task: lead the relay when no other process does, publish as soon as woken,
    and poll in case a wake-up was missed. It owns its Kafka producer: with Kafka away the
    service still starts and rows keep being written; they go out when Kafka is back."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        outbox: Outbox,
        poll_s: float = 0.5,
        connect: Callable[[], Awaitable[asyncpg.Connection]] | None = None,
    ):
        self.pool = pool
        # The leader's lock lives on a connection of its own: losing it ends the leadership.
        self.connect = connect or (lambda: asyncpg.connect(settings.dsn))
        self.settings = settings
        self.outbox = outbox
        self.poll_s = poll_s
        self.leading = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.outbox.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        backoff = Backoff(0.5, 5.0)  # PostgreSQL restarting takes seconds: do not sleep minutes
        while True:
            try:
                lock = await self.connect()
                try:
                    while not await lock.fetchval("SELECT pg_try_advisory_lock($1)", self.outbox.lock):
                        await asyncio.sleep(self.poll_s)  # another process relays
                    producer = kafka_producer(self.settings)
                    try:
                        await producer.start()
                        self.leading = True
                        failures = 0
                        backoff.reset()
                        await self._lead(lock, producer)
                    finally:
                        await producer.stop()
                finally:
                    self.leading = False
                    await lock.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka or PostgreSQL away: keep the rows, take over again
                failures += 1
                if is_outage(exc):
                    log.warning(
                        "%s failed (%d in a row), Kafka/PostgreSQL away: %r", self.outbox.name, failures, exc
                    )
                else:
                    log.exception("%s failed (%d in a row); retrying", self.outbox.name, failures)
                await asyncio.sleep(backoff.next_delay())

    async def _lead(self, lock: asyncpg.Connection, producer: AIOKafkaProducer) -> None:
        table = self.outbox.table
        await asyncio.wait_for(reconcile(self.pool, self.settings, self.outbox), timeout=300)
        next_purge = 0.0
        while not lock.is_closed():
            while await publish_pending(self.pool, producer, self.outbox):
                pass
            if time.monotonic() >= next_purge:
                # Published rows are history only (the topics keep everything): keep a week.
                await self.pool.execute(
                    f"DELETE FROM {table} WHERE published_at < now() - $1::interval", OUTBOX_KEEP
                )
                next_purge = time.monotonic() + 600
            self.outbox.on_pending(
                await self.pool.fetchval(f"SELECT count(*) FROM {table} WHERE published_at IS NULL")
            )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
