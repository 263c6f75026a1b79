"""The liquidation's ports on PostgreSQL and Kafka: the careers it reads (the ledger's, through
the `career_entries` view), the sender of its outputs, its dead letters."""

from __future__ import annotations

import asyncpg

from services.common import outputs
from services.common.kafka import topic
from services.common.outputs import KafkaSender
from services.common.settings import Settings
from services.liquidation.handlers import Career, Snapshot

SERVICE = "liquidation"
# The ledger's name in its tracking records, and the topics its careers are written from.
LEDGER = "kalo-ledger"
CAREER_TOPICS = ("kalo.declarations.assessed", "kalo.careers.imported")

__all__ = ["SERVICE", "KafkaDeadLetters", "KafkaSender", "PgCareers"]

# Per worker: its months (bases of several employers added, RULES.md §3) oldest first, as two
# arrays (decoded far faster than a row per month), and the rows they were made of.
_CAREERS = """
SELECT worker_id, array_agg(period ORDER BY period) AS periods, array_agg(base ORDER BY period) AS bases,
       sum(assessed)::int AS assessed_rows, sum(imported)::int AS imported_rows
FROM (SELECT worker_id, period, sum(base)::bigint AS base,
             count(*) FILTER (WHERE NOT imported) AS assessed, count(*) FILTER (WHERE imported) AS imported
      FROM career_entries WHERE worker_id = ANY($1::text[])
      GROUP BY worker_id, period) months
GROUP BY worker_id
"""
_OFFSETS = """
SELECT topic, partition, next_offset, transaction_timestamp() AS read_at FROM consumer_offsets
WHERE consumer = $1 AND topic = ANY($2::text[])
"""


class PgCareers:
    """Careers read in one REPEATABLE READ snapshot together with the ledger's tracking records:
    the ledger writes careers and offsets in one transaction, so the offsets say exactly which
    part of its topics the careers read reflect."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.physical = {topic(name, settings): name for name in CAREER_TOPICS}

    async def read(self, worker_ids: list[str]) -> Snapshot:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(_CAREERS, worker_ids)
            offsets = await conn.fetch(_OFFSETS, LEDGER, list(self.physical))
            read_at = (
                offsets[0]["read_at"] if offsets else await conn.fetchval("SELECT transaction_timestamp()")
            )
        ledger_offsets: dict[str, dict[str, int]] = {name: {} for name in CAREER_TOPICS}
        for r in offsets:
            ledger_offsets[self.physical[r["topic"]]][str(r["partition"])] = r["next_offset"]
        careers = {
            r["worker_id"]: Career(
                list(zip(r["periods"], r["bases"], strict=True)), r["assessed_rows"], r["imported_rows"]
            )
            for r in rows
        }
        return Snapshot(careers, read_at, ledger_offsets)


class KafkaDeadLetters(outputs.KafkaDeadLetters):
    def __init__(self, sender: KafkaSender) -> None:
        super().__init__(sender, SERVICE)
