"""The career chart of the controllers' page: server-rendered SVG."""

from datetime import date
from xml.etree import ElementTree

from contracts.pensions import month_sources, source_runs
from services.control.chart import ASSESSED, career_svg, monthly_bases

SVG = "{http://www.w3.org/2000/svg}"


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


def bars(svg: str) -> dict[str, tuple[str, str]]:
    """Period → (class, fill) of each bar, read from the SVG as a browser would parse it."""
    root = ElementTree.fromstring(svg)
    out = {}
    for rect in root.iter(f"{SVG}rect"):
        title = rect.find(f"{SVG}title")
        if rect.get("class") in ("assessed", "imported", "both", "unknown") and title is not None:
            out[(title.text or "")[:7]] = (rect.get("class") or "", rect.get("fill") or "")
    return out


def test_imported_months_are_drawn_apart_with_a_legend_and_the_window_shaded() -> None:
    career = [
        ["2019-10", 80_000],
        ["2019-11", 90_000],
        ["2019-12", 95_000],
        ["2020-01", 100_000],
        ["2020-02", 0],
    ]
    runs = source_runs(
        [
            ("2019-10", "imported"),
            ("2019-11", "imported"),
            ("2019-12", "both"),
            ("2020-01", "assessed"),
            ("2020-02", "assessed"),
        ]
    )
    assert runs == [
        ("2019-10", "2019-11", "imported"),
        ("2019-12", "2019-12", "both"),
        ("2020-01", "2020-02", "assessed"),
    ]
    svg = career_svg(career, sources=month_sources(career, runs), window=(date(2020, 1, 1), date(2020, 2, 1)))
    drawn = bars(svg)
    assert {p: kind for p, (kind, _) in drawn.items()} == {
        "2019-10": "imported",
        "2019-11": "imported",
        "2019-12": "both",
        "2020-01": "assessed",  # 2020-02, base 0, is not drawn
    }
    fills = {kind: fill for kind, fill in drawn.values()}
    assert fills["assessed"] == ASSESSED
    assert len(set(fills.values())) == 3, "each kind of month has a fill of its own"
    root = ElementTree.fromstring(svg)
    patterns = {p.get("id") for p in root.iter(f"{SVG}pattern")}
    assert {"chart-imported", "chart-both"} <= patterns  # hatched: not by colour alone
    legend = [t.text for t in root.iter(f"{SVG}text") if t.text and "months" in t.text]
    assert legend == [
        "assessed months (declarations)",
        "imported months (before Kalo)",
        "months assessed and imported",
    ]
    assert svg.count('class="window"') == 1 and "reference window" in svg
    # For screen readers: the title and the description name the counts.
    assert root.get("role") == "img" and root.get("aria-labelledby") == "chart-title chart-desc"
    assert root.find(f"{SVG}title").text == "Career: pension base per month"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    assert (
        "4 counted months" in desc
        and "1 assessed from declarations, 2 imported from before Kalo, 1 with rows of each" in desc
    )
    assert "reference window 2020-01 to 2020-02 shaded" in desc


def test_a_snapshot_without_sources_says_so_instead_of_guessing() -> None:
    career = [["2019-11", 90_000], ["2019-12", 95_000]]
    svg = career_svg(career, sources=None)
    assert {kind for kind, _ in bars(svg).values()} == {"unknown"}
    assert "months (source not recorded)" in svg and "imported months" not in svg
    assert "where the months come from is not recorded" in svg


def test_a_title_is_escaped_and_an_empty_career_says_so() -> None:
    svg = career_svg([], title='<b onload="x">')
    assert "<b " not in svg and "No month" in svg
