"""Contribution items of a declaration line, and the totals of a declaration (RULES.md §2.1).

The items that apply depend only on (period, regime, category, risk class), so they are
read from the parameters once and cached on the ruleset as a `LineSpec`; a national month
then costs a few integer operations per item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from services.rules.dates import law_date
from services.rules.declaration import CMSS, INPS, Line
from services.rules.money import Rate, apply_rate
from services.rules.parameters import NotInForce
from services.rules.ruleset import Ruleset

EMPLOYER = "employer"
EMPLOYEE = "employee"
# Every kind of item, in the output order of RULES.md §2.1: (branch, fund, payer).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("PF", "INPS", EMPLOYER),
    ("ATMP", "INPS", EMPLOYER),
    ("PVID", "INPS", EMPLOYER),
    ("PVID", "INPS", EMPLOYEE),
    ("RETRAITE", "CMSS", EMPLOYER),
    ("RETRAITE", "CMSS", EMPLOYEE),
    ("AMO", "CANAM", EMPLOYER),
    ("AMO", "CANAM", EMPLOYEE),
)
BRANCHES = ("PF", "ATMP", "PVID", "RETRAITE", "AMO")
PENSION_BRANCHES = ("PVID", "RETRAITE")  # the base of careers (RULES.md §3)
FUNDS = ("INPS", "CMSS", "CANAM")
_COLUMN = {c: i for i, c in enumerate(COLUMNS)}

# What an item's rate applies to.
BASE = "base"  # the line's base: gross, raised to the SMIG floor on INPS lines
GROSS = "gross"
BASE_SALARY = "base_salary"  # the index salary alone (CMSS RETRAITE before 2019)
_BASE_INDEX = {BASE: 0, GROSS: 1, BASE_SALARY: 2}
_CAPPED_BASE_INDEX = 3  # the line's base, held to the ceiling

SMIG_DAYS = 30


@dataclass(frozen=True, slots=True)
class ItemSpec:
    branch: str
    fund: str
    payer: str
    rate: Rate
    base: str  # BASE, GROSS or BASE_SALARY
    capped: bool = False  # held to the LineSpec's ceiling (only on BASE)

    @property
    def column(self) -> int:
        return _COLUMN[(self.branch, self.fund, self.payer)]


@dataclass(frozen=True, slots=True)
class LineSpec:
    """The items of one category for one period; `smig` set when the SMIG floor applies,
    `ceiling` when a ceiling holds the base of the capped items."""

    items: tuple[ItemSpec, ...]
    smig: int | None = None
    ceiling: int | None = None
    floors: tuple[int, ...] = field(init=False)  # the floor for 0..31 days worked
    fast: tuple[tuple[Any, ...], ...] = field(init=False)  # items unpacked for the §5 objects
    hot: tuple[tuple[int, int, int, int, int], ...] = field(init=False)  # col, 2p, q, 2q, base kind
    pension_kind: int | None = field(init=False)  # which base the pension item applies to
    amo_kind: int | None = field(init=False)  # which base the AMO items apply to
    columns: frozenset[int] = field(init=False)  # the COLUMNS slots its items fill

    def __post_init__(self) -> None:
        if any(i.capped and i.base != BASE for i in self.items):
            raise ValueError("a ceiling holds only the line's base")
        floors = tuple(0 if self.smig is None else smig_floor(self.smig, d) for d in range(32))
        fast = tuple(
            (
                i.column,
                i.branch,
                i.fund,
                i.payer,
                i.rate.text,
                2 * i.rate.num,
                i.rate.den,
                2 * i.rate.den,
                _CAPPED_BASE_INDEX if i.capped else _BASE_INDEX[i.base],
            )
            for i in self.items
        )
        kinds = {i.branch: f[8] for i, f in zip(self.items, fast, strict=True)}
        pension = [kinds[b] for b in PENSION_BRANCHES if b in kinds]
        object.__setattr__(self, "floors", floors)
        object.__setattr__(self, "fast", fast)
        object.__setattr__(self, "hot", tuple((f[0], f[5], f[6], f[7], f[8]) for f in fast))
        object.__setattr__(self, "pension_kind", pension[0] if pension else None)
        object.__setattr__(self, "amo_kind", kinds.get("AMO"))
        object.__setattr__(self, "columns", frozenset(i.column for i in self.items))


def gross_remuneration(base_salary: int, bonuses: int, benefits_in_kind: int) -> int:
    """Expense reimbursements are never remuneration (CPS art. 187)."""
    return base_salary + bonuses + benefits_in_kind


def smig_floor(smig: int, days_worked: int) -> int:
    """round(SMIG × min(days, 30) / 30), exactly: (2·SMIG·d + 30) // 60."""
    days = min(days_worked, SMIG_DAYS)
    return (2 * smig * days + SMIG_DAYS) // (2 * SMIG_DAYS)


