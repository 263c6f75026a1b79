"""The audit store (`kalo run audit`), built from its settings when it starts: a tracked
consumer of `kalo.audit` that appends every event to the Merkle log, signs tree heads with
the log's key and publishes them. Nothing is built at import.

It is the control commission's store but runs as a process of its own, as the PostgreSQL
role `kalo_audit` that may only INSERT into schema `audit`: the signing key lives in this
process only, which serves no HTTP API (only /metrics, /health and /ready on its metrics
port), and a bug or a break-in in the controllers' web service
can neither append to the log nor sign a head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import uvloop
from aiokafka.structs import ConsumerRecord

from services.common import kafka
from services.common.db import connect_pool
from services.common.gc_tuning import tune_gc
from services.common.ops_http import start_ops_server
from services.common.outage import Backoff, is_outage, retry_outages
from services.common.ready import Readiness, assigned_check, kafka_check, pool_check
from services.common.settings import Settings, get_settings
from services.common.shutdown import arm_stop_deadline, close_ops, close_pool
from services.common.tracking import TrackedConsumer
from services.control.audit import metrics
from services.control.audit.adapters import HeadPublisher, PgLogTx, Positions
from services.control.audit.chain import ChainCheck
from services.control.audit.handlers import AuditLog
from services.control.audit.heads import Signer
from services.control.audit.records import Entry, decode

log = logging.getLogger(__name__)
NAME = "kalo-audit"
TICK_S = 0.5


def _now_ms() -> int:
    return int(time.time() * 1000)


def _decode(record: ConsumerRecord) -> Entry:
    return decode(record.value or b"")


class AuditStore:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, signer: Signer) -> None:
        self.settings = settings
        self.pool = pool
        self.log = AuditLog(
            signer, every_records=settings.audit_head_every_records, every_s=settings.audit_head_every_s
        )
        self.lock = asyncio.Lock()  # the batch and the clock's heads take turns
        self.consumer = TrackedConsumer(
            name=NAME,
            topics=[kafka.topic("kalo.audit", settings)],
            pool=pool,
            decode=_decode,
            apply=self.apply,
            settings=settings,
            metrics=metrics.STREAM,
            offsets=Positions(),
        )
        self.chain = ChainCheck()
        self.heads_producer = kafka.producer(settings)
        self.publisher = HeadPublisher(settings, self.heads_producer, Path(settings.heads_file))

    async def apply(self, conn: asyncpg.Connection, entries: Sequence[Entry]) -> None:
        async with self.lock:
            before = self.log.frontier.size
            heads = await self.log.append(PgLogTx(conn), entries, _now_ms())
            metrics.RECORDS.inc(max(self.log.frontier.size - before, 0))
            metrics.HEADS_SIGNED.inc(len(heads))
            metrics.TREE_SIZE.set(self.log.frontier.size)

    async def tick(self, *, force: bool = False) -> None:
        """Sign a head if one is due, publish every committed head not yet out, and check
        the chain up to the latest head (kalo_audit_chain_ok)."""
        async with self.lock, self.pool.acquire() as conn:
            async with conn.transaction():
                head = await self.log.tick(PgLogTx(conn), _now_ms(), force=force)
            if head is not None:
                metrics.HEADS_SIGNED.inc()
            await self.publisher.publish(conn)
            ok = await self.chain.check(conn)
            if ok is not None:
                metrics.CHAIN_OK.set(1 if ok else 0)
                if not ok:
                    log.error("%s: the stored records no longer give the root of the latest head", NAME)

    async def ticking(self, stopping: asyncio.Event) -> None:
        backoff = Backoff(0.5, 5.0)
        while not stopping.is_set():
            try:
                await self.tick()
                backoff.reset()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=TICK_S)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning("%s: heads wait, Kafka or PostgreSQL away: %r", NAME, exc)
                await backoff.sleep(stopping)


async def run(settings: Settings | None = None) -> None:
    """Consume until SIGTERM; at stop, sign a last head over what was appended."""
    s = settings or get_settings()
    if not s.audit_signing_key:
        raise SystemExit("KALO_AUDIT_SIGNING_KEY is not set: make a key with `kalo audit keygen FILE`")
    signer = Signer.from_file(s.audit_signing_key)
    stopping = asyncio.Event()
    store: AuditStore | None = None
    opened: list[asyncpg.Pool] = []  # the pool, once connected
    readiness = Readiness(
        {
            "postgres": pool_check(lambda: opened[0] if opened else None),
            "kafka": kafka_check(s),
            "consumer": assigned_check(lambda: store.consumer.consumer if store else None),
        }
    )
    ops = await start_ops_server(s.metrics_host, s.audit_metrics_port, readiness)

    def on_sigterm() -> None:
        arm_stop_deadline(NAME, stopping)
        stopping.set()
        if store is not None:
            store.consumer.stop()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, on_sigterm)
    pool = await retry_outages(
        lambda: connect_pool(writer_dsn(s), service="audit", settings=s, min_size=1, max_size=3, timeout=5),
        what=f"{NAME}: PostgreSQL",
        stop=stopping,
        backoff=Backoff(0.5, 5.0),
        logger=log,
    )
    opened.append(pool)
    ticker: asyncio.Task[None] | None = None
    try:
        store = AuditStore(s, pool, signer)
        async with pool.acquire() as conn, conn.transaction():
            await store.log._locked(PgLogTx(conn))  # refuses to start over an altered log
        metrics.TREE_SIZE.set(store.log.frontier.size)
        metrics.CHAIN_OK.set(1)  # the load checked the latest head against every record
        await retry_outages(store.heads_producer.start, what=f"{NAME}: Kafka", stop=stopping, logger=log)
        await retry_outages(store.publisher.start, what=f"{NAME}: heads", stop=stopping, logger=log)
        ticker = asyncio.create_task(store.ticking(stopping), name="audit-heads")
        await store.consumer.run()
        stopping.set()
        await ticker
        ticker = None
        with contextlib.suppress(Exception):  # best effort: a last head over everything appended
            await asyncio.wait_for(store.tick(force=True), timeout=3)
    finally:
        if ticker is not None:
            ticker.cancel()
        if store is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(store.heads_producer.stop(), timeout=2)
        await close_pool(pool)
        await close_ops(ops)


def writer_dsn(s: Settings) -> str:
    """The admin's server and database, as the writer's role `kalo_audit` (INSERT only)."""
    return s.service_dsn("audit")


def main() -> None:
    tune_gc()  # a month's records decoded and hashed: see services/common/gc_tuning
    uvloop.run(run())  # the event loop's own cost per batch, as every consumer of Kalo's
