"""The host agent's heartbeat loop: it beats, and it is the one log rotator of its engine."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hostpanel.agent.management.commands.hostagent import Command
from hostpanel.hosts.models import Host


@pytest.mark.django_db(transaction=True)
def test_each_beat_rotates_logs_and_a_failing_rotation_does_not_stop_the_beat(host: Host) -> None:
    stop = threading.Event()
    calls: list[int] = []

    def rotate_logs() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk trouble")  # logged; the loop goes on
        stop.set()
        return 0

    before = Host.objects.get(pk=host.pk).last_heartbeat
    Command._heartbeat_loop(host.pk, host.queue, 0.01, {}, stop, rotate_logs)
    assert len(calls) == 2
    after: Any = Host.objects.get(pk=host.pk).last_heartbeat
    assert after is not None and (before is None or after >= before)


@pytest.mark.django_db(transaction=True)
def test_the_beat_sends_a_build_waiting_for_its_share(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    from hostpanel.builds.models import Build
    from tests.hostpanel.factories import TenantFactory

    sent: list[tuple[int, str]] = []
    monkeypatch.setattr("hostpanel.builds.dispatch.send_build", lambda pk, queue: sent.append((pk, queue)))
    build = Build.objects.create(
        tenant=TenantFactory(slug="waits"), host=host, name="a:1", reference="waits/a:1"
    )
    stop = threading.Event()

    def one_beat() -> int:
        stop.set()
        return 0

    Command._heartbeat_loop(host.pk, host.queue, 0.01, {}, stop, one_beat)
    assert sent == [(build.pk, "build.h1")]  # e.g. its message was lost with a build worker


def test_zero_build_slots_is_refused_before_anything_starts() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--build-slots: give at least 1"):
        call_command("hostagent", "--name", "nowhere", "--build-slots", "0")


def test_the_loop_without_the_database_comes_back_when_a_reconcile_asks(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A back-off that ends or a probe result due brings the next reconcile forward (its
    ``retry_in``), not the next periodic one; a failing reconcile is logged, never raised. With
    each reconcile the edge loads Caddy's config again if Caddy lost it (a failure: logged)."""
    from hostpanel.agent import remote
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
    monkeypatch.setattr(hostagent, "RECONCILE_SOON_MIN", 0.01)
    edge = Edge()
    done = threading.Thread(
        target=hostagent._loop_without_database,
        args=(Engine(), Client(), tmp_path, 60.0, 60.0, stop),
        kwargs={"edge": edge},
    )
    done.start()
    done.join(10)
    assert not done.is_alive() and len(calls) == 3  # not 60 s apart: each asked to come back
    assert edge.checked == 3
    assert edge.applied == [{"generation": 1}]  # the missed table, caught up with once
