"""A record of the audit log: the RFC 8785 canonical JSON of one `kalo.audit` event.

The same event always gives the same bytes, whatever produced it (key order, spacing,
escapes), so the record, its leaf hash and every proof can be recomputed by anyone from
the event as it was published. RFC 8785 comes from the `rfc8785` package (Trail of Bits).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import rfc8785

from contracts.audit import AuditRecorded
from contracts.envelope import Envelope

_AUDIT = Envelope[AuditRecorded]


def canonical(document: Any) -> bytes:
    """RFC 8785 (JSON Canonicalization Scheme): sorted keys, no spaces, ES6 numbers, UTF-8."""
    return rfc8785.dumps(document)


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit event, ready to append: its id, its record and the columns to find it by."""

    event_id: uuid.UUID
    record: bytes
    action: str
    subject: str
    actor: str | None
    occurred_at: datetime


def decode(value: bytes) -> Entry:
    """A `kalo.audit` message as the store keeps it; raises on anything the contract refuses
    (the message then goes to the DLQ, with its bytes)."""
    document = orjson.loads(value)
    envelope = _AUDIT.model_validate(document)
    data = envelope.data
    return Entry(
        event_id=envelope.id,
        record=canonical(document),
        action=data.action,
        subject=data.subject,
        actor=data.actor or envelope.producer,
        occurred_at=envelope.occurred_at,
    )
