"""Assessment service layer: one submitted declaration in → the events it causes out.

Pure apart from the clock stamped on envelopes: the agent decodes bytes and sends what
this returns; the same input always yields the same event ids, so a redelivered or
reprocessed declaration produces duplicates that every sink drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from contracts.audit import AuditRecorded
from contracts.declarations import (
    LINE_FIELDS,
    AmoDeductions,
    DeclarationAssessed,
    DeclarationRejected,
    DeclarationSubmitted,
    WorkerPreRegistered,
)
from contracts.envelope import Envelope, Payload, envelope_json
from services.assessment.encoding import amo_parts, rules_input
from services.assessment.registry import EmployerRecord
from services.common.hashing import sha256_hex
from services.rules import Ruleset, assess_declaration_compact

PRODUCER = "assessment"


@dataclass
class Outgoing:
    topic: str  # registry name, e.g. kalo.declarations.assessed
    key: str
    value: bytes


@dataclass
class Outcome:
    declaration_id: str
    status: str
    lines: int
    submitted_at: datetime
    messages: list[Outgoing] = field(default_factory=list)
    by_branch: dict[str, int] = field(default_factory=dict)  # francs per branch (accepted only)
    errors: list[dict[str, Any]] = field(default_factory=list)
    preregistered: int = 0


_SUBMITTED = Envelope[DeclarationSubmitted]
# A rejection lists at most this many errors of each code, with the counts of all: 50,000
# lines breaking six rules each would otherwise make a report larger than a Kafka message.
MAX_ERRORS_PER_CODE = 1000


def capped_errors(
    errors: list[dict[str, Any]], per_code: int
) -> tuple[list[dict[str, Any]], dict[str, int], int]:
    """The first `per_code` errors of each code (in their order), the count per code, and
    how many were left out."""
    counts: dict[str, int] = {}
    listed = []
    for error in errors:
        seen = counts.get(error["code"], 0)
        counts[error["code"]] = seen + 1
        if seen < per_code:
            listed.append(error)
    return listed, counts, len(errors) - len(listed)


def decode_submitted(raw: bytes) -> Envelope[DeclarationSubmitted]:
    """The envelope and every field validated by the contract, except the types inside the
    line arrays: the rules check those strictly anyway (`assess_declaration_compact` with
    `line_arrays`: InvalidInput naming the line and field), and letting pydantic build
    hundreds of thousands of tuples first cost more than the assessment itself."""
    doc = orjson.loads(raw)
    data = doc.get("data") if isinstance(doc, dict) else None
    lines = data.get("lines") if isinstance(data, dict) else None
    if type(lines) is not list:
        return _SUBMITTED.model_validate(doc)  # the contract says what is wrong
    for n, line in enumerate(lines):
        # Worker ids are read before the rules run (registry lookups): shape checked here.
        if type(line) is not list or len(line) != len(LINE_FIELDS) or type(line[0]) is not str:
            raise ValueError(f"data.lines[{n}] must be an array of {', '.join(LINE_FIELDS)}")
    env = _SUBMITTED.model_validate({**doc, "data": {**data, "lines": []}})
    return env.model_copy(update={"data": env.data.model_copy(update={"lines": lines})})


def _json(payload: dict[str, Any]) -> bytes:
    # Field order and names are those of the contracts (a unit test validates the bytes).
    return orjson.dumps(payload, option=orjson.OPT_UTC_Z)


def assess_submitted(
    env: Envelope[DeclarationSubmitted],
    raw: bytes,
    ruleset: Ruleset,
    *,
    employer: EmployerRecord | None,
    known_workers: set[str],
    max_errors_per_code: int = MAX_ERRORS_PER_CODE,
) -> Outcome:
    """Assess one declaration; `employer` and `known_workers` come from the registries."""
    d = env.data
    record = None if employer is None else employer.as_json()
    result = assess_declaration_compact(rules_input(d), ruleset, line_arrays=True, registry=record)
    employer_id = d.employer.id
    outcome = Outcome(d.declaration_id, result["status"], len(d.lines), d.submitted_at)

    occurred_at = datetime.now(UTC)  # one instant for everything this declaration causes

    def send(topic: str, key: str, data_type: type[Payload], data_json: bytes) -> None:
        _, value = envelope_json(
            data_json,
            data_type,
            producer=PRODUCER,
            correlation_id=d.declaration_id,
            causation_id=env.id,
            occurred_at=occurred_at,
        )
        outcome.messages.append(Outgoing(topic, key, value))

    output_type: type[Payload]
    if result["status"] == "accepted":
        unknown = sorted({line[0] for line in d.lines} - known_workers)
        warnings = list(result.get("warnings", []))
        if unknown:
            warnings.append(f"{len(unknown)} worker(s) not yet registered were pre-registered")
        lines, rates = result["lines"], result["rates"]
        output_type = DeclarationAssessed
        output_json = _json(
            {
                "declaration_id": d.declaration_id,
                "employer_id": employer_id,
                "regime": d.employer.regime,
                "period": d.period,
                "replaces": d.replaces,
                "ruleset": result["ruleset"],
                "submitted_at": d.submitted_at,
                "due_date": result["due_date"],
                "months_late": result["months_late"],
                "surcharge": result["surcharge"],
                "totals": result["totals"],
                "rates": rates,
                "lines": lines,
                "warnings": warnings,
            }
        )
        outcome.by_branch = dict(result["totals"]["by_branch"])
        send("kalo.declarations.assessed", employer_id, output_type, output_json)
        parts = amo_parts(lines)
        amo = {
            "declaration_id": d.declaration_id,
            "employer_id": employer_id,
            "regime": d.employer.regime,
            "period": d.period,
            "replaces": d.replaces,
            "employee_total": sum(p[2] for p in parts),
            "employer_total": sum(p[3] for p in parts),
            "workers": parts,
        }
        send("kalo.amo.deductions", employer_id, AmoDeductions, _json(amo))
        if unknown:
            registration = {
                "declaration_id": d.declaration_id,
                "employer_id": employer_id,
                "period": d.period,
                "worker_ids": unknown,
            }
            send("kalo.workers.registrations", employer_id, WorkerPreRegistered, _json(registration))
            outcome.preregistered = len(unknown)
    else:
        outcome.errors = [
            {k: e.get(k) for k in ("line", "worker_id", "code", "message")} for e in result["errors"]
        ]
        listed, counts, omitted = capped_errors(outcome.errors, max_errors_per_code)
        rejection: dict[str, Any] = {
            "declaration_id": d.declaration_id,
            "employer_id": employer_id,
            "period": d.period,
            "replaces": d.replaces,
            "ruleset": result["ruleset"],
            "submitted_at": d.submitted_at,
            "errors": listed,
        }
        if omitted:
            rejection["error_counts"] = counts
            rejection["errors_omitted"] = omitted
        output_type = DeclarationRejected
        output_json = _json(rejection)
        send("kalo.declarations.rejected", employer_id, output_type, output_json)

    audit = {
        "action": output_type.TYPE,
        "subject": d.declaration_id,
        "ruleset": result["ruleset"],
        # The input as received, the output as sent (its payload): an auditor re-derives both.
        "input_sha256": sha256_hex(raw),
        "output_sha256": sha256_hex(output_json),
        "details": {
            "employer_id": employer_id,
            "period": d.period,
            "lines": len(d.lines),
            "status": result["status"],
            "total": result["totals"]["total"],
            "errors": len(result["errors"]),
            # What the registry said: with the input and the ruleset, the decision re-derives.
            "registry": record,
        },
    }
    send("kalo.audit", d.declaration_id, AuditRecorded, _json(audit))
    return outcome


assert LINE_FIELDS[0] == "worker_id"  # unknown workers are read from the first field
