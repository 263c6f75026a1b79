"""The audit log's Merkle tree against RFC 9162 / RFC 6962 test vectors, and the verifiers
against the corrupted-proof probe set of transparency-dev/merkle (proof/verify_test.go):
every corrupted proof is rejected."""

from __future__ import annotations

import hashlib
import random

import pytest

from services.control.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_path,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

pytestmark = pytest.mark.unit

h = bytes.fromhex
LEAVES = [
    h(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    h(x)
    for x in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# (leaf index counting from 1, tree size, path) — RFC 6962 vectors as transparency-dev keeps them.
INCLUSION = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
HASHES = [leaf_hash(x) for x in LEAVES]


def test_hashes_are_rfc9162s() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert root([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_the_test_vectors(size: int) -> None:
    assert root(HASHES[:size]) == ROOTS[size - 1]


def test_frontier_gives_every_prefix_root() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(300)]
    f = Frontier()
    for i, leaf in enumerate(leaves):
        f.append(leaf)
        assert f.size == i + 1
        assert f.root() == _mth(leaves[: i + 1])
    assert len(f.hashes) == bin(300).count("1")


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, recursively, as written."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_paths_of_the_test_vectors(index: int, size: int, path: list[str]) -> None:
    expected = [h(p) for p in path]
    assert inclusion_path(index - 1, HASHES[:size]) == expected
    verify_inclusion(index - 1, size, HASHES[index - 1], expected, ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "path"), CONSISTENCY)
def test_consistency_proofs_of_the_test_vectors(first: int, second: int, path: list[str]) -> None:
    expected = [h(p) for p in path]
    assert consistency_proof(first, HASHES[:second]) == expected
    verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], expected)


def test_every_proof_of_random_trees_verifies() -> None:
    rng = random.Random(9162)
    for n in [*range(1, 40), 64, 65, 127, 1000]:
        leaves = [leaf_hash(rng.randbytes(8)) for _ in range(n)]
        r = root(leaves)
        for m in {0, n - 1, rng.randrange(n)}:
            verify_inclusion(m, n, leaves[m], inclusion_path(m, leaves), r)
        for m in {1, n - 1, rng.randrange(1, n + 1)}:
            if 0 < m < n:
                verify_consistency(m, n, root(leaves[:m]), r, consistency_proof(m, leaves))


def _flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ bit]) + out[i][1:]
    return out


