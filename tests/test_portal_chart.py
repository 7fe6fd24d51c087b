"""The usage chart: an inline SVG drawn from ``(day, requests)`` pairs, on its own."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from keysentry.portal import usage_chart

SVG = "{http://www.w3.org/2000/svg}"


def _bars(svg: str) -> list[tuple[str, int, float]]:
    root = ET.fromstring(svg)  # noqa: S314 (markup this test made)
    return [
        (rect.get("data-day", ""), int(rect.get("data-count", "0")), float(rect.get("height", "0")))
        for rect in root.iter(f"{SVG}rect")
    ]


def test_a_bar_per_day_as_high_as_its_count() -> None:
    start = date(2025, 6, 1)
    points = [(start + timedelta(days=i), n) for i, n in enumerate([0, 5, 10, 20])]
    svg = usage_chart(points, height=120)
    bars = _bars(svg)
    assert [(d, n) for d, n, _ in bars] == [(p.isoformat(), n) for p, n in points]
    heights = [h for _, _, h in bars]
    assert heights[0] == 0
    assert heights[2] == pytest.approx(heights[3] / 2, abs=0.1)
    assert heights[1] == pytest.approx(heights[3] / 4, abs=0.1)


def test_days_missing_between_are_zero_and_the_order_is_the_calendars() -> None:
    svg = usage_chart([(date(2025, 6, 3), 7), (date(2025, 6, 1), 2)])
    assert [(d, n) for d, n, _ in _bars(svg)] == [
        ("2025-06-01", 2),
        ("2025-06-02", 0),
        ("2025-06-03", 7),
    ]


def test_it_is_labelled_for_screen_readers() -> None:
    svg = usage_chart([(date(2025, 6, 1), 3), (date(2025, 6, 2), 9)], label="Requests <b>")
    root = ET.fromstring(svg)  # noqa: S314 (markup this test made)
    assert root.get("role") == "img"
    label = root.get("aria-label", "")
    assert label.startswith("Requests <b>: 12 from 2025-06-01 to 2025-06-02")
    assert "at most 9 on 2025-06-02" in label
    assert "<b>" not in svg  # escaped


def test_no_points_is_a_chart_that_says_so() -> None:
    svg = usage_chart([])
    assert "No requests" in svg
    assert _bars(svg) == []


def test_the_scale_rounds_up_to_a_readable_maximum() -> None:
    svg = usage_chart([(date(2025, 6, 1), 37)])
    assert re.search(r'text-anchor="end" font-size="11">50</text>', svg)


@pytest.mark.parametrize("bad", [[(date(2025, 6, 1), -1)], [(date(2025, 6, 1), 1.5)],
                                 [("2025-06-01", 1)], [(date(2025, 6, 1), True)]])  # fmt: skip
def test_bad_points_are_refused(bad: list[tuple[object, object]]) -> None:
    with pytest.raises((TypeError, ValueError)):
        usage_chart(bad)  # type: ignore[arg-type]
