"""The gateway's store on PostgreSQL: receipts and the outbox (one round trip through the
`gateway_submit` function), and the read models the ledger projects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.gateway.handlers import Outgoing, Row

Db = asyncpg.Connection | asyncpg.Pool


class PgStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def submit(
        self,
        *,
        declaration_id: str,
        employer_id: str,
        period: str,
        replaces: str | None,
        payload_sha256: str,
        idempotency_key: str | None,
        line_count: int,
        received_at: datetime,
        event_id: uuid.UUID,
        topic: str,
        message: bytes,
        audit: Outgoing | None = None,
    ) -> Row:
        if audit is not None:
            # Still one statement, one round trip: the receipt's audit event goes to the outbox
            # with it, in the same transaction, only when the receipt is created.
            row = await self.db.fetchrow(
                """WITH s AS (SELECT * FROM gateway_submit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)),
                        a AS (INSERT INTO outbox (event_id, topic, key, value)
                              SELECT $12, $13, convert_to($14, 'UTF8'), $15 FROM s WHERE s.outcome = 'created'
                              RETURNING 1)
                   SELECT s.*, (SELECT count(*) FROM a) AS audited FROM s""",
                declaration_id,
                employer_id,
                period,
                replaces,
                payload_sha256,
                idempotency_key,
                line_count,
                received_at,
                event_id,
                topic,
                message,
                audit.event_id,
                audit.topic,
                audit.key,
                audit.value,
            )
            assert row is not None
            return row
        row = await self.db.fetchrow(
            "SELECT * FROM gateway_submit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            declaration_id,
            employer_id,
            period,
            replaces,
            payload_sha256,
            idempotency_key,
            line_count,
            received_at,
            event_id,
            topic,
            message,
        )
        assert row is not None  # the function always returns one row
        return row

    async def declaration(self, declaration_id: str) -> Row | None:
        return await self.db.fetchrow(
            """SELECT d.*, r.status AS replaced_status, r.totals AS replaced_totals,
                      r.report AS replaced_report
               FROM declarations d LEFT JOIN declarations r ON r.declaration_id = d.replaces
               WHERE d.declaration_id = $1""",
            declaration_id,
        )

    async def report(self, declaration_id: str) -> Row | None:
        return await self.db.fetchrow(
            "SELECT employer_id, status, report FROM declarations WHERE declaration_id = $1", declaration_id
        )

    async def declarations(
        self, *, employer_id: str | None, period: str | None, status: str | None, limit: int
    ) -> list[Row]:
        rows: list[Any] = await self.db.fetch(
            """SELECT declaration_id, employer_id, period, replaces, superseded_by, status,
                      payload_sha256, received_at, line_count, (totals ->> 'total')::bigint AS total
               FROM declarations
               WHERE ($1::text IS NULL OR employer_id = $1) AND ($2::text IS NULL OR period = $2)
                 AND ($3::text IS NULL OR status = $3)
               ORDER BY received_at DESC, declaration_id LIMIT $4""",
            employer_id,
            period,
            status,
            limit,
        )
        return rows

    async def employer(self, employer_id: str) -> Row | None:
        return await self.db.fetchrow(
            "SELECT id, name, regime, risk_class, filing, active FROM employers WHERE id = $1", employer_id
        )

    async def account_rows(self, employer_id: str) -> tuple[list[Row], list[Row], list[Row]]:
        periods: list[Any] = await self.db.fetch(
            "SELECT * FROM employer_periods WHERE employer_id = $1 ORDER BY period", employer_id
        )
        dues: list[Any] = await self.db.fetch(
            "SELECT period, fund, amount FROM employer_dues WHERE employer_id = $1 ORDER BY period, fund",
            employer_id,
        )
        history: list[Any] = await self.db.fetch(
            """SELECT declaration_id, period, replaces, status, received_at,
                      (totals ->> 'total')::bigint AS total
               FROM declarations WHERE employer_id = $1 ORDER BY period, received_at""",
            employer_id,
        )
        return periods, dues, history
