"""The gateway's hot-path encoding of `declaration.submitted` is the contract's JSON."""

from datetime import UTC, datetime

import orjson
import pytest

from contracts.declarations import DeclarationSubmitted
from contracts.envelope import Envelope
from services.gateway.handlers import submitted_message
from services.gateway.schemas import DeclarationIn
from tests.support.submitted import submitted_event

DOC = {
    "employer": {"id": "82315204/1", "regime": "INPS", "risk_class": 2, "filing": "monthly"},
    "period": "2026-10",
    "lines": [
        {"worker_id": "W1", "category": "salarie", "days_worked": 30, "base_salary": 250_000},
        {
            "worker_id": "Wé2",
            "category": "salarie",
            "days_worked": 12,
            "base_salary": 90_000,
            "bonuses": 5_000,
            "benefits_in_kind": 1_000,
            "expense_reimbursements": 2_500,
        },
    ],
}


@pytest.mark.parametrize("replaces", [None, "D-20261101-abc"])
@pytest.mark.parametrize(
    "at", [datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)]
)
def test_fast_encoding_equals_the_contract(replaces: str | None, at: datetime) -> None:
    decl = DeclarationIn.model_validate({**DOC, "replaces": replaces})
    event_id, raw = submitted_message("D-1", decl, "ab" * 32, at)
    reference = submitted_event(
        declaration_id="D-1",
        employer=decl.employer.model_dump(),
        period=decl.period,
        lines=[ln.model_dump() for ln in decl.lines],
        submitted_at=at,
        payload_sha256="ab" * 32,
        replaces=replaces,
    )
    assert event_id == reference.id
    assert orjson.loads(raw) == orjson.loads(reference.model_dump_json())
    assert Envelope[DeclarationSubmitted].model_validate_json(raw) == reference
