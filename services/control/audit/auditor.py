"""The auditor's side, on the real store: verify it, prove a record, export a subject.

Reads the store as the settings' PostgreSQL user (an auditor's read-only role does), the
heads from the heads file or the topic; `verify.py` does the checking.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.common.settings import Settings
from services.control.audit.adapters import latest_head, read_heads_file, read_heads_topic, stored_records
from services.control.audit.verify import Report, make_proof, verify


async def load_heads(settings: Settings, source: str) -> list[dict[str, Any]]:
    """`topic`: every head on kalo.audit.heads; otherwise a heads file."""
    if source == "topic":
        return await read_heads_topic(settings)
    if not Path(source).exists():
        raise FileNotFoundError(f"no heads file at {source}")
    return read_heads_file(source)


async def verify_store(settings: Settings, heads_source: str, public_key: Ed25519PublicKey) -> Report:
    docs = await load_heads(settings, heads_source)
    conn = await asyncpg.connect(settings.dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await verify(stored_records(conn), docs, public_key)
    finally:
        await conn.close()


class NotFound(LookupError):
    pass


async def prove(settings: Settings, event_id: uuid.UUID) -> dict[str, Any]:
    """An inclusion proof of the event's record against the latest signed head."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow("SELECT seq, record FROM audit.records WHERE event_id = $1", event_id)
            if row is None:
                raise NotFound(f"no audit record of event {event_id}")
            head = await latest_head(conn)
            if head is None or head.tree_size <= row["seq"]:
                raise NotFound(f"record {row['seq']} is not yet under a signed head; try again shortly")
            leaves = [
                bytes(r["leaf_hash"])
                for r in await conn.fetch(
                    "SELECT leaf_hash FROM audit.records WHERE seq < $1 ORDER BY seq", head.tree_size
                )
            ]
            return make_proof(event_id, row["seq"], bytes(row["record"]), leaves, head)
    finally:
        await conn.close()


async def subject_records(settings: Settings, subject: str) -> list[dict[str, Any]]:
    """Every record about a subject, in log order, as recorded (the record itself is read:
    the columns it is found by are not trusted)."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        rows = await conn.fetch(
            "SELECT seq, record FROM audit.records WHERE subject = $1 ORDER BY seq", subject
        )
    finally:
        await conn.close()
    out = []
    for r in rows:
        event = orjson.loads(bytes(r["record"]))
        if event.get("data", {}).get("subject") != subject:
            continue
        out.append({"seq": r["seq"], **event})
    return out
