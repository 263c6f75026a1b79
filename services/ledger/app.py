"""Ledger wiring: a tracked consumer of assessed and rejected declarations, careers imported,
liquidations and decisions; /metrics, /health, /ready; rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

import asyncpg
import uvloop

from services.common import db
from services.common.gc_tuning import tune_gc
from services.common.kafka import topic
from services.common.ops_http import start_ops_server
from services.common.outage import Backoff, is_outage, retry_outages
from services.common.ready import NotReady, Readiness, assigned_check, kafka_check, pool_check
from services.common.settings import Settings, get_settings
from services.common.shutdown import arm_stop_deadline, close_ops, close_pool
from services.common.tracking import TrackedConsumer
from services.ledger.handlers import decode
from services.ledger.metrics import STREAM
from services.ledger.projections import apply_events
from services.ledger.rebuild import LEDGER_LOCK, create_copy, diff, reset_projections

log = logging.getLogger(__name__)
NAME = "kalo-ledger"
TOPICS = (
    "kalo.declarations.assessed",
    "kalo.declarations.rejected",
    "kalo.workers.registrations",
    "kalo.careers.imported",
    "kalo.pensions.liquidations",
    "kalo.control.decisions",
    "kalo.pensions.approved",
)
# The topics the careers are written from: a liquidation's career is as of their offsets.
CAREER_TOPICS = ("kalo.declarations.assessed", "kalo.careers.imported")


def _consumer(s: Settings, pool: asyncpg.Pool, gate: LedgerLock | None = None) -> TrackedConsumer:
    return TrackedConsumer(
        name=NAME,
        topics=[topic(name, s) for name in TOPICS],
        pool=pool,
        decode=decode,
        apply=apply_events,
        settings=s,
        metrics=STREAM,
        gate=gate.wait_held if gate else None,
    )


class LedgerLock:
    """The shared advisory lock every running ledger holds (a rebuild needs it exclusively),
    on a connection of its own. PostgreSQL restarting closes that connection: the lock is
    taken again as soon as PostgreSQL answers, and no batch is written meanwhile."""

    def __init__(self, settings: Settings, stopping: asyncio.Event) -> None:
        self.settings = settings
        self.stopping = stopping
        self.held = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    async def take(self) -> None:
        async def connect() -> asyncpg.Connection:
            conn = await db.connect("ledger", self.settings, timeout=5)
            try:
                await conn.execute("SELECT pg_advisory_lock_shared($1)", LEDGER_LOCK)
            except BaseException:
                conn.terminate()
                raise
            return conn

        self._conn = await retry_outages(connect, what=f"{NAME}: shared lock", stop=self.stopping, logger=log)
        self._lost.clear()
        self._conn.add_termination_listener(lambda _conn: self._lost.set())
        self.held.set()

    async def wait_held(self) -> None:
        """Return once the lock is held; an outage (retried by the caller) if stopped meanwhile."""
        if self.held.is_set():
            return
        waiters = [asyncio.ensure_future(self.held.wait()), asyncio.ensure_future(self.stopping.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if not self.held.is_set():
            raise ConnectionError("the ledger's shared lock is not held (PostgreSQL away)")

    async def keep(self) -> None:
        """Take the lock again whenever its connection is lost, until stopped."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):  # a listener may miss a dead socket: look too
                await asyncio.wait_for(self._lost.wait(), timeout=5)
            if not (self._lost.is_set() or self._conn is None or self._conn.is_closed()):
                continue
            self.held.clear()
            log.warning("%s: lock connection lost (PostgreSQL restarting?); taking the lock again", NAME)
            try:
                await self.take()
            except Exception as exc:  # stopped meanwhile, or not an outage: look again shortly
                log.warning("%s: lock not taken: %r", NAME, exc)
                await asyncio.sleep(1)

    async def release(self) -> None:
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.close(), timeout=1)
            except Exception:
                self._conn.terminate()


async def _connect_pool(s: Settings, stopping: asyncio.Event) -> asyncpg.Pool:
    return await retry_outages(
        lambda: db.connect_pool(service="ledger", settings=s, min_size=1, max_size=4, timeout=5),
        what=f"{NAME}: PostgreSQL",
        stop=stopping,
        backoff=Backoff(0.5, 5.0),
        logger=log,
    )


