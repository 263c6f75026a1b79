"""A-priori checks of the control commission on every liquidation (RULES.md §4).

RECOMPUTE_MISMATCH compares the liquidation with an *independent* re-computation from the
career snapshot it carries: written apart from `liquidation.py` (own career totals, exact
fractions instead of decimals), so that a defect in one is caught by the other rather than
repeated. A property test keeps the two in agreement on the rules themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from services.rules.declaration import CATEGORIES, InvalidInput
from services.rules.liquidation import Claim, read_claim
from services.rules.parameters import NotInForce, Value
from services.rules.ruleset import Ruleset

RECOMPUTE_MISMATCH = "RECOMPUTE_MISMATCH"
SALARY_SPIKE = "SALARY_SPIKE"
HIGH_AMOUNT = "HIGH_AMOUNT"
DUPLICATE_CLAIM = "DUPLICATE_CLAIM"
ESCALATED = "ESCALATED"

# The fields of a liquidation that the re-computation must reproduce.
CHECKED_FIELDS = (
    "decision",
    "reason",
    "age",
    "insured_months",
    "reference_salary",
    "basis",
    "accrual_rate",
    "early_years",
    "reduction_rate",
    "monthly_pension",
    "amo_deduction",
    "net_monthly_pension",
    "lump_sum",
)
_RATE_FIELDS = frozenset({"accrual_rate", "reduction_rate"})


def control_flags(
    claim: Mapping[str, Any],
    career: Sequence[Any],
    liquidation: Mapping[str, Any],
    ruleset: Ruleset,
    *,
    already_approved: bool,
) -> list[dict[str, str]]:
    """The flags of one liquidation, each `{"code", "message"}`; empty: may be auto-approved.

    `claim` is the claim as filed (RULES.md §5 without its career), `career` the snapshot the
    liquidation was computed from (objects `{period, base}` or `[period, base]` pairs), and
    `already_approved` whether the worker already has an approved pension.
    """
    flags, _ = control_review(claim, career, liquidation, ruleset, already_approved=already_approved)
    return flags


def control_review(
    claim: Mapping[str, Any],
    career: Sequence[Any],
    liquidation: Mapping[str, Any],
    ruleset: Ruleset,
    *,
    already_approved: bool,
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """`control_flags` and the independent re-computation they compared the liquidation
    with, from one reading of the claim and its career (the control keeps both)."""
    parsed = read_claim(claim, career=list(career))
    totals = _month_totals(parsed.career)  # once, for the re-computation and the spike
    expected = recompute(parsed, ruleset, totals)
    flags: list[dict[str, str]] = []
    mismatch = _mismatch(expected, liquidation, ruleset)
    if mismatch:
        flags.append({"code": RECOMPUTE_MISMATCH, "message": mismatch})
    if liquidation.get("decision") in ("pension", "lump_sum"):
        spike = _salary_spike(parsed, ruleset, totals)
        if spike:
            flags.append({"code": SALARY_SPIKE, "message": spike})
    high = _high_amount(parsed.effective_date, liquidation, ruleset)
    if high:
        flags.append({"code": HIGH_AMOUNT, "message": high})
    if already_approved:
        flags.append(
            {
                "code": DUPLICATE_CLAIM,
                "message": f"worker {parsed.worker_id} already has an approved pension",
            }
        )
    return flags, expected


def auto_approval_allowed(ruleset: Ruleset, at: date) -> bool:
    """The setting that lets a liquidation with no flag be approved without a controller."""
    return ruleset.flag("control.auto_approve", at, default=True)


def escalation_deadline(pending_since: datetime, ruleset: Ruleset) -> datetime:
    """When a liquidation waiting for a decision since `pending_since` is escalated: after
    the administration's delay to answer in writing (`control.escalation_days`, in force on
    the day it arrived). Past this instant it is ESCALATED: listed first, counted, and never
    decided automatically."""
    days = ruleset.integer("control.escalation_days", pending_since.date())
    return pending_since + timedelta(days=days)


def escalation_flag(pending_since: datetime, deadline: datetime) -> dict[str, str]:
    """The ESCALATED flag of a liquidation still pending past its deadline."""
    waited = deadline - pending_since
    return {
        "code": ESCALATED,
        "message": (
            f"pending since {pending_since.date().isoformat()}: more than {waited.days} days "
            f"without a decision (deadline {deadline.date().isoformat()})"
        ),
    }


def reference_window(
    claim: Mapping[str, Any], career: Sequence[Any], ruleset: Ruleset
) -> tuple[date, date] | None:
    """The first and last month of the reference salary's window (RULES.md §3: the most
    recent N counted months), for showing a career; None when it cannot be told."""
    try:
        parsed = read_claim(claim, career=list(career))
        prefix = "inps.pension" if parsed.regime == "INPS" else "cmss.pension"
        n = ruleset.integer(f"{prefix}.reference_months", parsed.effective_date)
    except (InvalidInput, NotInForce, KeyError, TypeError):
        return None
    totals = _month_totals(parsed.career)
    months = sorted(m for m, b in totals.items() if b > 0)
    recent = months[-n:] if n > 0 else []
    return (recent[0], recent[-1]) if recent else None


def _mismatch(expected: Mapping[str, Any], liquidation: Mapping[str, Any], ruleset: Ruleset) -> str | None:
    differences = []
    produced_by = liquidation.get("ruleset")
    if produced_by != ruleset.id:
        differences.append(f"ruleset: liquidation {produced_by}, control {ruleset.id}")
    for name in CHECKED_FIELDS:
        got, want = liquidation.get(name), expected[name]
        same = _same_rate(got, want) if name in _RATE_FIELDS else got == want
        if not same:
            differences.append(f"{name}: liquidation {got!r}, recomputed {want!r}")
    return "; ".join(differences) or None


def compared_fields(liquidation: Mapping[str, Any], recomputed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each field the re-computation checks, the liquidation's value beside the control's,
    and whether they agree (rates by value: 0.5 is 0.50)."""
    out: list[dict[str, Any]] = []
    for name in CHECKED_FIELDS:
        got, want = liquidation.get(name), recomputed.get(name)
        same = _same_rate(got, want) if name in _RATE_FIELDS else got == want
        out.append({"field": name, "liquidation": got, "recomputed": want, "same": same})
    return out


