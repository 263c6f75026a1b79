"""The audit store's handlers on a fake log: idempotent by event id, numbered 0…n−1, heads
signed every N records and on the clock, a transaction that did not commit reloaded, and
no head signed over a log that no longer matches its latest head. Heads: RFC 9162
TreeHeadDataV2 bytes, Ed25519, tampering refused."""

from __future__ import annotations

import struct
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.audit import audit_event
from services.control.audit.handlers import AuditLog, Row, TamperedLog
from services.control.audit.heads import BadHead, SignedHead, Signer, head_bytes
from services.control.audit.merkle import root
from services.control.audit.records import Entry, decode

pytestmark = pytest.mark.unit


class FakeLog:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.heads: list[SignedHead] = []

    async def lock(self) -> int:
        return len(self.rows)

    async def known(self, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        return {r.entry.event_id for r in self.rows} & set(event_ids)

    async def append(self, rows: Sequence[Row]) -> None:
        assert [r.seq for r in rows] == list(range(len(self.rows), len(self.rows) + len(rows)))
        self.rows.extend(rows)

    async def add_head(self, head: SignedHead) -> None:
        self.heads.append(head)

    async def last_head(self) -> SignedHead | None:
        return self.heads[-1] if self.heads else None

    async def leaf_hashes(self) -> AsyncIterator[bytes]:
        for r in self.rows:
            yield r.leaf_hash


def entries(n: int, start: int = 0) -> list[Entry]:
    out = []
    for i in range(start, start + n):
        _, value = audit_event(
            action="declaration.assessed",
            subject=f"D-{i}",
            actor="assessment",
            input_bytes=b"i",
            output_bytes=b"o",
            producer="assessment",
            occurred_at=datetime(2026, 11, 30, tzinfo=UTC),
        )
        out.append(decode(value))
    return out


SIGNER = Signer(Ed25519PrivateKey.generate())


async def test_appends_once_in_order_and_signs_every_n_records() -> None:
    fake, log = FakeLog(), AuditLog(SIGNER, every_records=4, every_s=60)
    batch = entries(10)
    heads = await log.append(fake, [*batch, batch[0], batch[3]], now_ms=1000)
    assert [r.entry.event_id for r in fake.rows] == [e.event_id for e in batch]
    assert [h.tree_size for h in heads] == [4, 8] == [h.tree_size for h in fake.heads]
    assert await log.append(fake, batch[:5], now_ms=2000) == []  # all known: nothing appended
    assert len(fake.rows) == 10
    for head in fake.heads:
        head.verify(SIGNER.public_key)
        assert head.root_hash == root([r.leaf_hash for r in fake.rows[: head.tree_size]])
    assert [h.first_index for h in fake.heads] == [0, 4]


async def test_the_clock_signs_what_waits_and_nothing_twice() -> None:
    fake, log = FakeLog(), AuditLog(SIGNER, every_records=1000, every_s=5)
    await log.append(fake, entries(3), now_ms=10_000)
    first = await log.tick(fake, now_ms=10_000)
    assert first is not None and first.tree_size == 3
    await log.append(fake, entries(2, start=3), now_ms=11_000)
    assert await log.tick(fake, now_ms=12_000) is None  # not yet 5 s
    later = await log.tick(fake, now_ms=15_001)
    assert later is not None and (later.tree_size, later.first_index) == (5, 3)
    assert await log.tick(fake, now_ms=99_000) is None  # nothing new
    await log.append(fake, entries(1, start=5), now_ms=99_000)
    forced = await log.tick(fake, now_ms=1, force=True)  # at stop; the clock went back
    assert forced is not None and forced.timestamp_ms == 15_001


async def test_a_batch_that_did_not_commit_is_reloaded() -> None:
    fake, log = FakeLog(), AuditLog(SIGNER, every_records=1000, every_s=5)
    await log.append(fake, entries(3), now_ms=0)
    lost = FakeLog()
    lost.rows, lost.heads = list(fake.rows), list(fake.heads)
    await log.append(lost, entries(2, start=3), now_ms=0)  # written to a transaction rolled back
    await log.append(fake, entries(2, start=10), now_ms=0)  # the next batch sees 3 records, not 5
    assert [r.seq for r in fake.rows] == [0, 1, 2, 3, 4]
    head = await log.tick(fake, now_ms=10_000)
    assert head is not None and head.root_hash == root([r.leaf_hash for r in fake.rows])


async def test_no_head_is_signed_over_an_altered_log() -> None:
    fake = FakeLog()
    await AuditLog(SIGNER, every_records=2, every_s=5).append(fake, entries(4), now_ms=0)
    fake.rows[1] = Row(1, fake.rows[1].entry, b"\x00" * 32)
    with pytest.raises(TamperedLog):
        await AuditLog(SIGNER, every_records=2, every_s=5).append(fake, entries(1, start=9), now_ms=0)
    del fake.rows[3]  # the tail cut: fewer records than the head signed
    fake.heads = fake.heads[1:]
    with pytest.raises(TamperedLog):
        await AuditLog(SIGNER, every_records=2, every_s=5).tick(fake, now_ms=0)


def test_heads_sign_rfc9162_tree_head_data() -> None:
    r = bytes(range(32))
    assert head_bytes(7, r, 1234) == struct.pack(">QQ", 1234, 7) + b"\x20" + r + b"\x00\x00"
    head = SIGNER.sign(7, r, 1234, first_index=5, leaves=(b"a" * 32, b"b" * 32))
    again = SignedHead.from_json(head.as_json())
    assert again == head and again.leaves == head.leaves
    again.verify(SIGNER.public_key)
    for field, value in (("tree_size", 8), ("timestamp", 1235), ("root_hash", "00" * 32)):
        with pytest.raises(BadHead):
            SignedHead.from_json({**head.as_json(), field: value}).verify(SIGNER.public_key)
    with pytest.raises(BadHead):
        head.verify(Signer(Ed25519PrivateKey.generate()).public_key)
    with pytest.raises(BadHead):  # leaves that do not end at the head's size
        SignedHead.from_json({**head.as_json(), "first_index": 4})
