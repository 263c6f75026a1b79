"""Rebuild the ledger's projections from the topics: empty them, replay from the beginning.

Declarations keep the gateway's receipts (they go back to `received` until their
assessment is replayed); everything the ledger derived (reports, accounts, careers,
pre-registered workers, its stored offsets) is dropped and recomputed by the same code
the running ledger uses. The ledger service must be stopped meanwhile: it holds a shared
advisory lock that a rebuild needs exclusively.
"""

from __future__ import annotations

import asyncpg

# Held shared by every running ledger, exclusively by a rebuild.
LEDGER_LOCK = 7207

_RESET = """
DELETE FROM employer_dues;
DELETE FROM careers;
DELETE FROM employer_periods;
DELETE FROM workers WHERE status = 'preregistered';
DELETE FROM declarations WHERE payload_sha256 = '';  -- seen only through the topics
UPDATE declarations SET status = 'received', assessed_at = NULL, ruleset = NULL, totals = NULL,
       report = NULL, event_id = NULL
WHERE event_id IS NOT NULL;
"""


class LedgerRunning(RuntimeError):
    pass


async def reset_projections(conn: asyncpg.Connection, consumer: str) -> None:
    """Empty what the ledger derived and forget its offsets (one transaction)."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LEDGER_LOCK):
        raise LedgerRunning("a ledger is running on this database: stop it before a rebuild")
    await conn.execute(_RESET)
    await conn.execute("DELETE FROM consumer_offsets WHERE consumer = $1", consumer)
