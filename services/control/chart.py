"""A career as a chart: server-rendered SVG, no JavaScript.

One bar per month (the bases of the month added, as the rules count them), imported months
apart from assessed ones when the snapshot says which were imported, and the reference
salary's window shaded. The SVG carries a title and a description for screen readers; the
page gives the same figures as a table.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import date
from html import escape
from typing import Any

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 16, 36
PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}")
ASSESSED, IMPORTED, WINDOW = "#1f5f8b", "#c77d1a", "#fde9b3"


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
    imported: Collection[str] = (),
    window: tuple[date, date] | None = None,
    title: str = "Career: pension base per month",
) -> str:
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

    counted = sum(1 for b in bases.values() if b > 0)
    n_imported = sum(1 for p, b in bases.items() if p in imported and b > 0)
    desc = (
        f"{counted} counted months from {first:%Y-%m} to {last:%Y-%m}, highest base {max(bases.values()):,} F"
        + (f"; {n_imported} imported months" if imported else "")
        + (f"; reference window {window[0]:%Y-%m} to {window[1]:%Y-%m} shaded" if window else "")
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-title chart-desc" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" class="career-chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(desc)}</desc>',
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
    for period, base in bases.items():
        if base <= 0:
            continue
        d = _month(period)
        kind = "imported" if period in imported else "assessed"
        colour = IMPORTED if kind == "imported" else ASSESSED
        parts.append(
            f'<rect class="{kind}" x="{x(d):.2f}" y="{y(base):.1f}" width="{bar_w:.2f}" '
            f'height="{TOP + plot_h - y(base):.1f}" fill="{colour}">'
            f"<title>{period}: {base:,} F ({kind})</title></rect>"
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#333"/>'
    )
    legend = [("assessed months", ASSESSED)]
    if imported:
        legend.append(("imported months", IMPORTED))
    if window:
        legend.append(("reference window", WINDOW))
    lx = LEFT
    for label, colour in legend:
        parts.append(
            f'<rect x="{lx}" y="{HEIGHT - 12}" width="10" height="10" fill="{colour}" stroke="#999"/>'
            f'<text x="{lx + 14}" y="{HEIGHT - 3}" font-size="11">{label}</text>'
        )
        lx += 24 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)
