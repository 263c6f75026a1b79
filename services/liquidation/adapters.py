"""The liquidation's ports on PostgreSQL and Kafka: the career rows it reads (the ledger's, through
the views of its schema: assessed `careers`, `career_imports`, and the ledger's tracking records,
`ledger_offsets`), the sender of its outputs, its dead letters."""

from __future__ import annotations

import asyncpg

from services.common import outputs
from services.common.kafka import topic
from services.common.outputs import KafkaSender
from services.common.settings import Settings
from services.liquidation.handlers import NO_ROWS, CareerRows, Rows, Snapshot
from services.liquidation.metrics import STREAM

SERVICE = "liquidation"
# The topics the ledger writes careers from.
CAREER_TOPICS = ("kalo.declarations.assessed", "kalo.careers.imported")

__all__ = ["SERVICE", "KafkaDeadLetters", "KafkaSender", "PgCareers"]

# Per worker, its rows as three arrays (decoded far faster than a row per month and employer);
# the handler merges them (services.liquidation.handlers.merge_career).
_ASSESSED = """
SELECT worker_id, array_agg(period) AS periods, array_agg(employer_id) AS employers,
       array_agg(base) AS bases
FROM careers WHERE worker_id = ANY($1::text[]) GROUP BY worker_id
"""
# The employer of an imported row only matters in a month Kalo assessed too (Kalo's row of
# that employer and month wins): before the batch's first assessed month it is left NULL. A
# 35-year history then comes back without 400 employer strings to decode per worker.
_IMPORTED = """
SELECT worker_id, array_agg(period) AS periods,
       array_agg(CASE WHEN period >= $2::text COLLATE "C" THEN employer_id END) AS employers,
       array_agg(base) AS bases
FROM career_imports WHERE worker_id = ANY($1::text[]) GROUP BY worker_id
"""
_OFFSETS = "SELECT topic, partition, next_offset FROM ledger_offsets WHERE topic = ANY($1::text[])"


class PgCareers:
    """Career rows read in one REPEATABLE READ snapshot together with the ledger's tracking
    records: the ledger writes careers and offsets in one transaction, so the offsets say
    exactly which part of its topics the rows read reflect."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.physical = {topic(name, settings): name for name in CAREER_TOPICS}

    async def read(self, worker_ids: list[str]) -> Snapshot:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            read_at = await conn.fetchval("SELECT transaction_timestamp()")
            assessed = await conn.fetch(_ASSESSED, worker_ids)
            first = min((min(r["periods"]) for r in assessed), default=None)
            imported = await conn.fetch(_IMPORTED, worker_ids, first)
            offsets = await conn.fetch(_OFFSETS, list(self.physical))
        ledger_offsets: dict[str, dict[str, int]] = {name: {} for name in CAREER_TOPICS}
        for r in offsets:
            ledger_offsets[self.physical[r["topic"]]][str(r["partition"])] = r["next_offset"]
        rows = {r["worker_id"]: Rows(r["periods"], r["employers"], r["bases"]) for r in imported}
        careers = {w: CareerRows(imported=i) for w, i in rows.items()}
        for r in assessed:
            found = careers.get(r["worker_id"], NO_ROWS)
            careers[r["worker_id"]] = CareerRows(
                Rows(r["periods"], r["employers"], r["bases"]), found.imported
            )
        return Snapshot(careers, read_at, ledger_offsets)


class KafkaDeadLetters(outputs.KafkaDeadLetters):
    def __init__(self, sender: KafkaSender) -> None:
        super().__init__(sender, SERVICE, STREAM)
