"""The employer gateway on the real stack: receipts, CSV, validation, auth and roles,
idempotency, originals and corrections, reports, accounts and limits."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest_asyncio

from contracts.envelope import derived_id
from services.gateway.registry import add_staff_key
from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import (
    auth,
    consume_until,
    declaration,
    inps_line,
    register_employer,
    wait_status,
)
from tests.support.sandbox import free_port

HEADER = "worker_id,category,days_worked,base_salary,bonuses,benefits_in_kind,expense_reimbursements\n"


async def upload(client: httpx.AsyncClient, key: str, csv: bytes, period: str) -> httpx.Response:
    return await client.post(
        "/v1/declarations/upload",
        headers=auth(key),
        data={"period": period},
        files={"file": ("declaration.csv", csv, "text/csv")},
    )


@pytest_asyncio.fixture(loop_scope="session")
async def client(services: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=60) as c:
        yield c


async def test_json_receipt_is_written_with_its_message(
    services: Stack, db: Any, client: httpx.AsyncClient
) -> None:
    employer_id, key = await register_employer(db)
    body = orjson.dumps(declaration(employer_id, [inps_line("W1", 250_000), inps_line("W2", 90_000)]))
    r = await client.post(
        "/v1/declarations", content=body, headers={**auth(key), "Content-Type": "application/json"}
    )
    assert r.status_code == 202, r.text
    receipt = r.json()
    assert receipt["status"] == "received"
    assert receipt["payload_sha256"] == hashlib.sha256(body).hexdigest()
    assert receipt["received_at"].endswith("Z")
    assert receipt["declaration_id"].startswith("D-")
    event = await consume_until(
        services.settings,
        "kalo.declarations.submitted",
        lambda e: e["data"]["declaration_id"] == receipt["declaration_id"],
    )
    # The message id is a function of the declaration id: a re-publish is a duplicate.
    assert event["id"] == str(derived_id(receipt["declaration_id"], "declaration.submitted"))
    assert event["data"]["payload_sha256"] == receipt["payload_sha256"]
    assert [line[0] for line in event["data"]["lines"]] == ["W1", "W2"]
    # Its audit event went out through the outbox with it: who (the key's id, never the key),
    # the body's SHA-256 and the message's.
    audit = await consume_until(
        services.settings,
        "kalo.audit",
        lambda e: (
            e["data"]["subject"] == receipt["declaration_id"]
            and e["data"]["action"] == "declaration.received"
        ),
    )
    assert audit["causation_id"] == event["id"] and audit["producer"] == "gateway"
    assert audit["data"]["actor"] == hashlib.sha256(key.encode()).hexdigest() and key not in str(audit)
    assert audit["data"]["input_sha256"] == receipt["payload_sha256"]


async def test_csv_upload_comma_and_semicolon(services: Stack, db: Any, client: httpx.AsyncClient) -> None:
    employer_id, key = await register_employer(db, risk_class=3)
    comma = (HEADER + "W1,salarie,30,250000,0,0,0\nW2,salarie,15,60000,5000,0,1000\n").encode()
    r = await upload(client, key, comma, "2026-09")
    assert r.status_code == 202, r.text
    receipt = r.json()
    assert receipt["payload_sha256"] == hashlib.sha256(comma).hexdigest()
    # Semicolons, a BOM, columns in another order, optional columns left out, non-ASCII ids.
    semi = "\ufeffcategory;worker_id;base_salary;days_worked\nsalarie;Wé1;250000;30\n".encode()
    r2 = await upload(client, key, semi, "2026-10")
    assert r2.status_code == 202, r2.text
    event = await consume_until(
        services.settings,
        "kalo.declarations.submitted",
        lambda e: e["data"]["declaration_id"] == r2.json()["declaration_id"],
    )
    # Regime and risk class come from the employer's registration.
    assert event["data"]["employer"] == {
        "id": employer_id,
        "regime": "INPS",
        "risk_class": 3,
        "filing": "monthly",
    }
    assert event["data"]["lines"] == [["Wé1", "salarie", 30, 250000, 0, 0, 0]]
    doc = await wait_status(client, r2.json()["declaration_id"], key)
    assert doc["status"] == "accepted"


async def test_csv_errors_name_every_bad_cell(db: Any, client: httpx.AsyncClient) -> None:
    _, key = await register_employer(db)
    bad = (HEADER + "W1,salarie,30,250000,0,0,0\nW2,salarie,trente,1e5,0,0,0\nW3,salarie,30\n").encode()
    r = await upload(client, key, bad, "2026-10")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    cells = {(e["line"], e["row"], e["column"]) for e in problem["errors"]}
    assert cells == {(2, 3, "days_worked"), (2, 3, "base_salary"), (3, 4, None)}
    # Cells that parse but break the technical schema are named the same way.
    long_id = "W" * 65
    r = await upload(client, key, (HEADER + f"{long_id},salarie,30,1,0,0,0\n").encode(), "2026-10")
    assert r.status_code == 422
    assert [(e["line"], e["row"], e["column"]) for e in r.json()["errors"]] == [(1, 2, "worker_id")]
    # A missing required column, an unknown one; then a file that is not UTF-8.
    r = await upload(client, key, b"worker_id;category;salary\nW1;salarie;1\n", "2026-10")
    assert r.status_code == 422
    assert {e["column"] for e in r.json()["errors"]} == {"salary", "days_worked", "base_salary"}
    r = await upload(client, key, HEADER.encode() + b"W\xe9,salarie,30,1,0,0,0\n", "2026-10")
    assert r.status_code == 400
    assert "not UTF-8" in r.json()["detail"]
    assert r.json()["errors"][0]["row"] == 2


async def test_technical_validation_names_every_field_and_line(db: Any, client: httpx.AsyncClient) -> None:
    employer_id, key = await register_employer(db)
    lines = [inps_line("W1", 100_000), inps_line("W2", 100_000), inps_line("W3", 100_000)]
    lines[1]["base_salary"] = "cent mille"
    lines[2]["days_worked"] = 2.5
    del lines[2]["category"]
    body = declaration(employer_id, lines)
    body["employer"]["extra"] = 1
    r = await client.post("/v1/declarations", json=body, headers=auth(key))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    found = {(e["field"], e["line"]) for e in r.json()["errors"]}
    assert found == {
        ("lines[1].base_salary", 2),
        ("lines[2].days_worked", 3),
        ("lines[2].category", 3),
        ("employer.extra", None),
    }
    r = await client.post(
        "/v1/declarations",
        content=b'{"employer": ',
        headers={**auth(key), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["title"] == "Malformed body"


async def test_a_nul_character_is_refused_at_the_door_not_deep_in_postgresql(
    db: Any, client: httpx.AsyncClient
) -> None:
    employer_id, key = await register_employer(db)
    lines = [inps_line("W1\x00", 100_000)]
    r = await client.post("/v1/declarations", json=declaration(employer_id, lines), headers=auth(key))
    assert r.status_code == 422, r.text
    assert [(e["field"], e["line"]) for e in r.json()["errors"]] == [("lines[0].worker_id", 1)]
    for url in ("/v1/declarations?period=2026-10%00", "/v1/declarations/D-1%00"):
        r = await client.get(url, headers=auth(key))
        assert r.status_code == 400, (url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert (
        await db.fetchval("SELECT count(*) FROM gateway.declarations WHERE employer_id = $1", employer_id)
        == 0
    )


async def test_authentication_and_roles(db: Any, client: httpx.AsyncClient) -> None:
    a_id, a_key = await register_employer(db)
    _, b_key = await register_employer(db)
    backoffice = await add_staff_key(db, role="backoffice", label="INPS recouvrement")
    auditor = await add_staff_key(db, role="auditor", label="Cour des comptes")
    controller = await add_staff_key(db, role="controller", label="commission")
    body = declaration(a_id, [inps_line("W1", 100_000)])

    assert (await client.post("/v1/declarations", json=body)).status_code == 401
    r = await client.post("/v1/declarations", json=body, headers=auth("kalo_emp_not-a-key"))
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    # Keys are stored hashed: the key itself is nowhere in the database.
    assert await db.fetchval("SELECT count(*) FROM gateway.api_keys WHERE key_hash = $1", a_key) == 0

    # Submitting for another employer, or as staff, is forbidden.
    assert (await client.post("/v1/declarations", json=body, headers=auth(b_key))).status_code == 403
    assert (await client.post("/v1/declarations", json=body, headers=auth(backoffice))).status_code == 403
    r = await client.post("/v1/declarations", json=body, headers=auth(a_key))
    assert r.status_code == 202
    did = r.json()["declaration_id"]

    # Reading: the owner, back office and auditors; not another employer, not a controller.
    assert (await client.get(f"/v1/declarations/{did}", headers=auth(a_key))).status_code == 200
    assert (await client.get(f"/v1/declarations/{did}", headers=auth(b_key))).status_code == 403
    assert (await client.get(f"/v1/declarations/{did}", headers=auth(backoffice))).status_code == 200
    assert (await client.get(f"/v1/declarations/{did}", headers=auth(auditor))).status_code == 200
    assert (await client.get(f"/v1/declarations/{did}", headers=auth(controller))).status_code == 403
    for key, status in ((a_key, 200), (b_key, 403), (backoffice, 200), (auditor, 200), (controller, 403)):
        r = await client.get(f"/v1/employers/{a_id}/account", headers=auth(key))
        assert r.status_code == status, (key[:9], r.text)

    # Lists: an employer sees its own; the back office filters by employer.
    mine = (await client.get("/v1/declarations", headers=auth(a_key))).json()
    assert [d["declaration_id"] for d in mine["items"]] == [did]
    assert (await client.get("/v1/declarations", headers=auth(b_key))).json()["items"] == []
    r = await client.get("/v1/declarations", params={"employer": a_id}, headers=auth(b_key))
    assert r.status_code == 403
    r = await client.get(
        "/v1/declarations", params={"employer": a_id, "period": "2026-10"}, headers=auth(backoffice)
    )
    assert [d["declaration_id"] for d in r.json()["items"]] == [did]
    r = await client.get(
        "/v1/declarations", params={"employer": a_id, "period": "2026-09"}, headers=auth(auditor)
    )
    assert r.json()["items"] == []


async def test_idempotency(db: Any, client: httpx.AsyncClient) -> None:
    employer_id, key = await register_employer(db)
    body = declaration(employer_id, [inps_line("W1", 100_000)])
    headers = {**auth(key), "Idempotency-Key": "oct-first"}
    first = await client.post("/v1/declarations", json=body, headers=headers)
    again = await client.post("/v1/declarations", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = declaration(employer_id, [inps_line("W1", 100_001)])
    r = await client.post("/v1/declarations", json=other, headers=headers)
    assert r.status_code == 409
    assert r.json()["declaration_id"] == first.json()["declaration_id"]
    # No key: the identical payload for the same employer and month is the same receipt.
    r = await client.post("/v1/declarations", json=body, headers=auth(key))
    assert r.status_code == 202
    assert r.json() == first.json()
    count = await db.fetchval("SELECT count(*) FROM gateway.declarations WHERE employer_id = $1", employer_id)
    outbox = await db.fetchval(
        "SELECT count(*) FROM gateway.outbox WHERE convert_from(key, 'UTF8') = $1", employer_id
    )
    assert (count, outbox) == (1, 1)


async def test_one_original_then_corrections_with_their_difference(
    services: Stack, db: Any, client: httpx.AsyncClient
) -> None:
    employer_id, key = await register_employer(db, risk_class=2)
    other_id, other_key = await register_employer(db)
    original = declaration(employer_id, [inps_line("W1", 250_000)], period="2026-10")
    r = await client.post("/v1/declarations", json=original, headers=auth(key))
    assert r.status_code == 202
    d1 = r.json()["declaration_id"]

    second = declaration(employer_id, [inps_line("W1", 300_000)], period="2026-10")
    r = await client.post("/v1/declarations", json=second, headers=auth(key))
    assert r.status_code == 409
    assert r.json()["declaration_id"] == d1 and '"replaces"' in r.json()["detail"]

    # `replaces` must name a declaration of the same employer and month.
    for replaces, why in (("D-nope", "replaces_not_found"), (d1, "replaces_other_period")):
        period = "2026-10" if why == "replaces_not_found" else "2026-09"
        bad = declaration(employer_id, [inps_line("W1", 1)], period=period, replaces=replaces)
        r = await client.post("/v1/declarations", json=bad, headers=auth(key))
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "replaces" and r.json()["errors"][0]["type"] == why
    theirs = declaration(other_id, [inps_line("W1", 1)], period="2026-10", replaces=d1)
    r = await client.post("/v1/declarations", json=theirs, headers=auth(other_key))
    assert r.status_code == 422

    await wait_status(client, d1, key)
    correction = declaration(
        employer_id, [inps_line("W1", 300_000), inps_line("W2", 100_000)], period="2026-10", replaces=d1
    )
    r = await client.post("/v1/declarations", json=correction, headers=auth(key))
    assert r.status_code == 202, r.text
    d2 = r.json()["declaration_id"]
    assert r.json()["replaces"] == d1
    # A second correction of the same original points to the newer one.
    r = await client.post(
        "/v1/declarations",
        json=declaration(employer_id, [inps_line("W1", 1)], period="2026-10", replaces=d1),
        headers=auth(key),
    )
    assert r.status_code == 409 and r.json()["declaration_id"] == d2

    doc = await wait_status(client, d2, key)
    old = (await client.get(f"/v1/declarations/{d1}", headers=auth(key))).json()
    assert old["superseded_by"] == d2
    diff = doc["difference"]
    new_totals, old_totals = doc["report"]["totals"], old["report"]["totals"]
    assert diff["total"] == new_totals["total"] - old_totals["total"] > 0
    assert diff["by_fund"] == {
        f: new_totals["by_fund"].get(f, 0) - old_totals["by_fund"].get(f, 0) for f in ("CANAM", "INPS")
    }
    assert diff["by_branch"]["PF"] == new_totals["by_branch"]["PF"] - old_totals["by_branch"]["PF"]
    assert sum(diff["by_fund"].values()) == diff["total"]

    # The account: the month as corrected, with the correction's effect.
    account = await _account_when(
        client, employer_id, key, lambda a: any(p["declaration_id"] == d2 for p in a["periods"])
    )
    (month,) = account["periods"]
    assert month["period"] == "2026-10"
    assert month["contributions"] == new_totals["total"]
    assert month["by_fund"] == new_totals["by_fund"]
    assert month["due_date"] == doc["report"]["due_date"]
    assert month["original_total"] == old_totals["total"]
    assert month["correction_effect"] == diff["total"]
    assert [c["declaration_id"] for c in month["corrections"]] == [d2]
    assert month["due"] == month["contributions"] + month["surcharge"]
    assert account["totals"]["due"] == month["due"]


async def test_a_late_declaration_shows_its_surcharge_in_the_account(
    db: Any, client: httpx.AsyncClient
) -> None:
    employer_id, key = await register_employer(db)
    r = await client.post(
        "/v1/declarations",
        json=declaration(employer_id, [inps_line("W1", 200_000)], period="2025-01"),
        headers=auth(key),
    )
    doc = await wait_status(client, r.json()["declaration_id"], key)
    assert doc["report"]["months_late"] > 0 and doc["report"]["surcharge"] > 0
    account = await _account_when(client, employer_id, key, lambda a: bool(a["periods"]))
    month = account["periods"][0]
    assert month["due_date"] == "2025-02-15"
    assert month["surcharge"] == doc["report"]["surcharge"]
    assert month["due"] == doc["report"]["totals"]["total"] + doc["report"]["surcharge"]


async def test_a_rejected_declaration_reports_every_error(db: Any, client: httpx.AsyncClient) -> None:
    employer_id, key = await register_employer(db)
    lines = [inps_line("W1", 100_000), inps_line("W2", -5), inps_line("W3", 100_000, days=40)]
    r = await client.post("/v1/declarations", json=declaration(employer_id, lines), headers=auth(key))
    assert r.status_code == 202  # business rules are checked in the stream, not at the door
    doc = await wait_status(client, r.json()["declaration_id"], key)
    assert doc["status"] == "rejected"
    errors = {(e["line"], e["worker_id"], e["code"]) for e in doc["report"]["errors"]}
    assert (2, "W2", "NEGATIVE_AMOUNT") in errors
    assert any(line == 3 and worker == "W3" for line, worker, _ in errors)


async def test_too_many_lines_is_413(db: Any, client: httpx.AsyncClient) -> None:
    employer_id, key = await register_employer(db)
    line = {"worker_id": "W", "category": "salarie", "days_worked": 30, "base_salary": 1}
    body = declaration(employer_id, [line] * 100_001)
    r = await client.post(
        "/v1/declarations",
        content=orjson.dumps(body),
        headers={**auth(key), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert "100,000 lines" in r.json()["detail"]
    csv = (HEADER + "W,salarie,30,1,0,0,0\n" * 100_001).encode()
    r = await upload(client, key, csv, "2026-10")
    assert r.status_code == 413
    assert "100,000 lines" in r.json()["detail"]


async def test_body_size_and_rate_limits(services: Stack, db: Any) -> None:
    port = free_port()
    proc = services.start(
        "gateway",
        name="gateway-limits",
        KALO_GATEWAY_PORT=str(port),
        KALO_GATEWAY_MAX_BODY_BYTES="20000",
        KALO_GATEWAY_RATE_PER_SECOND="0.5",
        KALO_GATEWAY_RATE_BURST="3",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        employer_id, key = await register_employer(db)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            big = declaration(employer_id, [inps_line(f"W{i}", 100_000) for i in range(300)])
            r = await c.post("/v1/declarations", json=big, headers=auth(key))
            assert r.status_code == 413
            assert r.json()["detail"] == "the body exceeds 20,000 bytes"

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
                data = orjson.dumps(big)
                for i in range(0, len(data), 4096):
                    yield data[i : i + 4096]

            r = await c.post(
                "/v1/declarations",
                content=chunks(),
                headers={**auth(key), "Content-Type": "application/json"},
            )
            assert r.status_code == 413

            async def multipart() -> AsyncIterator[bytes]:  # a streamed CSV upload, no length either
                yield b'--b\r\nContent-Disposition: form-data; name="period"\r\n\r\n2026-10\r\n'
                yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
                yield HEADER.encode()
                for _ in range(100):
                    yield b"W1,salarie,30,100000,0,0,0\n" * 10
                yield b"\r\n--b--\r\n"

            r = await c.post(
                "/v1/declarations/upload",
                content=multipart(),
                headers={**auth(key), "Content-Type": "multipart/form-data; boundary=b"},
            )
            assert r.status_code == 413, r.text
            statuses = []
            for _ in range(5):
                r = await c.get("/v1/declarations", headers=auth(key))
                statuses.append(r.status_code)
            # Burst 3: the two streamed submissions and a read pass, then the key is throttled.
            assert statuses[0] == 200 and statuses[-1] == 429, statuses
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["content-type"] == "application/problem+json"
            # Another key has its own budget.
            _, other = await register_employer(db)
            assert (await c.get("/v1/declarations", headers=auth(other))).status_code == 200
            scrape = await c.get("/metrics", follow_redirects=False)
            assert scrape.status_code == 200, scrape.headers  # at /metrics itself, no redirect
            metrics = scrape.text
            assert 'kalo_gateway_problems_total{status="413"} 3.0' in metrics
            assert 'kalo_gateway_problems_total{status="429"}' in metrics
            # The HTTP request metrics count the answers of the middlewares too, by route.
            assert (
                'kalo_gateway_http_requests_total{handler="/v1/declarations",method="GET",status="429"}'
                in metrics
            )
    finally:
        services.stop("gateway-limits")


async def test_openapi_is_served_and_matches_the_export(client: httpx.AsyncClient) -> None:
    from pathlib import Path

    assert (await client.get("/docs")).status_code == 200
    served = (await client.get("/openapi.json")).json()
    exported = orjson.loads((Path(__file__).parents[2] / "contracts" / "openapi.json").read_bytes())
    assert served == exported


async def _account_when(
    client: httpx.AsyncClient, employer_id: str, key: str, ready: Any, seconds: float = 60
) -> dict[str, Any]:
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    while True:
        r = await client.get(f"/v1/employers/{employer_id}/account", headers=auth(key))
        assert r.status_code == 200, r.text
        if ready(r.json()):
            return r.json()
        assert time.monotonic() < deadline, r.json()
        await asyncio.sleep(0.2)


async def test_kalo_employers_add_prints_a_working_key_once(services: Stack, db: Any) -> None:
    import subprocess
    import sys
    import uuid

    employer_id = f"{uuid.uuid4().int % 10**8}/1"  # INPS numbers carry a slash
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "employers",
            "add",
            employer_id,
            "--regime",
            "INPS",
            "--risk-class",
            "3",
            "--filing",
            "quarterly",
            "--json",
        ],
        env=services.env,
        capture_output=True,
        text=True,
        check=True,
    )
    printed = orjson.loads(out.stdout)
    assert printed["employer_id"] == employer_id and printed["api_key"].startswith("kalo_emp_")
    row = await db.fetchrow(
        "SELECT regime, risk_class, filing FROM gateway.employers WHERE id = $1", employer_id
    )
    assert dict(row) == {"regime": "INPS", "risk_class": 3, "filing": "quarterly"}
    key = printed["api_key"]
    assert await db.fetchval("SELECT count(*) FROM gateway.api_keys WHERE key_hash = $1", key) == 0
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as c:
        r = await c.get(f"/v1/employers/{employer_id}/account", headers=auth(key))
        assert r.status_code == 200, r.text
        assert r.json()["employer"]["filing"] == "quarterly" and r.json()["periods"] == []
        r = await c.get("/v1/nowhere", headers=auth(key))
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
