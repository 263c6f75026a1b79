"""Old-age pension liquidation (RULES.md §3): a claim and its career in, a decision out.

Parameters are read at the claim's effective date. Amounts are computed in exact decimals
and rounded half up once each, as the contributions are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from services.rules.career import Month, counted_months, read_career, reference_salary
from services.rules.dates import completed_years, parse_day
from services.rules.declaration import CATEGORIES, CMSS, INPS, InvalidInput
from services.rules.money import exact_product, format_rate, round_half_up
from services.rules.parameters import NotInForce
from services.rules.ruleset import Ruleset

PENSION = "pension"
LUMP_SUM = "lump_sum"
REJECTED = "rejected"

AGE_NOT_REACHED = "AGE_NOT_REACHED"
INSUFFICIENT_INSURANCE = "INSUFFICIENT_INSURANCE"
# Beyond RULES.md §3, for claims that cannot be judged: the same codes as declarations where
# they mean the same thing, and DATE_NOT_COVERED when a parameter has no value in force at
# the effective date (e.g. a CMSS pension before Loi 2018-053).
UNKNOWN_REGIME = "UNKNOWN_REGIME"
CATEGORY_NOT_ALLOWED = "CATEGORY_NOT_ALLOWED"
UNKNOWN_GRADE = "UNKNOWN_GRADE"
DATE_NOT_COVERED = "DATE_NOT_COVERED"
# A claim for a worker of whom no month at all is known (an unknown worker, or a career
# neither declared nor imported): nothing to liquidate. A career whose months all have
# base 0 is known, and judged as any other (INSUFFICIENT_INSURANCE).
NO_CAREER = "NO_CAREER"

_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Claim:
    claim_id: str
    worker_id: str
    regime: str
    category: str
    grade: str | None
    birth_date: date
    effective_date: date
    career: tuple[tuple[date, int], ...]


@dataclass(frozen=True, slots=True)
class Liquidation:
    claim_id: str
    worker_id: str
    regime: str
    ruleset: str
    decision: str
    reason: str | None
    age: int
    insured_months: int
    reference_salary: int
    basis: int
    accrual_rate: Decimal
    early_years: int
    reduction_rate: Decimal
    monthly_pension: int
    amo_deduction: int
    net_monthly_pension: int
    lump_sum: int

    def as_json(self) -> dict[str, Any]:
        """RULES.md §5, keys in that order; rates as decimal strings ("0.50", "0")."""
        return {
            "claim_id": self.claim_id,
            "worker_id": self.worker_id,
            "regime": self.regime,
            "ruleset": self.ruleset,
            "decision": self.decision,
            "reason": self.reason,
            "age": self.age,
            "insured_months": self.insured_months,
            "reference_salary": self.reference_salary,
            "basis": self.basis,
            "accrual_rate": format_rate(self.accrual_rate),
            "early_years": self.early_years,
            "reduction_rate": format_rate(self.reduction_rate),
            "monthly_pension": self.monthly_pension,
            "amo_deduction": self.amo_deduction,
            "net_monthly_pension": self.net_monthly_pension,
            "lump_sum": self.lump_sum,
        }


def read_claim(doc: Mapping[str, Any], career: object = None) -> Claim:
    """A RULES.md §5 claim; `career` overrides the claim's own `career` field when given."""
    if not isinstance(doc, Mapping):
        raise InvalidInput("a claim is a JSON object")

    def text(key: str) -> str:
        if key not in doc:
            raise InvalidInput(f"missing required field {key}")
        value = doc[key]
        if not isinstance(value, str):
            raise InvalidInput(f"{key} must be a string")
        return value

    def day(key: str) -> date:
        parsed = parse_day(text(key))
        if parsed is None:
            raise InvalidInput(f"{key} is not a date YYYY-MM-DD: {doc[key]!r}")
        return parsed

    grade = doc.get("grade")
    if grade is not None and not isinstance(grade, str):
        raise InvalidInput("grade must be a string or null")
    if career is None:
        if "career" not in doc:
            raise InvalidInput("missing required field career")
        career = doc["career"]
    return Claim(
        claim_id=text("claim_id"),
        worker_id=text("worker_id"),
        regime=text("regime"),
        category=text("category"),
        grade=grade,
        birth_date=day("birth_date"),
        effective_date=day("effective_date"),
        career=tuple(read_career(career)),
    )


def liquidate_claim(doc: Mapping[str, Any], ruleset: Ruleset) -> dict[str, Any]:
    """RULES.md §5: the liquidation of one claim with its career."""
    return liquidate(read_claim(doc), ruleset).as_json()


def liquidate(claim: Claim, ruleset: Ruleset) -> Liquidation:
    at = claim.effective_date
    age = completed_years(claim.birth_date, at)
    months = counted_months(claim.career)
    base = _Outcome(claim, ruleset.id, age, len(months))
    allowed = CATEGORIES.get(claim.regime)
    if allowed is None:
        return base.rejected(UNKNOWN_REGIME)
    if claim.category not in allowed:
        return base.rejected(CATEGORY_NOT_ALLOWED)
    if not claim.career:
        return base.rejected(NO_CAREER)
    try:
        if claim.regime == INPS:
            return _inps(base, months, ruleset, at)
        assert claim.regime == CMSS
        return _cmss(base, months, ruleset, at)
    except NotInForce:
        return base.rejected(DATE_NOT_COVERED)


