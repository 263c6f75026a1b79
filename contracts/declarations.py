"""Declaration messages: submitted → assessed | rejected, and CANAM's AMO deductions.

Hot topics carry one event per declaration. Lines travel as fixed-order arrays (the
column names are below) because a national month in verbose JSON is ~8x larger.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Payload

# Order of the fields of a submitted line.
LINE_FIELDS: tuple[str, ...] = (
    "worker_id",
    "category",
    "days_worked",
    "base_salary",
    "bonuses",
    "benefits_in_kind",
    "expense_reimbursements",
)
SubmittedLine = tuple[str, str, int, int, int, int, int]

# Contribution items in the order of RULES.md §2.1: branch:fund:payer.
ITEM_COLUMNS: tuple[str, ...] = (
    "PF:INPS:employer",
    "ATMP:INPS:employer",
    "PVID:INPS:employer",
    "PVID:INPS:employee",
    "RETRAITE:CMSS:employer",
    "RETRAITE:CMSS:employee",
    "AMO:CANAM:employer",
    "AMO:CANAM:employee",
)
# Order of the fields of an assessed line; `amounts` follows ITEM_COLUMNS (null: no such item).
ASSESSED_LINE_FIELDS: tuple[str, ...] = (
    "worker_id",
    "category",
    "gross",
    "base",
    "floor_applied",
    "pension_base",
    "amo_base",
    "amounts",
)
AssessedLine = tuple[str, str, int, int, bool, int, int, list[int | None]]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Employer(_Model):
    id: str = Field(min_length=1, max_length=64)
    regime: str = Field(
        max_length=16, description="INPS or CMSS; others are rejected in the stream"
    )
    risk_class: int | None = Field(default=None, description="INPS ATMP class 1-4")
    filing: str = Field(default="monthly", description="monthly or quarterly")


class DeclarationSubmitted(Payload):
    TYPE: ClassVar[str] = "declaration.submitted"

    declaration_id: str
    employer: Employer
    period: str = Field(max_length=16)
    submitted_at: datetime
    replaces: str | None = None
    payload_sha256: str
    lines: list[SubmittedLine] = Field(description=f"arrays of {', '.join(LINE_FIELDS)}")


class Totals(_Model):
    employer: int
    employee: int
    total: int
    by_branch: dict[str, int]
    by_fund: dict[str, int]


class DeclarationAssessed(Payload):
    TYPE: ClassVar[str] = "declaration.assessed"

    declaration_id: str
    employer_id: str
    regime: str
    period: str
    replaces: str | None = None
    ruleset: str
    submitted_at: datetime
    due_date: date
    months_late: int
    surcharge: int
    totals: Totals
    rates: dict[str, list[str | None]] = Field(
        description="per category, the rate of each item column (decimal strings)"
    )
    lines: list[AssessedLine] = Field(description=f"arrays of {', '.join(ASSESSED_LINE_FIELDS)}")
    warnings: list[str] = Field(default_factory=list)


class DeclarationError(_Model):
    line: int | None
    worker_id: str | None
    code: str
    message: str


class DeclarationRejected(Payload):
    TYPE: ClassVar[str] = "declaration.rejected"

    declaration_id: str
    employer_id: str
    period: str
    replaces: str | None = None
    ruleset: str
    submitted_at: datetime
    errors: list[DeclarationError]


class AmoDeductions(Payload):
    """For CANAM: each worker's AMO parts of one declaration."""

    TYPE: ClassVar[str] = "amo.deductions"

    declaration_id: str
    employer_id: str
    regime: str
    period: str
    replaces: str | None = None
    employee_total: int
    employer_total: int
    workers: list[tuple[str, int, int, int]] = Field(
        description="arrays of worker_id, base, employee part, employer (or State) part"
    )


class WorkerPreRegistered(Payload):
    """Workers first seen in a declaration, for the institution to complete their records."""

    TYPE: ClassVar[str] = "worker.preregistered"

    declaration_id: str
    employer_id: str
    period: str
    worker_ids: list[str]
