"""The career chart of the controllers' page: server-rendered SVG."""

from datetime import date

from services.control.chart import career_svg, monthly_bases


def test_months_of_several_employers_count_once_and_bad_entries_are_left_out() -> None:
    career = [
        ["2020-01", 100],
        ["2020-01", 50],
        ["2020-02", 0],
        ["2020-13", 9],
        ["<script>", 1],
        ["2020-03", "7"],
    ]
    assert monthly_bases(career) == {"2020-01": 150, "2020-02": 0}


def test_imported_months_are_drawn_apart_and_the_reference_window_is_shaded() -> None:
    career = [["2019-11", 90_000], ["2019-12", 95_000], ["2020-01", 100_000], ["2020-02", 120_000]]
    svg = career_svg(career, imported={"2019-11", "2019-12"}, window=(date(2020, 1, 1), date(2020, 2, 1)))
    assert svg.count('class="imported"') == 2 and svg.count('class="assessed"') == 2
    assert svg.count('class="window"') == 1
    assert "2 imported months" in svg and "reference window 2020-01 to 2020-02 shaded" in svg
    assert svg.startswith("<svg") and 'role="img"' in svg and "<title" in svg


def test_a_title_is_escaped_and_an_empty_career_says_so() -> None:
    svg = career_svg([], title='<b onload="x">')
    assert "<b " not in svg and "No month" in svg
