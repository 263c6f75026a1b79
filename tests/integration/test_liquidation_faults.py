"""The liquidation and the control commission each SIGKILLed (twice, in turns) while 2,000 claims
flow: their supervisors start them again, and every claim still ends with exactly one
liquidation (one event id per claim on kalo.pensions.liquidations), equal to services/rules
computed directly from the claim and the career, carrying where each month of that career
comes from; the ledger projects each once; the control stores each once with the status the
rules give it, and announces at most one approval per claim on kalo.pensions.approved, with
the amounts services/rules computes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson

from contracts.envelope import derived_id, wrap
from contracts.pensions import PensionClaimFiled, source_runs
from services.common import kafka
from services.rules import control_flags, liquidate_claim, load_ruleset
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


async def controlled(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM control.liquidations"))


async def kill_mid_flow(stack: Stack, service: str, progress: Callable[[], Awaitable[int]], step: int) -> int:
    """SIGKILL the service once it has done `step` more claims (its supervisor starts it
    again); returns how many it had done then."""
    floor = min(await progress() + step, CLAIMS)
    deadline = time.monotonic() + 90
    while await progress() < floor:
        assert time.monotonic() < deadline, f"{service} stalled\n{stack.log_tail(service)}"
        await asyncio.sleep(0.1)
    pid = stack.child_pid(service)
    assert pid is not None, stack.log_tail(service)
    os.kill(pid, signal.SIGKILL)
    done = await progress()
    deadline = time.monotonic() + 60
    while stack.child_pid(service) in (None, pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return done


def expected_sources(rows: list[tuple[str, str, int]]) -> list[list[str]]:
    """Where each month of a career loaded by `load_careers` comes from (its older half
    imported, its newer half assessed, months of base 0 not assessed)."""
    half = len(rows) // 2
    imported = {p for p, _, _ in rows[:half]}
    assessed = {p for p, _, b in rows[half:] if b > 0}
    kinds = {True: {True: "both", False: "imported"}, False: {True: "assessed", False: ""}}
    per_month = [(p, kinds[p in imported][p in assessed]) for p in sorted(imported | assessed)]
    return [list(run) for run in source_runs(per_month)]


def rules_say(
    claims: list[dict[str, Any]], careers: dict[str, list[tuple[str, str, int]]]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Per claim: its liquidation by services/rules, and the control's status by the rules'
    flags (approved automatically when unflagged, rejected with the liquidation, else pending)."""
    ruleset = load_ruleset()
    want, status = {}, {}
    for c in claims:
        career = [{"period": p, "base": b} for p, _, b in careers.get(c["worker_id"], [])]
        want[c["claim_id"]] = liquidate_claim({**c, "career": career}, ruleset)
        flagged = control_flags(c, career, want[c["claim_id"]], ruleset, already_approved=False)
        rejected = want[c["claim_id"]]["decision"] == "rejected"
        status[c["claim_id"]] = "rejected" if rejected else "pending" if flagged else "approved"
    return want, status


async def test_liquidation_and_control_sigkilled_under_load_end_every_claim_once(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    stack, conn = fresh
    stack.start("ledger")  # they start while the careers are loaded
    stack.start("liquidation", supervised=True, KALO_LIQUIDATION_BATCH="50")
    stack.start("control", supervised=True)
    claims, careers = population(CLAIMS)
    await load_careers(conn, careers)  # in bulk, as the ledger holds careers
    # What the rules say, computed beside the flow (the services start meanwhile).
    expected = asyncio.create_task(asyncio.to_thread(rules_say, claims, careers))
    # The claims come in four waves, each produced at once; in each wave one of the two dies
    # (in turns) while it still has work: a wave is more than it can finish before its kill.
    kills: dict[str, list[tuple[int, int]]] = {"liquidation": [], "control": []}
    wave = CLAIMS // 4
    for i, (service, progress) in enumerate([("liquidation", liquidated), ("control", controlled)] * 2):
        await produce_claims(stack, claims[i * wave : (i + 1) * wave])
        done = await kill_mid_flow(stack, service, lambda p=progress: p(conn), wave // 5)
        kills[service].append((done, (i + 1) * wave))
    assert all(done < flowing for k in kills.values() for done, flowing in k), f"mid-flow: {kills}"
    deadline = time.monotonic() + 180
    while min(done := (await liquidated(conn), await controlled(conn))) < CLAIMS:
        assert time.monotonic() < deadline, (
            f"{done} of {CLAIMS}\n{stack.log_tail('liquidation')}\n{stack.log_tail('control')}"
        )
        await asyncio.sleep(0.5)
    assert stack.restarts("liquidation") >= 2 and stack.restarts("control") >= 2
    want, status = await expected
    assert {w["decision"] for w in want.values()} == {"pension", "lump_sum", "rejected"}
    assert set(status.values()) == {"approved", "pending", "rejected"}

    # One liquidation per claim (its redeliveries share its event id), as the rules say.
    # Every claim's liquidation is on the topic (the ledger projected each), and so is any copy.
    events = await read_all(stack.settings, "kalo.pensions.liquidations", seconds=1)
    ids: dict[str, set[str]] = defaultdict(set)
    for e in events:
        data = e["data"]
        ids[data["claim_id"]].add(e["id"])
        assert data["liquidation"] == want[data["claim_id"]], data["claim_id"]
        worker_rows = careers.get(data["worker_id"], [])
        assert data["career_sources"] == expected_sources(worker_rows), data["claim_id"]
    assert set(ids) == set(want)
    assert all(len(v) == 1 for v in ids.values()), "one liquidation (event id) per claim"
    rows = await conn.fetch("SELECT claim_id, liquidation FROM ledger.claim_liquidations")
    assert {r["claim_id"]: orjson.loads(r["liquidation"]) for r in rows} == want

    # The control stored each once, with the status the rules give it.
    rows = await conn.fetch("SELECT claim_id, status, liquidation FROM control.liquidations")
    assert {r["claim_id"]: r["status"] for r in rows} == status
    assert all(orjson.loads(r["liquidation"]) == want[r["claim_id"]] for r in rows)

    # At most one approval per claim (exactly one for each approved), with the rules' amounts.
    deadline = time.monotonic() + 60
    approved_claims = {c for c, s in status.items() if s == "approved"}
    while True:
        approved = await read_all(stack.settings, "kalo.pensions.approved", seconds=1)
        counts = Counter(m["data"]["claim_id"] for m in approved)
        if set(counts) >= approved_claims or time.monotonic() > deadline:
            break
    assert set(counts) == approved_claims
    assert max(counts.values()) == 1, f"approved twice: {[c for c, n in counts.items() if n > 1]}"
    for m in approved:
        amounts = want[m["data"]["claim_id"]]
        for name in ("monthly_pension", "amo_deduction", "net_monthly_pension", "lump_sum", "decision"):
            assert m["data"][name] == amounts[name], (m["data"]["claim_id"], name)
    deadline = time.monotonic() + 30  # the control's outbox drains (decisions and audit events)
    while await conn.fetchval("SELECT count(*) FROM control.outbox WHERE published_at IS NULL"):
        assert time.monotonic() < deadline, "the control's outbox is not drained"
        await asyncio.sleep(0.3)
    dlq = await read_all(stack.settings, "kalo.dlq", seconds=1)
    assert not dlq, "nothing parked"
