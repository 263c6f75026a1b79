"""PostgreSQL helpers: connection pool and the migration runner."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson

from services.common.settings import get_settings

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


async def _json_codecs(conn: asyncpg.Connection) -> None:
    # jsonb columns come back as Python objects, not strings.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def connect_pool(dsn: str | None = None, **kwargs: object) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn or get_settings().dsn, init=_json_codecs, **kwargs)  # type: ignore[arg-type]
    assert pool is not None
    return pool


async def migrate(dsn: str | None = None) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction. Returns their names."""
    files = migration_files()  # fail before touching the database
    conn = await asyncpg.connect(dsn or get_settings().dsn)
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
    finally:
        await conn.execute("SELECT pg_advisory_unlock(7206)")
        await conn.close()
    return applied
