"""The auditors' replay on the real stack: declarations of 2018 assessed under one parameter
tree, then the law changed (a rate corrected back to 1950) and today's declarations assessed
under the new tree; `kalo replay` re-derives every one of them with the tree it was assessed
with (read back from kalo.rulesets): 0 mismatches, every audit record found and in the signed
log, the ledger equal. A forged `declaration.assessed` (one amount +1 franc) is reported by its
id; a ledger row edited by 1 franc is reported by `--against-ledger`. Liquidations made by the
real liquidation service re-derive with their careers rebuilt from the career topics up to their
`as_of`; a forged one whose career has one base changed (and amounts recomputed to match it) is
reported by its career's month."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

from contracts.audit import audit_event
from contracts.declarations import ITEM_COLUMNS
from contracts.envelope import envelope_json, wrap
from contracts.pensions import CareerImported, PensionClaimFiled, PensionLiquidated
from services.common import kafka
from services.control.audit.heads import generate_key
from services.rules import assess_declaration, liquidate_claim, load_ruleset
from services.rules.ruleset import DEFAULT_ROOT
from tests.integration.conftest import Stack, isolated_stack
from tests.integration.helpers import consume_until, kalo
from tests.integration.test_assessment_ledger import (
    SUBMITTED_AT,
    make_month,
    produce,
    register,
    wait_applied,
)

OLD, NEW = 40, 20


@dataclass
class Replayed:
    stack: Stack
    conn: asyncpg.Connection
    start: datetime
    end: datetime
    old_rules: Path
    new_rules: Path
    old_docs: list[dict[str, Any]]


def replay(stack: Stack, start: datetime, end: datetime, *args: str) -> tuple[int, dict[str, Any]]:
    result = kalo(stack.env, "replay", "--from", start.isoformat(), "--to", end.isoformat(), "--json", *args)
    assert result.returncode in (0, 1) and result.stdout.startswith("{"), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)


async def wait_signed(conn: asyncpg.Connection, n: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while (signed := await conn.fetchval("SELECT coalesce(max(tree_size), 0) FROM audit.heads")) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"audit heads sign {signed} of {n} records")
        await asyncio.sleep(0.3)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replayed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replayed]:
    tmp = tmp_path_factory.mktemp("replay")
    async with isolated_stack(tmp) as stack:
        conn = await asyncpg.connect(stack.settings.dsn)
        try:
            old_rules, new_rules = tmp / "rules-2018", tmp / "rules-today"
            shutil.copytree(DEFAULT_ROOT, old_rules)
            shutil.copytree(DEFAULT_ROOT, new_rules)
            pf = new_rules / "inps" / "pf" / "employer_rate.yaml"
            pf.write_text(pf.read_text().replace('value: "0.08"', 'value: "0.09"'))  # corrected back to 1950
            key, _, _ = generate_key(tmp / "audit.key")
            stack.env["KALO_AUDIT_SIGNING_KEY"] = str(key)
            stack.env["KALO_AUDIT_HEADS_FILE"] = str(tmp / "heads.jsonl")
            employers = await register(conn, 10)
            start = datetime.now(UTC) - timedelta(seconds=1)
            stack.start("ledger")
            stack.start("audit", KALO_AUDIT_HEAD_EVERY_S="0.3")
            stack.start("assessment", KALO_RULES_DIR=str(old_rules))
            old_docs = [
                {**d, "declaration_id": f"D-2018-{i}", "period": f"2018-{1 + i // 10:02d}"}
                for i, d in enumerate(make_month(OLD, employers, seed=18))
            ]
            await produce(stack, old_docs)
            await wait_applied(conn, OLD, seconds=120)
            stack.stop("assessment")
            stack.start("assessment", KALO_RULES_DIR=str(new_rules))
            new_docs = [
                {**d, "declaration_id": f"D-today-{i}"}
                for i, d in enumerate(make_month(NEW, employers, seed=26))
            ]
            new_docs = [{**d, "period": f"2026-{1 + i // 10:02d}"} for i, d in enumerate(new_docs)]
            await produce(stack, new_docs)
            await wait_applied(conn, OLD + NEW, seconds=120)
            await wait_signed(conn, OLD + NEW)
            end = datetime.now(UTC) + timedelta(seconds=1)
            await asyncio.sleep(1.2)
            yield Replayed(stack, conn, start, end, old_rules, new_rules, old_docs)
        finally:
            await conn.close()


async def test_the_period_replays_with_no_mismatch_each_with_the_law_of_its_time(replayed: Replayed) -> None:
    code, doc = replay(replayed.stack, replayed.start, replayed.end, "--verify", "--against-ledger")
    assert code == 0, json.dumps({k: doc[k] for k in doc if k != "ledger"}, indent=1)[:4000]
    assert doc["events_read"] == OLD + NEW and doc["rederived"] == OLD + NEW
    assert doc["equal"] == OLD + NEW and doc["mismatched"] == 0
    assert not doc["unknown_rulesets"] and not doc["without_audit"] and not doc["audit_problems"]
    old_id, new_id = load_ruleset(replayed.old_rules).id, load_ruleset(replayed.new_rules).id
    assert old_id != new_id
    assert doc["rulesets"] == {old_id: OLD, new_id: NEW}
    assert doc["ledger"]["months"] > 0 and doc["ledger"]["mismatches"] == []
    # The 2018 declarations would not re-derive under today's tree: the replay used theirs.
    today = load_ruleset(replayed.new_rules)
    inps = next(
        d
        for d in replayed.old_docs
        if d["employer"]["regime"] == "INPS"
        and assess_declaration(d, load_ruleset(replayed.old_rules))["status"] == "accepted"
    )
    assert (
        assess_declaration(inps, today)["totals"]["total"]
        != assess_declaration(inps, load_ruleset(replayed.old_rules))["totals"]["total"]
    )


async def test_one_employer_alone(replayed: Replayed) -> None:
    code, doc = replay(replayed.stack, replayed.start, replayed.end, "--employer", "EMP001")
    assert code == 0
    assert 0 < doc["rederived"] < OLD + NEW and doc["mismatched"] == 0


async def test_a_ledger_row_edited_by_one_franc_is_reported(replayed: Replayed) -> None:
    row = await replayed.conn.fetchrow(
        "SELECT * FROM ledger.employer_dues ORDER BY employer_id, period, fund LIMIT 1"
    )
    await replayed.conn.execute(
        "UPDATE ledger.employer_dues SET amount = amount + 1"
        " WHERE employer_id = $1 AND period = $2 AND fund = $3",
        row["employer_id"],
        row["period"],
        row["fund"],
    )
    try:
        code, doc = replay(replayed.stack, replayed.start, replayed.end, "--against-ledger")
    finally:
        await replayed.conn.execute(
            "UPDATE ledger.employer_dues SET amount = amount - 1"
            " WHERE employer_id = $1 AND period = $2 AND fund = $3",
            row["employer_id"],
            row["period"],
            row["fund"],
        )
    assert code == 1 and doc["mismatched"] == 0
    assert doc["ledger"]["mismatches"] == [
        {
            "table": "employer_dues",
            "key": f"{row['employer_id']} {row['period']} {row['fund']}",
            "field": "amount",
            "ledger": row["amount"] + 1,
            "rederived": row["amount"],
        }
    ]


async def test_a_forged_assessment_is_reported_by_its_id(replayed: Replayed) -> None:
    original = await consume_until(
        replayed.stack.settings,
        "kalo.declarations.assessed",
        lambda e: (
            e["data"]["period"].startswith("2026") and any(a for ln in e["data"]["lines"] for a in ln[7])
        ),
    )
    forged = json.loads(json.dumps(original))
    forged["id"] = str(uuid.uuid4())
    line, column = next(
        (i, c) for i, ln in enumerate(forged["data"]["lines"]) for c, a in enumerate(ln[7]) if a
    )
    amounts = forged["data"]["lines"][line][7]
    amounts[column] += 1
    start = datetime.now(UTC) - timedelta(seconds=1)
    producer = kafka.producer(replayed.stack.settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka.topic("kalo.declarations.assessed", replayed.stack.settings),
            orjson.dumps(forged),
            key=forged["data"]["employer_id"].encode(),
        )
    finally:
        await producer.stop()
    await asyncio.sleep(1.2)
    code, doc = replay(replayed.stack, start, datetime.now(UTC), "--verify")
    assert code == 1
    assert (doc["events_read"], doc["rederived"], doc["mismatched"]) == (1, 1, 1)
    assert doc["mismatches"] == [
        {
            "event_id": forged["id"],
            "declaration_id": original["data"]["declaration_id"],
            "field": f"lines[{line}].amounts.{ITEM_COLUMNS[column]}",
            "recorded": amounts[column],
            "rederived": amounts[column] - 1,
        }
    ]
    assert doc["audit_problems"] == [
        {"event_id": forged["id"], "problem": "the audit record's output_sha256 is not the output's"}
    ]


async def test_liquidations_replay_and_a_forged_one_is_reported(replayed: Replayed) -> None:
    """A liquidation carries its claim and career snapshot: it re-derives with its ruleset;
    one whose pension was raised by 1 franc is named by its id and field."""
    ruleset = load_ruleset(replayed.old_rules)
    settings = replayed.stack.settings
    claim = {
        "claim_id": "C-replay-1",
        "worker_id": "W-replay-1",
        "regime": "INPS",
        "category": "salarie",
        "grade": None,
        "birth_date": "1966-03-10",
        "effective_date": "2026-12-01",
    }
    career = [[f"{2001 + m // 12}-{m % 12 + 1:02d}", 200_000] for m in range(300)]
    filed = wrap(
        PensionClaimFiled.model_validate(claim), producer="gateway", correlation_id=claim["claim_id"]
    )
    raw_claim = filed.model_dump_json().encode()
    liquidation = liquidate_claim({**claim, "career": career}, ruleset)
    assert liquidation["monthly_pension"] == 100_000

    def liquidated(pension: int, event_id: uuid.UUID | None = None) -> tuple[bytes, bytes]:
        payload = orjson.dumps(
            {
                "claim_id": claim["claim_id"],
                "worker_id": claim["worker_id"],
                "ruleset": ruleset.id,
                "claim": claim,
                "career": career,
                "liquidation": {**liquidation, "monthly_pension": pension},
            }
        )
        return payload, envelope_json(
            payload,
            PensionLiquidated,
            producer="liquidation",
            correlation_id=claim["claim_id"],
            causation_id=filed.id,
            event_id=event_id,
        )[1]

    payload, honest = liquidated(100_000)
    _, forged = liquidated(100_001, uuid.uuid4())
    _, audit = audit_event(
        action="pension.liquidated",
        subject=claim["claim_id"],
        actor="liquidation",
        input_bytes=raw_claim,
        output_bytes=payload,
        producer="liquidation",
        ruleset=ruleset.id,
        causation_id=filed.id,
    )
    start = datetime.now(UTC) - timedelta(seconds=1)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for topic, key, value in (
            ("kalo.pensions.claims", claim["worker_id"], raw_claim),
            ("kalo.pensions.liquidations", claim["worker_id"], honest),
            ("kalo.audit", claim["claim_id"], audit),
            ("kalo.pensions.liquidations", claim["worker_id"], forged),
        ):
            await producer.send_and_wait(kafka.topic(topic, settings), value, key=key.encode())
    finally:
        await producer.stop()
    await asyncio.sleep(1.2)
    code, doc = replay(
        replayed.stack, start, datetime.now(UTC), "--verify", "--topic", "kalo.pensions.liquidations"
    )
    assert code == 1
    assert (doc["rederived"], doc["liquidations"], doc["equal"], doc["mismatched"]) == (2, 2, 1, 1)
    forged_id = orjson.loads(forged)["id"]
    assert doc["mismatches"] == [
        {
            "event_id": forged_id,
            "claim_id": "C-replay-1",
            "field": "liquidation.monthly_pension",
            "recorded": 100_001,
            "rederived": 100_000,
        }
    ]
    assert doc["audit_problems"] == [
        {"event_id": forged_id, "problem": "the audit record's output_sha256 is not the output's"}
    ]
    # Made without `as_of`: their careers cannot be re-derived, and each says so.
    assert [(x["event_id"], x["claim_id"]) for x in doc["careers"]["not_rederivable"]] == [
        (orjson.loads(honest)["id"], "C-replay-1"),
        (forged_id, "C-replay-1"),
    ]


# EMP001 as `register` made it; its 2026-01 declaration of the fixture is D-today-1.
EMP001 = {"id": "EMP001", "regime": "INPS", "risk_class": 2, "filing": "monthly"}
WORKERS = ("WEMP001-0", "WEMP002-0")


def salaried(worker_id: str, gross: int) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "category": "salarie",
        "days_worked": 30,
        "base_salary": gross,
        "bonuses": 0,
        "benefits_in_kind": 0,
        "expense_reimbursements": 0,
    }


@dataclass
class Liquidated:
    start: datetime  # before the claims were filed
    events: dict[str, dict[str, Any]]  # worker → its `pension.liquidated`


async def produce_values(stack: Stack, topic: str, values: list[tuple[str, bytes]]) -> None:
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(kafka.topic(topic, stack.settings), value, key=key.encode())
    finally:
        await producer.stop()


async def wait_for(conn: asyncpg.Connection, query: str, *args: Any, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not await conn.fetchval(query, *args):
        if time.monotonic() > deadline:
            raise TimeoutError(query)
        await asyncio.sleep(0.3)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def liquidated(replayed: Replayed) -> Liquidated:
    """Careers made of the fixture's declarations, a corrective, and history imported twice
    (the second import replacing a month, one row under a month EMP001 declared); the real
    liquidation service liquidates a claim of each worker; then EMP001 declares one more month,
    which the liquidations' `as_of` leaves out."""
    stack, conn = replayed.stack, replayed.conn
    a = WORKERS[0]
    corrective = {
        "declaration_id": "D-career-corrective",
        "employer": EMP001,
        "period": "2026-01",
        "replaces": "D-today-1",
        "lines": [salaried(a, 321_000)],  # the month's other workers lose it
    }
    await produce(stack, [corrective], submitted_at=SUBMITTED_AT + timedelta(days=1))
    # 25 years before Kalo (the 2018 months too: with another employer, both count).
    history = [(f"{2001 + m // 12}-{m % 12 + 1:02d}", "OLD/1", 150_000) for m in range(300)]
    imports = [
        CareerImported.model_validate(
            {"import_id": "I-1", "worker_id": a, "imported_at": "2026-11-01T00:00:00Z", "entries": history}
        ),
        CareerImported.model_validate(
            {
                "import_id": "I-2",
                "worker_id": a,
                "imported_at": "2026-11-02T00:00:00Z",
                # 2001-01 replaced; EMP001's 2026-01 is Kalo's own (left out); OLD/2 adds to it.
                "entries": [
                    ("2001-01", "OLD/1", 160_000),
                    ("2026-01", "EMP001", 999),
                    ("2026-01", "OLD/2", 1),
                ],
            }
        ),
    ]
    await produce_values(
        stack,
        "kalo.careers.imported",
        [
            (i.worker_id, wrap(i, producer="gateway", correlation_id=i.import_id).model_dump_json().encode())
            for i in imports
        ],
    )
    await wait_for(
        conn, "SELECT 1 FROM ledger.declaration_outcomes WHERE declaration_id = 'D-career-corrective'"
    )
    await wait_for(conn, "SELECT count(*) = 2 FROM ledger.career_import_events WHERE worker_id = $1", a)

    start = datetime.now(UTC) - timedelta(seconds=1)
    stack.start("liquidation")
    claims = []
    for n, worker in enumerate(WORKERS):
        claim = PensionClaimFiled.model_validate(
            {
                "claim_id": f"C-career-{n}",
                "worker_id": worker,
                "regime": "INPS",
                "category": "salarie",
                "birth_date": "1966-03-10",
                "effective_date": "2026-12-01",
            }
        )
        filed = wrap(claim, producer="gateway", correlation_id=claim.claim_id)
        claims.append((worker, filed.model_dump_json().encode()))
    await produce_values(stack, "kalo.pensions.claims", claims)
    await wait_for(
        conn, "SELECT count(*) = 2 FROM ledger.claim_liquidations WHERE claim_id LIKE 'C-career-%'"
    )
    stack.stop("liquidation")

    later = {
        "declaration_id": "D-career-later",
        "employer": EMP001,
        "period": "2026-03",
        "lines": [salaried(a, 400_000)],
    }
    await produce(stack, [later], submitted_at=SUBMITTED_AT + timedelta(days=2))
    await wait_for(conn, "SELECT 1 FROM ledger.careers WHERE worker_id = $1 AND period = '2026-03'", a)
    events = {
        w: await consume_until(
            stack.settings, "kalo.pensions.liquidations", lambda e, w=w: e["data"]["worker_id"] == w
        )
        for w in WORKERS
    }
    return Liquidated(start, events)


