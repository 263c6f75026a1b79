"""Ledger wiring: a tracked consumer of assessed and rejected declarations, /metrics, rebuild."""

from __future__ import annotations

import asyncio
import logging
import signal

import asyncpg
from prometheus_client import start_http_server

from services.common.db import connect_pool
from services.common.kafka import topic
from services.common.settings import Settings, get_settings
from services.common.tracking import TrackedConsumer
from services.ledger.handlers import decode
from services.ledger.projections import apply_events
from services.ledger.rebuild import LEDGER_LOCK, reset_projections

NAME = "kalo-ledger"
TOPICS = ("kalo.declarations.assessed", "kalo.declarations.rejected", "kalo.workers.registrations")


def _consumer(s: Settings, pool: asyncpg.Pool) -> TrackedConsumer:
    return TrackedConsumer(
        name=NAME,
        topics=[topic(name, s) for name in TOPICS],
        pool=pool,
        decode=decode,
        apply=apply_events,
        settings=s,
    )


async def run(settings: Settings | None = None) -> None:
    s = settings or get_settings()
    start_http_server(s.ledger_metrics_port, addr=s.metrics_host)
    pool = await connect_pool(s.dsn, min_size=1, max_size=4)
    # Held for the life of the process: a rebuild waits for every ledger to stop.
    lock = await asyncpg.connect(s.dsn)
    await lock.execute("SELECT pg_advisory_lock_shared($1)", LEDGER_LOCK)
    consumer = _consumer(s, pool)
    # SIGTERM: finish the batch, leave the group, close cleanly.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, consumer.stop)
    try:
        await consumer.run()
    finally:
        await lock.close()
        await pool.close()


async def rebuild(settings: Settings | None = None) -> dict[str, int]:
    """Empty the projections and replay the ledger's topics from the beginning."""
    s = settings or get_settings()
    pool = await connect_pool(s.dsn, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await reset_projections(conn, NAME)
        records = await _consumer(s, pool).replay_to_end()
        counts = {"records": records}
        for table in ("declarations", "employer_periods", "employer_dues", "careers", "workers"):
            counts[table] = await pool.fetchval(f"SELECT count(*) FROM {table}")
        return counts
    finally:
        await pool.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run())
