"""A worker's career as the pension rules count it (RULES.md §3).

A career is a list of (period, base) entries, one per month and employer, where base is
the pension base assessed for that month. A month declared by several employers counts
once, with its bases added; a month whose bases add up to 0 does not count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from services.rules.dates import FIRST_DAYS, parse_period
from services.rules.declaration import InvalidInput
from services.rules.money import mean_half_up

# A counted month: (first day of the month, its bases added).
Month = tuple[date, int]


_PAIRS = frozenset({list, tuple})


def read_career(entries: object, path: str = "career") -> list[tuple[date, int]]:
    """Entries as objects `{"period", "base"}` or as `[period, base]` pairs (the wire form)."""
    if not isinstance(entries, list | tuple):
        raise InvalidInput(f"{path} must be an array")
    # The wire form, [period, base] pairs, is checked and read a column at a time by C code
    # (a 35-year career is 420 pairs, and the control re-reads every liquidation's). Any other
    # form, or any bad entry, is read entry by entry below, which names the entry at fault.
    if entries and set(map(type, entries)) <= _PAIRS and set(map(len, entries)) == {2}:
        periods, bases = zip(*entries)  # noqa: B905  # every entry is a pair: checked above
        if set(map(type, bases)) == {int} and min(bases) >= 0:
            try:
                return list(zip(map(FIRST_DAYS.__getitem__, periods), bases, strict=True))
            except (KeyError, TypeError):  # not a period, or an unhashable one
                pass
    out = []
    for i, entry in enumerate(entries):
        period_raw: Any
        base: Any
        if isinstance(entry, list | tuple) and len(entry) == 2:
            period_raw, base = entry
        elif isinstance(entry, Mapping):
            if "period" not in entry or "base" not in entry:
                where = f"{path}[{i}]"
                raise InvalidInput(f"missing required field {where}.period or {where}.base")
            period_raw, base = entry["period"], entry["base"]
        else:
            raise InvalidInput(f"{path}[{i}] must be an object with period and base")
        period = parse_period(period_raw)
        if period is None:
            raise InvalidInput(f"{path}[{i}].period is not YYYY-MM: {period_raw!r}")
        if type(base) is not int or base < 0:
            raise InvalidInput(f"{path}[{i}].base must be a non-negative integer, not {base!r}")
        out.append((period, base))
    return out


def counted_months(entries: Sequence[tuple[date, int]]) -> list[Month]:
    """Distinct months with a positive summed base, oldest first."""
    by_month: dict[date, int] = dict(entries)
    if len(by_month) != len(entries):  # a month of several employers: add their bases
        by_month = {}
        for period, base in entries:
            by_month[period] = by_month.get(period, 0) + base
    if min(by_month.values(), default=1) > 0:  # no month at 0, the usual case: no filtering
        counted = list(by_month.items())
    else:
        counted = [(m, b) for m, b in by_month.items() if b > 0]
    counted.sort()
    return counted


def reference_salary(months: Sequence[Month], n: int) -> int:
    """round(mean base of the most recent `n` counted months), or of all if fewer; 0 if none."""
    recent = months[-n:] if n > 0 else []
    if not recent:
        return 0
    return mean_half_up(sum(b for _, b in recent), len(recent))
