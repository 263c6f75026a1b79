"""Golden cases: the worked examples of RULES.md and the cases around every change of law.

The data files of this folder hold the cases, one family per file; this module only runs
them through the functions `kalo rules` and the services call (assess_declaration,
liquidate_claim, control_flags, params_in_force) and compares the results.
"""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.rules import (
    assess_declaration,
    assess_declaration_compact,
    control_flags,
    liquidate_claim,
    load_ruleset,
    params_in_force,
    validate_declaration,
)
from services.rules.dates import add_months, parse_period, period_text
from services.rules.ruleset import jsonable
from tests.properties.agreement import assert_compact_agrees

HERE = Path(__file__).parent
RULESET = load_ruleset()
ITEM_KEYS = ("branch", "fund", "payer", "rate", "base", "amount")


def _load(family: str) -> dict[str, Any]:
    doc = yaml.safe_load((HERE / f"{family}.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and doc.get("cases"), f"{family}.yaml has no cases"
    return doc


def _params(family: str) -> list[Any]:
    doc = _load(family)
    defaults = doc.get("defaults", {})
    return [pytest.param(case, defaults, id=case["name"]) for case in doc["cases"]]


def _merge(base: Any, override: Any) -> Any:
    """`override` laid over `base`, mappings merged key by key."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            out[key] = _merge(base.get(key), value)
        return out
    return copy.deepcopy(override)


def _matches(actual: Any, expected: Any, path: str = "$") -> None:
    """Every key written in `expected` equals the one in `actual`; lists match element-wise."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, want in expected.items():
            assert key in actual, f"{path}: no key {key!r} in {sorted(actual)}"
            if key == "items":
                want = [
                    dict(zip(ITEM_KEYS, row, strict=True)) if isinstance(row, list) else row for row in want
                ]
            _matches(actual[key], want, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{path}: {len(actual)} elements, expected {len(expected)}"
        for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
            _matches(got, want, f"{path}[{i}]")
    else:
        # Same type too: the rate "0.50" is not 0.5, the amount 100 is not "100", False is not 0.
        assert type(actual) is type(expected) and actual == expected, f"{path}: {actual!r} != {expected!r}"


def _item(row: Any) -> Any:
    """An item row [branch, fund, payer, rate, base, amount] as the §5 object."""
    return dict(zip(ITEM_KEYS, row, strict=True)) if isinstance(row, list) else row


def _declaration(case: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = _merge(defaults.get("declaration", {}), case["declaration"])
    line_defaults = defaults.get("line", {})
    doc["lines"] = [_merge(line_defaults, line) for line in doc.get("lines", [])]
    return doc


def _career(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans {from, months, base} written out month by month."""
    out = []
    for entry in entries:
        if "from" in entry:
            first = parse_period(entry["from"])
            assert first is not None
            out += [
                {"period": period_text(add_months(first, k)), "base": entry["base"]}
                for k in range(entry["months"])
            ]
        else:
            out.append(entry)
    return out


def _claim(case: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    claim: dict[str, Any] = _merge(defaults.get("claim", {}), case["claim"])
    claim["career"] = _career(claim["career"])
    return claim


def _check_assessment(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    doc = _declaration(case, defaults)
    result = assess_declaration(doc, RULESET)
    # validate_declaration (what a caller checks before accepting) finds the same errors.
    assert [e.as_json() for e in validate_declaration(doc, RULESET)] == result["errors"]
    # The services' compact form carries the same amounts to the franc.
    assert_compact_agrees(assess_declaration_compact(doc, RULESET), result)
    expect = dict(case["expect"])
    want_errors = expect.pop("errors", None)
    _matches(result, expect)
    assert result["ruleset"] == RULESET.id
    if want_errors is not None:
        got = sorted((e["line"] or 0, e["worker_id"] or "", e["code"]) for e in result["errors"])
        want = sorted((e["line"] or 0, e["worker_id"] or "", e["code"]) for e in want_errors)
        assert got == want, result["errors"]
        assert all(isinstance(e["message"], str) and e["message"] for e in result["errors"])


@pytest.mark.parametrize(("case", "defaults"), _params("contributions"))
def test_contributions(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    _check_assessment(case, defaults)


@pytest.mark.parametrize(("case", "defaults"), _params("validation"))
def test_validation(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    _check_assessment(case, defaults)


@pytest.mark.parametrize(("case", "defaults"), _params("due_dates"))
def test_due_dates_lateness_and_surcharge(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    _check_assessment(case, defaults)


@pytest.mark.parametrize(("case", "defaults"), _params("liquidation"))
def test_liquidation(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    result = liquidate_claim(_claim(case, defaults), RULESET)
    _matches(result, case["expect"])
    assert result["ruleset"] == RULESET.id


@pytest.mark.parametrize(("case", "defaults"), _params("control"))
def test_control_checks(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    claim = _claim(case, defaults)
    liquidation = {**liquidate_claim(claim, RULESET), **case.get("tamper", {})}
    career = claim.pop("career")
    approved = case.get("already_approved", defaults.get("already_approved", False))
    flags = control_flags(claim, career, liquidation, RULESET, already_approved=approved)
    assert sorted(f["code"] for f in flags) == sorted(case["flags"]), flags
    assert all(f["message"] for f in flags)


@pytest.mark.parametrize(("case", "defaults"), _params("parameters"))
def test_parameters_in_force(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    rows = {r.name: r for r in params_in_force(RULESET, date.fromisoformat(case["at"]))}
    if case.get("absent"):
        assert case["name"] not in rows
        return
    row = rows[case["name"]]
    assert jsonable(row.value) == case["value"]
    assert row.status == case["status"]
    assert row.reference.strip()


def test_every_parameter_file_is_in_the_golden_inventory() -> None:
    listed = {case["name"] for case in _load("parameters")["cases"]}
    assert set(RULESET.parameters) == listed
