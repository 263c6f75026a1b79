"""Where the months of a liquidation's career snapshot come from (contracts.pensions): runs that
cover the career exactly, checked by the contract; liquidations made before they were carried
still read."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.envelope import Envelope
from contracts.pensions import PensionLiquidated, month_sources, source_runs
from tests.support.control import PLAIN, liquidated

CAREER = [["2001-01", 10], ["2001-02", 10], ["2005-07", 20], ["2026-09", 30], ["2026-10", 30]]


def test_runs_say_each_month_s_source_in_a_few_entries() -> None:
    per_month = [
        ("2001-01", "imported"),
        ("2001-02", "imported"),
        ("2005-07", "both"),
        ("2026-09", "assessed"),
        ("2026-10", "assessed"),
    ]
    runs = source_runs(per_month)
    assert runs == [
        ("2001-01", "2001-02", "imported"),
        ("2005-07", "2005-07", "both"),
        ("2026-09", "2026-10", "assessed"),
    ]
    assert month_sources(CAREER, runs) == dict(per_month)
    assert source_runs([]) == [] and month_sources([], []) == {}


@pytest.mark.parametrize(
    ("runs", "problem"),
    [
        ([("2001-01", "2026-10", "mixed")], "not one of"),
        ([("2001-02", "2026-10", "imported")], "starts at 2001-02"),
        ([("2001-01", "2003-01", "imported"), ("2005-07", "2026-10", "assessed")], "ends at 2003-01"),
        ([("2001-01", "2005-07", "imported")], "cover 3 of the career's 5 months"),
        ([("2001-01", "2026-10", "imported"), ("2027-01", "2027-01", "assessed")], "starts at 2027-01"),
    ],
)
def test_runs_that_do_not_cover_the_career_are_refused(
    runs: list[tuple[str, str, str]], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        month_sources(CAREER, runs)


def test_the_contract_checks_the_runs_and_reads_liquidations_without_them() -> None:
    old = liquidated("C-OLD", PLAIN)  # as liquidations were made before the sources were carried
    doc = old.model_dump(mode="json")
    assert "career_sources" not in {k for k, v in doc["data"].items() if v is not None}
    assert Envelope[PensionLiquidated].model_validate(doc).data.career_sources is None
    first, last = PLAIN[0][0], PLAIN[-1][0]
    good = {**doc, "data": {**doc["data"], "career_sources": [[first, last, "imported"]]}}
    assert Envelope[PensionLiquidated].model_validate(good).data.career_sources == [(first, last, "imported")]
    bad = {**doc, "data": {**doc["data"], "career_sources": [[first, "2002-01", "imported"]]}}
    with pytest.raises(ValidationError, match="career_sources"):
        Envelope[PensionLiquidated].model_validate(bad)


def _month_by_month(career: list[list[Any]], runs: list[tuple[str, str, str]]) -> dict[str, str]:
    """The runs read one month at a time: the reference the checks at the runs' ends keep to."""
    out: dict[str, str] = {}
    k = 0
    for first, last, source in runs:
        if source not in ("assessed", "imported", "both") or k >= len(career) or career[k][0] != first:
            raise ValueError
        while True:
            period = career[k][0]
            out[period] = source
            k += 1
            if period == last:
                break
            if k >= len(career) or career[k][0] > last:
                raise ValueError
    if k != len(career):
        raise ValueError
    return out


_periods = st.sampled_from(["2001-01", "2001-02", "2005-07", "2026-09", "2026-10", "2026-11"])


@given(
    st.lists(_periods, max_size=7),
    st.lists(
        st.tuples(_periods, _periods, st.sampled_from(["assessed", "imported", "both", "x"])), max_size=4
    ),
)
def test_the_runs_are_checked_as_month_by_month_would(
    periods: list[str], runs: list[tuple[str, str, str]]
) -> None:
    """Careers in any order (a hostile one need not be sorted), runs of any shape: refused or
    read exactly as a month-by-month walk would."""
    career: list[list[Any]] = [[p, 1] for p in periods]
    try:
        want: dict[str, str] | None = _month_by_month(career, runs)
    except ValueError:
        want = None
    if want is None:
        with pytest.raises(ValueError):
            month_sources(career, runs)
    else:
        assert month_sources(career, runs) == want
