"""The control commission's handlers on an in-memory fake of their store, which keeps the
rules the database keeps (deploy/postgres/008_control.sql): one decision per controller,
none by the filer, none on a decided liquidation, a reason for a rejection, approvals
counted against what the liquidation needs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from contracts.envelope import Envelope
from contracts.pensions import PensionLiquidated
from services.common.hashing import api_key_hash
from services.control import handlers, minutes
from services.control.handlers import Controller, NotFound, Outgoing, Refused
from services.rules import escalation_flag
from tests.support.control import FILER, PLAIN, RULESET, SPIKE, liquidated

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
ALICE = Controller(api_key_hash("kalo_cont_alice"), "Alice")
BOB = Controller(api_key_hash("kalo_cont_bob"), "Bob")
FILER_AS_CONTROLLER = Controller(FILER, "the filer")


# --- the fake store --------------------------------------------------------------------------


class FakeTx:
    def __init__(self, store: FakeStore) -> None:
        self.s = store

    async def liquidation(self, claim_id: str) -> dict[str, Any] | None:
        row = self.s.liquidations.get(claim_id)
        return dict(row) if row else None

    async def stored_claims(self, claim_ids: Sequence[str]) -> set[str]:
        return {c for c in claim_ids if c in self.s.liquidations}

    async def approved_claims(self, worker_ids: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r in self.s.liquidations.values():
            if r["worker_id"] in worker_ids and r["status"] == "approved":
                out.setdefault(r["worker_id"], set()).add(r["claim_id"])
        return out

    async def add_liquidations(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            if row["claim_id"] in self.s.liquidations:
                continue
            assert row["approvals_needed"] == (1 if not row["flags"] else 2)
            assert row["decided_by"] != "auto" or not row["flags"]
            self.s.liquidations[row["claim_id"]] = dict(row)

    async def add_decision(self, decision: Mapping[str, Any]) -> dict[str, Any]:
        liq = self.s.liquidations[decision["claim_id"]]
        if any(
            d["claim_id"] == decision["claim_id"] and d["controller"] == decision["controller"]
            for d in self.s.decisions
        ):
            raise Refused("decisions_one_per_controller", "one decision per controller")
        if decision["decision"] == "reject" and not (decision["reason"] or "").strip():
            raise Refused("decisions_reject_has_reason", "a rejection needs a reason")
        if liq["status"] != "pending":
            raise Refused("decisions_liquidation_pending", f"already {liq['status']}")
        if liq["filed_by"] is not None and decision["controller"] == liq["filed_by"]:
            raise Refused("decisions_not_the_filer", "the filer may not decide")
        self.s.decisions.append(dict(decision))
        approvals = [
            d for d in self.s.decisions if d["claim_id"] == liq["claim_id"] and d["decision"] == "approve"
        ]
        if decision["decision"] == "reject":
            liq.update(status="rejected", decided_by="controllers", decided_at=decision["decided_at"])
        elif len(approvals) >= liq["approvals_needed"]:
            liq.update(status="approved", decided_by="controllers", decided_at=decision["decided_at"])
        return dict(liq)

    async def decisions(self, claim_id: str) -> list[dict[str, Any]]:
        return [dict(d) for d in self.s.decisions if d["claim_id"] == claim_id]

    async def decisions_of(self, claim_ids: Sequence[str]) -> list[dict[str, Any]]:
        return [dict(d) for d in self.s.decisions if d["claim_id"] in claim_ids]

    async def enqueue(self, messages: Sequence[Outgoing]) -> None:
        for m in messages:
            self.s.outbox.setdefault(m.event_id, m)

    async def liquidations(self, *, status: str | None, now: datetime, limit: int) -> list[dict[str, Any]]:
        def escalated(r: Mapping[str, Any]) -> bool:
            return bool(r["status"] == "pending" and r["escalate_at"] < now)

        rows = [
            r
            for r in self.s.liquidations.values()
            if status is None or (escalated(r) if status == "escalated" else r["status"] == status)
        ]
        rows.sort(key=lambda r: (not escalated(r), r["status"] != "pending", r["received_at"], r["claim_id"]))
        return [dict(r) for r in rows[:limit]]

    async def escalate(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        due = sorted(
            (r for r in self.s.liquidations.values() if r["status"] == "pending" and r["escalate_at"] < now),
            key=lambda r: (r["escalate_at"], r["claim_id"]),
        )
        due = [r for r in due if r["claim_id"] not in self.s.escalated][:limit]
        for r in due:
            self.s.escalated[r["claim_id"]] = now
        return [dict(r) for r in due]

    async def open_session(self, session: Mapping[str, Any]) -> None:
        if any(
            s["controller"] == session["controller"] and s["closed_at"] is None
            for s in self.s.sessions.values()
        ):
            raise Refused("sessions_one_open_per_controller", "one open session per controller")
        self.s.sessions[session["id"]] = {
            **session, "closed_at": None, "minutes": None, "minutes_sha256": None, "audit_tree_head": None
        }  # fmt: skip

    async def open_session_of(self, controller: str) -> dict[str, Any] | None:
        return next(
            (
                dict(s)
                for s in self.s.sessions.values()
                if s["controller"] == controller and s["closed_at"] is None
            ),
            None,
        )

    async def session(self, session_id: uuid.UUID) -> dict[str, Any] | None:
        s = self.s.sessions.get(session_id)
        return dict(s) if s else None

    async def sessions(self, limit: int) -> list[dict[str, Any]]:
        return [dict(s) for s in self.s.sessions.values()][:limit]

    async def close_session(
        self,
        session_id: uuid.UUID,
        *,
        closed_at: datetime,
        minutes: str,
        sha256: str,
        audit_tree_head: str | None = None,
    ) -> None:
        self.s.sessions[session_id].update(
            closed_at=closed_at, minutes=minutes, minutes_sha256=sha256, audit_tree_head=audit_tree_head
        )

    async def latest_audit_head(self) -> str | None:
        return self.s.audit_head

    async def add_review(self, session_id: uuid.UUID, claim_id: str, at: datetime) -> None:
        self.s.reviews.setdefault((session_id, claim_id), at)

    async def session_liquidations(self, session_id: uuid.UUID) -> list[dict[str, Any]]:
        seen: dict[str, datetime] = {}
        for (sid, claim_id), at in self.s.reviews.items():
            if sid == session_id:
                seen[claim_id] = min(at, seen.get(claim_id, at))
        for d in self.s.decisions:
            if d["session_id"] == session_id:
                seen[d["claim_id"]] = min(d["decided_at"], seen.get(d["claim_id"], d["decided_at"]))
        return [{**self.s.liquidations[c], "first_seen": at} for c, at in seen.items()]


class FakeStore:
    def __init__(self) -> None:
        self.liquidations: dict[str, dict[str, Any]] = {}
        self.decisions: list[dict[str, Any]] = []
        self.outbox: dict[uuid.UUID, Outgoing] = {}
        self.audit_head: str | None = None  # the audit log's latest signed head, as the store reads it
        self.sessions: dict[uuid.UUID, dict[str, Any]] = {}
        self.reviews: dict[tuple[uuid.UUID, str], datetime] = {}
        self.escalated: dict[str, datetime] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTx]:
        yield FakeTx(self)

    def messages(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in self.outbox.values() if m.topic == topic]


async def receive(
    store: FakeStore, *events: Envelope[PensionLiquidated], auto: bool = True, now: datetime = NOW
):
    async with store.transaction() as tx:
        return await handlers.receive(tx, events, ruleset=RULESET, now=now, auto_approve=auto)


# --- receiving -------------------------------------------------------------------------------


async def test_an_unflagged_liquidation_is_approved_automatically_and_announced_once() -> None:
    store = FakeStore()
    [r] = await receive(store, liquidated("C-1", PLAIN))
    assert (r.status, r.flags) == ("approved", ())
    row = store.liquidations["C-1"]
    assert row["decided_by"] == "auto" and row["monthly_pension"] == 100_000
    [approved] = store.messages(handlers.APPROVED)
    assert (
        approved["data"]["monthly_pension"] == 100_000 and approved["data"]["net_monthly_pension"] == 99_250
    )
    assert approved["data"]["effective_date"] == "2026-12-01"
    [decision] = store.messages(handlers.DECISIONS)
    assert decision["data"]["decision"] == "approved" and decision["data"]["controllers"] == []
    # Its audit record: who decided (the automatic approval), the status, no flag.
    [audit] = store.messages(handlers.AUDIT)
    assert audit["data"]["action"] == "control.decided" and audit["data"]["actor"] == "control"
    assert audit["data"]["details"] == {
        "status": "approved",
        "flags": [],
        "decisions": 0,
        "decided_by": "auto",
    }
    # Redelivered: nothing new stored nor announced.
    [again] = await receive(store, liquidated("C-1", PLAIN))
    assert again.already_stored and len(store.outbox) == 3


async def test_automatic_approval_off_leaves_an_unflagged_one_to_a_single_controller() -> None:
    store = FakeStore()
    [r] = await receive(store, liquidated("C-1", PLAIN), auto=False)
    assert r.status == "pending" and store.liquidations["C-1"]["approvals_needed"] == 1
    decided = await handlers.decide(store, ALICE, "C-1", decision="approve", reason=None, now=NOW)
    assert decided.status == "approved"
    assert len(store.messages(handlers.APPROVED)) == 1


async def test_a_salary_spike_is_flagged_and_waits_for_two_controllers() -> None:
    store = FakeStore()
    [r] = await receive(store, liquidated("C-2", SPIKE))
    assert r.status == "pending" and r.flags == ("SALARY_SPIKE",)
    assert store.liquidations["C-2"]["approvals_needed"] == 2
    assert store.messages(handlers.APPROVED) == []
    [pending] = store.messages(handlers.DECISIONS)
    assert pending["data"]["decision"] == "pending" and pending["data"]["flags"] == ["SALARY_SPIKE"]


async def test_a_rejected_liquidation_ends_rejected_with_nothing_approved() -> None:
    store = FakeStore()
    [r] = await receive(store, liquidated("C-3", PLAIN, birth_date="1974-06-01"))  # age 52
    assert r.status == "rejected"
    assert store.liquidations["C-3"]["decided_by"] == "liquidation"
    [decision] = store.messages(handlers.DECISIONS)
    assert decision["data"]["decision"] == "rejected" and decision["data"]["reason"] == "AGE_NOT_REACHED"
    assert store.messages(handlers.APPROVED) == []
    with pytest.raises(Refused) as refused:
        await handlers.decide(store, ALICE, "C-3", decision="approve", reason=None, now=NOW)
    assert refused.value.rule == "decisions_liquidation_pending"


async def test_a_tampered_amount_and_a_second_approved_pension_are_flagged() -> None:
    store = FakeStore()
    await receive(store, liquidated("C-1", PLAIN, worker_id="W9"))
    [r] = await receive(
        store,
        liquidated(
            "C-4", PLAIN, worker_id="W9", tamper={"monthly_pension": 100_001, "net_monthly_pension": 99_251}
        ),
    )
    assert r.status == "pending" and set(r.flags) == {"RECOMPUTE_MISMATCH", "DUPLICATE_CLAIM"}


async def test_a_claim_the_rules_cannot_read_is_flagged_not_lost() -> None:
    store = FakeStore()
    event = liquidated("C-5", PLAIN)
    data = event.data.model_copy(update={"claim": {**event.data.claim, "birth_date": "not a date"}})
    bad = event.model_copy(update={"data": data})
    [r] = await receive(store, bad)
    assert r.status == "pending" and r.flags == ("RECOMPUTE_MISMATCH",)
    assert "error" in store.liquidations["C-5"]["recomputed"]


# --- four eyes -------------------------------------------------------------------------------


async def test_two_different_controllers_approve_a_flagged_one_and_it_is_announced_once() -> None:
    store = FakeStore()
    await receive(store, liquidated("C-2", SPIKE))
    first = await handlers.decide(store, ALICE, "C-2", decision="approve", reason=None, now=NOW)
    assert first.status == "pending" and store.messages(handlers.APPROVED) == []
    with pytest.raises(Refused) as twice:
        await handlers.decide(store, ALICE, "C-2", decision="approve", reason=None, now=NOW)
    assert twice.value.rule == "decisions_one_per_controller"
    second = await handlers.decide(
        store, BOB, "C-2", decision="approve", reason=None, now=NOW + timedelta(minutes=5)
    )
    assert second.status == "approved"
    assert [d["controller"] for d in second.decisions] == [ALICE.key_id, BOB.key_id]
    [approved] = store.messages(handlers.APPROVED)
    assert approved["data"]["claim_id"] == "C-2"
    states = [m["data"]["decision"] for m in store.messages(handlers.DECISIONS)]
    assert states == ["pending", "pending", "approved"]
    with pytest.raises(Refused) as late:
        await handlers.decide(store, Controller(api_key_hash("kalo_cont_carol")), "C-2", decision="reject",
                              reason="too late", now=NOW)  # fmt: skip
    assert late.value.rule == "decisions_liquidation_pending"


async def test_the_key_that_filed_the_claim_decides_nothing() -> None:
    store = FakeStore()
    await receive(store, liquidated("C-2", SPIKE))
    with pytest.raises(Refused) as refused:
        await handlers.decide(store, FILER_AS_CONTROLLER, "C-2", decision="approve", reason=None, now=NOW)
    assert refused.value.rule == "decisions_not_the_filer"


async def test_a_rejection_needs_a_written_reason_and_then_decides() -> None:
    store = FakeStore()
    await receive(store, liquidated("C-2", SPIKE))
    for blank in (None, "", "   "):
        with pytest.raises(Refused) as refused:
            await handlers.decide(store, ALICE, "C-2", decision="reject", reason=blank, now=NOW)
        assert refused.value.rule == "decisions_reject_has_reason"
    decided = await handlers.decide(
        store, ALICE, "C-2", decision="reject", reason="payslips missing", now=NOW
    )
    assert decided.status == "rejected"
    [*_, last] = store.messages(handlers.DECISIONS)
    assert last["data"]["decision"] == "rejected" and last["data"]["reason"] == "payslips missing"
    assert store.messages(handlers.APPROVED) == []


async def test_an_unknown_claim_is_not_found() -> None:
    with pytest.raises(NotFound):
        await handlers.decide(FakeStore(), ALICE, "nope", decision="approve", reason=None, now=NOW)


# --- listing and escalation ------------------------------------------------------------------


async def test_a_liquidation_pending_past_thirty_days_is_escalated_and_listed_first() -> None:
    store = FakeStore()
    await receive(store, liquidated("C-OLD", SPIKE, worker_id="W1"), now=NOW - timedelta(days=31))
    await receive(store, liquidated("C-NEW", SPIKE, worker_id="W2"), now=NOW - timedelta(days=40, hours=-1))
    await receive(store, liquidated("C-RECENT", SPIKE, worker_id="W3"), now=NOW - timedelta(days=2))
    items = await handlers.list_liquidations(store, status="pending", now=NOW, limit=10)
    assert [i["claim_id"] for i in items] == ["C-NEW", "C-OLD", "C-RECENT"]
    assert [i["escalated"] for i in items] == [True, True, False]
    assert items[0]["flags"][0]["code"] == "ESCALATED"
    escalated = await handlers.list_liquidations(store, status="escalated", now=NOW, limit=10)
    assert {i["claim_id"] for i in escalated} == {"C-OLD", "C-NEW"}
    # Exactly 30 days is not "longer than" the delay.
    on_the_day = await handlers.list_liquidations(
        store, status="escalated", now=NOW - timedelta(days=1), limit=10
    )
    assert {i["claim_id"] for i in on_the_day} == {"C-NEW"}
    with pytest.raises(Refused):
        await handlers.list_liquidations(store, status="lost", now=NOW, limit=10)


async def test_an_escalation_is_recorded_once_with_its_audit_event() -> None:
    store = FakeStore()
    await receive(store, liquidated("C-OLD", SPIKE, worker_id="W1"), now=NOW - timedelta(days=31))
    await receive(store, liquidated("C-RECENT", SPIKE, worker_id="W3"), now=NOW - timedelta(days=2))
    await receive(store, liquidated("C-DONE", PLAIN, worker_id="W4"), now=NOW - timedelta(days=60))
    before = len(store.messages(handlers.AUDIT))
    assert await handlers.escalate(store, now=NOW) == ["C-OLD"]  # not the recent, not the approved
    assert await handlers.escalate(store, now=NOW + timedelta(minutes=1)) == []  # once
    [audit] = store.messages(handlers.AUDIT)[before:]
    row = store.liquidations["C-OLD"]
    data = audit["data"]
    assert (data["action"], data["subject"], data["actor"]) == ("control.escalated", "C-OLD", "control")
    assert data["ruleset"] == RULESET.id and audit["causation_id"] == str(row["event_id"])
    liquidation_bytes = orjson.dumps(row["liquidation"], option=orjson.OPT_SORT_KEYS)
    assert data["input_sha256"] == hashlib.sha256(liquidation_bytes).hexdigest()
    flag = escalation_flag(row["received_at"], row["escalate_at"])
    assert (
        data["output_sha256"] == hashlib.sha256(orjson.dumps(flag, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )
    assert data["details"]["flags"] == ["SALARY_SPIKE"] and data["details"]["status"] == "pending"
    # The same escalation emitted again (a crash before the commit) has the same id.
    assert audit["id"] == str(handlers._escalation_audited(row, NOW + timedelta(hours=1)).event_id)
    assert await handlers.escalate(store, now=NOW + timedelta(days=29)) == ["C-RECENT"]


async def test_the_detail_puts_the_recomputation_beside_the_liquidation() -> None:
    store = FakeStore()
    await receive(store, liquidated("C-4", PLAIN, tamper={"monthly_pension": 100_001}))
    doc = await handlers.liquidation_detail(store, ALICE, "C-4", now=NOW)
    rows = {r["field"]: r for r in doc["comparison"]}
    assert rows["monthly_pension"] == {
        "field": "monthly_pension", "liquidation": 100_001, "recomputed": 100_000, "same": False
    }  # fmt: skip
    assert rows["insured_months"]["same"] and doc["filed_by"] == f"key:{FILER[:12]}"


# --- sessions and minutes --------------------------------------------------------------------


async def test_a_session_minutes_list_what_was_reviewed_and_decided_sealed() -> None:
    store = FakeStore()
    await receive(store, liquidated("C-2", SPIKE, worker_id="W2"), liquidated("C-6", SPIKE, worker_id="W6"))
    session = await handlers.open_session(store, ALICE, now=NOW)
    with pytest.raises(Refused):
        await handlers.open_session(store, ALICE, now=NOW)
    await handlers.liquidation_detail(store, ALICE, "C-6", now=NOW + timedelta(minutes=1))  # looked at only
    await handlers.decide(
        store, ALICE, "C-2", decision="approve", reason=None, now=NOW + timedelta(minutes=2)
    )
    await handlers.decide(store, BOB, "C-2", decision="approve", reason=None, now=NOW + timedelta(minutes=3))
    sid = uuid.UUID(session["id"])
    draft = await handlers.session_minutes(store, sid)
    assert draft["seal"] is None
    with pytest.raises(Refused) as not_yours:
        await handlers.close_session(store, BOB, sid, now=NOW)
    assert not_yours.value.rule == "sessions_closed_by_opener"
    head = '{"tree_size":41,"root_hash":"ab","timestamp_ms":1,"signature":"cd"}'
    store.audit_head = head  # the audit log's latest signed head at closing
    closed = await handlers.close_session(store, ALICE, sid, now=NOW + timedelta(minutes=10))
    assert closed["status"] == "closed" and closed["minutes_sha256"]
    doc = await handlers.session_minutes(store, sid)
    assert minutes.verify(doc)
    assert doc["seal"]["audit_tree_head"] == head
    m = doc["minutes"]
    assert [i["claim_id"] for i in m["liquidations"]] == ["C-6", "C-2"]
    c2 = m["liquidations"][1]
    assert c2["status"] == "approved" and [f["code"] for f in c2["flags"]] == ["SALARY_SPIKE"]
    assert [(d["controller_label"], d["in_this_session"]) for d in c2["decisions"]] == [
        ("Alice", True),
        ("Bob", False),
    ]
    assert m["totals"]["liquidations_reviewed"] == 2 and m["totals"]["decisions_taken"] == 1
    assert m["totals"]["approved"] == 1 and m["totals"]["pending"] == 1
    assert m["totals"]["monthly_pensions_approved"] == c2["monthly_pension"]
    # The seal is the SHA-256 of the canonical JSON: any change breaks it.
    tampered = {**doc, "minutes": {**m, "totals": {**m["totals"], "approved": 2}}}
    assert not minutes.verify(tampered)
    with pytest.raises(Refused) as sealed:
        await handlers.close_session(store, ALICE, sid, now=NOW)
    assert sealed.value.rule == "sessions_sealed"
    # The closing is audited once: by the controller who closed it, the minutes in, the seal out.
    [closing] = [a for a in store.messages(handlers.AUDIT) if a["data"]["action"] == "control.session_closed"]
    data = closing["data"]
    assert (data["subject"], data["actor"]) == (str(sid), ALICE.key_hash)
    assert data["input_sha256"] == closed["minutes_sha256"] == doc["seal"]["sha256"]
    seal_bytes = orjson.dumps(doc["seal"], option=orjson.OPT_SORT_KEYS)
    assert data["output_sha256"] == hashlib.sha256(seal_bytes).hexdigest()
    assert data["details"]["claims"] == ["C-6", "C-2"] and data["details"]["totals"] == m["totals"]


def test_the_minutes_render_as_pdf() -> None:
    from services.control.pdf import minutes_pdf

    session = {
        "id": uuid.uuid4(),
        "controller": ALICE.key_hash,
        "controller_label": "Alice — été",
        "opened_at": NOW,
    }
    row = {
        "claim_id": "C-2", "worker_id": "W2", "regime": "INPS", "outcome": "pension",
        "monthly_pension": 81_000, "lump_sum": 0,
        "flags": [{"code": "SALARY_SPIKE", "message": "151,000 > 1.5 × 100,000"}],
        "status": "pending", "decided_by": None, "decided_at": None, "first_seen": NOW,
    }  # fmt: skip
    doc = minutes.build(session, [row], [], closed_at=NOW)
    text, sha = minutes.seal(doc)
    pdf = minutes_pdf(minutes.sealed(text, sha))
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
