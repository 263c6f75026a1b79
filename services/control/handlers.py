"""The control commission's service layer (RULES.md §4): receive liquidations, decide on
them with four eyes, list them, hold control sessions and their minutes.

No HTTP, SQL or Kafka here. Every handler takes its store (the `Store` port: the control
schema, whose constraints are the four-eyes rules, and its outbox) and the clock's reading
as arguments; `adapters.PgStore` implements the port on PostgreSQL, and the unit tests run
the handlers on an in-memory fake that keeps the same rules.

Messages leave through the outbox, written in the same transaction as what they announce,
with ids derived from the liquidation's event id: a decision is announced once on
`kalo.control.decisions`, an approval once on `kalo.pensions.approved`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from contracts.audit import audit_event
from contracts.envelope import Envelope, derived_id, wrap
from contracts.pensions import ControlDecision, PensionApproved, PensionLiquidated
from services.control import minutes as minutes_doc
from services.rules import (
    InvalidInput,
    Ruleset,
    auto_approval_allowed,
    compared_fields,
    control_review,
    escalation_deadline,
    escalation_flag,
)

PRODUCER = "kalo-control"
DECISIONS = "kalo.control.decisions"
APPROVED = "kalo.pensions.approved"
AUDIT = "kalo.audit"
OUTCOMES = ("pension", "lump_sum", "rejected")
STATUSES = ("pending", "approved", "rejected", "escalated")
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Controller:
    """A controller's API key (its SHA-256: the key itself is never kept) and label."""

    key_hash: str
    label: str | None = None

    @property
    def key_id(self) -> str:
        """How a controller is named in messages and minutes: never the whole hash."""
        return f"key:{self.key_hash[:12]}"


def key_id(key_hash: str | None) -> str | None:
    return None if key_hash is None else f"key:{key_hash[:12]}"


@dataclass(frozen=True)
class Outgoing:
    """A message for the outbox: its topic's registry name, key and encoded envelope."""

    event_id: uuid.UUID
    topic: str
    key: str
    value: bytes


class Refused(Exception):
    """A rule of the control refused the request; `rule` names it as the database's
    constraint does (decisions_one_per_controller, decisions_reject_has_reason, …)."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


class NotFound(Exception):
    pass


class Tx(Protocol):
    """What the control reads and writes, inside one transaction."""

    async def liquidation(self, claim_id: str) -> Row | None: ...

    async def stored_claims(self, claim_ids: Sequence[str]) -> set[str]:
        """Those of the claims whose liquidation is already stored."""
        ...

    async def approved_claims(self, worker_ids: Sequence[str]) -> dict[str, set[str]]:
        """The claims of each of the workers whose liquidation is approved."""
        ...

    async def add_liquidations(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store liquidations not stored yet (a claim already stored is left as it is)."""
        ...

    async def add_decision(self, decision: Mapping[str, Any]) -> Row:
        """Record a controller's decision; returns the liquidation after it (its status moved
        by the decision). Raises Refused for a rule of the four eyes."""
        ...

    async def decisions(self, claim_id: str) -> Sequence[Row]:
        """The decisions on a liquidation, oldest first."""
        ...

    async def enqueue(self, messages: Sequence[Outgoing]) -> None: ...

    async def liquidations(self, *, status: str | None, now: datetime, limit: int) -> Sequence[Row]:
        """Escalated first (pending past `escalate_at` at `now`), then oldest first."""
        ...

    async def escalate(self, now: datetime, limit: int) -> Sequence[Row]:
        """Record as escalated (once: at most `limit` now) the liquidations pending past their
        `escalate_at` at `now` that were not yet; return them."""
        ...

    async def open_session(self, session: Mapping[str, Any]) -> None:
        """Raises Refused(sessions_one_open_per_controller) when one is open already."""
        ...

    async def open_session_of(self, controller: str) -> Row | None: ...

    async def session(self, session_id: uuid.UUID) -> Row | None: ...

    async def sessions(self, limit: int) -> Sequence[Row]: ...

    async def close_session(
        self,
        session_id: uuid.UUID,
        *,
        closed_at: datetime,
        minutes: str,
        sha256: str,
        audit_tree_head: str | None = None,
    ) -> None: ...

    async def latest_audit_head(self) -> str | None:
        """The audit log's latest signed tree head (its JSON), None before the first."""
        ...

    async def add_review(self, session_id: uuid.UUID, claim_id: str, at: datetime) -> None: ...

    async def session_liquidations(self, session_id: uuid.UUID) -> Sequence[Row]:
        """The liquidations reviewed or decided in the session, each with `first_seen`."""
        ...

    async def decisions_of(self, claim_ids: Sequence[str]) -> Sequence[Row]: ...


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...


