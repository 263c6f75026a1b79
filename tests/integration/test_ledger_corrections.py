"""A corrective and the declaration it corrects in one batch of the ledger: the month's
account keeps the original's surcharge (RULES.md: a corrective does not wipe a late
declaration's surcharge), as when they arrive in two batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.declarations import DeclarationAssessed, Totals
from contracts.envelope import derived_id, wrap
from services.common.db import connect
from services.ledger.handlers import Decoded, decode
from services.ledger.projections import apply_events
from tests.support.sandbox import sandbox
from tests.unit.test_ledger_batches import LINE, record

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 20, tzinfo=UTC)


def assessed(declaration_id: str, minutes: int, months_late: int, surcharge: int, base: int) -> Decoded:
    line = (LINE[0], LINE[1], base, base, False, base, base, LINE[7])
    data = DeclarationAssessed(
        declaration_id=declaration_id,
        employer_id="E-late",
        regime="INPS",
        period="2026-10",
        ruleset="rs",
        submitted_at=T0 + timedelta(minutes=minutes),
        due_date="2026-11-15",
        months_late=months_late,
        surcharge=surcharge,
        replaces=None if declaration_id == "D-late" else "D-late",
        totals=Totals(employer=47250, employee=16650, total=63900, by_branch={}, by_fund={"INPS": 63900}),
        rates={"salarie": ["0.08", "0.02", "0.054", "0.036", None, None, "0.035", "0.0306"]},
        lines=[list(line)],
    )
    envelope = wrap(
        data,
        producer="t",
        correlation_id=declaration_id,
        causation_id=derived_id(declaration_id, "declaration.submitted"),
    )
    return decode(record(envelope.model_dump_json().encode()))


@pytest.mark.parametrize("together", [True, False], ids=["one batch", "two batches"])
async def test_a_corrective_keeps_the_originals_surcharge(tmp_path: Path, together: bool) -> None:
    original = assessed("D-late", 0, months_late=2, surcharge=6_390, base=250_000)
    corrective = assessed("D-late-fix", 60, months_late=0, surcharge=0, base=260_000)
    async with sandbox(tmp_path) as sb:
        conn = await connect("ledger", sb.settings)
        try:
            batches = [[original, corrective]] if together else [[original], [corrective]]
            for batch in batches:
                async with conn.transaction():
                    await apply_events(conn, batch)
            row = await conn.fetchrow(
                "SELECT declaration_id, months_late, surcharge FROM employer_periods"
                " WHERE employer_id = 'E-late' AND period = '2026-10'"
            )
            careers = await conn.fetch(
                "SELECT declaration_id, base FROM careers WHERE employer_id = 'E-late'"
            )
        finally:
            await conn.close()
    assert dict(row) == {"declaration_id": "D-late-fix", "months_late": 2, "surcharge": 6_390}
    assert [tuple(r) for r in careers] == [("D-late-fix", 260_000)]
