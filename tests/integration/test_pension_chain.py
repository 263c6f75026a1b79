"""The whole pension chain on the real stack, every service a real process: declarations through
the gateway plus imported history → a claim → its liquidation → the control commission's
automatic approval → `kalo.pensions.approved` once, with the amounts of RULES.md §3.3
(example 7) — and a career with a salary spike held for two controllers, escalated, then
approved in a control session. The liquidations say which months were imported and which
assessed. Every decision on the way is an audit event, and the audit store (`kalo run audit`)
holds each kind: the gateway's receipts of declarations, careers imports and claims, the
assessment's acceptances and rejections, the liquidations, the control's decisions,
escalations and session closings, and a poison message's parking in the DLQ and its replay."""

from __future__ import annotations

import asyncio
import getpass
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
import orjson

from services.common import kafka
from services.common.hashing import api_key_hash
from services.control.audit.heads import generate_key
from services.gateway.registry import add_staff_key
from services.rules import liquidate_claim, load_ruleset
from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import (
    auth,
    declaration,
    inps_line,
    kalo,
    read_all,
    register_employer,
    wait_status,
)
from tests.integration.test_control import bearer, control_url, wait_for
from tests.integration.test_pensions import (
    careers_csv,
    claim_body,
    import_careers,
    months,
    wait_claim,
    wait_imported,
)

RULESET = load_ruleset()


