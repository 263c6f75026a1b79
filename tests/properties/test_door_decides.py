"""What the gateway receipts, the assessment decides: one definition of a readable declaration.

Declarations are generated with hostile values (control characters, huge and negative
numbers, odd regimes, filings and periods); every one that the gateway's model accepts is
encoded as the gateway encodes it, decoded as the assessment decodes it, and assessed —
accepted or rejected with codes, never an exception (which would park it in the DLQ and
leave the employer without a decision).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.assessment.handlers import EmployerRecord, assess_submitted, decode_submitted
from services.gateway.handlers import submitted_message
from services.gateway.schemas import DeclarationIn
from services.rules import load_ruleset

RULESET = load_ruleset()
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

hostile_text = st.one_of(
    st.sampled_from(["W1", "W2", "salarie", "fonctionnaire", "INPS", "CMSS", "", " W", "W\n", "=1+1", "@x"]),
    st.text(min_size=0, max_size=70),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8),
)
hostile_int = st.one_of(
    st.integers(min_value=-40, max_value=40),
    st.integers(min_value=-(10**13), max_value=10**13),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30]),
)
periods = st.one_of(
    st.sampled_from(["2026-10", "2004-06", "2004-07", "2010-10", "2010-11", "2019-01", "2030-01"]),
    st.sampled_from(["2015-03\n", "2015-3", "2015-13", "0000-01", "9999-12", "２０１５-03", ""]),
    st.text(max_size=9),
)


valid_ids = st.from_regex(r"[A-Za-z0-9=+@-]([A-Za-z0-9/=+@\-_. ]{0,8}[A-Za-z0-9])?", fullmatch=True)
valid_int = st.integers(min_value=-5, max_value=10**9)


def _line(
    text: st.SearchStrategy[str], number: st.SearchStrategy[int], days: st.SearchStrategy[int]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "worker_id": text,
            "category": st.one_of(st.sampled_from(["salarie", "fonctionnaire", "militaire"]), text),
            "days_worked": days,
            "base_salary": number,
        },
        optional={"bonuses": number, "benefits_in_kind": number, "expense_reimbursements": number},
    )


def _declarations(
    text: st.SearchStrategy[str],
    number: st.SearchStrategy[int],
    period: st.SearchStrategy[str],
    *,
    small: st.SearchStrategy[int] | None = None,
    filings: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    small = number if small is None else small
    filings = (
        filings
        if filings is not None
        else st.one_of(st.sampled_from(["monthly", "quarterly", "weekly", "", "30"]), text)
    )
    return st.fixed_dictionaries(
        {
            "employer": st.fixed_dictionaries(
                {"id": text, "regime": st.one_of(st.sampled_from(["INPS", "CMSS", "inps"]), text)},
                optional={
                    "risk_class": st.one_of(st.none(), small),
                    "filing": filings,
                },
            ),
            "period": period,
            "lines": st.lists(_line(text, number, small), min_size=0, max_size=6),
        },
        optional={"replaces": st.one_of(st.none(), text)},
    )


# Mostly readable documents with hostile values here and there, and wholly hostile ones.
readable = _declarations(
    valid_ids,
    valid_int,
    st.sampled_from(["2026-10", "2004-07", "2010-11", "2030-01"]),
    small=st.integers(-2, 40),
    filings=st.sampled_from(["monthly", "quarterly"]),
)
declarations = st.one_of(
    readable,
    _declarations(
        st.one_of(valid_ids, valid_ids, valid_ids, hostile_text), st.one_of(valid_int, hostile_int), periods
    ),
    _declarations(hostile_text, hostile_int, periods),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(doc=declarations, registered=st.booleans())
def test_every_declaration_the_gateway_accepts_is_decided(doc: dict[str, Any], registered: bool) -> None:
    try:
        decl = DeclarationIn.model_validate(doc)
    except ValidationError:
        assume(False)  # refused at the door with a 422: nothing was receipted
        return
    declaration_id = "D-20261130-0123456789abcdef"
    _, raw = submitted_message(declaration_id, decl, "0" * 64, NOW)
    env = decode_submitted(raw)  # a DLQ entry if this raised
    employer = EmployerRecord(decl.employer.id, "INPS", 2, "monthly", True) if registered else None
    outcome = assess_submitted(env, raw, RULESET, employer=employer, known_workers=set())
    assert outcome.status in ("accepted", "rejected")
    assert outcome.declaration_id == declaration_id
    assert {m.topic for m in outcome.messages} >= {"kalo.audit"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("period", "2015-03\n"),
        ("period", "2015-3"),
        ("filing", "weekly"),
        ("filing", ""),
        ("filing", "30"),
        ("risk_class", 2**64),
        ("risk_class", -(2**63) - 1),
        ("risk_class", 10**29),
        ("employer_id", "E\x00"),
        ("worker_id", "W\n1"),
        ("worker_id", "W\u200b"),
        ("worker_id", "x" * 65),
        ("days_worked", 10**6),
        ("base_salary", 10**13),
    ],
)
def test_what_the_assessment_cannot_read_is_refused_at_the_door(field: str, value: object) -> None:
    doc: dict[str, Any] = {
        "employer": {"id": "E1", "regime": "INPS", "risk_class": 2, "filing": "monthly"},
        "period": "2015-03",
        "lines": [{"worker_id": "W1", "category": "salarie", "days_worked": 30, "base_salary": 50_000}],
    }
    if field in ("filing", "risk_class"):
        doc["employer"][field] = value
    elif field == "employer_id":
        doc["employer"]["id"] = value
    elif field == "period":
        doc["period"] = value
    else:
        doc["lines"][0][field] = value
    with pytest.raises(ValidationError) as refused:
        DeclarationIn.model_validate(doc)
    named = {".".join(str(p) for p in e["loc"]) for e in refused.value.errors()}
    where = {"employer_id": "employer.id", "filing": "employer.filing", "risk_class": "employer.risk_class"}
    assert named == {where.get(field, field if field == "period" else f"lines.0.{field}")}
