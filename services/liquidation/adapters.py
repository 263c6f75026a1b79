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

# Per worker, its rows as three columns (decoded far faster than a row per month and
# employer); the handler merges them (services.liquidation.handlers.merge_career). The periods
# come as one text, "YYYY-MM,YYYY-MM,…": `string_agg` and a split cost PostgreSQL and the
# liquidation 25% less than an array of 420 texts. The aggregates of one query read the rows
# in one order, so the i-th period, employer and base are one row's.
_ASSESSED = """
SELECT worker_id, string_agg(period, ',') AS periods, array_agg(employer_id) AS employers,
       array_agg(base) AS bases
FROM careers WHERE worker_id = ANY($1::text[]) GROUP BY worker_id
"""
# The employer of an imported row only matters in a month Kalo assessed too (Kalo's row of
# that employer and month wins): before the batch's first assessed month it is left NULL. A
# 35-year history then comes back without 400 employer strings to decode per worker.
_IMPORTED = """
SELECT worker_id, string_agg(period, ',') AS periods,
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
            assessed = {r["worker_id"]: _rows(r) for r in await conn.fetch(_ASSESSED, worker_ids)}
            first = min((min(r.periods) for r in assessed.values()), default=None)
            imported = await conn.fetch(_IMPORTED, worker_ids, first)
            offsets = await conn.fetch(_OFFSETS, list(self.physical))
        ledger_offsets: dict[str, dict[str, int]] = {name: {} for name in CAREER_TOPICS}
        for r in offsets:
            ledger_offsets[self.physical[r["topic"]]][str(r["partition"])] = r["next_offset"]
        careers = {r["worker_id"]: CareerRows(imported=_rows(r)) for r in imported}
        for worker, rows in assessed.items():
            careers[worker] = CareerRows(rows, careers.get(worker, NO_ROWS).imported)
        return Snapshot(careers, read_at, ledger_offsets)


def _rows(r: asyncpg.Record) -> Rows:
    periods = r["periods"].split(",")  # YYYY-MM never holds a comma
    if len(periods) != len(r["bases"]):
        raise ValueError(f"career rows of {r['worker_id']}: {len(periods)} periods, {len(r['bases'])} bases")
    return Rows(periods, r["employers"], r["bases"])


class KafkaDeadLetters(outputs.KafkaDeadLetters):
    def __init__(self, sender: KafkaSender) -> None:
        super().__init__(sender, SERVICE, STREAM)
