"""The gateway's store on PostgreSQL: receipts and the outbox (one round trip through the
`gateway_submit`, `gateway_claim` and `gateway_import_careers` functions), and the read
models the ledger projects."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg

from services.gateway.handlers import Outgoing, Row
from services.gateway.schemas import ClaimIn

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
        call = "gateway_submit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        row = await self.db.fetchrow(
            f"SELECT * FROM {call}" if audit is None else _audited(call, 12),
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
            *_audit_args(audit),
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

    # ---- pensions (the `Pensions` port) ---------------------------------------------------

    async def file_claim(
        self,
        *,
        claim_id: str,
        claim: ClaimIn,
        payload_sha256: str,
        idempotency_key: str | None,
        filed_by: str,
        filed_by_label: str | None,
        received_at: datetime,
        event_id: uuid.UUID,
        topic: str,
        message: bytes,
        audit: Outgoing | None = None,
    ) -> Row:
        call = "gateway_claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        row = await self.db.fetchrow(
            f"SELECT * FROM {call}" if audit is None else _audited(call, 17),
            claim_id,
            claim.worker_id,
            claim.regime,
            claim.category,
            claim.grade,
            date.fromisoformat(claim.birth_date),
            date.fromisoformat(claim.effective_date),
            claim.replaces,
            payload_sha256,
            idempotency_key,
            filed_by,
            filed_by_label,
            received_at,
            event_id,
            topic,
            message,
            *_audit_args(audit),
        )
        assert row is not None
        return row

    async def claim(self, claim_id: str) -> Row | None:
        return await self.db.fetchrow("SELECT * FROM pension_claim_states WHERE claim_id = $1", claim_id)

    async def claim_decisions(self, claim_id: str) -> list[Row]:
        rows: list[Any] = await self.db.fetch(
            """SELECT type, decision, reason, flags, controllers, producer, decided_at FROM claim_decisions
               WHERE claim_id = $1 ORDER BY decided_at, event_id""",
            claim_id,
        )
        return rows

    async def claims(self, *, status: str | None, worker_id: str | None, limit: int) -> list[Row]:
        rows: list[Any] = await self.db.fetch(
            """SELECT claim_id, worker_id, status, received_at, payload_sha256, replaces, regime,
                      effective_date, liquidation
               FROM pension_claim_states
               WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR worker_id = $2)
               ORDER BY received_at DESC, claim_id LIMIT $3""",
            status,
            worker_id,
            limit,
        )
        return rows

    async def import_careers(
        self,
        *,
        import_id: str,
        payload_sha256: str,
        idempotency_key: str | None,
        imported_by: str,
        imported_by_label: str | None,
        row_count: int,
        received_at: datetime,
        topic: str,
        messages: list[tuple[uuid.UUID, str, bytes]],
        audit: Outgoing | None = None,
    ) -> Row:
        event_ids, keys, values = (list(c) for c in zip(*messages, strict=True))
        call = "gateway_import_careers($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        row = await self.db.fetchrow(
            f"SELECT * FROM {call}" if audit is None else _audited(call, 12),
            import_id,
            payload_sha256,
            idempotency_key,
            imported_by,
            imported_by_label,
            row_count,
            received_at,
            topic,
            event_ids,
            keys,
            values,
            *_audit_args(audit),
        )
        assert row is not None
        return row

    async def career_import(self, import_id: str) -> Row | None:
        return await self.db.fetchrow(
            """SELECT r.*, coalesce((SELECT a.workers FROM career_imports_applied a
                                     WHERE a.import_id = r.import_id), 0) AS applied_workers
               FROM career_import_receipts r WHERE r.import_id = $1""",
            import_id,
        )


def _audited(call: str, first: int) -> str:
    """One statement, one round trip: the receipt function's call, and its audit event written
    to the outbox in the same transaction only when the receipt is created (parameters
    `first`… `first + 3`: the event's id, topic, key and value)."""
    e, t, k, v = (f"${first + i}" for i in range(4))
    return f"""WITH s AS (SELECT * FROM {call}),
                    a AS (INSERT INTO outbox (event_id, topic, key, value)
                          SELECT {e}, {t}, convert_to({k}, 'UTF8'), {v} FROM s WHERE s.outcome = 'created'
                          RETURNING 1)
               SELECT s.*, (SELECT count(*) FROM a) AS audited FROM s"""


def _audit_args(audit: Outgoing | None) -> tuple[Any, ...]:
    return () if audit is None else (audit.event_id, audit.topic, audit.key, audit.value)
