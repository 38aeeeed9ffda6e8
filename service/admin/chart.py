"""The dashboard's daily chart, as numbers for an inline SVG template (no JavaScript, no library)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT = 480, 180
LEFT, BOTTOM, TOP = 30, 20, 8


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, int]]
    labels: list[tuple[float, str]]
    summary: str
    rows: list[tuple[date, int, int]]
    baseline: float


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^k at or above `value` (at least 1), so the axis reads well."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return max(1, step * factor)
        step *= 10


def daily(rows: list[tuple[date, int, int]], asked: int | None = None, replied: int | None = None) -> Chart:
    """Bars for the people who asked and the people who replied, per day.

    `asked` and `replied` are the period's people, each counted once (the funnel's column); a person
    asking on two days is in two bars but once in the summary. Without them, the bars are summed.
    """
    top = nice_ceiling(max([max(r[1], r[2]) for r in rows] + [1]))
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(1, len(rows))
    bars: list[Bar] = []
    for i, (day, asking, replying) in enumerate(rows):
        for j, (series, n) in enumerate((("requests", asking), ("replies", replying))):
            height = plot_height * n / top
            x = LEFT + i * slot + slot * (0.1 + 0.4 * j)
            bars.append(Bar(round(x, 1), round(TOP + plot_height - height, 1), round(slot * 0.4, 1),
                            round(height, 1), series, f"{day:%a %d %b}: {people(n, series)}"))
    ticks = [(round(TOP + plot_height * (1 - f), 1), int(top * f)) for f in (0, 0.5, 1) if float(top * f).is_integer()]
    labels = [(round(LEFT + (i + 0.5) * slot, 1), f"{day:%d %b}") for i, (day, _, _) in enumerate(rows) if i % 7 == 0]
    asked = sum(r[1] for r in rows) if asked is None else asked
    replied = sum(r[2] for r in rows) if replied is None else replied
    summary = f"Last {len(rows)} days: {people(asked, 'requests')}, {people(replied, 'replies')}."
    return Chart(WIDTH, HEIGHT, bars, ticks, labels, summary, rows, TOP + plot_height)


def people(n: int, series: str) -> str:
    """'1 person asked', '3 people replied'."""
    verb = "asked" if series == "requests" else "replied"
    return f"{n} {'person' if n == 1 else 'people'} {verb}"
