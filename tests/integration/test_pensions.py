"""Pensions on the real stack: declarations through the gateway and careers imported from before
Kalo → a claim → its liquidation on kalo.pensions.liquidations (equal to services/rules computed
directly, RULES.md §3.3 example 7), the claim's status through the ledger; bad claims and bad
CSV cells refused naming the field or the cell; business mistakes rejected with a reason code;
poison bytes on the claims topic parked while the next claim is liquidated."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from contracts.envelope import derived_id, wrap
from contracts.pensions import ControlDecision, PensionApproved
from services.common import kafka
from services.common.hashing import api_key_hash, sha256_hex
from services.gateway.registry import add_staff_key
from services.rules import liquidate_claim, load_ruleset
from services.rules.dates import add_months, parse_period, period_text
from tests.integration.conftest import Stack
from tests.integration.helpers import (
    auth,
    consume_until,
    declaration,
    inps_line,
    kalo,
    read_all,
    register_employer,
    wait_status,
)

RULESET = load_ruleset()


def months(first: str, count: int) -> list[str]:
    start = parse_period(first)
    assert start is not None
    return [period_text(add_months(start, k)) for k in range(count)]


def careers_csv(rows: list[tuple[str, str, str, int]], *, sep: str = ",", bom: bool = False) -> bytes:
    text = sep.join(("base", "worker_id", "employer_id", "period")) + "\n"  # any column order
    text += "".join(f"{b}{sep}{w}{sep}{e}{sep}{p}\n" for w, p, e, b in rows)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


async def backoffice(db: asyncpg.Connection, label: str = "INPS back office") -> str:
    return await add_staff_key(db, role="backoffice", label=label)


async def import_careers(client: httpx.AsyncClient, key: str, data: bytes, **headers: str) -> httpx.Response:
    return await client.post(
        "/v1/careers/import",
        headers={**auth(key), **headers},
        files={"file": ("careers.csv", data, "text/csv")},
    )


async def wait_imported(client: httpx.AsyncClient, key: str, import_id: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        doc = (await client.get(f"/v1/careers/imports/{import_id}", headers=auth(key))).json()
        if doc["applied_workers"] == doc["workers"]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"import {import_id}: {doc}")
        await asyncio.sleep(0.2)


async def wait_claim(
    client: httpx.AsyncClient, key: str, claim_id: str, *, until: tuple[str, ...] = (), seconds: float = 60
) -> dict[str, Any]:
    """Poll the claim until it is no longer `received` (or reaches one of `until`)."""
    deadline = time.monotonic() + seconds
    while True:
        r = await client.get(f"/v1/pension-claims/{claim_id}", headers=auth(key))
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        if (doc["status"] in until) if until else doc["status"] != "received":
            return doc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{claim_id} still {doc['status']} after {seconds}s")
        await asyncio.sleep(0.2)


def claim_body(worker_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "regime": "INPS",
        "category": "salarie",
        "grade": None,
        "birth_date": "1966-03-10",
        "effective_date": "2026-12-01",
        **extra,
    }


async def test_declarations_and_imported_history_liquidate_as_the_rules_say(
    services: Stack, db: asyncpg.Connection
) -> None:
    """RULES.md §3.3 example 7: age 60, 300 months at a reference of 200,000 → 100,000; AMO 750;
    net 99,250. Three months come from declarations through the gateway, 297 from an imported
    file (one of them split between two employers, one overlapped by a declaration)."""
    employer_id, employer_key = await register_employer(db, risk_class=2)
    key = await backoffice(db)
    worker = f"W-{uuid.uuid4().hex[:8]}"
    kalo_months = ["2026-07", "2026-08", "2026-09"]
    history = months("2001-10", 297)  # up to 2026-06
    rows = [(worker, p, "OLD/1", 200_000) for p in history[:-1]]
    rows += [(worker, history[-1], "OLD/1", 120_000), (worker, history[-1], "OLD/2", 80_000)]
    rows.append((worker, "2026-07", employer_id, 999))  # the declaration of that month wins
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        for period in kalo_months:
            r = await client.post(
                "/v1/declarations",
                headers=auth(employer_key),
                json=declaration(employer_id, [inps_line(worker, 200_000)], period=period),
            )
            assert r.status_code == 202, r.text
            assert (await wait_status(client, r.json()["declaration_id"], employer_key))[
                "status"
            ] == "accepted"
        r = await import_careers(client, key, careers_csv(rows, sep=";", bom=True))
        assert r.status_code == 202, r.text
        receipt = r.json()
        assert receipt["rows"] == len(rows) and receipt["workers"] == 1
        await wait_imported(client, key, receipt["import_id"])

        body = claim_body(worker)
        r = await client.post("/v1/pension-claims", headers={**auth(key), "Idempotency-Key": "k1"}, json=body)
        assert r.status_code == 202, r.text
        filed = r.json()
        claim_id = filed["claim_id"]
        assert claim_id.startswith("C-") and filed["status"] == "received"
        assert filed["payload_sha256"] == sha256_hex(orjson.dumps(body))
        again = await client.post(
            "/v1/pension-claims", headers={**auth(key), "Idempotency-Key": "k1"}, json=body
        )
        assert again.status_code == 202 and again.json()["claim_id"] == claim_id
        assert again.headers["Idempotent-Replayed"] == "true"
        doc = await wait_claim(client, key, claim_id)

    career = [{"period": p, "base": 200_000} for p in history[:-1]]
    career += [{"period": history[-1], "base": 120_000}, {"period": history[-1], "base": 80_000}]
    career += [{"period": p, "base": 200_000} for p in kalo_months]
    want = liquidate_claim({**body, "claim_id": claim_id, "career": career}, RULESET)
    assert doc["status"] == "liquidated"
    assert doc["liquidation"] == want
    assert (want["age"], want["insured_months"], want["reference_salary"]) == (60, 300, 200_000)
    assert (want["monthly_pension"], want["amo_deduction"], want["net_monthly_pension"]) == (
        100_000,
        750,
        99_250,
    )
    assert doc["filed_by"] == {"key_id": f"key:{api_key_hash(key)[:12]}", "label": "INPS back office"}
    assert [d["type"] for d in doc["decisions"]] == ["pension.liquidated"]
    assert doc["as_of"]["imported_rows"] == 298 and doc["as_of"]["assessed_rows"] == 3

    event = await consume_until(
        services.settings, "kalo.pensions.liquidations", lambda e: e["data"]["claim_id"] == claim_id
    )
    data = event["data"]
    assert data["liquidation"] == want and data["ruleset"] == RULESET.id
    assert len(data["career"]) == 300 and data["career"][-4] == [history[-1], 200_000]
    assert data["claim"]["filed_by"] == api_key_hash(key)  # the key's id, for maker ≠ checker
    offsets = data["as_of"]["ledger_offsets"]
    assert set(offsets) == {"kalo.declarations.assessed", "kalo.careers.imported"}
    assert sum(offsets["kalo.declarations.assessed"].values()) >= 3
    # The history imported, then the months Kalo assessed (2026-07's imported row left out).
    assert data["career_sources"] == [
        [history[0], history[-1], "imported"],
        ["2026-07", "2026-09", "assessed"],
    ]
    audit = await consume_until(
        services.settings,
        "kalo.audit",
        lambda e: e["data"]["subject"] == claim_id and e["data"]["action"] == "pension.liquidated",
    )
    assert audit["data"]["ruleset"] == RULESET.id and audit["data"]["actor"] == "liquidation"
    assert audit["id"] == str(derived_id(event["causation_id"], "audit.recorded"))
    # Its receipt is audited once (the same claim again is not a new receipt), by the key's id.
    received = [
        e
        for e in await read_all(services.settings, "kalo.audit", seconds=1)
        if e["data"]["subject"] == claim_id and e["data"]["action"] == "claim.received"
    ]
    assert [e["data"]["actor"] for e in received] == [api_key_hash(key)]
    assert received[0]["data"]["input_sha256"] == filed["payload_sha256"]


async def test_claims_the_door_refuses_name_the_field(services: Stack, db: asyncpg.Connection) -> None:
    key = await backoffice(db)
    _, employer_key = await register_employer(db)
    auditor = await add_staff_key(db, role="auditor", label="Cour des comptes")
    bad: list[tuple[dict[str, Any], str]] = [
        (claim_body("W1", birth_date="1966-3-10"), "birth_date"),
        (claim_body("W1", effective_date="2026-02-30"), "effective_date"),
        (claim_body("W1", effective_date="2026-12-01\n"), "effective_date"),
        (claim_body("W\x001"), "worker_id"),
        (claim_body(" W1"), "worker_id"),
        (claim_body("W" * 65), "worker_id"),
        (claim_body("W1", grade="A" * 17), "grade"),
        (claim_body("W1", regime="I\u200bNPS"), "regime"),
        (claim_body("W1", category=""), "category"),
        (claim_body("W1", career=[]), "career"),
        (claim_body("W1", claim_id="C-1"), "claim_id"),
        (claim_body("W1", birth_date=19660310), "birth_date"),
        ({k: v for k, v in claim_body("W1").items() if k != "regime"}, "regime"),
    ]
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        for body, field in bad:
            r = await client.post("/v1/pension-claims", headers=auth(key), json=body)
            assert r.status_code == 422, (body, r.text)
            assert field in {e["field"] for e in r.json()["errors"]}, (body, r.text)
        r = await client.post(
            "/v1/pension-claims",
            headers={**auth(key), "Content-Type": "text/plain"},
            content=orjson.dumps(claim_body("W1")),
        )
        assert r.status_code == 415
        assert (
            await client.post("/v1/pension-claims", headers=auth(employer_key), json=claim_body("W1"))
        ).status_code == 403
        assert (
            await client.post("/v1/pension-claims", headers=auth(auditor), json=claim_body("W1"))
        ).status_code == 403
        assert (await client.get("/v1/pension-claims/C-nope", headers=auth(auditor))).status_code == 404
        assert (await client.get("/v1/pension-claims", headers=auth(employer_key))).status_code == 403

        # Bad cells of a careers file: each named by row and column, nothing imported.
        data = (
            b"worker_id,period,employer_id,base\n"
            b"W1,2001-01,E1,150000\n"
            b"W1,2001-13,E1,150000\n"
            b"W1,2001-02,E1,\xef\xbc\x93\xef\xbc\x90\n"  # fullwidth digits
            b"W1,2001-03,E1,-5\n"
            b",2001-04,E1,1\n"
            b"W1,2001-01,E1,150000\n"
            b"W1,2001-05,E1\n"
        )
        r = await import_careers(client, key, data)
        assert r.status_code == 422, r.text
        cells = {(e["row"], e["column"]) for e in r.json()["errors"]}
        assert cells == {(3, "period"), (4, "base"), (5, "base"), (6, "worker_id"), (7, None), (8, None)}, (
            r.text
        )
        r = await import_careers(client, key, b"worker_id,month,employer_id,base\nW1,2001-01,E1,1\n")
        assert r.status_code == 422 and {(e["row"], e["column"]) for e in r.json()["errors"]} == {
            (1, "month"),
            (1, "period"),
        }
        r = await client.post(
            "/v1/careers/import", headers={**auth(key), "Content-Type": "text/csv"}, content=b"worker_id\n"
        )
        assert r.status_code == 415
        r = await import_careers(
            client, employer_key, b"worker_id,period,employer_id,base\nW1,2001-01,E1,1\n"
        )
        assert r.status_code == 403


async def test_business_mistakes_end_rejected_with_a_reason_and_one_claim_in_force(
    services: Stack, db: asyncpg.Connection
) -> None:
    key = await backoffice(db)
    worker = f"W-{uuid.uuid4().hex[:8]}"
    civil_servant, young_one = f"{worker}-c", f"{worker}-y"
    rows = [
        (w, p, "OLD/1", 150_000) for w in (worker, civil_servant, young_one) for p in months("1990-01", 240)
    ]
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        r = await import_careers(client, key, careers_csv(rows))
        await wait_imported(client, key, r.json()["import_id"])
        unknown = await client.post(
            "/v1/pension-claims", headers=auth(key), json=claim_body(f"NOBODY-{worker}")
        )
        no_grade = await client.post(
            "/v1/pension-claims",
            headers=auth(key),
            json=claim_body(civil_servant, regime="CMSS", category="fonctionnaire"),
        )
        young = await client.post(
            "/v1/pension-claims", headers=auth(key), json=claim_body(young_one, birth_date="1980-01-01")
        )
        for r, reason in ((unknown, "NO_CAREER"), (no_grade, "UNKNOWN_GRADE"), (young, "AGE_NOT_REACHED")):
            assert r.status_code == 202, r.text
            doc = await wait_claim(client, key, r.json()["claim_id"])
            assert doc["status"] == "rejected" and doc["liquidation"]["reason"] == reason, doc

        # A rejected claim is no claim in force: the worker files again (a new claim).
        first = await client.post("/v1/pension-claims", headers=auth(key), json=claim_body(worker))
        assert first.status_code == 202, first.text
        first_id = first.json()["claim_id"]
        # In force (received or liquidated): another claim only as a revision.
        second = await client.post(
            "/v1/pension-claims", headers=auth(key), json=claim_body(worker, effective_date="2027-01-01")
        )
        assert second.status_code == 409 and second.json()["claim_id"] == first_id, second.text
        same = await client.post("/v1/pension-claims", headers=auth(key), json=claim_body(worker))
        assert same.status_code == 202 and same.json()["claim_id"] == first_id  # the same body: its receipt
        wrong = await client.post(
            "/v1/pension-claims", headers=auth(key), json=claim_body(worker, replaces="C-nope")
        )
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "replaces"
        revision = await client.post(
            "/v1/pension-claims",
            headers=auth(key),
            json=claim_body(worker, effective_date="2027-01-01", replaces=first_id),
        )
        assert revision.status_code == 202, revision.text
        assert revision.json()["replaces"] == first_id
        again = await client.post(
            "/v1/pension-claims",
            headers=auth(key),
            json=claim_body(worker, effective_date="2027-02-01", replaces=first_id),
        )
        assert again.status_code == 409 and again.json()["claim_id"] == revision.json()["claim_id"]
        doc = await wait_claim(client, key, revision.json()["claim_id"])
        assert doc["liquidation"]["decision"] == "pension" and doc["status"] == "liquidated"
        old = (await client.get(f"/v1/pension-claims/{first_id}", headers=auth(key))).json()
        assert old["superseded_by"] == revision.json()["claim_id"]
        listed = (await client.get(f"/v1/pension-claims?worker={worker}", headers=auth(key))).json()
        assert [i["claim_id"] for i in listed["items"]][:1] == [revision.json()["claim_id"]]
        rejected = (
            await client.get("/v1/pension-claims?status=rejected&limit=1000", headers=auth(key))
        ).json()
        assert unknown.json()["claim_id"] in {i["claim_id"] for i in rejected["items"]}


async def test_the_ledger_projects_control_decisions_and_approvals(
    services: Stack, db: asyncpg.Connection
) -> None:
    key = await backoffice(db)
    controller = await add_staff_key(db, role="controller", label="controller one")
    worker = f"W-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        r = await import_careers(
            client, key, careers_csv([(worker, p, "OLD/1", 300_000) for p in months("1995-01", 360)])
        )
        await wait_imported(client, key, r.json()["import_id"])
        claim_id = (
            await client.post("/v1/pension-claims", headers=auth(key), json=claim_body(worker))
        ).json()["claim_id"]
        doc = await wait_claim(client, controller, claim_id)
        liquidation = doc["liquidation"]
        producer = kafka.producer(services.settings)
        await producer.start()
        try:
            pending = wrap(
                ControlDecision(
                    claim_id=claim_id,
                    worker_id=worker,
                    decision="pending",
                    flags=["HIGH_AMOUNT"],
                    controllers=[],
                ),
                producer="control",
                correlation_id=claim_id,
            )
            for _ in range(2):  # delivered twice: projected once
                await producer.send_and_wait(
                    kafka.topic("kalo.control.decisions", services.settings),
                    pending.model_dump_json().encode(),
                    key=worker.encode(),
                )
            doc = await wait_claim(client, key, claim_id, until=("pending_control",))
            assert doc["flags"] == ["HIGH_AMOUNT"]
            approved = wrap(
                ControlDecision(
                    claim_id=claim_id,
                    worker_id=worker,
                    decision="approved",
                    flags=["HIGH_AMOUNT"],
                    controllers=["k-one", "k-two"],
                ),
                producer="control",
                correlation_id=claim_id,
            )
            payment = wrap(
                PensionApproved(
                    claim_id=claim_id,
                    worker_id=worker,
                    regime="INPS",
                    decision=liquidation["decision"],
                    monthly_pension=liquidation["monthly_pension"],
                    amo_deduction=liquidation["amo_deduction"],
                    net_monthly_pension=liquidation["net_monthly_pension"],
                    lump_sum=liquidation["lump_sum"],
                    effective_date=datetime(2026, 12, 1, tzinfo=UTC).date(),
                    ruleset=liquidation["ruleset"],
                ),
                producer="control",
                correlation_id=claim_id,
            )
            await producer.send_and_wait(
                kafka.topic("kalo.pensions.approved", services.settings),
                payment.model_dump_json().encode(),
                key=worker.encode(),
            )
            await producer.send_and_wait(
                kafka.topic("kalo.control.decisions", services.settings),
                approved.model_dump_json().encode(),
                key=worker.encode(),
            )
        finally:
            await producer.stop()
        deadline = time.monotonic() + 30
        while len((doc := await wait_claim(client, key, claim_id, until=("approved",)))["decisions"]) < 4:
            assert time.monotonic() < deadline, doc
            await asyncio.sleep(0.2)
        decisions = doc["decisions"]
        assert sorted(d["type"] for d in decisions) == [
            "control.decided",
            "control.decided",
            "pension.approved",
            "pension.liquidated",
        ]
        assert [d["at"] for d in decisions] == sorted(d["at"] for d in decisions)  # oldest first
        assert ["k-one", "k-two"] in [d["by"] for d in decisions]
        assert all(d["at"] for d in decisions)
        # Approved (or pending): a new claim only as a revision.
        r = await client.post(
            "/v1/pension-claims", headers=auth(key), json=claim_body(worker, effective_date="2027-01-01")
        )
        assert r.status_code == 409 and r.json()["claim_id"] == claim_id


async def test_careers_import_is_idempotent_and_a_later_file_replaces_the_month(
    services: Stack, db: asyncpg.Connection
) -> None:
    key = await backoffice(db)
    worker = f"W-{uuid.uuid4().hex[:8]}"
    rows = [(worker, p, "OLD/1", 100_000) for p in months("2000-01", 24)]

    async def snapshot() -> list[tuple[Any, ...]]:
        got = await db.fetch(
            "SELECT period, employer_id, base, import_id FROM ledger.career_imports"
            " WHERE worker_id = $1 ORDER BY 1, 2",
            worker,
        )
        return [tuple(r) for r in got]

    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        first = (await import_careers(client, key, careers_csv(rows))).json()
        await wait_imported(client, key, first["import_id"])
        before = await snapshot()
        assert len(before) == 24 and {r[3] for r in before} == {first["import_id"]}
        second = (await import_careers(client, key, careers_csv(rows))).json()
        assert second["import_id"] != first["import_id"]
        await wait_imported(client, key, second["import_id"])
        assert await snapshot() == before  # the same file again changes nothing
        later = (
            await import_careers(client, key, careers_csv([(worker, "2000-05", "OLD/1", 130_000)]))
        ).json()
        await wait_imported(client, key, later["import_id"])
        after = await snapshot()
        changed = [r for r in after if r not in before]
        assert changed == [("2000-05", "OLD/1", 130_000, later["import_id"])]
        assert len(after) == 24


async def test_poison_bytes_on_the_claims_topic_go_to_the_dlq_and_the_next_claim_is_liquidated(
    services: Stack, db: asyncpg.Connection
) -> None:
    key = await backoffice(db)
    worker = f"W-{uuid.uuid4().hex[:8]}"
    producer = kafka.producer(services.settings)
    await producer.start()
    try:
        poison = b"\x00\xff not a claim " + worker.encode()
        await producer.send_and_wait(
            kafka.topic("kalo.pensions.claims", services.settings), poison, key=worker.encode()
        )
    finally:
        await producer.stop()
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        r = await client.post("/v1/pension-claims", headers=auth(key), json=claim_body(worker))
        assert r.status_code == 202
        doc = await wait_claim(client, key, r.json()["claim_id"])
    assert doc["liquidation"]["reason"] == "NO_CAREER"  # a business mistake: liquidated, rejected
    letter = await consume_until(
        services.settings,
        "kalo.dlq",
        lambda e: e["data"]["service"] == "liquidation" and worker.encode() in _b64(e["data"]["value_b64"]),
    )
    assert letter["data"]["topic"].endswith("kalo.pensions.claims")


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


async def test_kalo_careers_import_names_bad_cells_and_loads_the_file(
    services: Stack, db: asyncpg.Connection, tmp_path: Path
) -> None:
    worker = f"W-{uuid.uuid4().hex[:8]}"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"worker_id;period;employer_id;base\nW1;2001-01;E1;12a\nW1;1999-00;E1;1\n")
    done = kalo(services.env, "careers", "import", str(bad), "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert {(e["row"], e["column"]) for e in json.loads(done.stdout)["errors"]} == {
        (2, "base"),
        (3, "period"),
    }
    good = tmp_path / "good.csv"
    good.write_bytes(careers_csv([(worker, p, "OLD/9", 90_000) for p in months("1999-01", 12)]))
    done = kalo(services.env, "careers", "import", str(good), "--wait", "60", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    receipt = json.loads(done.stdout)
    assert (receipt["rows"], receipt["workers"], receipt["applied_workers"]) == (12, 1, 1)
    count = await db.fetchval("SELECT count(*) FROM ledger.career_imports WHERE worker_id = $1", worker)
    assert count == 12


async def test_careers_files_sent_at_once_are_read_one_at_a_time_and_all_receipted(
    services: Stack, db: asyncpg.Connection
) -> None:
    """The gateway reads one careers file at a time (its memory: one file's rows) in a thread:
    files sent together are all receipted with their own rows, a bad one among them is
    refused naming its cell, and the declarations' side keeps answering meanwhile."""
    key = await backoffice(db)
    tag = uuid.uuid4().hex[:6]
    files = [
        careers_csv(
            [(f"W-{tag}-{f}-{w}", p, "E/1", 100_000) for w in range(40) for p in months("1990-01", 120)]
        )
        for f in range(3)
    ]
    bad = careers_csv([(f"W-{tag}-bad", "1990-13", "E/1", 1)])
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=60) as client:
        answers = await asyncio.gather(
            *(import_careers(client, key, data) for data in [*files, bad]),
            client.get("/health"),
        )
        *receipts, refused, health = answers
        assert health.status_code == 200
        assert [r.status_code for r in receipts] == [202, 202, 202]
        assert [r.json()["rows"] for r in receipts] == [4_800, 4_800, 4_800]
        assert refused.status_code == 422 and "1990-13" in refused.text
        for r in receipts:
            await wait_imported(client, key, r.json()["import_id"])
    imported = await db.fetchval(
        "SELECT count(*) FROM ledger.career_imports WHERE worker_id LIKE $1", f"W-{tag}-%"
    )
    assert imported == 3 * 4_800
