"""Properties of pension liquidation (RULES.md §3, §4).

A pension is never above 80 % of its basis (to the franc); the early reduction never grows with age (and
the pension never falls with it); amounts are never negative and net + AMO = the pension;
the control commission's independent re-computation agrees with the liquidation.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rules import control_flags, liquidate_claim, load_ruleset
from services.rules.dates import add_months, period_text

RULESET = load_ruleset()
FAST = settings(max_examples=120, deadline=None)
EFFECTIVE_DATES = (
    date(2004, 7, 4),  # the day before the first SMIG (2004-07-05)
    date(2004, 7, 5),
    date(2010, 10, 31),  # the day before AMO (2010-11-01)
    date(2010, 11, 1),
    date(2014, 12, 31),
    date(2015, 6, 1),
    date(2019, 1, 1),
    date(2026, 12, 1),
)
GRADES = ("A", "B2", "B1", "C")


@st.composite
def careers(draw: st.DrawFn, effective: date) -> list[dict[str, Any]]:
    """A few spans of months ending before the effective date, some overlapping (several
    employers), some with base 0."""
    spans = draw(
        st.lists(st.tuples(st.integers(1, 240), st.integers(1, 540), st.integers(0, 2_000_000)), max_size=4)
    )
    last = date(effective.year, effective.month, 1)
    entries = []
    for months, end_back, base in spans:
        start = add_months(last, -(end_back + months))
        entries += [{"period": period_text(add_months(start, k)), "base": base} for k in range(months)]
    return entries


@st.composite
def claims(draw: st.DrawFn, regime: str | None = None) -> dict[str, Any]:
    regime = regime or draw(st.sampled_from(("INPS", "CMSS")))
    effective = draw(st.sampled_from(EFFECTIVE_DATES if regime == "INPS" else EFFECTIVE_DATES[-2:]))
    age_days = draw(st.integers(min_value=45 * 365, max_value=70 * 365))
    birth = date.fromordinal(effective.toordinal() - age_days)
    return {
        "claim_id": "C-P",
        "worker_id": "W-P",
        "regime": regime,
        "category": "salarie" if regime == "INPS" else draw(st.sampled_from(("fonctionnaire", "militaire"))),
        "grade": None if regime == "INPS" else draw(st.sampled_from(GRADES)),
        "birth_date": birth.isoformat(),
        "effective_date": effective.isoformat(),
        "career": draw(careers(effective)),
    }


@FAST
@given(claims())
def test_a_pension_is_never_above_80_percent_of_its_basis(claim: dict[str, Any]) -> None:
    out = liquidate_claim(claim, RULESET)
    for key in ("monthly_pension", "amo_deduction", "net_monthly_pension", "lump_sum", "basis"):
        assert out[key] >= 0, key
    assert out["net_monthly_pension"] + out["amo_deduction"] == out["monthly_pension"]
    if out["decision"] == "pension":
        assert Decimal(out["accrual_rate"]) <= Decimal("0.80")
        # Rounded to the franc like every amount: a basis of 1 gives round(0.8) = 1.
        assert out["monthly_pension"] <= Decimal("0.80") * out["basis"] + Decimal("0.5")
        assert out["basis"] >= out["reference_salary"]
    else:
        assert out["monthly_pension"] == 0


@FAST
@given(claims(regime="INPS"), st.integers(min_value=1, max_value=3000))
def test_the_reduction_never_grows_with_age(claim: dict[str, Any], older_by_days: int) -> None:
    younger = liquidate_claim(claim, RULESET)
    birth = date.fromisoformat(claim["birth_date"])
    older = liquidate_claim(
        {**claim, "birth_date": date.fromordinal(birth.toordinal() - older_by_days).isoformat()}, RULESET
    )
    assert older["age"] >= younger["age"]
    if younger["decision"] == older["decision"] == "pension":
        assert Decimal(older["reduction_rate"]) <= Decimal(younger["reduction_rate"])
        assert older["early_years"] <= younger["early_years"]
        assert older["monthly_pension"] >= younger["monthly_pension"]
    if younger["decision"] == "pension":
        assert older["decision"] == "pension"  # growing older never takes a pension away


@FAST
@given(claims())
def test_the_control_recomputation_agrees_with_the_liquidation(claim: dict[str, Any]) -> None:
    liquidation = liquidate_claim(claim, RULESET)
    career = claim.pop("career")
    flags = control_flags(claim, career, liquidation, RULESET, already_approved=False)
    assert "RECOMPUTE_MISMATCH" not in {f["code"] for f in flags}, flags
    altered = {**liquidation, "monthly_pension": liquidation["monthly_pension"] + 1}
    flags = control_flags(claim, career, altered, RULESET, already_approved=False)
    assert "RECOMPUTE_MISMATCH" in {f["code"] for f in flags}
