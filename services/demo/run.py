"""`kalo demo`: push a sample month through the running stack and say what happened.

It talks to the services the way users do: employers are registered in the registry,
every declaration goes through the gateway's HTTP API (one of them corrected afterwards),
and the outcome is read back from the ledger's projections. Employer and worker ids carry
a run tag, so the demo can run again on the same database.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import httpx

from services.common.db import connect_pool
from services.common.settings import Settings
from services.demo.client import post
from services.demo.pensions import PensionOutcome, retirees, run_pensions
from services.demo.sample_month import generate_month
from services.gateway.registry import add_employer, add_staff_key
from services.rules.dates import add_months

CONCURRENCY = 16


@dataclass
class Outcome:
    declarations: int = 0
    lines: int = 0
    submitted_s: float = 0.0
    drained_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    lines_by_status: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    by_branch: Counter[str] = field(default_factory=Counter)
    by_fund: Counter[str] = field(default_factory=Counter)
    employer_total: int = 0
    employee_total: int = 0
    correction: dict[str, Any] = field(default_factory=dict)
    pending: int = 0
    pensions: PensionOutcome | None = None


def last_month(now: datetime) -> str:
    """The period an employer declares today: the month before the current one."""
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def sample(tag: str, period: str, employers: int) -> list[dict[str, Any]]:
    """The generated month, with ids made unique to this run and two payroll mistakes."""
    docs = []
    for doc in generate_month(period, employers=employers, seed=7):
        doc.pop("declaration_id")
        doc.pop("submitted_at")  # the gateway stamps both
        doc["employer"]["id"] = f"DEMO-{tag}-{doc['employer']['id']}"
        for line in doc["lines"]:
            line["worker_id"] = f"{tag}-{line['worker_id']}"
        docs.append(doc)
    small = [d for d in docs if len(d["lines"]) >= 2][-2:]
    small[0]["lines"][1]["bonuses"] = -5_000  # NEGATIVE_AMOUNT
    small[1]["lines"][1]["worker_id"] = small[1]["lines"][0]["worker_id"]  # DUPLICATE_WORKER
    return docs


# stage, done, total (None: not known)
Progress = Callable[[str, int, int | None], None]


def _silent(stage: str, done: int, total: int | None) -> None:
    return None


async def run_demo(
    settings: Settings,
    *,
    employers: int,
    timeout_s: float,
    retiring: int = 300,
    control_wait_s: float = 10.0,
    progress: Progress | None = None,
) -> Outcome:
    """The demo; `progress(stage, done, total)` as it goes (the CLI's bars)."""
    report = progress or _silent
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    period = last_month(now)
    docs = sample(tag, period, employers)
    out = Outcome(declarations=len(docs), lines=sum(len(d["lines"]) for d in docs))
    # As the gateway: it writes the registry and reads the ledger's read models, as users see them.
    pool = await connect_pool(service="gateway", settings=settings, min_size=1, max_size=2)
    conn = await pool.acquire()
    try:
        keys = {}
        for n, d in enumerate(docs, 1):
            e = d["employer"]
            keys[e["id"]] = await add_employer(
                conn, employer_id=e["id"], regime=e["regime"], risk_class=e["risk_class"], filing=e["filing"]
            )
            report("employers registered", n, len(docs))
        url = f"http://127.0.0.1:{settings.gateway_port}"
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            ids = await _submit_all(client, docs, keys, report)
            out.submitted_s = time.monotonic() - started
            out.pending = await _wait_drained(conn, ids, timeout_s, report)
            out.drained_s = time.monotonic() - started
            if not out.pending:
                ids.append(await _correct_one(client, conn, docs, ids, keys, out))
                out.pending = await _wait_drained(conn, ids[-1:], timeout_s, report, "correction decided")
        lines = {i: len(d["lines"]) for i, d in zip(ids, docs, strict=False)}
        if out.correction:
            lines[ids[-1]] = lines[out.correction["replaces"]]
        await _collect(conn, lines, out)
        if retiring and not out.pending:
            report("pensions: careers, claims, liquidations, control", 0, None)
            out.pensions = await _pensions(
                settings, conn, tag, docs, ids, period, retiring, timeout_s, control_wait_s
            )
            report("pensions: careers, claims, liquidations, control", 1, 1)
    finally:
        await pool.release(conn)
        await pool.close()
    return out


async def _submit_all(
    client: httpx.AsyncClient, docs: list[dict[str, Any]], keys: dict[str, str], report: Progress
) -> list[str]:
    gate = asyncio.Semaphore(CONCURRENCY)
    submitted = 0

    async def submit(doc: dict[str, Any]) -> str:
        async with gate:
            r = await post(
                client,
                "/v1/declarations",
                json=doc,
                headers={"Authorization": f"Bearer {keys[doc['employer']['id']]}"},
            )
        if r.status_code != 202:
            raise RuntimeError(f"the gateway answered {r.status_code}: {r.text[:300]}")
        nonlocal submitted
        submitted += 1
        report("declarations submitted", submitted, len(docs))
        return str(r.json()["declaration_id"])

    return list(await asyncio.gather(*(submit(d) for d in docs)))


async def _correct_one(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    docs: list[dict[str, Any]],
    ids: list[str],
    keys: dict[str, str],
    out: Outcome,
) -> str:
    """The largest accepted INPS employer re-declares its month with a raise for one worker."""
    accepted = {
        r["declaration_id"]
        for r in await conn.fetch(
            "SELECT declaration_id FROM declarations WHERE declaration_id = ANY($1) AND status = 'accepted'",
            ids,
        )
    }
    inps = [i for i, d in enumerate(docs) if d["employer"]["regime"] == "INPS" and ids[i] in accepted]
    k = max(inps, key=lambda i: len(docs[i]["lines"]))
    before = await _dues(conn, docs[k]["employer"]["id"])
    doc = {**docs[k], "replaces": ids[k], "lines": [dict(line) for line in docs[k]["lines"]]}
    doc["lines"][0]["base_salary"] += 50_000
    r = await post(
        client,
        "/v1/declarations",
        json=doc,
        headers={"Authorization": f"Bearer {keys[doc['employer']['id']]}"},
    )
    if r.status_code != 202:
        raise RuntimeError(f"the correction was refused ({r.status_code}): {r.text[:300]}")
    out.correction = {
        "employer": doc["employer"]["id"],
        "replaces": ids[k],
        "id": r.json()["declaration_id"],
        "before": before,
    }
    return str(out.correction["id"])


async def _dues(conn: asyncpg.Connection, employer_id: str) -> dict[str, int]:
    """What the employer's account holds, per fund (the ledger's projection)."""
    rows = await conn.fetch(
        """SELECT fund, sum(amount) AS amount FROM employer_dues
           WHERE employer_id = $1 GROUP BY fund ORDER BY fund""",
        employer_id,
    )
    return {r["fund"]: int(r["amount"]) for r in rows}


async def _wait_drained(
    conn: asyncpg.Connection,
    ids: list[str],
    timeout_s: float,
    report: Progress,
    stage: str = "declarations decided",
) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        pending = int(
            await conn.fetchval(
                "SELECT count(*) FROM declarations WHERE declaration_id = ANY($1) AND status = 'received'",
                ids,
            )
        )
        report(stage, len(ids) - pending, len(ids))
        if pending == 0 or time.monotonic() > deadline:
            return pending
        await asyncio.sleep(0.25)


async def _collect(conn: asyncpg.Connection, lines: dict[str, int], out: Outcome) -> None:
    rows = await conn.fetch(
        "SELECT declaration_id, status, totals, report FROM declarations WHERE declaration_id = ANY($1)",
        list(lines),
    )
    for r in rows:
        out.statuses[r["status"]] += 1
        out.lines_by_status[r["status"]] += lines[r["declaration_id"]]
        if r["status"] == "rejected":
            for err in (r["report"] or {}).get("errors", []):
                out.error_codes[err["code"]] += 1
            continue
        if r["status"] != "accepted" or r["declaration_id"] == out.correction.get("replaces"):
            continue  # a replaced month counts once, with the corrective's amounts
        t = r["totals"]
        out.employer_total += t["employer"]
        out.employee_total += t["employee"]
        out.by_branch.update(t["by_branch"])
        out.by_fund.update(t["by_fund"])
    if out.correction:
        out.correction["after"] = await _dues(conn, out.correction["employer"])


async def _pensions(
    settings: Settings,
    conn: asyncpg.Connection,
    tag: str,
    docs: list[dict[str, Any]],
    ids: list[str],
    period: str,
    retiring: int,
    timeout_s: float,
    control_wait_s: float,
) -> PensionOutcome:
    """Careers imported for retiring workers of the month, and their claims, as a back office."""
    accepted = {
        r["declaration_id"]
        for r in await conn.fetch(
            "SELECT declaration_id FROM declarations WHERE declaration_id = ANY($1) AND status = 'accepted'",
            ids,
        )
    }
    effective = add_months(date.today().replace(day=1), 1)
    people = retirees(
        docs, {i for i, d in enumerate(ids[: len(docs)]) if d in accepted}, period, effective, retiring
    )
    key = await add_staff_key(conn, role="backoffice", label=f"demo back office {tag}")
    url = f"http://127.0.0.1:{settings.gateway_port}"
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await run_pensions(
            client,
            conn,
            key,
            people,
            effective_date=effective.isoformat(),
            timeout_s=timeout_s,
            control_wait_s=control_wait_s,
        )
