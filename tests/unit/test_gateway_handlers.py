"""The gateway's handlers on an in-memory fake of their store: receipts, idempotency, one
original per month, corrections, roles, reads and the account — without PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.audit import AuditRecorded
from contracts.envelope import Envelope
from services.gateway import handlers
from services.gateway.errors import Problem
from services.gateway.registry import Principal
from services.gateway.schemas import DeclarationIn

NOW = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
EMPLOYER = Principal("employer", "E1")
OTHER = Principal("employer", "E2")
BACKOFFICE = Principal("backoffice", None, "bo")


class FakeStore:
    """The rules of `gateway_submit` on dicts: idempotency, same payload, one original per
    month, corrections of the latest declaration of the same month."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.outbox: list[tuple[str, bytes]] = []
        self.periods: list[dict[str, Any]] = []
        self.dues: list[dict[str, Any]] = []

    async def submit(self, **a: Any) -> dict[str, Any]:
        def answer(
            outcome: str, row: dict[str, Any] | None = None, other: str | None = None
        ) -> dict[str, Any]:
            out: dict[str, Any] = {"outcome": outcome, "other": other}
            if row is not None:
                out.update({f"r_{k}": row[k] for k in ("declaration_id", "period", "status", "received_at")})
                out.update(r_sha=row["payload_sha256"], r_replaces=row["replaces"])
            return out

        mine = [r for r in self.rows.values() if r["employer_id"] == a["employer_id"]]
        if a["idempotency_key"] is not None:
            for r in mine:
                if r["idempotency_key"] == a["idempotency_key"]:
                    same = r["payload_sha256"] == a["payload_sha256"]
                    return answer("existing" if same else "idempotency_conflict", r, r["declaration_id"])
        for r in mine:
            if r["period"] == a["period"] and r["payload_sha256"] == a["payload_sha256"]:
                return answer("existing", r)
        if a["replaces"] is None:
            for r in mine:
                if r["period"] == a["period"] and r["replaces"] is None:
                    return answer("duplicate_original", other=r["declaration_id"])
        else:
            replaced = self.rows.get(a["replaces"])
            if replaced is None or replaced["employer_id"] != a["employer_id"]:
                return answer("replaces_not_found")
            if replaced["period"] != a["period"]:
                return answer("replaces_other_period", other=replaced["period"])
            if replaced["superseded_by"]:
                return answer("replaces_superseded", other=replaced["superseded_by"])
            replaced["superseded_by"] = a["declaration_id"]
        row = {
            "declaration_id": a["declaration_id"],
            "employer_id": a["employer_id"],
            "period": a["period"],
            "replaces": a["replaces"],
            "payload_sha256": a["payload_sha256"],
            "idempotency_key": a["idempotency_key"],
            "status": "received",
            "received_at": a["received_at"],
            "line_count": a["line_count"],
            "superseded_by": None,
            "totals": None,
            "report": None,
            "assessed_at": None,
        }
        self.rows[row["declaration_id"]] = row
        self.outbox.append((a["topic"], a["message"]))
        return answer("created", row)

    async def declaration(self, declaration_id: str) -> dict[str, Any] | None:
        row = self.rows.get(declaration_id)
        if row is None:
            return None
        replaced = self.rows.get(row["replaces"] or "")
        return {
            **row,
            "replaced_status": replaced and replaced["status"],
            "replaced_totals": replaced and replaced["totals"],
            "replaced_report": replaced and replaced["report"],
        }

    async def report(self, declaration_id: str) -> dict[str, Any] | None:
        return self.rows.get(declaration_id)

    async def declarations(self, *, employer_id: Any, period: Any, status: Any, limit: int) -> list[Any]:
        rows = [
            {**r, "total": (r["totals"] or {}).get("total")}
            for r in self.rows.values()
            if employer_id in (None, r["employer_id"])
            and period in (None, r["period"])
            and status in (None, r["status"])
        ]
        return sorted(rows, key=lambda r: r["received_at"], reverse=True)[:limit]

    async def employer(self, employer_id: str) -> dict[str, Any] | None:
        if employer_id not in ("E1", "E2"):
            return None
        return {
            "id": employer_id,
            "name": None,
            "regime": "INPS",
            "risk_class": 2,
            "filing": "monthly",
            "active": True,
        }

    async def account_rows(self, employer_id: str) -> tuple[list[Any], list[Any], list[Any]]:
        history = [{**r, "total": (r["totals"] or {}).get("total")} for r in self.rows.values()]
        return self.periods, self.dues, [h for h in history if h["employer_id"] == employer_id]

    def assess(self, declaration_id: str, total: int) -> None:
        """What the ledger would project: an accepted declaration with its totals."""
        row = self.rows[declaration_id]
        row.update(status="accepted", totals={"total": total}, assessed_at=NOW)
        row["report"] = {
            "ruleset": "rs",
            "due_date": "2026-11-15",
            "months_late": 0,
            "surcharge": 0,
            "totals": {"total": total},
            "rates": {"salarie": ["0.08", None, None, None, None, None, None, None]},
            "lines": [
                [
                    "=W1",
                    "salarie",
                    total,
                    total,
                    False,
                    total,
                    total,
                    [total, None, None, None, None, None, None, None],
                ]
            ],
        }


