"""A declaration in, its assessment out: the dict-level function every caller shares.

The streaming assessment service, the `kalo rules assess` command and the auditors' replay
call `assess_declaration` with the JSON shapes of RULES.md §5, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from services.rules.contributions import (
    COLUMNS,
    LineSpec,
    assess_lines,
    line_spec,
    totals,
    zero_totals,
)
from services.rules.dates import due_date, months_late
from services.rules.declaration import (
    CATEGORIES,
    INPS,
    PERIOD_NOT_COVERED,
    Declaration,
    DeclarationError,
    read_declaration,
)
from services.rules.parameters import NotInForce
from services.rules.ruleset import Ruleset
from services.rules.surcharge import surcharge


def validate_declaration(doc: Mapping[str, Any], ruleset: Ruleset) -> list[DeclarationError]:
    """Every broken rule of a declaration (empty when it can be assessed).

    Raises InvalidInput when the document is not a declaration at all.
    """
    declaration = read_declaration(doc)
    errors = list(declaration.errors)
    _line_specs(declaration, ruleset, errors)
    _due(declaration, ruleset, errors)
    return errors


def assess_declaration(doc: Mapping[str, Any], ruleset: Ruleset) -> dict[str, Any]:
    """RULES.md §5: the assessment of one declaration, accepted or rejected with every error."""
    declaration = read_declaration(doc)
    errors = list(declaration.errors)
    specs = _line_specs(declaration, ruleset, errors)
    due = _due(declaration, ruleset, errors)
    late = None if due is None else months_late(declaration.submitted_at.date(), due)

    if errors:
        return _result(declaration, ruleset, "rejected", due, late, [], zero_totals(), 0, errors)

    assert declaration.period is not None and late is not None  # no error: both are known
    sums = [0] * len(COLUMNS)
    worked: set[str] = set()
    lines = assess_lines(declaration.lines, specs, sums, worked)
    used = {item.column for category in worked for item in specs[category].items}
    declaration_totals = totals(sums, used)
    amount = surcharge(
        declaration_totals["total"],
        late,
        ruleset.rate("surcharge.first_month_rate", declaration.period),
        ruleset.rate("surcharge.further_month_rate", declaration.period),
        correction=declaration.is_correction,
    )
    return _result(declaration, ruleset, "accepted", due, late, lines, declaration_totals, amount, [])


def _line_specs(
    declaration: Declaration, ruleset: Ruleset, errors: list[DeclarationError]
) -> dict[str, LineSpec]:
    """The items of each category declared; a missing parameter is PERIOD_NOT_COVERED."""
    period, regime = declaration.period, declaration.regime
    allowed = CATEGORIES.get(regime)
    if period is None or allowed is None:
        return {}
    risk_class = declaration.risk_class if isinstance(declaration.risk_class, int) else None
    if regime == INPS and risk_class is None:
        return {}  # RISK_CLASS_INVALID already says why nothing can be computed
    specs: dict[str, LineSpec] = {}
    missing: set[str] = set()
    for category in sorted({line[1] for line in declaration.lines} & allowed):
        try:
            specs[category] = line_spec(ruleset, period, regime, category, risk_class)
        except NotInForce as exc:
            missing.add(exc.name)
    for name in sorted(missing):
        errors.append(_not_covered(declaration, name))
    return specs


def _due(declaration: Declaration, ruleset: Ruleset, errors: list[DeclarationError]) -> date | None:
    if declaration.period is None:
        return None
    try:
        due_day = ruleset.integer("declaration.due_day", declaration.period)
        for name in ("surcharge.first_month_rate", "surcharge.further_month_rate"):
            ruleset.rate(name, declaration.period)
    except NotInForce as exc:
        errors.append(_not_covered(declaration, exc.name))
        return None
    return due_date(declaration.period, declaration.filing, due_day)


def _not_covered(declaration: Declaration, name: str) -> DeclarationError:
    return DeclarationError(
        None,
        None,
        PERIOD_NOT_COVERED,
        f"parameter {name} has no value in force for period {declaration.period_text}",
    )


def _result(
    declaration: Declaration,
    ruleset: Ruleset,
    status: str,
    due: date | None,
    late: int | None,
    lines: list[dict[str, Any]],
    declaration_totals: dict[str, Any],
    amount: int,
    errors: list[DeclarationError],
) -> dict[str, Any]:
    return {
        "declaration_id": declaration.declaration_id,
        "employer_id": declaration.employer_id,
        "period": declaration.period_text,
        "status": status,
        "ruleset": ruleset.id,
        "due_date": None if due is None else due.isoformat(),
        "months_late": late,
        "lines": lines,
        "totals": declaration_totals,
        "surcharge": amount,
        "errors": [e.as_json() for e in errors],
    }
