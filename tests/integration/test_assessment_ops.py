"""Assessment on the real stack: the largest employer's declaration end to end, and the
metrics of the real worker processes moving with what they did."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest_asyncio

from services.common import kafka
from services.rules import assess_declaration, load_ruleset
from tests.integration.conftest import Stack, isolated_stack
from tests.integration.helpers import (
    auth,
    consume_until,
    declaration,
    inps_line,
    register_employer,
    wait_status,
)
from tests.integration.test_assessment_ledger import produce, register, wait_applied

BIG = 30_000


async def test_the_largest_employer_passes_end_to_end(services: Stack, db) -> None:
    employer_id, key = await register_employer(db, risk_class=3)
    lines = [inps_line(f"BIG{employer_id}-{n:05d}", 60_000 + (n * 37) % 900_000) for n in range(BIG)]
    lines[7]["days_worked"] = 12  # a few lines raised to the SMIG floor
    body = declaration(employer_id, lines, risk_class=3)
    assert len(orjson.dumps(body)) > 3_000_000  # several MB, above Kafka's 1 MB default
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=120) as client:
        r = await client.post("/v1/declarations", headers=auth(key), json=body)
        assert r.status_code == 202, r.text[:500]
        declaration_id = r.json()["declaration_id"]
        doc = await wait_status(client, declaration_id, key, seconds=180)
    assert doc["status"] == "accepted", str(doc)[:500]
    want = assess_declaration(
        {**body, "declaration_id": declaration_id, "submitted_at": doc["received_at"]}, load_ruleset()
    )
    assert doc["report"]["totals"] == want["totals"]

    assessed = await consume_until(
        services.settings,
        "kalo.declarations.assessed",
        lambda e: e["data"]["declaration_id"] == declaration_id,
        seconds=120,
    )
    assert len(assessed["data"]["lines"]) == BIG  # one event for the whole declaration
    amo = await consume_until(
        services.settings, "kalo.amo.deductions", lambda e: e["data"]["declaration_id"] == declaration_id
    )
    assert len(amo["data"]["workers"]) == BIG
    assert amo["data"]["employee_total"] + amo["data"]["employer_total"] == want["totals"]["by_fund"]["CANAM"]
    audit = await consume_until(
        services.settings, "kalo.audit", lambda e: e["data"]["subject"] == declaration_id
    )
    assert audit["data"]["details"]["lines"] == BIG and len(audit["data"]["input_sha256"]) == 64
    career = await db.fetchrow(
        "SELECT count(*) AS n, sum(base) AS base FROM ledger.careers WHERE employer_id = $1", employer_id
    )
    assert career["n"] == BIG
    assert career["base"] == sum(
        i["base"]
        for line in want["lines"]
        for i in line["items"]
        if i["branch"] == "PVID" and i["payer"] == "employee"
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM ledger.workers WHERE first_declaration_id = $1", declaration_id
        )
        == BIG
    )


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def _wait_scrape(stack: Stack, seconds: float = 60) -> dict[str, dict[str, float]]:
    """The first scrape, once both workers serve /metrics."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await scrape(stack)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def scrape(stack: Stack) -> dict[str, dict[str, float]]:
    ports = {
        "assessment": stack.settings.assessment_web_port,
        "ledger": stack.settings.ledger_metrics_port,
    }
    async with httpx.AsyncClient(timeout=10) as client:
        return {
            k: samples((await client.get(f"http://127.0.0.1:{p}/metrics")).text) for k, p in ports.items()
        }


@pytest_asyncio.fixture(loop_scope="session")
async def workers(tmp_path: Path) -> AsyncIterator[tuple[Stack, asyncpg.Connection]]:
    """Its own sandbox: the poison sent here must not reach the topics other tests read."""
    async with isolated_stack(tmp_path) as stack:
        conn = await asyncpg.connect(stack.settings.dsn)
        try:
            stack.start("assessment")
            stack.start("ledger")
            yield stack, conn
        finally:
            await conn.close()


