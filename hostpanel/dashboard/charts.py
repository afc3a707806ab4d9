"""Line charts as inline SVG data, drawn on the server (no chart library, nothing inline to run)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT, PAD = 600, 160, 4


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


def line_chart(series: list[tuple[datetime, float]], unit: str) -> LineChart:
    """Scale ``series`` (time, value) into the box: time left to right, zero at the bottom."""
    if not series:
        return LineChart("", WIDTH, HEIGHT, 0.0, unit, None, None, 0)
    peak = max(v for _, v in series) or 1.0
    start, end = series[0][0], series[-1][0]
    span = (end - start).total_seconds() or 1.0
    coords = []
    for when, value in series:
        x = PAD + (when - start).total_seconds() / span * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - value / peak * (HEIGHT - 2 * PAD)
        coords.append(f"{x:.1f},{y:.1f}")
    if len(coords) == 1:  # one hour so far: a flat line across
        coords.append(f"{WIDTH - PAD:.1f},{coords[0].split(',')[1]}")
    return LineChart(" ".join(coords), WIDTH, HEIGHT, peak, unit, start, end, len(series))
