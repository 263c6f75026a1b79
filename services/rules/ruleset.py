"""A ruleset: the whole parameter tree, identified by a hash of its content.

The ruleset id is stamped on every computed event, so any amount can be recomputed later
with exactly the parameters that produced it. It hashes the sorted relative paths and the
bytes of the files, so it is the same on every machine and changes with any edit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from services.rules.parameters import (
    Entry,
    NotInForce,
    Parameter,
    Scalar,
    Value,
    load_parameter,
    name_of,
)

DEFAULT_ROOT = Path(__file__).parent / "parameters"
ID_PREFIX = "rs-"
ID_HEX_CHARS = 16


def _parameter_files(root: Path) -> list[Path]:
    # Sorted by POSIX relative path so the order (and the hash) is the same everywhere.
    return sorted(root.rglob("*.yaml"), key=lambda p: p.relative_to(root).as_posix())


def ruleset_id(root: Path) -> str:
    return tree_id(read_tree(root))


def read_tree(root: Path) -> dict[str, bytes]:
    """The parameter tree as it is stored under its id: relative POSIX path → file bytes."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in _parameter_files(root)}


def tree_id(files: Mapping[str, bytes]) -> str:
    """The ruleset id of a parameter tree (relative path → bytes): its content hash."""
    digest = hashlib.sha256()
    for rel_path in sorted(files):
        rel, data = rel_path.encode(), files[rel_path]
        # Lengths make the stream unambiguous: no two trees hash the same bytes.
        digest.update(b"%d:%s%d:" % (len(rel), rel, len(data)))
        digest.update(data)
    return ID_PREFIX + digest.hexdigest()[:ID_HEX_CHARS]


class Ruleset:
    """The parameters of one tree, read by name at a date.

    Computations keep small caches here (e.g. the items of a category for a period), so a
    ruleset is treated as immutable once loaded.
    """

    def __init__(
        self,
        root: Path,
        parameters: Mapping[str, Parameter],
        ruleset_id: str,
        files: Mapping[str, bytes] | None = None,
    ) -> None:
        self.root = root
        self.parameters: Mapping[str, Parameter] = dict(sorted(parameters.items()))
        self.id = ruleset_id
        # The tree exactly as loaded (relative path → bytes): what the services store under
        # the id, so that an auditor re-derives with it years later.
        self.files: Mapping[str, bytes] = dict(files or {})
        self.cache: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"Ruleset({self.id}, {len(self.parameters)} parameters, root={self.root})"

    def parameter(self, name: str) -> Parameter:
        try:
            return self.parameters[name]
        except KeyError:
            raise KeyError(f"no parameter {name} in the ruleset {self.id}") from None

    def value(self, name: str, at: date) -> Value:
        """The value in force at `at`; NotInForce before the first value or after a null."""
        return self.parameter(name).value_at(at)

    def optional(self, name: str, at: date) -> Value | None:
        """The value in force at `at`, or None when none is (e.g. no ceiling)."""
        entry = self.parameter(name).entry_at(at)
        return None if entry is None else entry.value

    def rate(self, name: str, at: date) -> Decimal:
        return _expect(self.value(name, at), Decimal, name)

    def integer(self, name: str, at: date) -> int:
        value = self.value(name, at)
        if isinstance(value, bool):
            raise TypeError(f"parameter {name} is not an integer")
        return _expect(value, int, name)

    def optional_integer(self, name: str, at: date) -> int | None:
        """An integer in force at `at`, or None when none is (before the first value, after a null)."""
        value = self.optional(name, at)
        if value is None:
            return None
        if isinstance(value, bool):
            raise TypeError(f"parameter {name} is not an integer")
        return _expect(value, int, name)

    def text(self, name: str, at: date) -> str:
        return _expect(self.value(name, at), str, name)

    def flag(self, name: str, at: date, *, default: bool) -> bool:
        """A boolean switch; `default` before its first value."""
        value = self.optional(name, at)
        return default if value is None else _expect(value, bool, name)

    def table(self, name: str, at: date) -> Mapping[str, Scalar]:
        value = self.value(name, at)
        if not isinstance(value, Mapping):
            raise TypeError(f"parameter {name} is not a mapping")
        return value


T = TypeVar("T")


def _expect(value: object, kind: type[T], name: str) -> T:
    if not isinstance(value, kind):
        raise TypeError(f"parameter {name} is not a {kind.__name__}")
    return value


def load_ruleset(root: Path | None = None) -> Ruleset:
    """Load and check a parameter tree (the package's own by default, loaded once)."""
    if root is None:
        return _default_ruleset()
    return _load(Path(root))


@cache
def _default_ruleset() -> Ruleset:
    return _load(DEFAULT_ROOT)


def _load(root: Path) -> Ruleset:
    if not root.is_dir():
        raise FileNotFoundError(f"no parameter directory at {root}")
    return load_tree(read_tree(root), root=root)


class RulesetMismatch(ValueError):
    """A stored tree whose content does not hash to the id it is stored under."""


def load_tree(
    files: Mapping[str, bytes], *, root: Path | None = None, expected_id: str | None = None
) -> Ruleset:
    """A ruleset from a stored parameter tree (relative path → bytes), checked like the files
    of a directory; `expected_id`: refuse a tree whose content hash is another."""
    rid = tree_id(files)
    if expected_id is not None and rid != expected_id:
        raise RulesetMismatch(f"the tree stored as {expected_id} hashes to {rid}")
    base = root or Path("/stored") / rid
    parameters = {}
    for rel in sorted(files):
        if not rel.endswith(".yaml") or rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError(f"{rel}: not a parameter file of a tree")
        path = base / rel
        parameters[name_of(path, base)] = load_parameter(path, base, files[rel])
    return Ruleset(base, parameters, rid, files)


@dataclass(frozen=True, slots=True)
class ParameterInForce:
    """One row of `kalo rules params`."""

    name: str
    value: Value | None
    unit: str
    status: str
    reference: str
    since: date

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": jsonable(self.value),
            "unit": self.unit,
            "status": self.status,
            "since": self.since.isoformat(),
            "reference": self.reference,
        }


def params_in_force(ruleset: Ruleset, at: date) -> list[ParameterInForce]:
    """Every parameter with an entry covering `at` (a null one shows that nothing applies)."""
    rows = []
    for parameter in ruleset.parameters.values():
        entry = parameter.entry_at(at)
        if entry is not None:
            rows.append(_row(parameter, entry))
    return rows


def params_history(ruleset: Ruleset) -> list[ParameterInForce]:
    """Every dated value of every parameter."""
    return [_row(p, e) for p in ruleset.parameters.values() for e in p.entries]


def _row(parameter: Parameter, entry: Entry) -> ParameterInForce:
    return ParameterInForce(
        parameter.name, entry.value, parameter.unit, entry.status, entry.reference, entry.since
    )


def jsonable(value: Value | None) -> Any:
    """Decimals as strings (as written in the files), mappings as objects."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    return value


__all__ = [
    "NotInForce",
    "ParameterInForce",
    "Ruleset",
    "RulesetMismatch",
    "load_ruleset",
    "load_tree",
    "params_history",
    "params_in_force",
    "read_tree",
    "ruleset_id",
    "tree_id",
]
