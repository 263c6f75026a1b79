"""Money: integer francs CFA, exact decimal rates, round half up to the franc.

XOF has no minor unit, so every amount is an `int`. A rate is an exact `Decimal`; an amount
is `round(base × rate)` computed once per worker, branch and payer, and totals add rounded
amounts. `apply_rate` does this in pure integer arithmetic (a decimal rate is exactly p/q),
which is several times faster than `Decimal` and gives the same result; `apply_rate_decimal`
is the plain reference the property tests compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation, Overflow

# Wide enough that products of francs and rates are never rounded before we round them.
_EXACT = Context(prec=100, traps=[Inexact, InvalidOperation, Overflow])
_ROUND = Context(prec=100, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])
_FRANC = Decimal(1)


def round_half_up(amount: Decimal) -> int:
    """Round to the franc, halves away from zero for positives: 3777.5 → 3778, 637.5 → 638."""
    return int(amount.quantize(_FRANC, context=_ROUND))


def apply_rate_decimal(base: int, rate: Decimal) -> int:
    """round(base × rate), the reference implementation in `Decimal`."""
    return round_half_up(_EXACT.multiply(Decimal(base), rate))


def exact_product(*factors: Decimal | int) -> Decimal:
    """The product of decimals and integers, never rounded (an error if it would be)."""
    result = Decimal(1)
    for factor in factors:
        result = _EXACT.multiply(result, Decimal(factor))
    return result


def format_rate(rate: Decimal) -> str:
    """A rate as a decimal string, keeping the decimals it was written with; zero is "0".

    Rates are printed exactly as the parameter files write them ("0.08", "0.054", "0.0306");
    a rate derived by multiplying a parameter by a whole number keeps that parameter's
    decimals (0.02 × 25 → "0.50"), and a zero rate is "0".
    """
    if rate.is_zero():
        return "0"
    return format(rate, "f")


@dataclass(frozen=True, slots=True)
class Rate:
    """An exact rate with its fraction p/q precomputed for `apply_rate`."""

    value: Decimal
    text: str = field(init=False)
    num: int = field(init=False)
    den: int = field(init=False)

    def __post_init__(self) -> None:
        if not self.value.is_finite() or self.value < 0:
            raise ValueError(f"a rate is a finite non-negative decimal, not {self.value}")
        num, den = self.value.as_integer_ratio()
        object.__setattr__(self, "text", format_rate(self.value))
        object.__setattr__(self, "num", num)
        object.__setattr__(self, "den", den)


def apply_rate(base: int, rate: Rate) -> int:
    """round(base × rate) for base ≥ 0, exactly, in integers.

    With rate = p/q, base·p/q rounded half up is floor(base·p/q + 1/2) = (2·base·p + q) // (2·q).
    """
    return (2 * base * rate.num + rate.den) // (2 * rate.den)


def mean_half_up(total: int, count: int) -> int:
    """round(total / count) for total ≥ 0, count ≥ 1, exactly."""
    return (2 * total + count) // (2 * count)
