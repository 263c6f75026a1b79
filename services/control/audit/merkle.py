"""The audit log's Merkle tree, as RFC 9162 §2.1 defines it (the Certificate Transparency v2 tree).

    leaf hash  SHA-256(0x00 ‖ record)
    node hash  SHA-256(0x01 ‖ left ‖ right)
    MTH(D[n])  the left subtree holds the largest power of two of leaves smaller than n

`root` computes MTH over leaf hashes; `Frontier` keeps the right edge of a growing tree
(one hash per perfect subtree, at most log2(n)) so the store appends in O(1) and knows its
root at any time; `inclusion_path` and `consistency_proof` are PATH(m, D[n]) and
PROOF(m, D[n]); `verify_inclusion` and `verify_consistency` are the verification
algorithms of §2.1.3.2 and §2.1.4.2, word for word. No I/O: the store, the verifier and the
auditor's offline check all call these functions.

Why not a library: pymerkle hashes the same way (0x00/0x01 prefixes, same tree shape), but
its storage interface is synchronous (the store writes with asyncpg, in the batch's
transaction) and its proofs have their own format (a rule and a base hash), whereas these
proofs are RFC 9162's (leaf index, tree size, path): any RFC 9162 verifier checks them.
The code below is the RFC's algorithms and nothing else; tests hold it to the RFC 6962 /
transparency-dev test vectors and probe sets.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof that does not verify (the message says why)."""


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The right edge of a tree of `size` leaves: the roots of its perfect subtrees, largest
    first (one per bit set in `size`). Appending is O(1) amortised; the root is O(log n)."""

    __slots__ = ("hashes", "size")

    def __init__(self) -> None:
        self.size = 0
        self.hashes: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        h, s = leaf, self.size
        while s & 1:  # a perfect subtree of the same height on the left: merge
            h = node_hash(self.hashes.pop(), h)
            s >>= 1
        self.hashes.append(h)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> Frontier:
        other = Frontier()
        other.size, other.hashes = self.size, list(self.hashes)
        return other


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the leaf hashes."""
    f = Frontier()
    f.extend(leaves)
    return f.root()


class Tree:
    """The leaf hashes of a log, with the roots of its perfect subtrees remembered: proofs
    against many sizes of one log (the verifier's heads) cost O(log² n) each, not O(n)."""

    MEMO_FROM = 16  # perfect subtrees of at least this many leaves are remembered

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves
        self._memo: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return len(self.leaves)

    def root(self, lo: int = 0, hi: int | None = None) -> bytes:
        """MTH(D[lo:hi])."""
        hi = len(self.leaves) if hi is None else hi
        n = hi - lo
        if n <= 0:
            return EMPTY_ROOT
        if n == 1:
            return self.leaves[lo]
        perfect = n & (n - 1) == 0 and lo % n == 0 and n >= self.MEMO_FROM
        if perfect and (lo, n) in self._memo:
            return self._memo[(lo, n)]
        if n < self.MEMO_FROM:
            r = root(self.leaves[lo:hi])
        else:
            k = _split(n)
            r = node_hash(self.root(lo, lo + k), self.root(lo + k, hi))
        if perfect:
            self._memo[(lo, n)] = r
        return r

    def inclusion_path(self, m: int, n: int | None = None) -> list[bytes]:
        """PATH(m, D[n]): the audit path of leaf m in the tree of the first n leaves, leaf to root."""
        n = len(self.leaves) if n is None else n
        if not 0 <= m < n <= len(self.leaves):
            raise IndexError(f"leaf {m} is not in a tree of {n}")
        siblings: list[bytes] = []
        lo, hi = 0, n
        while hi - lo > 1:
            k = _split(hi - lo)
            if m - lo < k:
                siblings.append(self.root(lo + k, hi))
                hi = lo + k
            else:
                siblings.append(self.root(lo, lo + k))
                lo = lo + k
        return siblings[::-1]  # the recursion appends the top sibling last

    def consistency_proof(self, m: int, n: int | None = None) -> list[bytes]:
        """PROOF(m, D[n]) for 0 < m < n: the tree of the first m leaves is a prefix of the
        tree of the first n."""
        n = len(self.leaves) if n is None else n
        if not 0 < m < n <= len(self.leaves):
            raise ValueError(f"no consistency proof from {m} to {n} (0 < m < n)")
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self.root(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, complete), self.root(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self.root(lo, lo + k)]


def inclusion_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) over all of `leaves`."""
    return Tree(leaves).inclusion_path(m)


def consistency_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) over all of `leaves`."""
    return Tree(leaves).consistency_proof(m)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")


def root_from_inclusion(leaf_index: int, tree_size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2 steps 1–4: the root the path leads to (raises if it cannot lead anywhere)."""
    if not 0 <= leaf_index < tree_size:
        raise ProofError(f"leaf index {leaf_index} is not below the tree size {tree_size}")
    _check_hash(leaf, "the leaf hash")
    fn, sn = leaf_index, tree_size - 1
    r = leaf
    for i, p in enumerate(path):
        _check_hash(p, f"path[{i}]")
        if sn == 0:
            raise ProofError("the path is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the path is shorter than the tree is high")
    return r


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, path: Sequence[bytes], root_hash: bytes
) -> None:
    """RFC 9162 §2.1.3.2. Raises ProofError unless the leaf is at `leaf_index` in the tree."""
    _check_hash(root_hash, "the root hash")
    if not hmac.compare_digest(root_from_inclusion(leaf_index, tree_size, leaf, path), root_hash):
        raise ProofError("the path does not lead to the root hash")


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Raises ProofError unless the tree of `second` leaves extends the
    tree of `first` leaves."""
    _check_hash(first_hash, "the first root hash")
    _check_hash(second_hash, "the second root hash")
    if not 0 <= first <= second:
        raise ProofError(f"sizes {first} and {second} go backwards")
    if first == second:
        if path:
            raise ProofError("equal sizes take an empty proof")
        if not hmac.compare_digest(first_hash, second_hash):
            raise ProofError("equal sizes with different roots")
        return
    if first == 0:
        if path:
            raise ProofError("a proof from the empty tree is empty")
        return
    if not path:
        raise ProofError("empty consistency proof")
    for i, c in enumerate(path):
        _check_hash(c, f"path[{i}]")
    proof = list(path)
    if first & (first - 1) == 0:  # an exact power of two: the first tree is a subtree
        proof.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is high")
    if not hmac.compare_digest(fr, first_hash):
        raise ProofError("the proof does not lead to the first root")
    if not hmac.compare_digest(sr, second_hash):
        raise ProofError("the proof does not lead to the second root")
