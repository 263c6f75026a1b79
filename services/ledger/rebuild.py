"""Rebuild the ledger's projections from the topics: empty them, replay from the beginning.

Only the ledger's schema is touched: everything the ledger derived (declaration outcomes
and reports, accounts, careers, pre-registered workers, its stored offsets) is dropped and
recomputed by the same code the running ledger uses. The gateway's receipts stay as they
are (its view shows them `received` until their outcome is replayed). The ledger service
must be stopped meanwhile: it holds a shared advisory lock that a rebuild needs exclusively.
"""

from __future__ import annotations

import re
from typing import Any

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


# What the ledger writes (before and after the tables moved to schema `ledger`), and the
# columns a rebuild cannot reproduce (wall-clock times, the gateway's receipt columns).
LEDGER_TABLES = (
    "declarations",
    "declaration_outcomes",
    "employer_periods",
    "employer_dues",
    "careers",
    "workers",
    "career_imports",
    "career_import_events",
    "claim_liquidations",
    "claim_decisions",
    "consumer_offsets",
)
NOT_COMPARED = frozenset(
    {
        "assessed_at",
        "received_at",
        "updated_at",
        "created_at",
        "payload_sha256",
        "idempotency_key",
        "superseded_by",
        "applied_at",
    }
)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RESERVED = frozenset({"public", "ledger", "gateway", "assessment", "control", "audit", "pg_catalog"})


async def live_schema(conn: asyncpg.Connection) -> str:
    """Where the live projections are: schema `ledger` once it exists, else `public`."""
    return "ledger" if await conn.fetchval("SELECT to_regclass('ledger.careers') IS NOT NULL") else "public"


async def ledger_tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
        schema,
    )
    present = {r["table_name"] for r in rows}
    return [t for t in LEDGER_TABLES if t in present]


async def create_copy(conn: asyncpg.Connection, into: str) -> tuple[str, list[str]]:
    """An empty copy of the ledger's tables in a new schema; returns the live schema and the tables."""
    if not _SCHEMA_NAME.match(into) or into in RESERVED:
        raise ValueError(f"{into!r} is not a schema a rebuild may create (lower-case letters, digits, _)")
    if await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", into):
        raise ValueError(f"schema {into} exists already: choose another name or drop it")
    source = await live_schema(conn)
    tables = await ledger_tables(conn, source)
    async with conn.transaction():
        await conn.execute(f'CREATE SCHEMA "{into}"')
        for table in tables:
            await conn.execute(
                f'CREATE TABLE "{into}"."{table}" (LIKE "{source}"."{table}" INCLUDING DEFAULTS '
                "INCLUDING CONSTRAINTS INCLUDING INDEXES)"
            )
    return source, tables


async def diff(
    conn: asyncpg.Connection, live: str, rebuilt: str, tables: list[str], examples: int = 5
) -> dict[str, Any]:
    """Row by row, each table of the live projections against its rebuilt copy (wall-clock
    columns left out; the live declarations only as far as the ledger assessed them)."""
    out: dict[str, Any] = {}
    for table in tables:
        if table == "consumer_offsets":
            continue
        columns = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name = $2 ORDER BY ordinal_position",
            rebuilt,
            table,
        )
        exprs = [
            f'"{c["column_name"]}"::text' if c["data_type"] == "json" else f'"{c["column_name"]}"'
            for c in columns
            if c["column_name"] not in NOT_COMPARED
        ]
        select = ", ".join(exprs)
        where = " WHERE event_id IS NOT NULL" if table == "declarations" else ""
        live_q = f'SELECT {select} FROM "{live}"."{table}"{where}'
        rebuilt_q = f'SELECT {select} FROM "{rebuilt}"."{table}"{where}'
        only_live = await conn.fetch(f"{live_q} EXCEPT ALL {rebuilt_q}")
        only_rebuilt = await conn.fetch(f"{rebuilt_q} EXCEPT ALL {live_q}")
        out[table] = {
            "live": await conn.fetchval(f"SELECT count(*) FROM ({live_q}) t"),
            "rebuilt": await conn.fetchval(f"SELECT count(*) FROM ({rebuilt_q}) t"),
            "only_live": len(only_live),
            "only_rebuilt": len(only_rebuilt),
            "examples_live": [_jsonable(r) for r in only_live[:examples]],
            "examples_rebuilt": [_jsonable(r) for r in only_rebuilt[:examples]],
        }
    return out


def _jsonable(row: asyncpg.Record) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, int | str | bool | float | type(None)) else str(v)) for k, v in row.items()
    }
