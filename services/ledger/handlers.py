"""Ledger service layer: which events change which projection.

Within a batch the newest declaration of an employer-month wins, as it would have if
the events had been applied one at a time; a corrective declaration replaces the
month in the account and the careers, it never adds to it. Careers imported from before
Kalo, liquidations and the decisions about them (control, approval) are kept per event id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from contracts.declarations import (
    ASSESSED_LINE_FIELDS,
    ITEM_COLUMNS,
    DeclarationAssessed,
    DeclarationRejected,
    WorkerPreRegistered,
)
from contracts.envelope import Envelope
from contracts.pensions import CareerImported, ControlDecision, PensionApproved, PensionLiquidated

_MODELS: dict[str, type[Envelope[Any]]] = {
    DeclarationAssessed.TYPE: Envelope[DeclarationAssessed],
    DeclarationRejected.TYPE: Envelope[DeclarationRejected],
    WorkerPreRegistered.TYPE: Envelope[WorkerPreRegistered],
    CareerImported.TYPE: Envelope[CareerImported],
    PensionLiquidated.TYPE: Envelope[PensionLiquidated],
    ControlDecision.TYPE: Envelope[ControlDecision],
    PensionApproved.TYPE: Envelope[PensionApproved],
}
# Events the ledger keeps as they are (no report): registrations, pensions, careers imported.
_PLAIN = frozenset(
    {WorkerPreRegistered.TYPE, CareerImported.TYPE, ControlDecision.TYPE, PensionApproved.TYPE}
)
# What the report leaves out: the outcome's row has its own columns for these.
REPORT_EXCLUDES = frozenset({"declaration_id", "employer_id", "period", "replaces", "submitted_at"})
_WIDTH = len(ITEM_COLUMNS)
_FIELDS = len(ASSESSED_LINE_FIELDS)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One ledger event: its envelope, validated by the contract, and for an assessed
    declaration its lines (checked here, once: the contract's pydantic validation of
    hundreds of thousands of line arrays cost the ledger more than everything else) and
    its report, the JSON the gateway serves, encoded once from the bytes received."""

    envelope: Envelope[Any]
    lines: list[list[Any]] = field(default_factory=list)
    report: str = ""
    months: int = 0  # a liquidation: months in its career snapshot
    id: Any = field(init=False)
    data: Any = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.envelope.id)
        object.__setattr__(self, "data", self.envelope.data)


def decode(record: ConsumerRecord) -> Decoded:
    doc = orjson.loads(record.value)
    kind = doc.get("type") if isinstance(doc, dict) else None
    model = _MODELS.get(kind)  # type: ignore[arg-type]
    if model is None:
        raise ValueError(f"unexpected event type {kind!r} on {record.topic}")
    data = doc.get("data")
    if kind == PensionLiquidated.TYPE and isinstance(data, dict) and type(data.get("career")) is list:
        # The career snapshot is the control's to read; the ledger keeps its size only.
        envelope = model.model_validate({**doc, "data": {**data, "career": [], "career_sources": None}})
        return Decoded(envelope, months=len(data["career"]))
    if kind != DeclarationAssessed.TYPE or not isinstance(data, dict) or "lines" not in data:
        envelope = model.model_validate(doc)
        if kind in _PLAIN:
            return Decoded(envelope)
        return Decoded(envelope, report=_report(envelope.data.model_dump(mode="json")))
    lines = data["lines"]
    check_lines(lines)
    envelope = model.model_validate({**doc, "data": {**data, "lines": []}})
    report = envelope.data.model_dump(mode="json")
    report["lines"] = lines
    return Decoded(envelope, lines, _report(report))


def _report(data: dict[str, Any]) -> str:
    if not data.get("errors_omitted"):  # a rejection that lists every error says no more
        data.pop("error_counts", None)
        data.pop("errors_omitted", None)
    return orjson.dumps({k: v for k, v in data.items() if k not in REPORT_EXCLUDES}).decode()


