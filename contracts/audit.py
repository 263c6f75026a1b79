"""Audit events: every decision a service takes, for the control commission's store.

`audit_event(...)` builds one (the envelope's bytes, ready for `kalo.audit`): every service
emits its decisions through it. The store keeps them in a signed Merkle log and publishes
its signed tree heads on `kalo.audit.heads` (`AuditTreeHead`).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, ClassVar

import orjson
from pydantic import Field

from contracts.envelope import Payload, derived_id, envelope_json


class AuditRecorded(Payload):
    TYPE: ClassVar[str] = "audit.recorded"

    action: str = Field(
        description="declaration.received, claim.received, careers.import_received (the gateway's "
        "receipts), declaration.assessed, declaration.rejected, pension.liquidated, "
        "control.decided (flags on arrival, then each decision), control.escalated, "
        "control.session_closed, dlq.parked, dlq.replayed"
    )
    subject: str = Field(
        description="what the decision is about: a declaration, claim, careers import or control "
        "session id, or a message's topic/partition/offset (the DLQ's)"
    )
    ruleset: str | None = None
    input_sha256: str = Field(description="SHA-256 (hex) of the decision's input, as received")
    output_sha256: str = Field(description="SHA-256 (hex) of the decision's output, as sent")
    details: dict[str, Any] = Field(default_factory=dict)
    actor: str | None = Field(
        default=None,
        description="who decided: a service (e.g. assessment) or a key id (the SHA-256 of an "
        "API key), never a key; absent: the envelope's producer",
    )


def audit_id(cause: uuid.UUID | str, action: str) -> uuid.UUID:
    """The audit event of one action on one cause: the same each time it is emitted again."""
    return derived_id(f"{cause}:{action}", AuditRecorded.TYPE)


def audit_event(
    *,
    action: str,
    subject: str,
    actor: str,
    input_bytes: bytes | None = None,
    output_bytes: bytes | None = None,
    producer: str,
    input_sha256: str | None = None,
    output_sha256: str | None = None,
    ruleset: str | None = None,
    details: dict[str, Any] | None = None,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> tuple[uuid.UUID, bytes]:
    """One `audit.recorded` event: (its id, the envelope's bytes for `kalo.audit`, keyed by
    `subject`). `input_bytes` and `output_bytes` are hashed (SHA-256), never carried (or give
    their `input_sha256` / `output_sha256` when the bytes are already hashed). The id
    is `audit_id(causation_id or subject, action)` unless given: emitting it again after a
    crash yields a duplicate that the store drops."""
    payload = {
        "action": action,
        "subject": subject,
        "ruleset": ruleset,
        "input_sha256": input_sha256 or hashlib.sha256(_given(input_bytes, "input")).hexdigest(),
        "output_sha256": output_sha256 or hashlib.sha256(_given(output_bytes, "output")).hexdigest(),
        "details": details or {},
        "actor": actor,
    }
    AuditRecorded.model_validate(payload)  # the contract, before anything is sent
    return envelope_json(
        orjson.dumps(payload, option=orjson.OPT_UTC_Z),
        AuditRecorded,
        producer=producer,
        correlation_id=subject,
        causation_id=causation_id,
        event_id=event_id or audit_id(causation_id or subject, action),
        occurred_at=occurred_at,
    )


def _given(data: bytes | None, what: str) -> bytes:
    if data is None:
        raise ValueError(f"an audit event needs its {what}'s bytes or their SHA-256")
    return data


class AuditTreeHead(Payload):
    """A signed tree head of the audit log (RFC 9162 §4.10 TreeHeadDataV2, Ed25519)."""

    TYPE: ClassVar[str] = "audit.tree_head"

    tree_size: int = Field(ge=0)
    root_hash: str = Field(description="hex, RFC 9162 MTH of the first tree_size records")
    timestamp: int = Field(ge=0, description="ms since the epoch (UTC), as signed")
    time: str = Field(description="the same instant, ISO 8601")
    key_id: str = Field(description="SHA-256 (hex) of the raw Ed25519 public key")
    signature: str = Field(description="base64 Ed25519 signature of TreeHeadDataV2")
    first_index: int | None = Field(default=None, description="index of the first of `leaves`")
    leaves: list[str] | None = Field(
        default=None, description="leaf hashes (hex) appended since the previous head"
    )


class RulesetPublished(Payload):
    """A ruleset a service runs: its parameter tree, content-addressed by its id."""

    TYPE: ClassVar[str] = "ruleset.published"

    ruleset: str = Field(description="the ruleset id: the content hash of `files`")
    files: dict[str, str] = Field(description="relative path -> the YAML text of each parameter file")


class DeadLetter(Payload):
    """A message that could not be decoded or processed, with its original bytes."""

    TYPE: ClassVar[str] = "dlq.message"

    topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str = Field(
        description="the original bytes; only their beginning when value_truncated "
        "(the whole message stays at topic/partition/offset)"
    )
    error: str
    service: str
    value_size: int | None = Field(default=None, description="bytes of the original value")
    value_sha256: str | None = None
    value_truncated: bool = False
