"""The host agent's start and loop: it holds no database, and its loop beats, reconciles and reports."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command


def test_zero_build_slots_is_refused_before_anything_starts() -> None:
    with pytest.raises(CommandError, match="--build-slots: give at least 1"):
        call_command("hostagent", "--name", "nowhere", "--build-slots", "0")


def test_an_agent_that_is_not_enrolled_is_refused_and_told_how_to_enroll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """There is no agent with the database any more: without a state directory it does not start."""
    monkeypatch.delenv("HOSTPANEL_AGENT_STATE_DIR", raising=False)
    with pytest.raises(CommandError, match=r"not enrolled.*manage.py host add NAME"):
        call_command("hostagent", "--name", "h1", "--state-dir", "")


def test_an_agent_with_database_settings_is_refused(tmp_path: Path, settings: Any) -> None:
    """A state directory given, but this process has the database (DATABASE_URL or no
    HOSTPANEL_AGENT_STATE_DIR when settings were read): the agent refuses before reading anything."""
    settings.AGENT_WITHOUT_DATABASE = False
    with pytest.raises(CommandError, match=r"holds no database.*without DATABASE_URL"):
        call_command("hostagent", "--state-dir", str(tmp_path))


def test_the_loop_without_the_database_comes_back_when_a_reconcile_asks(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A back-off that ends or a probe result due brings the next reconcile forward (its
    ``retry_in``), not the next periodic one; a failing reconcile is logged, never raised. With
    each reconcile the edge loads Caddy's config again if Caddy lost it (a failure: logged)."""
    from hostpanel.agent import remote, wakeup
    from hostpanel.agent.management.commands import hostagent
    from tests.hostpanel.hosts.fake_engine import FakeEngine

    stop = threading.Event()
    calls: list[int] = []

    def reconcile(engine: Any, client: Any, state_dir: Any) -> remote.ReconcileReport:
        calls.append(1)
        if len(calls) == 3:
            stop.set()
            raise OSError("the panel is away")  # logged, the loop goes on (here: to its stop)
        return remote.ReconcileReport(retry_in=0.01)

    class Client:
        def heartbeat(self, running: dict[str, int]) -> dict[str, list[int]]:
            return {"fence": []}

        def routes(self, after: int) -> dict[str, Any] | None:
            return {"generation": 1} if after < 1 else None  # one newer table, then up to date

    class Engine(FakeEngine):
        def rotate_logs(self) -> int:
            return 0

    class Edge:
        checked = 0
        generation = 0
        applied: list[dict[str, Any]] = []

        def apply(self, table: dict[str, Any]) -> bool:
            self.applied.append(table)
            self.generation = table["generation"]
            return True

        def ensure_caddy(self) -> bool:
            self.checked += 1
            if self.checked == 1:
                raise OSError("caddy's socket is gone")  # logged, the loop goes on
            return False

    monkeypatch.setattr(remote, "reconcile", reconcile)
    edge = Edge()
    done = threading.Thread(
        target=hostagent._agent_loop,
        args=(Engine(), Client(), tmp_path, 60.0, stop),
        kwargs={"edge": edge, "soon": wakeup.Wakeup(soonest=0.01)},
    )
    done.start()
    done.join(10)
    assert not done.is_alive() and len(calls) == 3  # not 60 s apart: each asked to come back
    assert edge.checked == 3
    assert edge.applied == [{"generation": 1}]  # the missed table, caught up with once


def test_a_reconcile_that_waits_never_holds_the_beats_back(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconcile stopping a container waits its grace period (10 s by default); the beats go on
    meanwhile (their own thread), or the panel would take the busy host for a dead one and move its
    replicas. Log rotation fails once: logged, the beats go on."""
    from hostpanel.agent import remote
    from hostpanel.agent.management.commands import hostagent
    from tests.hostpanel.hosts.fake_engine import FakeEngine

    stop, reconciling = threading.Event(), threading.Event()
    beats: list[dict[str, int]] = []

    def slow_reconcile(engine: Any, client: Any, state_dir: Any) -> remote.ReconcileReport:
        reconciling.set()
        stop.wait(30)  # a stop's grace period, here: until the test ends
        return remote.ReconcileReport()

    class Client:
        def heartbeat(self, running: dict[str, int]) -> dict[str, list[int]]:
            beats.append(running)
            return {"fence": []}

    class Engine(FakeEngine):
        rotations = 0

        def rotate_logs(self) -> int:
            self.rotations += 1
            if self.rotations == 1:
                raise OSError("disk trouble")
            return 0

    monkeypatch.setattr(remote, "reconcile", slow_reconcile)
    engine, client = Engine(), Client()
    threads = [
        threading.Thread(target=hostagent._agent_loop, args=(engine, client, tmp_path, 60.0, stop)),
        threading.Thread(target=hostagent._beat_loop, args=(engine, client, 0.01, stop)),
    ]
    for thread in threads:
        thread.start()
    try:
        assert reconciling.wait(10)
        deadline = threading.Event()
        seen = len(beats)
        deadline.wait(0.5)
        assert len(beats) > seen + 5, "the beats stopped while a reconcile waited"
        assert engine.rotations == len(beats)  # the failed rotation did not cost its beat
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def test_a_tasks_reconcile_that_asks_to_come_back_wakes_the_sleeping_loop(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy's ``reconcile_host`` task starts a replica whose readiness probe is due in 0.3 s: its
    ask wakes the loop (sleeping out a 60 s period), which reconciles again for the result."""
    from hostpanel.agent import remote, wakeup
    from hostpanel.agent.management.commands import hostagent

    soon, stop = wakeup.Wakeup(soonest=0.01), threading.Event()
    calls: list[float] = []

    def reconcile(engine: Any, client: Any, state_dir: Any) -> remote.ReconcileReport:
        calls.append(time.monotonic())
        if len(calls) == 2:
            stop.set()
        return remote.ReconcileReport()

    monkeypatch.setattr(remote, "reconcile", reconcile)
    loop = threading.Thread(
        target=hostagent._agent_loop, args=(None, None, tmp_path, 60.0, stop), kwargs={"soon": soon}
    )
    loop.start()
    while not calls:
        time.sleep(0.01)
    soon.ask(0.05)  # what tasks._reconcile does with its report's retry_in
    loop.join(10)
    assert not loop.is_alive() and len(calls) == 2
    assert calls[1] - calls[0] < 30  # woken by the ask, not by the 60 s period


def test_a_stopped_loop_ends_within_its_stop_check() -> None:
    from hostpanel.agent import wakeup

    soon, stop = wakeup.Wakeup(), threading.Event()
    sleeper = threading.Thread(target=soon.sleep, args=(time.monotonic() + 600, stop))
    sleeper.start()
    stop.set()
    sleeper.join(wakeup.STOP_CHECK * 5)
    assert not sleeper.is_alive()
