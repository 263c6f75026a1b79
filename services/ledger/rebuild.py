"""Rebuild the ledger's projections from the topics: empty them, replay from the beginning.

Only the ledger's schema is touched: everything the ledger derived (declaration outcomes
and reports, accounts, careers, pre-registered workers, its stored offsets) is dropped and
recomputed by the same code the running ledger uses. The gateway's receipts stay as they
are (its view shows them `received` until their outcome is replayed). The ledger service
must be stopped meanwhile: it holds a shared advisory lock that a rebuild needs exclusively.
"""

from __future__ import annotations

import asyncpg

# Held shared by every running ledger, exclusively by a rebuild.
LEDGER_LOCK = 7207

_RESET = """
DELETE FROM employer_dues;
DELETE FROM careers;
DELETE FROM career_imports;
DELETE FROM career_import_events;
DELETE FROM claim_liquidations;
DELETE FROM claim_decisions;
DELETE FROM employer_periods;
DELETE FROM workers WHERE status = 'preregistered';
DELETE FROM declaration_outcomes;
"""


class LedgerRunning(RuntimeError):
    pass


async def reset_projections(conn: asyncpg.Connection, consumer: str) -> None:
    """Empty what the ledger derived and forget its offsets (one transaction)."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LEDGER_LOCK):
        raise LedgerRunning("a ledger is running on this database: stop it before a rebuild")
    await conn.execute(_RESET)
    await conn.execute("DELETE FROM consumer_offsets WHERE consumer = $1", consumer)