def inclusion_probes(
    index: int, size: int, proof: list[bytes], root_hash: bytes, leaf: bytes
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    probes = [
        ("leaf index - 1", index - 1, size, root_hash, leaf, proof),
        ("leaf index + 1", index + 1, size, root_hash, leaf, proof),
        ("leaf index ^ 2", index ^ 2, size, root_hash, leaf, proof),
        ("tree size * 2", index, size * 2, root_hash, leaf, proof),
        ("tree size / 2", index, size // 2, root_hash, leaf, proof),
        ("wrong leaf", index, size, root_hash, b"WrongLeaf", proof),
        ("wrong leaf (a hash)", index, size, root_hash, SOME_HASH, proof),
        ("empty root", index, size, EMPTY_ROOT, leaf, proof),
        ("random root", index, size, SOME_HASH, leaf, proof),
        ("trailing garbage", index, size, root_hash, leaf, [*proof, b""]),
        ("trailing root", index, size, root_hash, leaf, [*proof, root_hash]),
        ("preceding garbage", index, size, root_hash, leaf, [b"", *proof]),
        ("preceding root", index, size, root_hash, leaf, [root_hash, *proof]),
    ]
    probes += [
        (f"proof[{i}] bit 3 flipped", index, size, root_hash, leaf, _flip(proof, i, 8))
        for i in range(len(proof))
    ]
    if proof:
        probes.append(("missing hash", index, size, root_hash, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append(("extra hash", index, size, root_hash, leaf, [proof[0], SOME_HASH, *proof[1:]]))
    return probes


def _inclusion_cases() -> list[tuple[int, int]]:
    cases = [(i - 1, s) for i, s, _ in INCLUSION]
    return cases + [(m, n) for n in (1, 2, 7, 16, 17, 100) for m in {0, n // 2, n - 1}]


@pytest.mark.parametrize(("index", "size"), _inclusion_cases())
def test_every_corrupted_inclusion_proof_is_rejected(index: int, size: int) -> None:
    leaves = HASHES[:size] if size <= 8 else [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    proof, r = inclusion_path(index, leaves), root(leaves)
    verify_inclusion(index, size, leaves[index], proof, r)
    for desc, i, s, rh, leaf, p in inclusion_probes(index, size, proof, r, leaves[index]):
        with pytest.raises(ProofError):
            verify_inclusion(i, s, leaf, p, rh)
            pytest.fail(f"accepted: {desc}")


def consistency_probes(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    probes = [
        ("size1 - 1", size1 - 1, size2, root1, root2, proof),
        ("size1 + 1", size1 + 1, size2, root1, root2, proof),
        ("size1 ^ 2", size1 ^ 2, size2, root1, root2, proof),
        ("size2 * 2", size1, size2 * 2, root1, root2, proof),
        ("size2 / 2", size1, size2 // 2, root1, root2, proof),
        ("wrong root1", size1, size2, b"WrongRoot", root2, proof),
        ("wrong root2", size1, size2, root1, b"WrongRoot", proof),
        ("random root1", size1, size2, SOME_HASH, root2, proof),
        ("random root2", size1, size2, root1, SOME_HASH, proof),
        ("swapped roots", size1, size2, root2, root1, proof),
        ("empty proof", size1, size2, root1, root2, []),
        ("trailing garbage", size1, size2, root1, root2, [*proof, b""]),
        ("trailing root1", size1, size2, root1, root2, [*proof, root1]),
        ("trailing root2", size1, size2, root1, root2, [*proof, root2]),
        ("preceding garbage", size1, size2, root1, root2, [b"", *proof]),
        ("preceding root1", size1, size2, root1, root2, [root1, *proof]),
        ("preceding root2", size1, size2, root1, root2, [root2, *proof]),
        ("preceding proof[0]", size1, size2, root1, root2, [proof[0], *proof]),
        ("missing hash", size1, size2, root1, root2, proof[:-1]),
    ]
    probes += [
        (f"proof[{i}] bit 4 flipped", size1, size2, root1, root2, _flip(proof, i, 16))
        for i in range(len(proof))
    ]
    if len(proof) > 1:
        probes.append(("extra hash", size1, size2, root1, root2, [proof[0], SOME_HASH, *proof[1:]]))
    return probes


def _consistency_cases() -> list[tuple[int, int]]:
    cases = [(a, b) for a, b, _ in CONSISTENCY]
    return cases + [(m, n) for n in (2, 3, 8, 9, 33, 100) for m in {1, n // 2, n - 1}]


@pytest.mark.parametrize(("size1", "size2"), _consistency_cases())
def test_every_corrupted_consistency_proof_is_rejected(size1: int, size2: int) -> None:
    leaves = HASHES[:size2] if size2 <= 8 else [leaf_hash(i.to_bytes(4, "big")) for i in range(size2)]
    proof = consistency_proof(size1, leaves)
    root1, root2 = root(leaves[:size1]), root(leaves)
    verify_consistency(size1, size2, root1, root2, proof)
    for desc, s1, s2, r1, r2, p in consistency_probes(size1, size2, root1, root2, proof):
        with pytest.raises(ProofError):
            verify_consistency(s1, s2, r1, r2, p)
            pytest.fail(f"accepted: {desc}")


def test_degenerate_sizes() -> None:
    a, b = HASHES[0], HASHES[1]
    with pytest.raises(ProofError):
        verify_inclusion(0, 0, a, [], a)
    verify_inclusion(0, 1, a, [], a)
    for leaf, r in ((a, b"\x00" * 31), (b"", a), (a, b)):
        with pytest.raises(ProofError):
            verify_inclusion(0, 1, leaf, [], r)
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    for s1, s2, r1, r2, p in (
        (3, 3, ROOTS[2], ROOTS[3], []),  # same size, other root
        (3, 3, ROOTS[2], ROOTS[2], [EMPTY_ROOT]),  # same size, a proof
        (0, 1, EMPTY_ROOT, ROOTS[0], [EMPTY_ROOT]),  # from the empty tree, a proof
        (2, 1, ROOTS[1], ROOTS[0], []),  # backwards
        (1, 2, ROOTS[0], ROOTS[1], []),  # no proof
    ):
        with pytest.raises(ProofError):
            verify_consistency(s1, s2, r1, r2, p)