def _same_rate(got: object, want: object) -> bool:
    try:
        return Decimal(str(got)) == Decimal(str(want))
    except ArithmeticError:
        return False


def _month_totals(career: Sequence[tuple[date, int]]) -> dict[date, int]:
    """Each month's bases added (several employers in a month count once)."""
    totals = dict(career)  # one entry per month, the usual case: built in C
    if len(totals) != len(career):
        totals = {}
        for period, base in career:
            totals[period] = totals.get(period, 0) + base
    return totals


def recompute(claim: Claim, ruleset: Ruleset, totals: Mapping[date, int] | None = None) -> dict[str, Any]:
    """RULES.md §3 again, from the claim and its career, with fractions (`totals`: the
    career's bases added per month, when the caller has them)."""
    at, birth = claim.effective_date, claim.birth_date
    if totals is None:
        totals = _month_totals(claim.career)
    months = sorted(m for m, b in totals.items() if b > 0)
    result: dict[str, Any] = {
        "decision": "rejected",
        "reason": None,
        "age": at.year - birth.year - (1 if (at.month, at.day) < (birth.month, birth.day) else 0),
        "insured_months": len(months),
        "reference_salary": 0,
        "basis": 0,
        "accrual_rate": "0",
        "early_years": 0,
        "reduction_rate": "0",
        "monthly_pension": 0,
        "amo_deduction": 0,
        "net_monthly_pension": 0,
        "lump_sum": 0,
    }
    age, insured = result["age"], result["insured_months"]
    if claim.regime not in CATEGORIES:
        return {**result, "reason": "UNKNOWN_REGIME"}
    if claim.category not in CATEGORIES[claim.regime]:
        return {**result, "reason": "CATEGORY_NOT_ALLOWED"}
    if not claim.career:
        return {**result, "reason": "NO_CAREER"}
    prefix = "inps.pension" if claim.regime == "INPS" else "cmss.pension"

    def param(name: str) -> Value:
        return ruleset.value(f"{prefix}.{name}", at)

    ages: Value | None = None
    try:
        if claim.regime == "CMSS":
            ages = param("age_by_grade")
        n = _int(param("reference_months"))
        recent = months[-n:] if n > 0 else []
        reference = _half_up(Fraction(sum(map(totals.__getitem__, recent)), len(recent))) if recent else 0
        result["reference_salary"] = reference
        if claim.regime == "INPS":
            normal = _int(param("normal_age"))
            if age < _int(param("early_age")):
                return {**result, "reason": "AGE_NOT_REACHED"}
            if insured < _int(param("minimum_months")):
                allowance_age = _int(param("lump_sum_minimum_age"))
                if age >= allowance_age and insured >= _int(param("lump_sum_minimum_months")):
                    years = insured // 12
                    return {
                        **result,
                        "decision": "lump_sum",
                        "basis": reference,
                        "lump_sum": reference * years,
                    }
                return {**result, "reason": "INSUFFICIENT_INSURANCE"}
            early = max(0, normal - age)
            smig = ruleset.optional("smig", at)  # no SMIG known (before 2004-07-05): no floor
            floor = 0 if smig is None else _half_up(_frac(param("floor_smig_multiple")) * _int(smig))
            basis = max(reference, floor)
            reduction = min(_frac(param("early_reduction_per_year")) * early, Fraction(1))
        else:
            assert isinstance(ages, Mapping)
            needed = ages.get(claim.grade) if claim.grade is not None else None
            if not isinstance(needed, int):
                return {**result, "reason": "UNKNOWN_GRADE"}
            if age < needed:
                return {**result, "reason": "AGE_NOT_REACHED"}
            if insured < _int(param("minimum_months")):
                return {**result, "reason": "INSUFFICIENT_INSURANCE"}
            early, basis, reduction = 0, reference, Fraction(0)
        accrual = min(_frac(param("accrual_per_year")) * (insured // 12), _frac(param("max_accrual")))
        monthly = _half_up(basis * accrual * (1 - reduction))
        amo = 0
        if ruleset.flag("amo.in_force", at, default=False):
            amo = _half_up(monthly * _frac(param("amo_rate")))
    except NotInForce:
        return {**result, "reference_salary": 0, "reason": "DATE_NOT_COVERED"}
    return {
        **result,
        "decision": "pension",
        "basis": basis,
        "accrual_rate": _fraction_text(accrual),
        "early_years": early,
        "reduction_rate": _fraction_text(reduction),
        "monthly_pension": monthly,
        "amo_deduction": amo,
        "net_monthly_pension": monthly - amo,
    }


def _salary_spike(claim: Claim, ruleset: Ruleset, totals: Mapping[date, int]) -> str | None:
    at = claim.effective_date
    recent_n = ruleset.integer("control.salary_spike.recent_months", at)
    prior_n = ruleset.integer("control.salary_spike.prior_months", at)
    ratio = _frac(ruleset.value("control.salary_spike.ratio", at))
    bases = [totals[m] for m in sorted(totals) if totals[m] > 0]
    recent = bases[-recent_n:] if recent_n > 0 else []
    prior = bases[: len(bases) - len(recent)][-prior_n:] if prior_n > 0 else []
    if not recent or not prior:
        return None  # nothing to compare with
    recent_mean = Fraction(sum(recent), len(recent))
    prior_mean = Fraction(sum(prior), len(prior))
    if recent_mean > ratio * prior_mean:
        return (
            f"mean base of the last {len(recent)} counted months ({float(recent_mean):,.0f}) "
            f"exceeds {ratio} × the mean of the {len(prior)} months before them "
            f"({float(prior_mean):,.0f})"
        )
    return None


def _high_amount(at: date, liquidation: Mapping[str, Any], ruleset: Ruleset) -> str | None:
    monthly = liquidation.get("monthly_pension")
    if not isinstance(monthly, int) or monthly <= 0:
        return None
    try:
        smig = _int(ruleset.value("smig", at))
    except NotInForce:
        return None
    multiple = _frac(ruleset.value("control.high_amount_smig_multiple", at))
    if monthly > multiple * smig:
        return f"monthly pension {monthly} exceeds {multiple} × SMIG ({smig})"
    return None


def _frac(value: Value) -> Fraction:
    if not isinstance(value, Decimal | int) or isinstance(value, bool):
        raise TypeError(f"expected a number, not {value!r}")
    return Fraction(value)


def _int(value: Value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, not {value!r}")
    return value


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _fraction_text(x: Fraction) -> str:
    # Compared by value with the liquidation's decimal string, so any exact form will do.
    return "0" if x == 0 else str(Decimal(x.numerator) / Decimal(x.denominator))