async def test_worker_metrics_move_with_the_work(workers: tuple[Stack, asyncpg.Connection]) -> None:
    services, db = workers
    employer = (await register(db, 2))[1]  # INPS, risk class 2, monthly
    ok = {
        "declaration_id": "D-metrics-ok",
        "employer": employer,
        "period": "2026-09",
        "lines": [inps_line("MW1", 250_000)],
    }
    bad = {
        "declaration_id": "D-metrics-bad",
        "employer": employer,
        "period": "2026-08",
        "lines": [inps_line("MW2", -5), inps_line("MW3", 100)],
    }
    before = await _wait_scrape(services)
    await produce(services, [ok, bad])
    await wait_applied(db, 2, seconds=60)
    producer = kafka.producer(services.settings)
    await producer.start()
    try:
        for name in ("kalo.declarations.submitted", "kalo.declarations.assessed"):
            await producer.send_and_wait(kafka.topic(name, services.settings), b"\x00 poison", key=b"metrics")
    finally:
        await producer.stop()

    submitted = kafka.topic("kalo.declarations.submitted", services.settings)
    assessed = kafka.topic("kalo.declarations.assessed", services.settings)
    expected_moves = {
        "assessment": {
            'kalo_assessment_declarations_total{status="accepted"}': 1,
            'kalo_assessment_declarations_total{status="rejected"}': 1,
            'kalo_assessment_lines_total{status="accepted"}': 1,
            'kalo_assessment_lines_total{status="rejected"}': 2,
            'kalo_assessment_errors_total{code="NEGATIVE_AMOUNT"}': 1,
            # RULES.md §2.5 example 1: 250,000 at risk class 2.
            'kalo_assessment_contributions_francs_total{branch="PF",fund="INPS"}': 20_000,
            'kalo_assessment_contributions_francs_total{branch="ATMP",fund="INPS"}': 5_000,
            'kalo_assessment_contributions_francs_total{branch="PVID",fund="INPS"}': 22_500,
            'kalo_assessment_contributions_francs_total{branch="AMO",fund="CANAM"}': 16_400,
            "kalo_assessment_end_to_end_seconds_count": 2,
            f'kalo_assessment_dlq_messages_total{{topic="{submitted}"}}': 1,
        },
        "ledger": {
            "kalo_ledger_end_to_end_seconds_count": 2,
            f'kalo_ledger_dlq_messages_total{{topic="{assessed}"}}': 1,
        },
    }
    deadline = time.monotonic() + 30
    while True:
        after = await scrape(services)
        moves = {
            proc: {name: after[proc].get(name, 0) - before[proc].get(name, 0) for name in names}
            for proc, names in expected_moves.items()
        }
        if moves == expected_moves or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert moves == expected_moves
    for service in ("assessment", "ledger"):
        count = f"kalo_{service}_batch_seconds_count"
        assert after[service][count] > before[service].get(count, 0)
        assert after[service][f"kalo_{service}_batch_seconds_sum"] > 0
    # Lag per consumed partition; the work above is done, so nothing is left behind.
    lag = await _lags(services)
    assert {p for (svc, topic, p) in lag if svc == "assessment" and topic == submitted} == {
        str(p) for p in range(services.settings.partitions)
    }
    assert any(svc == "ledger" for svc, _, _ in lag)
    # Faust's own topics (the assignor's leader, changelogs) are no work of the service.
    assert not [t for _, t, _ in lag if "__assignor" in t or t.endswith("-changelog")], lag
    assert all(v == 0 for v in lag.values()), lag


async def _lags(stack: Stack) -> dict[tuple[str, str, str], float]:
    deadline = time.monotonic() + 20
    while True:
        scraped = await scrape(stack)
        lag: dict[tuple[str, str, str], float] = {}
        for service, samples_ in scraped.items():
            family = f"kalo_{service}_consumer_lag{{"
            for name, value in samples_.items():
                if name.startswith(family):
                    labels: dict[str, Any] = dict(
                        part.split("=", 1) for part in name[len(family) : -1].split(",")
                    )
                    lag[(service, labels["topic"].strip('"'), labels["partition"].strip('"'))] = value
        both = {svc for svc, _, _ in lag} == {"assessment", "ledger"}
        if (both and all(v == 0 for v in lag.values())) or time.monotonic() > deadline:
            return lag
        await asyncio.sleep(1)
