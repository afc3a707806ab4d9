"""Line charts as inline SVG data, drawn on the server (no chart library, nothing inline to run)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT, PAD = 600, 160, 4
PALETTE_SIZE = 6  # the CSS classes series-0..5 and swatch-0..5 (static/css/dashboard.css)

Points = list[tuple[datetime, float]]


@dataclass(frozen=True)
class LineChart:
    """What templates/dashboard/_chart.html draws: a polyline in a WIDTH x HEIGHT box and its labels."""

    points: str
    width: int
    height: int
    peak: float
    unit: str
    first: datetime | None
    last: datetime | None
    count: int


@dataclass(frozen=True)
class Line:
    """One labelled series of a :class:`MultiLineChart`; ``color`` picks series-N / swatch-N."""

    label: str
    points: str
    color: int


@dataclass(frozen=True)
class MultiLineChart:
    """What templates/dashboard/_multi_chart.html draws: several polylines on one scale."""

    lines: list[Line]
    width: int
    height: int
    peak: float
    unit: str
    first: datetime | None
    last: datetime | None
    count: int


def _polyline(series: Points, start: datetime, span: float, peak: float) -> str:
    coords = []
    for when, value in series:
        x = PAD + (when - start).total_seconds() / span * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - value / peak * (HEIGHT - 2 * PAD)
        coords.append(f"{x:.1f},{y:.1f}")
    if len(coords) == 1:  # one hour so far: a flat line across
        coords.append(f"{WIDTH - PAD:.1f},{coords[0].split(',')[1]}")
    return " ".join(coords)


def line_chart(series: Points, unit: str) -> LineChart:
    """Scale ``series`` (time, value) into the box: time left to right, zero at the bottom."""
    if not series:
        return LineChart("", WIDTH, HEIGHT, 0.0, unit, None, None, 0)
    peak = max(v for _, v in series) or 1.0
    start, end = series[0][0], series[-1][0]
    span = (end - start).total_seconds() or 1.0
    return LineChart(_polyline(series, start, span, peak), WIDTH, HEIGHT, peak, unit, start, end, len(series))


def multi_line_chart(series: dict[str, Points], unit: str) -> MultiLineChart:
    """Scale several labelled series onto one time axis and one peak. A series without a value at
    a time another one has counts 0 there (an app that did not run that hour used nothing)."""
    times = sorted({when for points in series.values() for when, _ in points})
    if not times:
        return MultiLineChart([], WIDTH, HEIGHT, 0.0, unit, None, None, 0)
    filled = {label: _filled(points, times) for label, points in series.items()}
    peak = max(v for points in filled.values() for _, v in points) or 1.0
    span = (times[-1] - times[0]).total_seconds() or 1.0
    lines = [
        Line(label, _polyline(points, times[0], span, peak), i % PALETTE_SIZE)
        for i, (label, points) in enumerate(filled.items())
    ]
    return MultiLineChart(lines, WIDTH, HEIGHT, peak, unit, times[0], times[-1], len(times))


def _filled(points: Points, times: list[datetime]) -> Points:
    values = dict(points)
    return [(when, values.get(when, 0.0)) for when in times]
