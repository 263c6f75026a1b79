"""Properties of pension liquidation (RULES.md §3, §4).

A pension is never above 80 % of its basis (to the franc); the early reduction never grows with age (and
the pension never falls with it); amounts are never negative and net + AMO = the pension;
the control commission's independent re-computation agrees with the liquidation.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rules import control_flags, liquidate_claim, load_ruleset
from services.rules.career import read_career
from services.rules.dates import add_months, parse_period, period_text
from services.rules.declaration import InvalidInput

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


def _entry_by_entry(entries: list[Any]) -> list[tuple[date, int]] | None:
    """A career read one entry at a time, as RULES.md §5 says (None: refused)."""
    out = []
    for entry in entries:
        if isinstance(entry, dict):
            if "period" not in entry or "base" not in entry:
                return None
            period, base = entry["period"], entry["base"]
        elif isinstance(entry, list | tuple) and len(entry) == 2:
            period, base = entry
        else:
            return None
        first_day = parse_period(period)
        if first_day is None or type(base) is not int or base < 0:
            return None
        out.append((first_day, base))
    return out


_hostile_value = st.one_of(
    st.sampled_from(["2001-01", "2026-12", "2026-13", "0000-01", "9999-01", "2001-01\n", "2001-0\x001", ""]),
    st.integers(-5, 2**70),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=8),
)
_valid_pair = st.tuples(st.sampled_from(["2001-01", "2015-06", "2026-10"]), st.integers(0, 2**70))


@st.composite
def _careers(draw: st.DrawFn) -> list[Any]:
    """Wire-form careers ([period, base] pairs or tuples), some with one or two entries made
    hostile: a bad period, a bad base, or another shape of entry."""
    pairs = draw(st.lists(_valid_pair, max_size=6))
    entries: list[Any] = [list(pair) if draw(st.booleans()) else pair for pair in pairs]
    for _ in range(draw(st.integers(0, 2)) if entries else 0):
        i = draw(st.integers(0, len(entries) - 1))
        period, base = pairs[i]
        entries[i] = draw(
            st.one_of(
                st.tuples(_hostile_value, st.just(base)).map(list),
                st.tuples(st.just(period), _hostile_value).map(list),
                st.fixed_dictionaries({"period": st.just(period), "base": _hostile_value}),
                st.dictionaries(st.sampled_from([period, "period", "base"]), _hostile_value, max_size=2),
                st.lists(_hostile_value, max_size=3),
                _hostile_value,
            )
        )
    return entries


@settings(max_examples=400, deadline=None)
@given(_careers())
def test_a_career_is_read_in_one_pass_as_entry_by_entry(entries: list[Any]) -> None:
    """The column-at-a-time reading of the wire form takes exactly what the entry-by-entry
    reading takes, hostile values included (past 64 bits, NUL, a trailing newline, bools,
    floats, objects with two keys), and refuses the rest."""
    want = _entry_by_entry(entries)
    if want is None:
        with pytest.raises(InvalidInput):
            read_career(entries)
    else:
        assert read_career(entries) == want
