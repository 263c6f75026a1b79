"""What an auditor runs: the audit log checked against its signed heads, inclusion proofs
made and checked. No CLI here (services/cli/audit.py calls these).

`verify` trusts only the public key. From the published heads (the heads file or the topic
`kalo.audit.heads`, never the database's copy) it keeps those whose signature verifies,
rebuilds the leaf hashes they publish and checks that they give each head's root and that
consecutive heads are consistent (RFC 9162 PROOF, verified with §2.1.4.2). Then it reads
every record of the store, recomputes its leaf hash and compares it with the signed one at
the same index: the first record that differs is named, with what happened to it (altered,
deleted, inserted, cut off). Heads published without their leaves are checked by root only:
then the first bad record is placed between two heads.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.control.audit.heads import BadHead, SignedHead
from services.control.audit.merkle import (
    Frontier,
    ProofError,
    Tree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    event_id: uuid.UUID
    record: bytes
    leaf_hash: bytes


@dataclass
class Problem:
    kind: str  # altered | deleted | inserted | missing | cut | unsigned-change | bad-head | ...
    message: str
    seq: int | None = None
    event_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "event_id": self.event_id, "message": self.message}


@dataclass
class Report:
    records: int = 0
    heads: int = 0
    heads_trusted: int = 0
    signed_size: int = 0
    latest_head: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.heads_trusted > 0

    @property
    def first_bad(self) -> Problem | None:
        records = [p for p in self.problems if p.seq is not None]
        return (
            min(records, key=lambda p: p.seq or 0)
            if records
            else (self.problems[0] if self.problems else None)
        )

    def as_json(self) -> dict[str, Any]:
        first = self.first_bad
        return {
            "ok": self.ok,
            "records": self.records,
            "heads": self.heads,
            "heads_trusted": self.heads_trusted,
            "signed_size": self.signed_size,
            "unsigned_records": max(0, self.records - self.signed_size),
            "latest_head": self.latest_head,
            "first_bad_record": first.as_json() if first else None,
            "problems": [p.as_json() for p in self.problems],
        }


def trusted_heads(docs: Iterable[Any], public_key: Ed25519PublicKey, report: Report) -> list[SignedHead]:
    """The heads whose signature verifies, in order, duplicates dropped; the others reported."""
    heads: dict[tuple[int, bytes, int], SignedHead] = {}
    for n, doc in enumerate(docs):
        report.heads += 1
        try:
            head = SignedHead.from_json(doc)
            head.verify(public_key)
        except BadHead as exc:
            report.problems.append(Problem("bad-head", f"published head #{n + 1}: {exc}"))
            continue
        key = (head.tree_size, head.root_hash, head.timestamp_ms)
        if key not in heads or (heads[key].leaves is None and head.leaves is not None):
            heads[key] = head
    ordered = sorted(heads.values(), key=lambda h: (h.tree_size, h.timestamp_ms))
    for a, b in itertools.pairwise(ordered):
        if b.timestamp_ms < a.timestamp_ms:
            report.problems.append(
                Problem(
                    "bad-head", f"head of size {b.tree_size} is dated before the head of size {a.tree_size}"
                )
            )
        if a.tree_size == b.tree_size and a.root_hash != b.root_hash:
            report.problems.append(
                Problem("fork", f"two signed heads of size {a.tree_size} with different roots (a forked log)")
            )
    report.heads_trusted = len(ordered)
    return ordered


def signed_leaves(heads: list[SignedHead], report: Report) -> list[bytes] | None:
    """The leaf hashes the heads publish, checked against every head's root; None when some
    head lacks them (the check then goes by roots only)."""
    leaves: list[bytes] = []
    frontier = Frontier()
    for head in heads:
        if head.tree_size < len(leaves):
            continue  # an earlier size than one already covered: checked below by root
        if head.leaves is None or head.first_index is None or head.first_index > len(leaves):
            return None
        skip = len(leaves) - head.first_index
        if list(head.leaves[:skip]) != leaves[head.first_index :]:
            report.problems.append(
                Problem("bad-head", f"head of size {head.tree_size} republishes other leaves than before")
            )
            return None
        for leaf in head.leaves[skip:]:
            leaves.append(leaf)
            frontier.append(leaf)
        if frontier.root() != head.root_hash:
            report.problems.append(
                Problem(
                    "bad-head",
                    f"head of size {head.tree_size} at {head.time}: its published leaves do not give its "
                    "signed root (the heads were altered after signing)",
                )
            )
            return None
    return leaves


def check_consistency(heads: list[SignedHead], tree: Tree, report: Report) -> None:
    """Each head extends the one before (RFC 9162 consistency proof over `tree`)."""
    for a, b in itertools.pairwise(heads):
        if b.tree_size > len(tree):
            return
        try:
            proof = tree.consistency_proof(a.tree_size, b.tree_size) if 0 < a.tree_size < b.tree_size else []
            verify_consistency(a.tree_size, b.tree_size, a.root_hash, b.root_hash, proof)
        except ProofError as exc:
            report.problems.append(
                Problem("inconsistent-heads", f"heads of size {a.tree_size} and {b.tree_size}: {exc}")
            )


async def verify(
    records: AsyncIterator[StoredRecord], head_docs: Iterable[Any], public_key: Ed25519PublicKey
) -> Report:
    report = Report()
    heads = trusted_heads(head_docs, public_key, report)
    if not heads:
        report.problems.append(Problem("no-head", "no published head verifies with this public key"))
    signed = signed_leaves(heads, report) if heads else None
    if heads:
        report.signed_size = heads[-1].tree_size
        report.latest_head = heads[-1].as_json(with_leaves=False)
    if signed is not None:
        check_consistency(heads, Tree(signed), report)

    stored: list[bytes] = []  # recomputed from the records' bytes
    ids: list[str] = []
    expected = 0
    async for r in records:
        if r.seq != expected:
            if r.seq > expected:
                report.problems.append(
                    Problem(
                        "missing", f"records {expected}…{r.seq - 1} are missing (numbering jumps)", expected
                    )
                )
            else:
                report.problems.append(Problem("numbering", f"record {r.seq} is numbered twice", r.seq))
            expected = r.seq
        leaf = leaf_hash(r.record)
        event_id = str(r.event_id)
        if leaf != r.leaf_hash:
            report.problems.append(
                Problem(
                    "altered", f"record {r.seq}: its bytes do not give its stored leaf hash", r.seq, event_id
                )
            )
        try:
            inner = orjson.loads(r.record).get("id")
        except (orjson.JSONDecodeError, AttributeError):
            inner = None
        if inner != event_id:
            report.problems.append(
                Problem(
                    "altered",
                    f"record {r.seq}: the record is not the event {event_id} it is filed as",
                    r.seq,
                    event_id,
                )
            )
        stored.append(leaf)
        ids.append(event_id)
        expected += 1
    report.records = len(stored)

    if signed is not None:
        _compare_leaves(stored, ids, signed, heads, report)
    elif heads:
        _compare_roots(stored, ids, heads, report)
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report


def _compare_leaves(
    stored: list[bytes], ids: list[str], signed: list[bytes], heads: list[SignedHead], report: Report
) -> None:
    n = min(len(stored), len(signed))
    first = next((i for i in range(n) if stored[i] != signed[i]), None)
    if first is None:
        if len(stored) < len(signed):
            head = next(h for h in heads if h.tree_size >= len(signed))
            report.problems.append(
                Problem(
                    "cut",
                    f"records {len(stored)}…{len(signed) - 1} are gone: the log was cut after record "
                    f"{len(stored) - 1} (the head of size {head.tree_size} signed at {head.time} holds them)",
                    len(stored),
                )
            )
        return
    if first + 1 < len(signed) and stored[first] == signed[first + 1]:
        kind, what = "deleted", f"the record signed at {first} was deleted (the next ones moved up)"
    elif first + 1 < len(stored) and stored[first + 1] == signed[first]:
        kind, what = "inserted", f"a record was inserted at {first} (the signed ones moved down)"
    else:
        kind, what = "altered", "its bytes differ from the record signed at this index"
    report.problems.append(Problem(kind, f"record {first} (event {ids[first]}): {what}", first, ids[first]))


def _compare_roots(stored: list[bytes], ids: list[str], heads: list[SignedHead], report: Report) -> None:
    frontier = Frontier()
    good = 0
    by_size = {h.tree_size: h for h in heads}
    sizes = sorted(by_size)
    for i, leaf in enumerate([*stored, None]):
        size = i
        if size in by_size:
            head = by_size[size]
            if frontier.root() != head.root_hash:
                if any(p.seq is not None and good <= p.seq < size for p in report.problems):
                    return  # a record of the interval is already named
                report.problems.append(
                    Problem(
                        "altered",
                        f"the log differs from the head of size {size} signed at {head.time}: the first bad "
                        f"record is one of records {good}…{size - 1}",
                        good,
                        ids[good] if good < len(ids) else None,
                    )
                )
                return
            good = size
        if leaf is None:
            break
        frontier.append(leaf)
    beyond = [s for s in sizes if s > len(stored)]
    if beyond:
        report.problems.append(
            Problem("cut", f"the heads sign {beyond[-1]} records, the store holds {len(stored)}", len(stored))
        )


def make_proof(
    event_id: uuid.UUID, seq: int, record: bytes, leaves: list[bytes], head: SignedHead
) -> dict[str, Any]:
    """An inclusion proof of record `seq` against `head` (whose size is `len(leaves)`)."""
    path = Tree(leaves).inclusion_path(seq, head.tree_size)
    return {
        "event_id": str(event_id),
        "leaf_index": seq,
        "tree_size": head.tree_size,
        "leaf_hash": leaf_hash(record).hex(),
        "record": record.decode(),
        "inclusion_path": [p.hex() for p in path],
        "head": head.as_json(with_leaves=False),
    }


def check_proof(proof: dict[str, Any], head_doc: dict[str, Any], public_key: Ed25519PublicKey) -> SignedHead:
    """Check an inclusion proof offline against a signed head; raises ProofError or BadHead."""
    head = SignedHead.from_json(head_doc)
    head.verify(public_key)
    try:
        leaf_index, tree_size = proof["leaf_index"], proof["tree_size"]
        leaf = bytes.fromhex(proof["leaf_hash"])
        path = [bytes.fromhex(p) for p in proof["inclusion_path"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"not an inclusion proof: {exc!r}") from None
    if type(leaf_index) is not int or type(tree_size) is not int:
        raise ProofError("leaf_index and tree_size are integers")
    if tree_size != head.tree_size:
        raise ProofError(f"the proof is for a tree of {tree_size}, the head signs {head.tree_size}")
    record = proof.get("record")
    if record is not None:
        if leaf_hash(str(record).encode()) != leaf:
            raise ProofError("the record does not give the proof's leaf hash")
        if "event_id" in proof and orjson.loads(record).get("id") != proof["event_id"]:
            raise ProofError("the record is not the event the proof names")
    verify_inclusion(leaf_index, tree_size, leaf, path, head.root_hash)
    return head
