"""PostgreSQL projections of the ledger's topics, written in batches: declarations, accounts
and careers; careers imported from before Kalo; liquidations and decisions of pension claims."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from services.ledger.handlers import (
    Batch,
    Decoded,
    decision_row,
    imported_rows,
    late_charges,
    latest_per_month,
    split,
)
from services.ledger.metrics import STREAM

# The ledger's record of each decision (the gateway reads it joined to its receipt). An
# outcome is written once: a replayed event finds its row and changes nothing.
_INSERT_OUTCOMES = """
INSERT INTO declaration_outcomes (declaration_id, employer_id, period, replaces, status, line_count,
    submitted_at, assessed_at, ruleset, totals, report, event_id)
SELECT u.id, u.employer, u.period, u.replaces, u.status, u.lines, u.submitted, now(), u.ruleset,
       u.totals::jsonb, u.report::json, u.event_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
            $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::uuid[])
     AS u(id, employer, period, replaces, status, lines, submitted, ruleset, totals, report, event_id)
ON CONFLICT (declaration_id) DO NOTHING
RETURNING declaration_id
"""

# The newest declaration of a month wins; a corrective keeps the original's surcharge.
_UPSERT_PERIODS = """
INSERT INTO employer_periods AS p (employer_id, period, declaration_id, submitted_at, due_date,
    months_late, total, surcharge)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::date[],
                     $6::int[], $7::bigint[], $8::bigint[])
ON CONFLICT (employer_id, period) DO UPDATE
SET declaration_id = EXCLUDED.declaration_id, submitted_at = EXCLUDED.submitted_at,
    due_date = EXCLUDED.due_date, months_late = GREATEST(p.months_late, EXCLUDED.months_late),
    total = EXCLUDED.total, surcharge = GREATEST(p.surcharge, EXCLUDED.surcharge)
WHERE p.submitted_at <= EXCLUDED.submitted_at
RETURNING employer_id, period, declaration_id, xmax = 0 AS first
"""

_DELETE_MONTHS = """
DELETE FROM {table} t USING unnest($1::text[], $2::text[]) AS m(employer_id, period)
WHERE t.employer_id = m.employer_id AND t.period = m.period
"""


async def apply_events(conn: asyncpg.Connection, events: Sequence[Decoded]) -> None:
    """Apply one batch of ledger events (in one transaction, with the offsets)."""
    # The commit need not wait for its WAL to reach the disk: the batch and its consumed
    # offsets are in this one transaction, so a crash of PostgreSQL loses both or neither
    # (at most the last few batches, which are then consumed and applied again).
    await conn.execute("SET LOCAL synchronous_commit = off")
    batch = split(list(events))
    await apply_declarations(conn, batch)
    await apply_registrations(conn, batch)
    await apply_imports(conn, batch)
    await apply_liquidations(conn, batch)
    await apply_decisions(conn, batch)


_NEW_IMPORT_EVENTS = """
INSERT INTO career_import_events (event_id, import_id, worker_id, entries)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""
# A later import replaces the worker's month with that employer; the same base changes nothing.
_UPSERT_IMPORTS = """
INSERT INTO career_imports AS c (worker_id, period, employer_id, base, import_id, imported_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[])
ON CONFLICT (worker_id, period, employer_id) DO UPDATE
SET base = EXCLUDED.base, import_id = EXCLUDED.import_id, imported_at = EXCLUDED.imported_at
WHERE c.base IS DISTINCT FROM EXCLUDED.base AND c.imported_at <= EXCLUDED.imported_at
"""


async def apply_imports(conn: asyncpg.Connection, batch: Batch) -> None:
    """Careers from before Kalo, once per event (a redelivered import is dropped)."""
    if not batch.imports:
        return
    events = [(e.id, e.data.import_id, e.data.worker_id, len(e.data.entries)) for e in batch.imports]
    fresh = {
        r["event_id"] for r in await conn.fetch(_NEW_IMPORT_EVENTS, *map(list, zip(*events, strict=True)))
    }
    rows = imported_rows([e for e in batch.imports if e.id in fresh])
    if rows:
        await conn.execute(_UPSERT_IMPORTS, *map(list, zip(*rows, strict=True)))


