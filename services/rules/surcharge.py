"""Late-payment surcharge (majoration de retard, RULES.md §2.3).

round(total × (first + further × (months_late − 1))) on an original declaration submitted
late; a correction (a declaration that `replaces` another) carries none. Both rates are
placeholders in the parameter files until the CPS Book 5 text is read.
"""

from __future__ import annotations

from decimal import Decimal

from services.rules.money import Rate, apply_rate


def surcharge_rate(months_late: int, first_month: Decimal, further_month: Decimal) -> Decimal:
    if months_late <= 0:
        return Decimal(0)
    return first_month + further_month * (months_late - 1)


def surcharge(
    total: int,
    months_late: int,
    first_month: Decimal,
    further_month: Decimal,
    *,
    correction: bool = False,
) -> int:
    if correction or months_late <= 0:
        return 0
    return apply_rate(total, Rate(surcharge_rate(months_late, first_month, further_month)))
