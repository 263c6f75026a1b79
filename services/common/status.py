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
        claims = await conn.fetch(
            "SELECT status, count(*) AS n FROM gateway.pension_claim_states GROUP BY status ORDER BY status"
        )
        return {
            "declarations": {r["status"]: r["n"] for r in rows},
            # Both outboxes, as `kalo status --watch` counts them: the gateway's and the control's.
            "outbox_pending": await conn.fetchval(WATCH_QUERIES["outbox_pending"]),
            "careers": await conn.fetchval("SELECT count(*) FROM ledger.careers"),
            "employers": await conn.fetchval("SELECT count(*) FROM gateway.employers"),
            "pension_claims": {r["status"]: r["n"] for r in claims},
            "control": {
                "pending": await conn.fetchval(WATCH_QUERIES["control_pending"]),
                "escalated": await conn.fetchval(WATCH_QUERIES["control_escalated"]),
            },
        }
    finally:
        await conn.close()


# The figures `kalo status --watch` reads from PostgreSQL when a service's /metrics is away.
WATCH_QUERIES = {
    "outbox_pending": "SELECT (SELECT count(*) FROM gateway.outbox WHERE published_at IS NULL)"
    " + (SELECT count(*) FROM control.outbox WHERE published_at IS NULL)",
    "received": "SELECT count(*) FROM gateway.receipts",
    "decided": "SELECT count(*) FROM ledger.declaration_outcomes",
    # Decided in the last minute: declarations and their lines (the throughput).
    "decided_last_minute": "SELECT count(*) FROM ledger.declaration_outcomes"
    " WHERE assessed_at > now() - interval '1 minute'",
    "lines_last_minute": "SELECT coalesce(sum(r.line_count), 0) FROM ledger.declaration_outcomes o"
    " JOIN gateway.receipts r USING (declaration_id) WHERE o.assessed_at > now() - interval '1 minute'",
    # From the receipt to the decision, p99 of the last five minutes (seconds).
    "decided_p99_s": "SELECT percentile_cont(0.99) WITHIN GROUP"
    " (ORDER BY extract(epoch FROM o.assessed_at - r.received_at))"
    " FROM ledger.declaration_outcomes o JOIN gateway.receipts r USING (declaration_id)"
    " WHERE o.assessed_at > now() - interval '5 minutes'",
    "control_pending": "SELECT count(*) FROM control.liquidations WHERE status = 'pending'",
    "control_escalated": "SELECT count(*) FROM control.liquidations"
    " WHERE status = 'pending' AND escalate_at < now()",
}


async def database_watch(settings: Settings) -> dict[str, float | None]:
    """The watch's figures from PostgreSQL, one statement each (a missing table: that figure
    None, the others still read)."""
    conn = await asyncpg.connect(settings.dsn, timeout=5)
    try:
        figures: dict[str, float | None] = {}
        for name, query in WATCH_QUERIES.items():
            try:
                value = await conn.fetchval(query, timeout=5)
            except asyncpg.UndefinedTableError:
                value = None
            figures[name] = None if value is None else float(value)
        return figures
    finally:
        await conn.close()
