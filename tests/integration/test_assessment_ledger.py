"""Assessment and ledger on the real stack: effectively-once under SIGKILL and redelivery,
two workers sharing partitions, corrections, poison messages."""

from __future__ import annotations

import asyncio
import base64
import random
import signal
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import TopicPartition

from services.common import kafka
from services.gateway.registry import add_employer
from services.rules import assess_declaration, load_ruleset
from tests.integration.conftest import Stack
from tests.integration.helpers import auth, declaration, inps_line, read_all, register_employer, wait_status
from tests.support.sandbox import free_port
from tests.support.submitted import submitted_event

SUBMITTED_AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


def make_month(n: int, employers: list[dict[str, Any]], seed: int = 7) -> list[dict[str, Any]]:
    """n declarations (one per employer and period), about 5 % of them invalid."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        employer = employers[i % len(employers)]
        month = i // len(employers)  # one declaration per employer and month, 2024-01 onwards
        assert month < 34, "keep periods before the submission date"
        period = f"{2024 + month // 12}-{month % 12 + 1:02d}"
        lines = []
        for w in range(rng.randint(1, 12)):
            gross = rng.choice([15_000, 40_000, 123_457, 250_000, 1_200_000])
            category = (
                "salarie" if employer["regime"] == "INPS" else rng.choice(["fonctionnaire", "militaire"])
            )
            lines.append(
                {
                    "worker_id": f"W{employer['id']}-{w}",
                    "category": category,
                    "days_worked": rng.choice([30, 30, 15, 0]),
                    "base_salary": gross,
                    "bonuses": rng.choice([0, 10_000]),
                    "benefits_in_kind": 0,
                    "expense_reimbursements": rng.choice([0, 5_000]),
                }
            )
        if rng.random() < 0.05:
            lines[0]["base_salary"] = -1  # NEGATIVE_AMOUNT: the whole declaration is rejected
        docs.append(
            {
                "declaration_id": f"D-it-{i:05d}",
                "employer": employer,
                "period": period,
                "submitted_at": SUBMITTED_AT.isoformat().replace("+00:00", "Z"),
                "lines": lines,
            }
        )
    return docs


def expected(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the ledger must hold, computed directly with services/rules."""
    ruleset = load_ruleset()
    out = {"accepted": 0, "rejected": 0, "total": 0, "careers": 0, "dues": 0}
    for doc in docs:
        result = assess_declaration(doc, ruleset)
        out[result["status"]] += 1
        if result["status"] == "accepted":
            out["total"] += result["totals"]["total"]
            out["dues"] += sum(result["totals"]["by_fund"].values())
            out["careers"] += sum(
                1
                for line in result["lines"]
                if any(i["branch"] in ("PVID", "RETRAITE") and i["base"] > 0 for i in line["items"])
            )
    return out


async def ledger_state(conn: asyncpg.Connection) -> dict[str, Any]:
    return {
        "accepted": await conn.fetchval(
            "SELECT count(*) FROM ledger.declaration_outcomes WHERE status = 'accepted'"
        ),
        "rejected": await conn.fetchval(
            "SELECT count(*) FROM ledger.declaration_outcomes WHERE status = 'rejected'"
        ),
        "total": await conn.fetchval(
            "SELECT coalesce(sum((totals->>'total')::bigint), 0) FROM ledger.declaration_outcomes"
            " WHERE status = 'accepted'"
        ),
        "careers": await conn.fetchval("SELECT count(*) FROM ledger.careers"),
        "dues": await conn.fetchval("SELECT coalesce(sum(amount), 0) FROM ledger.employer_dues"),
    }


async def register(conn: asyncpg.Connection, count: int) -> list[dict[str, Any]]:
    employers = []
    for i in range(count):
        regime = "CMSS" if i % 5 == 0 else "INPS"
        employer = {
            "id": f"EMP{i:03d}",
            "regime": regime,
            "risk_class": None if regime == "CMSS" else 1 + i % 4,
            "filing": "quarterly" if i % 3 == 0 else "monthly",
        }
        await add_employer(
            conn,
            employer_id=employer["id"],
            regime=regime,
            risk_class=employer["risk_class"],
            filing=employer["filing"],
        )
        employers.append(employer)
    return employers


def submitted_bytes(doc: dict[str, Any], submitted_at: datetime = SUBMITTED_AT) -> bytes:
    """A declaration as the gateway's relay sends it on kalo.declarations.submitted."""
    return (
        submitted_event(
            declaration_id=doc["declaration_id"],
            employer=doc["employer"],
            period=doc["period"],
            lines=doc["lines"],
            submitted_at=submitted_at,
            payload_sha256="0" * 64,
            replaces=doc.get("replaces"),
        )
        .model_dump_json()
        .encode()
    )


