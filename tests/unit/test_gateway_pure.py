"""Pure parts of the gateway: CSV parsing, validation problems, correction differences,
the account document, the rate limiter."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from services.common.limits import RateLimiter
from services.gateway.csv_upload import parse_lines
from services.gateway.errors import Problem
from services.gateway.handlers import account_document
from services.gateway.report import difference
from services.gateway.schemas import DeclarationIn
from services.gateway.validation import problem_from_validation


def test_csv_comma_semicolon_bom_and_optional_columns() -> None:
    lines, rows = parse_lines(b"worker_id,category,days_worked,base_salary\nW1,salarie,30,100\n\n", 10)
    assert lines == [
        {
            "worker_id": "W1",
            "category": "salarie",
            "days_worked": 30,
            "base_salary": 100,
            "bonuses": 0,
            "benefits_in_kind": 0,
            "expense_reimbursements": 0,
        }
    ]
    assert rows == [2]
    semi = '\ufeffBase_Salary;Worker_ID;category;days_worked;bonuses\n7;"W;2";salarie;-1;\n'.encode()
    lines, _ = parse_lines(semi, 10)
    assert lines[0]["worker_id"] == "W;2" and lines[0]["days_worked"] == -1 and lines[0]["bonuses"] == 0


def test_csv_names_every_bad_cell() -> None:
    data = b"worker_id,category,days_worked,base_salary\nW1,salarie,x,1.5\n\nW2,salarie,30\nW3,salarie,30,9\n"
    with pytest.raises(Problem) as err:
        parse_lines(data, 10)
    assert err.value.status == 422
    found = [(e["line"], e["row"], e["column"]) for e in err.value.extra["errors"]]
    assert found == [(1, 2, "days_worked"), (1, 2, "base_salary"), (2, 4, None)]


def test_csv_header_and_encoding_errors() -> None:
    with pytest.raises(Problem) as err:
        parse_lines(b"worker,category\n", 10)
    assert {e["column"] for e in err.value.extra["errors"]} == {
        "worker",
        "worker_id",
        "days_worked",
        "base_salary",
    }
    with pytest.raises(Problem) as err:
        parse_lines(b"\n", 10)
    assert err.value.status == 422
    with pytest.raises(Problem) as err:
        parse_lines(b"worker_id,category,days_worked,base_salary\n\xff,salarie,1,1\n", 10)
    assert err.value.status == 400 and err.value.extra["errors"][0]["row"] == 2


def test_csv_line_limit_is_413() -> None:
    data = b"worker_id,category,days_worked,base_salary\n" + b"W,salarie,30,1\n" * 4
    assert len(parse_lines(data, 4)[0]) == 4
    with pytest.raises(Problem) as err:
        parse_lines(data, 3)
    assert err.value.status == 413 and "3 lines" in err.value.detail


def test_validation_problem_names_fields_lines_and_csv_cells() -> None:
    doc = {
        "employer": {"id": "E", "regime": "INPS"},
        "period": "2026-10",
        "lines": [
            {"worker_id": "W1", "category": "salarie", "days_worked": 30, "base_salary": 1},
            {"worker_id": "", "category": "salarie", "days_worked": "30", "base_salary": 1},
        ],
    }
    with pytest.raises(ValidationError) as exc:
        DeclarationIn.model_validate(doc)
    problem = problem_from_validation(exc.value, rows=[2, 5])
    assert problem.status == 422
    assert {(e["field"], e["line"], e["row"], e["column"]) for e in problem.extra["errors"]} == {
        ("lines[1].worker_id", 2, 5, "worker_id"),
        ("lines[1].days_worked", 2, 5, "days_worked"),
    }
    with pytest.raises(ValidationError) as exc:
        DeclarationIn.model_validate_json(b"{")
    assert problem_from_validation(exc.value).status == 400


def test_too_many_json_lines_is_413() -> None:
    line = {"worker_id": "W", "category": "salarie", "days_worked": 30, "base_salary": 1}
    doc = {"employer": {"id": "E", "regime": "INPS"}, "period": "2026-10", "lines": [line] * 100_001}
    with pytest.raises(ValidationError) as exc:
        DeclarationIn.model_validate(doc)
    assert problem_from_validation(exc.value).status == 413


TOTALS_OLD = {
    "employer": 100,
    "employee": 50,
    "total": 150,
    "by_branch": {"PF": 80, "AMO": 70},
    "by_fund": {"INPS": 80, "CANAM": 70},
}
TOTALS_NEW = {
    "employer": 130,
    "employee": 40,
    "total": 170,
    "by_branch": {"PF": 100, "AMO": 60, "ATMP": 10},
    "by_fund": {"INPS": 110, "CANAM": 60},
}


def test_difference_of_a_correction() -> None:
    row = {
        "replaces": "D-1",
        "status": "accepted",
        "totals": TOTALS_NEW,
        "replaced_status": "accepted",
        "replaced_totals": TOTALS_OLD,
    }
    diff = difference(row)
    assert diff == {
        "applied": True,
        "replaces": "D-1",
        "by_branch": {"AMO": -10, "ATMP": 10, "PF": 20},
        "by_fund": {"CANAM": -10, "INPS": 30},
        "employer": 30,
        "employee": -10,
        "total": 20,
    }
    # A rejected original counted nothing; a rejected correction changes nothing; pending: None.
    assert difference({**row, "replaced_status": "rejected", "replaced_totals": None})["total"] == 170
    assert difference({**row, "status": "rejected", "totals": None})["applied"] is False
    assert difference({**row, "status": "received"}) is None


def test_account_document_shows_dues_surcharges_and_corrections() -> None:
    received = datetime(2026, 11, 10, tzinfo=UTC)
    periods = [
        {
            "period": "2026-09",
            "declaration_id": "D-2",
            "due_date": date(2026, 10, 15),
            "months_late": 1,
            "total": 170,
            "surcharge": 17,
        }
    ]
    dues = [
        {"period": "2026-09", "fund": "INPS", "amount": 110},
        {"period": "2026-09", "fund": "CANAM", "amount": 60},
    ]
    history = [
        {
            "declaration_id": "D-1",
            "period": "2026-09",
            "replaces": None,
            "status": "accepted",
            "received_at": received,
            "total": 150,
        },
        {
            "declaration_id": "D-2",
            "period": "2026-09",
            "replaces": "D-1",
            "status": "accepted",
            "received_at": received,
            "total": 170,
        },
        {
            "declaration_id": "D-3",
            "period": "2026-10",
            "replaces": None,
            "status": "received",
            "received_at": received,
            "total": None,
        },
    ]
    employer = {
        "id": "E",
        "name": None,
        "regime": "INPS",
        "risk_class": 2,
        "filing": "monthly",
        "active": True,
    }
    doc = account_document(employer, periods, dues, history)
    (month,) = doc["periods"]
    assert month["due_date"] == "2026-10-15"
    assert month["due"] == 187 and month["by_fund"] == {"INPS": 110, "CANAM": 60}
    assert month["original_total"] == 150 and month["correction_effect"] == 20
    assert [c["declaration_id"] for c in month["corrections"]] == ["D-2"]
    assert doc["totals"] == {
        "contributions": 170,
        "surcharges": 17,
        "due": 187,
        "by_fund": {"INPS": 110, "CANAM": 60},
    }
    assert doc["periods_awaiting_assessment"] == ["2026-10"]


def test_rate_limiter_burst_then_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("services.common.limits.time.monotonic", lambda: now[0])
    limiter = RateLimiter(per_second=2, burst=3)
    for _ in range(3):
        limiter.check("k")
    with pytest.raises(Problem) as err:
        limiter.check("k")
    assert err.value.status == 429 and err.value.extra["retry_after"] == 0.5
    limiter.check("other")  # each key has its own bucket
    now[0] += 0.5
    limiter.check("k")
