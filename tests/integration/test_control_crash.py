"""The control commission SIGKILLed while liquidations flow and controllers approve: every
liquidation ends approved once on kalo.pensions.approved — never twice, never lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import asyncpg
import httpx

from services.gateway.registry import add_staff_key
from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import read_all
from tests.integration.test_control import APPROVED, DECISIONS, bearer, control_url, produce
from tests.support.control import PLAIN, SPIKE, liquidated

CLAIMS = 60
KILLS = 3


async def _approve_what_is_pending(client: httpx.AsyncClient, keys: list[str], done: set[str]) -> None:
    """Both controllers approve every flagged liquidation; an answer lost to a kill is sent
    again (409: that controller's decision, or the liquidation's, is already recorded)."""
    try:
        r = await client.get("/v1/liquidations?status=pending&limit=1000", headers=bearer(keys[0]))
        if r.status_code != 200:
            return
        for item in r.json()["liquidations"]:
            for key in keys:
                url = f"/v1/liquidations/{item['claim_id']}/decisions"
                answer = await client.post(url, json={"decision": "approve"}, headers=bearer(key))
                assert answer.status_code in (201, 409, 503), answer.text
            done.add(item["claim_id"])
    except httpx.TransportError:
        pass  # the service is being restarted


async def test_sigkill_while_claims_flow_every_liquidation_is_approved_once(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    stack, db = fresh
    keys = [await add_staff_key(db, role="controller", label=name) for name in ("Alice", "Bob")]
    proc = stack.start("control", supervised=True)
    wait_http(f"{control_url(stack)}/health", proc)
    events = [
        liquidated(f"K-{i:03d}", SPIKE if i % 3 == 0 else PLAIN, worker_id=f"WK-{i:03d}")
        for i in range(CLAIMS)
    ]
    flagged = {f"K-{i:03d}" for i in range(0, CLAIMS, 3)}

    async def feed() -> None:
        for start in range(0, CLAIMS, 5):
            await produce(stack, *events[start : start + 5])
            await asyncio.sleep(0.4)

    async def kill() -> None:
        for _ in range(KILLS):
            await asyncio.sleep(2.5)
            deadline = time.monotonic() + 30
            while (pid := stack.child_pid("control")) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert pid is not None, "the control service was not restarted"
            os.kill(pid, signal.SIGKILL)

    approved_by_api: set[str] = set()
    async with httpx.AsyncClient(base_url=control_url(stack), timeout=5) as client:
        feeding, killing = asyncio.create_task(feed()), asyncio.create_task(kill())
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            await _approve_what_is_pending(client, keys, approved_by_api)
            done = await db.fetchval("SELECT count(*) FROM control.liquidations WHERE status = 'approved'")
            if feeding.done() and killing.done() and done == CLAIMS:
                break
            await asyncio.sleep(0.5)
        await asyncio.gather(feeding, killing)
    try:
        rows = await db.fetch("SELECT claim_id, status, decided_by FROM control.liquidations")
        assert len(rows) == CLAIMS and {r["status"] for r in rows} == {"approved"}, rows
        by = {r["claim_id"]: r["decided_by"] for r in rows}
        assert {c for c, d in by.items() if d == "controllers"} == flagged
        assert stack.restarts("control") >= KILLS

        deadline = time.monotonic() + 60
        while True:
            approved = await read_all(stack.settings, APPROVED, seconds=2)
            counts = Counter(m["data"]["claim_id"] for m in approved)
            if len(counts) == CLAIMS or time.monotonic() > deadline:
                break
        assert set(counts) == set(by), "every approved liquidation is on the topic"
        assert max(counts.values()) == 1, (
            f"approved more than once: {[c for c, n in counts.items() if n > 1]}"
        )
        ids = Counter(m["id"] for m in approved + await read_all(stack.settings, DECISIONS, seconds=2))
        assert max(ids.values()) == 1, "no message published twice"
        pending = await db.fetchval("SELECT count(*) FROM control.outbox WHERE published_at IS NULL")
        assert pending == 0
    except AssertionError:
        print(stack.log_tail("control", 80))
        raise