async def run(settings: Settings | None = None) -> None:
    """Consume until SIGTERM. PostgreSQL or Kafka away (at start or later) pauses the ledger;
    it resumes by itself. SIGTERM ends it within seconds, whatever is away."""
    s = settings or get_settings()
    stopping = asyncio.Event()
    consumer: TrackedConsumer | None = None
    pool: asyncpg.Pool | None = None
    lock = LedgerLock(s, stopping)

    async def lock_held() -> None:
        if not lock.held.is_set():
            raise NotReady("the ledger's shared lock is not held")

    readiness = Readiness(
        {
            "postgres": pool_check(lambda: pool),
            "kafka": kafka_check(s),
            "consumer": assigned_check(lambda: consumer.consumer if consumer else None),
            "lock": lock_held,
        }
    )
    ops = await start_ops_server(s.metrics_host, s.ledger_metrics_port, readiness)

    def on_sigterm() -> None:  # finish the batch, leave the group, close cleanly
        arm_stop_deadline(NAME, stopping)
        stopping.set()
        if consumer is not None:
            consumer.stop()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    keeper: asyncio.Task[None] | None = None
    try:
        # Held for the life of the process: a rebuild waits for every ledger to stop.
        await lock.take()
        keeper = asyncio.create_task(lock.keep(), name="ledger-lock")
        pool = await _connect_pool(s, stopping)
        consumer = _consumer(s, pool, lock)
        if stopping.is_set():
            return
        await consumer.run()
    except Exception as exc:
        if not (stopping.is_set() and is_outage(exc)):
            raise
        log.warning("%s: stopped before PostgreSQL answered: %r", NAME, exc)
    finally:
        if keeper is not None:
            keeper.cancel()
        await lock.release()
        await close_pool(pool)
        await close_ops(ops)


# What a rebuild reports as it goes: stage, records applied, records to apply.
Progress = Callable[[str, int, int | None], None]
REPLAYING = "replaying the ledger's topics"


async def rebuild(settings: Settings | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Empty the projections and replay the ledger's topics from the beginning: as the
    ledger's role, which may touch nothing but the ledger's schema."""
    s = settings or get_settings()
    pool = await db.connect_pool(service="ledger", settings=s, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await reset_projections(conn, NAME)
        consumer = _consumer(s, pool)
        records = await consumer.replay_to_end(_reporting(progress))
        counts: dict[str, Any] = {"records": records}
        for table in (
            "declaration_outcomes",
            "employer_periods",
            "employer_dues",
            "careers",
            "workers",
            "career_imports",
            "claim_liquidations",
            "claim_decisions",
        ):
            counts[table] = await pool.fetchval(f"SELECT count(*) FROM {table}")
        counts["refused"] = consumer.refused  # as the live ledger refused them (kalo dlq list)
        counts["refused_count"] = consumer.refused_count
        return counts
    finally:
        await pool.close()


def main() -> None:
    tune_gc()  # full collections walked every live object every few thousand events
    uvloop.run(run())  # the event loop's own cost per batch, as the stream processors (faust_runtime)


def _reporting(progress: Progress | None) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(REPLAYING, done, total)


async def rebuild_into(
    schema: str, settings: Settings | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Replay the ledger's topics from the beginning into empty copies of its tables in a new
    schema (the live projections are not touched; the ledger may keep running), then diff
    them row by row against the live projections."""
    s = settings or get_settings()
    conn = await asyncpg.connect(s.dsn)
    try:
        live, tables = await create_copy(conn, schema)
        # As the admin: the ledger's role may create no schema (an auditor's or operator's task).
        pool = await db.connect_pool(s.dsn, min_size=1, max_size=4, server_settings={"search_path": schema})
        try:
            consumer = _consumer(s, pool)
            records = await consumer.replay_to_end(_reporting(progress))
        finally:
            await pool.close()
        tables_diff = await diff(conn, live, schema, tables)
    finally:
        await conn.close()
    equal = all(t["only_live"] == 0 and t["only_rebuilt"] == 0 for t in tables_diff.values())
    return {
        "schema": schema,
        "live": live,
        "records": records,
        "equal": equal,
        "tables": tables_diff,
        "refused": consumer.refused,  # records the rebuild could not apply (nothing parked)
        "refused_count": consumer.refused_count,
    }
