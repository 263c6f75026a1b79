"""The compact wire form of an assessment round-trips to the verbose report of RULES.md §5."""

from contracts.declarations import ITEM_COLUMNS
from services.assessment.encoding import amo_parts, compact_lines
from services.gateway.report import expand_lines

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


def test_compact_lines_round_trip_to_the_verbose_report() -> None:
    lines, rates = compact_lines([INPS_LINE, CMSS_2018_LINE])
    assert len(rates["salarie"]) == len(ITEM_COLUMNS)
    assert expand_lines({"lines": lines, "rates": rates}) == [INPS_LINE, CMSS_2018_LINE]


def test_the_pension_base_is_the_retraite_base_not_the_gross() -> None:
    lines, _ = compact_lines([CMSS_2018_LINE])
    assert lines[0][5] == 200000 and lines[0][6] == 250000


def test_amo_parts_list_each_worker_with_employee_and_employer_shares() -> None:
    lines, _ = compact_lines([INPS_LINE, CMSS_2018_LINE])
    assert amo_parts(lines) == [("W1", 250000, 7650, 8750), ("F1", 250000, 7650, 11200)]


def test_a_line_without_items_has_no_amo_part() -> None:
    empty = {**INPS_LINE, "worker_id": "W0", "gross": 0, "base": 0, "items": []}
    lines, _ = compact_lines([empty])
    assert lines[0][7] == [None] * len(ITEM_COLUMNS)
    assert amo_parts(lines) == []
