"""`kalo audit verify`'s logic on records in memory: every kind of tampering named, with heads
that publish their leaves (each record checked) and with heads that do not (the bad record
placed between two heads); forged and altered heads refused; proofs checked offline."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.control.audit.heads import Signer
from services.control.audit.merkle import ProofError, Tree, leaf_hash
from services.control.audit.verify import StoredRecord, check_proof, make_proof, verify

pytestmark = pytest.mark.unit

SIGNER = Signer(Ed25519PrivateKey.generate())
N = 20


def records(n: int = N) -> list[StoredRecord]:
    out = []
    for i in range(n):
        event_id = uuid.uuid5(uuid.NAMESPACE_OID, str(i))
        record = orjson.dumps({"data": {"n": i}, "id": str(event_id)})
        out.append(StoredRecord(i, event_id, record, leaf_hash(record)))
    return out


def heads(rows: list[StoredRecord], sizes: tuple[int, ...] = (5, 10, 20), leaves: bool = True) -> list[dict]:
    tree = Tree([r.leaf_hash for r in rows])
    out, previous = [], 0
    for t, size in enumerate(sizes):
        segment = tuple(r.leaf_hash for r in rows[previous:size]) if leaves else None
        head = SIGNER.sign(
            size, tree.root(0, size), 1000 + t, first_index=previous if leaves else None, leaves=segment
        )
        out.append(head.as_json())
        previous = size
    return out


async def each(rows: list[StoredRecord]) -> AsyncIterator[StoredRecord]:
    for r in rows:
        yield r


def changed(r: StoredRecord, record: bytes, *, rehash: bool) -> StoredRecord:
    return StoredRecord(r.seq, r.event_id, record, leaf_hash(record) if rehash else r.leaf_hash)


async def first_bad(rows: list[StoredRecord], head_docs: list[dict]) -> tuple[int | None, str]:
    report = await verify(each(rows), head_docs, SIGNER.public_key)
    assert not report.ok
    bad = report.first_bad
    assert bad is not None
    return bad.seq, bad.kind


async def test_an_untouched_log_verifies() -> None:
    rows = records()
    report = await verify(each(rows), heads(rows), SIGNER.public_key)
    assert report.ok and report.records == N and report.signed_size == N
    extra = records(N + 3)  # appended after the latest head: counted, not judged
    report = await verify(each(extra), heads(rows), SIGNER.public_key)
    assert report.ok and report.as_json()["unsigned_records"] == 3


@pytest.mark.parametrize("with_leaves", [True, False])
async def test_each_tampering_is_named(with_leaves: bool) -> None:
    rows = records()
    signed = heads(rows, leaves=with_leaves)
    forged = orjson.dumps({"data": {"n": 7, "forged": True}, "id": str(rows[7].event_id)})
    cases = {
        "altered": [*rows[:7], changed(rows[7], forged, rehash=True), *rows[8:]],
        "deleted": [
            *rows[:7],
            *(StoredRecord(r.seq - 1, r.event_id, r.record, r.leaf_hash) for r in rows[8:]),
        ],
        "inserted": [
            *rows[:7],
            changed(rows[7], forged, rehash=True),
            *(StoredRecord(r.seq + 1, r.event_id, r.record, r.leaf_hash) for r in rows[7:]),
        ],
        "cut": rows[:13],
    }
    for kind, tampered in cases.items():
        seq, named = await first_bad(tampered, signed)
        if with_leaves:
            assert (seq, named) == ((13, "cut") if kind == "cut" else (7, kind)), kind
        else:  # by roots only: the first record the heads could not vouch for
            assert (seq, named) == ((13, "cut") if kind == "cut" else (5, "altered")), kind
    # A changed byte with the stored leaf hash left alone is named without any head.
    assert await first_bad(
        [*rows[:3], changed(rows[3], b"x" + rows[3].record, rehash=False), *rows[4:]], signed
    ) == (
        3,
        "altered",
    )


async def test_forged_and_altered_heads_are_refused() -> None:
    rows = records()
    other = Signer(Ed25519PrivateKey.generate())
    forged = [
        {
            **h,
            "signature": other.sign(h["tree_size"], bytes.fromhex(h["root_hash"]), h["timestamp"]).as_json()[
                "signature"
            ],
        }
        for h in heads(rows)
    ]
    report = await verify(each(rows), forged, SIGNER.public_key)
    assert not report.ok and report.heads_trusted == 0
    altered = heads(rows)
    altered[1]["leaves"][0] = "00" * 32
    report = await verify(each(rows), altered, SIGNER.public_key)
    assert not report.ok and any("published leaves" in p.message for p in report.problems)


def test_a_proof_checks_against_its_head_and_nothing_else() -> None:
    rows = records()
    head = SIGNER.sign(N, Tree([r.leaf_hash for r in rows]).root(), 5000)
    proof = make_proof(rows[11].event_id, 11, rows[11].record, [r.leaf_hash for r in rows], head)
    assert check_proof(proof, head.as_json(), SIGNER.public_key) == head
    with pytest.raises(ProofError):
        check_proof({**proof, "leaf_index": 12}, head.as_json(), SIGNER.public_key)
    with pytest.raises(ProofError):
        check_proof({**proof, "record": rows[12].record.decode()}, head.as_json(), SIGNER.public_key)
    smaller = SIGNER.sign(N - 1, Tree([r.leaf_hash for r in rows[:-1]]).root(), 4000)
    with pytest.raises(ProofError):
        check_proof(proof, smaller.as_json(), SIGNER.public_key)
