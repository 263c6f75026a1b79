"""Hostile input on the real stack: nothing stalls the assessment, everything receipted is
decided, and the door refuses what cannot be decided — each case a regression test of a
defect found by a hostile client."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest_asyncio

from contracts.declarations import DeclarationSubmitted
from contracts.envelope import derived_id
from services.common import kafka
from services.common.settings import Settings
from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import auth, declaration, inps_line, read_all, register_employer, wait_status
from tests.support.sandbox import free_port

HEADER = "worker_id,category,days_worked,base_salary,bonuses,benefits_in_kind,expense_reimbursements\n"


@pytest_asyncio.fixture(loop_scope="session")
async def client(services: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=120) as c:
        yield c


async def upload(
    client: httpx.AsyncClient, key: str, text: str | bytes, period: str, **form: str
) -> httpx.Response:
    data = text.encode() if isinstance(text, str) else text
    return await client.post(
        "/v1/declarations/upload",
        headers=auth(key),
        data={"period": period, **form},
        files={"file": ("declaration.csv", data, "text/csv")},
    )


async def dead_letter_for(settings: Settings, predicate: Any, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for event in await read_all(settings, "kalo.dlq", seconds=1):
            if predicate(event["data"]):
                return event
        await asyncio.sleep(0.5)
    raise TimeoutError("no such dead letter")


async def test_a_rejection_larger_than_a_kafka_message_is_reported_and_nothing_stalls(
    db: Any, client: httpx.AsyncClient
) -> None:
    """Case 1: 50,000 lines, each breaking six rules: 300,000 errors, a report of about 36 MB
    in full. The employer gets the rejection (the first errors of each code, and the counts),
    and the next declaration of the same employer (same partition) is decided right after."""
    employer_id, key = await register_employer(db)
    bad = {
        "category": "cadre",  # CATEGORY_NOT_ALLOWED
        "days_worked": 40,  # DAYS_OUT_OF_RANGE
        "base_salary": -1,  # NEGATIVE_AMOUNT ×4
        "bonuses": -1,
        "benefits_in_kind": -1,
        "expense_reimbursements": -1,
    }
    # 40-character worker ids, repeated in each of the 300,000 errors: ~45 MB of report.
    lines = [{"worker_id": f"W{i:06d}".ljust(40, "x"), **bad} for i in range(50_000)]
    body = orjson.dumps(declaration(employer_id, lines, period="2026-09"))
    assert len(body) > 8_000_000
    r = await client.post(
        "/v1/declarations", content=body, headers={**auth(key), "Content-Type": "application/json"}
    )
    assert r.status_code == 202, r.text
    huge = r.json()["declaration_id"]
    r = await client.post(
        "/v1/declarations",
        json=declaration(employer_id, [inps_line("W1", 100_000)], period="2026-10"),
        headers=auth(key),
    )
    assert r.status_code == 202
    after = r.json()["declaration_id"]

    doc = await wait_status(client, huge, key, seconds=120)
    assert doc["status"] == "rejected"
    report = doc["report"]
    assert report["error_counts"] == {
        "CATEGORY_NOT_ALLOWED": 50_000,
        "DAYS_OUT_OF_RANGE": 50_000,
        "NEGATIVE_AMOUNT": 200_000,
    }
    assert report["errors_omitted"] == 300_000 - len(report["errors"])
    listed: dict[str, int] = {}
    for error in report["errors"]:
        listed[error["code"]] = listed.get(error["code"], 0) + 1
    assert listed == {"CATEGORY_NOT_ALLOWED": 1000, "DAYS_OUT_OF_RANGE": 1000, "NEGATIVE_AMOUNT": 1000}
    assert report["errors"][0] == {
        "line": 1,
        "worker_id": "W000000".ljust(40, "x"),
        "code": "CATEGORY_NOT_ALLOWED",
        "message": report["errors"][0]["message"],
    }
    assert (await wait_status(client, after, key, seconds=60))["status"] == "accepted"
    # The same report as CSV, one row per error listed.
    r = await client.get(f"/v1/declarations/{huge}/report.csv", headers=auth(key))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert len(r.text.strip().splitlines()) == 1 + 3000


async def test_a_nul_in_an_id_produced_around_the_gateway_goes_to_the_dlq_and_the_partition_flows(
    services: Stack, db: Any, client: httpx.AsyncClient
) -> None:
    """Case 2: an envelope whose employer.id holds U+0000, produced straight onto the topic
    with the key of a real employer, is parked; that employer's next declaration is decided."""
    employer_id, key = await register_employer(db)
    declaration_id = f"D-20261130-{uuid.uuid4().hex[:16]}"
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    poison = {
        "id": str(derived_id(declaration_id, DeclarationSubmitted.TYPE)),
        "type": DeclarationSubmitted.TYPE,
        "version": 1,
        "occurred_at": at,
        "producer": "hostile",
        "correlation_id": declaration_id,
        "causation_id": None,
        "data": {
            "declaration_id": declaration_id,
            "employer": {"id": employer_id + "\x00", "regime": "INPS", "risk_class": 2, "filing": "monthly"},
            "period": "2026-10",
            "submitted_at": at,
            "replaces": None,
            "payload_sha256": "0" * 64,
            "lines": [["W1", "salarie", 30, 100000, 0, 0, 0]],
        },
    }
    producer = kafka.producer(services.settings)
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            kafka.topic("kalo.declarations.submitted", services.settings),
            orjson.dumps(poison),
            key=employer_id.encode(),
        )
    finally:
        await producer.stop()
    r = await client.post(
        "/v1/declarations", json=declaration(employer_id, [inps_line("W1", 100_000)]), headers=auth(key)
    )
    assert r.status_code == 202
    assert (await wait_status(client, r.json()["declaration_id"], key, seconds=60))["status"] == "accepted"
    letter = await dead_letter_for(
        services.settings, lambda d: d["partition"] == meta.partition and d["offset"] == meta.offset
    )
    assert letter["data"]["service"] == "assessment"
    assert "employer.id" in letter["data"]["error"] and "U+0000" in letter["data"]["error"]
    assert base64.b64decode(letter["data"]["value_b64"]) == orjson.dumps(poison)