def declaration(period: str = "2026-10", salary: int = 100_000, replaces: str | None = None) -> DeclarationIn:
    return DeclarationIn.model_validate(
        {
            "employer": {"id": "E1", "regime": "INPS", "risk_class": 2},
            "period": period,
            "replaces": replaces,
            "lines": [{"worker_id": "W1", "category": "salarie", "days_worked": 30, "base_salary": salary}],
        }
    )


async def submit(
    store: FakeStore, decl: DeclarationIn, key: str | None = None, who: Principal = EMPLOYER
) -> Any:
    return await handlers.submit_declaration(
        store,
        who,
        decl,
        payload_sha256=f"sha-{decl.period}-{decl.lines[0].base_salary}-{decl.replaces}",
        idempotency_key=key,
        now=NOW + timedelta(seconds=len(store.rows)),
        topic="kalo.declarations.submitted",
    )


async def test_a_receipt_is_written_with_its_outbox_message() -> None:
    store = FakeStore()
    receipt, created = await submit(store, declaration())
    assert (
        created
        and receipt.status == "received"
        and receipt.links == {"self": f"/v1/declarations/{receipt.declaration_id}"}
    )
    ((topic, message),) = store.outbox
    assert topic == "kalo.declarations.submitted" and receipt.declaration_id.encode() in message


async def test_the_same_body_twice_is_the_same_receipt_and_another_body_with_the_key_is_409() -> None:
    store = FakeStore()
    first, _ = await submit(store, declaration(), key="k1")
    again, created = await submit(store, declaration(), key="k1")
    assert (again.declaration_id, created) == (first.declaration_id, False)
    with pytest.raises(Problem) as conflict:
        await submit(store, declaration(salary=5), key="k1")
    assert conflict.value.status == 409 and conflict.value.extra["declaration_id"] == first.declaration_id
    assert len(store.outbox) == 1


async def test_one_original_per_month_then_corrections_of_the_latest() -> None:
    store = FakeStore()
    original, _ = await submit(store, declaration())
    with pytest.raises(Problem) as duplicate:
        await submit(store, declaration(salary=1))
    assert duplicate.value.status == 409 and duplicate.value.extra["links"] == {
        "replaces": f"/v1/declarations/{original.declaration_id}"
    }
    fix, _ = await submit(store, declaration(salary=2, replaces=original.declaration_id))
    with pytest.raises(Problem) as stale:
        await submit(store, declaration(salary=3, replaces=original.declaration_id))
    assert stale.value.status == 409 and stale.value.extra["declaration_id"] == fix.declaration_id
    with pytest.raises(Problem) as elsewhere:
        await submit(store, declaration(period="2026-09", salary=4, replaces=fix.declaration_id))
    assert elsewhere.value.status == 422 and elsewhere.value.extra["errors"][0]["field"] == "replaces"
    with pytest.raises(Problem) as unknown:
        await submit(store, declaration(salary=5, replaces="D-nope"))
    assert unknown.value.status == 422 and "does not exist" in unknown.value.detail


async def test_only_the_employer_itself_submits() -> None:
    store = FakeStore()
    for who in (OTHER, BACKOFFICE):
        with pytest.raises(Problem) as refused:
            await submit(store, declaration(), who=who)
        assert refused.value.status == 403
    assert store.rows == {}


async def test_a_declaration_too_large_for_a_message_is_refused_before_the_store() -> None:
    store = FakeStore()
    with pytest.raises(Problem) as refused:
        await handlers.submit_declaration(
            store,
            EMPLOYER,
            declaration(),
            payload_sha256="x",
            idempotency_key=None,
            now=NOW,
            topic="t",
            max_message_bytes=100,
        )
    assert refused.value.status == 413 and store.rows == {}


