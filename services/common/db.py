"""PostgreSQL helpers: connection pool and the migration runner.

Each service connects as its own role (`Settings.service_dsn`) with its own schema as the
`search_path`: its SQL names its tables and the views it is granted without a schema, and
sees nothing else. Admin tasks (migrations, sandboxes) use the admin's DSN, `Settings.dsn`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson

from services.common.settings import DB_SERVICES, Settings, get_settings

# The schema a service's SQL works in: its own tables and the views granted to it.
SCHEMAS = {
    "gateway": "gateway",
    "assessment": "assessment",
    "ledger": "ledger",
    "control": "control",
    "audit": "audit",
    "liquidation": "liquidation",
}

# The SQL migrations: inside the installed package (the wheel ships deploy/postgres as
# services/migrations), or deploy/postgres of a checkout.
_PACKAGED = Path(__file__).resolve().parents[1] / "migrations"
_CHECKOUT = Path(__file__).resolve().parents[2] / "deploy" / "postgres"


class NoMigrations(RuntimeError):
    """No SQL migration was found: an installation without them would apply nothing."""


def migration_files() -> list[Path]:
    for folder in (_PACKAGED, _CHECKOUT):
        files = sorted(folder.glob("*.sql"))
        if files:
            return files
    raise NoMigrations(f"no SQL migrations in {_PACKAGED} nor in {_CHECKOUT}")


def _jsonb_bytes(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)  # jsonb's binary form: a version byte, then the text


def _jsonb_value(data: bytes) -> Any:
    return orjson.loads(memoryview(data)[1:])


async def _json_codecs(conn: asyncpg.Connection) -> None:
    # json and jsonb columns come back as Python objects, not strings. In the binary format
    # the JSON orjson writes goes out as it is (no str made of it, then encoded again): a
    # liquidation's 35-year career is 10 kB.
    await conn.set_type_codec(
        "json", encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_bytes, decoder=_jsonb_value, schema="pg_catalog", format="binary"
    )


def service_connection(service: str, settings: Settings | None = None) -> dict[str, Any]:
    """asyncpg's connection arguments for a service: its role's DSN, its schema."""
    s = settings or get_settings()
    return {
        "dsn": s.service_dsn(service),
        "server_settings": {
            "search_path": SCHEMAS[service],
            "application_name": f"kalo-{service}",
            # Compiling a plan costs more than it saves on queries of tens of milliseconds (a
            # batch's careers: 4 ms of JIT for a 65 ms read).
            "jit": "off",
        },
    }


async def connect(service: str, settings: Settings | None = None, **kwargs: Any) -> asyncpg.Connection:
    """One connection of a service (its role, its schema)."""
    return await asyncpg.connect(**service_connection(service, settings), **kwargs)


async def connect_pool(
    dsn: str | None = None, *, service: str | None = None, settings: Settings | None = None, **kwargs: Any
) -> asyncpg.Pool:
    """A pool; `service`: as that service (its role unless `dsn` is given, its schema)."""
    if service is not None:
        args = service_connection(service, settings)
        kwargs["server_settings"] = {**args["server_settings"], **kwargs.get("server_settings", {})}
        dsn = dsn or args["dsn"]
    pool = await asyncpg.create_pool(dsn or (settings or get_settings()).dsn, init=_json_codecs, **kwargs)
    assert pool is not None
    return pool


async def migrate(dsn: str | None = None, settings: Settings | None = None) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction, then set the
    password of each service role whose password the settings hold. Returns the names."""
    files = migration_files()  # fail before touching the database
    s = settings or get_settings()
    conn = await asyncpg.connect(dsn or s.dsn)
    applied: list[str] = []
    try:
        # One migrator at a time, even when several services start together.
        await conn.execute("SELECT pg_advisory_lock(7206)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in files:
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied.append(path.name)
        await set_role_passwords(conn, s)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(7206)")
        await conn.close()
    return applied


async def set_role_passwords(conn: asyncpg.Connection, settings: Settings) -> list[str]:
    """`ALTER ROLE kalo_<service> PASSWORD ...` for each password the settings hold (docker
    compose: the migrate job is given them; each service only its own). Returns the roles."""
    done = []
    for service in DB_SERVICES:
        password = settings.db_password(service)
        if password is None:
            continue
        role = f"kalo_{service}"
        statement = await conn.fetchval(
            "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", role, password
        )
        await conn.execute(statement)
        done.append(role)
    return done
