"""The minutes (procès-verbal) of a control session, and their seal.

The minutes list every liquidation reviewed in the session (looked at or decided), with its
flags, every decision on it, who took it and when, and the totals. They are sealed with the
SHA-256 of their canonical JSON (keys sorted, no whitespace, UTF-8): the text kept at
closing is exactly the bytes hashed, so anyone can check the seal from the JSON served.
`audit_tree_head` is the audit log's latest signed tree head at closing (none before the first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from services.common.hashing import canonical_json, sha256_hex

KIND = "kalo.control.minutes"
VERSION = 1
CANONICAL = "JSON, keys sorted, no whitespace, UTF-8"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _key_id(key_hash: str | None) -> str | None:
    return None if key_hash is None else f"key:{key_hash[:12]}"


def build(
    session: Mapping[str, Any],
    liquidations: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    *,
    closed_at: datetime | None,
) -> dict[str, Any]:
    """The minutes as a plain JSON document (strings, integers, lists, objects only)."""
    sid = session["id"]
    by_claim: dict[str, list[Mapping[str, Any]]] = {}
    for d in sorted(decisions, key=lambda d: (d["decided_at"], d["claim_id"], d["controller"])):
        by_claim.setdefault(d["claim_id"], []).append(d)
    items = []
    for row in sorted(liquidations, key=lambda r: (r["first_seen"], r["claim_id"])):
        items.append(
            {
                "claim_id": row["claim_id"],
                "worker_id": row["worker_id"],
                "regime": row["regime"],
                "outcome": row["outcome"],
                "monthly_pension": row["monthly_pension"],
                "lump_sum": row["lump_sum"],
                "flags": [{"code": f["code"], "message": f["message"]} for f in row["flags"]],
                "status": row["status"],
                "decided_by": row["decided_by"],
                "decided_at": _iso(row["decided_at"]),
                "decisions": [
                    {
                        "controller": _key_id(d["controller"]),
                        "controller_label": d["controller_label"],
                        "decision": d["decision"],
                        "reason": d["reason"],
                        "decided_at": _iso(d["decided_at"]),
                        "in_this_session": d["session_id"] == sid,
                    }
                    for d in by_claim.get(row["claim_id"], [])
                ],
            }
        )
    in_session = [d for d in decisions if d["session_id"] == sid]
    approved = [i for i in items if i["status"] == "approved"]
    totals = {
        "liquidations_reviewed": len(items),
        "flagged": sum(1 for i in items if i["flags"]),
        "decisions_taken": len(in_session),
        "approvals": sum(1 for d in in_session if d["decision"] == "approve"),
        "rejections": sum(1 for d in in_session if d["decision"] == "reject"),
        "approved": len(approved),
        "rejected": sum(1 for i in items if i["status"] == "rejected"),
        "pending": sum(1 for i in items if i["status"] == "pending"),
        "monthly_pensions_approved": sum(i["monthly_pension"] for i in approved),
        "lump_sums_approved": sum(i["lump_sum"] for i in approved),
    }
    return {
        "kind": KIND,
        "version": VERSION,
        "session": {
            "id": str(sid),
            "controller": _key_id(session["controller"]),
            "controller_label": session["controller_label"],
            "opened_at": _iso(session["opened_at"]),
            "closed_at": _iso(closed_at),
        },
        "liquidations": items,
        "totals": totals,
    }


def seal(doc: Mapping[str, Any]) -> tuple[str, str]:
    """The canonical text of the minutes and its SHA-256."""
    raw = canonical_json(doc)
    return raw.decode(), sha256_hex(raw)


def sealed(text: str, sha256: str, audit_tree_head: str | None = None) -> dict[str, Any]:
    """The minutes kept at closing, with their seal."""
    return {"minutes": orjson.loads(text), "seal": seal_of(sha256, audit_tree_head)}


def seal_of(sha256: str, audit_tree_head: str | None) -> dict[str, Any]:
    """The seal of minutes: the SHA-256 of their canonical JSON and the audit log's head."""
    return {
        "algorithm": "SHA-256",
        "canonical": CANONICAL,
        "sha256": sha256,
        "audit_tree_head": audit_tree_head,
    }


def verify(doc: Mapping[str, Any]) -> bool:
    """Whether served minutes (`{"minutes", "seal"}`) still match their seal."""
    seal_doc = doc.get("seal") or {}
    return bool(seal_doc) and sha256_hex(canonical_json(doc["minutes"])) == seal_doc.get("sha256")
