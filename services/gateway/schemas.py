"""What the gateway accepts from employers (technical validation only).

Business rules (RULES.md §2.4: ranges, negative amounts, regimes…) are checked in the
stream and end in the declaration's report; here only shape, types and sizes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from contracts.declarations import Category, Filing, Identifier, Period, Regime, RiskClass
from contracts.pensions import Day, Grade
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


class ClaimIn(BaseModel):
    """A pension claim (RULES.md §5 without `career` and `claim_id`): the liquidation reads
    the worker's career (assessed declarations and imported history) itself."""

    model_config = ConfigDict(extra="forbid")

    worker_id: Identifier
    regime: Annotated[Regime, Field(min_length=1)]
    category: Category
    grade: Grade | None = None
    birth_date: Day
    effective_date: Annotated[Day, Field(examples=["2026-12-01"])]
    replaces: Annotated[Identifier, Field(description="the claim this one revises")] | None = None


class ClaimReceipt(BaseModel):
    claim_id: str
    worker_id: str
    status: str = Field(description="received → liquidated → pending_control → approved | rejected")
    received_at: str
    payload_sha256: str
    replaces: str | None = None
    links: dict[str, str] = Field(default_factory=dict)


class ClaimDecision(BaseModel):
    type: str = Field(description="pension.liquidated | control.decided | pension.approved")
    decision: str
    reason: str | None = None
    flags: list[Any] = Field(default_factory=list)
    by: list[str] = Field(description="who decided: the service, or the controllers")
    at: str


class ClaimView(ClaimReceipt):
    superseded_by: str | None = None
    claim: dict[str, Any] = Field(description="regime, category, grade, birth_date, effective_date")
    filed_by: dict[str, str | None] = Field(description="the key's id and label (never the key)")
    liquidation: dict[str, Any] | None = Field(default=None, description="RULES.md §5 once liquidated")
    liquidated_at: str | None = None
    ruleset: str | None = None
    as_of: dict[str, Any] | None = Field(default=None, description="the point the career was read at")
    flags: list[Any] = Field(default_factory=list, description="the control commission's flags")
    decisions: list[ClaimDecision] = Field(default_factory=list, description="every decision, oldest first")


class ClaimListItem(ClaimReceipt):
    regime: str
    effective_date: str
    decision: str | None = None
    monthly_pension: int | None = None
    lump_sum: int | None = None


class ClaimList(BaseModel):
    items: list[ClaimListItem]
    count: int
    limit: int


class CareerImportReceipt(BaseModel):
    import_id: str
    received_at: str
    payload_sha256: str
    rows: int
    workers: int
    applied_workers: int | None = Field(
        default=None, description="workers the ledger has written so far (GET only)"
    )
    links: dict[str, str] = Field(default_factory=dict)
