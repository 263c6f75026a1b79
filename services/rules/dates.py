"""Periods, due dates, lateness and ages.

The rules know no clock: the only "now" is the `submitted_at` carried by a declaration (or
the `effective_date` of a claim), always read in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_PERIOD = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")  # fullmatch: no trailing newline
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

MONTHLY = "monthly"
QUARTERLY = "quarterly"
FILINGS = (MONTHLY, QUARTERLY)


def parse_period(text: object) -> date | None:
    """`YYYY-MM` → the first day of that month; None when it is not a period."""
    if not isinstance(text, str):
        return None
    return FIRST_DAYS.get(text) or FIRST_DAYS.read(text)


class _FirstDays(dict[str, date]):
    """Period text → the first day of that month, kept as periods are met (a month's
    declarations share a handful; a 35-year career is 420 of them, read for every
    liquidation). `FIRST_DAYS[text]` raises KeyError for anything that is not a period. Only
    valid periods are kept, at most 12 × 9,998: hostile text cannot grow it."""

    def read(self, text: str) -> date | None:
        m = _PERIOD.fullmatch(text)
        if m is None:
            return None
        year = int(m.group(1))
        # Year 9999 is refused too: its due date would fall outside the calendar.
        if not 1 <= year <= 9998:
            return None
        first_day = self[text] = date(year, int(m.group(2)), 1)
        return first_day

    def __missing__(self, text: object) -> date:
        first_day = self.read(text) if isinstance(text, str) else None
        if first_day is None:
            raise KeyError(text)
        return first_day


FIRST_DAYS = _FirstDays()


def law_date(period: date) -> date:
    """The day whose law governs a period's contributions: its last day. A value that takes
    effect during a month governs that month's pay (the SMIG of 5 July 2004 floors July 2004);
    values dated on the 1st, as nearly all are, read the same either way."""
    return date(period.year, period.month, days_in_month(period.year, period.month))


def period_text(first_day: date) -> str:
    return f"{first_day.year:04d}-{first_day.month:02d}"


def parse_instant(text: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime ("Z" accepted; no offset means UTC)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def add_months(day: date, months: int) -> date:
    """Same day `months` calendar months later, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, days_in_month(year, month)))


def due_date(period: date, filing: str, due_day: int) -> date:
    """Monthly: `due_day` of the month after the period. Quarterly: of the month after the
    end of the period's quarter (2026-08 → 2026-10-15)."""
    if filing == MONTHLY:
        months_after = 1
    elif filing == QUARTERLY:
        quarter_end = (period.month - 1) // 3 * 3 + 3
        months_after = quarter_end - period.month + 1
    else:
        raise ValueError(f"filing must be monthly or quarterly, not {filing!r}")
    month_after = add_months(period, months_after)
    return month_after.replace(day=min(due_day, days_in_month(month_after.year, month_after.month)))


def months_late(submitted: date, due: date) -> int:
    """0 on or before the due date; else the smallest m ≥ 1 with submitted ≤ due + m months.

    Due 2026-11-15: submitted 2026-11-16 → 1, 2026-12-15 → 1, 2026-12-16 → 2.
    """
    if submitted <= due:
        return 0
    m = max(1, (submitted.year - due.year) * 12 + submitted.month - due.month)
    # The month count is right to within one; the clamped calendar date settles it.
    while add_months(due, m) < submitted:
        m += 1
    while m > 1 and add_months(due, m - 1) >= submitted:
        m -= 1
    return m


def completed_years(birth: date, at: date) -> int:
    """Age in completed years at `at` (born on 29 February: a year completes on 1 March)."""
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def parse_day(text: object) -> date | None:
    """`YYYY-MM-DD` → date; None when it is not one."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
