"""The liquidation SIGKILLed while 2,000 claims flow: its supervisor starts it again, and every
claim still ends with exactly one liquidation (by event id), equal to services/rules computed
directly from the claim and the career; the ledger projects each once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson

from contracts.envelope import derived_id, wrap
from contracts.pensions import PensionClaimFiled
from services.common import kafka
from services.rules import liquidate_claim, load_ruleset
from services.rules.dates import add_months, period_text
from tests.integration.conftest import Stack
from tests.integration.helpers import read_all

CLAIMS = 2000
FILED_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def population(
    count: int, seed: int = 5
) -> tuple[list[dict[str, Any]], dict[str, list[tuple[str, str, int]]]]:
    """Claims and careers (period, employer, base): INPS and CMSS, pensions, lump sums, early
    pensions and rejections, months of two employers, some months of base 0, some workers unknown."""
    rng = random.Random(seed)
    claims, careers = [], {}
    for i in range(count):
        worker = f"WK{i:05d}"
        cmss = i % 7 == 0
        age = rng.randint(52, 66)
        claim = {
            "claim_id": f"C-SK-{i:05d}",
            "worker_id": worker,
            "regime": "CMSS" if cmss else "INPS",
            "category": "fonctionnaire" if cmss else "salarie",
            "grade": rng.choice(["A", "B2", "B1", "C"]) if cmss else None,
            "birth_date": date(2026 - age, rng.randint(1, 12), rng.randint(1, 28)).isoformat(),
            "effective_date": "2026-12-01",
        }
        claims.append(claim)
        if i % 50 == 49:
            continue  # unknown worker: NO_CAREER
        count_months = rng.choice([rng.randint(60, 150), rng.randint(156, 480)])
        start = add_months(date(2026, 11, 1), -count_months)
        base = rng.randint(40_000, 600_000)
        rows = []
        for k in range(count_months):
            period = period_text(add_months(start, k))
            base += rng.randint(-2_000, 4_000)
            rows.append((period, "E1", max(base, 0) if k % 97 else 0))
            if k % 40 == 0:
                rows.append((period, "E2", rng.randint(10_000, 90_000)))  # a second employer that month
        careers[worker] = rows
    return claims, careers


async def load_careers(conn: asyncpg.Connection, careers: dict[str, list[tuple[str, str, int]]]) -> None:
    """Half of each career as assessed by Kalo (the ledger's careers), the older half imported."""
    assessed, imported = [], []
    for worker, rows in careers.items():
        half = len(rows) // 2
        imported += [(worker, p, e, b, "I-SK", FILED_AT) for p, e, b in rows[:half]]
        assessed += [(worker, p, e, "D-SK", b) for p, e, b in rows[half:] if b > 0]
    await conn.copy_records_to_table(
        "career_imports",
        schema_name="ledger",
        records=imported,
        columns=["worker_id", "period", "employer_id", "base", "import_id", "imported_at"],
    )
    await conn.copy_records_to_table(
        "careers",
        schema_name="ledger",
        records=assessed,
        columns=["worker_id", "period", "employer_id", "declaration_id", "base"],
    )


async def produce_claims(stack: Stack, claims: list[dict[str, Any]]) -> None:
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:
        name = kafka.topic("kalo.pensions.claims", stack.settings)
        for c in claims:
            data = PensionClaimFiled(**c, filed_by="0123456789abcdef", filed_at=FILED_AT)
            event = wrap(
                data,
                producer="gateway",
                correlation_id=c["claim_id"],
                event_id=derived_id(c["claim_id"], PensionClaimFiled.TYPE),
            )
            await producer.send(name, event.model_dump_json().encode(), key=c["worker_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def liquidated(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM ledger.claim_liquidations"))


async def test_the_liquidation_sigkilled_under_load_liquidates_every_claim_once(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    stack, conn = fresh
    claims, careers = population(CLAIMS)
    await load_careers(conn, careers)
    ruleset = load_ruleset()
    want = {
        c["claim_id"]: liquidate_claim(
            {**c, "career": [{"period": p, "base": b} for p, _, b in careers.get(c["worker_id"], [])]},
            ruleset,
        )
        for c in claims
    }
    assert {w["decision"] for w in want.values()} == {"pension", "lump_sum", "rejected"}
    stack.start("ledger")
    stack.start("liquidation", supervised=True, KALO_LIQUIDATION_BATCH="50")
    await produce_claims(stack, claims)
    kills = []
    for _ in range(2):
        floor = await liquidated(conn) + 50
        deadline = time.monotonic() + 90
        while await liquidated(conn) < floor and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        pid = stack.child_pid("liquidation")
        assert pid is not None, stack.log_tail("liquidation")
        os.kill(pid, signal.SIGKILL)
        kills.append(await liquidated(conn))
        deadline = time.monotonic() + 60  # its supervisor starts it again
        while stack.child_pid("liquidation") in (None, pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    assert kills[-1] < CLAIMS, f"the kills happened mid-flow: {kills}"
    deadline = time.monotonic() + 180
    while await liquidated(conn) < CLAIMS:
        assert time.monotonic() < deadline, (
            f"{await liquidated(conn)} of {CLAIMS}\n{stack.log_tail('liquidation')}"
        )
        await asyncio.sleep(0.5)
    assert stack.restarts("liquidation") >= 2

    events = await read_all(stack.settings, "kalo.pensions.liquidations")
    ids: dict[str, set[str]] = defaultdict(set)
    for e in events:
        ids[e["data"]["claim_id"]].add(e["id"])
        assert e["data"]["liquidation"] == want[e["data"]["claim_id"]], e["data"]["claim_id"]
    assert set(ids) == set(want)
    assert all(len(v) == 1 for v in ids.values()), "one liquidation (event id) per claim"
    rows = await conn.fetch("SELECT claim_id, liquidation FROM ledger.claim_liquidations")
    assert {r["claim_id"]: orjson.loads(r["liquidation"]) for r in rows} == want
    dlq = await read_all(stack.settings, "kalo.dlq", seconds=1)
    assert not dlq, "nothing parked"
