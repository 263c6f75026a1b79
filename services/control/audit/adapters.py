"""The audit store's ports on PostgreSQL, Kafka and the heads file.

- `PgLogTx`: the log within one transaction (schema `audit`; the writer's lock is a
  transaction-scoped advisory lock, so two writers take turns and neither numbers twice).
- `Positions`: the tracked consumer's offsets as insert-only rows (`audit.positions`).
- `HeadPublisher`: every head committed to `audit.heads` goes out, in order, to the topic
  `kalo.audit.heads` and to the heads file (JSON lines, appended and fsynced), each with the
  leaf hashes it adds. It starts after what each already holds.
- `latest_head`: the latest signed head, for the control commission's minutes.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from contracts.audit import AuditTreeHead
from contracts.envelope import derived_id, envelope_json
from services.common import kafka
from services.common.settings import Settings
from services.control.audit.handlers import Row
from services.control.audit.heads import SignedHead
from services.control.audit.verify import StoredRecord

log = logging.getLogger(__name__)
WRITER_LOCK = 7209  # pg_advisory_xact_lock: one writer numbers records at a time
PRODUCER = "audit"
CHUNK = 100_000


def _head(row: asyncpg.Record, leaves: list[bytes] | None = None) -> SignedHead:
    return SignedHead(
        tree_size=row["tree_size"],
        root_hash=bytes(row["root_hash"]),
        timestamp_ms=row["timestamp_ms"],
        key_id=row["key_id"],
        signature=bytes(row["signature"]),
        first_index=row["leaves_from"],
        leaves=None if leaves is None else tuple(leaves),
    )


class PgLogTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock(self) -> int:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", WRITER_LOCK)
        size: int = await self.conn.fetchval("SELECT coalesce(max(seq) + 1, 0) FROM audit.records")
        return size

    async def known(self, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        rows = await self.conn.fetch(
            "SELECT event_id FROM audit.records WHERE event_id = ANY($1::uuid[])", event_ids
        )
        return {r["event_id"] for r in rows}

    async def append(self, rows: Sequence[Row]) -> None:
        await self.conn.copy_records_to_table(
            "records",
            schema_name="audit",
            columns=["seq", "event_id", "record", "leaf_hash", "action", "subject", "actor", "occurred_at"],
            records=[
                (
                    r.seq,
                    r.entry.event_id,
                    r.entry.record,
                    r.leaf_hash,
                    r.entry.action,
                    r.entry.subject,
                    r.entry.actor,
                    r.entry.occurred_at,
                )
                for r in rows
            ],
        )

    async def add_head(self, head: SignedHead) -> None:
        await self.conn.execute(
            "INSERT INTO audit.heads (tree_size, timestamp_ms, root_hash, key_id, signature, leaves_from)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            head.tree_size,
            head.timestamp_ms,
            head.root_hash,
            head.key_id,
            head.signature,
            head.first_index or 0,
        )

    async def last_head(self) -> SignedHead | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM audit.heads ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1"
        )
        return None if row is None else _head(row)

    async def leaf_hashes(self) -> AsyncIterator[bytes]:
        start = 0
        while True:
            rows = await self.conn.fetch(
                "SELECT leaf_hash FROM audit.records WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                start,
                start + CHUNK,
            )
            for r in rows:
                yield bytes(r["leaf_hash"])
            if len(rows) < CHUNK:
                return
            start += CHUNK


class Positions:
    """Offsets as insert-only rows: the writer's role may only INSERT."""

    async def load(
        self, conn: asyncpg.Connection | asyncpg.Pool, consumer: str
    ) -> dict[tuple[str, int], int]:
        rows = await conn.fetch(
            "SELECT topic, partition, max(next_offset) AS next_offset FROM audit.positions GROUP BY 1, 2"
        )
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def save(self, conn: asyncpg.Connection, consumer: str, offsets: dict[TopicPartition, int]) -> None:
        await conn.executemany(
            "INSERT INTO audit.positions (topic, partition, next_offset) VALUES ($1, $2, $3)",
            [(tp.topic, tp.partition, offset) for tp, offset in offsets.items()],
        )


