"""A synthetic national month of declarations (RULES.md §5 input shape), deterministic.

The default is the size of a national month: ~57,750 declarations, ~300,000 INPS `salarie`
lines from employers of Pareto-distributed sizes (the largest with tens of thousands of
lines, risk classes 1-4, small employers filing quarterly) and ~100,000 CMSS lines from a
few large State bodies (fonctionnaire, militaire, parlementaire). `--employers N` scales it
down to a sample. The same seed always gives the same bytes.

    python -m services.demo.sample_month --period 2026-10 --out loadtests/out/month.jsonl
    python -m services.demo.sample_month --employers 300 --bad-fraction 0.001 --out -

Importable: `generate_month(...)` yields one declaration dict at a time, for the streaming
load test and the demo.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

NATIONAL_EMPLOYERS = 57_750
NATIONAL_INPS_LINES = 300_000
NATIONAL_CMSS_LINES = 100_000
NATIONAL_STATE_BODIES = 40
QUARTERLY_BELOW = 10  # declaration.quarterly_filing_below_workers
PARLIAMENT_SEATS = 147
PARETO_ALPHA = 1.3
# The largest INPS employers, as shares of all INPS lines (a national month has two with
# tens of thousands of lines).
LARGEST_SHARES = (0.08, 0.04, 0.02)
RISK_CLASS_WEIGHTS = (50, 30, 15, 5)

# State bodies, largest first; the category of their lines.
STATE_BODIES = (
    ("ETAT-EDUCATION", "fonctionnaire"),
    ("ETAT-DEFENSE", "militaire"),
    ("ETAT-ASSEMBLEE", "parlementaire"),
    ("ETAT-SANTE", "fonctionnaire"),
    ("ETAT-SECURITE", "militaire"),
)


@dataclass(frozen=True)
class Employer:
    id: str
    regime: str
    size: int
    risk_class: int | None
    filing: str
    category: str


def employers_of_month(employers: int, rng: random.Random) -> list[Employer]:
    """The employers of a month, with their sizes, in a shuffled (deterministic) order."""
    scale = employers / NATIONAL_EMPLOYERS
    bodies = min(employers - 1, max(1, round(NATIONAL_STATE_BODIES * scale))) if employers > 1 else 0
    inps_count = employers - bodies
    inps_sizes = _pareto_sizes(inps_count, round(NATIONAL_INPS_LINES * scale), rng)
    cmss_sizes = _state_sizes(bodies, round(NATIONAL_CMSS_LINES * scale))
    out = []
    for k, size in enumerate(inps_sizes):
        risk = rng.choices((1, 2, 3, 4), weights=RISK_CLASS_WEIGHTS)[0]
        filing = "quarterly" if size < QUARTERLY_BELOW else "monthly"
        out.append(Employer(f"{20_000_000 + k * 37:08d}/1", "INPS", size, risk, filing, "salarie"))
    for k, size in enumerate(cmss_sizes):
        name, category = STATE_BODIES[k] if k < len(STATE_BODIES) else (f"ETAT-{k + 1:03d}", "fonctionnaire")
        out.append(Employer(name, "CMSS", size, None, "monthly", category))
    rng.shuffle(out)
    return out


def _pareto_sizes(count: int, total: int, rng: random.Random) -> list[int]:
    if count <= 0:
        return []
    total = max(total, count)
    largest = [max(1, round(total * s)) for s in LARGEST_SHARES[: max(0, count - 1)]]
    if sum(largest) >= total - (count - len(largest)):
        largest = []
    rest_count = count - len(largest)
    raw = [min(int((1.0 - rng.random()) ** (-1.0 / PARETO_ALPHA)), 5_000) for _ in range(rest_count)]
    target = total - sum(largest)
    factor = target / sum(raw)
    sizes = [max(1, round(s * factor)) for s in raw]
    # Settle the rounding remainder one worker at a time.
    diff = target - sum(sizes)
    while diff != 0:
        i = rng.randrange(rest_count)
        if diff > 0:
            sizes[i] += 1
            diff -= 1
        elif sizes[i] > 1:
            sizes[i] -= 1
            diff += 1
    return largest + sizes


def _state_sizes(count: int, total: int) -> list[int]:
    if count <= 0:
        return []
    weights = [1 / (k + 1) ** 1.1 for k in range(count)]
    sizes = [max(1, math.floor(total * w / sum(weights))) for w in weights]
    sizes[0] += max(0, total - sum(sizes))
    return sizes


def generate_month(
    period: str = "2026-10",
    submitted_at: str = "2026-11-10T09:00:00Z",
    *,
    employers: int = NATIONAL_EMPLOYERS,
    bad_fraction: float = 0.0,
    seed: int = 2026,
) -> Iterator[dict[str, Any]]:
    """Declarations of one month, one dict each (RULES.md §5), always the same for a seed."""
    rng = random.Random(seed)
    worker = 0
    for k, employer in enumerate(employers_of_month(employers, rng)):
        lines = []
        for n in range(employer.size):
            worker += 1
            category = employer.category
            if category == "parlementaire" and n >= PARLIAMENT_SEATS:
                category = "fonctionnaire"  # the assembly's staff
            line = _inps_line(rng) if employer.regime == "INPS" else _cmss_line(rng)
            lines.append({"worker_id": f"W{worker:09d}", "category": category, **line})
        if bad_fraction > 0:
            _corrupt(lines, employer, bad_fraction, rng)
        doc: dict[str, Any] = {
            "declaration_id": f"D-{period}-{k + 1:06d}",
            "employer": {
                "id": employer.id,
                "regime": employer.regime,
                "risk_class": employer.risk_class,
                "filing": employer.filing,
            },
            "period": period,
            "submitted_at": submitted_at,
            "lines": lines,
        }
        yield doc


def _inps_line(rng: random.Random) -> dict[str, int]:
    draw = rng.random()
    days = 30 if draw < 0.86 else 0 if draw < 0.87 else rng.randint(1, 29)
    monthly = _round_to(rng.lognormvariate(math.log(90_000), 0.75), 500)
    base_salary = monthly if days >= 30 else _round_to(monthly * days / 30, 50)
    return {
        "days_worked": days,
        "base_salary": base_salary,
        "bonuses": _round_to(base_salary * rng.uniform(0.02, 0.3), 50) if rng.random() < 0.3 else 0,
        "benefits_in_kind": rng.randrange(10_000, 50_000, 500) if rng.random() < 0.05 else 0,
        "expense_reimbursements": rng.randrange(5_000, 40_000, 500) if rng.random() < 0.1 else 0,
    }


def _cmss_line(rng: random.Random) -> dict[str, int]:
    base_salary = _round_to(rng.lognormvariate(math.log(180_000), 0.45), 100)
    return {
        "days_worked": 30,
        "base_salary": base_salary,
        "bonuses": _round_to(base_salary * rng.uniform(0.1, 0.4), 100),
        "benefits_in_kind": rng.randrange(20_000, 100_000, 1_000) if rng.random() < 0.03 else 0,
        "expense_reimbursements": rng.randrange(5_000, 60_000, 1_000) if rng.random() < 0.05 else 0,
    }


def _corrupt(lines: list[dict[str, Any]], employer: Employer, fraction: float, rng: random.Random) -> None:
    """Break a few lines the way real payroll files do (each makes its declaration rejected)."""
    for i, line in enumerate(lines):
        if rng.random() >= fraction:
            continue
        kind = rng.randrange(4)
        if kind == 0:
            line["bonuses"] = -rng.randrange(1_000, 20_000, 500)
        elif kind == 1:
            line["days_worked"] = rng.choice((32, 40, -1))
        elif kind == 2:
            line["category"] = "fonctionnaire" if employer.regime == "INPS" else "salarie"
        elif i > 0:
            line["worker_id"] = lines[i - 1]["worker_id"]
        else:
            line["base_salary"] = -1


def _round_to(amount: float, step: int) -> int:
    return max(0, round(amount / step) * step)


def write_month(path: Path | None, **options: Any) -> dict[str, int]:
    """Write the month as JSONL (stdout when `path` is None); counts of what was written."""
    out = sys.stdout.buffer if path is None else path.open("wb")
    counts = {"declarations": 0, "lines": 0, "inps_lines": 0, "cmss_lines": 0, "largest": 0, "bytes": 0}
    try:
        for doc in generate_month(**options):
            data = orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
            out.write(data)
            n = len(doc["lines"])
            counts["declarations"] += 1
            counts["lines"] += n
            counts["inps_lines" if doc["employer"]["regime"] == "INPS" else "cmss_lines"] += n
            counts["largest"] = max(counts["largest"], n)
            counts["bytes"] += len(data)
    finally:
        if path is not None:
            out.close()
        else:
            out.flush()
    return counts


def main(
    period: Annotated[str, typer.Option(help="the month declared, YYYY-MM")] = "2026-10",
    submitted_at: Annotated[str, typer.Option(help="ISO 8601 submission time")] = "2026-11-10T09:00:00Z",
    employers: Annotated[int, typer.Option(help="number of employers (declarations)")] = NATIONAL_EMPLOYERS,
    bad_fraction: Annotated[float, typer.Option(help="share of lines made invalid")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 2026,
    out: Annotated[str, typer.Option(help="output JSONL path, or -")] = "loadtests/out/month.jsonl",
) -> None:
    """Write a synthetic month of declarations as JSONL."""
    path = None if out == "-" else Path(out)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    counts = write_month(
        path,
        period=period,
        submitted_at=submitted_at,
        employers=employers,
        bad_fraction=bad_fraction,
        seed=seed,
    )
    summary = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    print(f"{out}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    typer.run(main)
