"""Pension messages: claim filed → liquidated → controlled → approved; careers imported.

A claim carries the fields of RULES.md §5 without the career; the liquidation reads the
worker's career itself (assessed declarations and imported history, as the ledger holds them)
and carries the snapshot it computed from, and the point that snapshot was taken at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from operator import itemgetter
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from contracts.declarations import Category, Identifier, Period, Regime, _checked
from contracts.envelope import Payload
from services.rules.inputs import MAX_AMOUNT, MAX_DAY_LENGTH, MAX_GRADE_LENGTH, day_problem, text_problem

# A CMSS grade: judged by the rules (UNKNOWN_GRADE); here only what any text must be.
Grade = Annotated[
    str,
    Field(max_length=MAX_GRADE_LENGTH, description="CMSS grade (A, B2, B1, C); null for INPS"),
    _checked(lambda v: text_problem(v, MAX_GRADE_LENGTH)),
]
# A day, exactly YYYY-MM-DD (the form the rules read).
Day = Annotated[str, Field(max_length=MAX_DAY_LENGTH, examples=["1966-03-10"]), _checked(day_problem)]
# A month's pension base in francs, as the careers hold it.
PensionBase = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PensionClaimFiled(Payload):
    TYPE: ClassVar[str] = "pension.claim_filed"

    claim_id: Identifier
    worker_id: Identifier
    regime: Regime
    category: Category
    grade: Grade | None = None
    birth_date: date
    effective_date: date
    replaces: Identifier | None = Field(default=None, description="the claim this one revises")
    filed_by: str | None = Field(
        default=None,
        description="the API key that filed the claim, by its id: its SHA-256 (never the key itself)",
    )
    filed_by_label: str | None = Field(default=None, description="the label of that key")
    filed_at: datetime | None = None
    payload_sha256: str | None = Field(default=None, description="SHA-256 of the body received")


class CareerAsOf(_Model):
    """The point a career snapshot was read at: the careers the ledger had written once it had
    applied its career topics up to these offsets (it writes careers and offsets in one
    transaction, and the liquidation reads both in one snapshot). Replaying those topics up
    to these offsets gives back exactly this career."""

    read_at: datetime = Field(description="when the snapshot was read (PostgreSQL's transaction time)")
    ledger_offsets: dict[str, dict[str, int]] = Field(
        description="per career topic (registry name) and partition: the next offset the ledger had applied"
    )
    assessed_rows: int = Field(description="career rows from assessed declarations (month and employer)")
    imported_rows: int = Field(description="career rows imported from before Kalo (month and employer)")


# Where a month of a career snapshot comes from: declarations Kalo assessed, history imported
# from before Kalo, or rows of each (two employers, one of each kind).
CareerSource = Literal["assessed", "imported", "both"]
CAREER_SOURCES: tuple[str, ...] = ("assessed", "imported", "both")


def source_runs(sources: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(period, source) of each month of a career, oldest first → runs of consecutive entries
    with one source: (first period, last period, source). A career is mostly one run of
    imported months then one of assessed months: a few runs say it for hundreds of months."""
    runs: list[list[str]] = []
    for period, source in sources:
        if runs and runs[-1][2] == source:
            runs[-1][1] = period
        else:
            runs.append([period, period, source])
    return [(first, last, source) for first, last, source in runs]


def _run_spans(career: Sequence[Sequence[Any]], runs: Sequence[Sequence[str]]) -> list[tuple[int, int, str]]:
    """(first index, index past the last, source) of each run over `career`'s entries.
    ValueError when the runs do not cover the career's entries exactly, in order. Checked at
    the runs' ends (list.index, max over a slice) rather than month by month: it validates
    every liquidation the control receives."""
    periods = list(map(itemgetter(0), career))
    spans: list[tuple[int, int, str]] = []
    k = 0
    for n, run in enumerate(runs):
        first, last, source = run
        if source not in CAREER_SOURCES:
            raise ValueError(f"career_sources[{n}]: {source!r} is not one of {', '.join(CAREER_SOURCES)}")
        if k >= len(periods) or periods[k] != first:
            raise ValueError(f"career_sources[{n}] starts at {first}, not at the career's next month")
        try:
            j = periods.index(last, k)
        except ValueError:
            j = -1
        # The run ends at the first entry equal to `last`, with no later month before it.
        if j < 0 or max(periods[k + 1 : j], default=last) > last:
            raise ValueError(f"career_sources[{n}] ends at {last}, not at a month of the career")
        spans.append((k, j + 1, source))
        k = j + 1
    if k != len(periods):
        raise ValueError(f"career_sources cover {k} of the career's {len(periods)} months")
    return spans


def check_source_runs(career: Sequence[Sequence[Any]], runs: Sequence[Sequence[str]]) -> None:
    """ValueError when the runs do not cover the career's entries exactly, in order."""
    _run_spans(career, runs)


def month_sources(career: Sequence[Sequence[Any]], runs: Sequence[Sequence[str]]) -> dict[str, str]:
    """Period → source of each month of `career` ((period, base) pairs, oldest first), from
    its runs. ValueError when the runs do not cover the career's entries exactly, in order."""
    out: dict[str, str] = {}
    for start, end, source in _run_spans(career, runs):
        for entry in career[start:end]:
            out[str(entry[0])] = source
    return out


class PensionLiquidated(Payload):
    """The liquidation with the career snapshot it was computed from (for the control)."""

    TYPE: ClassVar[str] = "pension.liquidated"

    claim_id: str
    worker_id: str
    ruleset: str
    claim: dict[str, Any] = Field(
        description="the claim as filed: RULES.md §5 without career, with replaces, filed_by, filed_by_label"
    )
    career: list[tuple[str, int]] = Field(
        description="arrays of period, pension base: every month of the career, the bases of "
        "several employers added (RULES.md §3), oldest first"
    )
    liquidation: dict[str, Any] = Field(description="the liquidation of RULES.md §5")
    as_of: CareerAsOf | None = Field(default=None, description="the point the career was read at")
    filed_at: datetime | None = Field(default=None, description="when the gateway received the claim")
    career_sources: list[tuple[Period, Period, CareerSource]] | None = Field(
        default=None,
        description="where each month of `career` comes from, in runs of consecutive entries of "
        "`career` (first period, last period, source): assessed (declarations), imported (from "
        "before Kalo) or both; absent from liquidations made before it was carried",
    )

    @model_validator(mode="after")
    def _sources_cover_the_career(self) -> Self:
        if self.career_sources is not None:
            check_source_runs(self.career, self.career_sources)
        return self


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


# Order of the fields of an imported career entry.
CAREER_ENTRY_FIELDS: tuple[str, ...] = ("period", "employer_id", "base")


class CareerImported(Payload):
    """One worker's history from before Kalo, out of one imported file: each entry replaces
    that worker's month with that employer (a later import wins)."""

    TYPE: ClassVar[str] = "career.imported"

    import_id: Identifier
    worker_id: Identifier
    imported_at: datetime
    imported_by: str | None = Field(
        default=None, description="the API key that imported the file, by its SHA-256 (or `cli`)"
    )
    entries: list[tuple[Period, Identifier, PensionBase]] = Field(
        description=f"arrays of {', '.join(CAREER_ENTRY_FIELDS)}"
    )


__all__ = [
    "CAREER_ENTRY_FIELDS",
    "CAREER_SOURCES",
    "CareerAsOf",
    "CareerImported",
    "CareerSource",
    "ControlDecision",
    "Day",
    "Grade",
    "PensionApproved",
    "PensionClaimFiled",
    "PensionLiquidated",
    "check_source_runs",
    "month_sources",
    "source_runs",
]
