"""Assessment service layer: submitted declarations in → the events they cause out.

`assess_batch` takes its ports as arguments (the registry, the sender of outputs, the dead
letters): the agent only decodes Kafka's records and calls it, and unit tests run it on
fakes. `assess_submitted` is pure apart from the clock stamped on envelopes; the same input
always yields the same event ids, so a redelivered or reprocessed declaration produces
duplicates that every sink drops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from contracts.audit import AuditRecorded
from contracts.declarations import (
    LINE_FIELDS,
    MAX_ERRORS_PER_CODE,
    AmoDeductions,
    DeclarationAssessed,
    DeclarationRejected,
    DeclarationSubmitted,
    WorkerPreRegistered,
    capped_errors,
)
from contracts.envelope import Envelope, Envelopes, Payload
from services.assessment.encoding import amo_parts, rules_input
from services.common import logs
from services.common.batches import OutputTooLarge as OutputTooLarge  # what parks an output too large
from services.common.batches import check_sizes, decoded_or_parked, together_or_one_by_one
from services.common.hashing import sha256_hex
from services.rules import Ruleset, assess_declaration_compact

PRODUCER = "assessment"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmployerRecord:
    """An employer as the registry holds it."""

    id: str
    regime: str
    risk_class: int | None
    filing: str
    active: bool

    def as_json(self) -> dict[str, Any]:
        """The record as the rules read it (services.rules.registry)."""
        return {
            "id": self.id,
            "regime": self.regime,
            "risk_class": self.risk_class,
            "filing": self.filing,
            "active": self.active,
        }


@dataclass(frozen=True)
class Message:
    """A consumed record: where it was, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Registry(Protocol):
    async def employers(self, ids: Iterable[str]) -> dict[str, EmployerRecord]: ...

    async def known_workers(self, worker_ids: list[str]) -> set[str]: ...


class Sender(Protocol):
    """Outputs by registry topic name; `flush` returns once all are acknowledged."""

    async def send(self, registry_name: str, key: str, value: bytes) -> None: ...

    async def flush(self) -> None: ...


class DeadLetters(Protocol):
    """Parks a message with its error (kalo.dlq), through the same sender as the outputs."""

    async def park(self, message: Message, error: BaseException) -> None: ...


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
    # The lines go into the fresh (frozen) model before anyone sees it: two model_copy
    # calls per declaration cost 3% of the assessment.
    object.__setattr__(env.data, "lines", lines)
    return env


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

    envelopes = Envelopes(
        producer=PRODUCER,
        correlation_id=d.declaration_id,
        causation_id=env.id,
        occurred_at=datetime.now(UTC),  # one instant for everything this declaration causes
    )

    def send(topic: str, key: str, data_type: type[Payload], data_json: bytes) -> None:
        outcome.messages.append(Outgoing(topic, key, envelopes.json(data_json, data_type)))

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
        "actor": PRODUCER,  # the assessment decided, by the rules
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


async def assess_batch(
    messages: Sequence[Message],
    ruleset: Ruleset,
    *,
    registry: Registry,
    sender: Sender,
    dead_letters: DeadLetters,
    max_output_bytes: int,
) -> list[Outcome]:
    """Assess a batch and send every output. A message that fails on its own (undecodable,
    refused by PostgreSQL, an output too large, a bug) is parked and the others assessed;
    only an outage of PostgreSQL or Kafka is raised, for the caller to retry the batch
    (services.common.batches)."""
    decoded = await decoded_or_parked(messages, lambda m: decode_submitted(m.value), dead_letters.park)

    async def together(items: list[tuple[Message, Envelope[DeclarationSubmitted]]]) -> list[Outcome]:
        return await _assess_together(items, ruleset, registry, sender, dead_letters, max_output_bytes)

    outcomes = await together_or_one_by_one(decoded, together, dead_letters.park, what="declarations")
    await sender.flush()
    return outcomes


async def _assess_together(
    decoded: list[tuple[Message, Envelope[DeclarationSubmitted]]],
    ruleset: Ruleset,
    registry: Registry,
    sender: Sender,
    dead_letters: DeadLetters,
    max_output_bytes: int,
) -> list[Outcome]:
    """One registry lookup for all, then each declaration on its own."""
    employers = await registry.employers(env.data.employer.id for _, env in decoded)
    known = await registry.known_workers(sorted({line[0] for _, env in decoded for line in env.data.lines}))
    outcomes = []
    for message, env in decoded:
        with logs.handling(env):  # its ids on every line logged meanwhile
            try:
                outcome = assess_submitted(
                    env,
                    message.value,
                    ruleset,
                    employer=employers.get(env.data.employer.id),
                    known_workers=known,
                )
                check_sizes(outcome.messages, max_output_bytes)
            except Exception as exc:  # a bug or bad data the contracts let through
                log.exception("assessment of %s failed", env.data.declaration_id)
                await dead_letters.park(message, exc)
                continue
            for out in outcome.messages:
                await sender.send(out.topic, out.key, out.value)
            log.debug("declaration %s %s: %d lines", env.data.declaration_id, outcome.status, outcome.lines)
            outcomes.append(outcome)
    await sender.flush()
    return outcomes
