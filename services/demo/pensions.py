"""The demo's pensions: careers from before Kalo imported for a few hundred retiring workers of
the sample month, and their claims filed, through the gateway as back offices do.

The workers are taken from the month's accepted declarations, so each career is a history
imported from before Kalo plus the month Kalo assessed. Their profiles make every decision
appear: pensions at the normal age and early, old-age allowances (lump sums), rejections
(age not reached, too few months), CMSS pensions by grade, and liquidations the control
commission will flag (a salary spike at the end of the career, a high amount, a second
claim for a worker whose pension is already approved). Without the control commission
running, the liquidations are all there is to print.
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
import httpx

from services.demo.client import post
from services.rules.dates import add_months, parse_period, period_text

CONCURRENCY = 16
CMSS_AGE = {"A": 62, "B2": 59, "B1": 58, "C": 55}
# Profiles and their shares of the retirees (the rest are normal pensions).
PROFILES = (
    ("early", 0.15),
    ("lump_sum", 0.15),
    ("rejected", 0.06),
    ("spike", 0.08),
    ("high", 0.04),
    ("duplicate", 0.04),
)


@dataclass
class Retiree:
    worker_id: str
    regime: str
    category: str
    profile: str
    birth_date: str
    grade: str | None
    rows: list[tuple[str, str, str, int]]  # worker_id, period, employer_id, base (imported)


@dataclass
class PensionOutcome:
    workers: int = 0
    rows: int = 0
    claims: int = 0
    revisions: int = 0
    imported_s: float = 0.0
    liquidated_s: float = 0.0
    control: bool = False
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (regime, decision)
    monthly: Counter[str] = field(default_factory=Counter)  # regime → monthly pensions
    lump_sums: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)  # (regime, status)
    status_monthly: Counter[tuple[str, str]] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    pending: int = 0


def retirees(
    docs: list[dict[str, Any]], accepted: set[int], period: str, effective: date, count: int, seed: int = 12
) -> list[Retiree]:
    """`count` workers of the month's accepted declarations, each with a profile and a history
    imported from before Kalo (up to the month before `period`); their ages are completed
    years on `effective` (a first of the month)."""
    rng = random.Random(seed)
    lines = [
        (doc["employer"]["regime"], line)
        for i, doc in enumerate(docs)
        if i in accepted
        for line in doc["lines"]
        if line["days_worked"] >= 30
    ]
    inps = [x for x in lines if x[0] == "INPS"]
    cmss = [x for x in lines if x[0] == "CMSS" and x[1]["category"] != "parlementaire"]
    rng.shuffle(inps)
    rng.shuffle(cmss)
    n_cmss = min(len(cmss), count // 10)
    chosen = inps[: count - n_cmss] + cmss[:n_cmss]
    last = add_months(_month(period), -1)
    out = []
    for k, (regime, line) in enumerate(chosen):
        profile = _profile(k / max(count, 1)) if regime == "INPS" else "cmss"
        salary = line["base_salary"] + line["bonuses"] + line["benefits_in_kind"]
        months, age, grade = 360, rng.randint(58, 65), None
        if profile == "early":
            months, age = rng.randint(200, 400), rng.randint(53, 57)
        elif profile == "lump_sum":
            months, age = rng.randint(72, 150), rng.randint(55, 64)
        elif profile == "rejected":
            months, age = (rng.randint(20, 60), 60) if k % 2 else (300, rng.randint(48, 52))
        elif profile == "high":
            salary, months = 3_000_000, 420
        elif profile == "cmss":
            grade = rng.choice(sorted(CMSS_AGE))
            months, age = rng.randint(190, 420), CMSS_AGE[grade] + rng.randint(0, 4)
        else:
            months = rng.randint(300, 420)
        birth = date(effective.year - age, rng.randint(1, effective.month - 1 or 1), 1)
        rows = []
        base = salary
        for back in range(1, months):  # the month itself is assessed from its declaration
            if back % 12 == 0:
                base = max(int(base / 1.02), 30_000)  # lower the further back
            b = base * 2 if profile == "spike" and back <= 36 else base
            if profile == "spike" and back > 36:
                b = max(salary // 2, 30_000)
            rows.append((line["worker_id"], period_text(add_months(last, 1 - back)), "AVANT-KALO/1", b))
        out.append(
            Retiree(
                line["worker_id"],
                regime,
                line["category"],
                profile,
                birth.isoformat(),
                grade,
                rows,
            )
        )
    return out


def _profile(share: float) -> str:
    edge = 0.0
    for name, part in PROFILES:
        edge += part
        if share < edge:
            return name
    return "pension"


def _month(period: str) -> date:
    parsed = parse_period(period)
    assert parsed is not None
    return parsed


def careers_file(people: list[Retiree]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("worker_id", "period", "employer_id", "base"))
    for person in people:
        writer.writerows(person.rows)
    return out.getvalue().encode()


def claim_of(person: Retiree, effective_date: str, replaces: str | None = None) -> dict[str, Any]:
    doc = {
        "worker_id": person.worker_id,
        "regime": person.regime,
        "category": person.category,
        "grade": person.grade,
        "birth_date": person.birth_date,
        "effective_date": effective_date,
    }
    if replaces:
        doc["replaces"] = replaces
    return doc


async def run_pensions(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    key: str,
    people: list[Retiree],
    *,
    effective_date: str,
    timeout_s: float,
    control_wait_s: float,
) -> PensionOutcome:
    out = PensionOutcome(workers=len(people), rows=sum(len(p.rows) for p in people))
    headers = {"Authorization": f"Bearer {key}"}
    started = time.monotonic()
    r = await post(
        client,
        "/v1/careers/import",
        headers=headers,
        files={"file": ("careers.csv", careers_file(people), "text/csv")},
    )
    if r.status_code != 202:
        raise RuntimeError(f"the careers import was refused ({r.status_code}): {r.text[:300]}")
    import_id = r.json()["import_id"]
    while True:
        doc = (await client.get(f"/v1/careers/imports/{import_id}", headers=headers)).json()
        if doc["applied_workers"] >= doc["workers"] or time.monotonic() - started > timeout_s:
            break
        await asyncio.sleep(0.25)
    out.imported_s = time.monotonic() - started

    started = time.monotonic()
    ids = await _file_all(client, headers, [claim_of(p, effective_date) for p in people])
    out.claims = len(ids)
    out.pending = await _wait(conn, ids, ("received",), timeout_s)
    out.liquidated_s = time.monotonic() - started
    # The control commission, if it runs, decides what it can on its own (unflagged: approved).
    out.control = await _control_running(conn, ids, control_wait_s)
    duplicates = [(p, i) for p, i in zip(people, ids, strict=True) if p.profile == "duplicate"]
    if out.control:
        await _wait(conn, [i for _, i in duplicates], ("received", "liquidated"), timeout_s)
    # A second claim for a worker whose claim is already liquidated (approved, with the control):
    # only a revision is accepted, and the control flags it DUPLICATE_CLAIM.
    revisions = await _file_all(
        client, headers, [claim_of(p, effective_date, replaces=i) for p, i in duplicates]
    )
    out.revisions = len(revisions)
    ids += revisions
    out.pending += await _wait(conn, revisions, ("received",), timeout_s)
    if out.control:
        await _wait(conn, ids, ("received", "liquidated"), timeout_s)
    await _collect(conn, ids, out)
    return out


async def _file_all(
    client: httpx.AsyncClient, headers: dict[str, str], claims: list[dict[str, Any]]
) -> list[str]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def file(claim: dict[str, Any]) -> str:
        async with gate:
            r = await post(client, "/v1/pension-claims", headers=headers, json=claim)
        if r.status_code != 202:
            raise RuntimeError(f"the gateway answered {r.status_code} to a claim: {r.text[:300]}")
        return str(r.json()["claim_id"])

    return list(await asyncio.gather(*(file(c) for c in claims)))


async def _wait(conn: asyncpg.Connection, ids: list[str], statuses: tuple[str, ...], timeout_s: float) -> int:
    """Wait until none of the claims has one of `statuses`; how many still have."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = int(
            await conn.fetchval(
                "SELECT count(*) FROM pension_claim_states WHERE claim_id = ANY($1) AND status = ANY($2)",
                ids,
                list(statuses),
            )
        )
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.25)


