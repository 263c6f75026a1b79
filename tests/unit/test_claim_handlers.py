"""The gateway's claim and careers-import handlers on an in-memory fake of their store, and the
careers CSV reader: receipts and their outbox messages, one claim in force per worker,
revisions, Idempotency-Key, roles, the status document — without PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from contracts.audit import AuditRecorded
from contracts.envelope import Envelope
from contracts.pensions import CareerImported, PensionClaimFiled
from services.gateway import handlers
from services.gateway.career_csv import parse_careers
from services.gateway.errors import Problem
from services.gateway.registry import Principal
from services.gateway.schemas import ClaimIn

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
BACKOFFICE = Principal("backoffice", None, "INPS back office", "0123456789abcdef")
OTHER_BACKOFFICE = Principal("backoffice", None, "CMSS back office", "fedcba9876543210")
AUDITOR = Principal("auditor", None, "Cour des comptes", "1111111111111111")
CONTROLLER = Principal("controller", None, "controller", "2222222222222222")
EMPLOYER = Principal("employer", "E1", None, "3333333333333333")


class FakePensions:
    """The rules of `gateway_claim` on dicts, and the ledger's liquidations and decisions."""

    def __init__(self) -> None:
        self.claims_: dict[str, dict[str, Any]] = {}
        self.outbox: list[tuple[str, bytes]] = []
        self.liquidations: dict[str, dict[str, Any]] = {}
        self.decisions: dict[str, list[dict[str, Any]]] = {}
        self.imports: dict[str, dict[str, Any]] = {}
        self.audits: list[Any] = []  # the receipts' audit events (handlers.Outgoing)

    def status(self, claim_id: str) -> str:
        liquidation = self.liquidations.get(claim_id)
        decisions = self.decisions.get(claim_id, [])
        if any(d["type"] == "pension.approved" for d in decisions):
            return "approved"
        if liquidation and liquidation["decision"] == "rejected":
            return "rejected"
        control = [d for d in decisions if d["type"] == "control.decided"]
        if control:
            return {"approved": "approved", "rejected": "rejected", "pending": "pending_control"}[
                control[-1]["decision"]
            ]
        return "liquidated" if liquidation else "received"

    def state(self, claim_id: str) -> dict[str, Any]:
        row = self.claims_[claim_id]
        liquidation = self.liquidations.get(claim_id)
        control = [d for d in self.decisions.get(claim_id, []) if d["type"] == "control.decided"]
        return {
            **row,
            "status": self.status(claim_id),
            "liquidation": liquidation,
            "liquidated_at": liquidation and NOW + timedelta(seconds=1),
            "ruleset": liquidation and liquidation["ruleset"],
            "as_of": liquidation and {"read_at": "x"},
            "flags": control[-1]["flags"] if control else [],
        }

    async def file_claim(self, **a: Any) -> dict[str, Any]:
        c: ClaimIn = a["claim"]

        def answer(
            outcome: str, row: dict[str, Any] | None = None, other: str | None = None
        ) -> dict[str, Any]:
            out: dict[str, Any] = {"outcome": outcome, "other": other}
            if row is not None:
                out.update(
                    r_claim_id=row["claim_id"],
                    r_worker_id=row["worker_id"],
                    r_status=self.status(row["claim_id"]),
                    r_received_at=row["received_at"],
                    r_sha=row["payload_sha256"],
                    r_replaces=row["replaces"],
                )
            return out

        if a["idempotency_key"] is not None:
            for r in self.claims_.values():
                if (r["filed_by"], r["idempotency_key"]) == (a["filed_by"], a["idempotency_key"]):
                    same = r["payload_sha256"] == a["payload_sha256"]
                    return answer("existing" if same else "idempotency_conflict", r, r["claim_id"])
        if c.replaces is None:
            in_force = [
                r
                for r in self.claims_.values()
                if r["worker_id"] == c.worker_id
                and r["superseded_by"] is None
                and self.status(r["claim_id"]) != "rejected"
            ]
            if in_force:
                r = in_force[-1]
                if r["payload_sha256"] == a["payload_sha256"]:
                    return answer("existing", r)
                return answer("claim_in_force", other=r["claim_id"])
        else:
            replaced = self.claims_.get(c.replaces)
            if replaced is None or replaced["worker_id"] != c.worker_id:
                return answer("replaces_not_found")
            if replaced["superseded_by"]:
                return answer("replaces_superseded", other=replaced["superseded_by"])
            replaced["superseded_by"] = a["claim_id"]
        row = {
            "claim_id": a["claim_id"],
            "worker_id": c.worker_id,
            "regime": c.regime,
            "category": c.category,
            "grade": c.grade,
            "birth_date": date.fromisoformat(c.birth_date),
            "effective_date": date.fromisoformat(c.effective_date),
            "replaces": c.replaces,
            "superseded_by": None,
            "payload_sha256": a["payload_sha256"],
            "idempotency_key": a["idempotency_key"],
            "filed_by": a["filed_by"],
            "filed_by_label": a["filed_by_label"],
            "received_at": a["received_at"],
        }
        self.claims_[row["claim_id"]] = row
        self.outbox.append((a["topic"], a["message"]))
        if a.get("audit") is not None:  # only with the receipt it records, as gateway_claim does
            self.audits.append(a["audit"])
        return answer("created", row)

    async def claim(self, claim_id: str) -> dict[str, Any] | None:
        return self.state(claim_id) if claim_id in self.claims_ else None

    async def claim_decisions(self, claim_id: str) -> list[dict[str, Any]]:
        return self.decisions.get(claim_id, [])

    async def claims(self, *, status: Any, worker_id: Any, limit: int) -> list[dict[str, Any]]:
        rows = [self.state(c) for c in self.claims_]
        rows = [r for r in rows if status in (None, r["status"]) and worker_id in (None, r["worker_id"])]
        return sorted(rows, key=lambda r: r["received_at"], reverse=True)[:limit]

    async def import_careers(self, **a: Any) -> dict[str, Any]:
        row = {
            "import_id": a["import_id"],
            "payload_sha256": a["payload_sha256"],
            "row_count": a["row_count"],
            "worker_count": len(a["messages"]),
            "received_at": a["received_at"],
            "idempotency_key": a["idempotency_key"],
            "imported_by": a["imported_by"],
        }
        for r in self.imports.values():
            if a["idempotency_key"] and (r["imported_by"], r["idempotency_key"]) == (
                a["imported_by"],
                a["idempotency_key"],
            ):
                outcome = "existing" if r["payload_sha256"] == a["payload_sha256"] else "idempotency_conflict"
                return {"outcome": outcome, "other": r["import_id"], **{f"r_{k}": v for k, v in r.items()}}
        self.imports[a["import_id"]] = row
        for event_id, key, value in a["messages"]:
            self.outbox.append((a["topic"], value))
            assert isinstance(event_id, uuid.UUID) and isinstance(key, str)
        if a.get("audit") is not None:
            self.audits.append(a["audit"])
        return {
            "outcome": "created",
            "other": None,
            **{f"r_{k}": v for k, v in row.items()},
            "r_sha": row["payload_sha256"],
        }

    async def career_import(self, import_id: str) -> dict[str, Any] | None:
        row = self.imports.get(import_id)
        return row and {**row, "applied_workers": 1}

    def liquidate(self, claim_id: str, decision: str = "pension", reason: str | None = None) -> None:
        self.liquidations[claim_id] = {"decision": decision, "reason": reason, "ruleset": "rs-1"}


