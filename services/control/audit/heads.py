"""Signed tree heads: (tree size, root hash, time) signed with the log's Ed25519 key.

The signed bytes are RFC 9162 §4.10's TreeHeadDataV2 (TLS encoding):

    uint64 timestamp (ms since the epoch) ‖ uint64 tree_size ‖ uint8 32 ‖ root_hash ‖ uint16 0 (no extensions)

A head names its key by `key_id`, the SHA-256 of the raw 32-byte public key (hex), never
the key. Published heads (the topic `kalo.audit.heads`, the heads file) also carry the
leaf hashes appended since the previous head (`first_index`, `leaves`): an auditor holding
them checks every record of the store one by one, and recomputes the root from them, so
they are as trustworthy as the signature.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.control.audit.merkle import HASH_SIZE


class BadHead(ValueError):
    """A head that is malformed or whose signature does not verify."""


def head_bytes(tree_size: int, root_hash: bytes, timestamp_ms: int) -> bytes:
    """RFC 9162 TreeHeadDataV2: what the signature covers."""
    if len(root_hash) != HASH_SIZE:
        raise BadHead("a root hash is 32 bytes")
    return struct.pack(">QQB", timestamp_ms, tree_size, HASH_SIZE) + root_hash + struct.pack(">H", 0)


@dataclass(frozen=True)
class SignedHead:
    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes
    first_index: int | None = None  # the leaves appended since the previous head
    leaves: tuple[bytes, ...] | None = field(default=None, compare=False)

    @property
    def time(self) -> str:
        return (
            datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Raises BadHead unless signed by this key."""
        if self.key_id != key_id(public_key):
            raise BadHead(
                f"head of size {self.tree_size} is signed by key {self.key_id}, not {key_id(public_key)}"
            )
        try:
            public_key.verify(self.signature, head_bytes(self.tree_size, self.root_hash, self.timestamp_ms))
        except InvalidSignature:
            raise BadHead(
                f"head of size {self.tree_size} at {self.time}: the signature does not verify"
            ) from None

    def as_json(self, *, with_leaves: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp_ms,
            "time": self.time,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }
        if with_leaves and self.leaves is not None:
            doc["first_index"] = self.first_index
            doc["leaves"] = [leaf.hex() for leaf in self.leaves]
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> SignedHead:
        try:
            leaves = doc.get("leaves")
            head = cls(
                tree_size=_int(doc["tree_size"]),
                root_hash=bytes.fromhex(doc["root_hash"]),
                timestamp_ms=_int(doc["timestamp"]),
                key_id=str(doc["key_id"]),
                signature=base64.b64decode(doc["signature"], validate=True),
                first_index=None if leaves is None else _int(doc["first_index"]),
                leaves=None if leaves is None else tuple(bytes.fromhex(x) for x in leaves),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadHead(f"not a signed tree head: {exc!r}") from None
        if len(head.root_hash) != HASH_SIZE or any(len(x) != HASH_SIZE for x in head.leaves or ()):
            raise BadHead("hashes in a head are 32 bytes")
        leaves, first = head.leaves, head.first_index
        if leaves is not None and first is not None and first + len(leaves) != head.tree_size:
            raise BadHead(f"head of size {head.tree_size}: its leaves do not end at its size")
        return head


def _int(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


class Signer:
    """The log's private key (a PEM file: `kalo audit keygen` makes one)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(key)

    def sign(
        self,
        tree_size: int,
        root_hash: bytes,
        timestamp_ms: int,
        *,
        first_index: int | None = None,
        leaves: tuple[bytes, ...] | None = None,
    ) -> SignedHead:
        signature = self.private_key.sign(head_bytes(tree_size, root_hash, timestamp_ms))
        return SignedHead(tree_size, root_hash, timestamp_ms, self.key_id, signature, first_index, leaves)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """A PEM public key (`kalo audit keygen` writes KEY.pub), or a private key's public half."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        return Signer.from_file(path).public_key
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def generate_key(path: str | Path) -> tuple[Path, Path, str]:
    """A new Ed25519 key: the private key at `path` (mode 0600, never overwritten) and its
    public key at `path`.pub. Returns both paths and the key id."""
    private_path, public_path = Path(path), Path(f"{path}.pub")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path, key_id(key.public_key())