_INSERT_LIQUIDATIONS = """
INSERT INTO claim_liquidations (claim_id, worker_id, event_id, liquidated_at, ruleset, regime, decision,
    reason, monthly_pension, lump_sum, career_months, liquidation, claim, as_of)
SELECT u.claim_id, u.worker_id, u.event_id, u.at, u.ruleset, u.regime, u.decision, u.reason, u.monthly,
       u.lump_sum, u.months, u.liquidation::jsonb, u.claim::jsonb, u.as_of::jsonb
FROM unnest($1::text[], $2::text[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::bigint[], $10::bigint[], $11::int[], $12::text[], $13::text[], $14::text[])
     AS u(claim_id, worker_id, event_id, at, ruleset, regime, decision, reason, monthly, lump_sum, months,
          liquidation, claim, as_of)
ON CONFLICT DO NOTHING
"""


async def apply_liquidations(conn: asyncpg.Connection, batch: Batch) -> None:
    """The first liquidation of each claim (a redelivery carries the same event id)."""
    rows = []
    for e in batch.liquidations:
        d = e.data
        liquidation = d.liquidation
        rows.append(
            (
                d.claim_id,
                d.worker_id,
                e.id,
                e.envelope.occurred_at,
                d.ruleset,
                liquidation.get("regime"),
                str(liquidation.get("decision")),
                liquidation.get("reason"),
                int(liquidation.get("monthly_pension") or 0),
                int(liquidation.get("lump_sum") or 0),
                e.months,
                orjson.dumps(liquidation).decode(),
                orjson.dumps(d.claim).decode(),
                d.as_of.model_dump_json() if d.as_of is not None else None,
            )
        )
    if rows:
        await conn.execute(_INSERT_LIQUIDATIONS, *map(list, zip(*rows, strict=True)))


_INSERT_DECISIONS = """
INSERT INTO claim_decisions (event_id, claim_id, worker_id, type, decision, flags, controllers, reason,
    producer, decided_at)
SELECT u.event_id, u.claim_id, u.worker_id, u.type, u.decision, u.flags::jsonb, u.controllers::jsonb,
       u.reason,
       u.producer, u.at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::timestamptz[])
     AS u(event_id, claim_id, worker_id, type, decision, flags, controllers, reason, producer, at)
ON CONFLICT (event_id) DO NOTHING
"""


async def apply_decisions(conn: asyncpg.Connection, batch: Batch) -> None:
    """The control commission's decisions and the approvals, each once."""
    if batch.decisions:
        rows = [decision_row(e) for e in batch.decisions]
        await conn.execute(_INSERT_DECISIONS, *map(list, zip(*rows, strict=True)))


_INSERT_WORKERS = """
INSERT INTO workers (worker_id, first_employer_id, first_period, first_declaration_id)
SELECT w.id, e.employer_id, e.period, e.declaration_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
     AS e(employer_id, period, declaration_id, ids, n),
     LATERAL unnest(string_to_array(e.ids, E'\\n')) WITH ORDINALITY AS w(id, k)
ORDER BY e.n, w.k
ON CONFLICT (worker_id) DO NOTHING
"""
_INSERT_WORKERS_ONE_BY_ONE = """
INSERT INTO workers (worker_id, first_employer_id, first_period, first_declaration_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (worker_id) DO NOTHING
"""


