"""The assessment's outputs: contract-valid bytes, deterministic ids, every event a declaration causes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from contracts.envelope import Envelope
from contracts.topics import BY_NAME
from services.assessment.handlers import EmployerRecord, Outcome, assess_submitted, decode_submitted
from services.rules import InvalidInput, load_ruleset
from tests.support.submitted import submitted_event

RULESET = load_ruleset()
AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
EMPLOYER = {"id": "E1", "regime": "INPS", "risk_class": 2, "filing": "monthly"}
REGISTERED = EmployerRecord("E1", "INPS", 2, "monthly", True)


def line(worker: str, salary: int) -> dict[str, Any]:
    return {"worker_id": worker, "category": "salarie", "days_worked": 30, "base_salary": salary}


def run(
    lines: list[dict[str, Any]], employer: EmployerRecord | None = REGISTERED, known=frozenset()
) -> Outcome:
    raw = (
        submitted_event(
            declaration_id="D1",
            employer=EMPLOYER,
            period="2026-10",
            lines=lines,
            submitted_at=AT,
            payload_sha256="0" * 64,
        )
        .model_dump_json()
        .encode()
    )
    return assess_submitted(decode_submitted(raw), raw, RULESET, employer=employer, known_workers=set(known))


def by_topic(outcome: Outcome) -> dict[str, Envelope[Any]]:
    """Every output validated by the contract its topic carries."""
    out = {}
    for m in outcome.messages:
        (model,) = BY_NAME[m.topic].values
        out[m.topic] = Envelope[model].model_validate_json(m.value)  # type: ignore[valid-type]
    return out


def test_an_accepted_declaration_emits_assessment_amo_registration_and_audit() -> None:
    outcome = run([line("W1", 250_000), line("W2", 100_000)], known={"W2"})
    events = by_topic(outcome)
    assert sorted(events) == [
        "kalo.amo.deductions",
        "kalo.audit",
        "kalo.declarations.assessed",
        "kalo.workers.registrations",
    ]
    assessed = events["kalo.declarations.assessed"].data
    assert assessed.totals.by_branch == {"PF": 28_000, "ATMP": 7_000, "PVID": 31_500, "AMO": 22_960}
    assert [ln[0] for ln in assessed.lines] == ["W1", "W2"]
    assert assessed.warnings == ["1 worker(s) not yet registered were pre-registered"]
    assert events["kalo.amo.deductions"].data.workers == [
        ("W1", 250_000, 7_650, 8_750),
        ("W2", 100_000, 3_060, 3_500),
    ]
    assert events["kalo.workers.registrations"].data.worker_ids == ["W1"]
    audit = events["kalo.audit"].data
    assert audit.action == "declaration.assessed" and audit.subject == "D1"
    assert audit.actor == "assessment"
    assert audit.ruleset == assessed.ruleset == RULESET.id
    assessed_bytes = next(m.value for m in outcome.messages if m.topic == "kalo.declarations.assessed")
    payload = orjson.dumps(orjson.loads(assessed_bytes)["data"])
    assert audit.output_sha256 == hashlib.sha256(payload).hexdigest()
    assert outcome.by_branch == assessed.totals.by_branch and outcome.preregistered == 1


def test_the_same_declaration_gives_the_same_event_ids() -> None:
    first = {t: e.id for t, e in by_topic(run([line("W1", 250_000)])).items()}
    again = {t: e.id for t, e in by_topic(run([line("W1", 250_000)])).items()}
    assert first == again and len(set(first.values())) == len(first)


def test_registry_errors_reject_the_declaration() -> None:
    outcome = run([line("W1", 250_000)], employer=None)
    events = by_topic(outcome)
    assert sorted(events) == ["kalo.audit", "kalo.declarations.rejected"]
    assert [e.code for e in events["kalo.declarations.rejected"].data.errors] == ["UNKNOWN_EMPLOYER"]
    assert events["kalo.audit"].data.action == "declaration.rejected"
    inactive = EmployerRecord("E1", "INPS", 3, "monthly", False)
    codes = [e["code"] for e in run([line("W1", 250_000)], employer=inactive).errors]
    assert codes == ["EMPLOYER_INACTIVE", "REGISTRY_MISMATCH"]


def test_business_errors_are_listed_with_line_and_worker() -> None:
    outcome = run([line("W1", 250_000), line("W1", -5)])
    assert outcome.status == "rejected"
    codes = {(e["code"], e["line"], e["worker_id"]) for e in outcome.errors}
    assert ("NEGATIVE_AMOUNT", 2, "W1") in codes and ("DUPLICATE_WORKER", 2, "W1") in codes


def raw_with_lines(lines: list[object]) -> bytes:
    doc = orjson.loads(
        submitted_event(
            declaration_id="D1",
            employer=EMPLOYER,
            period="2026-10",
            lines=[line("W1", 250_000)],
            submitted_at=AT,
            payload_sha256="0" * 64,
        ).model_dump_json()
    )
    doc["data"]["lines"] = lines
    return orjson.dumps(doc)


def test_a_line_that_is_not_an_array_of_the_fields_is_undecodable() -> None:
    for bad in ({"worker_id": "W1"}, ["W1", "salarie", 30], [7, "salarie", 30, 1, 0, 0, 0]):
        with pytest.raises(ValueError, match=r"data.lines\[0\] must be an array of worker_id"):
            decode_submitted(raw_with_lines([bad]))


def test_a_field_of_the_wrong_type_in_a_line_is_refused_by_the_rules_with_its_place() -> None:
    raw = raw_with_lines([["W1", "salarie", "30", 250_000, 0, 0, 0]])
    with pytest.raises(InvalidInput, match=r"lines\[0\].days_worked must be an integer.*\(line 1\)"):
        assess_submitted(decode_submitted(raw), raw, RULESET, employer=REGISTERED, known_workers=set())


def test_the_envelope_is_still_validated_by_the_contract() -> None:
    doc = orjson.loads(raw_with_lines([["W1", "salarie", 30, 250_000, 0, 0, 0]]))
    del doc["data"]["period"]
    with pytest.raises(ValueError, match="period"):
        decode_submitted(orjson.dumps(doc))
