"""What the gateway accepts from employers (technical validation only).

Business rules (RULES.md §2.4: ranges, negative amounts, regimes…) are checked in the
stream and end in the declaration's report; here only shape, types and sizes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_LINES = 100_000
Amount = Annotated[StrictInt, Field(ge=-(10**12), le=10**12)]


class EmployerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    regime: str = Field(min_length=1, max_length=16)
    risk_class: StrictInt | None = None
    filing: str = Field(default="monthly", max_length=16)


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=64)
    category: str = Field(min_length=1, max_length=32)
    days_worked: Annotated[StrictInt, Field(ge=-1000, le=1000)]
    base_salary: Amount
    bonuses: Amount = 0
    benefits_in_kind: Amount = 0
    expense_reimbursements: Amount = 0


class DeclarationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    employer: EmployerIn
    period: str = Field(min_length=1, max_length=16, examples=["2026-10"])
    replaces: str | None = Field(
        default=None, max_length=64, description="the declaration this one corrects"
    )
    lines: list[LineIn] = Field(max_length=MAX_LINES)


class Receipt(BaseModel):
    declaration_id: str
    employer_id: str
    period: str
    status: str
    received_at: str
    payload_sha256: str
    replaces: str | None = None
    links: dict[str, str] = Field(default_factory=dict)
