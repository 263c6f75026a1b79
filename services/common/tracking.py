"""A Kafka consumer whose progress lives in PostgreSQL (tracking records).

Each batch is applied and its next offsets saved in one transaction, so a restart
resumes exactly after the last applied batch and a redelivered message is never
applied twice. A record that cannot be decoded or applied goes to kalo.dlq with its
bytes and error; the partition keeps flowing.

An outage of PostgreSQL or Kafka (services/common/outage.py) never ends the consumer:
the batch being written is kept (nothing of it was committed) and written again, with
backoff, until PostgreSQL answers. A batch that fails for any other reason is applied
again record by record, each under a savepoint, in one transaction with the offsets:
only the records that fail go to the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from services.common import kafka, logs
from services.common.dlq import park
from services.common.metrics import StreamMetrics, observe_lag
from services.common.outage import Backoff, is_outage, retry_outages
from services.common.settings import Settings

log = logging.getLogger(__name__)

Decoded = Any
Decoder = Callable[[ConsumerRecord], Decoded]
Applier = Callable[[asyncpg.Connection, Sequence[Decoded]], Awaitable[None]]
Gate = Callable[[], Awaitable[None]]
# After SIGTERM: how long the batch being written may take before it is left to the next run.
STOP_GRACE_S = 4.0


async def stored_offsets(
    conn: asyncpg.Connection | asyncpg.Pool, consumer: str
) -> dict[tuple[str, int], int]:
    rows = await conn.fetch(
        "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = $1", consumer
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def save_offsets(conn: asyncpg.Connection, consumer: str, offsets: dict[TopicPartition, int]) -> None:
    await conn.executemany(
        """INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
           ON CONFLICT (consumer, topic, partition) DO UPDATE
           SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset),
               updated_at = now()""",
        [(consumer, tp.topic, tp.partition, off) for tp, off in offsets.items()],
    )


# Records a replay lists of those it could not apply (it counts them all).
MAX_REFUSED_LISTED = 1000


class OffsetStore(Protocol):
    """Where a tracked consumer keeps its next offsets (in the batch's transaction)."""

    async def load(
        self, conn: asyncpg.Connection | asyncpg.Pool, consumer: str
    ) -> dict[tuple[str, int], int]: ...

    async def save(
        self, conn: asyncpg.Connection, consumer: str, offsets: dict[TopicPartition, int]
    ) -> None: ...


class ConsumerOffsets:
    """The `consumer_offsets` table (one row per consumer and partition, updated)."""

    async def load(
        self, conn: asyncpg.Connection | asyncpg.Pool, consumer: str
    ) -> dict[tuple[str, int], int]:
        return await stored_offsets(conn, consumer)

    async def save(self, conn: asyncpg.Connection, consumer: str, offsets: dict[TopicPartition, int]) -> None:
        await save_offsets(conn, consumer, offsets)


class _SeekFromStore(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, tracked: TrackedConsumer) -> None:
        self.tracked = tracked

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The batch being written commits its offsets before anyone reads them again.
        pending = self.tracked._pending
        if pending is not None:
            await asyncio.wait([pending])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        tracked = self.tracked
        stored = await retry_outages(
            lambda: tracked.offsets.load(tracked.pool, tracked.name),
            what=f"{tracked.name}: stored offsets",
            stop=tracked._stopping,
            logger=log,
        )
        for tp in assigned:
            # Offset 0 of a trimmed log resets to the earliest (auto_offset_reset). Awaiting
            # seek_to_beginning() here would stall the group until the session times out.
            self.tracked.consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))