def line_spec(ruleset: Ruleset, period: date, regime: str, category: str, risk_class: int | None) -> LineSpec:
    """The items of a category for a period (its first day), under the law in force on the
    period's last day (cached); NotInForce when a parameter is missing."""
    key = ("line_spec", period, regime, category, risk_class if regime == INPS else None)
    spec = ruleset.cache.get(key)
    if spec is None:
        at = law_date(period)
        spec = ruleset.cache[key] = _build_line_spec(ruleset, at, regime, category, risk_class)
    assert isinstance(spec, LineSpec)
    return spec


def _amo_applies(ruleset: Ruleset, at: date) -> bool:
    return ruleset.flag("amo.in_force", at, default=False)


def _build_line_spec(
    ruleset: Ruleset, at: date, regime: str, category: str, risk_class: int | None
) -> LineSpec:
    def rate(name: str) -> Rate:
        return Rate(ruleset.rate(name, at))

    if regime == INPS:
        ceiling = ruleset.optional("inps.ceiling", at)
        cap = isinstance(ceiling, int)
        atmp = ruleset.table("inps.atmp.employer_rate", at).get(str(risk_class))
        if atmp is None:
            raise NotInForce(f"inps.atmp.employer_rate[{risk_class}]", at)
        if not isinstance(atmp, Decimal):
            raise TypeError("inps.atmp.employer_rate holds rates")
        items = [
            ItemSpec("PF", "INPS", EMPLOYER, rate("inps.pf.employer_rate"), BASE, cap),
            ItemSpec("ATMP", "INPS", EMPLOYER, Rate(atmp), BASE, cap),
            ItemSpec("PVID", "INPS", EMPLOYER, rate("inps.pvid.employer_rate"), BASE, cap),
            ItemSpec("PVID", "INPS", EMPLOYEE, rate("inps.pvid.employee_rate"), BASE, cap),
        ]
        if _amo_applies(ruleset, at):
            items += [
                ItemSpec("AMO", "CANAM", EMPLOYER, rate("inps.amo.employer_rate"), BASE),
                ItemSpec("AMO", "CANAM", EMPLOYEE, rate("inps.amo.employee_rate"), BASE),
            ]
        return LineSpec(
            tuple(items),
            # No SMIG known for the period (before 2004-07-05): no floor, see parameters/smig.yaml.
            smig=ruleset.optional_integer("smig", at),
            ceiling=ceiling if isinstance(ceiling, int) else None,
        )
    if regime == CMSS:
        retraite_base = ruleset.text("cmss.retraite.base", at)
        if retraite_base not in (GROSS, BASE_SALARY):
            raise ValueError(f"cmss.retraite.base is gross or base_salary, not {retraite_base!r}")
        prefix = f"cmss.retraite.{category}"
        items = [
            ItemSpec("RETRAITE", "CMSS", EMPLOYER, rate(f"{prefix}.employer_rate"), retraite_base),
            ItemSpec("RETRAITE", "CMSS", EMPLOYEE, rate(f"{prefix}.employee_rate"), retraite_base),
        ]
        if _amo_applies(ruleset, at):
            items += [
                ItemSpec("AMO", "CANAM", EMPLOYER, rate("cmss.amo.employer_rate"), GROSS),
                ItemSpec("AMO", "CANAM", EMPLOYEE, rate("cmss.amo.employee_rate"), GROSS),
            ]
        return LineSpec(tuple(items))
    raise ValueError(f"unknown regime {regime!r}")


