"""Liquidation service layer: filed claims in → liquidations (and their audit records) out.

`liquidate_batch` takes its ports as arguments (the careers it reads, the sender of outputs,
the dead letters): the agent only decodes Kafka's records and calls it, and unit tests run it
on fakes. Each claim is liquidated by `services.rules` on the worker's whole career (assessed
declarations and imported history) as the ledger held it at one recorded point, the same for
the whole batch. The same claim always yields the same event ids, so a redelivered claim
produces duplicates that every sink drops.

What a claim says is never a reason to park it: an unknown worker or no career (NO_CAREER),
a CMSS claim without a grade (UNKNOWN_GRADE), an unknown regime… each ends in a `rejected`
liquidation with its reason code. Only bytes that are not a claim (or a bug) are parked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson

from contracts.audit import AuditRecorded
from contracts.envelope import Envelope, Payload, envelope_json
from contracts.pensions import PensionClaimFiled, PensionLiquidated
from services.common.hashing import sha256_hex
from services.common.outage import is_outage
from services.rules import Claim, Ruleset, liquidate

PRODUCER = "liquidation"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """A consumed record: where it was, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Career:
    """A worker's career as the rules count it (RULES.md §3): one entry per month, the bases
    of several employers added, oldest first; and how many rows (month and employer) it was
    made of, from assessed declarations and imported from before Kalo."""

    months: list[tuple[str, int]]
    assessed_rows: int = 0
    imported_rows: int = 0


@dataclass(frozen=True)
class Snapshot:
    """The careers of a batch's workers, read at one point: `ledger_offsets` (per career topic
    and partition, the next offset the ledger had applied) and `read_at`."""

    careers: dict[str, Career]
    read_at: datetime
    ledger_offsets: dict[str, dict[str, int]]


class Careers(Protocol):
    async def read(self, worker_ids: list[str]) -> Snapshot:
        """The careers of these workers (absent: none known), all read at one point."""
        ...


class Sender(Protocol):
    """Outputs by registry topic name; `flush` returns once all are acknowledged."""

    async def send(self, registry_name: str, key: str, value: bytes) -> None: ...

    async def flush(self) -> None: ...


class DeadLetters(Protocol):
    async def park(self, message: Message, error: BaseException) -> None: ...


@dataclass
class Outgoing:
    topic: str  # registry name
    key: str
    value: bytes


@dataclass
class Outcome:
    claim_id: str
    worker_id: str
    regime: str
    decision: str
    reason: str | None
    monthly_pension: int
    lump_sum: int
    filed_at: datetime | None
    messages: list[Outgoing] = field(default_factory=list)


_CLAIM = Envelope[PensionClaimFiled]
NO_CAREER = Career([])
_MONTHS: dict[str, date] = {}


def decode_claim(raw: bytes) -> Envelope[PensionClaimFiled]:
    return _CLAIM.model_validate_json(raw)


def _month(period: str) -> date:
    """'YYYY-MM' → its first day (careers hold valid periods; a few hundred distinct ones)."""
    day = _MONTHS.get(period)
    if day is None:
        day = _MONTHS[period] = date(int(period[:4]), int(period[5:7]), 1)
    return day


def claim_document(d: PensionClaimFiled) -> dict[str, Any]:
    """The claim as filed: RULES.md §5 without career, and who filed it (for maker ≠ checker)."""
    return {
        "claim_id": d.claim_id,
        "worker_id": d.worker_id,
        "regime": d.regime,
        "category": d.category,
        "grade": d.grade,
        "birth_date": d.birth_date.isoformat(),
        "effective_date": d.effective_date.isoformat(),
        "replaces": d.replaces,
        "filed_by": d.filed_by,
        "filed_by_label": d.filed_by_label,
    }