def body(worker_id: str = "W1", **extra: Any) -> ClaimIn:
    doc = {
        "worker_id": worker_id,
        "regime": "INPS",
        "category": "salarie",
        "birth_date": "1966-03-10",
        "effective_date": "2026-12-01",
        **extra,
    }
    return ClaimIn.model_validate_json(orjson.dumps(doc))


async def file(
    store: FakePensions,
    claim: ClaimIn,
    *,
    who: Principal = BACKOFFICE,
    key: str | None = None,
    sha: str = "s1",
) -> tuple[dict[str, Any], bool]:
    return await handlers.file_claim(
        store,
        who,
        claim,
        payload_sha256=sha,
        idempotency_key=key,
        now=NOW,
        topic="p.kalo.pensions.claims",
        audit_topic="p.kalo.audit",
    )


def audited(outgoing: handlers.Outgoing) -> AuditRecorded:
    event = Envelope[AuditRecorded].model_validate_json(outgoing.value)
    assert event.id == outgoing.event_id and outgoing.topic == "p.kalo.audit"
    assert outgoing.key == event.data.subject and event.producer == "gateway"
    return event.data


async def test_a_claim_is_receipted_with_its_outbox_message_naming_the_key_never_holding_it() -> None:
    store = FakePensions()
    receipt, created = await file(store, body(grade=None))
    assert created and receipt["status"] == "received" and receipt["claim_id"].startswith("C-20261130-")
    assert receipt["links"] == {"self": f"/v1/pension-claims/{receipt['claim_id']}"}
    topic, message = store.outbox[0]
    assert topic == "p.kalo.pensions.claims"
    event = Envelope[PensionClaimFiled].model_validate_json(message)
    assert event.data.claim_id == receipt["claim_id"] and event.correlation_id == receipt["claim_id"]
    assert (event.data.filed_by, event.data.filed_by_label) == ("0123456789abcdef", "INPS back office")
    assert event.data.birth_date == date(1966, 3, 10) and event.data.payload_sha256 == "s1"