async def test_a_claim_goes_from_the_gateway_to_an_approved_pension(fresh: tuple[Stack, Any]) -> None:
    stack, conn = fresh
    key, _, _ = generate_key(stack.logs.parent / "audit.key")
    stack.start(
        "audit",
        KALO_AUDIT_SIGNING_KEY=str(key),
        KALO_AUDIT_HEADS_FILE=str(stack.logs.parent / "heads.jsonl"),
        KALO_AUDIT_HEAD_EVERY_S="0.5",
    )
    gateway = stack.start("gateway")
    for service in ("assessment", "ledger", "liquidation", "control"):
        stack.start(service)
    wait_http(f"{stack.gateway_url}/health", gateway)
    wait_http(f"{control_url(stack)}/health", stack.procs["control"])
    employer_id, employer_key = await register_employer(conn, risk_class=2)
    office = await add_staff_key(conn, role="backoffice", label="INPS back office")
    alice = await add_staff_key(conn, role="controller", label="Alice")
    bob = await add_staff_key(conn, role="controller", label="Bob")

    plain, spiky = f"W-{uuid.uuid4().hex[:8]}", f"W-{uuid.uuid4().hex[:8]}"
    kalo_months = ["2026-08", "2026-09"]
    history = months("2001-10", 298)  # up to 2026-07: 300 months in all
    rows = [(plain, p, "OLD/1", 200_000) for p in history]
    # The other worker's last 36 months are more than 1.5 × the 60 before them: SALARY_SPIKE.
    rows += [
        (spiky, p, "OLD/1", 150_000 if k < len(history) - 34 else 400_000) for k, p in enumerate(history)
    ]
    receipts: dict[str, dict[str, Any]] = {}  # subject -> the gateway's receipt
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        for period in kalo_months:
            body = declaration(
                employer_id, [inps_line(plain, 200_000), inps_line(spiky, 400_000)], period=period
            )
            r = await client.post("/v1/declarations", headers=auth(employer_key), json=body)
            assert r.status_code == 202, r.text
            receipts[r.json()["declaration_id"]] = r.json()
            assert (await wait_status(client, r.json()["declaration_id"], employer_key))[
                "status"
            ] == "accepted"
        # A month the assessment rejects (a negative salary): a decision too.
        body = declaration(employer_id, [inps_line(f"W-{uuid.uuid4().hex[:8]}", -5)], period="2026-07")
        r = await client.post("/v1/declarations", headers=auth(employer_key), json=body)
        rejected_declaration = r.json()["declaration_id"]
        assert (await wait_status(client, rejected_declaration, employer_key))["status"] == "rejected"
        r = await import_careers(client, office, careers_csv(rows))
        assert r.status_code == 202, r.text
        receipts[r.json()["import_id"]] = r.json()
        await wait_imported(client, office, r.json()["import_id"])

        claims = {}
        for worker in (plain, spiky):
            r = await client.post("/v1/pension-claims", headers=auth(office), json=claim_body(worker))
            assert r.status_code == 202, r.text
            claims[worker] = r.json()["claim_id"]
            receipts[claims[worker]] = r.json()

        approved = await wait_claim(client, office, claims[plain], until=("approved", "rejected"), seconds=90)
        assert approved["status"] == "approved", approved
        career = [{"period": p, "base": 200_000} for p in [*history, *kalo_months]]
        want = liquidate_claim({**claim_body(plain), "claim_id": claims[plain], "career": career}, RULESET)
        assert approved["liquidation"] == want
        assert (want["monthly_pension"], want["amo_deduction"], want["net_monthly_pension"]) == (
            100_000,
            750,
            99_250,
        )

        async with httpx.AsyncClient(base_url=control_url(stack), timeout=30) as control:
            held = await wait_for(control, alice, claims[spiky], "pending", seconds=90)
            assert [f["code"] for f in held["flags"]] == ["SALARY_SPIKE"]
            # The snapshot says which months were imported (the history) and which assessed.
            assert held["career_sources"] == [
                [history[0], history[-1], "imported"],
                [kalo_months[0], kalo_months[-1], "assessed"],
            ]
            assert held["career_as_of"]["imported_rows"] == len(history)
            # It waits past the legal delay to answer (the clock moved on, as a superuser says):
            # the control escalates it, once.
            await conn.execute(
                "UPDATE control.liquidations SET escalate_at = now() - interval '1 day' WHERE claim_id = $1",
                claims[spiky],
            )
            await until(lambda: conn.fetchval("SELECT count(*) FROM control.escalations"), 1)
            r = await control.post("/v1/sessions", headers=bearer(alice))
            assert r.status_code == 201, r.text
            session_id = r.json()["id"]
            url = f"/v1/liquidations/{claims[spiky]}/decisions"
            r = await control.post(url, json={"decision": "approve"}, headers=bearer(alice))
            assert r.status_code == 201 and r.json()["status"] == "pending"
            r = await control.post(url, json={"decision": "approve"}, headers=bearer(alice))
            assert r.status_code == 409  # the same controller twice
            r = await control.post(url, json={"decision": "reject"}, headers=bearer(bob))
            assert r.status_code == 422  # a rejection needs a reason
            r = await control.post(url, json={"decision": "approve"}, headers=bearer(bob))
            assert r.status_code == 201 and r.json()["status"] == "approved"
            r = await control.post(f"/v1/sessions/{session_id}/close", headers=bearer(alice))
            assert r.status_code == 200 and r.json()["status"] == "closed", r.text
        spike_doc = await wait_claim(client, office, claims[spiky], until=("approved",), seconds=60)
        assert spike_doc["status"] == "approved"

    deadline = time.monotonic() + 30
    while True:
        on_topic = [m["data"] for m in await read_all(stack.settings, "kalo.pensions.approved", seconds=1.5)]
        counts = Counter(a["claim_id"] for a in on_topic)
        if set(claims.values()) <= set(counts) or time.monotonic() > deadline:
            break
    assert counts == {claims[plain]: 1, claims[spiky]: 1}
    mine = next(a for a in on_topic if a["claim_id"] == claims[plain])
    assert (mine["monthly_pension"], mine["amo_deduction"], mine["net_monthly_pension"]) == (
        100_000,
        750,
        99_250,
    )

    # A poison message on the claims topic is parked by the liquidation, then replayed.
    position = await park_poison(stack, conn)
    [letter] = [d for d in await read_all(stack.settings, "kalo.dlq", seconds=1) if position in d_source(d)]
    replayed = kalo(stack.env, "dlq", "replay", letter["id"], timeout=60)
    assert replayed.returncode == 0, replayed.stderr

    # Every kind of decision is in the audit store, naming who decided (a service or a key's
    # SHA-256, never a key), its subject, its ruleset, and the SHA-256 of its input and output.
    sessions = {session_id}
    want = {
        "declaration.received": (set(d for d in receipts if d.startswith("D-")) | {rejected_declaration}),
        "declaration.assessed": {d for d in receipts if d.startswith("D-")},
        "declaration.rejected": {rejected_declaration},
        "careers.import_received": {i for i in receipts if i.startswith("I-")},
        "claim.received": set(claims.values()),
        "pension.liquidated": set(claims.values()),
        "control.decided": set(claims.values()),
        "control.escalated": {claims[spiky]},
        "control.session_closed": sessions,
        "dlq.parked": {position},
        "dlq.replayed": {position},
    }
    records = await audit_records(conn, want)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_action.setdefault(r["data"]["action"], []).append(r["data"])
        for name in ("input_sha256", "output_sha256"):
            assert len(r["data"][name]) == 64 and int(r["data"][name], 16) >= 0, r
    keys = {api_key_hash(k) for k in (employer_key, office, alice, bob)}
    actors = {action: {d["actor"] for d in found} for action, found in by_action.items()}
    assert actors["declaration.received"] == {api_key_hash(employer_key)}
    assert actors["careers.import_received"] == actors["claim.received"] == {api_key_hash(office)}
    assert actors["control.session_closed"] == {api_key_hash(alice)}
    assert {api_key_hash(alice), api_key_hash(bob), "control"} <= actors["control.decided"]
    assert actors["control.escalated"] == {"control"} and actors["dlq.parked"] == {"liquidation"}
    assert actors["dlq.replayed"] == {f"cli:{getpass.getuser()}"}
    assert not any({employer_key, office, alice, bob} & a for a in actors.values()), "never a key"
    assert keys.isdisjoint(actors["pension.liquidated"] | actors["declaration.assessed"])
    for d in by_action["claim.received"] + by_action["careers.import_received"]:
        assert d["input_sha256"] == receipts[d["subject"]]["payload_sha256"]  # the body received
    for action in ("pension.liquidated", "control.decided", "control.escalated"):
        assert {d["ruleset"] for d in by_action[action]} == {RULESET.id}, action