async def heads_between(
    conn: asyncpg.Connection | asyncpg.Pool, after_size: int, *, with_leaves: bool = True, limit: int = 1000
) -> list[SignedHead]:
    """Signed heads larger than `after_size`, in order, each with the leaf hashes it adds."""
    rows = await conn.fetch(
        "SELECT * FROM audit.heads WHERE tree_size > $1 ORDER BY tree_size, timestamp_ms LIMIT $2",
        after_size,
        limit,
    )
    heads = []
    for row in rows:
        leaves = None
        if with_leaves:
            found = await conn.fetch(
                "SELECT leaf_hash FROM audit.records WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                row["leaves_from"],
                row["tree_size"],
            )
            leaves = [bytes(r["leaf_hash"]) for r in found]
        heads.append(_head(row, leaves))
    return heads


async def latest_head(conn: asyncpg.Connection | asyncpg.Pool) -> SignedHead | None:
    """The latest signed tree head (for the control commission's minutes: `head.as_json(
    with_leaves=False)` is what a seal quotes; None before the first head)."""
    row = await conn.fetchrow("SELECT * FROM audit.heads ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1")
    return None if row is None else _head(row)


def head_message(head: SignedHead) -> tuple[str, bytes]:
    """The key and envelope of a head on `kalo.audit.heads` (its id: size and root)."""
    data = orjson.dumps(head.as_json())
    AuditTreeHead.model_validate_json(data)
    cause = f"{head.tree_size}:{head.root_hash.hex()}"
    _, value = envelope_json(
        data,
        AuditTreeHead,
        producer=PRODUCER,
        correlation_id="audit-log",
        event_id=derived_id(cause, AuditTreeHead.TYPE),
    )
    return str(head.tree_size), value


def read_heads_file(path: str | Path) -> list[dict[str, Any]]:
    """The heads file's lines as JSON documents (a torn last line, from a crash, is left out)."""
    p = Path(path)
    if not p.exists():
        return []
    docs = []
    lines = p.read_bytes().splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            docs.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {n + 1} is not JSON") from None
    return docs


async def read_heads_topic(settings: Settings) -> list[dict[str, Any]]:
    """Every head published on `kalo.audit.heads` (their `data`), in order."""
    name = kafka.topic("kalo.audit.heads", settings)
    consumer = kafka.consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        partitions = await kafka.partitions_of(name, settings)
        tps = [TopicPartition(name, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        docs: list[dict[str, Any]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                docs.extend(orjson.loads(r.value)["data"] for r in records if r.offset < ends[tp])
        return docs
    finally:
        await consumer.stop()


class HeadPublisher:
    """Publishes committed heads, in order, to the heads file and the heads topic."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, heads_file: Path) -> None:
        self.settings = settings
        self.producer = producer
        self.heads_file = heads_file
        self.file_size = -1  # the largest head each already holds
        self.topic_size = -1

    async def start(self) -> None:
        self.heads_file.parent.mkdir(parents=True, exist_ok=True)
        docs = read_heads_file(self.heads_file)
        self.file_size = max((d["tree_size"] for d in docs), default=-1)
        topic_docs = await read_heads_topic(self.settings)
        self.topic_size = max((d["tree_size"] for d in topic_docs), default=-1)

    async def publish(self, conn: asyncpg.Connection | asyncpg.Pool) -> int:
        """Publish every committed head not yet out; returns how many."""
        done = 0
        while True:
            heads = await heads_between(conn, min(self.file_size, self.topic_size), limit=100)
            if not heads:
                return done
            for head in heads:
                if head.tree_size > self.topic_size:
                    key, value = head_message(head)
                    await self.producer.send_and_wait(
                        kafka.topic("kalo.audit.heads", self.settings), value, key=key.encode()
                    )
                    self.topic_size = head.tree_size
                if head.tree_size > self.file_size:
                    self._append(head)
                    self.file_size = head.tree_size
                done += 1

    def _append(self, head: SignedHead) -> None:
        line = orjson.dumps(head.as_json()) + b"\n"
        fd = os.open(self.heads_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


async def stored_records(conn: asyncpg.Connection, *, chunk: int = 20_000) -> AsyncIterator[StoredRecord]:
    """Every record of the store, by seq (pages by seq: the table may be huge)."""
    after = -1
    while True:
        rows = await conn.fetch(
            "SELECT seq, event_id, record, leaf_hash FROM audit.records WHERE seq > $1 ORDER BY seq LIMIT $2",
            after,
            chunk,
        )
        for r in rows:
            yield StoredRecord(r["seq"], r["event_id"], bytes(r["record"]), bytes(r["leaf_hash"]))
        if len(rows) < chunk:
            return
        after = rows[-1]["seq"]
