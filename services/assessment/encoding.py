"""Between the contracts on the wire and the rules: the rules' input, CANAM's AMO parts."""

from __future__ import annotations

from typing import Any

from contracts.declarations import ITEM_COLUMNS, LINE_FIELDS, AssessedLine, DeclarationSubmitted
from services.rules import COLUMNS
from services.rules.declaration import LINE_FIELDS as RULES_LINE_FIELDS

# The contract's arrays are the rules' tuples: same fields and item columns, same order.
assert [":".join(c) for c in COLUMNS] == list(ITEM_COLUMNS)
assert tuple(RULES_LINE_FIELDS) == tuple(LINE_FIELDS)


def rules_input(d: DeclarationSubmitted) -> dict[str, Any]:
    """The declaration as the rules read it, its lines left as the contract's arrays
    (`assess_declaration_compact(..., line_arrays=True)`): no dict per line."""
    return {
        "declaration_id": d.declaration_id,
        "employer": d.employer.model_dump(),
        "period": d.period,
        "submitted_at": d.submitted_at.isoformat().replace("+00:00", "Z"),
        "replaces": d.replaces,
        "lines": d.lines,
    }


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
