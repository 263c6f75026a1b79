"""Between the rules' verbose assessment (RULES.md §5) and the compact contract on the wire."""

from __future__ import annotations

from typing import Any

from contracts.declarations import ITEM_COLUMNS, LINE_FIELDS, AssessedLine, DeclarationSubmitted

_COLUMN = {tuple(c.split(":")[i] for i in (0, 2)): n for n, c in enumerate(ITEM_COLUMNS)}
_PENSION_BRANCHES = ("PVID", "RETRAITE")


def rules_input(d: DeclarationSubmitted) -> dict[str, Any]:
    """The declaration as RULES.md §5 reads it."""
    return {
        "declaration_id": d.declaration_id,
        "employer": d.employer.model_dump(),
        "period": d.period,
        "submitted_at": d.submitted_at.isoformat().replace("+00:00", "Z"),
        "replaces": d.replaces,
        "lines": [dict(zip(LINE_FIELDS, line, strict=True)) for line in d.lines],
    }


def compact_lines(
    lines: list[dict[str, Any]],
) -> tuple[list[AssessedLine], dict[str, list[str | None]]]:
    """Lines as fixed-order arrays, and the rate of each item column per category."""
    out: list[AssessedLine] = []
    rates: dict[str, list[str | None]] = {}
    width = len(ITEM_COLUMNS)
    for line in lines:
        amounts: list[int | None] = [None] * width
        pension_base = amo_base = 0
        category_rates = rates.get(line["category"])
        if category_rates is None:
            category_rates = rates[line["category"]] = [None] * width
        for item in line["items"]:
            col = _COLUMN[(item["branch"], item["payer"])]
            amounts[col] = item["amount"]
            category_rates[col] = item["rate"]
            if item["branch"] in _PENSION_BRANCHES:
                pension_base = item["base"]
            elif item["branch"] == "AMO":
                amo_base = item["base"]
        out.append(
            (
                line["worker_id"],
                line["category"],
                line["gross"],
                line["base"],
                line["floor_applied"],
                pension_base,
                amo_base,
                amounts,
            )
        )
    return out, rates


AMO_EMPLOYER = ITEM_COLUMNS.index("AMO:CANAM:employer")
AMO_EMPLOYEE = ITEM_COLUMNS.index("AMO:CANAM:employee")


def amo_parts(lines: list[AssessedLine]) -> list[tuple[str, int, int, int]]:
    """Each worker's AMO base, employee part and employer part (lines without AMO are left out)."""
    parts = []
    for worker_id, _cat, _gross, _base, _floor, _pb, amo_base, amounts in lines:
        employee, employer = amounts[AMO_EMPLOYEE], amounts[AMO_EMPLOYER]
        if employee is not None or employer is not None:
            parts.append((worker_id, amo_base, employee or 0, employer or 0))
    return parts