async def apply_registrations(conn: asyncpg.Connection, batch: Batch) -> None:
    """The workers first seen, each event's ids as one newline-joined text: a month is
    400,000 ids, and encoding them element by element cost more than inserting them."""
    rows = [
        (e.data.employer_id, e.data.period, e.data.declaration_id, e.data.worker_ids)
        for e in batch.registrations
        if e.data.worker_ids
    ]
    if not rows:
        return
    if any("\n" in w for *_, ids in rows for w in ids):  # cannot be joined: one row per id
        per_id = [(w, *r[:3]) for r in rows for w in r[3]]
        await conn.execute(_INSERT_WORKERS_ONE_BY_ONE, *map(list, zip(*per_id, strict=True)))
        return
    columns = [list(c) for c in zip(*rows, strict=True)]
    columns[3] = ["\n".join(ids) for ids in columns[3]]
    await conn.execute(_INSERT_WORKERS, *columns)


async def apply_declarations(conn: asyncpg.Connection, batch: Batch) -> None:
    rows: list[tuple[Any, ...]] = []
    for e in batch.assessed:
        d = e.data
        rows.append(
            (
                d.declaration_id,
                d.employer_id,
                d.period,
                d.replaces,
                "accepted",
                len(e.lines),
                d.submitted_at,
                d.ruleset,
                d.totals.model_dump_json(),
                e.report,
                e.id,
            )
        )
    for r in batch.rejected:
        x = r.data
        rows.append(
            (
                x.declaration_id,
                x.employer_id,
                x.period,
                x.replaces,
                "rejected",
                0,
                x.submitted_at,
                x.ruleset,
                None,
                r.report,
                r.id,
            )
        )
    if not rows:
        return
    applied = {
        r["declaration_id"] for r in await conn.fetch(_INSERT_OUTCOMES, *map(list, zip(*rows, strict=True)))
    }
    fresh = [e for e in batch.assessed if e.data.declaration_id in applied]
    now = datetime.now(UTC)
    end_to_end = STREAM.end_to_end
    assert end_to_end is not None
    for e in (*fresh, *(r for r in batch.rejected if r.data.declaration_id in applied)):
        end_to_end.observe(max((now - e.data.submitted_at).total_seconds(), 0.0))
    await _apply_accounts_and_careers(conn, latest_per_month(fresh), late_charges(fresh))


async def _apply_accounts_and_careers(
    conn: asyncpg.Connection, events: list[Decoded], worst: dict[tuple[str, str], tuple[int, int]]
) -> None:
    if not events:
        return
    periods = [
        (
            d.employer_id,
            d.period,
            d.declaration_id,
            d.submitted_at,
            d.due_date,
            worst[(d.employer_id, d.period)][0],  # the most months late of the batch
            d.totals.total,
            worst[(d.employer_id, d.period)][1],  # and the highest surcharge
        )
        for d in (e.data for e in events)
    ]
    won = await conn.fetch(_UPSERT_PERIODS, *map(list, zip(*periods, strict=True)))
    winners = {r["declaration_id"] for r in won}
    # Only a month that was already in the account has dues and careers to replace.
    replaced = [(r["employer_id"], r["period"]) for r in won if not r["first"]]
    if replaced:
        employers, period_list = map(list, zip(*replaced, strict=True))
        for table in ("employer_dues", "careers"):
            await conn.execute(_DELETE_MONTHS.format(table=table), employers, period_list)
    dues: list[tuple[str, str, str, int]] = []
    careers: list[tuple[str, str, str, str, int]] = []
    for e in events:
        d = e.data
        if d.declaration_id not in winners:
            continue
        dues.extend((d.employer_id, d.period, fund, amount) for fund, amount in d.totals.by_fund.items())
        period, employer_id, declaration_id = d.period, d.employer_id, d.declaration_id
        careers.extend(
            (line[0], period, employer_id, declaration_id, line[5]) for line in e.lines if line[5] > 0
        )
    if dues:
        await conn.copy_records_to_table(
            "employer_dues", records=dues, columns=["employer_id", "period", "fund", "amount"]
        )
    if careers:
        await conn.copy_records_to_table(
            "careers",
            records=careers,
            columns=["worker_id", "period", "employer_id", "declaration_id", "base"],
        )
