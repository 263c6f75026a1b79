"""The gateway's service layer: receive a declaration, read declarations and accounts.

No HTTP and no SQL here: every handler takes its store (the `Store` port: receipts, the
outbox, the ledger's read models) and the clock's reading as arguments; `adapters.PgStore`
implements the port on PostgreSQL, and unit tests run the handlers on an in-memory fake."""

from __future__ import annotations

import asyncio
import logging
import operator
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

import orjson

from contracts.audit import audit_event
from contracts.declarations import LINE_FIELDS, DeclarationSubmitted
from contracts.envelope import derived_id, wrap
from contracts.pensions import CareerImported, PensionClaimFiled
from services.common import logs
from services.common.csv_safe import to_csv
from services.gateway.auth import READ_ANY, require
from services.gateway.errors import Problem, conflict, forbidden, not_found
from services.gateway.registry import Principal, key_id_of
from services.gateway.report import business_report, difference, report_table
from services.gateway.schemas import CareerImportReceipt, ClaimIn, ClaimReceipt, DeclarationIn, Receipt

log = logging.getLogger(__name__)

SUBMITTED = "kalo.declarations.submitted"
Row = Mapping[str, Any]


class Store(Protocol):
    """What the gateway reads and writes (receipts and outbox; the ledger's read models)."""

    async def submit(
        self,
        *,
        declaration_id: str,
        employer_id: str,
        period: str,
        replaces: str | None,
        payload_sha256: str,
        idempotency_key: str | None,
        line_count: int,
        received_at: datetime,
        event_id: uuid.UUID,
        topic: str,
        message: bytes,
        audit: Outgoing | None = None,
    ) -> Row:
        """The receipt and its outbox message in one transaction; the row of `gateway_submit`
        (outcome, other, and the receipt's r_* columns). `audit`: the receipt's audit event,
        written to the outbox in the same transaction when the receipt is created."""
        ...

    async def declaration(self, declaration_id: str) -> Row | None:
        """A declaration with the status, totals and report of the one it replaces."""
        ...

    async def report(self, declaration_id: str) -> Row | None:
        """employer_id, status and report of a declaration."""
        ...

    async def declarations(
        self, *, employer_id: str | None, period: str | None, status: str | None, limit: int
    ) -> list[Row]: ...

    async def employer(self, employer_id: str) -> Row | None: ...

    async def account_rows(self, employer_id: str) -> tuple[list[Row], list[Row], list[Row]]:
        """The employer's periods, dues per fund, and history of declarations."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """A message for the outbox: its id, physical topic, key and bytes."""

    event_id: uuid.UUID
    topic: str
    key: str
    value: bytes


def receipt_audit(
    declaration_id: str,
    decl: DeclarationIn,
    principal: Principal,
    *,
    payload_sha256: str,
    event_id: uuid.UUID,
    message: bytes,
    now: datetime,
    topic: str,
) -> Outgoing:
    """The audit event of a receipt: who submitted (the key's id, never the key), the body's
    SHA-256 (the input) and the submitted message's (the output)."""
    return _received(
        "declaration.received",
        declaration_id,
        principal.key_id or f"employer:{decl.employer.id}",
        payload_sha256=payload_sha256,
        output_bytes=message,
        causation_id=event_id,
        now=now,
        topic=topic,
        details={
            "employer_id": decl.employer.id,
            "period": decl.period,
            "lines": len(decl.lines),
            "replaces": decl.replaces,
        },
    )


def _received(
    action: str,
    subject: str,
    actor: str,
    *,
    payload_sha256: str,
    output_bytes: bytes,
    causation_id: uuid.UUID | None,
    now: datetime,
    topic: str,
    details: dict[str, Any],
) -> Outgoing:
    """The audit event of a receipt (declaration, claim, careers import), keyed by its subject:
    written to the outbox with the receipt, so it is published once the receipt is."""
    audit_id, value = audit_event(
        action=action,
        subject=subject,
        actor=actor,
        input_sha256=payload_sha256,
        output_bytes=output_bytes,
        producer="gateway",
        causation_id=causation_id,
        occurred_at=now,
        details=details,
    )
    return Outgoing(audit_id, topic, subject, value)


def receipt_of(row: Mapping[str, Any], prefix: str = "") -> Receipt:
    """A receipt from a `declarations` row (or the `r_*` columns of gateway_submit)."""
    did = row[f"{prefix}declaration_id"]
    return Receipt(
        declaration_id=did,
        employer_id=row["employer_id"],
        period=row[f"{prefix}period"],
        status=row[f"{prefix}status"],
        received_at=row[f"{prefix}received_at"].isoformat().replace("+00:00", "Z"),
        payload_sha256=row[f"{prefix}sha" if prefix else "payload_sha256"],
        replaces=row[f"{prefix}replaces"],
        links={"self": f"/v1/declarations/{did}"},
    )


def new_declaration_id(now: datetime) -> str:
    return f"D-{now:%Y%m%d}-{uuid.uuid4().hex[:16]}"


_LINE = operator.attrgetter(*LINE_FIELDS)


def submitted_message(
    declaration_id: str, decl: DeclarationIn, payload_sha256: str, now: datetime
) -> tuple[uuid.UUID, bytes]:
    """The `declaration.submitted` envelope, encoded straight from the validated input: the
    same JSON as `tests.support.submitted.submitted_event` (a unit test holds them equal)
    at a fraction of the cost on the receipt's hot path."""
    event_id = derived_id(declaration_id, DeclarationSubmitted.TYPE)
    at = now.isoformat().replace("+00:00", "Z")
    employer = decl.employer
    doc = {
        "id": str(event_id),
        "type": DeclarationSubmitted.TYPE,
        "version": DeclarationSubmitted.VERSION,
        "occurred_at": at,
        "producer": "gateway",
        "correlation_id": declaration_id,
        "causation_id": None,
        "data": {
            "declaration_id": declaration_id,
            "employer": {
                "id": employer.id,
                "regime": employer.regime,
                "risk_class": employer.risk_class,
                "filing": employer.filing,
            },
            "period": decl.period,
            "submitted_at": at,
            "replaces": decl.replaces,
            "payload_sha256": payload_sha256,
            "lines": [_LINE(ln) for ln in decl.lines],
        },
    }
    return event_id, orjson.dumps(doc)


async def submit_declaration(
    store: Store,
    principal: Principal,
    decl: DeclarationIn,
    *,
    payload_sha256: str,
    idempotency_key: str | None,
    now: datetime,
    topic: str,
    max_message_bytes: int | None = None,
    audit_topic: str | None = None,
) -> tuple[Receipt, bool]:
    """Write the receipt and its outbox message in one transaction (one round trip).

    Returns the receipt and whether it is new (False: an identical earlier submission).
    """
    require(principal, "employer")
    employer_id = decl.employer.id
    if principal.employer_id != employer_id:
        raise forbidden(f"this API key cannot submit declarations for employer {employer_id!r}")
    declaration_id = new_declaration_id(now)
    event_id, message = submitted_message(declaration_id, decl, payload_sha256, now)
    logs.bind(correlation_id=declaration_id, employer_id=employer_id)
    if max_message_bytes is not None and len(message) > max_message_bytes:
        # Receipted means decided: a message the topic cannot carry is refused here.
        raise Problem(
            413,
            "Payload too large",
            f"the declaration encodes to {len(message):,} bytes, more than the {max_message_bytes:,} "
            "a message may carry; split it into several declarations or contact the institution",
            max_bytes=max_message_bytes,
        )
    row = await store.submit(
        declaration_id=declaration_id,
        employer_id=employer_id,
        period=decl.period,
        replaces=decl.replaces,
        payload_sha256=payload_sha256,
        idempotency_key=idempotency_key,
        line_count=len(decl.lines),
        received_at=now,
        event_id=event_id,
        topic=topic,
        message=message,
        audit=None
        if audit_topic is None
        else receipt_audit(
            declaration_id,
            decl,
            principal,
            payload_sha256=payload_sha256,
            event_id=event_id,
            message=message,
            now=now,
            topic=audit_topic,
        ),
    )
    outcome, other = row["outcome"], row["other"]
    if outcome in ("created", "existing"):
        receipt = receipt_of({**row, "employer_id": employer_id}, prefix="r_")
        logs.bind(correlation_id=receipt.declaration_id)  # a repeat answers the earlier one
        log.debug("declaration %s: %s, %d lines", receipt.declaration_id, outcome, len(decl.lines))
        return receipt, outcome == "created"
    raise _refusal(outcome, other, decl)


def _refusal(outcome: str, other: str, decl: DeclarationIn) -> Problem:
    """The problem for each way gateway_submit refuses a declaration."""
    if outcome == "idempotency_conflict":
        return conflict(
            f"this Idempotency-Key was already used for {other} with another body; "
            "use a new key for a new declaration",
            declaration_id=other,
        )
    if outcome == "duplicate_original":
        return conflict(
            f"employer {decl.employer.id} already filed {decl.period} as {other}; to change it, "
            f'send a corrective declaration with "replaces": "{other}"',
            declaration_id=other,
            links={"replaces": f"/v1/declarations/{other}"},
        )
    if outcome == "replaces_superseded":
        return conflict(
            f"{decl.replaces} was already corrected by {other}; correct the latest declaration "
            f'("replaces": "{other}")',
            declaration_id=other,
        )
    message = (
        f"declaration {decl.replaces} of employer {decl.employer.id} does not exist"
        if outcome == "replaces_not_found"
        else f"{decl.replaces} declares {other}, not {decl.period}: a correction replaces the same month"
    )
    return Problem(
        422,
        "Invalid correction",
        message,
        errors=[{"field": "replaces", "line": None, "message": message, "type": outcome}],
    )


async def get_declaration(store: Store, principal: Principal, declaration_id: str) -> dict[str, Any]:
    """Receipt, status, business report and, for a correction, the difference it makes."""
    logs.bind(correlation_id=declaration_id)
    require(principal, *READ_ANY, "employer")
    row = await store.declaration(declaration_id)
    if row is None:
        raise not_found(f"declaration {declaration_id} was not found")
    if principal.role == "employer" and row["employer_id"] != principal.employer_id:
        raise forbidden(f"declaration {declaration_id} belongs to another employer")
    doc: dict[str, Any] = receipt_of(row).model_dump()
    doc["line_count"] = row["line_count"]
    doc["superseded_by"] = row["superseded_by"]
    doc["assessed_at"] = _iso(row["assessed_at"])
    doc["totals"] = row["totals"]
    doc["report"] = business_report(dict(row))
    if row["replaces"]:
        doc["difference"] = difference(dict(row))
    return doc


async def declaration_report_csv(store: Store, principal: Principal, declaration_id: str) -> str:
    """The business report as CSV, safe to open in a spreadsheet."""
    logs.bind(correlation_id=declaration_id)
    require(principal, *READ_ANY, "employer")
    row = await store.report(declaration_id)
    if row is None:
        raise not_found(f"declaration {declaration_id} was not found")
    if principal.role == "employer" and row["employer_id"] != principal.employer_id:
        raise forbidden(f"declaration {declaration_id} belongs to another employer")
    if row["report"] is None:
        raise Problem(
            409,
            "Not assessed yet",
            f"declaration {declaration_id} is received but not assessed yet; try again shortly",
            retry_after=2,
        )
    header, rows = report_table(dict(row))
    return to_csv(header, rows)


async def list_declarations(
    store: Store,
    principal: Principal,
    *,
    period: str | None,
    employer_id: str | None,
    status: str | None,
    limit: int,
) -> dict[str, Any]:
    """The caller's declarations (staff: anyone's, optionally of one employer), newest first."""
    require(principal, *READ_ANY, "employer")
    if principal.role == "employer":
        if employer_id not in (None, principal.employer_id):
            raise forbidden("an employer lists only its own declarations")
        employer_id = principal.employer_id
    rows = await store.declarations(employer_id=employer_id, period=period, status=status, limit=limit)
    items = []
    for r in rows:
        item = receipt_of(r).model_dump()
        item.update(superseded_by=r["superseded_by"], line_count=r["line_count"], total=r["total"])
        items.append(item)
    return {"items": items, "count": len(items), "limit": limit}


async def employer_account(store: Store, principal: Principal, employer_id: str) -> dict[str, Any]:
    """What the employer owes per period and fund, read from the ledger's projections."""
    require(principal, *READ_ANY, "employer")
    if principal.role == "employer" and principal.employer_id != employer_id:
        raise forbidden("an employer reads only its own account")
    employer = await store.employer(employer_id)
    if employer is None:
        raise not_found(f"employer {employer_id} is not registered")
    periods, dues, history = await store.account_rows(employer_id)
    return account_document(dict(employer), periods, dues, history)


def account_document(
    employer: Mapping[str, Any],
    periods: list[Row],
    dues: list[Row],
    history: list[Row],
) -> dict[str, Any]:
    """Per period: the declaration in force, dues per fund, due date, surcharge, corrections."""
    by_period: dict[str, dict[str, int]] = {}
    for d in dues:
        by_period.setdefault(d["period"], {})[d["fund"]] = d["amount"]
    filed: dict[str, list[Mapping[str, Any]]] = {}
    for h in history:
        filed.setdefault(h["period"], []).append(h)
    out_periods = []
    totals = {"contributions": 0, "surcharges": 0, "due": 0}
    by_fund: dict[str, int] = {}
    for p in periods:
        chain = filed.get(p["period"], [])
        original = next((h for h in chain if h["replaces"] is None and h["status"] == "accepted"), None)
        corrections = [
            {
                "declaration_id": h["declaration_id"],
                "replaces": h["replaces"],
                "status": h["status"],
                "received_at": _iso(h["received_at"]),
                "total": h["total"],
            }
            for h in chain
            if h["replaces"] is not None
        ]
        funds = by_period.get(p["period"], {})
        for fund, amount in funds.items():
            by_fund[fund] = by_fund.get(fund, 0) + amount
        out_periods.append(
            {
                "period": p["period"],
                "declaration_id": p["declaration_id"],
                "due_date": p["due_date"].isoformat(),
                "months_late": p["months_late"],
                "by_fund": funds,
                "contributions": p["total"],
                "surcharge": p["surcharge"],
                "due": p["total"] + p["surcharge"],
                "original_total": original["total"] if original else None,
                "correction_effect": (p["total"] - original["total"]) if original else None,
                "corrections": corrections,
            }
        )
        totals["contributions"] += p["total"]
        totals["surcharges"] += p["surcharge"]
        totals["due"] += p["total"] + p["surcharge"]
    pending = sorted({h["period"] for h in history if h["status"] == "received"})
    return {
        "employer": {k: employer[k] for k in ("id", "name", "regime", "risk_class", "filing", "active")},
        "periods": out_periods,
        "totals": {**totals, "by_fund": by_fund},
        "periods_awaiting_assessment": pending,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


# ---- Pensions: claims filed by back offices, careers from before Kalo ----------------------

CLAIMS = "kalo.pensions.claims"
CAREERS_IMPORTED = "kalo.careers.imported"
CLAIM_READERS = ("backoffice", "auditor", "controller")


class Pensions(Protocol):
    """The claims' and careers' side of the store: receipts and outbox (the gateway's), the
    ledger's liquidations, decisions and applied imports (read only)."""

    async def file_claim(
        self,
        *,
        claim_id: str,
        claim: ClaimIn,
        payload_sha256: str,
        idempotency_key: str | None,
        filed_by: str,
        filed_by_label: str | None,
        received_at: datetime,
        event_id: uuid.UUID,
        topic: str,
        message: bytes,
        audit: Outgoing | None = None,
    ) -> Row:
        """The receipt and its outbox message in one transaction; the row of `gateway_claim`.
        `audit`: the receipt's audit event, written to the outbox with it when it is created."""
        ...

    async def claim(self, claim_id: str) -> Row | None:
        """A claim's receipt with its status, liquidation and flags."""
        ...

    async def claim_decisions(self, claim_id: str) -> list[Row]: ...

    async def claims(self, *, status: str | None, worker_id: str | None, limit: int) -> list[Row]: ...

    async def import_careers(
        self,
        *,
        import_id: str,
        payload_sha256: str,
        idempotency_key: str | None,
        imported_by: str,
        imported_by_label: str | None,
        row_count: int,
        received_at: datetime,
        topic: str,
        messages: list[tuple[uuid.UUID, str, bytes]],
        audit: Outgoing | None = None,
    ) -> Row:
        """The import's receipt and one outbox message per worker (event id, key, value);
        `audit`: the receipt's audit event, written to the outbox with it when it is created."""
        ...

    async def career_import(self, import_id: str) -> Row | None:
        """An import's receipt with the number of workers the ledger has applied."""
        ...


def new_claim_id(now: datetime) -> str:
    return f"C-{now:%Y%m%d}-{uuid.uuid4().hex[:16]}"


def new_import_id(now: datetime) -> str:
    return f"I-{now:%Y%m%d}-{uuid.uuid4().hex[:16]}"


def claim_message(
    claim_id: str, claim: ClaimIn, principal: Principal, payload_sha256: str, now: datetime
) -> tuple[uuid.UUID, bytes]:
    """The `pension.claim_filed` envelope (its id derived from the claim id)."""
    data = PensionClaimFiled(
        claim_id=claim_id,
        worker_id=claim.worker_id,
        regime=claim.regime,
        category=claim.category,
        grade=claim.grade,
        birth_date=date.fromisoformat(claim.birth_date),
        effective_date=date.fromisoformat(claim.effective_date),
        replaces=claim.replaces,
        filed_by=principal.key_hash,
        filed_by_label=principal.label,
        filed_at=now,
        payload_sha256=payload_sha256,
    )
    event_id = derived_id(claim_id, PensionClaimFiled.TYPE)
    envelope = wrap(data, producer="gateway", correlation_id=claim_id, event_id=event_id, occurred_at=now)
    return event_id, envelope.model_dump_json().encode()


def claim_receipt(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    claim_id = row[f"{prefix}claim_id"]
    return ClaimReceipt(
        claim_id=claim_id,
        worker_id=row[f"{prefix}worker_id"],
        status=row[f"{prefix}status"],
        received_at=_iso(row[f"{prefix}received_at"]) or "",
        payload_sha256=row[f"{prefix}sha" if prefix else "payload_sha256"],
        replaces=row[f"{prefix}replaces"],
        links={"self": f"/v1/pension-claims/{claim_id}"},
    ).model_dump()


async def file_claim(
    store: Pensions,
    principal: Principal,
    claim: ClaimIn,
    *,
    payload_sha256: str,
    idempotency_key: str | None,
    now: datetime,
    topic: str,
    audit_topic: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Write the claim's receipt and its outbox message (and, given `audit_topic`, its audit
    event) in one transaction. Returns the receipt and whether it is new (False: the same
    claim again)."""
    require(principal, "backoffice")
    claim_id = new_claim_id(now)
    event_id, message = claim_message(claim_id, claim, principal, payload_sha256, now)
    logs.bind(correlation_id=claim_id)
    audit = None
    if audit_topic is not None:
        audit = _received(
            "claim.received",
            claim_id,
            principal.key_id or "gateway",
            payload_sha256=payload_sha256,
            output_bytes=message,
            causation_id=event_id,
            now=now,
            topic=audit_topic,
            details={
                "worker_id": claim.worker_id,
                "regime": claim.regime,
                "effective_date": claim.effective_date,
                "replaces": claim.replaces,
            },
        )
    row = await store.file_claim(
        claim_id=claim_id,
        claim=claim,
        payload_sha256=payload_sha256,
        idempotency_key=idempotency_key,
        filed_by=principal.key_hash or "unknown",
        filed_by_label=principal.label,
        received_at=now,
        event_id=event_id,
        topic=topic,
        message=message,
        audit=audit,
    )
    outcome, other = row["outcome"], row["other"]
    if outcome in ("created", "existing"):
        receipt = claim_receipt(row, prefix="r_")
        logs.bind(correlation_id=receipt["claim_id"])
        log.debug("claim %s: %s", receipt["claim_id"], outcome)
        return receipt, outcome == "created"
    if outcome == "idempotency_conflict":
        raise conflict(
            f"this Idempotency-Key was already used for {other} with another body; "
            "use a new key for a new claim",
            claim_id=other,
        )
    if outcome == "claim_in_force":
        raise conflict(
            f"worker {claim.worker_id} already has claim {other}, not rejected; to file again, "
            f'revise it ("replaces": "{other}")',
            claim_id=other,
            links={"replaces": f"/v1/pension-claims/{other}"},
        )
    if outcome == "replaces_superseded":
        raise conflict(
            f"{claim.replaces} was already revised by {other}; revise the latest claim "
            f'("replaces": "{other}")',
            claim_id=other,
        )
    message_text = f"claim {claim.replaces} of worker {claim.worker_id} does not exist"
    raise Problem(
        422,
        "Invalid revision",
        message_text,
        errors=[{"field": "replaces", "message": message_text, "type": outcome}],
    )


async def get_claim(store: Pensions, principal: Principal, claim_id: str) -> dict[str, Any]:
    logs.bind(correlation_id=claim_id)
    """The claim's receipt, status, liquidation (RULES.md §5), flags and every decision."""
    require(principal, *CLAIM_READERS)
    row = await store.claim(claim_id)
    if row is None:
        raise not_found(f"claim {claim_id} was not found")
    doc = claim_receipt(row)
    doc["superseded_by"] = row["superseded_by"]
    doc["claim"] = {
        "regime": row["regime"],
        "category": row["category"],
        "grade": row["grade"],
        "birth_date": row["birth_date"].isoformat(),
        "effective_date": row["effective_date"].isoformat(),
    }
    doc["filed_by"] = {"key_id": key_id_of(row["filed_by"]), "label": row["filed_by_label"]}
    doc["liquidation"] = row["liquidation"]
    doc["liquidated_at"] = _iso(row["liquidated_at"])
    doc["ruleset"] = row["ruleset"]
    doc["as_of"] = row["as_of"]
    doc["flags"] = row["flags"] or []
    decisions = []
    if row["liquidation"] is not None:
        liquidation = row["liquidation"]
        decisions.append(
            {
                "type": "pension.liquidated",
                "decision": liquidation["decision"],
                "reason": liquidation["reason"],
                "flags": [],
                "by": ["liquidation"],
                "at": doc["liquidated_at"],
            }
        )
    for d in await store.claim_decisions(claim_id):
        decisions.append(
            {
                "type": d["type"],
                "decision": d["decision"],
                "reason": d["reason"],
                "flags": d["flags"] or [],
                "by": list(d["controllers"] or []) or [d["producer"]],
                "at": _iso(d["decided_at"]),
            }
        )
    doc["decisions"] = decisions
    return doc


async def list_claims(
    store: Pensions, principal: Principal, *, status: str | None, worker_id: str | None, limit: int
) -> dict[str, Any]:
    """Claims, newest first, by status and worker."""
    require(principal, *CLAIM_READERS)
    items = []
    for r in await store.claims(status=status, worker_id=worker_id, limit=limit):
        item = claim_receipt(r)
        liquidation = r["liquidation"] or {}
        item.update(
            regime=r["regime"],
            effective_date=r["effective_date"].isoformat(),
            decision=liquidation.get("decision"),
            monthly_pension=liquidation.get("monthly_pension"),
            lump_sum=liquidation.get("lump_sum"),
        )
        items.append(item)
    return {"items": items, "count": len(items), "limit": limit}


def import_messages(
    import_id: str, rows: list[tuple[str, str, str, int]], principal: Principal, now: datetime
) -> list[tuple[uuid.UUID, str, bytes]]:
    """One `career.imported` message per worker of the file, in file order of first appearance."""
    by_worker: dict[str, list[tuple[str, str, int]]] = {}
    for worker_id, period, employer_id, base in rows:
        by_worker.setdefault(worker_id, []).append((period, employer_id, base))
    at = now.isoformat().replace("+00:00", "Z")
    messages = []
    for worker_id, entries in by_worker.items():
        event_id = derived_id(f"{import_id}:{worker_id}", CareerImported.TYPE)
        doc = {
            "id": str(event_id),
            "type": CareerImported.TYPE,
            "version": CareerImported.VERSION,
            "occurred_at": at,
            "producer": "gateway",
            "correlation_id": import_id,
            "causation_id": None,
            "data": {
                "import_id": import_id,
                "worker_id": worker_id,
                "imported_at": at,
                "imported_by": principal.key_hash,
                "entries": entries,
            },
        }
        messages.append((event_id, worker_id, orjson.dumps(doc)))
    return messages


def import_receipt(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    import_id = row[f"{prefix}import_id"]
    return CareerImportReceipt(
        import_id=import_id,
        received_at=_iso(row[f"{prefix}received_at"]) or "",
        payload_sha256=row[f"{prefix}sha" if prefix else "payload_sha256"],
        rows=row[f"{prefix}row_count"],
        workers=row[f"{prefix}worker_count"],
        applied_workers=None if prefix else row["applied_workers"],
        links={"self": f"/v1/careers/imports/{import_id}"},
    ).model_dump(exclude_none=True)


async def import_careers(
    store: Pensions,
    principal: Principal,
    rows: list[tuple[str, str, str, int]],
    *,
    payload_sha256: str,
    idempotency_key: str | None,
    now: datetime,
    topic: str,
    audit_topic: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Receipt the file and queue one message per worker for the ledger (and, given
    `audit_topic`, the receipt's audit event), in one transaction."""
    require(principal, "backoffice")
    import_id = new_import_id(now)
    # Built in a thread: a million rows are about a second of CPU, during which the event loop
    # keeps answering the declarations.
    messages, audit = await asyncio.to_thread(
        _import_outputs, import_id, rows, principal, now, payload_sha256, audit_topic
    )
    row = await store.import_careers(
        import_id=import_id,
        payload_sha256=payload_sha256,
        idempotency_key=idempotency_key,
        imported_by=principal.key_hash or "unknown",
        imported_by_label=principal.label,
        row_count=len(rows),
        received_at=now,
        topic=topic,
        messages=messages,
        audit=audit,
    )
    if row["outcome"] == "idempotency_conflict":
        raise conflict(
            f"this Idempotency-Key was already used for import {row['other']} with another file",
            import_id=row["other"],
        )
    return import_receipt(row, prefix="r_"), row["outcome"] == "created"


def _import_outputs(
    import_id: str,
    rows: list[tuple[str, str, str, int]],
    principal: Principal,
    now: datetime,
    payload_sha256: str,
    audit_topic: str | None,
) -> tuple[list[tuple[uuid.UUID, str, bytes]], Outgoing | None]:
    """The import's messages (one per worker) and, given `audit_topic`, its audit event."""
    messages = import_messages(import_id, rows, principal, now)
    if audit_topic is None:
        return messages, None
    audit = _received(
        "careers.import_received",
        import_id,
        principal.key_id or "gateway",
        payload_sha256=payload_sha256,
        # The output: the messages queued, one JSON document a line, in order.
        output_bytes=b"\n".join(value for _, _, value in messages),
        causation_id=None,
        now=now,
        topic=audit_topic,
        details={"rows": len(rows), "workers": len(messages)},
    )
    return messages, audit


async def get_career_import(store: Pensions, principal: Principal, import_id: str) -> dict[str, Any]:
    require(principal, *READ_ANY)
    row = await store.career_import(import_id)
    if row is None:
        raise not_found(f"careers import {import_id} was not found")
    return import_receipt(row)
