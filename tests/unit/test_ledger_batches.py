"""How the ledger decodes and orders a batch: lines checked, the report encoded once,
duplicates dropped, the newest declaration of a month wins."""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from contracts.declarations import DeclarationAssessed, DeclarationRejected, Totals
from contracts.envelope import derived_id, wrap
from services.ledger.handlers import REPORT_EXCLUDES, Decoded, decode, latest_per_month, split

T0 = datetime(2026, 11, 10, tzinfo=UTC)
LINE = (
    "W1",
    "salarie",
    250000,
    250000,
    False,
    250000,
    250000,
    [20000, 5000, 13500, 9000, None, None, 8750, 7650],
)


def assessed_envelope(declaration_id: str, employer: str, period: str, minutes: int, lines: Any = ()):
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
        totals=Totals(employer=47250, employee=16650, total=63900, by_branch={}, by_fund={}),
        rates={"salarie": ["0.08", "0.02", "0.054", "0.036", None, None, "0.035", "0.0306"]},
        lines=list(lines),
    )
    return wrap(
        data,
        producer="t",
        correlation_id=declaration_id,
        causation_id=derived_id(declaration_id, "declaration.submitted"),
    )


def record(value: bytes) -> ConsumerRecord:
    return ConsumerRecord("t", 0, 7, 0, 0, b"k", value, None, 0, len(value), [])


def assessed(declaration_id: str, employer: str, period: str, minutes: int) -> Decoded:
    return decode(
        record(assessed_envelope(declaration_id, employer, period, minutes).model_dump_json().encode())
    )


def test_an_assessed_event_decodes_with_its_lines_and_the_report_the_gateway_reads() -> None:
    envelope = assessed_envelope("D1", "E1", "2026-10", 0, [LINE])
    event = decode(record(envelope.model_dump_json().encode()))
    assert event.id == envelope.id and event.data.totals.total == 63900
    assert event.lines == [list(LINE)]
    # The same report the contract's model gives, minus what the row has in its own columns.
    assert orjson.loads(event.report) == orjson.loads(
        envelope.data.model_dump_json(exclude=set(REPORT_EXCLUDES))
    )


def test_a_rejected_event_keeps_its_errors_in_the_report() -> None:
    data = DeclarationRejected(
        declaration_id="D2",
        employer_id="E1",
        period="2026-10",
        ruleset="rs",
        submitted_at=T0,
        errors=[{"line": 1, "worker_id": "W1", "code": "NEGATIVE_AMOUNT", "message": "bonuses is negative"}],
    )
    event = decode(record(wrap(data, producer="t", correlation_id="D2").model_dump_json().encode()))
    assert orjson.loads(event.report) == {"ruleset": "rs", "errors": [data.errors[0].model_dump()]}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (["W1", "salarie", 1, 1, False, 1, 1], r"data.lines\[0\] must be an array of 8 fields"),
        (["W1", "salarie", 1, "1", False, 1, 1, [None] * 8], r"data.lines\[0\] is not \[worker_id"),
        (["W1", "salarie", 1, 1, False, 1, 1, [None] * 7], r"data.lines\[0\] is not \[worker_id"),
        (["W1", "salarie", 1, 1, False, 1, 1, [1.5, *[None] * 7]], r"data.lines\[0\] is not \[worker_id"),
        (["W1", "salarie", 1, 1, 0, 1, 1, [None] * 8], r"data.lines\[0\] is not \[worker_id"),
    ],
)
def test_a_malformed_line_is_refused_with_its_place(line: list[Any], problem: str) -> None:
    doc = orjson.loads(assessed_envelope("D1", "E1", "2026-10", 0).model_dump_json())
    doc["data"]["lines"] = [line]
    with pytest.raises(ValueError, match=problem):
        decode(record(orjson.dumps(doc)))


def test_an_event_without_lines_is_refused_by_the_contract() -> None:
    doc = orjson.loads(assessed_envelope("D1", "E1", "2026-10", 0).model_dump_json())
    del doc["data"]["lines"]
    with pytest.raises(ValueError, match="lines"):
        decode(record(orjson.dumps(doc)))


def test_a_duplicate_event_in_one_batch_is_applied_once() -> None:
    a = assessed("D1", "E1", "2026-10", 0)
    assert [e.data.declaration_id for e in split([a, a]).assessed] == ["D1"]


def test_the_newest_declaration_of_a_month_wins_within_a_batch() -> None:
    original = assessed("D1", "E1", "2026-10", 0)
    corrective = assessed("D2", "E1", "2026-10", 5)
    other_month = assessed("D3", "E1", "2026-09", 1)
    winners = {e.data.declaration_id for e in latest_per_month([corrective, original, other_month])}
    assert winners == {"D2", "D3"}