async def test_a_new_claim_receipt_is_audited_once_naming_the_key_id_never_the_key() -> None:
    store = FakePensions()
    receipt, _ = await file(store, body(), key="k", sha="ab" * 32)
    await file(store, body(), key="k", sha="ab" * 32)  # the same claim again: no second receipt
    assert len(store.audits) == 1
    record = audited(store.audits[0])
    assert (record.action, record.subject, record.actor) == (
        "claim.received",
        receipt["claim_id"],
        "0123456789abcdef",
    )
    assert record.input_sha256 == "ab" * 32  # the body received
    assert record.output_sha256 == hashlib.sha256(store.outbox[0][1]).hexdigest()  # the claim sent
    assert record.details == {
        "worker_id": "W1",
        "regime": "INPS",
        "effective_date": "2026-12-01",
        "replaces": None,
    }
    again, _ = await handlers.file_claim(
        FakePensions(), BACKOFFICE, body(), payload_sha256="ab" * 32, idempotency_key=None, now=NOW, topic="t"
    )
    assert again["status"] == "received"  # without an audit topic: the receipt alone


async def test_idempotency_key_same_body_same_receipt_other_body_409() -> None:
    store = FakePensions()
    first, _ = await file(store, body(), key="k")
    again, created = await file(store, body(), key="k")
    assert again["claim_id"] == first["claim_id"] and not created
    with pytest.raises(Problem) as refused:
        await file(store, body(effective_date="2027-01-01"), key="k", sha="s2")
    assert refused.value.status == 409 and refused.value.extra["claim_id"] == first["claim_id"]
    # Another back office's key is another key.
    other, created = await file(store, body("W2"), who=OTHER_BACKOFFICE, key="k", sha="s3")
    assert created and other["claim_id"] != first["claim_id"]


