"""The replay's careers, re-derived from the career topics with the ledger's rules
(services/replay/careers.py): the newest declaration of a month in force, a corrective that
drops a worker, redeliveries, imports replaced, an imported row left out under an assessed
one, each liquidation's career at its own offsets, the passes over the topics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from contracts.envelope import wrap
from contracts.pensions import CareerImported
from services.replay.careers import (
    ASSESSED,
    IMPORTED,
    CareerLedger,
    Partition,
    Record,
    Wanted,
    careers_as_of,
    compare,
    passes,
    wanted_of,
)

pytestmark = pytest.mark.unit

AMOUNTS = [None] * 12


def assessed(
    declaration_id: str,
    employer: str,
    period: str,
    submitted_at: str,
    lines: list[tuple[str, int]],
    event_id: str | None = None,
) -> bytes:
    """A `declaration.assessed` laid out as the assessment lays it out (lines, then warnings)."""
    data = {
        "declaration_id": declaration_id,
        "employer_id": employer,
        "period": period,
        "submitted_at": submitted_at,
        "ruleset": "r",
        "totals": {"total": 0},
        "lines": [[w, "salarie", b, b, False, b, b, AMOUNTS] for w, b in lines],
        "warnings": [],
    }
    return orjson.dumps(
        {
            "id": event_id or str(uuid.uuid4()),
            "type": "declaration.assessed",
            "causation_id": "c",
            "data": data,
        }
    )


def imported(
    worker: str, imported_at: str, entries: list[tuple[str, str, int]], import_id: str = "I-1"
) -> bytes:
    data = CareerImported.model_validate(
        {"import_id": import_id, "worker_id": worker, "imported_at": imported_at, "entries": entries}
    )
    return wrap(data, producer="gateway", correlation_id=import_id).model_dump_json().encode()


def fed(workers: list[str], *records: tuple[str, bytes]) -> CareerLedger:
    ledger = CareerLedger(workers)
    for topic, value in records:
        key = orjson.loads(value)["data"]["worker_id"].encode() if topic == IMPORTED else b"E"
        ledger.apply(topic, key, value)
    return ledger


def test_the_newest_declaration_of_a_month_is_in_force_whatever_the_order_it_came_in() -> None:
    ledger = fed(
        ["W1"],
        (ASSESSED, assessed("D-2", "E1", "2026-01", "2026-02-10T09:00:00Z", [("W1", 300)])),
        (ASSESSED, assessed("D-1", "E1", "2026-01", "2026-02-01T09:00:00Z", [("W1", 100)])),
        # A tie goes to the later one, as the ledger's `submitted_at <= EXCLUDED.submitted_at`.
        (ASSESSED, assessed("D-3", "E1", "2026-02", "2026-03-01T09:00:00+00:00", [("W1", 100)])),
        (ASSESSED, assessed("D-4", "E1", "2026-02", "2026-03-01T09:00:00Z", [("W1", 400)])),
    )
    career = ledger.career("W1")
    assert career.months == [("2026-01", 300), ("2026-02", 400)]
    assert career.assessed_rows == 2


def test_a_corrective_without_a_worker_takes_the_month_from_them() -> None:
    ledger = fed(
        ["W1", "W2"],
        (ASSESSED, assessed("D-1", "E1", "2026-01", "2026-02-01T00:00:00Z", [("W1", 100), ("W2", 200)])),
        (ASSESSED, assessed("D-2", "E1", "2026-02", "2026-03-01T00:00:00Z", [("W1", 100)])),
        (ASSESSED, assessed("D-3", "E2", "2026-01", "2026-02-01T00:00:00Z", [("W1", 50)])),
        (ASSESSED, assessed("D-1b", "E1", "2026-01", "2026-02-20T00:00:00Z", [("W2", 250)])),
    )
    # W1 keeps E1's 2026-02 and E2's 2026-01, loses E1's 2026-01; W2 has the corrective's base.
    assert ledger.career("W1").months == [("2026-01", 50), ("2026-02", 100)]
    assert ledger.career("W2").months == [("2026-01", 250)]


def test_a_redelivered_declaration_changes_nothing() -> None:
    first = assessed("D-1", "E1", "2026-01", "2026-02-01T00:00:00Z", [("W1", 100)])
    ledger = fed(
        ["W1"],
        (ASSESSED, first),
        (ASSESSED, assessed("D-2", "E1", "2026-01", "2026-02-01T00:00:00Z", [("W1", 200)])),
        (ASSESSED, first),  # would win the tie again if it were applied twice
    )
    assert ledger.career("W1").months == [("2026-01", 200)]


def test_a_line_without_pension_base_is_no_row_and_other_workers_are_not_kept() -> None:
    ledger = fed(
        ["W1"],
        (ASSESSED, assessed("D-1", "E1", "2026-01", "2026-02-01T00:00:00Z", [("W1", 0), ("W9", 500)])),
        (ASSESSED, assessed("D-2", "E2", "2026-01", "2026-02-01T00:00:00Z", [("W9", 500)])),
    )
    career = ledger.career("W1")
    assert career.months == [] and career.assessed_rows == 0
    assert set(ledger.assessed) == set() and set(ledger.in_force) == {"E1", "E2"}


def test_a_worker_id_written_with_escapes_is_found_in_the_lines() -> None:
    worker = 'W"1\\é'
    raw = assessed("D-1", "E1", "2026-01", "2026-02-01T00:00:00Z", [(worker, 100)])
    escaped = raw.replace("é".encode(), b"\\u00e9")  # another valid encoding of the same id
    assert fed([worker], (ASSESSED, raw)).career(worker).months == [("2026-01", 100)]
    assert fed([worker], (ASSESSED, escaped)).career(worker).months == [("2026-01", 100)]


def test_a_later_import_replaces_the_month_and_an_earlier_one_does_not() -> None:
    ledger = fed(
        ["W1"],
        (
            IMPORTED,
            imported("W1", "2026-01-05T00:00:00Z", [("2001-01", "OLD", 100), ("2001-02", "OLD", 100)]),
        ),
        (IMPORTED, imported("W1", "2026-01-07T00:00:00Z", [("2001-01", "OLD", 200)], "I-2")),
        (IMPORTED, imported("W1", "2026-01-06T00:00:00Z", [("2001-01", "OLD", 300)], "I-3")),
        # The same base changes nothing, not even the time stored: so I-5 (after I-1, before
        # I-4) still replaces 2001-02.
        (IMPORTED, imported("W1", "2026-01-09T00:00:00Z", [("2001-02", "OLD", 100)], "I-4")),
        (IMPORTED, imported("W1", "2026-01-08T00:00:00Z", [("2001-02", "OLD", 150)], "I-5")),
        # Within one event the last entry wins; a base of 0 is a row (a month counted, no base).
        (IMPORTED, imported("W1", "2026-01-10T00:00:00Z", [("2001-03", "X", 5), ("2001-03", "X", 0)], "I-6")),
    )
    career = ledger.career("W1")
    assert career.months == [("2001-01", 200), ("2001-02", 150), ("2001-03", 0)]
    assert career.imported_rows == 3


def test_a_redelivered_import_is_dropped() -> None:
    first = imported("W1", "2026-01-05T00:00:00Z", [("2001-01", "OLD", 100)])
    ledger = fed(
        ["W1"],
        (IMPORTED, first),
        (IMPORTED, imported("W1", "2026-01-05T00:00:00Z", [("2001-01", "OLD", 200)], "I-2")),
        (IMPORTED, first),  # same id: applied again it would replace 200 (same time, other base)
    )
    assert ledger.career("W1").months == [("2001-01", 200)]


def test_an_imported_row_is_left_out_where_kalo_assessed_that_employer_month() -> None:
    ledger = fed(
        ["W1"],
        (IMPORTED, imported("W1", "2026-01-05T00:00:00Z", [("2001-01", "OLD", 100), ("2026-01", "E1", 999)])),
        (IMPORTED, imported("W1", "2026-01-06T00:00:00Z", [("2026-01", "OLD/2", 50)], "I-2")),
        (ASSESSED, assessed("D-1", "E1", "2026-01", "2026-02-01T00:00:00Z", [("W1", 300)])),
    )
    career = ledger.career("W1")
    assert career.months == [("2001-01", 100), ("2026-01", 350)]  # E1's declaration + OLD/2's import
    assert (career.assessed_rows, career.imported_rows) == (1, 2)
    assert career.sources == [("2001-01", "2001-01", "imported"), ("2026-01", "2026-01", "both")]


def test_an_unreadable_event_changes_nothing_and_is_counted() -> None:
    ledger = fed(
        ["W1"],
        (ASSESSED, assessed("D-1", "E1", "2026-01", "2026-02-01T00:00:00Z", [("W1", 100)])),
        (ASSESSED, b"not json"),
        (ASSESSED, assessed("D-2", "E1", "2026-01", "2026-03-01T00:00:00Z", [("W1", "x")])),  # type: ignore[list-item]
    )
    assert ledger.career("W1").months == [("2026-01", 100)] and ledger.unreadable == 2


class Topics:
    """Career topics in memory: per (topic, partition) its records, read forward once."""

    def __init__(self, records: Mapping[Partition, list[tuple[bytes | None, bytes]]]) -> None:
        self.records = records
        self.at: dict[Partition, int] = {}

    def problem(self, offsets: Mapping[Partition, int]) -> str | None:
        past = [tp for tp, n in offsets.items() if n > len(self.records.get(tp, []))]
        return f"past the end of {past}" if past else None

    async def upto(self, offsets: Mapping[Partition, int]) -> AsyncIterator[list[Record]]:
        for tp, n in offsets.items():
            start = self.at.get(tp, 0)
            assert n >= start, "a pass never goes back"
            self.at[tp] = n
            yield [(tp[0], k, v) for k, v in self.records.get(tp, [])[start:n]]


def opener(records: Mapping[Partition, list[tuple[bytes | None, bytes]]], opened: list[Topics]) -> Any:
    @asynccontextmanager
    async def open_topics() -> AsyncIterator[Topics]:
        topics = Topics(records)
        opened.append(topics)
        yield topics

    return open_topics


async def test_each_liquidation_gets_the_career_as_of_its_offsets_in_one_pass() -> None:
    records: dict[Partition, list[tuple[bytes | None, bytes]]] = {
        (ASSESSED, 0): [
            (b"E1", assessed("D-1", "E1", "2026-01", "2026-02-01T00:00:00Z", [("W1", 100), ("W2", 100)])),
            (b"E1", assessed("D-2", "E1", "2026-01", "2026-02-09T00:00:00Z", [("W1", 180)])),  # corrective
        ],
        (ASSESSED, 1): [(b"E2", assessed("D-3", "E2", "2026-02", "2026-03-01T00:00:00Z", [("W1", 70)]))],
        (IMPORTED, 0): [(b"W1", imported("W1", "2026-01-05T00:00:00Z", [("2001-01", "OLD", 100)]))],
    }
    early = {(ASSESSED, 0): 1, (IMPORTED, 0): 1}  # before the corrective and E2's declaration
    late = {(ASSESSED, 0): 2, (ASSESSED, 1): 1, (IMPORTED, 0): 1}
    wanted = [Wanted("L-late", "W1", late), Wanted("L-early", "W1", early), Wanted("L-w2", "W2", late)]
    opened: list[Topics] = []
    result = await careers_as_of(wanted, opener(records, opened))
    assert len(opened) == 1 and result.passes == 1 and result.records == 4
    assert result.careers["L-early"].months == [("2001-01", 100), ("2026-01", 100)]
    assert result.careers["L-late"].months == [("2001-01", 100), ("2026-01", 180), ("2026-02", 70)]
    assert result.careers["L-w2"].months == []  # the corrective dropped W2
    # Offsets past a topic's end: that liquidation alone is not re-derivable.
    gone = await careers_as_of([Wanted("L-x", "W1", {(ASSESSED, 0): 9})], opener(records, []))
    assert gone.careers == {} and "L-x" in gone.problems


def test_snapshots_whose_offsets_went_back_get_a_pass_of_their_own() -> None:
    a = Wanted("a", "W", {(ASSESSED, 0): 5, (ASSESSED, 1): 5})
    b = Wanted("b", "W", {(ASSESSED, 0): 9, (ASSESSED, 1): 6})
    rebuilt = Wanted("c", "W", {(ASSESSED, 0): 2, (ASSESSED, 1): 20})  # the ledger rebuilt meanwhile
    assert [[w.event_id for w in p] for p in passes([b, rebuilt, a])] == [["a", "b"], ["c"]]


def test_what_a_liquidation_asks_and_how_its_snapshot_differs() -> None:
    data: dict[str, Any] = {
        "worker_id": "W1",
        "career": [["2001-01", 100], ["2026-01", 300]],
        "career_sources": [["2001-01", "2001-01", "imported"], ["2026-01", "2026-01", "assessed"]],
        "as_of": {
            "read_at": "2026-12-01T00:00:00Z",
            "ledger_offsets": {ASSESSED: {"0": 2, "1": 0}, IMPORTED: {"0": 1}, "kalo.other": {"0": 7}},
            "assessed_rows": 1,
            "imported_rows": 1,
        },
    }
    assert wanted_of({"id": "L", "data": data}) == Wanted(
        "L", "W1", {(ASSESSED, 0): 2, (ASSESSED, 1): 0, (IMPORTED, 0): 1}
    )
    assert "no as_of" in str(wanted_of({"id": "L", "data": {**data, "as_of": None}}))
    ledger = fed(
        ["W1"],
        (IMPORTED, imported("W1", "2026-01-05T00:00:00Z", [("2001-01", "OLD", 100)])),
        (ASSESSED, assessed("D-1", "E1", "2026-01", "2026-02-01T00:00:00Z", [("W1", 300)])),
    )
    assert compare(data, ledger.career("W1")) == []
    forged = {
        **data,
        "career": [["2001-01", 100], ["2026-01", 301]],
        "as_of": {**data["as_of"], "assessed_rows": 2},
    }
    assert compare(forged, ledger.career("W1")) == [
        ("career[1]", ["2026-01", 301], ["2026-01", 300]),
        ("as_of.assessed_rows", 2, 1),
    ]
    shorter = {**data, "career": [["2026-01", 300]], "career_sources": [["2026-01", "2026-01", "assessed"]]}
    assert compare(shorter, ledger.career("W1")) == [
        ("career[0]", ["2026-01", 300], ["2001-01", 100]),
        ("career.length", 1, 2),
        ("career_sources", shorter["career_sources"], data["career_sources"]),
    ]
