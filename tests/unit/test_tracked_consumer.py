"""The tracked consumer on fakes: one bad record goes to the DLQ and the others are written
with the offsets; an outage of PostgreSQL is waited out and the same batch written once."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from services.common import tracking
from services.common.metrics import stream_metrics
from services.common.outage import Backoff
from services.common.settings import Settings


class FakeConn:
    """Rows and offsets with transactions and savepoints: a failed block leaves nothing."""

    def __init__(self, db: FakeDb) -> None:
        self.db = db

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        rows, offsets = list(self.db.staged_rows), dict(self.db.staged_offsets)
        self.db.depth += 1
        try:
            yield
        except BaseException:
            self.db.staged_rows, self.db.staged_offsets = rows, offsets
            raise
        finally:
            self.db.depth -= 1
        if self.db.depth == 0:  # the outer transaction commits
            self.db.rows, self.db.offsets = list(self.db.staged_rows), dict(self.db.staged_offsets)

    async def executemany(self, _sql: str, args: list[tuple[Any, ...]]) -> None:
        if self.db.away:
            self.db.away -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        for _consumer, topic, partition, offset in args:
            self.db.staged_offsets[(topic, partition)] = offset


class FakeDb:
    def __init__(self) -> None:
        self.rows: list[str] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.staged_rows: list[str] = []
        self.staged_offsets: dict[tuple[str, int], int] = {}
        self.depth = 0
        self.away = 0  # how many more writes fail as if PostgreSQL were restarting

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        self.staged_rows, self.staged_offsets = list(self.rows), dict(self.offsets)
        yield FakeConn(self)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value, key))


async def apply(conn: FakeConn, items: Sequence[str]) -> None:
    for item in items:
        if "\x00" in item:  # what PostgreSQL says of a NUL in text
            raise ValueError("invalid byte sequence for encoding UTF8: 0x00")
        conn.db.staged_rows.append(item)


def record(offset: int, value: str) -> ConsumerRecord:
    raw = value.encode()
    return ConsumerRecord("t", 0, offset, 0, 0, b"k", raw, None, 0, len(raw), [])


def consumer(db: FakeDb, monkeypatch: Any) -> tuple[tracking.TrackedConsumer, FakeProducer]:
    producer = FakeProducer()
    monkeypatch.setattr(tracking.kafka, "consumer", lambda **_: None)
    monkeypatch.setattr(tracking.kafka, "producer", lambda _settings: producer)
    tc = tracking.TrackedConsumer(
        name="unit",
        topics=["t"],
        pool=db,  # type: ignore[arg-type]
        decode=lambda r: r.value.decode(),
        apply=apply,  # type: ignore[arg-type]
        settings=Settings(topic_prefix="u."),
        metrics=stream_metrics("unittracked"),
    )
    return tc, producer


async def test_a_bad_record_goes_to_the_dlq_and_the_others_are_written(monkeypatch: Any) -> None:
    db = FakeDb()
    tc, producer = consumer(db, monkeypatch)
    parked = REGISTRY.get_sample_value("kalo_unittracked_dlq_messages_total", {"topic": "t"}) or 0
    batches = REGISTRY.get_sample_value("kalo_unittracked_batch_seconds_count") or 0
    await tc.process([record(10, "a"), record(11, "b\x00"), record(12, "c")], commit=False)
    # Counted in the families of the consumer's own service.
    assert REGISTRY.get_sample_value("kalo_unittracked_dlq_messages_total", {"topic": "t"}) == parked + 1
    assert REGISTRY.get_sample_value("kalo_unittracked_batch_seconds_count") == batches + 1
    assert db.rows == ["a", "c"]
    assert db.offsets == {("t", 0): 13}  # past the bad record: the partition flows
    letters = [s for s in producer.sent if s[0] == "u.kalo.dlq"]
    assert len(letters) == 1
    topic, value, key = letters[0]
    letter = orjson.loads(value)["data"]
    assert (topic, key) == ("u.kalo.dlq", b"t/0/11")
    assert letter["offset"] == 11 and "0x00" in letter["error"]
    # The parking is an audit event too: who parked what, the original's and the letter's hashes.
    ((_, audit_value, audit_key),) = [s for s in producer.sent if s[0] == "u.kalo.audit"]
    audit = orjson.loads(audit_value)["data"]
    assert (audit["action"], audit["subject"], audit["actor"], audit_key) == (
        "dlq.parked",
        "t/0/11",
        "unit",
        key,
    )
    assert audit["output_sha256"] == hashlib.sha256(value).hexdigest()


async def test_an_outage_is_waited_out_and_the_batch_written_once(monkeypatch: Any) -> None:
    monkeypatch.setattr(tracking, "Backoff", lambda *a, **k: Backoff(0.001, 0.002))
    db = FakeDb()
    db.away = 3  # PostgreSQL restarting: three writes fail
    tc, producer = consumer(db, monkeypatch)
    await tc.process([record(0, "a"), record(1, "b")], commit=False)
    assert db.rows == ["a", "b"]
    assert db.offsets == {("t", 0): 2}
    assert producer.sent == []  # an outage is not the records' fault
