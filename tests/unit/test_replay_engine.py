"""The replay's pure parts: an assessed event split from its lines and compared as bytes,
field paths of the differences, times on the command line."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from contracts.declarations import ITEM_COLUMNS
from services.cli.replay import parse_time
from services.replay.engine import LINES_BYTES, differences, payload_bytes, split_lines

pytestmark = pytest.mark.unit

LINE = [
    "W1",
    "salarie",
    250000,
    250000,
    False,
    250000,
    250000,
    [20000, None, 5000, None, None, None, None, None, None, None, None, None][: len(ITEM_COLUMNS)],
]


def event(lines: list, warnings: list[str] | None = None) -> bytes:
    data = {
        "declaration_id": "D-1",
        "totals": {"total": 1},
        "rates": {"salarie": ["0.08"]},
        "lines": lines,
        "warnings": warnings or [],
    }
    return orjson.dumps({"id": "e", "type": "declaration.assessed", "causation_id": "c", "data": data})


def test_an_assessed_event_is_split_from_its_lines_byte_for_byte() -> None:
    raw = event([LINE, LINE], ['a worker named ],"warnings": is still text'])
    doc = split_lines(raw)
    assert "lines" not in doc["data"] and doc["data"]["warnings"] == [
        'a worker named ],"warnings": is still text'
    ]
    assert doc["data"][LINES_BYTES] == orjson.dumps([LINE, LINE])
    assert payload_bytes(raw) == orjson.dumps(orjson.loads(raw)["data"])
    # Laid out otherwise (warnings first): parsed whole.
    other = orjson.dumps({"id": "e", "data": {"warnings": [], "lines": [LINE]}})
    assert split_lines(other)["data"]["lines"] == [LINE]


def test_differences_name_the_line_and_the_item_column() -> None:
    changed = [*LINE[:7], [20001, *LINE[7][1:]]]
    recorded = {"totals": {"total": 1, "by_fund": {"INPS": 5}}, "lines": [LINE, changed]}
    rederived = {"totals": {"total": 2, "by_fund": {"INPS": 5}}, "lines": [LINE, LINE]}
    assert list(differences(recorded, rederived)) == [
        (f"lines[1].amounts.{ITEM_COLUMNS[0]}", 20001, 20000),
        ("totals.total", 1, 2),
    ]


def test_times_are_iso_8601_and_a_date_is_its_midnight_utc() -> None:
    assert parse_time("2026-11-30") == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_time("2026-11-30T09:00:00Z") == datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert parse_time("2026-11-30T10:00:00+01:00") == datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert parse_time("2026-11-30T09:00:00") == datetime(2026, 11, 30, 9, tzinfo=UTC)
    with pytest.raises(Exception, match="ISO 8601"):
        parse_time("30/11/2026")
