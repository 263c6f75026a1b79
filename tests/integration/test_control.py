"""The control commission on the real stack: liquidations produced to Kafka (computed by
services/rules, as the liquidation service emits them), the control service as a real
process, its API, its database rules and its topics."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from contracts.envelope import Envelope
from contracts.pensions import PensionLiquidated
from services.common.db import connect
from services.common.hashing import api_key_hash
from services.gateway.registry import add_staff_key
from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import kalo, read_all
from tests.support.control import PLAIN, SPIKE, liquidated
from tests.support.control import produce as produce_to

APPROVED = "kalo.pensions.approved"
DECISIONS = "kalo.control.decisions"


def control_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.control_port}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def produce(stack: Stack, *events: Envelope[PensionLiquidated]) -> None:
    await produce_to(stack.settings, *events)


async def wait_for(
    client: httpx.AsyncClient, key: str, claim_id: str, status: str, seconds: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            r = await client.get(f"/v1/liquidations/{claim_id}", headers=bearer(key))
            doc = r.json()
            if r.status_code == 200 and doc["status"] == status:
                return doc
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError(f"{claim_id} is not {status} after {seconds}s: {doc}")


@pytest.fixture(scope="module")
def control(stack: Stack) -> Iterator[Stack]:
    proc = stack.start("control")
    try:
        wait_http(f"{control_url(stack)}/health", proc)
    except Exception:
        print(stack.log_tail("control"))
        raise
    yield stack
    stack.stop("control")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def keys(stack: Stack) -> dict[str, str]:
    conn = await asyncpg.connect(stack.settings.dsn)
    try:
        out = {
            name: await add_staff_key(conn, role="controller", label=name)
            for name in ("Alice", "Bob", "Carol")
        }
        out["filer"] = await add_staff_key(conn, role="controller", label="filer, also a controller")
        out["backoffice"] = await add_staff_key(conn, role="backoffice", label="INPS")
        return out
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def client(control: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=control_url(control), timeout=10) as c:
        yield c


async def test_a_salary_spike_needs_two_controllers_and_is_approved_once(
    control: Stack, keys: dict[str, str], client: httpx.AsyncClient
) -> None:
    filer = api_key_hash(keys["filer"])
    await produce(
        control,
        liquidated("CI-SPIKE", SPIKE, worker_id="WI-1", filed_by=filer),
        liquidated("CI-PLAIN", PLAIN, worker_id="WI-2", filed_by=filer),
        liquidated("CI-REJ", PLAIN, worker_id="WI-3", birth_date="1974-06-01", filed_by=filer),
    )
    alice, bob, carol = keys["Alice"], keys["Bob"], keys["Carol"]
    doc = await wait_for(client, alice, "CI-SPIKE", "pending")
    assert [f["code"] for f in doc["flags"]] == ["SALARY_SPIKE"] and doc["approvals_needed"] == 2

    # Only controllers: no key 401, any other key 403.
    assert (await client.get("/v1/liquidations")).status_code == 401
    for other in (keys["backoffice"], "kalo_cont_not-a-key"):
        r = await client.get("/v1/liquidations", headers=bearer(other))
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"

    listed = (await client.get("/v1/liquidations?status=pending", headers=bearer(alice))).json()
    assert "CI-SPIKE" in [i["claim_id"] for i in listed["liquidations"]]

    url = "/v1/liquidations/CI-SPIKE/decisions"
    r = await client.post(url, json={"decision": "approve"}, headers=bearer(keys["filer"]))
    assert r.status_code == 403 and r.json()["rule"] == "decisions_not_the_filer"
    r = await client.post(url, json={"decision": "approve"}, headers=bearer(alice))
    assert r.status_code == 201 and r.json()["status"] == "pending"
    r = await client.post(url, json={"decision": "approve"}, headers=bearer(alice))
    assert r.status_code == 409 and r.json()["rule"] == "decisions_one_per_controller"
    assert r.headers["content-type"] == "application/problem+json"
    for body in ({"decision": "reject"}, {"decision": "reject", "reason": "  "}):
        r = await client.post(url, json=body, headers=bearer(bob))
        assert r.status_code == 422 and r.json()["rule"] == "decisions_reject_has_reason"
    r = await client.post(url, json={"decision": "perhaps"}, headers=bearer(bob))
    assert r.status_code == 422
    r = await client.post(url, json={"decision": "approve"}, headers=bearer(bob))
    assert r.status_code == 201 and r.json()["status"] == "approved"
    assert [d["controller_label"] for d in r.json()["decisions"]] == ["Alice", "Bob"]
    r = await client.post(url, json={"decision": "approve"}, headers=bearer(carol))
    assert r.status_code == 409 and r.json()["rule"] == "decisions_liquidation_pending"

    # The unflagged one was approved automatically; the rejected one stays rejected.
    plain = await wait_for(client, alice, "CI-PLAIN", "approved")
    assert plain["decided_by"] == "auto" and plain["flags"] == []
    rejected = await wait_for(client, alice, "CI-REJ", "rejected")
    assert rejected["decided_by"] == "liquidation" and rejected["liquidation"]["reason"] == "AGE_NOT_REACHED"
    r = await client.post(
        "/v1/liquidations/CI-REJ/decisions", json={"decision": "approve"}, headers=bearer(carol)
    )
    assert r.status_code == 409

    deadline = time.monotonic() + 30
    while True:
        approved = [m["data"] for m in await read_all(control.settings, APPROVED, seconds=1.5)]
        if {"CI-SPIKE", "CI-PLAIN"} <= {a["claim_id"] for a in approved} or time.monotonic() > deadline:
            break
    counts = Counter(a["claim_id"] for a in approved)
    assert counts["CI-SPIKE"] == 1 and counts["CI-PLAIN"] == 1 and counts["CI-REJ"] == 0
    spike = next(a for a in approved if a["claim_id"] == "CI-SPIKE")
    assert spike["monthly_pension"] == doc["monthly_pension"] and spike["worker_id"] == "WI-1"
    decisions = [m["data"] for m in await read_all(control.settings, DECISIONS, seconds=1.5)]
    spike_states = [d["decision"] for d in decisions if d["claim_id"] == "CI-SPIKE"]
    assert spike_states == ["pending", "pending", "approved"]
    assert [d["decision"] for d in decisions if d["claim_id"] == "CI-REJ"] == ["rejected"]


async def test_the_database_itself_refuses_what_the_four_eyes_forbid(
    control: Stack, keys: dict[str, str], client: httpx.AsyncClient
) -> None:
    """As the service's own role, around the service: the constraints hold without its code."""
    await produce(
        control, liquidated("CI-DB", SPIKE, worker_id="WI-DB", filed_by=api_key_hash(keys["filer"]))
    )
    await wait_for(client, keys["Alice"], "CI-DB", "pending")
    conn = await connect("control", control.settings)  # as the service connects: its role, its schema
    insert = """INSERT INTO control.decisions (claim_id, controller, decision, reason, decided_at)
                VALUES ('CI-DB', $1, $2, $3, now())"""
    try:
        with pytest.raises(asyncpg.CheckViolationError) as no_reason:
            await conn.execute(insert, "c-1", "reject", "   ")
        assert no_reason.value.constraint_name == "decisions_reject_has_reason"
        with pytest.raises(asyncpg.CheckViolationError) as filer:
            await conn.execute(insert, api_key_hash(keys["filer"]), "approve", None)
        assert filer.value.constraint_name == "decisions_not_the_filer"
        with pytest.raises(asyncpg.CheckViolationError) as shortcut:
            await conn.execute(
                "UPDATE control.liquidations SET status = 'approved', decided_by = 'controllers', "
                "decided_at = now() WHERE claim_id = 'CI-DB'"
            )
        assert shortcut.value.constraint_name == "liquidations_four_eyes"
        # What it was received with never changes: its career snapshot (json) included.
        with pytest.raises(asyncpg.CheckViolationError) as rewritten:
            await conn.execute(
                "UPDATE control.liquidations SET career = '[[\"2000-01\", 1]]' WHERE claim_id = 'CI-DB'"
            )
        assert rewritten.value.constraint_name == "liquidations_kept_as_received"
        await conn.execute(
            "UPDATE control.liquidations SET career = career::text::json WHERE claim_id = 'CI-DB'"
        )  # the same text: nothing changed, nothing refused
        await conn.execute(insert, "c-1", "approve", None)
        with pytest.raises(asyncpg.UniqueViolationError) as twice:
            await conn.execute(insert, "c-1", "approve", None)
        assert twice.value.constraint_name == "decisions_one_per_controller"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM control.decisions WHERE claim_id = 'CI-DB'")
        await conn.execute(insert, "c-2", "reject", "no payslips for 2024")
        assert (
            await conn.fetchval("SELECT status FROM control.liquidations WHERE claim_id = 'CI-DB'")
            == "rejected"
        )
        with pytest.raises(asyncpg.CheckViolationError) as decided:
            await conn.execute(insert, "c-3", "approve", None)
        assert decided.value.constraint_name == "decisions_liquidation_pending"
        # The registry is read through its view only (hashes and labels of controllers).
        assert await conn.fetchval("SELECT count(*) FROM control.controllers") >= 4
        for registry in ("gateway.api_keys", "public.api_keys"):  # after or before migration 006
            with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedTableError)):
                await conn.execute(f"UPDATE {registry} SET role = 'controller'")
    finally:
        await conn.close()