async def _control_running(conn: asyncpg.Connection, ids: list[str], wait_s: float) -> bool:
    """Whether a control decision appears for these claims within `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await conn.fetchval("SELECT EXISTS (SELECT FROM claim_decisions WHERE claim_id = ANY($1))", ids):
            return True
        await asyncio.sleep(0.5)
    return False


async def _collect(conn: asyncpg.Connection, ids: list[str], out: PensionOutcome) -> None:
    rows = await conn.fetch(
        "SELECT regime, status, liquidation, flags FROM pension_claim_states WHERE claim_id = ANY($1)", ids
    )
    for r in rows:
        liquidation = r["liquidation"]
        if liquidation is None:
            continue
        regime, decision = r["regime"], liquidation["decision"]
        out.decisions[(regime, decision)] += 1
        out.monthly[regime] += liquidation["monthly_pension"]
        out.lump_sums[regime] += liquidation["lump_sum"]
        if liquidation["reason"]:
            out.reasons[liquidation["reason"]] += 1
        out.statuses[(regime, r["status"])] += 1
        out.status_monthly[(r["status"], regime)] += liquidation["monthly_pension"] + liquidation["lump_sum"]
        out.flags.update(f if isinstance(f, str) else f.get("code", "?") for f in r["flags"] or [])
