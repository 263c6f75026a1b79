"""The topic registry: every Kafka topic Kalo uses, its key, its value and its retention."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.audit import AuditRecorded, AuditTreeHead, DeadLetter, RulesetPublished
from contracts.declarations import (
    AmoDeductions,
    DeclarationAssessed,
    DeclarationRejected,
    DeclarationSubmitted,
    WorkerPreRegistered,
)
from contracts.envelope import Payload
from contracts.pensions import (
    CareerImported,
    ControlDecision,
    PensionApproved,
    PensionClaimFiled,
    PensionLiquidated,
)

FOREVER = -1
DAYS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    values: tuple[type[Payload], ...]
    retention_ms: int = FOREVER
    cleanup_policy: str = "delete"
    partitions: int | None = None  # None: the configured default (KALO_PARTITIONS)
    description: str = ""
    configs: dict[str, str] = field(default_factory=dict)

    def kafka_configs(self, max_message_bytes: int) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            "max.message.bytes": str(max_message_bytes),
            **self.configs,
        }


TOPICS: tuple[Topic, ...] = (
    Topic(
        "kalo.declarations.submitted",
        "employer id",
        (DeclarationSubmitted,),
        description="declarations received by the gateway",
    ),
    Topic(
        "kalo.declarations.assessed",
        "employer id",
        (DeclarationAssessed,),
        description="accepted declarations with every contribution item",
    ),
    Topic(
        "kalo.declarations.rejected",
        "employer id",
        (DeclarationRejected,),
        description="rejected declarations with every error",
    ),
    Topic(
        "kalo.amo.deductions",
        "employer id",
        (AmoDeductions,),
        description="per declaration, each worker's AMO parts, for CANAM",
    ),
    Topic(
        "kalo.workers.registrations",
        "employer id",
        (WorkerPreRegistered,),
        description="workers first seen in a declaration",
    ),
    Topic(
        "kalo.careers.imported",
        "worker id",
        (CareerImported,),
        description="careers from before Kalo, imported by back offices (one event per worker and file)",
    ),
    Topic(
        "kalo.pensions.claims",
        "worker id",
        (PensionClaimFiled,),
        description="pension claims filed by back offices",
    ),
    Topic(
        "kalo.pensions.liquidations",
        "worker id",
        (PensionLiquidated,),
        description="computed liquidations awaiting control",
    ),
    Topic(
        "kalo.control.decisions",
        "worker id",
        (ControlDecision,),
        description="the control commission's decisions",
    ),
    Topic(
        "kalo.pensions.approved",
        "worker id",
        (PensionApproved,),
        description="liquidations approved for payment, for back offices",
    ),
    Topic(
        "kalo.audit",
        "correlation id",
        (AuditRecorded,),
        description="every decision of every service",
    ),
    Topic(
        "kalo.audit.heads",
        "tree size",
        (AuditTreeHead,),
        partitions=1,  # in signing order
        description="the audit log's signed tree heads, with the leaf hashes each adds",
    ),
    Topic(
        "kalo.rulesets",
        "ruleset id",
        (RulesetPublished,),
        cleanup_policy="compact",
        partitions=1,
        description="every ruleset a service ran, its parameter tree under its id (the replay reads it)",
    ),
    Topic(
        "kalo.dlq",
        "source key",
        (DeadLetter,),
        retention_ms=90 * DAYS,
        description="poison messages with the error and the original bytes",
    ),
)

BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}


def topic_name(name: str, prefix: str = "") -> str:
    """The physical name: a prefix isolates environments (and test runs) on one broker."""
    if name not in BY_NAME:
        raise KeyError(f"unknown topic {name!r}")
    return f"{prefix}{name}"