async def test_hostile_liquidations_are_parked_or_flagged_and_the_partition_flows_on(
    control: Stack, keys: dict[str, str], client: httpx.AsyncClient
) -> None:
    """Raw bytes are parked on the DLQ; a liquidation whose pension is past 64 bits is never
    approved (the control's re-computation flags it for the controllers); the next
    liquidation of the same partition is stored and approved."""
    from services.common import kafka

    worker = "W-HOSTILE"
    huge = liquidated("CI-HUGE", PLAIN, worker_id=worker, tamper={"monthly_pension": 2**70})
    good = liquidated("CI-AFTER-HUGE", PLAIN, worker_id=f"{worker}-2")
    producer = kafka.producer(control.settings)
    await producer.start()
    try:
        name = kafka.topic("kalo.pensions.liquidations", control.settings)
        await producer.send_and_wait(name, b"\x00\xffnot json\n", key=worker.encode())
        await producer.send_and_wait(name, huge.model_dump_json().encode(), key=worker.encode())
        await producer.send_and_wait(name, good.model_dump_json().encode(), key=worker.encode())
    finally:
        await producer.stop()
    await wait_for(client, keys["Alice"], "CI-AFTER-HUGE", "approved")
    flagged = await wait_for(client, keys["Alice"], "CI-HUGE", "pending")
    assert [f["code"] for f in flagged["flags"]] == ["RECOMPUTE_MISMATCH"]
    deadline = time.monotonic() + 30
    parked: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not parked:
        letters = await read_all(control.settings, "kalo.dlq", seconds=1)
        parked = [d for d in letters if d["data"].get("service") == "kalo-control"]
    assert len(parked) == 1 and parked[0]["data"]["topic"].endswith("kalo.pensions.liquidations"), parked


async def test_kalo_status_counts_the_liquidations_waiting_for_controllers(
    control: Stack, keys: dict[str, str], client: httpx.AsyncClient
) -> None:
    """`kalo status` says how many liquidations wait for the controllers, as the control's
    table holds them, beside the declarations and the outboxes."""
    await produce(control, liquidated("CI-STATUS", SPIKE, worker_id="WI-STATUS"))
    await wait_for(client, keys["Alice"], "CI-STATUS", "pending")
    done = kalo(control.env, "status", "--json")
    assert done.returncode == 0, done.stderr
    postgres = json.loads(done.stdout)["postgres"]
    conn = await asyncpg.connect(control.settings.dsn)
    try:
        pending = await conn.fetchval("SELECT count(*) FROM control.liquidations WHERE status = 'pending'")
    finally:
        await conn.close()
    assert postgres["control"] == {"pending": pending, "escalated": 0} and pending >= 1
    assert isinstance(postgres["outbox_pending"], int) and "declarations" in postgres


def test_sigterm_ends_the_control_service_within_ten_seconds(control: Stack) -> None:
    proc = control.procs["control"]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, control.log_tail("control")
    assert time.monotonic() - started < 10
