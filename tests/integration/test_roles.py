"""Each table has one owner: every service connects as its own PostgreSQL role, writes its
own schema only, reads another's data only through the views granted to it, and can do
nothing a superuser or a table's owner could."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from services.common.db import connect
from services.gateway.registry import add_staff_key
from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import auth, declaration, inps_line, register_employer, wait_status
from tests.support.sandbox import free_port

SERVICES = ("gateway", "assessment", "ledger", "liquidation", "control", "audit")
# The audit log's tables: its own role may only read and append to them.
APPEND_ONLY = frozenset({"audit.records", "audit.heads", "audit.positions"})

# One write of each table, with values the table accepts (the refusal is the privilege's).
WRITES = {
    "gateway.employers": "INSERT INTO gateway.employers (id, regime, risk_class) VALUES ('R-{n}', 'INPS', 1)",
    "gateway.api_keys": "INSERT INTO gateway.api_keys (key_hash, role, label)"
    " VALUES ('h-{n}', 'auditor', 'x')",
    "gateway.receipts": "INSERT INTO gateway.receipts (declaration_id, employer_id, period, payload_sha256,"
    " line_count, received_at) VALUES ('D-{n}', 'R', '2026-10', 'x', 1, now())",
    "gateway.outbox": "INSERT INTO gateway.outbox (event_id, topic, value)"
    " VALUES (gen_random_uuid(), 't', '')",
    "ledger.declaration_outcomes": "INSERT INTO ledger.declaration_outcomes (declaration_id, employer_id,"
    " period, status, line_count, submitted_at, assessed_at, event_id)"
    " VALUES ('D-{n}', 'R', '2026-10', 'accepted', 1, now(), now(), gen_random_uuid())",
    "ledger.employer_periods": "INSERT INTO ledger.employer_periods VALUES"
    " ('R-{n}', '2026-10', 'D', now(), '2026-11-15', 0, 1, 0)",
    "ledger.employer_dues": "INSERT INTO ledger.employer_dues VALUES ('R-{n}', '2026-10', 'INPS', 1)",
    "ledger.careers": "INSERT INTO ledger.careers VALUES ('W-{n}', '2026-10', 'R', 'D', 1)",
    "ledger.workers": "INSERT INTO ledger.workers (worker_id, first_employer_id, first_period,"
    " first_declaration_id) VALUES ('W-{n}', 'R', '2026-10', 'D')",
    "ledger.consumer_offsets": "INSERT INTO ledger.consumer_offsets (consumer, topic, partition, next_offset)"
    " VALUES ('c-{n}', 't', 0, 1)",
    # The control's tables it may also delete from (liquidations, decisions and sessions it may
    # not: tests/integration/test_control.py holds their rules).
    "control.consumer_offsets": "INSERT INTO control.consumer_offsets"
    " (consumer, topic, partition, next_offset) VALUES ('c-{n}', 't', 0, 1)",
    "control.outbox": "INSERT INTO control.outbox (event_id, topic, value)"
    " VALUES (gen_random_uuid(), 't', '')",
    "control.web_sessions": "INSERT INTO control.web_sessions VALUES ('t-{n}', 'k', 'x', 'c', now(), now())",
    "audit.records": "INSERT INTO audit.records"
    " (seq, event_id, record, leaf_hash, action, subject, occurred_at)"
    " VALUES (('x{n}')::bit(32)::bigint, gen_random_uuid(), '\\x7b7d', sha256('x'::bytea), 'a', 's', now())",
    "audit.heads": "INSERT INTO audit.heads"
    " (tree_size, timestamp_ms, root_hash, key_id, signature, leaves_from)"
    " VALUES (0, ('x{n}')::bit(32)::bigint, sha256(''::bytea), 'k', '\\x00', 0)",
    "audit.positions": "INSERT INTO audit.positions (topic, partition, next_offset) VALUES ('t-{n}', 0, 1)",
    "gateway.pension_claims": "INSERT INTO gateway.pension_claims (claim_id, worker_id, regime, category,"
    " birth_date, effective_date, payload_sha256, filed_by, received_at)"
    " VALUES ('C-{n}', 'W', 'INPS', 'salarie', '1966-03-10', '2026-12-01', 'x', 'k', now())",
    "gateway.career_import_receipts": "INSERT INTO gateway.career_import_receipts (import_id, payload_sha256,"
    " imported_by, row_count, worker_count, received_at) VALUES ('I-{n}', 'x', 'k', 1, 1, now())",
    "ledger.career_imports": "INSERT INTO ledger.career_imports"
    " VALUES ('W-{n}', '2001-01', 'E', 1, 'I', now())",
    "ledger.career_import_events": "INSERT INTO ledger.career_import_events (event_id, import_id, worker_id,"
    " entries) VALUES (gen_random_uuid(), 'I-{n}', 'W', 1)",
    "ledger.claim_liquidations": "INSERT INTO ledger.claim_liquidations (claim_id, worker_id, event_id,"
    " liquidated_at, ruleset, decision, career_months, liquidation, claim)"
    " VALUES ('C-{n}', 'W', gen_random_uuid(), now(), 'rs', 'pension', 1, '{{}}', '{{}}')",
    "ledger.claim_decisions": "INSERT INTO ledger.claim_decisions (event_id, claim_id, worker_id, type,"
    " decision, producer, decided_at) VALUES (gen_random_uuid(), 'C-{n}', 'W', 'control.decided',"
    " 'pending', 'control', now())",
}
OWNER = {table: table.split(".")[0] for table in WRITES}
# Tables another service may read (only read) by a grant of their own.
READS_GRANTED = {("control", "audit.heads")}
# Privileges are checked whatever the rows: `WHERE false` leaves the session's data alone.
UPDATES = {
    "gateway.employers": "UPDATE gateway.employers SET active = false WHERE false",
    "gateway.receipts": "UPDATE gateway.receipts SET superseded_by = 'x' WHERE false",
    "gateway.outbox": "UPDATE gateway.outbox SET published_at = now() WHERE false",
    "ledger.declaration_outcomes": "UPDATE ledger.declaration_outcomes SET status = 'rejected' WHERE false",
    "ledger.employer_periods": "UPDATE ledger.employer_periods SET total = 0 WHERE false",
    "ledger.workers": "UPDATE ledger.workers SET status = 'registered' WHERE false",
    "ledger.consumer_offsets": "UPDATE ledger.consumer_offsets SET next_offset = 0 WHERE false",
    "control.consumer_offsets": "UPDATE control.consumer_offsets SET next_offset = 0 WHERE false",
    "control.outbox": "UPDATE control.outbox SET published_at = now() WHERE false",
    "control.web_sessions": "UPDATE control.web_sessions SET expires_at = now() WHERE false",
    "audit.records": "UPDATE audit.records SET subject = 'x' WHERE false",
    "audit.heads": "UPDATE audit.heads SET key_id = 'x' WHERE false",
    "audit.positions": "UPDATE audit.positions SET next_offset = 0 WHERE false",
    "gateway.pension_claims": "UPDATE gateway.pension_claims SET superseded_by = 'x' WHERE false",
    "ledger.career_imports": "UPDATE ledger.career_imports SET base = 0 WHERE false",
}
DELETES = {table: f"DELETE FROM {table} WHERE false" for table in WRITES}

# What each service reads: its own schema's views (and tables); nothing of another schema.
VIEWS = {
    "gateway": (
        "declarations",
        "employer_periods",
        "employer_dues",
        "pension_claim_states",
        "claim_decisions",
        "career_imports_applied",
    ),
    "assessment": ("employers", "workers"),
    "ledger": (),
    "control": ("controllers",),
    "audit": (),
    "liquidation": ("careers", "career_imports", "ledger_offsets"),
}
# Writes through the views (simple views are updatable by whoever may write them: nobody).
VIEW_WRITES = {
    "gateway": (
        "INSERT INTO gateway.employer_periods VALUES ('R', '2026-10', 'D', now(), '2026-11-15', 0, 1, 0)",
        "UPDATE gateway.employer_dues SET amount = 0 WHERE false",
        "DELETE FROM gateway.employer_periods WHERE false",
    ),
    "assessment": (
        "INSERT INTO assessment.employers (id, regime) VALUES ('R', 'INPS')",
        "UPDATE assessment.workers SET status = 'registered' WHERE false",
        "DELETE FROM assessment.employers WHERE false",
    ),
    "control": (
        "INSERT INTO control.controllers (key_hash, label) VALUES ('h', 'x')",
        "UPDATE control.controllers SET label = 'x' WHERE false",
        "DELETE FROM control.controllers WHERE false",
    ),
    "liquidation": (
        "INSERT INTO liquidation.careers VALUES ('W', '2001-01', 'E', 1)",
        "UPDATE liquidation.career_imports SET base = 0 WHERE false",
        "DELETE FROM liquidation.ledger_offsets WHERE false",
    ),
}

# What only a superuser, or an object's owner, may do.
FORBIDDEN = (
    "CREATE TABLE {schema}.mine (x int)",
    "CREATE TABLE public.mine (x int)",
    "CREATE SCHEMA mine",
    "CREATE ROLE mine",
    "CREATE DATABASE mine",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "SET session_replication_role = replica",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "COPY (SELECT 1) TO '/tmp/kalo-role-test'",
    "SELECT pg_read_file('postgresql.conf')",
    "CREATE FUNCTION {schema}.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "ALTER ROLE CURRENT_USER SUPERUSER",
    "SELECT * FROM public.schema_migrations",
    "CREATE TEMPORARY TABLE mine (x int)",
)
OWNED = {
    "gateway": (
        "DROP TABLE gateway.receipts",
        "ALTER TABLE gateway.outbox ADD COLUMN x int",
        "TRUNCATE gateway.outbox",
        "DROP VIEW gateway.declarations",
        "CREATE OR REPLACE VIEW gateway.employer_dues AS SELECT * FROM ledger.employer_dues",
    ),
    "ledger": (
        "DROP TABLE ledger.careers",
        "ALTER TABLE ledger.workers DISABLE TRIGGER ALL",
        "TRUNCATE ledger.careers",
        "CREATE INDEX ON ledger.careers (base)",
    ),
    "assessment": ("DROP VIEW assessment.employers", "CREATE OR REPLACE VIEW assessment.workers AS SELECT 1"),
    "control": (
        "DROP TABLE control.decisions",
        "ALTER TABLE control.decisions DISABLE TRIGGER ALL",
        "DROP TRIGGER decision_allowed ON control.decisions",
        "TRUNCATE control.decisions",
        "DROP VIEW control.controllers",
        "CREATE OR REPLACE FUNCTION control.decision_kept() RETURNS trigger LANGUAGE plpgsql"
        " AS 'BEGIN RETURN OLD; END'",
    ),
    "audit": (
        "DROP TABLE audit.records",
        "ALTER TABLE audit.records DISABLE TRIGGER records_append_only",
        "TRUNCATE audit.records",
        "DROP TRIGGER heads_append_only ON audit.heads",
        "CREATE OR REPLACE FUNCTION audit.append_only() RETURNS trigger LANGUAGE plpgsql"
        " AS 'BEGIN RETURN NEW; END'",
    ),
    "liquidation": (
        "DROP VIEW liquidation.careers",
        "CREATE OR REPLACE VIEW liquidation.ledger_offsets AS SELECT * FROM ledger.consumer_offsets",
    ),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def roles(stack: Stack) -> AsyncIterator[dict[str, asyncpg.Connection]]:
    """A connection of each service, as the services open theirs (role and schema)."""
    conns = {service: await connect(service, stack.settings) for service in SERVICES}
    try:
        yield conns
    finally:
        for conn in conns.values():
            await conn.close()


async def refused(conn: asyncpg.Connection, sql: str) -> bool:
    """True when PostgreSQL refuses the statement for want of privilege (nothing is kept)."""
    try:
        if sql.startswith(("CREATE DATABASE", "ALTER SYSTEM")):  # cannot run in a transaction
            await conn.execute(sql)
            return False
        async with conn.transaction():
            await conn.execute(sql)
    except asyncpg.InsufficientPrivilegeError:
        return True
    return False


async def test_each_service_connects_as_its_own_role_without_superuser_rights(
    roles: dict[str, asyncpg.Connection],
) -> None:
    for service, conn in roles.items():
        row = await conn.fetchrow(
            """SELECT current_user AS role, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
                      current_setting('search_path') AS search_path
               FROM pg_roles r WHERE r.rolname = current_user"""
        )
        assert row["role"] == f"kalo_{service}"
        assert not (row["rolsuper"] or row["rolcreaterole"] or row["rolcreatedb"] or row["rolbypassrls"])
        assert row["search_path"] == service


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("table", sorted(WRITES))
async def test_writing_another_services_table_is_refused(
    roles: dict[str, asyncpg.Connection], service: str, table: str
) -> None:
    conn = roles[service]
    n = uuid.uuid4().hex[:8]
    statements = [WRITES[table].format(n=n), DELETES[table]]
    if table in UPDATES:
        statements.append(UPDATES[table])
    if OWNER[table] == service:  # its own table: every write goes through (and is rolled back)
        for sql in statements:
            if table in APPEND_ONLY and not sql.startswith("INSERT"):  # its own log: append only
                assert await refused(conn, sql), f"{service} could run: {sql}"
                continue
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(sql)
            finally:
                await tx.rollback()
        return
    for sql in statements:
        assert await refused(conn, sql), f"{service} could run: {sql}"
    # Nor may it read another owner's table, except through a view granted to it (and the
    # control commission reads the signed heads of its own audit store, to seal its minutes).
    if (service, table) in READS_GRANTED:
        assert not await refused(conn, f"SELECT 1 FROM {table} LIMIT 1"), f"{service} cannot read {table}"
        return
    assert await refused(conn, f"SELECT 1 FROM {table} LIMIT 1"), f"{service} reads {table}"


@pytest.mark.parametrize("service", SERVICES)
async def test_the_views_granted_read_and_refuse_writes(
    roles: dict[str, asyncpg.Connection], service: str
) -> None:
    conn = roles[service]
    for view in VIEWS[service]:
        await conn.fetch(f"SELECT * FROM {view} LIMIT 1")  # unqualified: its schema
    for sql in VIEW_WRITES.get(service, ()):
        assert await refused(conn, sql), f"{service} could run: {sql}"
    other_views = [f"{s}.{v}" for s, views in VIEWS.items() if s != service for v in views]
    for view in other_views:
        assert await refused(conn, f"SELECT 1 FROM {view} LIMIT 1"), f"{service} reads {view}"


@pytest.mark.parametrize("service", SERVICES)
async def test_what_a_superuser_or_an_owner_may_do_is_refused(
    roles: dict[str, asyncpg.Connection], service: str
) -> None:
    conn = roles[service]
    for sql in (*FORBIDDEN, *OWNED[service]):
        sql = sql.format(schema=service)
        assert await refused(conn, sql), f"{service} could run: {sql}"


async def test_only_the_services_roles_may_connect(stack: Stack, db: asyncpg.Connection) -> None:
    """PUBLIC's default CONNECT is revoked: a role of the same cluster that is not one of
    Kalo's services is refused at the door, while each service's role connects."""
    role = f"kalo_probe_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        dsn = stack.settings.service_dsn("gateway").replace("kalo_gateway", role)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await asyncpg.connect(dsn)
        allowed = await db.fetch(
            "SELECT r.rolname FROM pg_roles r"
            " WHERE has_database_privilege(r.oid, current_database(), 'CONNECT')"
            " AND NOT r.rolsuper AND r.rolname LIKE 'kalo\\_%' ORDER BY 1"
        )
        owner = await db.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
        assert {r["rolname"] for r in allowed} - {owner} == {f"kalo_{s}" for s in SERVICES}
    finally:
        await db.execute(f"DROP ROLE {role}")


async def test_the_running_services_connect_with_their_roles(services: Stack, db: asyncpg.Connection) -> None:
    """The gateway, the assessment, the ledger and the liquidation, as processes, each use their own
    role only."""
    employer_id, key = await register_employer(db)
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        r = await client.post(
            "/v1/declarations", json=declaration(employer_id, [inps_line("RW1", 150_000)]), headers=auth(key)
        )
        assert r.status_code == 202, r.text
        assert (await wait_status(client, r.json()["declaration_id"], key))["status"] == "accepted"
        # A claim, so that the liquidation reads careers (it connects on its first batch).
        staff = await add_staff_key(db, role="backoffice", label="roles test")
        claim = {
            "worker_id": "RW1",
            "regime": "INPS",
            "category": "salarie",
            "birth_date": "1966-03-10",
            "effective_date": "2026-12-01",
        }
        r = await client.post("/v1/pension-claims", json=claim, headers=auth(staff))
        assert r.status_code in (202, 409), r.text
        claim_id = r.json()["claim_id"]
        for _ in range(300):
            if (await client.get(f"/v1/pension-claims/{claim_id}", headers=auth(staff))).json()[
                "liquidation"
            ]:
                break
            await asyncio.sleep(0.2)
    rows = await db.fetch(
        """SELECT a.application_name, a.usename, r.rolsuper FROM pg_stat_activity a
           JOIN pg_roles r ON r.oid = a.usesysid
           WHERE a.datname = current_database() AND a.application_name LIKE 'kalo-%'"""
    )
    users: dict[str, set[str]] = {}
    for r in rows:
        users.setdefault(r["application_name"], set()).add(r["usename"])
        assert not r["rolsuper"], dict(r)
    assert users == {f"kalo-{s}": {f"kalo_{s}"} for s in SERVICES}


async def test_a_single_role_deployment_still_works(services: Stack, db: asyncpg.Connection) -> None:
    """KALO_DB_ROLES=false: a gateway connects with KALO_DATABASE_URL as it is (the admin here)."""
    port = free_port()
    gateway = services.start(
        "gateway", name="gateway-single-role", KALO_DB_ROLES="false", KALO_GATEWAY_PORT=str(port)
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", gateway)
        employer_id, key = await register_employer(db)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            r = await client.post(
                "/v1/declarations",
                json=declaration(employer_id, [inps_line("RW2", 150_000)]),
                headers=auth(key),
            )
            assert r.status_code == 202, r.text
            assert (await wait_status(client, r.json()["declaration_id"], key))["status"] == "accepted"
        admin = await db.fetchval("SELECT current_user")
        users = {
            r["usename"]
            for r in await db.fetch(
                "SELECT usename FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'kalo-gateway'"
            )
        }
        assert admin in users  # the single-role gateway's connections, beside the other gateway's
    finally:
        services.stop("gateway-single-role")