# A line as the services carry it (the `AssessedLine` of the contracts): worker_id, category,
# gross, base, floor_applied, pension_base, amo_base, amounts (one per COLUMNS, None: no item).
CompactLine = tuple[str, str, int, int, bool, int, int, list[int | None]]
_NO_ITEMS: tuple[None, ...] = (None,) * len(COLUMNS)


def assess_lines_compact(
    lines: Iterable[Line],
    specs: Mapping[str, LineSpec],
    sums: list[int],
    worked: set[str] | None = None,
) -> list[CompactLine]:
    """Every line's amounts as a `CompactLine`: the one place where items are computed.

    Adds every amount to `sums` (one slot per COLUMNS entry) and the category of every
    line that has items to `worked`. The hot loop of a national month: plain tuples,
    integer arithmetic, no Decimal, no dict per item (the RULES.md §5 objects are
    derived from these by `assess_lines`).
    """
    out: list[CompactLine] = []
    append = out.append
    seen = set() if worked is None else worked
    for worker_id, category, days, base_salary, bonuses, in_kind, _expenses in lines:
        gross = base_salary + bonuses + in_kind
        if days == 0:
            # Not worked this month: base 0, no items (RULES.md §2).
            append((worker_id, category, gross, 0, False, 0, 0, list(_NO_ITEMS)))
            continue
        spec = specs[category]
        seen.add(category)
        floor = spec.floors[days]
        floor_applied = floor > gross
        base = floor if floor_applied else gross
        ceiling = spec.ceiling
        capped = base if ceiling is None or base <= ceiling else ceiling
        values = (base, gross, base_salary, capped)  # indexed by each item's kind of base
        amounts: list[int | None] = list(_NO_ITEMS)
        for col, p2, q, q2, kind in spec.hot:
            amount = (values[kind] * p2 + q) // q2  # = apply_rate(b, rate): round half up, exact
            sums[col] += amount
            amounts[col] = amount
        pension, amo = spec.pension_kind, spec.amo_kind
        append(
            (
                worker_id,
                category,
                gross,
                base,
                floor_applied,
                0 if pension is None else values[pension],
                0 if amo is None else values[amo],
                amounts,
            )
        )
    return out


def assess_lines(
    lines: Iterable[Line],
    specs: Mapping[str, LineSpec],
    sums: list[int],
    worked: set[str] | None = None,
) -> list[dict[str, Any]]:
    """The RULES.md §5 line objects, with the amounts of `assess_lines_compact`; adds every
    amount to `sums` and the category of every line that has items to `worked`."""
    lines = list(lines)
    return expand_lines(lines, assess_lines_compact(lines, specs, sums, worked), specs)


