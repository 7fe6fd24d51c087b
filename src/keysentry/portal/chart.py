"""A key's requests per day as an inline SVG bar chart, drawn on the server: no script, no
image request, readable by a screen reader (``role="img"`` and a label that says the total,
the busiest day and the range).

Pure: a sequence of ``(date, count)`` pairs in, markup out. Days missing between the first and
the last are drawn as zero; counts must be whole numbers, zero or more.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from html import escape

__all__ = ["usage_chart"]

_LEFT = 44  # room for the scale's labels
_BOTTOM = 20  # room for the first and last dates
_TOP = 8


def _days(points: Iterable[tuple[date, int]]) -> list[tuple[date, int]]:
    counts: dict[date, int] = {}
    for day, count in points:
        if not isinstance(day, date):
            raise TypeError(f"a point's day must be a datetime.date, not {type(day).__name__}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"a point's count must be a whole number >= 0, not {count!r}")
        counts[day] = counts.get(day, 0) + count
    if not counts:
        return []
    first, last = min(counts), max(counts)
    span = (last - first).days
    return [(first + timedelta(d), counts.get(first + timedelta(d), 0)) for d in range(span + 1)]


def _scale(peak: int) -> int:
    """The axis maximum: the peak rounded up to 1, 2 or 5 times a power of ten."""
    if peak <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if peak <= step * factor:
                return step * factor
        step *= 10


def usage_chart(
    points: Iterable[tuple[date, int]],
    *,
    width: int = 600,
    height: int = 160,
    label: str = "Requests per day",
) -> str:
    """The SVG markup of a bar per day (``points``: ``(day, requests)``)."""
    days = _days(points)
    title = escape(label)
    if not days:
        return (
            f'<svg class="chart" role="img" aria-label="{title}: no requests" '
            f'viewBox="0 0 {width} {height}" width="100%" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{title}: no requests</title>"
            f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle">No requests</text>'
            "</svg>"
        )
    total = sum(count for _, count in days)
    peak_day, peak = max(days, key=lambda point: point[1])
    top = _scale(peak)
    plot_w = width - _LEFT
    plot_h = height - _BOTTOM - _TOP
    slot = plot_w / len(days)
    bar = max(slot * 0.8, 1.0)
    summary = escape(
        f"{label}: {total} from {days[0][0].isoformat()} to {days[-1][0].isoformat()}, "
        f"at most {peak} on {peak_day.isoformat()}"
    )
    parts = [
        f'<svg class="chart" role="img" aria-label="{summary}" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{summary}</title>",
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{width}" y2="{_TOP + plot_h}" '
        'stroke="#999" stroke-width="1"/>',
        f'<text x="{_LEFT - 4}" y="{_TOP + 8}" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{_LEFT - 4}" y="{_TOP + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for i, (day, count) in enumerate(days):
        h = plot_h * count / top
        x = _LEFT + i * slot + (slot - bar) / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}" fill="#2453c7" data-day="{day.isoformat()}" data-count="{count}">'
            f"<title>{day.isoformat()}: {count}</title></rect>"
        )
    bottom = height - 5
    parts.append(f'<text x="{_LEFT}" y="{bottom}" font-size="11">{days[0][0].isoformat()}</text>')
    if len(days) > 1:
        parts.append(
            f'<text x="{width}" y="{bottom}" text-anchor="end" font-size="11">'
            f"{days[-1][0].isoformat()}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
