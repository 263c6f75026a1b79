"""What a declaration's fields must be for it to be read at all — one definition.

The gateway refuses at the door (422, naming the field) exactly what the rules' reader would
refuse as malformed (`InvalidInput`), so everything receipted can be decided: accepted or
rejected with a §2.4 code, never parked. The contracts check the same on the wire, so a
message produced around the gateway is dead-lettered before it reaches a registry lookup.
"""

from __future__ import annotations

from services.rules.dates import FILINGS, parse_day, parse_period

MAX_ID_LENGTH = 64  # declaration, employer and worker ids
MAX_CATEGORY_LENGTH = 32
MAX_REGIME_LENGTH = 16
MAX_PERIOD_LENGTH = 7  # YYYY-MM
MAX_DAY_LENGTH = 10  # YYYY-MM-DD
MAX_GRADE_LENGTH = 16  # a CMSS grade (A, B2, B1, C); others are judged by the rules (UNKNOWN_GRADE)
# Francs per amount field: ten thousand billion keeps any sum of a declaration's lines
# (at most 100,000 lines × 3 fields) far inside PostgreSQL's bigint and JSON's exact integers.
MAX_AMOUNT = 10**12
# days_worked is checked against 0-31 as a §2.4 rule (DAYS_OUT_OF_RANGE); beyond this it
# is not a number of days at all.
DAYS_LIMIT = 1000
# An INPS class other than 1-4 is a §2.4 rule (RISK_CLASS_INVALID); outside PostgreSQL's
# smallint it cannot even be stored or compared with the registry.
RISK_CLASS_LIMIT = 32767
# Digits in a number cell of a CSV upload (ASCII 0-9 only; 10**12 has 13).
MAX_NUMBER_DIGITS = 15


def text_problem(value: str, max_length: int) -> str | None:
    """Why `value` cannot be an identifier or code, or None when it can.

    Printable characters only (no control, format or line-separator character: no NUL, no
    newline, no zero-width space), no space at either end, 1 to `max_length` characters."""
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"has {len(value)} characters, at most {max_length} are allowed"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return f"contains the control character U+{ord(bad):04X} at position {value.index(bad) + 1}"
    if value[0] == " " or value[-1] == " ":
        return "must not begin or end with a space"
    return None


def is_identifier(value: object) -> bool:
    """The fast test of the hot loop: a valid worker id (the common case)."""
    return (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isprintable()
        and value[0] != " "
        and value[-1] != " "
    )


def period_problem(value: str) -> str | None:
    """A period is exactly YYYY-MM (month 01-12, year 0001-9998): nothing before or after."""
    if parse_period(value) is None:
        shown = value if len(value) <= 20 else value[:20] + "…"
        return f"{shown!r} is not a period YYYY-MM"
    return None


def filing_problem(value: str) -> str | None:
    return None if value in FILINGS else f"must be {' or '.join(FILINGS)}, not {value[:20]!r}"


def day_problem(value: str) -> str | None:
    """A date is exactly YYYY-MM-DD, a day that exists (year 0001-9999): nothing before or after."""
    if parse_day(value) is None:
        shown = value if len(value) <= 20 else value[:20] + "…"
        return f"{shown!r} is not a date YYYY-MM-DD"
    return None
