"""How an assessed event is laid out on the wire: its lines split off as bytes, unparsed."""

from __future__ import annotations

from typing import Any

import orjson

_LINES = b',"lines":['
_WARNINGS = b'],"warnings":'
LINES_BYTES = "_lines_json"  # where split_lines keeps the recorded lines, unparsed


def split_lines(raw: bytes) -> dict[str, Any]:
    """An assessed event parsed without its lines, which are kept as their JSON bytes in
    `data[LINES_BYTES]`: a month's lines are millions of small values, and parsing them cost
    the replay more than re-deriving them. They are compared as bytes with the re-derived
    lines encoded the way the assessment encodes them (parsed only when they differ). An
    event not laid out as the assessment lays it out is parsed whole."""
    i = raw.find(_LINES)
    j = raw.rfind(_WARNINGS)
    if i < 0 or j < i:
        return dict(orjson.loads(raw))
    doc: dict[str, Any] = orjson.loads(raw[:i] + raw[j + 1 :])
    doc["data"][LINES_BYTES] = raw[i + len(_LINES) - 1 : j + 1]
    return doc
