"""Pension messages: claim filed → liquidated → controlled → approved."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from pydantic import Field

from contracts.envelope import Payload


class PensionClaimFiled(Payload):
    TYPE: ClassVar[str] = "pension.claim_filed"

    claim_id: str
    worker_id: str
    regime: str
    category: str
    grade: str | None = None
    birth_date: date
    effective_date: date


class PensionLiquidated(Payload):
    """The liquidation with the career snapshot it was computed from (for the control)."""

    TYPE: ClassVar[str] = "pension.liquidated"

    claim_id: str
    worker_id: str
    ruleset: str
    claim: dict[str, Any]
    career: list[tuple[str, int]] = Field(description="arrays of period, pension base")
    liquidation: dict[str, Any] = Field(description="the liquidation of RULES.md §5")


class ControlDecision(Payload):
    TYPE: ClassVar[str] = "control.decided"

    claim_id: str
    worker_id: str
    decision: str = Field(description="approved | rejected | pending")
    flags: list[str]
    controllers: list[str]
    reason: str | None = None


class PensionApproved(Payload):
    TYPE: ClassVar[str] = "pension.approved"

    claim_id: str
    worker_id: str
    regime: str
    decision: str
    monthly_pension: int
    amo_deduction: int
    net_monthly_pension: int
    lump_sum: int
    effective_date: date
    ruleset: str
