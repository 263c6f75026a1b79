"""`kalo rules` (RULES.md §5): one document or --jsonl, exit 0 for every computed result,
exit 2 with a message on stderr for input that is not JSON or misses a required field."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.rules import print_params_table
from services.rules import load_ruleset, params_history

RUNNER = CliRunner()
RULESET_ID = load_ruleset().id
REPO = Path(__file__).resolve().parents[2]
KALO = (sys.executable, "-c", "from services.entry import main; main()")  # `kalo`, from this tree

# RULES.md §5, as printed there.
DECLARATION = {
    "declaration_id": "D-1",
    "employer": {"id": "82315204/1", "regime": "INPS", "risk_class": 2, "filing": "monthly"},
    "period": "2026-10",
    "submitted_at": "2026-11-10T09:00:00Z",
    "lines": [
        {
            "worker_id": "W1",
            "category": "salarie",
            "days_worked": 30,
            "base_salary": 250000,
            "bonuses": 0,
            "benefits_in_kind": 0,
            "expense_reimbursements": 0,
        }
    ],
}


def _item(branch: str, fund: str, payer: str, rate: str, amount: int) -> dict[str, Any]:
    return {"branch": branch, "fund": fund, "payer": payer, "rate": rate, "base": 250000, "amount": amount}


ASSESSMENT = {
    "declaration_id": "D-1",
    "employer_id": "82315204/1",
    "period": "2026-10",
    "status": "accepted",
    "ruleset": RULESET_ID,
    "due_date": "2026-11-15",
    "months_late": 0,
    "lines": [
        {
            "worker_id": "W1",
            "category": "salarie",
            "gross": 250000,
            "base": 250000,
            "floor_applied": False,
            "items": [
                _item("PF", "INPS", "employer", "0.08", 20000),
                _item("ATMP", "INPS", "employer", "0.02", 5000),
                _item("PVID", "INPS", "employer", "0.054", 13500),
                _item("PVID", "INPS", "employee", "0.036", 9000),
                _item("AMO", "CANAM", "employer", "0.035", 8750),
                _item("AMO", "CANAM", "employee", "0.0306", 7650),
            ],
        }
    ],
    "totals": {
        "employer": 47250,
        "employee": 16650,
        "total": 63900,
        "by_branch": {"PF": 20000, "ATMP": 5000, "PVID": 22500, "AMO": 16400},
        "by_fund": {"INPS": 47500, "CANAM": 16400},
    },
    "surcharge": 0,
    "errors": [],
}

CLAIM = {
    "claim_id": "C-1",
    "worker_id": "W1",
    "regime": "INPS",
    "category": "salarie",
    "grade": None,
    "birth_date": "1966-03-10",
    "effective_date": "2026-12-01",
    # 300 months at 200,000: RULES.md §3.3 example 7, the liquidation printed in §5.
    "career": [
        {"period": f"{2001 + (11 + k) // 12}-{(11 + k) % 12 + 1:02d}", "base": 200000} for k in range(300)
    ],
}
LIQUIDATION = {
    "claim_id": "C-1",
    "worker_id": "W1",
    "regime": "INPS",
    "ruleset": RULESET_ID,
    "decision": "pension",
    "reason": None,
    "age": 60,
    "insured_months": 300,
    "reference_salary": 200000,
    "basis": 200000,
    "accrual_rate": "0.50",
    "early_years": 0,
    "reduction_rate": "0",
    "monthly_pension": 100000,
    "amo_deduction": 750,
    "net_monthly_pension": 99250,
    "lump_sum": 0,
}


def _rules(*args: str, stdin: str | bytes | None = None) -> Any:
    return RUNNER.invoke(app, ["rules", *args], input=stdin)


def _rejected(**changes: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(DECLARATION))
    doc.update(changes)
    return doc


def test_assess_prints_the_assessment_of_rules_md_section_5(tmp_path: Path) -> None:
    path = tmp_path / "declaration.json"
    path.write_text(json.dumps(DECLARATION))
    result = _rules("assess", str(path))
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == ASSESSMENT
    assert list(out) == list(ASSESSMENT)  # the keys in the order of §5


def test_assess_reads_standard_input() -> None:
    result = _rules("assess", "-", stdin=json.dumps(DECLARATION))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == ASSESSMENT


def test_a_rejected_declaration_exits_0_with_its_errors() -> None:
    doc = _rejected(period="2026-13")
    doc["lines"][0]["bonuses"] = -5
    result = _rules("assess", stdin=json.dumps(doc))
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["status"] == "rejected" and out["lines"] == [] and out["totals"]["total"] == 0
    assert {(e["line"], e["worker_id"], e["code"]) for e in out["errors"]} == {
        (None, None, "INVALID_PERIOD"),
        (1, "W1", "NEGATIVE_AMOUNT"),
    }


def test_input_that_is_not_json_exits_2_with_a_message_on_stderr() -> None:
    result = _rules("assess", stdin="{not json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "not JSON" in result.stderr


def test_a_missing_required_field_exits_2_naming_it() -> None:
    doc = _rejected()
    del doc["period"]
    result = _rules("assess", stdin=json.dumps(doc))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "period" in result.stderr


def test_a_missing_line_field_exits_2_naming_the_line_and_field() -> None:
    doc = _rejected()
    del doc["lines"][0]["days_worked"]
    result = _rules("assess", stdin=json.dumps(doc))
    assert result.exit_code == 2
    assert "lines[0].days_worked" in result.stderr and "line 1" in result.stderr


def test_a_missing_file_exits_2() -> None:
    result = _rules("assess", "/nonexistent/declaration.json")
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_jsonl_prints_one_result_per_line_in_order() -> None:
    docs = [_rejected(declaration_id=f"D-{k}") for k in range(3)]
    docs[1]["employer"]["risk_class"] = 9  # rejected, still one line out
    stdin = "\n".join(json.dumps(d) for d in docs) + "\n\n"  # a trailing blank line is no document
    result = _rules("assess", "--jsonl", stdin=stdin)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    outs = [json.loads(line) for line in lines]
    assert [o["declaration_id"] for o in outs] == ["D-0", "D-1", "D-2"]
    assert [o["status"] for o in outs] == ["accepted", "rejected", "accepted"]
    assert outs[0] == {**ASSESSMENT, "declaration_id": "D-0"}


def test_jsonl_reports_an_unreadable_line_in_place_and_exits_2_at_the_end() -> None:
    stdin = json.dumps(DECLARATION) + "\n[1, 2\n" + json.dumps(_rejected(declaration_id="D-3")) + "\n"
    result = _rules("assess", "--jsonl", stdin=stdin)
    assert result.exit_code == 2
    outs = [json.loads(line) for line in result.stdout.splitlines()]
    assert outs[0]["declaration_id"] == "D-1"
    assert outs[1]["input_line"] == 2 and "not JSON" in outs[1]["error"]
    assert outs[2]["declaration_id"] == "D-3"
    assert "line 2" in result.stderr


def test_liquidate_prints_the_liquidation_of_rules_md_section_5() -> None:
    result = _rules("liquidate", stdin=json.dumps(CLAIM))
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == LIQUIDATION
    assert list(out) == list(LIQUIDATION)


def test_liquidate_jsonl_and_a_missing_field() -> None:
    claim = {k: v for k, v in CLAIM.items() if k != "birth_date"}
    result = _rules("liquidate", "--jsonl", stdin=json.dumps(CLAIM) + "\n" + json.dumps(claim) + "\n")
    assert result.exit_code == 2
    outs = [json.loads(line) for line in result.stdout.splitlines()]
    assert outs[0] == LIQUIDATION
    assert outs[1]["input_line"] == 2 and "birth_date" in outs[1]["error"]
    assert "birth_date" in result.stderr


def test_params_unconfirmed_lists_only_what_needs_a_legal_check() -> None:
    result = _rules("params", "--at", "2026-10-01", "--unconfirmed", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ruleset"] == RULESET_ID and doc["at"] == "2026-10-01"
    rows = {r["name"]: r for r in doc["parameters"]}
    assert all(r["status"] == "unconfirmed" and r["reference"] for r in rows.values())
    # RULES.md v2 confirmed amo.in_force, cmss.amo.employer_rate,
    # cmss.retraite.parlementaire.employer_rate and the allowance's 72 months: four fewer.
    assert set(rows) == {
        "cmss.pension.accrual_per_year",
        "cmss.pension.age_by_grade",
        "cmss.pension.max_accrual",
        "cmss.pension.minimum_months",
        "cmss.retraite.parlementaire.employee_rate",
        "control.escalation_days",  # Loi 98-012 art. 21, one source (issue 12)
        "surcharge.first_month_rate",
        "surcharge.further_month_rate",
    }
    assert rows["surcharge.first_month_rate"]["value"] == "0.05"


def test_params_at_a_date_lists_the_values_in_force_then() -> None:
    result = _rules("params", "--at", "2014-06-01", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)["parameters"]}
    assert rows["smig"] == {
        "name": "smig",
        "value": 28460,
        "unit": "currency-XOF",
        "status": "confirmed",
        "since": "2004-07-05",
        "reference": rows["smig"]["reference"],
    }
    assert rows["cmss.retraite.fonctionnaire.employer_rate"]["value"] == "0.08"
    assert "cmss.pension.minimum_months" not in rows  # Loi 2018-053 is not in force yet


def test_params_prints_a_table_and_refuses_a_bad_date() -> None:
    table = _rules("params", "--at", "2026-10-01")
    assert table.exit_code == 0
    assert "inps.pf.employer_rate" in table.stdout
    bad = _rules("params", "--at", "2026-13-01")
    assert bad.exit_code == 2


# The four values RULES.md v2 confirmed (with the SMIG of 2004, the row that replaced
# version 1's unconfirmed 2011 one): (name, since) of each.
CONFIRMED_IN_V2 = {
    ("smig", "2004-07-05"),
    ("amo.in_force", "2010-11-01"),
    ("cmss.amo.employer_rate", "2010-11-01"),
    ("cmss.retraite.parlementaire.employer_rate", "1950-01-01"),
    ("cmss.retraite.parlementaire.employer_rate", "2019-01-01"),
}


def _unconfirmed_rows() -> list[Any]:
    return [r for r in params_history(load_ruleset()) if r.status == "unconfirmed"]


def _row_line(lines: list[str], name: str, since: str) -> str:
    found = [line for line in lines if line.split("  ")[0].strip() == name and f"  {since}  " in line]
    assert len(found) == 1, (name, since, lines)
    return found[0]


def test_params_unconfirmed_piped_prints_every_name_value_and_reference_in_full() -> None:
    """`kalo rules params --unconfirmed --history | cat`, even with COLUMNS=40: one row per line,
    nothing cut to the width (no ellipsis), whole references."""
    result = subprocess.run(
        [*KALO, "rules", "params", "--unconfirmed", "--history"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "40", "TERM": "xterm"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = result.stdout
    assert "…" not in out and "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0].startswith(f"ruleset {RULESET_ID} — all dated values")
    assert lines[1].split() == ["name", "value", "unit", "status", "since", "reference"]
    rows = _unconfirmed_rows()
    assert len(lines) == 2 + len(rows)
    for r in rows:
        line = _row_line(lines, r.name, r.since.isoformat())
        assert "unconfirmed" in line and r.unit in line
        assert line.endswith(r.reference), line  # the whole reference, on the row's line
    line = _row_line(lines, "cmss.retraite.parlementaire.employee_rate", "1950-01-01")
    assert "  0.04  " in line
    assert "  A: 62, B2: 59, B1: 58, C: 55  " in _row_line(lines, "cmss.pension.age_by_grade", "2019-01-01")
    # What RULES.md v2 confirmed is no longer listed.
    listed = {(r.name, r.since.isoformat()) for r in rows}
    assert not listed & CONFIRMED_IN_V2
    assert not any(line.startswith(("amo.in_force", "cmss.amo.employer_rate ")) for line in lines)
    assert not any(line.startswith("cmss.retraite.parlementaire.employer_rate") for line in lines)
    assert not any(line.startswith("inps.pension.lump_sum_minimum_") for line in lines)
    assert ("smig", "1950-01-01") in listed  # no SMIG known before 2004: still to be checked


def test_params_unconfirmed_through_the_cli_runner_is_not_cut_either() -> None:
    result = RUNNER.invoke(
        app, ["rules", "params", "--at", "2026-10-01", "--unconfirmed"], env={"COLUMNS": "30"}
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout
    line = _row_line(lines, "cmss.retraite.parlementaire.employee_rate", "1950-01-01")
    assert line.endswith("Code des pensions; single secondary source for members of parliament")
    names = {line.split()[0] for line in lines[2:]}
    assert names == {
        "cmss.pension.accrual_per_year",
        "cmss.pension.age_by_grade",
        "cmss.pension.max_accrual",
        "cmss.pension.minimum_months",
        "cmss.retraite.parlementaire.employee_rate",
        "control.escalation_days",  # Loi 98-012 art. 21, one source (issue 12)
        "surcharge.first_month_rate",
        "surcharge.further_month_rate",
    }


def test_params_table_on_a_terminal_never_truncates() -> None:
    """A narrow terminal gets the plain rows; a wide one the rich table, whose references
    wrap but whose names, values, units, statuses and dates are never cut."""
    rows = _unconfirmed_rows()
    for width, boxed in ((60, False), (120, False), (250, True)):
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=True, width=width, color_system=None)
        print_params_table(console, "title", rows)
        out = buffer.getvalue()
        assert "…" not in out, width
        assert ("┃" in out) is boxed, width
        for r in rows:
            assert r.name in out and r.unit in out and r.since.isoformat() in out, (width, r.name)
        assert "A: 62, B2: 59, B1: 58, C: 55" in out
        if not boxed:
            assert all(r.reference in out for r in rows)
