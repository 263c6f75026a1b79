"""The liquidation's read of careers on the real database (services.liquidation.adapters.PgCareers):
an imported row's employer is read where it can matter — from the batch's first assessed month
on — and a declaration of the same employer and month still wins over its imported row, for
every worker read together in one batch."""

from __future__ import annotations

import asyncpg

from services.common.db import connect_pool
from services.liquidation.adapters import PgCareers
from services.liquidation.handlers import merge_career
from tests.integration.conftest import Stack


async def test_imported_rows_read_with_their_employer_only_where_kalo_assessed_the_month(
    stack: Stack, db: asyncpg.Connection
) -> None:
    early, late = "W-SNAP-EARLY", "W-SNAP-LATE"
    await db.executemany(
        "INSERT INTO ledger.career_imports (worker_id, period, employer_id, base, import_id, imported_at)"
        " VALUES ($1, $2, $3, $4, 'I-SNAP', now())",
        [
            (late, "2001-01", "OLD/1", 100),
            (late, "2001-02", "OLD/1", 100),
            (late, "2026-07", "E-LATE", 999),  # Kalo assessed E-LATE's 2026-07: its row wins
            (early, "2026-05", "E-EARLY", 555),  # the batch's first assessed month: same rule
            (early, "2026-05", "OLD/2", 50),  # another employer that month: counted
        ],
    )
    await db.executemany(
        "INSERT INTO ledger.careers (worker_id, period, employer_id, declaration_id, base)"
        " VALUES ($1, $2, $3, $4, $5)",
        [
            (late, "2026-07", "E-LATE", "D-SNAP-1", 200),
            (early, "2026-05", "E-EARLY", "D-SNAP-2", 300),
            (early, "2026-06", "E-EARLY", "D-SNAP-3", 300),
        ],
    )
    pool = await connect_pool(service="liquidation", settings=stack.settings)
    try:
        snapshot = await PgCareers(pool, stack.settings).read([early, late])
    finally:
        await pool.close()
    imported = snapshot.careers[late].imported
    assert sorted(zip(imported.periods, imported.employers, strict=True)) == [
        ("2001-01", None),  # before any month assessed in the batch: the employer cannot matter
        ("2001-02", None),
        ("2026-07", "E-LATE"),
    ]
    assert merge_career(snapshot.careers[late]).months == [
        ("2001-01", 100),
        ("2001-02", 100),
        ("2026-07", 200),
    ]
    early_career = merge_career(snapshot.careers[early])
    assert early_career.months == [("2026-05", 350), ("2026-06", 300)]
    assert (early_career.assessed_rows, early_career.imported_rows) == (2, 1)