async def until(count: Any, n: int, seconds: float = 30) -> None:
    """Wait until `count()` reaches `n`."""
    deadline = time.monotonic() + seconds
    while (got := await count()) < n:
        assert time.monotonic() < deadline, f"{got} of {n} after {seconds}s"
        await asyncio.sleep(0.3)


async def park_poison(stack: Stack, conn: asyncpg.Connection) -> str:
    """Bytes that are not a claim, on the claims topic: their topic/partition/offset."""
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:
        name = kafka.topic("kalo.pensions.claims", stack.settings)
        meta = await producer.send_and_wait(name, b"\x00\xff not a claim", key=b"W-poison")
    finally:
        await producer.stop()
    return f"{name}/{meta.partition}/{meta.offset}"


def d_source(letter: dict[str, Any]) -> str:
    d = letter["data"]
    return f"{d['topic']}/{d['partition']}/{d['offset']}"


async def audit_records(
    conn: asyncpg.Connection, want: dict[str, set[str]], seconds: float = 60
) -> list[Any]:
    """The audit store's records, once it holds every subject of every action wanted."""
    deadline = time.monotonic() + seconds
    while True:
        rows = await conn.fetch("SELECT action, subject, record FROM audit.records ORDER BY seq")
        held: dict[str, set[str]] = {}
        for r in rows:
            held.setdefault(r["action"], set()).add(r["subject"])
        missing = {a: s - held.get(a, set()) for a, s in want.items() if s - held.get(a, set())}
        if not missing:
            return [orjson.loads(bytes(r["record"])) for r in rows]
        assert time.monotonic() < deadline, f"not in the audit store: {missing}"
        await asyncio.sleep(0.5)
