"""The control's decode of a liquidation reads its career once, with the rules' reader of the
wire form, and keeps that reading for the review. It must accept and refuse exactly what the
contract does, hold what the contract would hold, and lead the review to the same flags and
re-computation as a review that reads the career itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.envelope import Envelope, envelope_json
from contracts.pensions import PensionLiquidated
from services.control.app import arrived
from services.rules import InvalidInput, control_review, liquidate_claim, load_ruleset, read_career
from tests.properties.test_liquidation_properties import _careers, _hostile_value, claims

RULESET = load_ruleset()
CONTRACT = Envelope[PensionLiquidated]

_runs = st.one_of(
    st.none(),
    st.just("runs"),  # the runs that cover the career, when there are any
    st.lists(
        st.tuples(
            st.sampled_from(["2001-01", "2015-06", "2026-10", "2026-13"]),
            st.sampled_from(["2001-01", "2015-06", "2026-10"]),
            st.sampled_from(["assessed", "imported", "both", "other"]),
        ).map(list),
        max_size=3,
    ),
    _hostile_value,
)


def _document(claim: dict[str, Any], career: Any, runs: Any) -> dict[str, Any]:
    if runs == "runs":
        periods = [entry[0] for entry in career if isinstance(entry, list | tuple) and len(entry) == 2]
        runs = [[periods[0], periods[-1], "imported"]] if periods else []
    data = {
        "claim_id": claim["claim_id"],
        "worker_id": claim["worker_id"],
        "ruleset": RULESET.id,
        "claim": {k: v for k, v in claim.items() if k != "career"},
        "career": career,
        "liquidation": liquidate_claim(claim, RULESET),
        "career_sources": runs,
    }
    _, raw = envelope_json(
        b"{}",
        PensionLiquidated,
        producer="liquidation",
        correlation_id=claim["claim_id"],
        causation_id=uuid.uuid4(),
        occurred_at=datetime(2026, 11, 30, tzinfo=UTC),
    )
    return {**orjson.loads(raw), "data": data}  # Python values: past 64 bits, tuples too


def _same_decision(doc: dict[str, Any]) -> None:
    try:
        want = CONTRACT.model_validate(doc)
    except ValidationError:
        with pytest.raises((ValidationError, ValueError)):
            arrived(doc)
        return
    got = arrived(doc)
    assert got.envelope.model_dump(mode="json") == want.model_dump(mode="json")
    # The same values of the same types, as the control stores them: a bool is not a base of 1.
    assert _typed(got.envelope.data.career) == _typed(want.data.career)
    if got.career is not None:
        assert got.career == read_career(want.data.career)
    assert _review(got.envelope.data, got.career) == _review(want.data, None)


def _typed(career: Any) -> list[tuple[tuple[Any, type], ...]]:
    return [tuple((value, type(value)) for value in entry) for entry in career]


def _review(data: PensionLiquidated, read: Any) -> Any:
    """The flags and re-computation, or what the rules could not read (the control flags it)."""
    try:
        return control_review(
            data.claim, data.career, data.liquidation, RULESET, already_approved=False, read=read
        )
    except InvalidInput as exc:
        return str(exc)


@settings(max_examples=150, deadline=None)
@given(claims(), _runs)
def test_a_liquidation_is_decoded_as_the_contract_says(claim: dict[str, Any], runs: Any) -> None:
    """Careers as the liquidation writes them: the review reads the decode's reading."""
    career = [[e["period"], e["base"]] for e in claim["career"]]
    _same_decision(_document(claim, career, runs))


@settings(max_examples=300, deadline=None)
@given(claims(), _careers(), _runs)
def test_a_hostile_career_is_decoded_as_the_contract_says(
    claim: dict[str, Any], career: Any, runs: Any
) -> None:
    """Careers with hostile entries (past 64 bits, bools, floats, bad periods, objects, other
    shapes): refused, coerced or flagged exactly as when the contract validated them whole."""
    _same_decision(_document(claim, career, runs))


@pytest.mark.parametrize(
    "bad",
    [
        True,
        False,
        5.0,
        "5",
        -1,
        2**70,
        None,
        "2026-13",
        ("2001-01", 5),
        ["2001-01", 5, 0],
        {"period": "2001-01"},
    ],
)
def test_one_entry_the_contract_coerces_refuses_or_the_rules_flag(bad: Any) -> None:
    """A valid career with one entry, or one base or period, made hostile: what the contract
    coerces (a bool or "5" for a base), what it refuses, and what the rules flag."""
    claim = {
        "claim_id": "C-D",
        "worker_id": "W-D",
        "regime": "INPS",
        "category": "salarie",
        "grade": None,
        "birth_date": "1960-01-01",
        "effective_date": "2021-01-01",
        "career": [{"period": f"{2000 + k // 12}-{k % 12 + 1:02d}", "base": 150_000} for k in range(240)],
    }
    for where in ("base", "period", "entry"):
        career: list[Any] = [[e["period"], e["base"]] for e in claim["career"]]
        if where == "base":
            career[7][1] = bad
        elif where == "period":
            career[7][0] = bad
        else:
            career[7] = bad
        _same_decision(_document(claim, career, "runs"))
