"""A declaration in, its assessment out: the dict-level function every caller shares.

The streaming assessment service, the `kalo rules assess` command and the auditors' replay
call `assess_declaration` with the JSON shapes of RULES.md §5, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from services.rules.contributions import (
    COLUMNS,
    LineSpec,
    assess_lines_compact,
    column_rates,
    expand_lines,
    line_spec,
    totals,
    zero_totals,
)
from services.rules.dates import MONTHLY, QUARTERLY, due_date, months_late
from services.rules.declaration import (
    CATEGORIES,
    INPS,
    PERIOD_NOT_COVERED,
    RISK_CLASSES,
    Declaration,
    DeclarationError,
    Line,
    read_declaration,
)
from services.rules.parameters import NotInForce
from services.rules.registry import registry_errors
from services.rules.ruleset import Ruleset
from services.rules.surcharge import surcharge


def validate_declaration(doc: Mapping[str, Any], ruleset: Ruleset) -> list[DeclarationError]:
    """Every broken rule of a declaration (empty when it can be assessed).

    Raises InvalidInput when the document is not a declaration at all.
    """
    declaration = read_declaration(doc)
    errors = list(declaration.errors)
    _line_specs(declaration, ruleset, errors)
    _terms(declaration, ruleset, errors)
    return errors


_NOT_CHECKED: Any = object()


def _registry(doc: Mapping[str, Any], record: Any) -> list[DeclarationError]:
    if record is _NOT_CHECKED:
        return []
    employer = doc.get("employer")
    return registry_errors(employer if isinstance(employer, Mapping) else {}, record)


def assess_declaration(
    doc: Mapping[str, Any], ruleset: Ruleset, *, registry: Mapping[str, Any] | None = _NOT_CHECKED
) -> dict[str, Any]:
    """RULES.md §5: the assessment of one declaration, accepted or rejected with every error.

    With `registry` (the employer's registry record, or None when it is not registered) the
    registry's rules apply too (services.rules.registry)."""
    result, computed = _assess(read_declaration(doc), ruleset, _registry(doc, registry))
    if computed is not None:
        result["lines"] = expand_lines(computed.lines, result["lines"], computed.specs)
    return result


def assess_declaration_compact(
    doc: Mapping[str, Any],
    ruleset: Ruleset,
    *,
    line_arrays: bool = False,
    registry: Mapping[str, Any] | None = _NOT_CHECKED,
) -> dict[str, Any]:
    """`assess_declaration` with every line as a `CompactLine` (the services' wire form)
    and `rates`: per category declared, the rate text of each COLUMNS slot (None where it
    has no item). The same amounts and errors, without a dict per item.

    With `line_arrays` the lines are arrays in LINE_FIELDS order instead of objects.
    """
    declaration = read_declaration(doc, line_arrays=line_arrays)
    result, computed = _assess(declaration, ruleset, _registry(doc, registry))
    rates: dict[str, list[str | None]] = {}
    if computed is not None:
        for line in computed.lines:
            category = line[1]
            if category not in rates:
                spec = computed.specs[category]
                rates[category] = column_rates(spec) if category in computed.worked else [None] * len(COLUMNS)
    result["rates"] = rates
    return result


@dataclass(frozen=True, slots=True)
class _Computed:
    """What the amounts of an accepted declaration were computed from."""

    lines: list[Line]
    specs: dict[str, LineSpec]
    worked: set[str]  # the categories of the lines that have items


def _assess(
    declaration: Declaration, ruleset: Ruleset, registry: list[DeclarationError]
) -> tuple[dict[str, Any], _Computed | None]:
    """The assessment with compact lines, and for an accepted declaration what it used."""
    errors = list(declaration.errors)
    specs = _line_specs(declaration, ruleset, errors)
    terms = _terms(declaration, ruleset, errors)
    errors += registry
    due = late = None
    if terms is not None:
        due = terms.due
        late = months_late(declaration.submitted_at.date(), due)

    if errors:
        return _result(declaration, ruleset, "rejected", due, late, [], zero_totals(), 0, errors), None

    assert terms is not None and due is not None and late is not None  # no error: all known
    sums = [0] * len(COLUMNS)
    worked: set[str] = set()
    lines = assess_lines_compact(declaration.lines, specs, sums, worked)
    used = frozenset().union(*(specs[category].columns for category in worked))
    declaration_totals = totals(sums, used)
    amount = surcharge(
        declaration_totals["total"],
        late,
        terms.first_month_rate,
        terms.further_month_rate,
        correction=declaration.is_correction,
    )
    result = _result(declaration, ruleset, "accepted", due, late, lines, declaration_totals, amount, [])
    return result, _Computed(declaration.lines, specs, worked)


def _line_specs(
    declaration: Declaration, ruleset: Ruleset, errors: list[DeclarationError]
) -> dict[str, LineSpec]:
    """The items of each category the regime allows; a missing parameter for a category that
    is declared is PERIOD_NOT_COVERED."""
    period, regime = declaration.period, declaration.regime
    allowed = CATEGORIES.get(regime)
    if period is None or allowed is None:
        return {}
    declared_class = declaration.risk_class
    risk_class = declared_class if type(declared_class) is int and declared_class in RISK_CLASSES else None
    if regime == INPS and risk_class is None:
        return {}  # RISK_CLASS_INVALID already says why nothing can be computed
    key = ("specs", period, regime, risk_class)
    cached = ruleset.cache.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    specs: dict[str, LineSpec] = {}
    missing: dict[str, str] = {}
    for category in sorted(allowed):
        try:
            specs[category] = line_spec(ruleset, period, regime, category, risk_class)
        except NotInForce as exc:
            missing[category] = exc.name
    if not missing:
        ruleset.cache[key] = specs
    else:
        declared = {line[1] for line in declaration.lines}
        for name in sorted({name for category, name in missing.items() if category in declared}):
            errors.append(_not_covered(declaration, name))
    return specs


@dataclass(frozen=True, slots=True)
class Terms:
    """When a period's contributions are due, and the surcharge rates if they are late."""

    due: date
    first_month_rate: Decimal
    further_month_rate: Decimal


def payment_terms(ruleset: Ruleset, period: date, filing: str) -> Terms:
    """The terms of a period (cached on the ruleset); NotInForce when a parameter is missing."""
    key = ("terms", period, filing)
    terms = ruleset.cache.get(key)
    if terms is None:
        terms = ruleset.cache[key] = Terms(
            due_date(period, filing, ruleset.integer("declaration.due_day", period)),
            ruleset.rate("surcharge.first_month_rate", period),
            ruleset.rate("surcharge.further_month_rate", period),
        )
    assert isinstance(terms, Terms)
    return terms


def filing_by_size(workers: int, ruleset: Ruleset, period: date) -> str:
    """RULES.md §2: employers with fewer than 10 workers file quarterly."""
    below = ruleset.integer("declaration.quarterly_filing_below_workers", period)
    return QUARTERLY if workers < below else MONTHLY


def _terms(declaration: Declaration, ruleset: Ruleset, errors: list[DeclarationError]) -> Terms | None:
    period = declaration.period
    if period is None:
        return None
    try:
        filing = declaration.filing
        if filing is None:  # the employer's filing was not given: judge by this month's workers
            filing = filing_by_size(len({line[0] for line in declaration.lines}), ruleset, period)
        return payment_terms(ruleset, period, filing)
    except NotInForce as exc:
        errors.append(_not_covered(declaration, exc.name))
        return None


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
    lines: list[Any],
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
