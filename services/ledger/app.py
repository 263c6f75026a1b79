"""Ledger wiring: a tracked consumer of assessed and rejected declarations, /metrics."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import start_http_server

from services.common.db import connect_pool
from services.common.kafka import topic
from services.common.settings import Settings, get_settings
from services.common.tracking import TrackedConsumer
from services.ledger.handlers import decode
from services.ledger.projections import apply_events

NAME = "kalo-ledger"
TOPICS = ("kalo.declarations.assessed", "kalo.declarations.rejected", "kalo.workers.registrations")


async def run(settings: Settings | None = None) -> None:
    s = settings or get_settings()
    start_http_server(s.ledger_metrics_port, addr=s.metrics_host)
    pool = await connect_pool(s.dsn, min_size=1, max_size=4)
    consumer = TrackedConsumer(
        name=NAME,
        topics=[topic(name, s) for name in TOPICS],
        pool=pool,
        decode=decode,
        apply=apply_events,
        settings=s,
    )
    try:
        await consumer.run()
    finally:
        await pool.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run())
