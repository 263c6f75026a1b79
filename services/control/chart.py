"""A career as a chart: server-rendered SVG, no JavaScript.

One bar per month (the bases of the month added, as the rules count them), filled by where
the month comes from when the snapshot says so (its `career_sources`): assessed months solid,
imported months hatched in another colour, months with rows of each hatched over the assessed
colour — told apart by pattern as well as colour, and named in a legend. The reference
salary's window is shaded. The SVG carries a title and a description for screen readers
(and each bar a title); the page gives the same figures as a table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from html import escape
from typing import Any

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 16, 36
PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}")
ASSESSED, IMPORTED, WINDOW, UNKNOWN = "#1f5f8b", "#c77d1a", "#fde9b3", "#6b6b6b"
# Per source: (the bar's fill, the legend's label).
FILLS = {
    "assessed": (ASSESSED, "assessed months (declarations)"),
    "imported": ("url(#chart-imported)", "imported months (before Kalo)"),
    "both": ("url(#chart-both)", "months assessed and imported"),
    "unknown": (UNKNOWN, "months (source not recorded)"),
}
# Hatching: imported months are not told apart by colour alone.
PATTERNS = (
    '<defs><pattern id="chart-imported" width="6" height="6" patternUnits="userSpaceOnUse" '
    f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{IMPORTED}"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#fff" stroke-width="2"/></pattern>'
    '<pattern id="chart-both" width="6" height="6" patternUnits="userSpaceOnUse" '
    f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{ASSESSED}"/>'
    f'<line x1="0" y1="0" x2="0" y2="6" stroke="{IMPORTED}" stroke-width="3"/></pattern></defs>'
)


def _month(period: str) -> date:
    year, month = period.split("-")
    return date(int(year), int(month), 1)


def _index(d: date, start: date) -> int:
    return (d.year - start.year) * 12 + d.month - start.month


def monthly_bases(career: Sequence[Sequence[Any]]) -> dict[str, int]:
    """Period → the month's bases added (several employers count once); entries that are
    not a YYYY-MM month and an integer are left out (the flags already say so)."""
    out: dict[str, int] = {}
    for entry in career:
        period, base = str(entry[0]), entry[1]
        if not (PERIOD.fullmatch(period) and type(base) is int and 1 <= int(period[5:]) <= 12):
            continue
        out[period] = out.get(period, 0) + base
    return dict(sorted(out.items()))


def _ticks(top: int) -> list[int]:
    if top <= 0:
        return [0]
    step = 10 ** max(len(str(top)) - 1, 0)
    for factor in (1, 2, 5, 10):
        if top / (step * factor) <= 5:
            step *= factor
            break
    return list(range(0, top + step, step))


def career_svg(
    career: Sequence[Sequence[Any]],
    *,
    sources: Mapping[str, str] | None = None,
    window: tuple[date, date] | None = None,
    title: str = "Career: pension base per month",
) -> str:
    """The chart of a career ((period, base) entries). `sources`: period → assessed, imported
    or both (contracts.pensions.month_sources); None when the snapshot does not say."""
    bases = monthly_bases(career)
    if not bases:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="60" '
            f'aria-label="{escape(title)}: no month">'
            '<text x="10" y="35">No month in the snapshot.</text></svg>'
        )
    first, last = _month(next(iter(bases))), _month(next(reversed(bases)))
    months = _index(last, first) + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / months
    ticks = _ticks(max(bases.values()))
    top = ticks[-1] or 1

    def x(d: date) -> float:
        return LEFT + _index(d, first) * slot

    def y(v: int) -> float:
        return TOP + plot_h - v * plot_h / top

    kinds = {p: _kind(p, sources) for p, b in bases.items() if b > 0}
    counts = {kind: sum(1 for k in kinds.values() if k == kind) for kind in FILLS}
    desc = (
        f"{len(kinds)} counted months from {first:%Y-%m} to {last:%Y-%m}, "
        f"highest base {max(bases.values()):,} F"
        + (
            f"; {counts['assessed']} assessed from declarations, {counts['imported']} imported from "
            f"before Kalo, {counts['both']} with rows of each"
            if sources is not None
            else "; where the months come from is not recorded"
        )
        + (f"; reference window {window[0]:%Y-%m} to {window[1]:%Y-%m} shaded" if window else "")
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-title chart-desc" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" class="career-chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(desc)}</desc>',
        PATTERNS,
    ]
    if window:
        wx = x(window[0])
        ww = x(window[1]) + slot - wx
        parts.append(
            f'<rect class="window" x="{wx:.1f}" y="{TOP}" width="{ww:.1f}" height="{plot_h}" fill="{WINDOW}">'
            f"<title>reference window {window[0]:%Y-%m} – {window[1]:%Y-%m}</title></rect>"
        )
    for v in ticks:
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:,}</text>'
        )
    for year in range(first.year, last.year + 1):
        d = date(year, 1, 1)
        if d < first:
            continue
        if year % max(1, (last.year - first.year) // 10 + 1) == 0 or year == first.year:
            parts.append(
                f'<line x1="{x(d):.1f}" x2="{x(d):.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
                'stroke="#333"/>'
                f'<text x="{x(d):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                f'font-size="11">{year}</text>'
            )
    bar_w = max(slot * 0.85, 0.6)
    for period, kind in kinds.items():
        base = bases[period]
        d = _month(period)
        parts.append(
            f'<rect class="{kind}" x="{x(d):.2f}" y="{y(base):.1f}" width="{bar_w:.2f}" '
            f'height="{TOP + plot_h - y(base):.1f}" fill="{FILLS[kind][0]}">'
            f"<title>{period}: {base:,} F ({kind})</title></rect>"
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#333"/>'
    )
    # The legend names what is drawn: each kind of month present, and the window.
    legend = [(f"legend-{kind}", *FILLS[kind][::-1]) for kind in FILLS if counts[kind]]
    if window:
        legend.append(("legend-window", "reference window", WINDOW))
    parts.append('<g class="legend">')
    lx = 8
    for css, label, fill in legend:
        parts.append(
            f'<g class="{css}"><rect x="{lx}" y="{HEIGHT - 12}" width="10" height="10" fill="{fill}" '
            f'stroke="#999"/><text x="{lx + 14}" y="{HEIGHT - 3}" font-size="11">{label}</text></g>'
        )
        lx += 26 + round(6.2 * len(label))
    parts.append("</g></svg>")
    return "".join(parts)


def _kind(period: str, sources: Mapping[str, str] | None) -> str:
    if sources is None:
        return "unknown"
    kind = sources.get(period, "unknown")
    return kind if kind in FILLS else "unknown"
