"""Amounts in units (tenants/units.py) and a spec's changes in words (deployments/changes.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hostpanel.deployments.changes import command_text, health_text, spec_changes, summary
from hostpanel.deployments.services import AppSpec
from hostpanel.tenants import units


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (128 * 2**20, "128 MiB"),
        (int(3.94 * 2**30), "3.9 GiB"),
        (int(9.8 * 2**40), "9.8 TiB"),
        (2**50 * 3, "3 PiB"),
    ],
)
def test_sizes_in_binary_units(value: int, text: str) -> None:
    assert units.size(value) == text


def test_cores_counts_and_the_over_text() -> None:
    assert [units.cores(m) for m in (250, 1000, 1500, 10)] == [
        "0.25 cores",
        "1 core",
        "1.5 cores",
        "0.01 cores",
    ]
    assert units.amount("containers", 3) == "3" and units.amount("disk_bytes", 2**30) == "1 GiB"
    assert (
        units.over_text("memory_bytes", int(9.8 * 2**40), int(3.9 * 2**30))
        == "memory: 9.8 TiB asked, 3.9 GiB left"
    )
    assert units.over_text("cpu_millis", 2500, 750) == "CPU: 2.5 cores asked, 0.75 cores left"


def test_form_numbers_to_millicores_and_bytes() -> None:
    assert units.millis_of_cores(Decimal("1.5")) == 1500 and units.millis_of_cores(Decimal("0.0004")) == 0
    assert units.bytes_of(Decimal("0.75"), units.GIB) == 768 * 2**20


def test_changes_in_words() -> None:
    old = AppSpec(image="busybox:latest", command=["sleep", "60"], env={"A": "1", "B": "2"})
    new = AppSpec(
        image="busybox:latest",
        command=["sh", "-c", "echo 'hi there'"],
        env={"A": "1", "C": "3"},
        memory_bytes=2**30,
        health_check={"http": {"port": 8080, "path": "/up"}, "interval": 5, "retries": 2},
    )
    changes = {c.field: (c.before, c.after) for c in spec_changes(old, new)}
    assert changes == {
        "command": ("sleep 60", "sh -c 'echo '\"'\"'hi there'\"'\"''"),
        "env.B": ("2", "(not set)"),
        "env.C": ("(not set)", "3"),
        "memory_bytes": ("128 MiB", "1 GiB"),
        "health_check": ("none", "HTTP GET :8080/up (every 5 s, 2 failures before unhealthy)"),
    }
    assert summary(spec_changes(old, new)) == "command, env B, env C, memory bytes, health check"
    assert spec_changes(new, new) == []
    assert command_text([]) == "(the image's own)"
    assert health_text({"tcp": {"port": 5432}}) == "TCP connect :5432"
