"""The compact wire form of an assessment round-trips to the verbose report of RULES.md §5."""

from typing import Any

import pytest

from contracts.declarations import ITEM_COLUMNS, LINE_FIELDS
from services.assessment.encoding import amo_parts
from services.gateway.report import expand_lines
from services.rules import InvalidInput, assess_declaration, assess_declaration_compact, load_ruleset

RULESET = load_ruleset()

INPS_LINE = {
    "worker_id": "W1",
    "category": "salarie",
    "gross": 250000,
    "base": 250000,
    "floor_applied": False,
    "items": [
        {
            "branch": "PF",
            "fund": "INPS",
            "payer": "employer",
            "rate": "0.08",
            "base": 250000,
            "amount": 20000,
        },
        {
            "branch": "ATMP",
            "fund": "INPS",
            "payer": "employer",
            "rate": "0.02",
            "base": 250000,
            "amount": 5000,
        },
        {
            "branch": "PVID",
            "fund": "INPS",
            "payer": "employer",
            "rate": "0.054",
            "base": 250000,
            "amount": 13500,
        },
        {
            "branch": "PVID",
            "fund": "INPS",
            "payer": "employee",
            "rate": "0.036",
            "base": 250000,
            "amount": 9000,
        },
        {
            "branch": "AMO",
            "fund": "CANAM",
            "payer": "employer",
            "rate": "0.035",
            "base": 250000,
            "amount": 8750,
        },
        {
            "branch": "AMO",
            "fund": "CANAM",
            "payer": "employee",
            "rate": "0.0306",
            "base": 250000,
            "amount": 7650,
        },
    ],
}
CMSS_2018_LINE = {
    "worker_id": "F1",
    "category": "fonctionnaire",
    "gross": 250000,
    "base": 250000,
    "floor_applied": False,
    "items": [
        {
            "branch": "RETRAITE",
            "fund": "CMSS",
            "payer": "employer",
            "rate": "0.08",
            "base": 200000,
            "amount": 16000,
        },
        {
            "branch": "RETRAITE",
            "fund": "CMSS",
            "payer": "employee",
            "rate": "0.04",
            "base": 200000,
            "amount": 8000,
        },
        {
            "branch": "AMO",
            "fund": "CANAM",
            "payer": "employer",
            "rate": "0.0448",
            "base": 250000,
            "amount": 11200,
        },
        {
            "branch": "AMO",
            "fund": "CANAM",
            "payer": "employee",
            "rate": "0.0306",
            "base": 250000,
            "amount": 7650,
        },
    ],
}


def declaration(regime: str, period: str, lines: list[tuple[Any, ...]]) -> dict[str, Any]:
    return {
        "declaration_id": "D1",
        "employer": {"id": "E1", "regime": regime, "risk_class": 2 if regime == "INPS" else None},
        "period": period,
        "submitted_at": "2026-11-10T09:00:00Z",
        "lines": lines,
    }


INPS = declaration("INPS", "2026-10", [("W1", "salarie", 30, 250000, 0, 0, 0)])
CMSS_2018 = declaration("CMSS", "2018-06", [("F1", "fonctionnaire", 30, 200000, 50000, 0, 0)])


def compact(doc: dict[str, Any]) -> dict[str, Any]:
    return assess_declaration_compact(doc, RULESET, line_arrays=True)


def verbose(doc: dict[str, Any]) -> dict[str, Any]:
    lines = [dict(zip(LINE_FIELDS, line, strict=True)) for line in doc["lines"]]
    return assess_declaration({**doc, "lines": lines}, RULESET)


@pytest.mark.parametrize(("doc", "expected"), [(INPS, INPS_LINE), (CMSS_2018, CMSS_2018_LINE)])
def test_compact_lines_expand_to_the_verbose_report(doc: dict[str, Any], expected: dict[str, Any]) -> None:
    result = compact(doc)
    assert len(result["rates"][expected["category"]]) == len(ITEM_COLUMNS)
    assert expand_lines(result) == [expected] == verbose(doc)["lines"]
    assert result["totals"] == verbose(doc)["totals"]


def test_the_pension_base_is_the_retraite_base_not_the_gross() -> None:
    line = compact(CMSS_2018)["lines"][0]
    assert line[5] == 200000 and line[6] == 250000


def test_amo_parts_list_each_worker_with_employee_and_employer_shares() -> None:
    lines = compact(INPS)["lines"] + compact(CMSS_2018)["lines"]
    assert amo_parts(lines) == [("W1", 250000, 7650, 8750), ("F1", 250000, 7650, 11200)]


def test_a_line_without_items_has_no_amo_part() -> None:
    idle, worked = ("W0", "salarie", 0, 0, 0, 0, 0), ("W1", "salarie", 30, 1, 0, 0, 0)
    doc = declaration("INPS", "2026-10", [idle, worked])
    lines = compact(doc)["lines"]
    assert lines[0] == ("W0", "salarie", 0, 0, False, 0, 0, [None] * len(ITEM_COLUMNS))
    assert [p[0] for p in amo_parts(lines)] == ["W1"]


def test_a_line_that_is_not_an_array_of_seven_fields_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"lines\[0\] \(line 1\) must be an array of 7 fields"):
        compact(declaration("INPS", "2026-10", [("W1", "salarie", 30, 250000)]))
