"""Migration 006 on a database that already holds data: every row keeps its values, the
receipts and the outcomes part ways, and the services can go on from there with their roles."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from services.common.db import connect, migrate, migration_files
from services.common.settings import Settings

BEFORE_OWNERS = [f for f in migration_files() if f.name < "006"]
RECEIPT = (
    "declaration_id, employer_id, period, replaces, payload_sha256, idempotency_key, line_count,"
    " received_at, superseded_by"
)
OUTCOME = (
    "declaration_id, employer_id, period, replaces, status, line_count, ruleset, totals::text, report::text,"
    " event_id"
)
# declaration id, period, replaces, payload hash, idempotency key, event id
SUBMIT = "SELECT * FROM gateway_submit($1, 'M1', $2, $3, $4, $5, 1, now(), $6, 't', '\\x01')"


@pytest_asyncio.fixture(loop_scope="session")
async def old_database() -> AsyncIterator[Settings]:
    """A database at migration 005, as a deployment before the owners were."""
    admin = Settings()
    name = f"kalo_sb_mig_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin.dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    settings = Settings(database_url=admin.dsn.rsplit("/", 1)[0] + f"/{name}")
    try:
        conn = await asyncpg.connect(settings.dsn)
        try:
            await conn.execute(
                "CREATE TABLE schema_migrations"
                " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for path in BEFORE_OWNERS:
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
        finally:
            await conn.close()
        yield settings
    finally:
        conn = await asyncpg.connect(admin.dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def _old_rows(conn: asyncpg.Connection) -> None:
    """Receipts (one assessed, one corrected, one waiting), an outcome the ledger saw without
    a receipt, and a row in every other table."""
    await conn.execute("INSERT INTO employers (id, regime, risk_class) VALUES ('M1', 'INPS', 2)")
    await conn.execute("INSERT INTO api_keys (key_hash, role, employer_id) VALUES ('h1', 'employer', 'M1')")
    submit = "SELECT outcome FROM gateway_submit($1, 'M1', $2, $3, $4, $5, 2, now(), $6, 't', '\\x01'::bytea)"
    for did, period, replaces, sha, key in (
        ("D-1", "2026-09", None, "a" * 64, "k1"),
        ("D-2", "2026-10", None, "b" * 64, None),
        ("D-3", "2026-10", "D-2", "c" * 64, None),
    ):
        assert await conn.fetchval(submit, did, period, replaces, sha, key, uuid.uuid4()) == "created"
    await conn.execute(
        """UPDATE declarations SET status = 'accepted', assessed_at = now(), ruleset = 'r1',
           totals = '{"total": 7}', report = '{"lines": []}', event_id = gen_random_uuid()
           WHERE declaration_id IN ('D-1', 'D-2')"""
    )
    await conn.execute(
        """INSERT INTO declarations (declaration_id, employer_id, period, status, payload_sha256,
               line_count, received_at, assessed_at, ruleset, report, event_id)
           VALUES ('D-around', 'M9', '2026-10', 'rejected', '', 0, now(), now(), 'r1', '{"errors": []}',
                   gen_random_uuid())"""
    )
    await conn.execute("UPDATE outbox SET published_at = now() WHERE seq = 1")
    await conn.execute("INSERT INTO consumer_offsets VALUES ('kalo-ledger', 't', 0, 42, now())")
    await conn.execute(
        "INSERT INTO employer_periods VALUES ('M1', '2026-10', 'D-2', now(), '2026-11-15', 0, 7, 0)"
    )
    await conn.execute("INSERT INTO employer_dues VALUES ('M1', '2026-10', 'INPS', 7)")
    await conn.execute("INSERT INTO careers VALUES ('W1', '2026-10', 'M1', 'D-2', 100)")
    await conn.execute(
        "INSERT INTO workers (worker_id, first_employer_id, first_period, first_declaration_id)"
        " VALUES ('W1', 'M1', '2026-10', 'D-2')"
    )


async def test_006_keeps_every_row_and_parts_receipts_from_outcomes(old_database: Settings) -> None:
    conn = await asyncpg.connect(old_database.dsn)
    try:
        await _old_rows(conn)
        receipts = await conn.fetch(
            f"SELECT {RECEIPT} FROM declarations WHERE payload_sha256 <> '' ORDER BY 1"
        )
        outcomes = await conn.fetch(
            f"SELECT {OUTCOME} FROM declarations WHERE event_id IS NOT NULL ORDER BY 1"
        )
        whole = await conn.fetch("SELECT * FROM declarations WHERE payload_sha256 <> '' ORDER BY 1")
        others = {
            table: await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")
            for table in (
                "employers",
                "api_keys",
                "outbox",
                "consumer_offsets",
                "employer_periods",
                "employer_dues",
                "careers",
                "workers",
            )
        }

        # 006, and the migrations after it (they add tables of their own, they move no row).
        applied = await migrate(settings=old_database)
        assert applied[0] == "006_owners.sql"
        assert applied == [f.name for f in migration_files() if f.name >= "006"]

        assert await conn.fetch(f"SELECT {RECEIPT} FROM gateway.receipts ORDER BY 1") == receipts
        assert await conn.fetch(f"SELECT {OUTCOME} FROM ledger.declaration_outcomes ORDER BY 1") == outcomes
        # The gateway's view has the columns and the rows of its receipts as the table had them.
        assert [dict(r) for r in await conn.fetch("SELECT * FROM gateway.declarations ORDER BY 1")] == [
            dict(r) for r in whole
        ]
        owner = {"employers": "gateway", "api_keys": "gateway", "outbox": "gateway"}
        for table, rows in others.items():
            assert await conn.fetch(f"SELECT * FROM {owner.get(table, 'ledger')}.{table} ORDER BY 1") == rows
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') AND c.relname <> 'schema_migrations'"
        )
        assert left == 0
    finally:
        await conn.close()

    # The gateway goes on where it was: the next outbox row, the corrected month's checks.
    gateway = await connect("gateway", old_database)
    try:
        row = await gateway.fetchrow(SUBMIT, "D-4", "2026-10", "D-2", "d" * 64, None, uuid.uuid4())
        assert (row["outcome"], row["other"]) == ("replaces_superseded", "D-3")
        again = await gateway.fetchrow(SUBMIT, "D-5", "2026-09", None, "a" * 64, "k1", uuid.uuid4())
        assert (again["outcome"], again["r_declaration_id"], again["r_status"]) == (
            "existing",
            "D-1",
            "accepted",
        )
        row = await gateway.fetchrow(SUBMIT, "D-6", "2026-11", None, "e" * 64, None, uuid.uuid4())
        assert row["outcome"] == "created"
        assert await gateway.fetchval("SELECT max(seq) FROM outbox") == 4
    finally:
        await gateway.close()
