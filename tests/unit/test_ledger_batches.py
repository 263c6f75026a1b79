"""How the ledger orders a batch: duplicates dropped, the newest declaration of a month wins."""

from datetime import UTC, datetime, timedelta

from contracts.declarations import DeclarationAssessed, Totals
from contracts.envelope import derived_id, wrap
from services.ledger.handlers import latest_per_month, split

T0 = datetime(2026, 11, 10, tzinfo=UTC)


def assessed(declaration_id: str, employer: str, period: str, minutes: int):
    data = DeclarationAssessed(
        declaration_id=declaration_id,
        employer_id=employer,
        regime="INPS",
        period=period,
        ruleset="rs",
        submitted_at=T0 + timedelta(minutes=minutes),
        due_date="2026-11-15",
        months_late=0,
        surcharge=0,
        totals=Totals(employer=0, employee=0, total=0, by_branch={}, by_fund={}),
        rates={},
        lines=[],
    )
    return wrap(
        data,
        producer="t",
        correlation_id=declaration_id,
        causation_id=derived_id(declaration_id, "declaration.submitted"),
    )


def test_a_duplicate_event_in_one_batch_is_applied_once() -> None:
    a = assessed("D1", "E1", "2026-10", 0)
    assert [e.data.declaration_id for e in split([a, a]).assessed] == ["D1"]


def test_the_newest_declaration_of_a_month_wins_within_a_batch() -> None:
    original = assessed("D1", "E1", "2026-10", 0)
    corrective = assessed("D2", "E1", "2026-10", 5)
    other_month = assessed("D3", "E1", "2026-09", 1)
    winners = {e.data.declaration_id for e in latest_per_month([corrective, original, other_month])}
    assert winners == {"D2", "D3"}
