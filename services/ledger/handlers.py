"""Ledger service layer: which assessed/rejected events change which projection.

Within a batch the newest declaration of an employer-month wins, as it would have if
the events had been applied one at a time; a corrective declaration replaces the
month in the account and the careers, it never adds to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord

from contracts.declarations import DeclarationAssessed, DeclarationRejected, WorkerPreRegistered
from contracts.envelope import Envelope

_MODELS: dict[str, type[Envelope[Any]]] = {
    DeclarationAssessed.TYPE: Envelope[DeclarationAssessed],
    DeclarationRejected.TYPE: Envelope[DeclarationRejected],
    WorkerPreRegistered.TYPE: Envelope[WorkerPreRegistered],
}


def decode(record: ConsumerRecord) -> Envelope[Any]:
    import orjson

    head = orjson.loads(record.value)
    model = _MODELS.get(head.get("type"))
    if model is None:
        raise ValueError(f"unexpected event type {head.get('type')!r} on {record.topic}")
    return model.model_validate(head)


@dataclass
class Batch:
    assessed: list[Envelope[DeclarationAssessed]] = field(default_factory=list)
    rejected: list[Envelope[DeclarationRejected]] = field(default_factory=list)
    registrations: list[Envelope[WorkerPreRegistered]] = field(default_factory=list)


def split(events: list[Envelope[Any]]) -> Batch:
    """Drop duplicates within the batch (same event id) and sort by kind."""
    seen: set[Any] = set()
    batch = Batch()
    kinds = {
        DeclarationAssessed: batch.assessed,
        DeclarationRejected: batch.rejected,
        WorkerPreRegistered: batch.registrations,
    }
    for e in events:
        if e.id not in seen:
            seen.add(e.id)
            kinds[type(e.data)].append(e)
    return batch


def latest_per_month(
    events: list[Envelope[DeclarationAssessed]],
) -> list[Envelope[DeclarationAssessed]]:
    """The newest declaration of each employer-month in this batch."""
    latest: dict[tuple[str, str], Envelope[DeclarationAssessed]] = {}
    for e in events:
        key = (e.data.employer_id, e.data.period)
        if key not in latest or e.data.submitted_at >= latest[key].data.submitted_at:
            latest[key] = e
    return list(latest.values())