async def test_real_liquidations_replay_with_their_careers_rebuilt_from_the_topics(
    replayed: Replayed, liquidated: Liquidated
) -> None:
    a = liquidated.events[WORKERS[0]]["data"]
    # What the careers are made of: the corrective's base, the history (2001-01 replaced), the
    # imported 2026-01 row of EMP001 left out under its declaration; not the month after.
    career = dict(a["career"])
    declared = await replayed.conn.fetchval(
        "SELECT base FROM ledger.careers"
        " WHERE worker_id = $1 AND period = '2026-01' AND employer_id = 'EMP001'",
        WORKERS[0],
    )
    assert career["2026-01"] == declared + 1 and "2026-03" not in career  # + OLD/2's imported row
    assert career["2001-01"] == 160_000 and a["as_of"]["imported_rows"] == 301
    code, doc = replay(
        replayed.stack, liquidated.start, datetime.now(UTC), "--topic", "kalo.pensions.liquidations"
    )
    assert code == 0, json.dumps(doc, indent=1)[:4000]
    # Two, or three after test_liquidations_replay_and_a_forged_one_is_reported: the service
    # also liquidates the claim that test filed (a worker without career).
    n = doc["liquidations"]
    assert n in (2, 3) and (doc["equal"], doc["mismatched"]) == (n, 0)
    careers = doc["careers"]
    assert (careers["rederived"], careers["equal"], careers["passes"]) == (n, n, 1)
    assert careers["not_rederivable"] == [] and careers["unreadable"] == 0
    assert careers["events_read"] > 0