class TrackedConsumer:
    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        pool: asyncpg.Pool,
        decode: Decoder,
        apply: Applier,
        settings: Settings,
        metrics: StreamMetrics,
        max_records: int = 2000,
        gate: Gate | None = None,
        offsets: OffsetStore | None = None,
    ) -> None:
        self.name = name
        self.topics = list(topics)
        self.pool = pool
        self.decode = decode
        self.apply = apply
        self.settings = settings
        self.metrics = metrics  # the service's batch time, lag and DLQ families
        self.max_records = max_records
        self.gate = gate  # awaited before each write (the ledger: its shared lock is held)
        self.offsets: OffsetStore = offsets or ConsumerOffsets()
        self.consumer = kafka.consumer(group_id=f"{settings.topic_prefix}{name}", settings=settings)
        self.producer: AIOKafkaProducer = kafka.producer(settings)
        self._stopping = asyncio.Event()
        self._pending: asyncio.Task[None] | None = None  # the batch being written
        # A replay (a rebuild) parks nothing: the live consumer parked these records already,
        # and a rebuild beside the live projections must leave kalo.dlq and kalo.audit alone.
        # What it could not apply is listed here instead (topic, partition, offset, error).
        self._replaying = False
        self.refused: list[dict[str, Any]] = []  # the first MAX_REFUSED_LISTED of them
        self.refused_count = 0

    async def run(self) -> None:
        """Consume until stopped. Batches are written strictly one after the other, each
        with its offsets in its own transaction; the next batch is fetched and decoded
        while the previous one is being written (PostgreSQL works, this process decodes).
        Kafka or PostgreSQL away pauses the loop; it resumes by itself."""
        backoff = Backoff()
        try:
            await self._start_clients()
            self.consumer.subscribe(self.topics, listener=_SeekFromStore(self))
            while not self._stopping.is_set():
                try:
                    batches = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
                    records = [r for rs in batches.values() for r in rs]
                    if records:
                        decoded = await self._decode(records)
                        await self._written()
                        self._pending = asyncio.create_task(self._apply(records, decoded))
                        await self._observe_lag()
                    backoff.reset()
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    if self._stopping.is_set():
                        break
                    log.warning("%s: Kafka or PostgreSQL away: %r", self.name, exc)
                    await backoff.sleep(self._stopping)
            await self._written()
        except Exception as exc:
            if not (self._stopping.is_set() and is_outage(exc)):
                raise
            log.warning("%s: stopped while Kafka or PostgreSQL was away: %r", self.name, exc)
        finally:
            await self._close()

    async def _start_clients(self) -> None:
        for client in (self.producer, self.consumer):
            await retry_outages(client.start, what=f"{self.name}: Kafka", stop=self._stopping, logger=log)

    async def _close(self) -> None:
        """Bounded: a SIGTERM ends the consumer within seconds even with Kafka or PostgreSQL away."""
        pending, self._pending = self._pending, None
        if pending is not None:  # stopped (or failed): leave no write behind, but do not wait forever
            _, late = await asyncio.wait([pending], timeout=STOP_GRACE_S)
            for task in late:
                log.warning("%s: batch still being written at stop; the next run applies it", self.name)
                task.cancel()
                await asyncio.wait([task])
            if not pending.cancelled() and pending.exception() is not None:
                log.warning("%s: last batch not written: %r", self.name, pending.exception())
        for client in (self.consumer, self.producer):
            try:
                await asyncio.wait_for(client.stop(), timeout=2.0)
            except Exception as exc:
                log.warning("%s: %s not stopped cleanly: %r", self.name, type(client).__name__, exc)

    async def _written(self) -> None:
        """Wait for the batch being written. It waits out outages itself; only a stop
        leaves it unwritten (then the next run writes it again from the stored offsets)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            await pending
        except Exception as exc:
            if not (self._stopping.is_set() and is_outage(exc)):
                raise
            log.warning("%s: stopping with PostgreSQL away; the next run writes the last batch", self.name)

    async def replay_to_end(self, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Apply every record from the stored offsets to the topics' current end, then stop.

        For rebuilds: partitions are assigned by hand (no group membership), so this must
        not run beside a live consumer of the same name. Returns the records read;
        `on_progress(read, total)` after each batch.
        """
        self._replaying = True
        await self.producer.start()
        await self.consumer.start()
        try:
            tps = [
                TopicPartition(t, p) for t in self.topics for p in await kafka.partitions_of(t, self.settings)
            ]
            self.consumer.assign(tps)
            stored = await self.offsets.load(self.pool, self.name)
            for tp in tps:
                self.consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
            ends = await self.consumer.end_offsets(tps)
            starts = await self.consumer.beginning_offsets(tps)
            # At most this many (retention may have removed the beginning of a partition).
            total = sum(
                max(ends[tp] - max(stored.get((tp.topic, tp.partition), 0), starts[tp]), 0) for tp in tps
            )
            count = 0
            while [tp for tp in tps if await self.consumer.position(tp) < ends[tp]]:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
                records = [
                    r
                    for rs in batches.values()
                    for r in rs
                    if r.offset < ends[TopicPartition(r.topic, r.partition)]
                ]
                if records:
                    await self.process(records, commit=False)  # not a group member
                    count += len(records)
                    if on_progress is not None:
                        on_progress(count, total)
            return count
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def process(self, records: list[ConsumerRecord], *, commit: bool = True) -> None:
        await self._apply(records, await self._decode(records), commit=commit)

    async def _decode(self, records: list[ConsumerRecord]) -> list[tuple[ConsumerRecord, Decoded]]:
        decoded: list[tuple[ConsumerRecord, Decoded]] = []
        for record in records:
            try:
                decoded.append((record, self.decode(record)))
            except Exception as exc:
                await self._dead_letter(record, exc)
        return decoded

    async def _apply(
        self,
        records: list[ConsumerRecord],
        decoded: list[tuple[ConsumerRecord, Decoded]],
        *,
        commit: bool = True,
    ) -> None:
        started = time.perf_counter()
        offsets = {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
        # An outage: nothing of the batch was committed; write it again once PostgreSQL answers.
        await retry_outages(
            lambda: self._write(decoded, offsets), what=f"{self.name}: batch", stop=self._stopping, logger=log
        )
        self.metrics.batch.observe(time.perf_counter() - started)
        if commit:
            try:  # for lag tools only; PostgreSQL is the truth (and Kafka may be away)
                await asyncio.wait_for(self.consumer.commit(offsets), timeout=10.0)
            except (KafkaError, TimeoutError) as exc:  # e.g. a rebalance meanwhile: the stored offsets hold
                log.warning("%s: Kafka commit skipped: %r", self.name, exc)

    async def _write(
        self, decoded: list[tuple[ConsumerRecord, Decoded]], offsets: dict[TopicPartition, int]
    ) -> None:
        if self.gate is not None:
            await self.gate()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await self.apply(conn, [d for _, d in decoded])
                await self.offsets.save(conn, self.name, offsets)
        except Exception as exc:
            if is_outage(exc):
                raise
            log.exception("%s: batch failed; applying its records one by one", self.name)
            await self._isolate(decoded, offsets)

    async def _isolate(
        self, decoded: list[tuple[ConsumerRecord, Decoded]], offsets: dict[TopicPartition, int]
    ) -> None:
        """The batch again, each record under its own savepoint, in one transaction with the
        offsets: the records that fail (and only those) go to the DLQ before it commits."""
        async with self.pool.acquire() as conn, conn.transaction():
            failed: list[tuple[ConsumerRecord, Exception, Decoded]] = []
            for record, item in decoded:
                try:
                    async with conn.transaction():
                        await self.apply(conn, [item])
                except Exception as exc:
                    if is_outage(exc):
                        raise
                    failed.append((record, exc, item))
            for record, exc, item in failed:
                with logs.handling(item):  # the parking's line names the event
                    await self._dead_letter(record, exc)
            await self.offsets.save(conn, self.name, offsets)

    async def _dead_letter(self, record: ConsumerRecord, exc: BaseException) -> None:
        if self._replaying:
            self.refused_count += 1
            if len(self.refused) < MAX_REFUSED_LISTED:  # a rebuild of millions stays small
                where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
                self.refused.append({**where, "error": repr(exc)})
            return
        dlq = kafka.topic("kalo.dlq", self.settings)

        async def send(key: str, value: bytes) -> None:
            await retry_outages(
                lambda: self.producer.send_and_wait(dlq, value, key=key.encode()),
                what=f"{self.name}: DLQ",
                stop=self._stopping,
                logger=log,
            )

        async def send_audit(key: str, value: bytes) -> None:
            await retry_outages(
                lambda: self.producer.send_and_wait(
                    kafka.topic("kalo.audit", self.settings), value, key=key.encode()
                ),
                what=f"{self.name}: audit",
                stop=self._stopping,
                logger=log,
            )

        await park(
            send,
            send_audit=send_audit,
            service=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            error=exc,
            stream=self.metrics,
        )

    async def _observe_lag(self) -> None:
        await observe_lag(self.metrics, self.consumer)