async def test_a_filing_the_assessment_cannot_read_is_refused_at_the_door(
    db: Any, client: httpx.AsyncClient
) -> None:
    """Case 3: `weekly`, `""`, `"30"` used to be receipted, then parked for ever."""
    employer_id, key = await register_employer(db)
    for filing in ("weekly", "", "30"):
        body = declaration(employer_id, [inps_line("W1", 100_000)], filing=filing)
        r = await client.post("/v1/declarations", json=body, headers=auth(key))
        assert r.status_code == 422, (filing, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["employer.filing"]
    r = await upload(client, key, HEADER + "W1,salarie,30,100000,0,0,0\n", "2026-10", filing="weekly")
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["employer.filing"]
    r = await client.get("/v1/declarations", headers=auth(key))
    assert r.json()["count"] == 0  # nothing half-written


async def test_one_original_per_month_cannot_be_bypassed_with_a_trailing_newline(
    db: Any, client: httpx.AsyncClient
) -> None:
    """Case 4: `2015-03` and `2015-03\\n` were both accepted: the month counted twice."""
    employer_id, key = await register_employer(db)
    line = [inps_line("W1", 100_000)]
    for period in ("2015-03\n", "2015-03 ", " 2015-03", "2015-3", "2015-03\x00"):
        r = await client.post(
            "/v1/declarations", json=declaration(employer_id, line, period=period), headers=auth(key)
        )
        assert r.status_code == 422, (period, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["period"]
        r = await upload(client, key, HEADER + "W1,salarie,30,100000,0,0,0\n", period)
        assert r.status_code == 422, (period, r.text)
    r = await client.post(
        "/v1/declarations", json=declaration(employer_id, line, period="2015-03"), headers=auth(key)
    )
    assert r.status_code == 202
    other = [inps_line("W1", 120_000)]  # another body (the same one is the same receipt)
    r = await client.post(
        "/v1/declarations", json=declaration(employer_id, other, period="2015-03"), headers=auth(key)
    )
    assert r.status_code == 409
    assert (await client.get("/v1/declarations", headers=auth(key))).json()["count"] == 1


async def test_numbers_beyond_what_the_wire_and_postgresql_carry_get_a_422(
    db: Any, client: httpx.AsyncClient
) -> None:
    """Case 5: risk classes outside 64 bits gave a plain-text 500; a CSV cell of 4,301 digits
    gave a 500; non-ASCII digits were read as numbers."""
    employer_id, key = await register_employer(db)
    for risk_class in (2**64, -(2**63) - 1, 10**29):
        body = orjson.dumps(declaration(employer_id, [inps_line("W1", 100_000)]))
        text = body.decode().replace('"risk_class":2', f'"risk_class":{risk_class}')
        r = await client.post(
            "/v1/declarations", content=text, headers={**auth(key), "Content-Type": "application/json"}
        )
        assert r.status_code == 422, (risk_class, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in r.json()["errors"]] == ["employer.risk_class"]
        r = await upload(
            client, key, HEADER + "W1,salarie,30,100000,0,0,0\n", "2026-10", risk_class=str(risk_class)
        )
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["risk_class"]
    for cell in ("9" * 4301, "３０", "٣٠", "1e3", "0x1F", "+5", "1_000"):
        r = await upload(client, key, HEADER + f"W1,salarie,{cell},100000,0,0,0\n", "2026-10")
        assert r.status_code == 422, (cell, r.text)
        (error,) = r.json()["errors"]
        assert (error["row"], error["line"], error["column"]) == (2, 1, "days_worked")
        assert len(r.content) < 2000  # the answer quotes the cell, cut
    assert (await client.get("/v1/declarations", headers=auth(key))).json()["count"] == 0


async def test_the_door_refuses_a_media_type_it_does_not_read(db: Any, client: httpx.AsyncClient) -> None:
    """Case 7: any Content-Type (or none) was read as JSON."""
    employer_id, key = await register_employer(db)
    body = orjson.dumps(declaration(employer_id, [inps_line("W1", 100_000)]))
    for headers in (
        {"Content-Type": "text/plain"},
        {},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ):
        r = await client.post("/v1/declarations", content=body, headers={**auth(key), **headers})
        assert r.status_code == 415, (headers, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["accepted"] == ["application/json"]
    r = await client.post(
        "/v1/declarations/upload", content=body, headers={**auth(key), "Content-Type": "application/json"}
    )
    assert r.status_code == 415
    r = await client.post(
        "/v1/declarations",
        content=body,
        headers={**auth(key), "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 202


async def test_cells_a_spreadsheet_would_run_are_neutralised_in_the_csv_report(
    db: Any, client: httpx.AsyncClient
) -> None:
    """Case 7: worker ids beginning with = + - @ were stored and shown as they came; they are
    kept as sent in JSON, and neutralised where a spreadsheet opens them."""
    _, key = await register_employer(db)
    ids = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "W5"]
    rows = "".join(f'"{w.replace(chr(34), chr(34) * 2)}",salarie,30,100000,0,0,0\n' for w in ids)
    r = await upload(client, key, HEADER + rows, "2026-10")
    assert r.status_code == 202, r.text
    doc = await wait_status(client, r.json()["declaration_id"], key)
    assert doc["status"] == "accepted"
    assert [line["worker_id"] for line in doc["report"]["lines"]] == ids  # JSON: as sent
    r = await client.get(f"/v1/declarations/{doc['declaration_id']}/report.csv", headers=auth(key))
    assert r.status_code == 200
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0][:5] == ["worker_id", "category", "gross", "base", "floor_applied"]
    assert [row[0] for row in table[1:]] == ["'" + w for w in ids[:4]] + ["W5"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in table for cell in row)


async def test_failed_authentications_are_rate_limited_per_client_address(
    services: Stack, db: asyncpg.Connection
) -> None:
    """Case 7: unknown API keys were never rate-limited (each one a database lookup)."""
    port = free_port()
    proc = services.start(
        "gateway",
        name="gateway-auth-limits",
        KALO_GATEWAY_PORT=str(port),
        KALO_GATEWAY_AUTH_FAILURES_PER_SECOND="0.2",
        KALO_GATEWAY_AUTH_FAILURES_BURST="5",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        _, key = await register_employer(db)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert (await c.get("/v1/declarations", headers=auth(key))).status_code == 200  # cached now
            statuses = [
                (await c.get("/v1/declarations", headers=auth(f"guess-{i}"))).status_code for i in range(8)
            ]
            assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
            r = await c.get("/v1/declarations", headers=auth("guess-again"))
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
            # A key already known keeps working: the budget is for failures.
            assert (await c.get("/v1/declarations", headers=auth(key))).status_code == 200
    finally:
        services.stop("gateway-auth-limits")


async def test_an_output_too_large_for_kafka_is_parked_and_the_partition_flows(
    fresh: tuple[Stack, Any],
) -> None:
    """A declaration whose assessment exceeds the message limit (here a small one, for an
    assessment started with a 200 kB limit) goes to the DLQ with its error; the employer's
    next declaration on the same partition is decided right after."""
    stack, conn = fresh
    gateway = stack.start("gateway")
    stack.start("assessment", KALO_MAX_MESSAGE_BYTES="200000")
    stack.start("ledger")
    wait_http(f"{stack.gateway_url}/health", gateway)
    employer_id, key = await register_employer(conn)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as c:
        lines = [inps_line(f"WORKER-{i:05d}", 100_000 + i) for i in range(2500)]
        r = await c.post(
            "/v1/declarations", json=declaration(employer_id, lines, period="2026-09"), headers=auth(key)
        )
        assert r.status_code == 202
        big = r.json()["declaration_id"]
        r = await c.post(
            "/v1/declarations", json=declaration(employer_id, [inps_line("W1", 100_000)]), headers=auth(key)
        )
        assert r.status_code == 202
        assert (await wait_status(c, r.json()["declaration_id"], key, seconds=90))["status"] == "accepted"
        letter = await dead_letter_for(
            stack.settings, lambda d: big in base64.b64decode(d["value_b64"]).decode()
        )
        assert "OutputTooLarge" in letter["data"]["error"] and "exceeds" in letter["data"]["error"]
