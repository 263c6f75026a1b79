"""Properties of the assessment (RULES.md §1, §2), on the fast path the services run.

Items never negative; each item is round(base × rate) to within half a franc of the exact
product (and equal to the plain Decimal computation); items add up to the totals;
employer + employee = total; every item is non-decreasing in the gross.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rules import (
    apply_rate_decimal,
    assess_declaration,
    assess_declaration_compact,
    load_ruleset,
    surcharge,
)
from services.rules.declaration import LINE_FIELDS
from tests.properties.agreement import assert_compact_agrees

RULESET = load_ruleset()
HALF = Decimal("0.5")
# Periods on both sides of every change of law (SMIG 2004-07-05, read at a period's first day so
# first floored in 2004-08; AMO 2010-11; SMIG 2015 and 2016; CMSS 2019).
PERIODS = (
    "2004-06",
    "2004-07",
    "2004-08",
    "2010-10",
    "2010-11",
    "2014-12",
    "2015-01",
    "2015-12",
    "2016-01",
    "2018-12",
    "2019-01",
    "2026-10",
)
CATEGORIES = {"INPS": ("salarie",), "CMSS": ("fonctionnaire", "militaire", "parlementaire")}
FAST = settings(max_examples=150, deadline=None)

amounts = st.integers(min_value=0, max_value=5_000_000)


@st.composite
def lines(draw: st.DrawFn, regime: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "worker_id": f"W{k}",
            "category": draw(st.sampled_from(CATEGORIES[regime])),
            "days_worked": draw(st.integers(min_value=0, max_value=31)),
            "base_salary": draw(amounts),
            "bonuses": draw(st.integers(min_value=0, max_value=500_000)),
            "benefits_in_kind": draw(st.integers(min_value=0, max_value=200_000)),
            "expense_reimbursements": draw(st.integers(min_value=0, max_value=100_000)),
        }
        for k in range(count)
    ]


@st.composite
def declarations(draw: st.DrawFn) -> dict[str, Any]:
    regime = draw(st.sampled_from(("INPS", "CMSS")))
    period = draw(st.sampled_from(PERIODS))
    year, month = int(period[:4]), int(period[5:])
    next_month = f"{year + month // 12}-{month % 12 + 1:02d}"
    return {
        "declaration_id": "D-P",
        "employer": {
            "id": "E-P",
            "regime": regime,
            "risk_class": draw(st.integers(min_value=1, max_value=4)) if regime == "INPS" else None,
            "filing": draw(st.sampled_from(("monthly", "quarterly"))),
        },
        "period": period,
        "submitted_at": f"{next_month}-{draw(st.integers(min_value=1, max_value=28)):02d}T12:00:00Z",
        "lines": draw(lines(regime, draw(st.integers(min_value=1, max_value=6)))),
    }


def _items(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for line in result["lines"] for item in line["items"]]


@FAST
@given(declarations())
def test_items_are_never_negative_and_within_half_a_franc_of_the_exact_product(doc: dict[str, Any]) -> None:
    result = assess_declaration(doc, RULESET)
    assert result["status"] == "accepted", result["errors"]
    for item in _items(result):
        assert item["amount"] >= 0 and item["base"] >= 0
        exact = item["base"] * Decimal(item["rate"])
        assert abs(item["amount"] - exact) <= HALF
        assert item["amount"] == apply_rate_decimal(item["base"], Decimal(item["rate"]))


@FAST
@given(declarations())
def test_items_add_up_to_the_totals(doc: dict[str, Any]) -> None:
    result = assess_declaration(doc, RULESET)
    totals, items = result["totals"], _items(result)
    assert totals["employer"] == sum(i["amount"] for i in items if i["payer"] == "employer")
    assert totals["employee"] == sum(i["amount"] for i in items if i["payer"] == "employee")
    assert totals["employer"] + totals["employee"] == totals["total"]
    assert sum(totals["by_branch"].values()) == totals["total"] == sum(totals["by_fund"].values())
    for key, field in (("by_branch", "branch"), ("by_fund", "fund")):
        expected: dict[str, int] = {}
        for item in items:
            expected[item[field]] = expected.get(item[field], 0) + item["amount"]
        assert totals[key] == expected
    assert result["surcharge"] >= 0


@FAST
@given(
    declarations(), st.integers(min_value=1, max_value=300_000), st.sampled_from(("base_salary", "bonuses"))
)
def test_every_item_is_non_decreasing_in_the_gross(doc: dict[str, Any], raise_by: int, field: str) -> None:
    before = assess_declaration(doc, RULESET)
    doc["lines"][0][field] += raise_by
    after = assess_declaration(doc, RULESET)
    first_before, first_after = before["lines"][0], after["lines"][0]
    assert first_after["gross"] == first_before["gross"] + raise_by
    assert first_after["base"] >= first_before["base"]
    assert len(first_after["items"]) == len(first_before["items"])
    for old, new in zip(first_before["items"], first_after["items"], strict=True):
        assert (new["branch"], new["payer"]) == (old["branch"], old["payer"])
        assert new["amount"] >= old["amount"]
    assert after["totals"]["total"] >= before["totals"]["total"]


@FAST
@given(declarations())
def test_the_floor_is_the_smig_share_of_the_days_worked(doc: dict[str, Any]) -> None:
    result = assess_declaration(doc, RULESET)
    for raw, line in zip(doc["lines"], result["lines"], strict=True):
        gross = raw["base_salary"] + raw["bonuses"] + raw["benefits_in_kind"]
        assert line["gross"] == gross
        if raw["days_worked"] == 0:
            assert line["base"] == 0 and line["items"] == []
        elif doc["employer"]["regime"] == "CMSS" or line["base"] == gross:
            assert not line["floor_applied"]
        else:
            assert line["floor_applied"] and line["base"] > gross


@FAST
@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=40))
def test_the_surcharge_grows_with_lateness_and_a_correction_has_none(total: int, months: int) -> None:
    first, further = Decimal("0.05"), Decimal("0.01")
    now = surcharge(total, months, first, further)
    later = surcharge(total, months + 1, first, further)
    assert 0 <= now <= later
    assert surcharge(total, months + 1, first, further, correction=True) == 0
    if months >= 1:
        exact = total * (first + further * (months - 1))
        assert abs(now - exact) <= HALF


@FAST
@given(declarations())
def test_the_compact_assessment_agrees_with_the_verbose_one_to_the_franc(doc: dict[str, Any]) -> None:
    verbose = assess_declaration(doc, RULESET)
    compact = assess_declaration_compact(doc, RULESET)
    assert_compact_agrees(compact, verbose)
    # The services' form: lines as arrays (tuples from the contract, lists from JSON) alike.
    for wrap in (tuple, list):
        arrays = {**doc, "lines": [wrap(line[f] for f in LINE_FIELDS) for line in doc["lines"]]}
        assert assess_declaration_compact(arrays, RULESET, line_arrays=True) == compact