# --- receiving liquidations (the tracked consumer's batches) -------------------------------


@dataclass(frozen=True)
class Received:
    claim_id: str
    status: str
    flags: tuple[str, ...] = ()
    already_stored: bool = False


def _flags_and_recomputation(
    data: PensionLiquidated, ruleset: Ruleset, already_approved: bool
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    try:
        return control_review(
            data.claim, data.career, data.liquidation, ruleset, already_approved=already_approved
        )
    except InvalidInput as exc:  # a claim the rules cannot read: no amount can be checked
        message = f"the claim cannot be re-computed: {exc}"
        return [{"code": "RECOMPUTE_MISMATCH", "message": message}], {"error": str(exc)}


async def receive(
    tx: Tx,
    events: Sequence[Envelope[PensionLiquidated]],
    *,
    ruleset: Ruleset,
    now: datetime,
    auto_approve: bool,
) -> list[Received]:
    """Store each liquidation with its RULES.md §4 flags; approve the unflagged ones when
    automatic approval is on (the setting and the dated parameter), record the rejected
    ones as rejected, leave the others to the controllers. A liquidation already stored
    (a redelivery) is left as it is. In order: a claim sees the approvals of the claims
    before it, in the store and earlier in the batch (DUPLICATE_CLAIM). The store is read
    and written once per batch, not per liquidation."""
    stored = await tx.stored_claims([e.data.claim_id for e in events])
    approved = await tx.approved_claims(list({e.data.worker_id for e in events}))
    out: list[Received] = []
    rows: list[dict[str, Any]] = []
    messages: list[Outgoing] = []
    for envelope in events:
        data = envelope.data
        if data.claim_id in stored:
            out.append(Received(data.claim_id, "", already_stored=True))
            continue
        outcome = data.liquidation.get("decision")
        if outcome not in OUTCOMES:
            raise ValueError(f"liquidation {data.claim_id}: unknown decision {outcome!r}")
        approved_before = bool(approved.get(data.worker_id, set()) - {data.claim_id})
        flags, recomputed = _flags_and_recomputation(data, ruleset, approved_before)
        if outcome == "rejected":
            status, decided_by = "rejected", "liquidation"
        elif not flags and auto_approve and auto_approval_allowed(ruleset, now.date()):
            status, decided_by = "approved", "auto"
        else:
            status, decided_by = "pending", None
        row = {
            "claim_id": data.claim_id,
            "worker_id": data.worker_id,
            "regime": str(data.claim.get("regime", data.liquidation.get("regime", ""))),
            "event_id": envelope.id,
            "ruleset": data.ruleset,
            "filed_by": filed_by(data.claim),
            "claim": dict(data.claim),
            "career": data.career,  # (period, base) pairs: stored as JSON arrays
            "career_sources": None if data.career_sources is None else [list(r) for r in data.career_sources],
            "liquidation": dict(data.liquidation),
            "recomputed": recomputed,
            "career_as_of": _as_of(data),
            "outcome": outcome,
            "monthly_pension": _int(data.liquidation.get("monthly_pension")),
            "lump_sum": _int(data.liquidation.get("lump_sum")),
            "flags": flags,
            "approvals_needed": 2 if flags else 1,
            "status": status,
            "decided_by": decided_by,
            "liquidated_at": envelope.occurred_at,
            "received_at": now,
            "escalate_at": escalation_deadline(now, ruleset),
            "decided_at": None if status == "pending" else now,
        }
        stored.add(data.claim_id)  # a copy later in the batch is a redelivery
        if status == "approved":
            approved.setdefault(data.worker_id, set()).add(data.claim_id)
        rows.append(row)
        messages.extend(announce(row, [], now))
        out.append(Received(data.claim_id, status, tuple(f["code"] for f in flags)))
    if rows:
        await tx.add_liquidations(rows)
        await tx.enqueue(messages)
    return out


def _as_of(data: PensionLiquidated) -> dict[str, Any] | None:
    """The point the career snapshot was read at (read time, assessed and imported rows), for
    the liquidations that carry it."""
    as_of = getattr(data, "as_of", None)
    if as_of is None:
        return None
    dumped: dict[str, Any] = as_of.model_dump(mode="json") if hasattr(as_of, "model_dump") else dict(as_of)
    return dumped


def filed_by(claim: Mapping[str, Any]) -> str | None:
    """The API key (its SHA-256) that filed the claim, as the claim carries it: a string,
    or an object with `key_hash`."""
    who = claim.get("filed_by")
    if isinstance(who, Mapping):
        who = who.get("key_hash")
    return who if isinstance(who, str) and who else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- what a liquidation's state announces ---------------------------------------------------


def announce(liquidation: Row, decisions: Sequence[Row], now: datetime) -> list[Outgoing]:
    """The messages of a liquidation's state after `len(decisions)` decisions: its
    ControlDecision, and its PensionApproved once approved. Ids derive from the
    liquidation's event id and the number of decisions, so the same state always yields the
    same messages."""
    cause = liquidation["event_id"]
    cause = cause if isinstance(cause, uuid.UUID) else uuid.UUID(str(cause))
    claim_id, worker_id = liquidation["claim_id"], liquidation["worker_id"]
    status = liquidation["status"]
    reason = None
    if status == "rejected":
        rejection = next((d for d in decisions if d["decision"] == "reject"), None)
        reason = rejection["reason"] if rejection else liquidation["liquidation"].get("reason")
    decision = ControlDecision(
        claim_id=claim_id,
        worker_id=worker_id,
        decision=status,
        flags=[f["code"] for f in liquidation["flags"]],
        controllers=[key_id(d["controller"]) or "" for d in decisions],
        reason=reason,
    )
    messages = [
        _outgoing(
            decision, DECISIONS, cause, f"{ControlDecision.TYPE}/{len(decisions)}", claim_id, worker_id, now
        )
    ]
    if status == "approved":
        liq, claim = liquidation["liquidation"], liquidation["claim"]
        approved = PensionApproved(
            claim_id=claim_id,
            worker_id=worker_id,
            regime=liquidation["regime"],
            decision=liquidation["outcome"],
            monthly_pension=_int(liq.get("monthly_pension")),
            amo_deduction=_int(liq.get("amo_deduction")),
            net_monthly_pension=_int(liq.get("net_monthly_pension")),
            lump_sum=_int(liq.get("lump_sum")),
            effective_date=claim["effective_date"],
            ruleset=liquidation["ruleset"],
        )
        messages.append(_outgoing(approved, APPROVED, cause, PensionApproved.TYPE, claim_id, worker_id, now))
    messages.append(_audited(liquidation, decisions, messages[0].value, cause, now))
    return messages


def _audited(
    liquidation: Row, decisions: Sequence[Row], decision_bytes: bytes, cause: uuid.UUID, now: datetime
) -> Outgoing:
    """The audit record of a state of the control (its flags on arrival, then each decision):
    who decided (a controller's key hash, `control` for an automatic decision), the SHA-256 of
    the liquidation controlled and of the ControlDecision announced, the flags and the status."""
    last = decisions[-1] if decisions else None
    kind = f"audit.control.decided/{len(decisions)}"
    cause = uuid.UUID(str(cause))  # asyncpg's UUID subclass is not orjson's uuid.UUID
    event_id, value = audit_event(
        action="control.decided",
        subject=liquidation["claim_id"],
        actor=str(last["controller"]) if last else "control",
        input_bytes=orjson.dumps(liquidation["liquidation"], option=orjson.OPT_SORT_KEYS),
        output_bytes=decision_bytes,
        producer=PRODUCER,
        ruleset=liquidation["ruleset"],
        details={
            "status": liquidation["status"],
            "flags": [f["code"] for f in liquidation["flags"]],
            "decisions": len(decisions),
            "decided_by": liquidation.get("decided_by"),
        },
        causation_id=cause,
        event_id=derived_id(cause, kind),
        occurred_at=now,
    )
    return Outgoing(event_id, AUDIT, liquidation["claim_id"], value)


def _outgoing(
    payload: ControlDecision | PensionApproved,
    topic: str,
    cause: uuid.UUID,
    kind: str,
    claim_id: str,
    worker_id: str,
    now: datetime,
) -> Outgoing:
    event_id = derived_id(cause, kind)
    envelope = wrap(
        payload,
        producer=PRODUCER,
        correlation_id=claim_id,
        causation_id=cause,
        event_id=event_id,
        occurred_at=now,
    )
    return Outgoing(event_id, topic, worker_id, envelope.model_dump_json().encode())


# --- controllers' decisions ----------------------------------------------------------------


@dataclass(frozen=True)
class Decided:
    claim_id: str
    status: str
    decisions: list[dict[str, Any]] = field(default_factory=list)


async def decide(
    store: Store,
    controller: Controller,
    claim_id: str,
    *,
    decision: str,
    reason: str | None,
    now: datetime,
) -> Decided:
    """Record a controller's approval or rejection. The rules are the store's (the
    database's constraints): one decision per controller, none by the key that filed the
    claim, none on a decided liquidation, a written reason for a rejection. A rejection
    decides the liquidation; approvals decide it once there are as many as it needs (two
    when flagged). Decided in the controller's open session, if any."""
    if decision not in ("approve", "reject"):
        raise Refused("decision_known", f"decision must be approve or reject, not {decision!r}")
    async with store.transaction() as tx:
        if await tx.liquidation(claim_id) is None:
            raise NotFound(f"no liquidation for claim {claim_id!r}")
        session = await tx.open_session_of(controller.key_hash)
        after = await tx.add_decision(
            {
                "claim_id": claim_id,
                "controller": controller.key_hash,
                "controller_label": controller.label,
                "decision": decision,
                "reason": reason.strip() if isinstance(reason, str) and reason.strip() else reason,
                "session_id": session["id"] if session else None,
                "decided_at": now,
            }
        )
        if session is not None:
            await tx.add_review(session["id"], claim_id, now)
        decisions = await tx.decisions(claim_id)
        await tx.enqueue(announce(after, decisions, now))
    return Decided(claim_id, after["status"], [decision_view(d) for d in decisions])


# --- escalations ----------------------------------------------------------------------------


async def escalate(store: Store, *, now: datetime, limit: int = 500) -> list[str]:
    """Escalate the liquidations pending past the legal delay to answer (RULES.md §4): each is
    recorded as escalated once, with its audit event in the same transaction. Returns their
    claim ids (at most `limit`: the rest on the next call)."""
    async with store.transaction() as tx:
        rows = await tx.escalate(now, limit)
        await tx.enqueue([_escalation_audited(row, now) for row in rows])
    return [row["claim_id"] for row in rows]


def _escalation_audited(liquidation: Row, now: datetime) -> Outgoing:
    """The audit record of an escalation: the liquidation waiting (input) and the ESCALATED
    flag it now carries (output), decided by the control itself with the delay of its ruleset."""
    cause = uuid.UUID(str(liquidation["event_id"]))
    flag = escalation_flag(liquidation["received_at"], liquidation["escalate_at"])
    event_id, value = audit_event(
        action="control.escalated",
        subject=liquidation["claim_id"],
        actor="control",
        input_bytes=orjson.dumps(liquidation["liquidation"], option=orjson.OPT_SORT_KEYS),
        output_bytes=orjson.dumps(flag, option=orjson.OPT_SORT_KEYS),
        producer=PRODUCER,
        ruleset=liquidation["ruleset"],
        details={
            "status": liquidation["status"],
            "received_at": _iso(liquidation["received_at"]),
            "escalate_at": _iso(liquidation["escalate_at"]),
            "flags": [f["code"] for f in liquidation["flags"]],
        },
        causation_id=cause,
        event_id=derived_id(cause, "audit.control.escalated"),
        occurred_at=now,
    )
    return Outgoing(event_id, AUDIT, liquidation["claim_id"], value)


# --- reading --------------------------------------------------------------------------------


def is_escalated(row: Row, now: datetime) -> bool:
    return bool(row["status"] == "pending" and now > row["escalate_at"])


def summary_view(row: Row, now: datetime) -> dict[str, Any]:
    escalated = is_escalated(row, now)
    flags = list(row["flags"])
    if escalated:
        flags = [escalation_flag(row["received_at"], row["escalate_at"]), *flags]
    return {
        "claim_id": row["claim_id"],
        "worker_id": row["worker_id"],
        "regime": row["regime"],
        "outcome": row["outcome"],
        "monthly_pension": row["monthly_pension"],
        "lump_sum": row["lump_sum"],
        "status": row["status"],
        "escalated": escalated,
        "flags": flags,
        "approvals_needed": row["approvals_needed"],
        "decided_by": row["decided_by"],
        "received_at": _iso(row["received_at"]),
        "escalate_at": _iso(row["escalate_at"]),
        "decided_at": _iso(row["decided_at"]),
        "links": {"self": f"/v1/liquidations/{row['claim_id']}"},
    }


def decision_view(d: Row) -> dict[str, Any]:
    return {
        "controller": key_id(d["controller"]),
        "controller_label": d.get("controller_label"),
        "decision": d["decision"],
        "reason": d.get("reason"),
        "session_id": str(d["session_id"]) if d.get("session_id") else None,
        "decided_at": _iso(d["decided_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


async def list_liquidations(
    store: Store, *, status: str | None, now: datetime, limit: int
) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        raise Refused("status_known", f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    async with store.transaction() as tx:
        rows = await tx.liquidations(status=status, now=now, limit=limit)
    return [summary_view(r, now) for r in rows]


async def liquidation_detail(
    store: Store, controller: Controller, claim_id: str, *, now: datetime
) -> dict[str, Any]:
    """A liquidation in full: claim, career snapshot, liquidation, re-computation side by
    side, flags, decisions. Looked at during the controller's open session, it is listed
    in that session's minutes."""
    async with store.transaction() as tx:
        row = await tx.liquidation(claim_id)
        if row is None:
            raise NotFound(f"no liquidation for claim {claim_id!r}")
        session = await tx.open_session_of(controller.key_hash)
        if session is not None:
            await tx.add_review(session["id"], claim_id, now)
        decisions = await tx.decisions(claim_id)
    return {
        **summary_view(row, now),
        "ruleset": row["ruleset"],
        "filed_by": key_id(row["filed_by"]),
        "filed_by_label": row["claim"].get("filed_by_label"),
        "claim": row["claim"],
        "career": row["career"],
        "career_sources": row.get("career_sources"),
        "career_as_of": row.get("career_as_of"),
        "liquidation": row["liquidation"],
        "recomputed": row["recomputed"],
        "comparison": compared_fields(row["liquidation"], row["recomputed"]),
        "decisions": [decision_view(d) for d in decisions],
        "liquidated_at": _iso(row["liquidated_at"]),
    }


# --- control sessions and their minutes -----------------------------------------------------


async def open_session(store: Store, controller: Controller, *, now: datetime) -> dict[str, Any]:
    session_id = uuid.uuid4()
    session = {
        "id": session_id,
        "controller": controller.key_hash,
        "controller_label": controller.label,
        "opened_at": now,
    }
    async with store.transaction() as tx:
        await tx.open_session(session)
        row = await tx.session(session_id)
    assert row is not None
    return session_view(row)


def session_view(row: Row) -> dict[str, Any]:
    sid = str(row["id"])
    return {
        "id": sid,
        "controller": key_id(row["controller"]),
        "controller_label": row["controller_label"],
        "opened_at": _iso(row["opened_at"]),
        "closed_at": _iso(row["closed_at"]),
        "status": "open" if row["closed_at"] is None else "closed",
        "minutes_sha256": row.get("minutes_sha256"),
        "links": {
            "minutes": f"/v1/sessions/{sid}/minutes",
            "html": f"/v1/sessions/{sid}/minutes.html",
            "pdf": f"/v1/sessions/{sid}/minutes.pdf",
        },
    }


async def current_session(store: Store, controller: Controller) -> dict[str, Any] | None:
    """The controller's open session, if any."""
    async with store.transaction() as tx:
        row = await tx.open_session_of(controller.key_hash)
    return session_view(row) if row else None


async def list_sessions(store: Store, *, limit: int = 100) -> list[dict[str, Any]]:
    async with store.transaction() as tx:
        return [session_view(r) for r in await tx.sessions(limit)]


async def _draft(tx: Tx, session: Row, closed_at: datetime | None) -> dict[str, Any]:
    rows = await tx.session_liquidations(session["id"])
    decisions = await tx.decisions_of([r["claim_id"] for r in rows])
    return minutes_doc.build(session, rows, decisions, closed_at=closed_at)


async def close_session(
    store: Store, controller: Controller, session_id: uuid.UUID, *, now: datetime
) -> dict[str, Any]:
    """Close a session: its minutes are built, sealed with the SHA-256 of their canonical
    JSON and the audit log's latest signed tree head, and kept as they are. Only the
    controller who opened it closes it."""
    async with store.transaction() as tx:
        session = await tx.session(session_id)
        if session is None:
            raise NotFound(f"no session {session_id}")
        if session["controller"] != controller.key_hash:
            raise Refused("sessions_closed_by_opener", "only the controller who opened a session closes it")
        if session["closed_at"] is not None:
            raise Refused("sessions_sealed", f"session {session_id} is closed already")
        doc = await _draft(tx, session, now)
        text, sha = minutes_doc.seal(doc)
        # Sealed too with the audit log's signed head at closing: the minutes are then bound
        # to every decision the log held when they were closed.
        head = await tx.latest_audit_head()
        await tx.close_session(session_id, closed_at=now, minutes=text, sha256=sha, audit_tree_head=head)
        await tx.enqueue([_closing_audited(session, doc, sha, head, now)])
        row = await tx.session(session_id)
    assert row is not None
    return session_view(row)


def _closing_audited(
    session: Row, doc: Mapping[str, Any], sha: str, head: str | None, now: datetime
) -> Outgoing:
    """The audit record of a session's closing: who closed it (the controller's key hash), the
    minutes (input: the SHA-256 of their canonical JSON) and their seal as kept (output)."""
    seal = minutes_doc.seal_of(sha, head)
    subject = str(session["id"])
    event_id, value = audit_event(
        action="control.session_closed",
        subject=subject,
        actor=str(session["controller"]),
        input_sha256=sha,
        output_bytes=orjson.dumps(seal, option=orjson.OPT_SORT_KEYS),
        producer=PRODUCER,
        details={
            "opened_at": _iso(session["opened_at"]),
            "closed_at": _iso(now),
            "claims": [item["claim_id"] for item in doc["liquidations"]],
            "totals": doc["totals"],
        },
        event_id=derived_id(subject, "audit.control.session_closed"),
        occurred_at=now,
    )
    return Outgoing(event_id, AUDIT, subject, value)


async def session_minutes(store: Store, session_id: uuid.UUID) -> dict[str, Any]:
    """The minutes as kept at closing with their seal; of an open session, the draft so far
    (unsealed)."""
    async with store.transaction() as tx:
        session = await tx.session(session_id)
        if session is None:
            raise NotFound(f"no session {session_id}")
        if session["closed_at"] is None:
            return {"minutes": await _draft(tx, session, None), "seal": None}
        return minutes_doc.sealed(session["minutes"], session["minutes_sha256"], session["audit_tree_head"])
