"""`kalo status`: is the stack up, how far behind are the consumers, what is parked."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import TOPICS
from services.common import kafka
from services.common.settings import Settings


async def kafka_status(settings: Settings) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        names = [kafka.topic(t.name, settings) for t in TOPICS]
        existing = set(await admin.list_topics())
        consumer = kafka.consumer(group_id=None, settings=settings)
        await consumer.start()
        try:
            sizes: dict[str, int] = {}
            ends: dict[TopicPartition, int] = {}
            for name in names:
                if name not in existing:
                    continue
                tps = [TopicPartition(name, p) for p in await kafka.partitions_of(name, settings)]
                begin = await consumer.beginning_offsets(tps)
                end = await consumer.end_offsets(tps)
                ends.update(end)
                sizes[name] = sum(end[tp] - begin[tp] for tp in tps)
        finally:
            await consumer.stop()
        lag: dict[str, int] = {}
        for group, _protocol in [(g[0], g[1]) for g in await admin.list_consumer_groups()]:
            if not group.startswith(f"{settings.topic_prefix}kalo"):
                continue
            committed = await admin.list_consumer_group_offsets(group)
            lag[group] = sum(
                max(ends.get(tp, meta.offset) - meta.offset, 0) for tp, meta in committed.items()
            )
        return {"topics": sizes, "lag": lag, "missing": sorted(set(names) - existing)}
    finally:
        await admin.close()


async def database_status(settings: Settings) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.dsn, timeout=5)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM gateway.declarations GROUP BY status")
        return {
            "declarations": {r["status"]: r["n"] for r in rows},
            "outbox_pending": await conn.fetchval(
                "SELECT count(*) FROM gateway.outbox WHERE published_at IS NULL"
            ),
            "careers": await conn.fetchval("SELECT count(*) FROM ledger.careers"),
            "employers": await conn.fetchval("SELECT count(*) FROM gateway.employers"),
        }
    finally:
        await conn.close()
