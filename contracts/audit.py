"""Audit events: every decision a service takes, for the control commission's store."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from contracts.envelope import Payload


class AuditRecorded(Payload):
    TYPE: ClassVar[str] = "audit.recorded"

    action: str = Field(description="e.g. declaration.assessed, declaration.rejected")
    subject: str = Field(description="the declaration or claim id")
    ruleset: str | None = None
    input_sha256: str
    output_sha256: str
    details: dict[str, Any] = Field(default_factory=dict)


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
