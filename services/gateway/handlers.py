"""The gateway's service layer: receive a declaration, read declarations. No HTTP here."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from contracts.declarations import DeclarationSubmitted, Employer
from contracts.envelope import derived_id, wrap
from services.common.kafka import topic
from services.gateway.errors import conflict, forbidden, not_found
from services.gateway.registry import Principal
from services.gateway.schemas import DeclarationIn, Receipt

SUBMITTED = "kalo.declarations.submitted"


def receipt_of(row: asyncpg.Record) -> Receipt:
    did = row["declaration_id"]
    return Receipt(
        declaration_id=did,
        employer_id=row["employer_id"],
        period=row["period"],
        status=row["status"],
        received_at=row["received_at"].isoformat().replace("+00:00", "Z"),
        payload_sha256=row["payload_sha256"],
        replaces=row["replaces"],
        links={"self": f"/v1/declarations/{did}"},
    )


def new_declaration_id(now: datetime) -> str:
    return f"D-{now:%Y%m%d}-{uuid.uuid4().hex[:16]}"


async def submit_declaration(
    conn: asyncpg.Connection,
    principal: Principal,
    decl: DeclarationIn,
    *,
    payload_sha256: str,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[Receipt, bool]:
    """Write the receipt and the outbox message in one transaction.

    Returns the receipt and whether it is new (False: an identical earlier submission).
    """
    if principal.role != "employer" or principal.employer_id != decl.employer.id:
        raise forbidden(
            f"this API key cannot submit declarations for employer {decl.employer.id!r}"
        )
    employer_id = decl.employer.id
    async with conn.transaction():
        # Serialise submissions of one employer: the checks below then see a stable table.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", employer_id)
        if idempotency_key is not None:
            row = await conn.fetchrow(
                "SELECT * FROM declarations WHERE employer_id = $1 AND idempotency_key = $2",
                employer_id,
                idempotency_key,
            )
            if row is not None:
                if row["payload_sha256"] != payload_sha256:
                    raise conflict(
                        "this Idempotency-Key was used with another body",
                        declaration_id=row["declaration_id"],
                    )
                return receipt_of(row), False
        row = await conn.fetchrow(
            """SELECT * FROM declarations WHERE employer_id = $1 AND period = $2
               AND payload_sha256 = $3 ORDER BY received_at DESC LIMIT 1""",
            employer_id,
            decl.period,
            payload_sha256,
        )
        if row is not None:
            return receipt_of(row), False
        await _check_original_or_correction(conn, decl)

        declaration_id = new_declaration_id(now)
        await conn.execute(
            """INSERT INTO declarations (declaration_id, employer_id, period, replaces, status,
                 payload_sha256, idempotency_key, line_count, received_at)
               VALUES ($1, $2, $3, $4, 'received', $5, $6, $7, $8)""",
            declaration_id,
            employer_id,
            decl.period,
            decl.replaces,
            payload_sha256,
            idempotency_key,
            len(decl.lines),
            now,
        )
        if decl.replaces:
            await conn.execute(
                "UPDATE declarations SET superseded_by = $1 WHERE declaration_id = $2",
                declaration_id,
                decl.replaces,
            )
        event = wrap(
            DeclarationSubmitted(
                declaration_id=declaration_id,
                employer=Employer(**decl.employer.model_dump()),
                period=decl.period,
                submitted_at=now,
                replaces=decl.replaces,
                payload_sha256=payload_sha256,
                lines=[
                    (
                        ln.worker_id,
                        ln.category,
                        ln.days_worked,
                        ln.base_salary,
                        ln.bonuses,
                        ln.benefits_in_kind,
                        ln.expense_reimbursements,
                    )
                    for ln in decl.lines
                ],
            ),
            producer="gateway",
            correlation_id=declaration_id,
            event_id=derived_id(declaration_id, DeclarationSubmitted.TYPE),
            occurred_at=now,
        )
        await conn.execute(
            "INSERT INTO outbox (event_id, topic, key, value) VALUES ($1, $2, $3, $4)",
            event.id,
            topic(SUBMITTED),
            employer_id.encode(),
            event.model_dump_json().encode(),
        )
        row = await conn.fetchrow(
            "SELECT * FROM declarations WHERE declaration_id = $1", declaration_id
        )
    return receipt_of(row), True


async def _check_original_or_correction(conn: asyncpg.Connection, decl: DeclarationIn) -> None:
    employer_id = decl.employer.id
    if decl.replaces is None:
        original = await conn.fetchval(
            "SELECT declaration_id FROM declarations WHERE employer_id = $1 AND period = $2 "
            "AND replaces IS NULL",
            employer_id,
            decl.period,
        )
        if original:
            raise conflict(
                f"employer {employer_id} already filed {decl.period} as {original}; "
                'send a corrective declaration with "replaces"',
                declaration_id=original,
            )
        return
    replaced = await conn.fetchrow(
        "SELECT * FROM declarations WHERE declaration_id = $1", decl.replaces
    )
    if replaced is None or replaced["employer_id"] != employer_id:
        raise not_found(f"declaration {decl.replaces} to replace was not found")
    if replaced["period"] != decl.period:
        raise conflict(f"{decl.replaces} is for {replaced['period']}, not {decl.period}")
    if replaced["superseded_by"]:
        raise conflict(
            f"{decl.replaces} was already replaced by {replaced['superseded_by']}; "
            "correct the latest declaration",
            declaration_id=replaced["superseded_by"],
        )


async def get_declaration(
    conn: asyncpg.Connection | asyncpg.Pool, principal: Principal, declaration_id: str
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM declarations WHERE declaration_id = $1", declaration_id
    )
    if row is None:
        raise not_found(f"declaration {declaration_id} was not found")
    if principal.role == "employer" and row["employer_id"] != principal.employer_id:
        raise forbidden(f"declaration {declaration_id} belongs to another employer")
    return row