@dataclass(frozen=True, slots=True)
class _Outcome:
    claim: Claim
    ruleset_id: str
    age: int
    insured_months: int

    def make(self, decision: str, reason: str | None = None, **amounts: Any) -> Liquidation:
        fields: dict[str, Any] = {
            "reference_salary": 0,
            "basis": 0,
            "accrual_rate": _ZERO,
            "early_years": 0,
            "reduction_rate": _ZERO,
            "monthly_pension": 0,
            "amo_deduction": 0,
            "net_monthly_pension": 0,
            "lump_sum": 0,
        }
        fields.update(amounts)
        c = self.claim
        return Liquidation(
            c.claim_id,
            c.worker_id,
            c.regime,
            self.ruleset_id,
            decision,
            reason,
            self.age,
            self.insured_months,
            **fields,
        )

    def rejected(self, reason: str, reference: int = 0) -> Liquidation:
        return self.make(REJECTED, reason, reference_salary=reference)


def _inps(base: _Outcome, months: list[Month], ruleset: Ruleset, at: date) -> Liquidation:
    reference = reference_salary(months, ruleset.integer("inps.pension.reference_months", at))
    age, insured = base.age, base.insured_months
    normal_age = ruleset.integer("inps.pension.normal_age", at)
    if age < ruleset.integer("inps.pension.early_age", at):
        return base.rejected(AGE_NOT_REACHED, reference)
    if insured < ruleset.integer("inps.pension.minimum_months", at):
        # Allocation de vieillesse (RULES.md v2 §3.1): its own age and months, not the pension's.
        allowance_age = ruleset.integer("inps.pension.lump_sum_minimum_age", at)
        allowance_months = ruleset.integer("inps.pension.lump_sum_minimum_months", at)
        if age >= allowance_age and insured >= allowance_months:
            # No SMIG floor, no AMO; the amount formula is unconfirmed (see
            # parameters/inps/pension/lump_sum_minimum_months.yaml).
            return base.make(
                LUMP_SUM,
                reference_salary=reference,
                basis=reference,
                lump_sum=reference * (insured // 12),
            )
        return base.rejected(INSUFFICIENT_INSURANCE, reference)
    early_years = max(0, normal_age - age)
    smig = ruleset.optional_integer("smig", at)  # None before the first SMIG: no floor
    multiple = ruleset.rate("inps.pension.floor_smig_multiple", at)
    floor = 0 if smig is None else round_half_up(exact_product(multiple, smig))
    return _pension(
        base,
        ruleset,
        at,
        reference=reference,
        basis=max(reference, floor),
        accrual=_accrual(insured, ruleset, at, "inps.pension"),
        early_years=early_years,
        reduction=min(ruleset.rate("inps.pension.early_reduction_per_year", at) * early_years, _ONE),
        amo_rate_name="inps.pension.amo_rate",
    )


def _cmss(base: _Outcome, months: list[Month], ruleset: Ruleset, at: date) -> Liquidation:
    ages = ruleset.table("cmss.pension.age_by_grade", at)
    reference = reference_salary(months, ruleset.integer("cmss.pension.reference_months", at))
    grade = base.claim.grade
    grade_age = ages.get(grade) if grade is not None else None
    if not isinstance(grade_age, int):
        return base.rejected(UNKNOWN_GRADE, reference)
    if base.age < grade_age:
        return base.rejected(AGE_NOT_REACHED, reference)
    if base.insured_months < ruleset.integer("cmss.pension.minimum_months", at):
        return base.rejected(INSUFFICIENT_INSURANCE, reference)
    # The INPS formula without the SMIG floor and without early retirement.
    return _pension(
        base,
        ruleset,
        at,
        reference=reference,
        basis=reference,
        accrual=_accrual(base.insured_months, ruleset, at, "cmss.pension"),
        early_years=0,
        reduction=_ZERO,
        amo_rate_name="cmss.pension.amo_rate",
    )


def _accrual(insured_months: int, ruleset: Ruleset, at: date, prefix: str) -> Decimal:
    """Per completed 12 months, capped; keeps the parameter's decimals (0.02 × 25 = 0.50)."""
    per_year = ruleset.rate(f"{prefix}.accrual_per_year", at)
    return min(per_year * (insured_months // 12), ruleset.rate(f"{prefix}.max_accrual", at))


def _pension(
    base: _Outcome,
    ruleset: Ruleset,
    at: date,
    *,
    reference: int,
    basis: int,
    accrual: Decimal,
    early_years: int,
    reduction: Decimal,
    amo_rate_name: str,
) -> Liquidation:
    monthly = pension_amount(basis, accrual, reduction)
    amo = 0
    if ruleset.flag("amo.in_force", at, default=False):
        amo = round_half_up(exact_product(monthly, ruleset.rate(amo_rate_name, at)))
    return base.make(
        PENSION,
        reference_salary=reference,
        basis=basis,
        accrual_rate=accrual,
        early_years=early_years,
        reduction_rate=reduction,
        monthly_pension=monthly,
        amo_deduction=amo,
        net_monthly_pension=monthly - amo,
    )


def pension_amount(basis: int, accrual: Decimal, reduction: Decimal) -> int:
    """round(basis × accrual × (1 − reduction)), the product kept exact before rounding."""
    return round_half_up(exact_product(basis, accrual, _ONE - reduction))