async def test_a_forged_career_with_amounts_to_match_is_reported_by_its_month(
    replayed: Replayed, liquidated: Liquidated
) -> None:
    """The forged liquidation is consistent with its own career: only the career, rebuilt from
    the topics, tells it apart."""
    original = liquidated.events[WORKERS[0]]
    forged = json.loads(json.dumps(original))
    forged["id"] = str(uuid.uuid4())
    data = forged["data"]
    k = len(data["career"]) - 1  # a month EMP001 declared
    data["career"][k][1] += 50_000
    ruleset = load_ruleset()
    assert ruleset.id == data["ruleset"]
    data["liquidation"] = liquidate_claim({**data["claim"], "career": data["career"]}, ruleset)
    assert data["liquidation"]["monthly_pension"] > original["data"]["liquidation"]["monthly_pension"]
    start = datetime.now(UTC) - timedelta(seconds=1)
    await produce_values(
        replayed.stack, "kalo.pensions.liquidations", [(data["worker_id"], orjson.dumps(forged))]
    )
    await asyncio.sleep(1.2)
    end = datetime.now(UTC)
    code, doc = replay(replayed.stack, start, end, "--topic", "kalo.pensions.liquidations")
    assert code == 1, json.dumps(doc, indent=1)[:4000]
    assert (doc["liquidations"], doc["equal"], doc["mismatched"]) == (1, 0, 1)
    assert doc["careers"]["rederived"] == 1 and doc["careers"]["equal"] == 0
    honest = original["data"]["career"][k]
    assert doc["mismatches"][0] == {
        "event_id": forged["id"],
        "claim_id": data["claim_id"],
        "field": f"career[{k}]",
        "recorded": data["career"][k],
        "rederived": honest,
    }
    # And its amounts, re-derived from the career on the topics, are not the ones it carries.
    assert any(m["field"].startswith("liquidation.") for m in doc["mismatches"])
    # Trusting the snapshot it carries (the replay before careers were re-derived), it passes.
    code, doc = replay(replayed.stack, start, end, "--topic", "kalo.pensions.liquidations", "--no-careers")
    assert code == 0 and (doc["equal"], doc["mismatched"], doc["careers"]) == (1, 0, None)


