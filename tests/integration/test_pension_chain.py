"""The whole pension chain on the real stack, every service a real process: declarations through
the gateway plus imported history → a claim → its liquidation → the control commission's
automatic approval → `kalo.pensions.approved` once, with the amounts of RULES.md §3.3
(example 7) — and a career with a salary spike held for two controllers, then approved."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import httpx

from services.gateway.registry import add_staff_key
from services.rules import liquidate_claim, load_ruleset
from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import auth, declaration, inps_line, read_all, register_employer, wait_status
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
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        for period in kalo_months:
            body = declaration(
                employer_id, [inps_line(plain, 200_000), inps_line(spiky, 400_000)], period=period
            )
            r = await client.post("/v1/declarations", headers=auth(employer_key), json=body)
            assert r.status_code == 202, r.text
            assert (await wait_status(client, r.json()["declaration_id"], employer_key))[
                "status"
            ] == "accepted"
        r = await import_careers(client, office, careers_csv(rows))
        assert r.status_code == 202, r.text
        await wait_imported(client, office, r.json()["import_id"])

        claims = {}
        for worker in (plain, spiky):
            r = await client.post("/v1/pension-claims", headers=auth(office), json=claim_body(worker))
            assert r.status_code == 202, r.text
            claims[worker] = r.json()["claim_id"]

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
            url = f"/v1/liquidations/{claims[spiky]}/decisions"
            r = await control.post(url, json={"decision": "approve"}, headers=bearer(alice))
            assert r.status_code == 201 and r.json()["status"] == "pending"
            r = await control.post(url, json={"decision": "approve"}, headers=bearer(alice))
            assert r.status_code == 409  # the same controller twice
            r = await control.post(url, json={"decision": "reject"}, headers=bearer(bob))
            assert r.status_code == 422  # a rejection needs a reason
            r = await control.post(url, json={"decision": "approve"}, headers=bearer(bob))
            assert r.status_code == 201 and r.json()["status"] == "approved"
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
