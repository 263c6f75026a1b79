"""The employer registry and API keys (PostgreSQL): the gateway's tables. The names are
qualified: the CLI and the tests write the registry on connections of their own (as the
gateway's role or as the admin), whatever their search_path."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg

from services.common.hashing import api_key_hash

ROLES = ("employer", "backoffice", "controller", "auditor")


@dataclass(frozen=True)
class Principal:
    role: str
    employer_id: str | None
    label: str | None = None
    # The key's SHA-256 (api_keys.key_hash: its id; never the key). What a claim records as
    # `filed_by`, so that the control commission can tell the maker from the checkers.
    key_hash: str | None = None

    @property
    def key_id(self) -> str | None:
        """The actor of audit events: the key's SHA-256 (never the key)."""
        return self.key_hash


def key_id_of(key_hash: str | None) -> str | None:
    """How a key is shown to people (as the control commission shows it): the beginning of its hash."""
    return None if key_hash is None else f"key:{key_hash[:12]}"


def new_api_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


async def add_employer(
    conn: asyncpg.Connection,
    *,
    employer_id: str,
    regime: str,
    risk_class: int | None,
    filing: str,
    name: str | None = None,
) -> str:
    """Register (or update) an employer and issue a new API key; the key is shown once."""
    key = new_api_key("kalo_emp")
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO gateway.employers AS e (id, name, regime, risk_class, filing)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (id) DO UPDATE SET name = coalesce(EXCLUDED.name, e.name),
                 regime = EXCLUDED.regime, risk_class = EXCLUDED.risk_class,
                 filing = EXCLUDED.filing, active = true""",
            employer_id,
            name,
            regime,
            risk_class,
            filing,
        )
        await conn.execute(
            "INSERT INTO gateway.api_keys (key_hash, role, employer_id) VALUES ($1, 'employer', $2)",
            api_key_hash(key),
            employer_id,
        )
    return key


async def add_staff_key(conn: asyncpg.Connection, *, role: str, label: str) -> str:
    """An API key for a back office, a controller or an auditor."""
    if role not in ROLES or role == "employer":
        raise ValueError(f"role must be one of {', '.join(r for r in ROLES if r != 'employer')}")
    key = new_api_key(f"kalo_{role[:4]}")
    await conn.execute(
        "INSERT INTO gateway.api_keys (key_hash, role, label) VALUES ($1, $2, $3)",
        api_key_hash(key),
        role,
        label,
    )
    return key


async def principal_for(conn: asyncpg.Connection | asyncpg.Pool, key_hash: str) -> Principal | None:
    """The principal of an API key, given the key's hash (None: unknown, or employer inactive)."""
    row = await conn.fetchrow(
        """SELECT k.role, k.employer_id, k.label FROM gateway.api_keys k
           LEFT JOIN gateway.employers e ON e.id = k.employer_id
           WHERE k.key_hash = $1 AND (k.employer_id IS NULL OR e.active)""",
        key_hash,
    )
    return Principal(row["role"], row["employer_id"], row["label"], key_hash) if row else None


async def registered_employer(
    conn: asyncpg.Connection | asyncpg.Pool, principal: Principal
) -> asyncpg.Record:
    """The registration of the calling employer (regime, risk class, filing)."""
    row = await conn.fetchrow(
        "SELECT id, regime, risk_class, filing FROM gateway.employers WHERE id = $1", principal.employer_id
    )
    assert row is not None  # the key's employer exists: api_keys references employers
    return row