async def test_one_claim_in_force_per_worker_then_revisions_of_the_latest() -> None:
    store = FakePensions()
    first, _ = await file(store, body())
    same, created = await file(store, body())  # the same body again: its receipt
    assert same["claim_id"] == first["claim_id"] and not created
    for status in ("received", "liquidated", "pending_control", "approved"):
        if status == "liquidated":
            store.liquidate(first["claim_id"])
        if status == "pending_control":
            store.decisions[first["claim_id"]] = [
                {"type": "control.decided", "decision": "pending", "flags": []}
            ]
        if status == "approved":
            store.decisions[first["claim_id"]].append({"type": "pension.approved", "decision": "pension"})
        with pytest.raises(Problem) as refused:
            await file(store, body(effective_date="2027-01-01"), sha="s2")
        assert refused.value.status == 409 and refused.value.extra["claim_id"] == first["claim_id"], status
    with pytest.raises(Problem) as unknown:
        await file(store, body(replaces="C-nope"), sha="s2")
    assert unknown.value.status == 422 and unknown.value.extra["errors"][0]["field"] == "replaces"
    with pytest.raises(Problem) as other_worker:
        await file(store, body("W9", replaces=first["claim_id"]), sha="s2")
    assert other_worker.value.status == 422
    revision, created = await file(
        store, body(replaces=first["claim_id"], effective_date="2027-01-01"), sha="s2"
    )
    assert created and revision["replaces"] == first["claim_id"]
    assert store.claims_[first["claim_id"]]["superseded_by"] == revision["claim_id"]
    with pytest.raises(Problem) as superseded:
        await file(store, body(replaces=first["claim_id"], effective_date="2027-02-01"), sha="s3")
    assert superseded.value.status == 409 and superseded.value.extra["claim_id"] == revision["claim_id"]


async def test_a_rejected_claim_is_not_in_force() -> None:
    store = FakePensions()
    first, _ = await file(store, body())
    store.liquidate(first["claim_id"], "rejected", "NO_CAREER")
    second, created = await file(store, body(), sha="s1")  # the same body, after careers were imported
    assert created and second["claim_id"] != first["claim_id"]


async def test_who_files_and_who_reads() -> None:
    store = FakePensions()
    for who in (EMPLOYER, AUDITOR, CONTROLLER):
        with pytest.raises(Problem) as refused:
            await file(store, body(), who=who)
        assert refused.value.status == 403
    receipt, _ = await file(store, body())
    for who in (BACKOFFICE, AUDITOR, CONTROLLER):
        assert (await handlers.get_claim(store, who, receipt["claim_id"]))["claim_id"] == receipt["claim_id"]
        assert (await handlers.list_claims(store, who, status=None, worker_id=None, limit=10))["count"] == 1
    with pytest.raises(Problem) as refused:
        await handlers.get_claim(store, EMPLOYER, receipt["claim_id"])
    assert refused.value.status == 403
    with pytest.raises(Problem) as missing:
        await handlers.get_claim(store, AUDITOR, "C-nope")
    assert missing.value.status == 404


async def test_the_status_document_lists_every_decision_with_who_and_when() -> None:
    store = FakePensions()
    receipt, _ = await file(store, body())
    claim_id = receipt["claim_id"]
    doc = await handlers.get_claim(store, AUDITOR, claim_id)
    assert (doc["status"], doc["liquidation"], doc["decisions"]) == ("received", None, [])
    assert doc["filed_by"] == {"key_id": "key:0123456789ab", "label": "INPS back office"}
    store.liquidate(claim_id)
    at = NOW + timedelta(minutes=5)
    store.decisions[claim_id] = [
        {
            "type": "control.decided",
            "decision": "approved",
            "reason": None,
            "flags": ["SALARY_SPIKE"],
            "controllers": ["k1", "k2"],
            "producer": "control",
            "decided_at": at,
        }
    ]
    doc = await handlers.get_claim(store, AUDITOR, claim_id)
    assert doc["status"] == "approved" and doc["flags"] == ["SALARY_SPIKE"]
    assert [(d["type"], d["decision"], d["by"]) for d in doc["decisions"]] == [
        ("pension.liquidated", "pension", ["liquidation"]),
        ("control.decided", "approved", ["k1", "k2"]),
    ]
    assert doc["decisions"][1]["at"] == "2026-11-30T09:05:00Z"
    listed = await handlers.list_claims(store, AUDITOR, status="approved", worker_id="W1", limit=10)
    assert [i["claim_id"] for i in listed["items"]] == [claim_id]


