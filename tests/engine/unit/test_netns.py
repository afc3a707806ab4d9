"""The network namespace seam: never the caller's own namespace, errors and timeouts come back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.errors import InvalidSpec, RuntimeFailure
from engine.runtime import netns
from engine.runtime.netns import NetnsTimeout, run_in_netns

OWN = Path("/proc/self/ns/net")


def test_the_callers_own_namespace_is_refused() -> None:
    ran: list[bool] = []
    with pytest.raises(InvalidSpec, match="host's own network namespace"):
        run_in_netns(OWN, lambda: ran.append(True), timeout=1)
    assert ran == []


def test_a_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(RuntimeFailure, match="no network namespace at /nonexistent"):
        run_in_netns(Path("/nonexistent"), lambda: 1, timeout=1)


def test_the_function_runs_in_a_fresh_thread_after_entering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "ns"
    fake.write_text("")
    entered: list[str] = []
    caller = threading.current_thread().name

    def enter(fd: int) -> None:
        entered.append(threading.current_thread().name)

    assert run_in_netns(fake, lambda: threading.current_thread().name, timeout=1, enter=enter) != caller
    assert len(entered) == 1 and entered[0] != caller


def test_errors_of_the_function_come_back(tmp_path: Path) -> None:
    fake = tmp_path / "ns"
    fake.write_text("")

    def boom() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        run_in_netns(fake, boom, timeout=1, enter=lambda fd: None)


def test_a_function_past_its_time_is_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "JOIN_GRACE", 0.0)
    fake = tmp_path / "ns"
    fake.write_text("")
    release = threading.Event()
    with pytest.raises(NetnsTimeout):
        run_in_netns(fake, release.wait, timeout=0.01, enter=lambda fd: None)
    release.set()
