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
from collections.abc import Iterable, KeysView, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson

from contracts.audit import AuditRecorded
from contracts.envelope import Envelope, Payload, envelope_json
from contracts.pensions import PensionClaimFiled, PensionLiquidated, source_runs
from services.common import logs
from services.common.batches import check_sizes, decoded_or_parked, together_or_one_by_one
from services.common.hashing import sha256_hex
from services.rules import Claim, Ruleset, liquidate
from services.rules.dates import FIRST_DAYS

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
class Rows:
    """Career rows of one worker, one per month and employer, as three parallel lists."""

    periods: Sequence[str] = ()
    # None where it cannot matter: an imported row before any month Kalo assessed.
    employers: Sequence[str | None] = ()
    bases: Sequence[int] = ()


@dataclass(frozen=True)
class CareerRows:
    """What the ledger holds of a worker's career: months assessed by Kalo, months imported
    from before Kalo."""

    assessed: Rows = Rows()
    imported: Rows = Rows()


@dataclass(frozen=True)
class Career:
    """A worker's career as the rules count it (RULES.md §3): one entry per month, the bases
    of several employers added, oldest first; and how many rows (month and employer) it was
    made of, from assessed declarations and imported from before Kalo."""

    months: list[tuple[str, int]]
    assessed_rows: int = 0
    imported_rows: int = 0
    # Where the months come from, as runs (contracts.pensions.source_runs).
    sources: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """The career rows of a batch's workers, read at one point: `ledger_offsets` (per career
    topic and partition, the next offset the ledger had applied) and `read_at`."""

    careers: dict[str, CareerRows]
    read_at: datetime
    ledger_offsets: dict[str, dict[str, int]]


def merge_career(rows: CareerRows) -> Career:
    """The whole career: assessed and imported months together, an imported row left out where
    Kalo assessed the same employer's same month (Kalo's own record wins); then, as RULES.md
    §3 counts them, one entry per month with the bases of its employers added, and where each
    month comes from (assessed, imported, or both)."""
    a, i = rows.assessed, rows.imported
    periods, employers, bases = i.periods, i.employers, i.bases
    overlap = set(a.periods).intersection(periods) if a.periods else ()
    imported = len(periods)
    if overlap:  # rare: history imported for months Kalo also assessed
        kalo = set(zip(a.periods, a.employers, strict=True))
        kept = [(p, e, b) for p, e, b in zip(periods, employers, bases, strict=True) if (p, e) not in kalo]
        imported = len(kept)
        periods, bases = [p for p, _, _ in kept], [b for _, _, b in kept]
    months = _by_month(periods, bases)
    assessed = _by_month(a.periods, a.bases)
    sources = _sources(months.keys(), assessed.keys())
    for period, base in assessed.items():
        months[period] = months.get(period, 0) + base
    return Career(sorted(months.items()), len(a.periods), imported, sources)


def _sources(imported: KeysView[str], assessed: KeysView[str]) -> list[tuple[str, str, str]]:
    """The runs of where the months come from. Most careers are history imported up to the
    month before Kalo's first: two runs, found from the ends alone."""
    if not imported or not assessed:
        only = imported or assessed
        kind = "imported" if imported else "assessed"
        return [(min(only), max(only), kind)] if only else []
    if max(imported) < min(assessed):
        return [(min(imported), max(imported), "imported"), (min(assessed), max(assessed), "assessed")]
    kinds = {p: "imported" for p in imported}
    for p in assessed:
        kinds[p] = "both" if p in kinds else "assessed"
    return source_runs(sorted(kinds.items()))


def _by_month(periods: Sequence[str], bases: Sequence[int]) -> dict[str, int]:
    """Bases added per month (most months have one row: built in one pass, sums fixed after)."""
    months = dict(zip(periods, bases, strict=True))
    if len(months) != len(periods):  # a month of several employers: add them all up again
        months = dict.fromkeys(months, 0)
        for p, b in zip(periods, bases, strict=True):
            months[p] += b
    return months


class Careers(Protocol):
    async def read(self, worker_ids: list[str]) -> Snapshot:
        """The career rows of these workers (absent: none known), all read at one point."""
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
NO_ROWS = CareerRows()


def decode_claim(raw: bytes) -> Envelope[PensionClaimFiled]:
    return _CLAIM.model_validate_json(raw)


def _dated(months: list[tuple[str, int]]) -> tuple[tuple[date, int], ...]:
    """(period, base) → (its first day, base); careers hold valid periods, a few hundred distinct."""
    if not months:
        return ()
    periods, bases = zip(*months)  # noqa: B905  # transposed in C; every entry is a (period, base) pair
    return tuple(zip(map(FIRST_DAYS.__getitem__, periods), bases, strict=True))


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
        career=_dated(career.months),
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
            "career_sources": career.sources,
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
        "actor": PRODUCER,  # the liquidation decided, by the rules
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
    an id PostgreSQL refuses, a bug) is parked and the others liquidated; only an outage of
    PostgreSQL or Kafka is raised, for the caller to retry the batch (services.common.batches)."""
    decoded = await decoded_or_parked(messages, lambda m: decode_claim(m.value), dead_letters.park)

    async def together(items: list[tuple[Message, Envelope[PensionClaimFiled]]]) -> list[Outcome]:
        return await _liquidate_together(items, ruleset, careers, sender, dead_letters, max_output_bytes)

    outcomes = await together_or_one_by_one(decoded, together, dead_letters.park, what="claims")
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
        with logs.handling(env):  # its ids on every line logged meanwhile
            try:
                career = merge_career(snapshot.careers.get(env.data.worker_id, NO_ROWS))
                outcome = liquidate_filed(env, message.value, career, snapshot, ruleset)
                check_sizes(outcome.messages, max_output_bytes)
            except Exception as exc:  # a bug: the rules decide every claim the contract lets through
                log.exception("liquidation of %s failed", env.data.claim_id)
                await dead_letters.park(message, exc)
                continue
            for out in outcome.messages:
                await sender.send(out.topic, out.key, out.value)
            log.debug("claim %s: %s", env.data.claim_id, outcome.decision)
            outcomes.append(outcome)
    return outcomes


def _workers(envs: Iterable[Envelope[PensionClaimFiled]]) -> set[str]:
    return {env.data.worker_id for env in envs}