def liquidate_filed(
    env: Envelope[PensionClaimFiled], raw: bytes, career: Career, snapshot: Snapshot, ruleset: Ruleset
) -> Outcome:
    """Liquidate one claim on its career; the liquidation and its audit record."""
    d = env.data
    claim = Claim(
        claim_id=d.claim_id,
        worker_id=d.worker_id,
        regime=d.regime,
        category=d.category,
        grade=d.grade,
        birth_date=d.birth_date,
        effective_date=d.effective_date,
        career=tuple((_month(period), base) for period, base in career.months),
    )
    liquidation = liquidate(claim, ruleset).as_json()
    as_of = {
        "read_at": snapshot.read_at,
        "ledger_offsets": snapshot.ledger_offsets,
        "assessed_rows": career.assessed_rows,
        "imported_rows": career.imported_rows,
    }
    payload = orjson.dumps(
        {
            "claim_id": d.claim_id,
            "worker_id": d.worker_id,
            "ruleset": ruleset.id,
            "claim": claim_document(d),
            "career": career.months,
            "liquidation": liquidation,
            "as_of": as_of,
            "filed_at": d.filed_at,
        },
        option=orjson.OPT_UTC_Z,
    )
    outcome = Outcome(
        d.claim_id,
        d.worker_id,
        d.regime,
        liquidation["decision"],
        liquidation["reason"],
        liquidation["monthly_pension"],
        liquidation["lump_sum"],
        d.filed_at,
    )
    occurred_at = datetime.now(UTC)

    def send(topic: str, key: str, data_type: type[Payload], data_json: bytes) -> None:
        _, value = envelope_json(
            data_json,
            data_type,
            producer=PRODUCER,
            correlation_id=d.claim_id,
            causation_id=env.id,
            occurred_at=occurred_at,
        )
        outcome.messages.append(Outgoing(topic, key, value))

    send("kalo.pensions.liquidations", d.worker_id, PensionLiquidated, payload)
    audit = {
        "action": PensionLiquidated.TYPE,
        "subject": d.claim_id,
        "ruleset": ruleset.id,
        # The claim as received and the liquidation as sent (its payload, career and point
        # included): an auditor re-derives the one from the other.
        "input_sha256": sha256_hex(raw),
        "output_sha256": sha256_hex(payload),
        "details": {
            "worker_id": d.worker_id,
            "regime": d.regime,
            "decision": liquidation["decision"],
            "reason": liquidation["reason"],
            "insured_months": liquidation["insured_months"],
            "monthly_pension": liquidation["monthly_pension"],
            "lump_sum": liquidation["lump_sum"],
            "career_months": len(career.months),
            "as_of": as_of,
        },
    }
    send("kalo.audit", d.claim_id, AuditRecorded, orjson.dumps(audit, option=orjson.OPT_UTC_Z))
    return outcome


class OutputTooLarge(ValueError):
    """An output Kafka would refuse: the claim is parked, the partition flows."""


async def liquidate_batch(
    messages: Sequence[Message],
    ruleset: Ruleset,
    *,
    careers: Careers,
    sender: Sender,
    dead_letters: DeadLetters,
    max_output_bytes: int,
) -> list[Outcome]:
    """Liquidate a batch and send every output. A message that fails on its own (not a claim,
    a bug) is parked and the others liquidated; only an outage of PostgreSQL or Kafka is
    raised, for the caller to retry the batch."""
    decoded = []
    for message in messages:
        try:
            decoded.append((message, decode_claim(message.value)))
        except Exception as exc:  # not a claim: park it, keep the partition flowing
            await dead_letters.park(message, exc)
    try:
        outcomes = await _liquidate_together(
            decoded, ruleset, careers, sender, dead_letters, max_output_bytes
        )
    except Exception as exc:
        if is_outage(exc):
            raise
        # The batch's careers could not be read (say an id PostgreSQL refuses): one claim at a
        # time, so only the culprit is parked. Outputs sent twice carry the same ids.
        log.warning("batch failed (%r); liquidating its %d claims one by one", exc, len(decoded))
        outcomes = []
        for one in decoded:
            try:
                outcomes += await _liquidate_together(
                    [one], ruleset, careers, sender, dead_letters, max_output_bytes
                )
            except Exception as single:
                if is_outage(single):
                    raise
                await dead_letters.park(one[0], single)
    await sender.flush()
    return outcomes


async def _liquidate_together(
    decoded: list[tuple[Message, Envelope[PensionClaimFiled]]],
    ruleset: Ruleset,
    careers: Careers,
    sender: Sender,
    dead_letters: DeadLetters,
    max_output_bytes: int,
) -> list[Outcome]:
    """One read of every worker's career at one point, then each claim on its own."""
    if not decoded:
        return []
    snapshot = await careers.read(sorted(_workers(env for _, env in decoded)))
    outcomes = []
    for message, env in decoded:
        try:
            outcome = liquidate_filed(
                env, message.value, snapshot.careers.get(env.data.worker_id, NO_CAREER), snapshot, ruleset
            )
            for out in outcome.messages:
                if len(out.value) > max_output_bytes:
                    raise OutputTooLarge(
                        f"{out.topic} message of {len(out.value):,} bytes exceeds {max_output_bytes:,}"
                    )
        except Exception as exc:  # a bug: the rules decide every claim the contract lets through
            log.exception("liquidation of %s failed", env.data.claim_id)
            await dead_letters.park(message, exc)
            continue
        for out in outcome.messages:
            await sender.send(out.topic, out.key, out.value)
        outcomes.append(outcome)
    return outcomes


def _workers(envs: Iterable[Envelope[PensionClaimFiled]]) -> set[str]:
    return {env.data.worker_id for env in envs}
