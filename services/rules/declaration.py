"""Reading and validating a declaration (RULES.md §2, §2.4).

Two kinds of problems, kept apart on purpose:
- the document is not a declaration at all (a required field missing, a field of the wrong
  type): `InvalidInput`, naming the field — the caller's bug, exit 2 on the command line;
- the declaration breaks a rule (period, regime, ranges, duplicates…): a `DeclarationError`
  with its code, collected for *every* line so the employer sees all of them at once.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.rules.dates import FILINGS, parse_instant, parse_period
from services.rules.inputs import DAYS_LIMIT, MAX_AMOUNT, MAX_ID_LENGTH, is_identifier, text_problem

INPS = "INPS"
CMSS = "CMSS"
CATEGORIES: Mapping[str, frozenset[str]] = {
    INPS: frozenset({"salarie"}),
    CMSS: frozenset({"fonctionnaire", "militaire", "parlementaire"}),
}
RISK_CLASSES = (1, 2, 3, 4)
MAX_DAYS = 31
AMOUNT_FIELDS = ("base_salary", "bonuses", "benefits_in_kind", "expense_reimbursements")
LINE_FIELDS = ("worker_id", "category", "days_worked", *AMOUNT_FIELDS)

# Error codes of RULES.md §2.4, plus PERIOD_NOT_COVERED: the parameter tree has no value in
# force for the period (e.g. an INPS period before the first SMIG), so nothing can be computed.
INVALID_PERIOD = "INVALID_PERIOD"
PERIOD_IN_FUTURE = "PERIOD_IN_FUTURE"
EMPTY_DECLARATION = "EMPTY_DECLARATION"
UNKNOWN_REGIME = "UNKNOWN_REGIME"
RISK_CLASS_INVALID = "RISK_CLASS_INVALID"
CATEGORY_NOT_ALLOWED = "CATEGORY_NOT_ALLOWED"
DAYS_OUT_OF_RANGE = "DAYS_OUT_OF_RANGE"
NEGATIVE_AMOUNT = "NEGATIVE_AMOUNT"
DUPLICATE_WORKER = "DUPLICATE_WORKER"
PERIOD_NOT_COVERED = "PERIOD_NOT_COVERED"

# worker_id, category, days_worked, base_salary, bonuses, benefits_in_kind, expense_reimbursements
Line = tuple[str, str, int, int, int, int, int]


class InvalidInput(ValueError):
    """The document misses a required field or has one of the wrong type (names the field)."""


@dataclass(frozen=True, slots=True)
class DeclarationError:
    line: int | None  # 1-based; None for the declaration as a whole
    worker_id: str | None
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "worker_id": self.worker_id,
            "code": self.code,
            "message": self.message,
        }


@dataclass(slots=True)  # not frozen: built once per declaration, and frozen __init__ is slow
class Declaration:
    declaration_id: str
    employer_id: str
    regime: str
    risk_class: object  # checked, not trusted: RISK_CLASS_INVALID when not 1-4 for INPS
    filing: str | None  # None when not given: decided by the number of workers (RULES.md §2)
    period_text: str
    period: date | None  # first day of the month; None when the period is invalid
    submitted_at: datetime  # UTC
    replaces: str | None
    lines: list[Line]
    errors: tuple[DeclarationError, ...]

    @property
    def is_correction(self) -> bool:
        return self.replaces is not None


def read_declaration(doc: Mapping[str, Any], *, line_arrays: bool = False) -> Declaration:
    """Read a RULES.md §5 declaration; InvalidInput for shape, errors for broken rules.

    With `line_arrays` each line is an array of the LINE_FIELDS in that order (the form
    the services carry) instead of an object.
    """
    if type(doc) is not dict and not isinstance(doc, Mapping):
        raise InvalidInput("a declaration is a JSON object")
    declaration_id = _identifier(doc, "declaration_id", "declaration_id")
    employer = _field(doc, "employer", "employer")
    if type(employer) is not dict and not isinstance(employer, Mapping):
        raise InvalidInput("employer must be an object")
    employer_id = _identifier(employer, "id", "employer.id")
    regime = _text(employer, "regime", "employer.regime", empty_ok=True)
    filing = employer.get("filing")
    if filing is not None and filing not in FILINGS:
        raise InvalidInput(f"employer.filing must be monthly or quarterly, not {filing!r}")
    risk_class = employer.get("risk_class")
    period_raw = _field(doc, "period", "period")
    submitted_raw = _field(doc, "submitted_at", "submitted_at")
    if not isinstance(submitted_raw, str):
        raise InvalidInput("submitted_at must be an ISO 8601 timestamp string")
    try:
        submitted_at = parse_instant(submitted_raw)
    except ValueError:
        raise InvalidInput(f"submitted_at is not an ISO 8601 timestamp: {submitted_raw!r}") from None
    replaces = doc.get("replaces")
    if replaces is not None:
        if not isinstance(replaces, str):
            raise InvalidInput("replaces must be a declaration id (string) or null")
        _identifier(doc, "replaces", "replaces")
    raw_lines = _field(doc, "lines", "lines")
    if type(raw_lines) is not list and not isinstance(raw_lines, tuple):
        raise InvalidInput("lines must be an array")

    errors: list[DeclarationError] = []
    period = parse_period(period_raw)
    period_text = period_raw if isinstance(period_raw, str) else str(period_raw)
    if period is None:
        errors.append(DeclarationError(None, None, INVALID_PERIOD, f"period {period_raw!r} is not YYYY-MM"))
    elif period > submitted_at.date():
        errors.append(
            DeclarationError(
                None,
                None,
                PERIOD_IN_FUTURE,
                f"period {period_text} starts after the submission date {submitted_at.date().isoformat()}",
            )
        )
    if not raw_lines:
        errors.append(DeclarationError(None, None, EMPTY_DECLARATION, "the declaration has no line"))
    allowed = CATEGORIES.get(regime)
    if allowed is None:
        errors.append(
            DeclarationError(None, None, UNKNOWN_REGIME, f"regime {regime!r} is neither INPS nor CMSS")
        )
    elif regime == INPS and (isinstance(risk_class, bool) or risk_class not in RISK_CLASSES):
        errors.append(
            DeclarationError(
                None,
                None,
                RISK_CLASS_INVALID,
                f"an INPS employer's risk class is 1, 2, 3 or 4, not {risk_class!r}",
            )
        )
    lines = read_lines(raw_lines, allowed, regime, errors, line_arrays=line_arrays)
    return Declaration(
        declaration_id=declaration_id,
        employer_id=employer_id,
        regime=regime,
        risk_class=risk_class,
        filing=filing,
        period_text=period_text,
        period=period,
        submitted_at=submitted_at,
        replaces=replaces,
        lines=lines,
        errors=tuple(errors),
    )


def read_lines(
    raw_lines: Sequence[Any],
    allowed: frozenset[str] | None,
    regime: str,
    errors: list[DeclarationError],
    *,
    line_arrays: bool = False,
) -> list[Line]:
    """Lines as tuples, appending every broken rule to `errors`.

    `allowed` is None when the regime is unknown: the pairing cannot be judged then, so
    categories are not reported line by line (UNKNOWN_REGIME says it once).
    """
    out: list[Line] = []
    append = out.append
    first_line: dict[str, int] = {}
    categories = allowed if allowed is not None else frozenset()
    pick = _pick_array if line_arrays else _pick_line
    for number, raw in enumerate(raw_lines, 1):
        try:
            line = pick(raw)
        except _NotAnArray:
            raise InvalidInput(
                f"lines[{number - 1}] (line {number}) must be an array of {len(LINE_FIELDS)} fields: "
                f"{', '.join(LINE_FIELDS)}"
            ) from None
        except KeyError as missing:
            raise InvalidInput(
                f"missing required field lines[{number - 1}].{missing.args[0]} (line {number})"
            ) from None
        except TypeError:
            raise InvalidInput(f"lines[{number - 1}] (line {number}) must be an object") from None
        worker_id, category, days, base_salary, bonuses, in_kind, expenses = line
        # One test for the common, valid line; the slow path finds out what is wrong.
        # `type(x) is int` refuses bools and floats.
        if not (
            type(days) is int
            and type(base_salary) is int
            and type(bonuses) is int
            and type(in_kind) is int
            and type(expenses) is int
            and is_identifier(worker_id)
            and 0 <= days <= MAX_DAYS
            and 0 <= base_salary <= MAX_AMOUNT
            and 0 <= bonuses <= MAX_AMOUNT
            and 0 <= in_kind <= MAX_AMOUNT
            and 0 <= expenses <= MAX_AMOUNT
            and category in categories
        ):
            _check_line(line, number, allowed, regime, errors)
        if worker_id in first_line:
            errors.append(
                DeclarationError(
                    number,
                    worker_id,
                    DUPLICATE_WORKER,
                    f"worker {worker_id} is already declared on line {first_line[worker_id]}",
                )
            )
        else:
            first_line[worker_id] = number
        append(line)
    return out


_pick_line = operator.itemgetter(*LINE_FIELDS)


class _NotAnArray(Exception):
    pass


def _pick_array(raw: Any) -> Any:
    # Lists from JSON are used as they are (unpacked like tuples, never changed): a copy
    # per line would cost more than reading it.
    if (type(raw) is list or type(raw) is tuple) and len(raw) == len(LINE_FIELDS):
        return raw
    if not isinstance(raw, list | tuple) or len(raw) != len(LINE_FIELDS):
        raise _NotAnArray
    return tuple(raw)


def _check_line(
    line: tuple[Any, ...],
    number: int,
    allowed: frozenset[str] | None,
    regime: str,
    errors: list[DeclarationError],
) -> None:
    """Everything wrong with one line: InvalidInput for its shape, errors for broken rules."""
    index = number - 1
    for name, value in zip(LINE_FIELDS[2:], line[2:], strict=True):
        if type(value) is not int:
            raise InvalidInput(f"lines[{index}].{name} must be an integer, not {value!r} (line {number})")
        limit = DAYS_LIMIT if name == "days_worked" else MAX_AMOUNT
        if not -limit <= value <= limit:
            raise InvalidInput(f"lines[{index}].{name} is beyond ±{limit:,} (line {number})")
    worker_id, category, days = line[0], line[1], line[2]
    if type(worker_id) is not str:
        raise InvalidInput(f"lines[{index}].worker_id must be a string (line {number})")
    problem = text_problem(worker_id, MAX_ID_LENGTH)
    if problem is not None:
        raise InvalidInput(f"lines[{index}].worker_id {problem} (line {number})")
    if type(category) is not str:
        raise InvalidInput(f"lines[{index}].category must be a string (line {number})")
    if allowed is not None and category not in allowed:
        errors.append(
            DeclarationError(
                number,
                worker_id,
                CATEGORY_NOT_ALLOWED,
                f"category {category!r} is not declared by a {regime} employer "
                f"({', '.join(sorted(allowed))})",
            )
        )
    if not 0 <= days <= MAX_DAYS:
        errors.append(
            DeclarationError(number, worker_id, DAYS_OUT_OF_RANGE, f"days_worked {days} is not within 0-31")
        )
    for name, amount in zip(AMOUNT_FIELDS, line[3:], strict=True):
        if amount < 0:
            errors.append(
                DeclarationError(number, worker_id, NEGATIVE_AMOUNT, f"{name} is negative ({amount})")
            )


def _field(doc: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in doc:
        raise InvalidInput(f"missing required field {path}")
    return doc[key]


def _identifier(doc: Mapping[str, Any], key: str, path: str) -> str:
    value = _text(doc, key, path)
    problem = text_problem(value, MAX_ID_LENGTH)
    if problem is not None:
        raise InvalidInput(f"{path} {problem}")
    return value


def _text(doc: Mapping[str, Any], key: str, path: str, *, empty_ok: bool = False) -> str:
    value = _field(doc, key, path)
    if not isinstance(value, str) or (not value and not empty_ok):
        raise InvalidInput(f"{path} must be a non-empty string")
    return value
