"""The dated parameter files: what the loader accepts, what it rejects (naming the file),
lookups at a date, and the end of a validity."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from services.rules import NotInForce, ParameterFileError, load_ruleset, ruleset_id
from services.rules.parameters import load_parameter

GOOD = """\
description: A rate for the tests.
metadata:
  unit: rate
values:
  2015-01-01: {value: "0.05", reference: Decree A, status: confirmed}
  2019-01-01: {value: "0.13", reference: Law B, status: unconfirmed}
  2021-01-01: {value: null, reference: Law C repeals it, status: confirmed}
  2023-01-01: {value: "0.02", reference: Law D, status: confirmed}
"""


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _load(tmp_path: Path, text: str, rel: str = "fund/branch/rate.yaml") -> None:
    load_parameter(_write(tmp_path, rel, text), tmp_path)


def test_a_value_is_looked_up_at_the_date_it_is_in_force(tmp_path: Path) -> None:
    parameter = load_parameter(_write(tmp_path, "fund/branch/rate.yaml", GOOD), tmp_path)
    assert parameter.name == "fund.branch.rate"
    assert parameter.value_at(date(2015, 1, 1)) == Decimal("0.05")
    assert parameter.value_at(date(2018, 12, 31)) == Decimal("0.05")
    assert parameter.value_at(date(2019, 1, 1)) == Decimal("0.13")
    assert parameter.entry_at(date(2020, 6, 1)).status == "unconfirmed"  # type: ignore[union-attr]
    assert parameter.value_at(date(2023, 1, 1)) == Decimal("0.02")


def test_nothing_is_in_force_before_the_first_date(tmp_path: Path) -> None:
    parameter = load_parameter(_write(tmp_path, "fund/branch/rate.yaml", GOOD), tmp_path)
    with pytest.raises(NotInForce, match=r"fund\.branch\.rate .* 2014-12-31"):
        parameter.value_at(date(2014, 12, 31))


def test_a_null_value_ends_the_validity_until_the_next_date(tmp_path: Path) -> None:
    _write(tmp_path, "fund/branch/rate.yaml", GOOD)
    ruleset = load_ruleset(tmp_path)
    with pytest.raises(NotInForce):
        ruleset.value("fund.branch.rate", date(2021, 1, 1))
    assert ruleset.optional("fund.branch.rate", date(2022, 12, 31)) is None
    assert ruleset.rate("fund.branch.rate", date(2023, 5, 1)) == Decimal("0.02")


def test_the_dates_may_be_written_in_any_order(tmp_path: Path) -> None:
    text = GOOD.replace('  2015-01-01: {value: "0.05", reference: Decree A, status: confirmed}\n', "")
    text += '  2015-01-01: {value: "0.05", reference: Decree A, status: confirmed}\n'
    parameter = load_parameter(_write(tmp_path, "rate.yaml", text), tmp_path)
    assert [e.since for e in parameter.entries] == sorted(e.since for e in parameter.entries)
    assert parameter.value_at(date(2016, 1, 1)) == Decimal("0.05")


@pytest.mark.parametrize(
    ("date_key", "why"),
    [
        ("2019-13-01", "month 13"),
        ("2019-02-30", "day 30 of February"),
        ("'2019-02-30'", "quoted, day 30 of February"),
        ("2019-1-1", "not zero-padded"),
        ("20190101", "no dashes"),
        ("2019-01-01T00:00:00", "a timestamp"),
        ("'first of January'", "text"),
    ],
)
def test_a_malformed_date_is_rejected_naming_the_file(tmp_path: Path, date_key: str, why: str) -> None:
    text = GOOD.replace("2019-01-01:", f"{date_key}:")
    with pytest.raises(ParameterFileError, match=r"^fund/branch/rate\.yaml: ") as info:
        _load(tmp_path, text)
    assert "date" in str(info.value) or "YAML" in str(info.value), why


def test_a_duplicate_date_is_rejected_naming_the_file(tmp_path: Path) -> None:
    text = GOOD + '  2019-01-01: {value: "0.12", reference: Other source, status: unconfirmed}\n'
    with pytest.raises(ParameterFileError, match=r"^fund/branch/rate\.yaml: .*duplicate key '2019-01-01'"):
        _load(tmp_path, text)


def test_a_duplicate_top_level_key_is_rejected_naming_the_file(tmp_path: Path) -> None:
    text = GOOD + "description: A second description.\n"
    with pytest.raises(ParameterFileError, match=r"^fund/branch/rate\.yaml: .*duplicate key 'description'"):
        _load(tmp_path, text)


def test_a_duplicate_key_inside_an_entry_is_rejected(tmp_path: Path) -> None:
    text = GOOD.replace("reference: Law B,", "reference: Law B, reference: Law B2,")
    with pytest.raises(ParameterFileError, match=r"^fund/branch/rate\.yaml: .*duplicate key 'reference'"):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOOD + "owner: INPS\n", "file: unknown field"),
        (GOOD.replace("  unit: rate\n", "  unit: rate\n  period: month\n"), "metadata: unknown field"),
        (
            GOOD.replace("status: unconfirmed}", "status: unconfirmed, note: check}"),
            "2019-01-01: unknown field",
        ),
    ],
)
def test_an_unknown_field_is_rejected_naming_the_file(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ParameterFileError, match=rf"^fund/branch/rate\.yaml: {where}"):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("status: unconfirmed}", "status: maybe}", "status must be confirmed or unconfirmed"),
        ("reference: Law B, ", "", "missing field"),
        ('value: "0.13"', "value: 0.13", "quoted decimal string"),
        ("unit: rate", "unit: percent", "unknown unit"),
        ("description: A rate for the tests.", "description: ''", "description must be"),
    ],
)
def test_other_defects_are_rejected_naming_the_file(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    with pytest.raises(ParameterFileError, match=rf"^fund/branch/rate\.yaml: .*{message}"):
        _load(tmp_path, GOOD.replace(old, new))


def test_an_amount_is_a_non_negative_integer(tmp_path: Path) -> None:
    text = (
        "description: d\nmetadata: {unit: currency-XOF}\n"
        "values:\n  2016-01-01: {value: -1, reference: r, status: confirmed}\n"
    )
    with pytest.raises(ParameterFileError, match=r"^smig\.yaml: 2016-01-01: .*non-negative integer"):
        _load(tmp_path, text, "smig.yaml")


def test_a_tree_with_one_bad_file_does_not_load_and_names_it(tmp_path: Path) -> None:
    _write(tmp_path, "a/good.yaml", GOOD)
    _write(tmp_path, "b/bad.yaml", GOOD + "extra: 1\n")
    with pytest.raises(ParameterFileError, match=r"^b/bad\.yaml: "):
        load_ruleset(tmp_path)


def test_the_ruleset_id_is_a_hash_of_the_content(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _write(one, "a/rate.yaml", GOOD)
    _write(two, "a/rate.yaml", GOOD)
    assert ruleset_id(one) == ruleset_id(two) == load_ruleset(one).id
    _write(two, "a/rate.yaml", GOOD.replace("Law D", "Law E"))
    assert ruleset_id(one) != ruleset_id(two)
    _write(one, "b/rate.yaml", GOOD)
    assert ruleset_id(one) != ruleset_id(two)


def test_the_packaged_parameters_load_and_each_value_has_a_reference_and_a_status() -> None:
    ruleset = load_ruleset()
    assert ruleset.id.startswith("rs-")
    for parameter in ruleset.parameters.values():
        for entry in parameter.entries:
            assert entry.reference.strip(), parameter.name
            assert entry.status in ("confirmed", "unconfirmed"), parameter.name