def check_lines(lines: Any) -> None:
    """The assessed lines are arrays of ASSESSED_LINE_FIELDS (the contract's AssessedLine)."""
    if type(lines) is not list:
        raise ValueError("data.lines must be an array")
    for n, line in enumerate(lines):
        if type(line) is not list or len(line) != _FIELDS:
            raise ValueError(f"data.lines[{n}] must be an array of {_FIELDS} fields")
        worker_id, category, gross, base, floor_applied, pension_base, amo_base, amounts = line
        if not (
            type(worker_id) is str
            and type(category) is str
            and type(gross) is int
            and type(base) is int
            and type(floor_applied) is bool
            and type(pension_base) is int
            and type(amo_base) is int
            and type(amounts) is list
            and len(amounts) == _WIDTH
            and _amounts_ok(amounts)
        ):
            raise ValueError(
                f"data.lines[{n}] is not [{', '.join(ASSESSED_LINE_FIELDS)}] with the contract's types"
            )


def _amounts_ok(amounts: list[Any]) -> bool:
    # A loop, not all(...): a generator per line cost twice as much here.
    for a in amounts:  # noqa: SIM110
        if a is not None and type(a) is not int:
            return False
    return True


@dataclass
class Batch:
    assessed: list[Decoded] = field(default_factory=list)
    rejected: list[Decoded] = field(default_factory=list)
    registrations: list[Decoded] = field(default_factory=list)
    imports: list[Decoded] = field(default_factory=list)
    liquidations: list[Decoded] = field(default_factory=list)
    decisions: list[Decoded] = field(default_factory=list)


def split(events: list[Decoded]) -> Batch:
    """Drop duplicates within the batch (same event id) and sort by kind."""
    seen: set[Any] = set()
    batch = Batch()
    kinds = {
        DeclarationAssessed: batch.assessed,
        DeclarationRejected: batch.rejected,
        WorkerPreRegistered: batch.registrations,
        CareerImported: batch.imports,
        PensionLiquidated: batch.liquidations,
        ControlDecision: batch.decisions,
        PensionApproved: batch.decisions,
    }
    for e in events:
        if e.id not in seen:
            seen.add(e.id)
            kinds[type(e.data)].append(e)
    return batch


def latest_per_month(events: list[Decoded]) -> list[Decoded]:
    """The newest declaration of each employer-month in this batch."""
    latest: dict[tuple[str, str], Decoded] = {}
    for e in events:
        key = (e.data.employer_id, e.data.period)
        if key not in latest or e.data.submitted_at >= latest[key].data.submitted_at:
            latest[key] = e
    return list(latest.values())


def late_charges(events: list[Decoded]) -> dict[tuple[str, str], tuple[int, int]]:
    """The most months late and the highest surcharge of each employer-month in this batch: a
    corrective keeps the original's surcharge even when both arrive in one batch (the newest
    alone would carry the corrective's)."""
    worst: dict[tuple[str, str], tuple[int, int]] = {}
    for e in events:
        d = e.data
        key = (d.employer_id, d.period)
        late, surcharge = worst.get(key, (0, 0))
        worst[key] = (max(late, d.months_late), max(surcharge, d.surcharge))
    return worst


def imported_rows(events: list[Decoded]) -> list[tuple[str, str, str, int, str, Any]]:
    """The rows of imported careers, one per worker, month and employer; within the batch the
    later event wins (events of one worker come in order: they share a partition)."""
    rows: dict[tuple[str, str, str], tuple[str, str, str, int, str, Any]] = {}
    for e in events:
        d = e.data
        for period, employer_id, base in d.entries:
            rows[(d.worker_id, period, employer_id)] = (
                d.worker_id,
                period,
                employer_id,
                base,
                d.import_id,
                d.imported_at,
            )
    return list(rows.values())


def decision_row(e: Decoded) -> tuple[Any, ...]:
    """A control decision or an approval as a row of claim_decisions."""
    d = e.data
    env = e.envelope
    if isinstance(d, ControlDecision):
        return (
            e.id,
            d.claim_id,
            d.worker_id,
            ControlDecision.TYPE,
            d.decision,
            orjson.dumps(d.flags).decode(),
            orjson.dumps(d.controllers).decode(),
            d.reason,
            env.producer,
            env.occurred_at,
        )
    return (
        e.id,
        d.claim_id,
        d.worker_id,
        PensionApproved.TYPE,
        d.decision,
        "[]",
        "[]",
        None,
        env.producer,
        env.occurred_at,
    )
