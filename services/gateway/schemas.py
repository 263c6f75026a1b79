"""What the gateway accepts from employers (technical validation only).

Business rules (RULES.md §2.4: ranges, negative amounts, regimes…) are checked in the
stream and end in the declaration's report; here only shape, types and sizes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_LINES = 100_000
Amount = Annotated[StrictInt, Field(ge=-(10**12), le=10**12)]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold U+0000: refused here, with the field named


class EmployerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    regime: str = Field(min_length=1, max_length=16, pattern=NO_NUL)
    risk_class: StrictInt | None = None
    filing: str = Field(default="monthly", max_length=16, pattern=NO_NUL)


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    category: str = Field(min_length=1, max_length=32, pattern=NO_NUL)
    days_worked: Annotated[StrictInt, Field(ge=-1000, le=1000)]
    base_salary: Amount
    bonuses: Amount = 0
    benefits_in_kind: Amount = 0
    expense_reimbursements: Amount = 0


class DeclarationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    employer: EmployerIn
    period: str = Field(min_length=1, max_length=16, examples=["2026-10"], pattern=NO_NUL)
    replaces: str | None = Field(
        default=None, max_length=64, description="the declaration this one corrects", pattern=NO_NUL
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


class ProblemDoc(BaseModel):
    """RFC 7807 problem details; `errors` names every bad field, line (and CSV row/column)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class DeclarationView(Receipt):
    line_count: int
    superseded_by: str | None = None
    assessed_at: str | None = None
    totals: dict[str, Any] | None = None
    report: dict[str, Any] | None = Field(
        default=None,
        description="accepted: ruleset, due_date, months_late, surcharge, totals, lines with items; "
        "rejected: every error with its code, line and worker",
    )
    difference: dict[str, Any] | None = Field(
        default=None,
        description="a correction: new minus replaced, per branch, per fund, per payer and total",
    )


class DeclarationListItem(Receipt):
    superseded_by: str | None = None
    line_count: int
    total: int | None = None


class DeclarationList(BaseModel):
    items: list[DeclarationListItem]
    count: int
    limit: int


class AccountPeriod(BaseModel):
    period: str
    declaration_id: str = Field(description="the declaration in force for the month")
    due_date: str
    months_late: int
    by_fund: dict[str, int]
    contributions: int
    surcharge: int
    due: int
    original_total: int | None = None
    correction_effect: int | None = Field(
        default=None, description="contributions now minus those of the original declaration"
    )
    corrections: list[dict[str, Any]]


class Account(BaseModel):
    employer: dict[str, Any]
    periods: list[AccountPeriod]
    totals: dict[str, Any]
    periods_awaiting_assessment: list[str]
