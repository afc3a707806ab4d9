"""Table and JSON output shared by every `hpctl` listing command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO


def print_table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows under headers in aligned columns, like `docker ps`."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        out.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def print_json(out: TextIO, value: Any) -> None:
    """Print ``value`` as indented JSON."""
    out.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def human_size(n: int) -> str:
    """Bytes as Docker prints them: 1.2MB, 3.4GB (powers of 1000)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1000
    return f"{n}B"


def human_duration(seconds: float) -> str:
    """A duration as Docker words it: 'Less than a second', '3 seconds', '2 minutes', '5 hours'."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    for limit, unit, size in (
        (60, "second", 1),
        (3600, "minute", 60),
        (86400 * 2, "hour", 3600),
        (86400 * 14, "day", 86400),
        (86400 * 60, "week", 86400 * 7),
        (86400 * 730, "month", 86400 * 30),
    ):
        if s < limit:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''}" if not (unit == "second" and n == 1) else "1 second"
    n = s // (86400 * 365)
    return f"{n} years"


def time_ago(iso: str) -> str:
    """'3 minutes ago' for an RFC 3339 time; '' for an empty one."""
    from datetime import UTC, datetime

    if not iso:
        return ""
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return f"{human_duration((datetime.now(UTC) - then).total_seconds())} ago"