async def test_a_careers_import_is_one_message_per_worker_with_stable_ids() -> None:
    store = FakePensions()
    rows = [("W1", "2001-01", "E1", 100), ("W2", "2001-01", "E1", 200), ("W1", "2001-02", "E2", 300)]
    receipt, created = await handlers.import_careers(
        store,
        BACKOFFICE,
        rows,
        payload_sha256="f1",
        idempotency_key=None,
        now=NOW,
        topic="t",
        audit_topic="p.kalo.audit",
    )
    assert created and (receipt["rows"], receipt["workers"]) == (3, 2)
    [audit] = store.audits
    record = audited(audit)
    assert (record.action, record.subject, record.actor) == (
        "careers.import_received",
        receipt["import_id"],
        "0123456789abcdef",
    )
    assert record.input_sha256 == "f1" and record.details == {"rows": 3, "workers": 2}
    # The output: the messages queued, one a line, in order.
    lines = b"\n".join(v for _, v in store.outbox)
    assert record.output_sha256 == hashlib.sha256(lines).hexdigest()
    events = [Envelope[CareerImported].model_validate_json(v) for _, v in store.outbox]
    assert [(e.data.worker_id, e.data.entries) for e in events] == [
        ("W1", [("2001-01", "E1", 100), ("2001-02", "E2", 300)]),
        ("W2", [("2001-01", "E1", 200)]),
    ]
    assert all(
        e.data.import_id == receipt["import_id"] and e.data.imported_by == "0123456789abcdef" for e in events
    )
    again = handlers.import_messages(receipt["import_id"], rows, BACKOFFICE, NOW)
    assert [m[0] for m in again] == [e.id for e in events]
    with pytest.raises(Problem) as refused:
        await handlers.import_careers(
            store, AUDITOR, rows, payload_sha256="f1", idempotency_key=None, now=NOW, topic="t"
        )
    assert refused.value.status == 403


def problem_cells(data: bytes) -> set[tuple[int, str | None]]:
    with pytest.raises(Problem) as refused:
        parse_careers(data)
    assert refused.value.status == 422
    return {(e["row"], e["column"]) for e in refused.value.extra["errors"]}


def test_the_careers_csv_follows_the_upload_conventions() -> None:
    want = [("W1", "2001-01", "E/1", 150_000), ("W2", "2001-02", "E/1", 0)]
    comma = b"worker_id,period,employer_id,base\nW1,2001-01,E/1,150000\nW2,2001-02,E/1,0\n\n"
    semicolon = "\ufeffBASE;Employer_ID;period;worker_id\r\n150000;E/1;2001-01;W1\r\n0;E/1;2001-02;W2\r\n"
    assert parse_careers(comma)[0] == want
    assert parse_careers(semicolon.encode())[0] == want  # BOM, semicolons, any order and case, CRLF
    assert parse_careers(comma)[1] == [2, 3]


def test_every_bad_cell_is_named_by_row_and_column() -> None:
    data = (
        "worker_id,period,employer_id,base\n"
        "W1,2001-1,E1,1\n"  # period
        "W1,2001-02,E1,３０\n"  # non-ASCII digits
        "W1,2001-03,E1,1e3\n"
        "W1,2001-04,E1,1000000000000000\n"  # 16 digits
        "W\x00,2001-05,,1\n"  # NUL in worker_id, empty employer_id
        "W1,2001-06,E1,-1\n"
        "W1,2001-01,E1,2\n"  # same worker, month and employer as row 2? no: row 2 was refused
        "W1,2001-01,E1,3\n"  # a duplicate of the row above
        "W1,2001-07\n"
    ).encode()
    assert problem_cells(data) == {
        (2, "period"),
        (3, "base"),
        (4, "base"),
        (5, "base"),
        (6, "worker_id"),
        (6, "employer_id"),
        (7, "base"),
        (9, None),
        (10, None),
    }
    assert problem_cells(b"worker_id,period,base\nW1,2001-01,1\n") == {(1, "employer_id")}
    assert problem_cells(b"worker_id,period,employer_id,base\n") == {(2, None)}
    with pytest.raises(Problem) as not_utf8:
        parse_careers(b"worker_id,period,employer_id,base\nW\xff,2001-01,E1,1\n")
    assert not_utf8.value.status == 400
