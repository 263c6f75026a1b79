"""What the gateway accepts from employers (technical validation only).

Business rules (RULES.md §2.4: ranges, negative amounts, regimes…) are checked in the
stream and end in the declaration's report; here only shape, types and sizes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from contracts.declarations import Category, Filing, Identifier, Period, Regime, RiskClass
from services.rules.inputs import DAYS_LIMIT, MAX_AMOUNT

MAX_LINES = 100_000
# What the rules can read (services.rules.inputs, through the contracts' types) is exactly
# what is receipted: every declaration that gets a 202 is decided, accepted or rejected.
Amount = Annotated[StrictInt, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]


class EmployerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier
    regime: Annotated[Regime, Field(min_length=1)]
    risk_class: RiskClass | None = None
    filing: Filing = "monthly"


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker_id: Identifier
    category: Category
    days_worked: Annotated[StrictInt, Field(ge=-DAYS_LIMIT, le=DAYS_LIMIT)]
    base_salary: Amount
    bonuses: Amount = 0
    benefits_in_kind: Amount = 0
    expense_reimbursements: Amount = 0


class DeclarationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    employer: EmployerIn
    period: Annotated[Period, Field(examples=["2026-10"])]
    replaces: Annotated[Identifier, Field(description="the declaration this one corrects")] | None = None
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
