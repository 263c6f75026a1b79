"""Declaration messages: submitted → assessed | rejected, and CANAM's AMO deductions.

Hot topics carry one event per declaration. Lines travel as fixed-order arrays (the
column names are below) because a national month in verbose JSON is ~8x larger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from contracts.envelope import Payload
from services.rules.contributions import COLUMNS
from services.rules.inputs import (
    MAX_CATEGORY_LENGTH,
    MAX_ID_LENGTH,
    MAX_PERIOD_LENGTH,
    MAX_REGIME_LENGTH,
    RISK_CLASS_LIMIT,
    period_problem,
    text_problem,
)


def _checked(problem_of: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


# The rules' own definition of what can be read (services.rules.inputs), on the wire.
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH),
    _checked(lambda v: text_problem(v, MAX_ID_LENGTH)),
]
Period = Annotated[str, Field(max_length=MAX_PERIOD_LENGTH), _checked(period_problem)]
# Regime and category are judged by the rules (UNKNOWN_REGIME, CATEGORY_NOT_ALLOWED); here
# only what any text must be. An empty regime is read too, and rejected as UNKNOWN_REGIME.
Regime = Annotated[
    str,
    Field(max_length=MAX_REGIME_LENGTH, description="INPS or CMSS; others are rejected in the stream"),
    _checked(lambda v: text_problem(v, MAX_REGIME_LENGTH) if v else None),
]
Category = Annotated[
    str,
    Field(min_length=1, max_length=MAX_CATEGORY_LENGTH),
    _checked(lambda v: text_problem(v, MAX_CATEGORY_LENGTH)),
]
RiskClass = Annotated[
    StrictInt,
    Field(
        ge=-RISK_CLASS_LIMIT,
        le=RISK_CLASS_LIMIT,
        description="INPS ATMP class 1-4 (others are rejected in the stream)",
    ),
]
Filing = Literal["monthly", "quarterly"]

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

# Contribution items in the order of RULES.md §2.1, branch:fund:payer (the rules' own list).
ITEM_COLUMNS: tuple[str, ...] = tuple(":".join(column) for column in COLUMNS)
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
    id: Identifier
    regime: Regime
    risk_class: RiskClass | None = None
    filing: Filing = "monthly"


class DeclarationSubmitted(Payload):
    TYPE: ClassVar[str] = "declaration.submitted"

    declaration_id: Identifier
    employer: Employer
    period: Period
    submitted_at: datetime
    replaces: Identifier | None = None
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
    errors: list[DeclarationError] = Field(
        description="every error, or the first ones of each code when there are very many "
        "(then error_counts and errors_omitted say how many of each there were)"
    )
    error_counts: dict[str, int] | None = Field(
        default=None, description="errors per code, when some were left out of `errors`"
    )
    errors_omitted: int = Field(default=0, ge=0, description="errors found but not listed")


# A rejection lists at most this many errors of each code, with the counts of all: 50,000
# lines breaking six rules each would otherwise make a report larger than a Kafka message.
MAX_ERRORS_PER_CODE = 1000


def capped_errors(
    errors: list[dict[str, Any]], per_code: int = MAX_ERRORS_PER_CODE
) -> tuple[list[dict[str, Any]], dict[str, int], int]:
    """What a `DeclarationRejected` lists: the first `per_code` errors of each code (in their
    order), the count per code, and how many were left out."""
    counts: dict[str, int] = {}
    listed = []
    for error in errors:
        seen = counts.get(error["code"], 0)
        counts[error["code"]] = seen + 1
        if seen < per_code:
            listed.append(error)
    return listed, counts, len(errors) - len(listed)


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