async def test_reads_follow_the_roles() -> None:
    store = FakeStore()
    receipt, _ = await submit(store, declaration())
    with pytest.raises(Problem) as hidden:
        await handlers.get_declaration(store, OTHER, receipt.declaration_id)
    assert hidden.value.status == 403
    with pytest.raises(Problem) as missing:
        await handlers.get_declaration(store, BACKOFFICE, "D-none")
    assert missing.value.status == 404
    assert (await handlers.get_declaration(store, BACKOFFICE, receipt.declaration_id))["status"] == "received"
    listed = await handlers.list_declarations(
        store, OTHER, period=None, employer_id=None, status=None, limit=10
    )
    assert listed["count"] == 0  # an employer lists only its own
    with pytest.raises(Problem):
        await handlers.list_declarations(store, OTHER, period=None, employer_id="E1", status=None, limit=10)
    assert (
        await handlers.list_declarations(
            store, BACKOFFICE, period=None, employer_id="E1", status=None, limit=10
        )
    )["count"] == 1


async def test_the_report_csv_waits_for_the_assessment_and_neutralises_formulas() -> None:
    store = FakeStore()
    receipt, _ = await submit(store, declaration())
    with pytest.raises(Problem) as waiting:
        await handlers.declaration_report_csv(store, EMPLOYER, receipt.declaration_id)
    assert waiting.value.status == 409
    store.assess(receipt.declaration_id, 100_000)
    text = await handlers.declaration_report_csv(store, EMPLOYER, receipt.declaration_id)
    header, row = text.strip().split("\r\n")
    assert header.startswith("worker_id,category,gross,base,floor_applied,PF:INPS:employer")
    assert row.startswith("'=W1,salarie,100000,100000,False,100000")
    doc = await handlers.get_declaration(store, EMPLOYER, receipt.declaration_id)
    assert doc["report"]["lines"][0]["items"] == [
        {
            "branch": "PF",
            "fund": "INPS",
            "payer": "employer",
            "rate": "0.08",
            "base": 100000,
            "amount": 100000,
        }
    ]


async def test_the_account_of_an_unknown_employer_is_404_and_of_another_403() -> None:
    store = FakeStore()
    with pytest.raises(Problem) as unknown:
        await handlers.employer_account(store, BACKOFFICE, "E9")
    assert unknown.value.status == 404
    with pytest.raises(Problem) as other:
        await handlers.employer_account(store, OTHER, "E1")
    assert other.value.status == 403
    account = await handlers.employer_account(store, EMPLOYER, "E1")
    assert account["periods"] == [] and account["totals"] == {
        "contributions": 0,
        "surcharges": 0,
        "due": 0,
        "by_fund": {},
    }


def test_ids_are_unique_and_dated() -> None:
    ids = {handlers.new_declaration_id(NOW) for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("D-20261110-") for i in ids)
    assert uuid.UUID(str(handlers.submitted_message("D-1", declaration(), "x", NOW)[0]))


async def test_a_new_receipt_carries_its_audit_event_naming_the_key_id_never_the_key() -> None:
    store = FakeStore()
    calls: list[dict[str, Any]] = []
    submit_rows = store.submit

    async def spy(**a: Any) -> dict[str, Any]:
        calls.append(a)
        return await submit_rows(**a)

    store.submit = spy  # type: ignore[method-assign]
    who = Principal("employer", "E1", None, "f" * 64)
    decl = declaration()
    receipt, _ = await handlers.submit_declaration(
        store,
        who,
        decl,
        payload_sha256="ab" * 32,
        idempotency_key=None,
        now=NOW,
        topic="kalo.declarations.submitted",
        audit_topic="kalo.audit",
    )
    audit = calls[0]["audit"]
    assert audit.topic == "kalo.audit" and audit.key == receipt.declaration_id
    event = Envelope[AuditRecorded].model_validate_json(audit.value)
    assert event.id == audit.event_id and event.causation_id == calls[0]["event_id"]
    assert event.data.action == "declaration.received" and event.data.subject == receipt.declaration_id
    assert event.data.actor == "f" * 64 and event.data.input_sha256 == "ab" * 32
    assert event.data.output_sha256 == hashlib.sha256(calls[0]["message"]).hexdigest()
    assert event.data.details == {"employer_id": "E1", "period": decl.period, "lines": 1, "replaces": None}