async def produce(
    stack: Stack,
    docs: list[dict[str, Any]],
    *,
    raw: list[bytes] | None = None,
    submitted_at: datetime = SUBMITTED_AT,
) -> None:
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:
        name = kafka.topic("kalo.declarations.submitted", stack.settings)
        for doc in docs:
            await producer.send(name, submitted_bytes(doc, submitted_at), key=doc["employer"]["id"].encode())
        for value in raw or []:
            await producer.send(name, value, key=b"poison")
        await producer.flush()
    finally:
        await producer.stop()


async def wait_applied(conn: asyncpg.Connection, count: int, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while (
        n := await conn.fetchval(
            "SELECT count(*) FROM ledger.declaration_outcomes WHERE event_id IS NOT NULL"
        )
    ) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} of {count} declarations in the ledger after {seconds}s")
        await asyncio.sleep(0.5)


def expected_rows(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Row by row what the ledger must hold, computed directly with services/rules."""
    ruleset = load_ruleset()
    out: dict[str, Any] = {"declarations": {}, "careers": set(), "dues": {}, "periods": {}}
    for doc in docs:
        result = assess_declaration(doc, ruleset)
        accepted = result["status"] == "accepted"
        out["declarations"][doc["declaration_id"]] = (
            result["status"],
            result["totals"]["total"] if accepted else None,
        )
        if not accepted:
            continue
        employer, period = doc["employer"]["id"], doc["period"]
        out["periods"][(employer, period)] = result["totals"]["total"]
        for fund, amount in result["totals"]["by_fund"].items():
            out["dues"][(employer, period, fund)] = amount
        for line in result["lines"]:
            base = next((i["base"] for i in line["items"] if i["branch"] in ("PVID", "RETRAITE")), 0)
            if base > 0:
                out["careers"].add((line["worker_id"], period, employer, doc["declaration_id"], base))
    return out


async def ledger_rows(conn: asyncpg.Connection) -> dict[str, Any]:
    return {
        "declarations": {
            r["declaration_id"]: (r["status"], r["total"])
            for r in await conn.fetch(
                "SELECT declaration_id, status, (totals->>'total')::bigint AS total"
                " FROM ledger.declaration_outcomes"
            )
        },
        "careers": {
            tuple(r)
            for r in await conn.fetch(
                "SELECT worker_id, period, employer_id, declaration_id, base FROM ledger.careers"
            )
        },
        "dues": {
            (r["employer_id"], r["period"], r["fund"]): r["amount"]
            for r in await conn.fetch("SELECT * FROM ledger.employer_dues")
        },
        "periods": {
            (r["employer_id"], r["period"]): r["total"]
            for r in await conn.fetch("SELECT employer_id, period, total FROM ledger.employer_periods")
        },
    }


async def applied_count(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM ledger.declaration_outcomes WHERE event_id IS NOT NULL")
    )


async def ledger_caught_up(stack: Stack, conn: asyncpg.Connection, seconds: float = 60) -> None:
    """Wait until the ledger's stored offsets reach the end of every topic it reads."""
    from services.ledger.app import NAME, TOPICS

    consumer = kafka.consumer(group_id=None, settings=stack.settings)
    await consumer.start()
    try:
        tps = [
            TopicPartition(kafka.topic(t, stack.settings), p)
            for t in TOPICS
            for p in range(stack.settings.partitions)
        ]
        ends = {(tp.topic, tp.partition): n for tp, n in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    deadline = time.monotonic() + seconds
    while True:
        rows = await conn.fetch(
            "SELECT topic, partition, next_offset FROM ledger.consumer_offsets WHERE consumer = $1", NAME
        )
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        behind = {k: n for k, n in ends.items() if n and stored.get(k, 0) < n}
        if not behind:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"ledger behind on {behind}")
        await asyncio.sleep(0.5)


async def test_sigkilled_workers_never_double_count(fresh: tuple[Stack, asyncpg.Connection]) -> None:
    stack, conn = fresh
    employers = await register(conn, 100)
    docs = make_month(3000, employers)
    want, want_rows = expected(docs), expected_rows(docs)
    stack.start("ledger")
    await produce(stack, docs)
    rng = random.Random(3)
    at_kill = []
    for round_ in range(3):
        # Small batches: a kill lands between and inside batches, not only after big ones.
        proc = stack.start("assessment", name=f"assessment-{round_}", KALO_ASSESSMENT_BATCH="50")
        # Kill it while it works: once the ledger has seen it make progress.
        floor = await applied_count(conn) + 1
        deadline = time.monotonic() + 90
        while await applied_count(conn) < floor and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill.append(await applied_count(conn))
        if round_ == 1:  # the ledger too, in the middle of its batches
            stack.stop("ledger", signal.SIGKILL)
            stack.start("ledger", name="ledger-restarted")
    assert at_kill[0] > 0 and at_kill[-1] < len(docs), f"kills happened mid-flow: {at_kill}"
    stack.start("assessment", name="assessment-final")
    await wait_applied(conn, len(docs))
    await ledger_caught_up(stack, conn)
    assert await ledger_state(conn) == want
    assert await ledger_rows(conn) == want_rows
    assessed = await read_all(stack.settings, "kalo.declarations.assessed")
    assert len({e["id"] for e in assessed}) == want["accepted"], "one assessed event id per declaration"

    # Messages delivered twice: assessed again (same event ids), dropped by the ledger.
    again = docs[:50]
    await produce(stack, again)
    twice = {
        d["declaration_id"] for d in again if want_rows["declarations"][d["declaration_id"]][0] == "accepted"
    }
    deadline = time.monotonic() + 60
    while True:
        assessed = await read_all(stack.settings, "kalo.declarations.assessed", seconds=1)
        copies = [e["data"]["declaration_id"] for e in assessed if e["data"]["declaration_id"] in twice]
        if all(copies.count(d) >= 2 for d in twice) or time.monotonic() > deadline:
            break
    assert all(copies.count(d) >= 2 for d in twice), "the duplicates were reprocessed"
    assert len({e["id"] for e in assessed}) == want["accepted"]
    await ledger_caught_up(stack, conn)
    assert await ledger_state(conn) == want
    assert await ledger_rows(conn) == want_rows


async def test_two_workers_share_partitions_and_totals_stay_right(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    stack, conn = fresh
    employers = await register(conn, 40)
    docs = make_month(1200, employers, seed=11)
    want = expected(docs)
    stack.start("ledger")
    ports = {}
    for name in ("assessment-a", "assessment-b"):
        ports[name] = free_port()
        stack.start("assessment", name=name, KALO_ASSESSMENT_WEB_PORT=str(ports[name]))
    await asyncio.sleep(8)  # both joined the group
    await produce(stack, docs)
    await wait_applied(conn, len(docs))
    await ledger_caught_up(stack, conn)
    assert await ledger_state(conn) == want
    assert await ledger_rows(conn) == expected_rows(docs)
    counts = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for name, port in ports.items():
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            counts[name] = sum(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("kalo_assessment_declarations_total{")
            )
    assert all(c > 0 for c in counts.values()), f"each worker assessed some declarations: {counts}"
    # A rebalance while both join may have a few batches assessed twice: same event ids,
    # dropped by the ledger (its rows were checked above).
    assert sum(counts.values()) >= len(docs)


async def test_a_worker_joining_while_the_first_ones_queue_is_full_breaks_nothing(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    """A second worker joins while the first works through a backlog, its batch queue filling:
    a rebalance clears that queue (faust's flow control). Both keep working, neither logs a
    crash, the totals are right. (The cancelled put that crashed a fetcher in the scale-out
    benchmark depends on timing; tests/unit/test_batch_take.py reproduces it on mode's queue.)"""
    stack, conn = fresh
    employers = await register(conn, 800)
    docs = make_month(24_000, employers, seed=17)
    want = expected(docs)
    await produce(stack, docs)  # the backlog first: the first worker's queue fills at once
    stack.start("ledger")
    ports = {name: free_port() for name in ("assessment-first", "assessment-second")}
    # Batches of 5,000: the queue holds max(2, 20,000 // 5,000) = 4 fetches, full at once.
    big = {"KALO_ASSESSMENT_BATCH": "5000"}
    stack.start(
        "assessment", name="assessment-first", KALO_ASSESSMENT_WEB_PORT=str(ports["assessment-first"]), **big
    )
    deadline = time.monotonic() + 90
    while await applied_count(conn) < 500 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await applied_count(conn) < len(docs) // 2, "the second worker joins while the first has work"
    before = await assessed_by(ports["assessment-first"])
    stack.start(
        "assessment",
        name="assessment-second",
        KALO_ASSESSMENT_WEB_PORT=str(ports["assessment-second"]),
        **big,
    )
    await wait_applied(conn, len(docs))
    await ledger_caught_up(stack, conn)
    assert await ledger_state(conn) == want
    assert await ledger_rows(conn) == expected_rows(docs)
    for name in ports:
        log = (stack.logs / f"{name}.log").read_text(errors="replace")
        assert "Crashed reason" not in log and "experienced a crash" not in log, stack.log_tail(name)
    # The first kept its share of the partitions after the rebalance, and worked on them.
    assert await assessed_by(ports["assessment-first"]) > before
    assert await assessed_by(ports["assessment-second"]) > 0


async def assessed_by(port: int) -> float:
    """Declarations a worker assessed, from its /metrics."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("kalo_assessment_declarations_total{")
    )


async def test_poison_bytes_go_to_the_dlq_and_the_partition_keeps_flowing(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    stack, conn = fresh
    employers = await register(conn, 1)
    stack.start("ledger")
    stack.start("assessment")
    poison = [b"\xff\xfe not json", b'{"type": "declaration.submitted", "data": {}}']
    # Same key → same partition: the good declaration comes after the poison.
    producer = kafka.producer(stack.settings)
    await producer.start()
    name = kafka.topic("kalo.declarations.submitted", stack.settings)
    for value in poison:
        await producer.send_and_wait(name, value, key=employers[0]["id"].encode())
    await producer.stop()
    good = make_month(1, employers)
    good[0]["lines"][0]["base_salary"] = 100_000
    await produce(stack, good)
    await wait_applied(conn, 1, seconds=90)
    letters = await read_all(stack.settings, "kalo.dlq")
    assert sorted(base64.b64decode(e["data"]["value_b64"]) for e in letters) == sorted(poison)
    assert all(e["data"]["topic"] == name and e["data"]["error"] for e in letters)


async def test_a_correction_replaces_the_month_in_account_and_careers(services: Stack, db) -> None:
    employer_id, key = await register_employer(db, risk_class=1)
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        first = await client.post(
            "/v1/declarations",
            headers=auth(key),
            json=declaration(
                employer_id, [inps_line("CW1", 250_000), inps_line("CW2", 100_000)], risk_class=1
            ),
        )
        assert first.status_code == 202, first.text
        original = first.json()["declaration_id"]
        await wait_status(client, original, key)
        second = await client.post(
            "/v1/declarations",
            headers=auth(key),
            json=declaration(employer_id, [inps_line("CW1", 300_000)], risk_class=1, replaces=original),
        )
        assert second.status_code == 202, second.text
        corrective = second.json()["declaration_id"]
        doc = await wait_status(client, corrective, key)
    assert doc["status"] == "accepted"
    careers = await db.fetch(
        "SELECT worker_id, base, declaration_id FROM ledger.careers WHERE employer_id = $1", employer_id
    )
    assert [(r["worker_id"], r["base"], r["declaration_id"]) for r in careers] == [
        ("CW1", 300_000, corrective)
    ]
    dues = {
        r["fund"]: r["amount"]
        for r in await db.fetch(
            "SELECT fund, amount FROM ledger.employer_dues WHERE employer_id = $1", employer_id
        )
    }
    # 300,000 at risk class 1: PF 8 % + ATMP 1 % + PVID 9 % = 54,000 INPS; AMO 6.56 % = 19,680 CANAM.
    assert dues == {"INPS": 54_000, "CANAM": 19_680}
    period = await db.fetchrow(
        "SELECT declaration_id, total FROM ledger.employer_periods WHERE employer_id = $1", employer_id
    )
    assert period["declaration_id"] == corrective and period["total"] == 73_680


async def test_a_declaration_lands_in_topic_ledger_and_careers(services: Stack, db) -> None:
    employer_id, key = await register_employer(db, risk_class=2)
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        r = await client.post(
            "/v1/declarations", headers=auth(key), json=declaration(employer_id, [inps_line("LW1", 250_000)])
        )
        declaration_id = r.json()["declaration_id"]
        doc = await wait_status(client, declaration_id, key)
    assert doc["report"]["totals"] == {
        "employer": 47_250,
        "employee": 16_650,
        "total": 63_900,
        "by_branch": {"PF": 20_000, "ATMP": 5_000, "PVID": 22_500, "AMO": 16_400},
        "by_fund": {"INPS": 47_500, "CANAM": 16_400},
    }
    career = await db.fetchrow("SELECT period, base FROM ledger.careers WHERE worker_id = 'LW1'")
    assert (career["period"], career["base"]) == ("2026-10", 250_000)
    amo = [
        e
        for e in await read_all(services.settings, "kalo.amo.deductions", seconds=2)
        if e["data"]["declaration_id"] == declaration_id
    ]
    assert [e["data"]["workers"] for e in amo] == [[["LW1", 250_000, 7_650, 8_750]]]
    audited = [
        e
        for e in await read_all(services.settings, "kalo.audit", seconds=2)
        if e["data"]["subject"] == declaration_id
    ]
    audit = [e for e in audited if e["producer"] == "assessment"]
    assert [e["data"]["action"] for e in audit] == ["declaration.assessed"]
    # The gateway's receipt is an audit event of its own.
    assert [e["data"]["action"] for e in audited if e["producer"] == "gateway"] == ["declaration.received"]
    # LW1 was unknown: accepted with a warning, and pre-registered.
    assert doc["report"]["warnings"]
    assert await db.fetchval("SELECT status FROM ledger.workers WHERE worker_id = 'LW1'") == "preregistered"
