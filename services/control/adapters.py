"""The control's ports on PostgreSQL (schema `control`) and its outbox.

The four-eyes rules are the database's (deploy/postgres/008_control.sql): a refused insert
names the rule it broke (its constraint), which becomes a `Refused` with that name.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.control.audit.adapters import latest_head
from services.control.handlers import Outgoing, Refused

# Each column of control.liquidations with its type, for the batch's one INSERT … unnest.
_LIQUIDATION_COLUMNS = {
    "claim_id": "text",
    "worker_id": "text",
    "regime": "text",
    "event_id": "uuid",
    "ruleset": "text",
    "filed_by": "text",
    "claim": "jsonb",
    "career": "json",
    "career_sources": "jsonb",
    "career_as_of": "jsonb",
    "liquidation": "jsonb",
    "recomputed": "jsonb",
    "outcome": "text",
    "monthly_pension": "bigint",
    "lump_sum": "bigint",
    "flags": "jsonb",
    "approvals_needed": "integer",
    "status": "text",
    "decided_by": "text",
    "liquidated_at": "timestamptz",
    "received_at": "timestamptz",
    "escalate_at": "timestamptz",
    "decided_at": "timestamptz",
}
# A batch's rows in one statement (arrays, one per column, in the batch's order) rather than
# one statement per row: the executor's start and a round of the protocol per liquidation
# and per outbox message were a quarter of PostgreSQL's time for the control.
# JSON goes in as text (an array of JSON values would read a list as one more dimension).
_JSON = frozenset({"json", "jsonb"})
_NAMES = ", ".join(_LIQUIDATION_COLUMNS)
_VALUES = ", ".join(f"{c}::{t}" if t in _JSON else c for c, t in _LIQUIDATION_COLUMNS.items())
_ARRAYS = ", ".join(
    f"${i}::{'text' if t in _JSON else t}[]" for i, t in enumerate(_LIQUIDATION_COLUMNS.values(), 1)
)
_ADD_LIQUIDATIONS = f"""
INSERT INTO control.liquidations ({_NAMES})
SELECT {_VALUES} FROM unnest({_ARRAYS}) WITH ORDINALITY AS u({_NAMES}, n)
ORDER BY n
ON CONFLICT (claim_id) DO NOTHING
"""


def _column(rows: Sequence[Mapping[str, Any]], column: str, kind: str) -> list[Any]:
    if kind in _JSON:
        return [None if row[column] is None else orjson.dumps(row[column]).decode() for row in rows]
    return [row[column] for row in rows]


_ENQUEUE = """
INSERT INTO control.outbox (event_id, topic, key, value)
SELECT event_id, topic, key, value
FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[])
     WITH ORDINALITY AS u(event_id, topic, key, value, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""
_ESCALATED = "(l.status = 'pending' AND l.escalate_at < $1)"


def _refused(exc: asyncpg.PostgresError) -> Refused:
    rule = getattr(exc, "constraint_name", None) or type(exc).__name__
    detail = getattr(exc, "message", None) or str(exc)
    return Refused(rule, detail)


class PgTx:
    """The `Tx` port on one connection inside a transaction."""

    def __init__(self, conn: asyncpg.Connection, topic: Callable[[str], str]) -> None:
        self.conn = conn
        self.topic = topic

    async def liquidation(self, claim_id: str) -> dict[str, Any] | None:
        row = await self.conn.fetchrow("SELECT * FROM control.liquidations WHERE claim_id = $1", claim_id)
        return dict(row) if row else None

    async def stored_claims(self, claim_ids: Sequence[str]) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT claim_id FROM control.liquidations WHERE claim_id = ANY($1::text[])", list(claim_ids)
        )
        return {r["claim_id"] for r in rows}

    async def approved_claims(self, worker_ids: Sequence[str]) -> dict[str, set[str]]:
        rows = await self.conn.fetch(
            """SELECT worker_id, claim_id FROM control.liquidations
               WHERE worker_id = ANY($1::text[]) AND status = 'approved'""",
            list(worker_ids),
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r["worker_id"], set()).add(r["claim_id"])
        return out

    async def add_liquidations(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await self.conn.execute(
            _ADD_LIQUIDATIONS, *(_column(rows, c, t) for c, t in _LIQUIDATION_COLUMNS.items())
        )

    async def add_decision(self, decision: Mapping[str, Any]) -> dict[str, Any]:
        try:
            async with self.conn.transaction():  # a savepoint: the caller's transaction goes on
                await self.conn.execute(
                    """INSERT INTO control.decisions
                       (claim_id, controller, controller_label, decision, reason, session_id, decided_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    decision["claim_id"],
                    decision["controller"],
                    decision["controller_label"],
                    decision["decision"],
                    decision["reason"],
                    decision["session_id"],
                    decision["decided_at"],
                )
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.CheckViolationError) as exc:
            raise _refused(exc) from None
        after = await self.liquidation(decision["claim_id"])
        assert after is not None
        return after

    async def decisions(self, claim_id: str) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            "SELECT * FROM control.decisions WHERE claim_id = $1 ORDER BY decided_at, id", claim_id
        )
        return [dict(r) for r in rows]

    async def decisions_of(self, claim_ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            "SELECT * FROM control.decisions WHERE claim_id = ANY($1::text[]) ORDER BY decided_at, id",
            list(claim_ids),
        )
        return [dict(r) for r in rows]

    async def enqueue(self, messages: Sequence[Outgoing]) -> None:
        await self.conn.execute(
            _ENQUEUE,
            [m.event_id for m in messages],
            [self.topic(m.topic) for m in messages],
            [m.key.encode() for m in messages],
            [m.value for m in messages],
        )

    async def liquidations(self, *, status: str | None, now: datetime, limit: int) -> list[dict[str, Any]]:
        where = {
            None: "true",
            "escalated": _ESCALATED,
            "pending": "l.status = 'pending'",
            "approved": "l.status = 'approved'",
            "rejected": "l.status = 'rejected'",
        }[status]
        rows = await self.conn.fetch(
            f"""SELECT l.* FROM control.liquidations l WHERE {where}
                ORDER BY {_ESCALATED} DESC, (l.status = 'pending') DESC,
                         CASE WHEN l.status = 'pending' THEN l.received_at END ASC,
                         l.decided_at DESC NULLS LAST, l.claim_id
                LIMIT $2""",
            now,
            limit,
        )
        return [dict(r) for r in rows]

    async def escalate(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        # A liquidation is escalated once: a second writer's insert waits for the first's and
        # then does nothing (the primary key), so neither audits it twice.
        rows = await self.conn.fetch(
            """WITH due AS (
                   SELECT l.claim_id FROM control.liquidations l
                   WHERE l.status = 'pending' AND l.escalate_at < $1
                     AND NOT EXISTS (SELECT FROM control.escalations e WHERE e.claim_id = l.claim_id)
                   ORDER BY l.escalate_at, l.claim_id LIMIT $2),
               marked AS (
                   INSERT INTO control.escalations (claim_id, escalated_at) SELECT claim_id, $1 FROM due
                   ON CONFLICT (claim_id) DO NOTHING RETURNING claim_id)
               SELECT l.* FROM control.liquidations l JOIN marked USING (claim_id) ORDER BY l.claim_id""",
            now,
            limit,
        )
        return [dict(r) for r in rows]

    async def open_session(self, session: Mapping[str, Any]) -> None:
        try:
            async with self.conn.transaction():
                await self.conn.execute(
                    """INSERT INTO control.sessions (id, controller, controller_label, opened_at)
                       VALUES ($1, $2, $3, $4)""",
                    session["id"],
                    session["controller"],
                    session["controller_label"],
                    session["opened_at"],
                )
        except asyncpg.UniqueViolationError as exc:
            raise Refused(
                "sessions_one_open_per_controller", "this controller has a session open already"
            ) from exc

    async def open_session_of(self, controller: str) -> dict[str, Any] | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM control.sessions WHERE controller = $1 AND closed_at IS NULL", controller
        )
        return dict(row) if row else None

    async def session(self, session_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self.conn.fetchrow("SELECT * FROM control.sessions WHERE id = $1", session_id)
        return dict(row) if row else None

    async def sessions(self, limit: int) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            """SELECT * FROM control.sessions
               ORDER BY (closed_at IS NULL) DESC, opened_at DESC LIMIT $1""",
            limit,
        )
        return [dict(r) for r in rows]

    async def close_session(
        self,
        session_id: uuid.UUID,
        *,
        closed_at: datetime,
        minutes: str,
        sha256: str,
        audit_tree_head: str | None = None,
    ) -> None:
        await self.conn.execute(
            """UPDATE control.sessions SET closed_at = $2, minutes = $3, minutes_sha256 = $4,
                      audit_tree_head = $5
               WHERE id = $1 AND closed_at IS NULL""",
            session_id,
            closed_at,
            minutes,
            sha256,
            audit_tree_head,
        )

    async def latest_audit_head(self) -> str | None:
        try:
            async with self.conn.transaction():  # a savepoint: a refusal leaves the closing intact
                head = await latest_head(self.conn)
        except asyncpg.InsufficientPrivilegeError:  # a deployment without the audit store's grant
            return None
        return None if head is None else orjson.dumps(head.as_json(with_leaves=False)).decode()

    async def add_review(self, session_id: uuid.UUID, claim_id: str, at: datetime) -> None:
        await self.conn.execute(
            """INSERT INTO control.session_reviews (session_id, claim_id, reviewed_at) VALUES ($1, $2, $3)
               ON CONFLICT (session_id, claim_id) DO NOTHING""",
            session_id,
            claim_id,
            at,
        )

    async def session_liquidations(self, session_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            """SELECT l.*, s.first_seen FROM control.liquidations l JOIN (
                   SELECT claim_id, min(at) AS first_seen FROM (
                       SELECT claim_id, reviewed_at AS at FROM control.session_reviews WHERE session_id = $1
                       UNION ALL
                       SELECT claim_id, decided_at FROM control.decisions WHERE session_id = $1
                   ) seen GROUP BY claim_id
               ) s USING (claim_id)
               ORDER BY s.first_seen, l.claim_id""",
            session_id,
        )
        return [dict(r) for r in rows]


class PgStore:
    """The `Store` port on a pool: each `transaction()` is one PostgreSQL transaction."""

    def __init__(self, pool: asyncpg.Pool, topic: Callable[[str], str]) -> None:
        self.pool = pool
        self.topic = topic

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTx]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PgTx(conn, self.topic)


async def controller_of(
    conn: asyncpg.Connection | asyncpg.Pool, key_hash: str
) -> tuple[str, str | None] | None:
    """A controller's key hash and label, from the gateway's registry (the view granted)."""
    row = await conn.fetchrow("SELECT key_hash, label FROM control.controllers WHERE key_hash = $1", key_hash)
    return (row["key_hash"], row["label"]) if row else None


async def escalated_count(pool: asyncpg.Pool, now: datetime) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM control.liquidations WHERE status = 'pending' AND escalate_at < $1", now
        )
    )


class WebSessions:
    """The page's sign-ins: the cookie holds a random token, the table only its hash."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(
        self, token_hash: str, controller: str, label: str | None, csrf: str, now: datetime, expires: datetime
    ) -> None:
        await self.pool.execute(
            """INSERT INTO control.web_sessions
               (token_hash, controller, controller_label, csrf_token, created_at, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            token_hash,
            controller,
            label,
            csrf,
            now,
            expires,
        )
        await self.pool.execute("DELETE FROM control.web_sessions WHERE expires_at < $1", now)

    async def find(self, token_hash: str, now: datetime) -> dict[str, Any] | None:
        """The sign-in of a cookie, while it lasts and while its key is still a controller's."""
        row = await self.pool.fetchrow(
            """SELECT w.controller, w.controller_label, w.csrf_token FROM control.web_sessions w
               JOIN control.controllers c ON c.key_hash = w.controller
               WHERE w.token_hash = $1 AND w.expires_at > $2""",
            token_hash,
            now,
        )
        return dict(row) if row else None

    async def remove(self, token_hash: str) -> None:
        await self.pool.execute("DELETE FROM control.web_sessions WHERE token_hash = $1", token_hash)