async def test_records_that_are_no_decisions_are_reported_not_fatal(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    """Bytes no service wrote, on the decision topics and on the inputs': each one counted and
    named, the run failed (exit 1) with its report, never a traceback."""
    stack, _ = fresh
    hostile = [b"\x00\xffnot json", b"[1, 2]", b'{"id": 1}', b"null", b"9" * 40, b'{"id":"x"}\n']
    envelope_only = {"id": "e1", "correlation_id": "c", "causation_id": "k", "data": {}}
    for name in ("kalo.declarations.assessed", "kalo.declarations.rejected", "kalo.pensions.liquidations"):
        await produce_values(stack, name, [("k", v) for v in hostile])
    await produce_values(
        stack,
        "kalo.pensions.liquidations",
        [("k", orjson.dumps({**envelope_only, "type": "pension.liquidated"}))],
    )
    await produce_values(stack, "kalo.declarations.submitted", [("k", v) for v in hostile])
    now = datetime.now(UTC)
    code, doc = replay(stack, now - timedelta(hours=1), now + timedelta(hours=1))
    assert code == 1
    assert doc["unreadable"] == 3 * len(hostile) + 1
    assert doc["rederived"] == 0 and not doc["ok"]
    problems = {x["problem"] for x in doc["unreadable_listed"]}
    assert "not a JSON object" in problems
    assert "a liquidation without worker_id, claim, career and liquidation" in problems
