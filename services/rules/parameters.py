"""Legal parameters as data: one YAML file per parameter, values keyed by the date they take effect.

A file `parameters/inps/pf/employer_rate.yaml` is the parameter `inps.pf.employer_rate`:

    description: ...
    documentation: ...            # optional
    metadata: {unit: rate}
    values:
      2019-01-01: {value: "0.13", reference: Loi 2018-053, status: confirmed}

`value: null` ends a validity. A value is a scalar or a mapping (e.g. a rate per risk class),
typed by the unit: rates and multiples are quoted decimal strings read as `Decimal` (a YAML
float is refused, so no binary float ever reaches money), amounts and counts are integers.
Every defect is reported with the file it is in.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

Scalar = Decimal | int | bool | str
Value = Scalar | Mapping[str, Scalar]

DECIMAL_UNITS = frozenset({"rate", "multiple"})
INTEGER_UNITS = frozenset({"currency-XOF", "months", "years", "day-of-month", "workers", "days"})
UNITS = DECIMAL_UNITS | INTEGER_UNITS | {"boolean", "text"}
STATUSES = frozenset({"confirmed", "unconfirmed"})

_FILE_KEYS = frozenset({"description", "documentation", "metadata", "values"})
_REQUIRED_FILE_KEYS = frozenset({"description", "metadata", "values"})
_ENTRY_KEYS = frozenset({"value", "reference", "status"})
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_NAME_PART = re.compile(r"^[a-z][a-z0-9_]*$")


class ParameterFileError(ValueError):
    """A parameter file that cannot be trusted; the message names the file."""


_Fail = Callable[[str], ParameterFileError]


class NotInForce(LookupError):
    """No value of a parameter is in force at the date asked."""

    def __init__(self, name: str, at: date) -> None:
        super().__init__(f"parameter {name} has no value in force on {at.isoformat()}")
        self.name = name
        self.at = at


@dataclass(frozen=True, slots=True)
class Entry:
    """One dated value; `value is None` ends the previous validity."""

    since: date
    value: Value | None
    reference: str
    status: str


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    description: str
    unit: str
    entries: tuple[Entry, ...]  # sorted by `since`
    documentation: str | None = None

    def entry_at(self, at: date) -> Entry | None:
        """The entry whose validity covers `at` (a null entry included), or None before the first."""
        i = bisect.bisect_right([e.since for e in self.entries], at)
        return self.entries[i - 1] if i else None

    def value_at(self, at: date) -> Value:
        entry = self.entry_at(at)
        if entry is None or entry.value is None:
            raise NotInForce(self.name, at)
        return entry.value


# libyaml's parser when PyYAML was built with it (several times faster), else pure Python;
# both build plain data only.
if hasattr(yaml, "CSafeLoader"):  # noqa: SIM108 - mypy needs a class, not a conditional expression
    _SafeLoader = yaml.CSafeLoader
else:  # pragma: no cover - PyYAML without libyaml
    _SafeLoader = yaml.SafeLoader  # type: ignore[misc,assignment]


class _StrictLoader(_SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _construct_timestamp(loader: _StrictLoader, node: yaml.ScalarNode) -> str:
    # Keep dates as written: PyYAML would read 2019-1-1 as a date and fail on 2019-13-01 with
    # no file named; `_parse_date` accepts exactly YYYY-MM-DD and says what is wrong.
    return str(loader.construct_scalar(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def name_of(path: Path, root: Path) -> str:
    """`inps/pf/employer_rate.yaml` → `inps.pf.employer_rate`."""
    return ".".join(path.relative_to(root).with_suffix("").parts)


def load_parameter(path: Path, root: Path, data: bytes | None = None) -> Parameter:
    """The parameter in `path` (under `root`); `data`: its bytes, already read (a stored tree)."""
    where = path.relative_to(root).as_posix()

    def fail(message: str) -> ParameterFileError:
        return ParameterFileError(f"{where}: {message}")

    name = name_of(path, root)
    if not all(_NAME_PART.match(part) for part in name.split(".")):
        raise fail(f"bad parameter name {name!r} (lower-case letters, digits, _)")
    try:
        # The loader only builds plain data (SafeLoader subclass).
        doc = yaml.load(path.read_bytes() if data is None else data, Loader=_StrictLoader)
    except (yaml.YAMLError, ValueError) as exc:
        raise fail(f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise fail("expected a mapping with description, metadata, values")
    _check_keys(doc, _FILE_KEYS, _REQUIRED_FILE_KEYS, "file", fail)
    description = doc["description"]
    if not isinstance(description, str) or not description.strip():
        raise fail("description must be a non-empty string")
    documentation = doc.get("documentation")
    if documentation is not None and not isinstance(documentation, str):
        raise fail("documentation must be a string")
    metadata = doc["metadata"]
    if not isinstance(metadata, dict):
        raise fail("metadata must be a mapping")
    _check_keys(metadata, frozenset({"unit"}), frozenset({"unit"}), "metadata", fail)
    unit = metadata["unit"]
    if unit not in UNITS:
        raise fail(f"unknown unit {unit!r}; one of {', '.join(sorted(UNITS))}")
    values = doc["values"]
    if not isinstance(values, dict) or not values:
        raise fail("values must be a non-empty mapping of dates")
    entries: dict[date, Entry] = {}
    for raw_date, raw_entry in values.items():
        since = _parse_date(raw_date, fail)
        if since in entries:
            raise fail(f"date {since.isoformat()} given twice")
        if not isinstance(raw_entry, dict):
            raise fail(f"{since.isoformat()}: expected a mapping with value, reference, status")
        _check_keys(raw_entry, _ENTRY_KEYS, _ENTRY_KEYS, since.isoformat(), fail)
        reference, status = raw_entry["reference"], raw_entry["status"]
        if not isinstance(reference, str) or not reference.strip():
            raise fail(f"{since.isoformat()}: reference must be a non-empty string")
        if status not in STATUSES:
            raise fail(f"{since.isoformat()}: status must be confirmed or unconfirmed, not {status!r}")
        value = _parse_value(raw_entry["value"], unit, _prefixed(fail, since.isoformat()))
        entries[since] = Entry(since, value, reference, status)
    ordered = tuple(entries[d] for d in sorted(entries))
    return Parameter(name, description.strip(), unit, ordered, documentation)


def _check_keys(
    mapping: dict[Any, Any],
    allowed: frozenset[str],
    required: frozenset[str],
    what: str,
    fail: _Fail,
) -> None:
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        raise fail(f"{what}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(required - mapping.keys())
    if missing:
        raise fail(f"{what}: missing field(s) {', '.join(missing)}")


def _prefixed(fail: _Fail, prefix: str) -> _Fail:
    return lambda message: fail(f"{prefix}: {message}")


def _parse_date(raw: object, fail: _Fail) -> date:
    # Unquoted or quoted, a date reaches here as the text written in the file.
    if isinstance(raw, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise fail(f"bad date {raw!r} (expected YYYY-MM-DD)")


def _parse_value(raw: object, unit: str, fail: _Fail) -> Value | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        if not raw:
            raise fail("an empty mapping is not a value")
        table: dict[str, Scalar] = {}
        for key, item in raw.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise fail(f"bad key {key!r} in the value mapping")
            if str(key) in table:
                raise fail(f"key {key!r} given twice in the value mapping")
            table[str(key)] = _parse_scalar(item, unit, _prefixed(fail, f"[{key}]"))
        return table
    return _parse_scalar(raw, unit, fail)


def _parse_scalar(raw: object, unit: str, fail: _Fail) -> Scalar:
    if unit in DECIMAL_UNITS:
        # Quoted strings only: a YAML float has already lost exactness.
        if not isinstance(raw, str) or not _DECIMAL.match(raw):
            raise fail(f'a {unit} is written as a quoted decimal string such as "0.054", not {raw!r}')
        return Decimal(raw)
    if unit in INTEGER_UNITS:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise fail(f"a {unit} value is a non-negative integer, not {raw!r}")
        return raw
    if unit == "boolean":
        if not isinstance(raw, bool):
            raise fail(f"a boolean value is true or false, not {raw!r}")
        return raw
    if not isinstance(raw, str) or not raw:
        raise fail(f"a text value is a non-empty string, not {raw!r}")
    return raw
