"""Hashes used in receipts and audit records."""

import hashlib

import orjson


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces: the same document always hashes the same."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def api_key_hash(key: str) -> str:
    # API keys are long random tokens: a plain SHA-256 is enough (no password stretching).
    return hashlib.sha256(key.encode()).hexdigest()