def expand_lines(
    lines: Sequence[Line], compact: Sequence[CompactLine], specs: Mapping[str, LineSpec]
) -> list[dict[str, Any]]:
    """The RULES.md §5 line objects of assessed lines: each item with its branch, fund,
    payer, rate and base, and the amount computed by `assess_lines_compact`."""
    out: list[dict[str, Any]] = []
    append = out.append
    for line, (worker_id, category, gross, base, floor_applied, _pb, _ab, amounts) in zip(
        lines, compact, strict=True
    ):
        items: list[dict[str, Any]] = []
        if line[2] != 0:  # days worked: a line with no day has no item
            spec = specs[category]
            ceiling = spec.ceiling
            capped = base if ceiling is None or base <= ceiling else ceiling
            values = (base, gross, line[3], capped)  # the same bases as the amounts'
            items = [
                {
                    "branch": branch,
                    "fund": fund,
                    "payer": payer,
                    "rate": text,
                    "base": values[kind],
                    "amount": amounts[col],
                }
                for col, branch, fund, payer, text, _p2, _q, _q2, kind in spec.fast
            ]
        append(
            {
                "worker_id": worker_id,
                "category": category,
                "gross": gross,
                "base": base,
                "floor_applied": floor_applied,
                "items": items,
            }
        )
    return out


def expand_assessed_lines(
    lines: Sequence[Sequence[Any]], rates: Mapping[str, Sequence[str | None]]
) -> list[dict[str, Any]]:
    """The RULES.md §5 line objects of the wire's assessed lines (`contracts.declarations.
    AssessedLine`) and per-category rates: the business report an employer reads. The
    pension items (PVID, RETRAITE) apply to the line's pension base, AMO to its AMO base,
    the others to its base."""
    out: list[dict[str, Any]] = []
    for worker_id, category, gross, base, floor_applied, pension_base, amo_base, amounts in lines:
        bases = [
            pension_base if branch in PENSION_BRANCHES else amo_base if branch == "AMO" else base
            for branch, _, _ in COLUMNS
        ]
        items = [
            {
                "branch": branch,
                "fund": fund,
                "payer": payer,
                "rate": rate,
                "base": item_base,
                "amount": amount,
            }
            for (branch, fund, payer), rate, item_base, amount in zip(
                COLUMNS, rates[category], bases, amounts, strict=True
            )
            if amount is not None
        ]
        out.append(
            {
                "worker_id": worker_id,
                "category": category,
                "gross": gross,
                "base": base,
                "floor_applied": floor_applied,
                "items": items,
            }
        )
    return out


def column_rates(spec: LineSpec) -> list[str | None]:
    """The rate text of each COLUMNS slot the spec fills (None elsewhere)."""
    rates: list[str | None] = [None] * len(COLUMNS)
    for item in spec.items:
        rates[item.column] = item.rate.text
    return rates


def assess_line(line: Line, spec: LineSpec) -> dict[str, Any]:
    """One line's items (RULES.md §5 shape)."""
    return assess_lines([line], {line[1]: spec}, [0] * len(COLUMNS))[0]


def item_amount(base: int, item: ItemSpec, ceiling: int | None = None) -> int:
    """One item's amount from the base it applies to, held to the ceiling if it is capped."""
    if item.capped and ceiling is not None:
        base = min(base, ceiling)
    return apply_rate(base, item.rate)


def totals(sums: Sequence[int], columns_used: Iterable[int]) -> dict[str, Any]:
    """Totals from the per-column sums of rounded items (RULES.md §5 `totals`).

    `columns_used` are the columns that had at least one item: a branch or fund appears in
    `by_branch` / `by_fund` when it had an item, even of 0 francs. COLUMNS is in branch order
    and in fund order, so walking it fills both mappings in their output order.
    """
    employer = employee = 0
    by_branch: dict[str, int] = {}
    by_fund: dict[str, int] = {}
    for col in sorted(columns_used):
        branch, fund, payer = COLUMNS[col]
        amount = sums[col]
        if payer == EMPLOYER:
            employer += amount
        else:
            employee += amount
        by_branch[branch] = by_branch.get(branch, 0) + amount
        by_fund[fund] = by_fund.get(fund, 0) + amount
    return {
        "employer": employer,
        "employee": employee,
        "total": employer + employee,
        "by_branch": by_branch,
        "by_fund": by_fund,
    }


def zero_totals() -> dict[str, Any]:
    return {"employer": 0, "employee": 0, "total": 0, "by_branch": {}, "by_fund": {}}
