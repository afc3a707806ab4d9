"""Retired uid ranges: a purged tenant's block is never handed out again, not even to its name."""

from __future__ import annotations

from pathlib import Path

from engine.runtime.idmap import FIRST_BASE, RANGE_SIZE, TenantIdRanges


def test_a_retired_range_is_never_allocated_again(tmp_path: Path) -> None:
    ranges = TenantIdRanges(tmp_path)
    acme = ranges.range_for("acme")
    other = ranges.range_for("other")
    assert (acme.base, other.base) == (FIRST_BASE, FIRST_BASE + RANGE_SIZE)
    assert ranges.retire("acme") == acme
    assert "acme" not in ranges.all() and ranges.retire("acme") is None
    again = ranges.range_for("acme")
    assert again.base == FIRST_BASE + 2 * RANGE_SIZE
    assert TenantIdRanges(tmp_path).range_for("new").base == FIRST_BASE + 3 * RANGE_SIZE
    assert ranges.range_for("other") == other
